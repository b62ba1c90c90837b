"""focus_sweep_node: drives a variable-focus camera through a sweep, publishes FocalStack.

The camera is a capture backend chosen by the `backend` parameter (see
core/capture); every backend returns core FocalStacks, so adding a camera never
changes this node. Publishes `focal_stack` and a status on `/diagnostics`.
"""

from __future__ import annotations

import sys
import time
import traceback

from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from hybriddepth_ros.msg import FocalStack as FocalStackMsg

from ..core.capture.base import CaptureBackend, CaptureError
from ..core.stack.focal_stack import FocalStackError, diopter_sweep, validate_focus_distances
from . import conversions
from .qos import stream_qos
from .run import run_node
from .diagnostics import SWEEP_DIAGNOSTIC_NAME, ERROR, OK, WARN, DiagnosticReporter
from .capture_backends import create_capture_backend, declare_capture_parameters

DIAGNOSTIC_NAME = SWEEP_DIAGNOSTIC_NAME
# Backends that drive the lens to the configured sweep; the others read focus from their input.
COMMANDED_FOCUS_BACKENDS = ("simulated", "v4l2", "driver")


class FocusSweepNode(Node):
    """Runs one sweep per timer tick and publishes it as a FocalStack message."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("focus_sweep_node", **node_kwargs)
        self.declare_parameter("backend", "simulated")
        self.declare_parameter("focus_distances_m", Parameter.Type.DOUBLE_ARRAY)
        self.declare_parameter("focus_near_m", 0.3)
        self.declare_parameter("focus_far_m", 5.0)
        self.declare_parameter("focus_count", 10)
        self.declare_parameter("width", 320)
        self.declare_parameter("height", 240)
        self.declare_parameter("rate_hz", 1.0)
        self.declare_parameter("frame_id", "camera_optical_frame")
        self.declare_parameter("reliable_qos", True)
        declare_capture_parameters(self)

        self.focus_distances_m = self._sweep_distances()
        self.frame_id = self.get_parameter("frame_id").value
        if not self.frame_id:
            raise ValueError("frame_id must not be empty")
        rate_hz = float(self.get_parameter("rate_hz").value)
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.backend: CaptureBackend = create_capture_backend(
            self, self.get_parameter("backend").value, self.focus_distances_m
        )
        output_qos = stream_qos(bool(self.get_parameter("reliable_qos").value))
        self._publisher = self.create_publisher(FocalStackMsg, "focal_stack", output_qos)
        # A simulated camera knows the true depth: published for evaluation (tools.demo).
        self._truth_publisher = (
            self.create_publisher(Image, "simulated/ground_truth_depth", output_qos)
            if hasattr(self.backend, "ground_truth_depth_m")
            else None
        )
        self._diagnostics = DiagnosticReporter(self, DIAGNOSTIC_NAME)
        self.stacks_published = 0
        self.create_timer(1.0 / rate_hz, self._sweep_once)
        sweep = (
            f"focus distances (m)={[round(d, 4) for d in self.focus_distances_m]}"
            if self.backend.name in COMMANDED_FOCUS_BACKENDS
            else "focus distances from the input"
        )
        self.get_logger().info(f"focus sweep ready: backend={self.backend.name}, {sweep}, rate={rate_hz} Hz")

    def _sweep_distances(self) -> list[float]:
        """Explicit `focus_distances_m`, else `focus_count` steps near..far, even in diopters."""
        try:
            explicit = self.get_parameter("focus_distances_m").value
        except ParameterUninitializedException:  # declared without a default: not set
            explicit = None
        if explicit:
            try:
                return validate_focus_distances(list(explicit), expected_count=None).tolist()
            except FocalStackError as exc:
                raise ValueError(f"focus_distances_m: {exc}") from exc
        return diopter_sweep(
            float(self.get_parameter("focus_near_m").value),
            float(self.get_parameter("focus_far_m").value),
            int(self.get_parameter("focus_count").value),
        ).tolist()

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
        try:
            stack.validate()
        except FocalStackError as exc:
            self._diagnostics.report(ERROR, f"backend produced an unusable stack: {exc}", {})
            self.get_logger().error(f"backend produced an unusable stack: {exc}")
            return
        duration_s = time.monotonic() - started
        msg = conversions.focal_stack_to_msg(stack, FocalStackMsg, duration_s)
        self._publisher.publish(msg)
        if self._truth_publisher is not None:
            self._truth_publisher.publish(conversions.float_image(self.backend.ground_truth_depth_m, msg.header))
        self.stacks_published += 1
        self._diagnostics.report(
            OK,
            "stack published",
            {"frames": str(stack.num_frames), "sweep_s": f"{duration_s:.3f}", "backend": self.backend.name},
        )

    def _report_waiting(self) -> None:
        """A backend that reconnects (v4l2) says why no stack came: a WARN diagnostic."""
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
