"""The `driver` capture backend: the camera belongs to another ROS driver node.

This node commands focus as std_msgs/Float32 metres on `focus_command_topic`; the
driver streams sensor_msgs/Image on `image_topic`, hybriddepth_ros/FocusState on
`focus_state_topic` and, optionally, sensor_msgs/CameraInfo. Each image is paired
with the focus state of the same moment by header stamp (message_filters'
ApproximateTimeSynchronizer when installed, else core.time_sync), so every frame
is stored at the focus distance the lens really reached, not the one asked for.

capture_stack() never blocks the node's executor: it starts a sweep and returns
None; the pair callbacks collect one frame per focus distance and command the
next; a later capture_stack() returns the finished stack, or raises CaptureError
once when the sweep ran out of time or got an unusable image.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32

from hybriddepth_ros.msg import FocusState

from ..core.stack.camera import CameraIntrinsics
from ..core.capture.base import CaptureBackend, CaptureError
from ..core.stack.focal_stack import FocalStack, FocalStackError
from ..core.capture.time_sync import ApproximatePairer
from ..core.stack.message_decoding import stamp_to_ns
from . import conversions
from .qos import OVERRIDABLE

try:  # pragma: no cover - depends on the ROS install
    import message_filters
except ImportError:  # PyPI wheels: no message_filters
    message_filters = None

SYNC_QUEUE_SIZE = 10
"""Messages per input the synchroniser keeps while waiting for a partner."""

COMMAND_RESEND_S = 1.0
"""A focus command not yet reached is re-sent this often, in case the driver missed it
(a volatile subscription that matched after the first send)."""


@dataclass
class _Frame:
    reached_focus_m: float
    rgb: np.ndarray
    stamp_ns: int


@dataclass
class _Sweep:
    """One sweep in progress; guarded by DriverCapture._lock."""

    started_monotonic_s: float
    commanded_at_ns: int = 0
    """Node-clock time the current focus was commanded: images stamped before it + settle are too early."""
    command_sent_monotonic_s: float = 0.0
    frames: list[_Frame] = field(default_factory=list)
    pairs_seen: int = 0
    last_state: FocusState | None = None
    error: str | None = None


class DriverCapture(CaptureBackend):
    """Sweeps focus through a separate camera driver node over topics (see module docstring)."""

    name = "driver"

    def __init__(
        self,
        node: Node,
        *,
        focus_distances_m: list[float],
        image_topic: str,
        focus_command_topic: str,
        focus_state_topic: str,
        sync_slop_s: float,
        focus_tolerance_m: float,
        settle_time_s: float,
        sweep_timeout_s: float,
        intrinsics: CameraIntrinsics,
        camera_info_topic: str = "",
    ) -> None:
        if len(focus_distances_m) < 2:
            raise ValueError(f"a sweep needs at least 2 focus distances, got {list(focus_distances_m)}")
        if not sync_slop_s > 0:
            raise ValueError(f"driver.sync_slop_s must be > 0 s, got {sync_slop_s}")
        if not focus_tolerance_m > 0:
            raise ValueError(f"driver.focus_tolerance_m must be > 0 m, got {focus_tolerance_m}")
        if not settle_time_s >= 0:
            raise ValueError(f"driver.settle_time_s must be >= 0 s, got {settle_time_s}")
        if not sweep_timeout_s > 0:
            raise ValueError(f"driver.sweep_timeout_s must be > 0 s, got {sweep_timeout_s}")
        self._node = node
        self._focus_distances_m = [float(d) for d in focus_distances_m]
        self._image_topic = image_topic
        self._focus_state_topic = focus_state_topic
        self._sync_slop_s = float(sync_slop_s)
        self._focus_tolerance_m = float(focus_tolerance_m)
        self._settle_time_ns = int(settle_time_s * 1e9)
        self._sweep_timeout_s = float(sweep_timeout_s)
        self._configured_intrinsics = intrinsics
        self._camera_info: CameraInfo | None = None
        self._sweep: _Sweep | None = None
        self._lock = threading.Lock()

        # Own group: pairs are collected even while the sweep timer runs (multi-threaded executor).
        group = ReentrantCallbackGroup()
        self._command_publisher = node.create_publisher(Float32, focus_command_topic, 10,
                                                        qos_overriding_options=OVERRIDABLE)
        self._subscriptions = []
        if message_filters is not None:  # pragma: no cover - depends on the ROS install
            inputs = [
                message_filters.Subscriber(
                    node, msg_type, topic, qos_profile=qos_profile_sensor_data, callback_group=group,
                    qos_overriding_options=OVERRIDABLE,
                )
                for msg_type, topic in ((Image, image_topic), (FocusState, focus_state_topic))
            ]
            self._synchronizer = message_filters.ApproximateTimeSynchronizer(inputs, SYNC_QUEUE_SIZE, self._sync_slop_s)
            self._synchronizer.registerCallback(self._on_pair)
            self._subscriptions += [each.sub for each in inputs]
            self.sync_implementation = "message_filters"
        else:
            pairer = ApproximatePairer(SYNC_QUEUE_SIZE, self._sync_slop_s)
            for input_index, (msg_type, topic) in enumerate(((Image, image_topic), (FocusState, focus_state_topic))):
                self._subscriptions.append(node.create_subscription(
                    msg_type, topic, self._pairing_callback(pairer, input_index), qos_profile_sensor_data,
                    callback_group=group, qos_overriding_options=OVERRIDABLE,
                ))
            self.sync_implementation = "core.time_sync"
        if camera_info_topic:
            self._subscriptions.append(node.create_subscription(
                CameraInfo, camera_info_topic, self._on_camera_info, qos_profile_sensor_data, callback_group=group,
                qos_overriding_options=OVERRIDABLE,
            ))
        node.get_logger().info(
            f"driver capture: images '{image_topic}' paired with '{focus_state_topic}' by {self.sync_implementation} "
            f"(slop {self._sync_slop_s} s), focus commands on '{focus_command_topic}'"
        )

    def _pairing_callback(self, pairer: ApproximatePairer, input_index: int):
        def on_message(msg) -> None:
            pair = pairer.add(input_index, stamp_to_ns(msg.header.stamp), msg)
            if pair is not None:
                self._on_pair(*pair)

        return on_message

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._camera_info = msg

    def capture_stack(self) -> FocalStack | None:
        """Start a sweep when idle, return the finished stack, or raise once for a failed sweep."""
        with self._lock:
            sweep = self._sweep
            if sweep is None:
                self._sweep = _Sweep(started_monotonic_s=time.monotonic())
                self._command_next_focus(self._sweep)
                return None
            if sweep.error is not None:
                self._sweep = None
                raise CaptureError(sweep.error)
            if len(sweep.frames) == len(self._focus_distances_m):
                self._sweep = None
                return self._finished_stack(sweep.frames)
            now_s = time.monotonic()
            if now_s - sweep.started_monotonic_s > self._sweep_timeout_s:
                self._sweep = None
                raise CaptureError(self._timeout_message(sweep))
            if now_s - sweep.command_sent_monotonic_s > COMMAND_RESEND_S:
                self._publish_command(sweep)
            return None

    def _command_next_focus(self, sweep: _Sweep) -> None:
        sweep.commanded_at_ns = self._node.get_clock().now().nanoseconds
        self._publish_command(sweep)

    def _publish_command(self, sweep: _Sweep) -> None:
        self._command_publisher.publish(Float32(data=self._focus_distances_m[len(sweep.frames)]))
        sweep.command_sent_monotonic_s = time.monotonic()

    def _on_pair(self, image: Image, state: FocusState) -> None:
        """Keep the image when the lens settled at the commanded focus, then command the next one."""
        with self._lock:
            sweep = self._sweep
            if sweep is None or sweep.error is not None or len(sweep.frames) == len(self._focus_distances_m):
                return
            sweep.pairs_seen += 1
            sweep.last_state = state
            commanded_m = self._focus_distances_m[len(sweep.frames)]
            reached_m = float(state.focus_distance)
            reached_commanded = math.isfinite(reached_m) and abs(reached_m - commanded_m) <= self._focus_tolerance_m
            if not (state.settled and reached_commanded):
                return
            image_stamp_ns = stamp_to_ns(image.header.stamp)
            if image_stamp_ns < sweep.commanded_at_ns + self._settle_time_ns:
                return
            try:
                rgb = conversions.image_to_rgb8(image)
            except conversions.ConversionError as exc:
                sweep.error = f"unusable image from the driver on '{self._image_topic}': {exc}"
                return
            if sweep.frames and rgb.shape != sweep.frames[0].rgb.shape:
                first = sweep.frames[0].rgb.shape
                sweep.error = (
                    f"the driver changed image size mid-sweep: {rgb.shape[1]}x{rgb.shape[0]} "
                    f"after {first[1]}x{first[0]}"
                )
                return
            sweep.frames.append(_Frame(reached_focus_m=reached_m, rgb=rgb, stamp_ns=image_stamp_ns))
            if len(sweep.frames) < len(self._focus_distances_m):
                self._command_next_focus(sweep)

    def _finished_stack(self, frames: list[_Frame]) -> FocalStack:
        """The stack sorted by reached focus (near to far); the nearest frame is the reference."""
        height_px, width_px = frames[0].rgb.shape[:2]
        try:
            return FocalStack.from_frames(
                [frame.rgb for frame in frames],
                [frame.reached_focus_m for frame in frames],
                self._intrinsics_for(width=width_px, height=height_px),
                stamps_s=[frame.stamp_ns * 1e-9 for frame in frames],
            )
        except FocalStackError as exc:
            raise CaptureError(f"the driver's sweep is not a usable stack: {exc}") from exc

    def _intrinsics_for(self, width: int, height: int) -> CameraIntrinsics:
        """The driver's CameraInfo when it has a calibration, else the configured intrinsics at this size."""
        if self._camera_info is not None:
            try:
                intrinsics = conversions.camera_info_to_intrinsics(self._camera_info)
            except conversions.ConversionError as exc:
                self._node.get_logger().warning(
                    f"ignoring the driver's camera_info, using the configured intrinsics: {exc}", once=True
                )
            else:
                if (intrinsics.width, intrinsics.height) != (width, height):
                    raise CaptureError(
                        f"the driver's camera_info is for {intrinsics.width}x{intrinsics.height} "
                        f"but its images are {width}x{height}"
                    )
                return intrinsics
        configured = self._configured_intrinsics
        if (configured.width, configured.height) == (width, height):
            return configured
        return configured.scaled(width, height)

    def _timeout_message(self, sweep: _Sweep) -> str:
        commanded_m = self._focus_distances_m[len(sweep.frames)]
        message = (
            f"driver sweep timed out after {self._sweep_timeout_s} s with "
            f"{len(sweep.frames)}/{len(self._focus_distances_m)} frames, waiting for focus {commanded_m:.3f} m: "
        )
        if sweep.pairs_seen == 0:
            return message + (
                f"no image on '{self._image_topic}' was paired with a focus state on '{self._focus_state_topic}' "
                f"(header stamps must differ by < sync_slop_s = {self._sync_slop_s} s; is the driver running "
                f"and stamping both from one clock?)"
            )
        state = sweep.last_state
        return message + (
            f"the last focus state was {state.focus_distance:.3f} m, settled={state.settled} "
            f"(needs settled within {self._focus_tolerance_m} m)"
        )

    def close(self) -> None:
        with self._lock:
            self._sweep = None
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions = []
        self._node.destroy_publisher(self._command_publisher)
