"""depth_fusion_node: FocalStack in; metric depth, confidence, camera info and cloud out.

Subscribes `focal_stack` (hybriddepth_ros/FocalStack) and publishes, in the
stack's camera optical frame with the stack's stamp:
  depth/image_rect   sensor_msgs/Image 32FC1, metres, NaN where unknown (REP 118)
  depth/confidence   sensor_msgs/Image 32FC1 in [0, 1]
  depth/camera_info  sensor_msgs/CameraInfo of the depth image
  depth/points       sensor_msgs/PointCloud2, organised, x y z rgb (if publish_cloud)
  /diagnostics       diagnostic_msgs/DiagnosticArray, one status per stack
Bad stacks are logged and reported as an ERROR diagnostic; nothing is published
for them and the node carries on with the next stack.

While a stack is fused, a newer one replaces any stack still waiting (none
queue up). Each diagnostic counts the stacks dropped that way since the previous
fused one, from gaps in the publisher's sequence numbers: more than none means
fusion is slower than the camera, and the status is WARN.
"""

from __future__ import annotations

import sys
import time
import traceback

from rclpy.node import Node
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from hybriddepth_ros.msg import FocalStack as FocalStackMsg

from ..core.depth.registry import choose_depth_backend
from ..core.stack.focal_stack import FocalStackError
from ..core.depth.fusion import DepthFusion, FusedDepth
from ..core.depth.pointcloud import back_project
from . import conversions
from .qos import stream_qos
from .run import run_node
from .diagnostics import FUSION_DIAGNOSTIC_NAME, ERROR, OK, WARN, DiagnosticReporter, DroppedMessageCounter

DIAGNOSTIC_NAME = FUSION_DIAGNOSTIC_NAME


class DepthFusionNode(Node):
    """Thin ROS wrapper around core.fusion.DepthFusion."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("depth_fusion_node", **node_kwargs)
        self.declare_parameter("backend", "focus_measure")
        self.declare_parameter("device", "auto")
        self.declare_parameter("checkpoint_path", "")
        self.declare_parameter("relative_weights_path", "")
        self.declare_parameter("relative_encoder", "vits")
        self.declare_parameter("relative_version", 1)
        self.declare_parameter("dfv_weights_path", "")
        self.declare_parameter("precision", "fp32")
        self.declare_parameter("relative_input", "reference")
        self.declare_parameter("alignment", "least_squares")
        self.declare_parameter("metric_branch", "dfv")
        self.declare_parameter("working_height", 480)
        self.declare_parameter("working_width", 640)
        self.declare_parameter("min_depth_m", 0.1)
        self.declare_parameter("max_depth_m", 10.0)
        self.declare_parameter("confidence_threshold", 0.5)
        self.declare_parameter("publish_cloud", True)
        self.declare_parameter("cloud_decimation", 1)
        self.declare_parameter("reliable_qos", True)

        self._backend_name, backend = self._create_backend()
        self._fusion = DepthFusion(
            backend=backend,
            min_depth_m=self._param("min_depth_m"),
            max_depth_m=self._param("max_depth_m"),
            confidence_threshold=self._param("confidence_threshold"),
        )
        self._publish_cloud = bool(self._param("publish_cloud"))
        self._cloud_decimation = int(self._param("cloud_decimation"))
        if self._cloud_decimation < 1:
            raise ValueError(f"cloud_decimation must be >= 1, got {self._cloud_decimation}")

        reliable = bool(self._param("reliable_qos"))
        output_qos = stream_qos(reliable)
        self._depth_pub = self.create_publisher(Image, "depth/image_rect", output_qos)
        self._confidence_pub = self.create_publisher(Image, "depth/confidence", output_qos)
        self._info_pub = self.create_publisher(CameraInfo, "depth/camera_info", output_qos)
        self._cloud_pub = self.create_publisher(PointCloud2, "depth/points", output_qos)
        self._diagnostics = DiagnosticReporter(self, DIAGNOSTIC_NAME)
        self._dropped_stacks = DroppedMessageCounter()
        # Depth 1: while a stack is fused, only the newest waiting one is worth fusing next.
        self.create_subscription(FocalStackMsg, "focal_stack", self._on_stack, stream_qos(reliable, depth=1))
        self.get_logger().info(
            f"depth fusion ready: backend={self._backend_name} on {getattr(backend, 'device', 'cpu')}"
        )

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _create_backend(self):
        """The configured backend, or the weight-free one by the registry's fallback policy (said once)."""
        hybriddepth_options = {
            "checkpoint_path": self._param("checkpoint_path") or None,
            "relative_weights_path": self._param("relative_weights_path") or None,
            "relative_encoder": self._param("relative_encoder"),
            "relative_version": int(self._param("relative_version")),
            "dfv_weights_path": self._param("dfv_weights_path") or None,
            "precision": self._param("precision"),
            "relative_input": self._param("relative_input"),
            "alignment": self._param("alignment"),
            "metric_branch": self._param("metric_branch"),
            "working_size": (int(self._param("working_height")), int(self._param("working_width"))),
        }
        choice = choose_depth_backend(
            self._param("backend"), self._param("device"), {"hybriddepth": hybriddepth_options}
        )
        if choice.fallback_reason:
            log = self.get_logger().error if choice.fallback_is_error else self.get_logger().warning
            log(f"backend '{choice.requested}': {choice.fallback_reason}")
        return choice.name, choice.backend

    def _on_stack(self, msg: FocalStackMsg, info: MessageInfo) -> None:
        received = time.perf_counter()
        dropped = self._dropped_stacks.update(info)
        try:
            stack = conversions.focal_stack_from_msg(msg)
            if not stack.frame_id:
                raise conversions.ConversionError("focal stack header.frame_id is empty")
            fused = self._fusion.process(stack)
        except (conversions.ConversionError, FocalStackError) as exc:
            self._report_error(msg, f"rejected focal stack: {exc}")
            return
        except Exception as exc:  # a bug or a backend failure must not kill the node
            self.get_logger().error(traceback.format_exc())
            self._report_error(msg, f"depth fusion failed: {type(exc).__name__}: {exc}")
            return
        self._publish(msg, fused)
        latency_s = time.perf_counter() - received
        self._report_published(msg, fused, latency_s, dropped)

    def _publish(self, msg: FocalStackMsg, fused: FusedDepth) -> None:
        header = msg.header
        intrinsics = fused.stack.intrinsics
        self._depth_pub.publish(conversions.float_image(fused.depth_m, header))
        self._confidence_pub.publish(conversions.float_image(fused.confidence, header))
        self._info_pub.publish(conversions.intrinsics_to_camera_info(intrinsics, header))
        if self._publish_cloud:
            step = self._cloud_decimation
            points = back_project(fused.depth_m, intrinsics, step)
            colours = fused.reference_rgb[::step, ::step]
            self._cloud_pub.publish(conversions.organised_cloud(points, colours, header))

    def _report_published(self, msg: FocalStackMsg, fused: FusedDepth, latency_s: float, dropped: int | None) -> None:
        values = {
            "backend": self._backend_name,
            "latency_s": f"{latency_s:.4f}",
            "stacks_dropped": "unknown" if dropped is None else str(dropped),
            "stacks_dropped_total": "unknown" if dropped is None else str(self._dropped_stacks.total),
            "coverage": f"{fused.coverage:.4f}",
            "stamp": f"{conversions.stamp_to_seconds(msg.header.stamp):.9f}",
        }
        values.update({f"{stage}_s": f"{seconds:.4f}" for stage, seconds in fused.timings_s.items()})
        if dropped:
            text = f"depth published; {dropped} newer stack(s) arrived while fusing and were dropped"
            self.get_logger().warning(
                f"{text}: fusion ({latency_s:.3f} s per stack) is slower than the camera", throttle_duration_sec=30.0
            )
            self._diagnostics.report(WARN, text, values)
        else:
            self._diagnostics.report(OK, "depth published", values)

    def _report_error(self, msg: FocalStackMsg, text: str) -> None:
        self.get_logger().error(text)
        stamp = f"{conversions.stamp_to_seconds(msg.header.stamp):.9f}"
        self._diagnostics.report(ERROR, text, {"stamp": stamp})


def main(args=None) -> int:
    return run_node(DepthFusionNode, "depth_fusion_node", (ValueError, RuntimeError), args)


if __name__ == "__main__":
    sys.exit(main())
