"""focus_sweep_node with the `driver` backend over DDS: a second node plays the camera driver.

The fake driver streams images and focus states at 50 Hz, moves its lens to each
commanded focus after a delay and reports it settled with a small error; image
pixels encode the focus that was commanded when the image was taken and whether
the lens had settled.
"""

from __future__ import annotations

import importlib.util
import math
import time

import numpy as np
import pytest

from support.ros_harness import spin_until

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Float32  # noqa: E402

from hybriddepth_ros.core.stack.camera import CameraIntrinsics  # noqa: E402
from hybriddepth_ros.msg import FocalStack as FocalStackMsg, FocusState  # noqa: E402
from hybriddepth_ros.nodes import conversions  # noqa: E402
from hybriddepth_ros.nodes.driver_capture import DriverCapture, stamp_to_ns  # noqa: E402
from hybriddepth_ros.nodes.focus_sweep_node import DIAGNOSTIC_NAME, FocusSweepNode  # noqa: E402

WIDTH, HEIGHT = 32, 24
FOCUS_DISTANCES_M = [0.5, 1.0, 2.0]
LENS_MOVE_S = 0.06
REACH_ERROR_M = 0.004
SETTLED_BLUE = 7  # blue value of images taken after the lens settled (0 while it moves)
IMAGE_STAMP_OFFSET_S = 0.003  # within the node's 0.02 s slop: approximate, not exact, pairing


def pixel_value(commanded_m: float) -> int:
    return int(round(commanded_m * 100))


class FakeDriver(Node):
    """A camera driver: focus commands in; images, focus states (and camera info) out at 50 Hz."""

    def __init__(self, context, reach_error_m=REACH_ERROR_M, image_stamp_offset_s=IMAGE_STAMP_OFFSET_S,
                 encoding="rgb8", camera_info_fx=None, reached_for=None):
        super().__init__("fake_camera_driver", context=context)
        self.reach_error_m = reach_error_m
        self.image_stamp_offset_ns = int(image_stamp_offset_s * 1e9)
        self.encoding = encoding
        self.camera_info_fx = camera_info_fx
        self.reached_for = reached_for or (lambda commanded_m: commanded_m + self.reach_error_m)
        self.commanded_m = None
        self.commanded_at_ns = 0
        self.lens_m = 3.0
        self.moves = []  # (commanded_m, received at ns) each time the lens starts moving
        self.image_stamps_ns = {}  # commanded_m -> stamps of the images taken while commanded
        self.create_subscription(Float32, "focus/command", self._on_command, 10)
        self.image_publisher = self.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.state_publisher = self.create_publisher(FocusState, "focus/state", qos_profile_sensor_data)
        self.info_publisher = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.create_timer(0.02, self._stream)

    def _on_command(self, msg: Float32) -> None:
        now_ns = self.get_clock().now().nanoseconds
        commanded_m = round(float(msg.data), 6)  # undo float32 rounding: 0.51, not 0.50999999
        if commanded_m != self.commanded_m:  # a re-sent command does not restart the lens
            self.commanded_m, self.commanded_at_ns = commanded_m, now_ns
            self.moves.append((self.commanded_m, now_ns))

    def _stream(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        # Like many lens drivers it reports the destination at once and `settled` once the move is over.
        settled = self.commanded_m is not None and now_ns >= self.commanded_at_ns + LENS_MOVE_S * 1e9
        if self.commanded_m is not None:
            self.lens_m = self.reached_for(self.commanded_m)
        state = FocusState(focus_distance=self.lens_m, lens_position=float("nan"), settled=settled)
        state.header.stamp.sec, state.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
        self.state_publisher.publish(state)
        image_stamp_ns = now_ns + self.image_stamp_offset_ns
        value = pixel_value(self.commanded_m) if self.commanded_m is not None else 0
        rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = value, 255 - value, SETTLED_BLUE if settled else 0
        image = conversions.rgb8_to_image(rgb, state.header)
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(image_stamp_ns, 1_000_000_000)
        if self.encoding != "rgb8":
            image.encoding, image.step = self.encoding, WIDTH * 2
            image.data = bytes(WIDTH * HEIGHT * 2)
        self.image_publisher.publish(image)
        self.image_stamps_ns.setdefault(self.commanded_m, []).append(image_stamp_ns)
        if self.camera_info_fx is not None:
            info = conversions.intrinsics_to_camera_info(
                CameraIntrinsics(self.camera_info_fx, self.camera_info_fx, 15.5, 11.5, WIDTH, HEIGHT),
                image.header,
            )
            self.info_publisher.publish(info)


class DriverRig:
    """The sweep node (driver backend), a fake driver and a probe of stacks and diagnostics."""

    def __init__(self, ros_context, focus_distances_m=FOCUS_DISTANCES_M, sweep_timeout_s=2.0, **driver_kwargs):
        context, self.executor, add = ros_context
        parameters = {
            "backend": "driver", "width": WIDTH, "height": HEIGHT, "rate_hz": 50.0,
            "focus_distances_m": focus_distances_m, "camera.horizontal_fov_deg": 90.0,
            "driver.sync_slop_s": 0.02, "driver.focus_tolerance_m": 0.02, "driver.settle_time_s": 0.03,
            "driver.sweep_timeout_s": sweep_timeout_s,
        }
        overrides = [Parameter(key, value=value) for key, value in parameters.items()]
        self.driver = add(FakeDriver(context, **driver_kwargs))
        self.node = add(FocusSweepNode(context=context, parameter_overrides=overrides))
        self.probe = add(Node("stack_probe", context=context))
        self.stacks, self.diagnostics = [], []
        self.probe.create_subscription(FocalStackMsg, "focal_stack", self.stacks.append, qos_profile_sensor_data)
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)

    def errors(self) -> list[str]:
        return [status.message for array in self.diagnostics for status in array.status
                if status.name == DIAGNOSTIC_NAME and status.level == status.ERROR]

    def spin_until(self, condition, timeout_s: float, executor=None) -> bool:
        return spin_until(executor or self.executor, condition, timeout_s)


def frames_of(msg) -> np.ndarray:
    return np.stack([conversions.image_to_rgb8(frame) for frame in msg.frames])


def assert_good_stack(rig: DriverRig, msg, commanded_m=FOCUS_DISTANCES_M) -> None:
    """Focus distances are the reached ones, each frame was taken at its focus after the lens settled."""
    reached_m = [rig.driver.reached_for(d) for d in commanded_m]
    order = np.argsort(reached_m)
    np.testing.assert_allclose(msg.focus_distances, np.asarray(reached_m)[order], atol=1e-6)
    frames = frames_of(msg)
    assert frames.shape == (len(commanded_m), HEIGHT, WIDTH, 3)
    for frame, commanded in zip(frames, np.asarray(commanded_m)[order]):
        assert np.all(frame[..., 0] == pixel_value(commanded))
        assert np.all(frame[..., 1] == 255 - pixel_value(commanded))
        assert np.all(frame[..., 2] == SETTLED_BLUE)
    assert msg.reference_index == 0 and not msg.registered
    reference_commanded = float(np.asarray(commanded_m)[order][0])
    # The stack keeps the reference image's stamp (to float64 seconds: ~0.24 us resolution today).
    stamp_ns = stamp_to_ns(msg.header.stamp)
    image_stamps_ns = np.asarray(rig.driver.image_stamps_ns[reference_commanded])
    assert np.min(np.abs(image_stamps_ns - stamp_ns)) < 1000
    move_ns = max(at for m, at in rig.driver.moves if m == reference_commanded and at <= stamp_ns)
    assert stamp_ns >= move_ns + LENS_MOVE_S * 1e9  # not a frame from before the lens settled
    assert (msg.camera_info.width, msg.camera_info.height) == (WIDTH, HEIGHT)


@pytest.mark.parametrize("executor_kind", ["single", "multi"])
def test_sweep_pairs_frames_with_reached_focus(ros_context, executor_kind):
    # A generous sweep timeout: on 2 shared cores Python's multi-threaded executor can
    # leave a callback waiting for over a second; this test is about pairing, not speed.
    rig = DriverRig(ros_context, sweep_timeout_s=10.0)
    nodes = (rig.driver, rig.node, rig.probe)
    executor = rig.executor
    if executor_kind == "multi":  # callbacks of the three nodes, and the driver backend's pairs, run in parallel
        executor = MultiThreadedExecutor(num_threads=4, context=ros_context[0])
        for node in nodes:
            rig.executor.remove_node(node)
            executor.add_node(node)
    try:
        assert rig.spin_until(lambda: len(rig.stacks) >= 2, 40.0, executor), rig.errors()
    finally:
        if executor is not rig.executor:
            for node in nodes:
                executor.remove_node(node)
                rig.executor.add_node(node)
            time.sleep(0.2)  # let callbacks in flight finish: shutdown() destroys the guard they trigger
            executor.shutdown()
    assert rig.errors() == []
    message_filters_installed = importlib.util.find_spec("message_filters") is not None
    expected_sync = "message_filters" if message_filters_installed else "core.time_sync"
    assert rig.node.backend.sync_implementation == expected_sync
    for msg in rig.stacks[:2]:
        assert_good_stack(rig, msg)
    # No camera_info from the driver: the configured 90 degree field of view.
    assert msg.camera_info.k[0] == pytest.approx((WIDTH / 2) / math.tan(math.radians(45)))
    assert [m for m, _ in rig.driver.moves][:4] == FOCUS_DISTANCES_M + [FOCUS_DISTANCES_M[0]]


def test_frames_sorted_by_reached_focus_and_camera_info_used(ros_context):
    # 0.50 is reached as 0.515 and 0.51 as 0.505: the stack order follows the reached focus.
    reached = {0.5: 0.515, 0.51: 0.505, 2.0: 2.01}
    rig = DriverRig(ros_context, focus_distances_m=[0.5, 0.51, 2.0],
                    reached_for=lambda m: reached[round(m, 3)], camera_info_fx=123.0)
    assert rig.spin_until(lambda: rig.stacks, 10.0), rig.errors()
    msg = rig.stacks[0]
    assert_good_stack(rig, msg, commanded_m=[0.5, 0.51, 2.0])
    np.testing.assert_allclose(msg.focus_distances, [0.505, 0.515, 2.01], atol=1e-6)
    assert frames_of(msg)[0, 0, 0, 0] == pixel_value(0.51)
    assert msg.camera_info.k[0] == pytest.approx(123.0) and msg.camera_info.k[2] == pytest.approx(15.5)


def test_focus_never_reached_times_out_once_per_sweep_then_recovers(ros_context):
    rig = DriverRig(ros_context, sweep_timeout_s=0.5, reach_error_m=0.3)
    rig.spin_until(lambda: False, 1.3)
    errors = rig.errors()
    assert 1 <= len(errors) <= 3, errors  # once per timed-out sweep, not on every 50 Hz tick
    assert all("timed out after 0.5 s with 0/3 frames, waiting for focus 0.500 m" in e for e in errors)
    assert "last focus state was 0.800 m, settled=True" in errors[0]
    assert rig.stacks == []
    rig.driver.reach_error_m = REACH_ERROR_M
    assert rig.spin_until(lambda: rig.stacks, 10.0), rig.errors()
    assert_good_stack(rig, rig.stacks[0])


def test_stamps_beyond_slop_are_not_paired(ros_context):
    # A driver stamping images from another clock (100 s behind its focus states).
    rig = DriverRig(ros_context, sweep_timeout_s=0.5, image_stamp_offset_s=-100.0)
    assert rig.spin_until(lambda: rig.errors(), 5.0)
    assert "no image on 'image_raw' was paired with a focus state on 'focus/state'" in rig.errors()[0]
    assert rig.stacks == []


def test_unsupported_encoding_is_a_clear_error(ros_context):
    rig = DriverRig(ros_context, encoding="16UC1")
    assert rig.spin_until(lambda: rig.errors(), 5.0)
    assert "unsupported image encoding '16UC1'" in rig.errors()[0]
    assert "image_raw" in rig.errors()[0]
    assert rig.stacks == []


@pytest.mark.parametrize("name,value", [("driver.sync_slop_s", 0.0), ("driver.sweep_timeout_s", -1.0),
                                        ("driver.focus_tolerance_m", 0.0)])
def test_bad_driver_parameters_refused(ros_context, name, value):
    context, _, add = ros_context
    node = add(Node("driver_capture_host", context=context))
    arguments = {
        "focus_distances_m": FOCUS_DISTANCES_M, "image_topic": "image_raw", "focus_command_topic": "focus/command",
        "focus_state_topic": "focus/state", "sync_slop_s": 0.02, "focus_tolerance_m": 0.02, "settle_time_s": 0.0,
        "sweep_timeout_s": 1.0, "intrinsics": CameraIntrinsics(20.0, 20.0, 15.5, 11.5, WIDTH, HEIGHT),
    }
    with pytest.raises(ValueError, match=name):
        DriverCapture(node, **{**arguments, name.removeprefix("driver."): value})


def test_uncalibrated_camera_info_falls_back_to_configured_intrinsics(ros_context):
    rig = DriverRig(ros_context, camera_info_fx=0.0)  # K all zero: a driver without calibration
    assert rig.spin_until(lambda: rig.stacks, 10.0), rig.errors()
    assert_good_stack(rig, rig.stacks[0])
    assert rig.stacks[0].camera_info.k[0] == pytest.approx((WIDTH / 2) / math.tan(math.radians(45)))
