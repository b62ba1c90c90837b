"""focus_sweep_node: drives a variable-focus camera through a sweep, publishes FocalStack.

The camera is a capture backend chosen by the `backend` parameter (see
core/capture); every backend returns core FocalStacks, so adding a camera never
changes this node. Publishes `focal_stack` (each stack numbered in
`sweep_number`, 1, 2, ..., so consumers can count the ones they missed) and a
status on `/diagnostics`.
"""

from __future__ import annotations

import sys
import time
import traceback

from rclpy.node import Node
from sensor_msgs.msg import Image

from hybriddepth_ros.msg import FocalStack as FocalStackMsg

from ..core.capture import CAPTURE_BACKENDS
from ..core.capture.base import MAX_SWEEP_RATE_HZ, CaptureBackend, CaptureError
from ..core.stack.focal_stack import (
    DEFAULT_FRAME_ID,
    MAX_FOCUS_DISTANCE_M,
    MAX_FRAMES,
    MAX_IMAGE_SIDE_PX,
    MIN_FOCUS_DISTANCE_M,
    FocalStackError,
    diopter_sweep,
    validate_focus_distances,
)
from . import conversions
from .publishing import publish_or_log
from .qos import OVERRIDABLE, stream_qos
from .run import run_node
from .diagnostics import SWEEP_DIAGNOSTIC_NAME, ERROR, OK, WARN, DiagnosticReporter
from .capture_backends import CAPTURE_PARAMETERS, create_capture_backend
from .parameters import UNSET_DOUBLE_ARRAY, ConfigurationError, ParameterSpec, ParameterUpdates, declare_parameters, not_empty

DIAGNOSTIC_NAME = SWEEP_DIAGNOSTIC_NAME
# Backends that drive the lens to the configured sweep; the others read focus from their input.
COMMANDED_FOCUS_BACKENDS = ("simulated", "v4l2", "driver")


def _focus_list_problem(distances_m: list[float]) -> str | None:
    try:
        validate_focus_distances(distances_m, expected_count=None)
    except FocalStackError as exc:
        return f"focus_distances_m: {exc}"
    return None


SWEEP_PARAMETERS = (
    ParameterSpec("backend", "simulated", "Capture backend.", choices=CAPTURE_BACKENDS),
    ParameterSpec("focus_distances_m", UNSET_DOUBLE_ARRAY,
                  "Explicit sweep, metres, strictly increasing; when set it replaces focus_near_m/far_m/count.",
                  low=MIN_FOCUS_DISTANCE_M, high=MAX_FOCUS_DISTANCE_M, check=_focus_list_problem),
    ParameterSpec("focus_near_m", 0.3, "Nearest focus distance of the sweep, metres.",
                  low=MIN_FOCUS_DISTANCE_M, high=MAX_FOCUS_DISTANCE_M),
    ParameterSpec("focus_far_m", 5.0, "Farthest focus distance of the sweep, metres.",
                  low=MIN_FOCUS_DISTANCE_M, high=MAX_FOCUS_DISTANCE_M),
    ParameterSpec("focus_count", 10, "Focus distances from near to far, evenly spaced in diopters.", low=2, high=MAX_FRAMES),
    ParameterSpec("width", 640, "Frame width the camera delivers (frames are resized to it), pixels.",
                  low=8, high=MAX_IMAGE_SIDE_PX),
    ParameterSpec("height", 480, "Frame height, pixels.", low=8, high=MAX_IMAGE_SIDE_PX),
    ParameterSpec("rate_hz", 0.5, "Sweeps per second.", low=0.0, low_open=True, high=MAX_SWEEP_RATE_HZ, dynamic=True),
    ParameterSpec("frame_id", DEFAULT_FRAME_ID, "Camera optical frame of the stacks (REP 103).",
                  check=not_empty("frame_id")),
    *CAPTURE_PARAMETERS,
)


class FocusSweepNode(Node):
    """Runs one sweep per timer tick and publishes it as a FocalStack message."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("focus_sweep_node", **node_kwargs)
        values = declare_parameters(self, SWEEP_PARAMETERS)
        self.focus_distances_m = self._sweep_distances(values)
        self.frame_id = values["frame_id"]
        self.backend: CaptureBackend = create_capture_backend(self, values["backend"], self.focus_distances_m)
        self._publisher = self.create_publisher(FocalStackMsg, "focal_stack", stream_qos(),
                                                qos_overriding_options=OVERRIDABLE)
        # A simulated camera knows the true depth: published for evaluation (tools.demo).
        self._truth_publisher = (
            self.create_publisher(Image, "simulated/ground_truth_depth", stream_qos(),
                                  qos_overriding_options=OVERRIDABLE)
            if hasattr(self.backend, "ground_truth_depth_m")
            else None
        )
        self._diagnostics = DiagnosticReporter(self, DIAGNOSTIC_NAME)
        self.stacks_published = 0
        self._timer = self.create_timer(1.0 / values["rate_hz"], self._sweep_once)
        ParameterUpdates(self, SWEEP_PARAMETERS, values, self._apply_parameters)
        sweep = (
            f"focus distances (m)={[round(d, 4) for d in self.focus_distances_m]}"
            if self.backend.name in COMMANDED_FOCUS_BACKENDS
            else "focus distances from the input"
        )
        self.get_logger().info(
            f"focus sweep ready: backend={self.backend.name}, {sweep}, rate={values['rate_hz']} Hz"
        )

    def _apply_parameters(self, changes: dict) -> None:
        """Run-time changes (validated against SWEEP_PARAMETERS): the sweep rate."""
        if "rate_hz" in changes:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(1.0 / changes["rate_hz"], self._sweep_once)
            self.get_logger().info(f"sweep rate now {changes['rate_hz']} Hz")

    @staticmethod
    def _sweep_distances(values: dict) -> list[float]:
        """Explicit `focus_distances_m`, else `focus_count` steps near..far, even in diopters."""
        if values["focus_distances_m"]:
            return [float(d) for d in values["focus_distances_m"]]
        try:
            return diopter_sweep(values["focus_near_m"], values["focus_far_m"], values["focus_count"]).tolist()
        except ValueError as exc:
            raise ConfigurationError(f"focus_near_m/focus_far_m/focus_count: {exc}") from exc

    def _sweep_once(self) -> None:
        started = time.monotonic()
        try:
            stack = self.backend.capture_stack()
        except CaptureError as exc:
            self._diagnostics.report(ERROR, f"sweep failed: {exc}", {})
            self.get_logger().error(f"sweep failed: {exc}")
            return
        except Exception as exc:  # a backend bug must not kill the node
            self.get_logger().error(traceback.format_exc())
            self._diagnostics.report(ERROR, f"sweep failed: {type(exc).__name__}: {exc}", {})
            return
        if stack is None:
            self._report_waiting()
            return
        stack.frame_id = self.frame_id
        duration_s = time.monotonic() - started
        msg = conversions.focal_stack_to_msg(stack, FocalStackMsg, duration_s, sweep_number=self.stacks_published + 1)
        failure = publish_or_log(self, self._publisher, msg)
        if failure:
            self._diagnostics.report(ERROR, failure, {"backend": self.backend.name})
            return
        if self._truth_publisher is not None:
            truth = conversions.float_image(self.backend.ground_truth_depth_m, msg.header)
            publish_or_log(self, self._truth_publisher, truth)
        self.stacks_published += 1
        problems = self.backend.new_problems()
        self._diagnostics.report(
            WARN if problems else OK,
            f"stack published; {problems}" if problems else "stack published",
            {"frames": str(stack.num_frames), "sweep_s": f"{duration_s:.3f}", "backend": self.backend.name,
             **self.backend.diagnostic_values()},
        )

    def _report_waiting(self) -> None:
        """A backend that refused input (phone) or reconnects (v4l2) says so: a WARN diagnostic."""
        problems = self.backend.new_problems()
        if problems:
            self._diagnostics.report(WARN, problems, self.backend.diagnostic_values())
            return
        status = getattr(self.backend, "status", None)
        if status is None or getattr(status, "connected", True):
            return
        self._diagnostics.report(
            WARN,
            f"camera disconnected, reconnecting: {status.last_error}",
            {"reconnect_attempts": status.reconnect_attempts, "retry_delay_s": f"{status.retry_delay_s:.2f}"},
        )

    def destroy_node(self) -> None:
        backend = getattr(self, "backend", None)  # absent when the constructor failed
        if backend is not None:
            backend.close()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(FocusSweepNode, "focus_sweep_node", (ValueError, RuntimeError, CaptureError), args)


if __name__ == "__main__":
    sys.exit(main())
