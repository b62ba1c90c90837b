"""The depth fusion node on a test executor, with a stack publisher and a probe of every output."""

from __future__ import annotations

import copy
import math

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from hybriddepth_ros.msg import FocalStack as FocalStackMsg
from hybriddepth_ros.nodes import conversions
from hybriddepth_ros.nodes.depth_fusion_node import DIAGNOSTIC_NAME, DepthFusionNode
from hybriddepth_ros.nodes.qos import stream_qos

from .ros_harness import Probe, spin_until

WIDTH, HEIGHT = 160, 120
FRAME_ID = "test_camera_optical_frame"


class FusionRig:
    """The fusion node, a publisher of stacks and a probe of every output, on one executor."""

    def __init__(self, ros_context, watch_cloud: bool = True, **parameters):
        context, self.executor, add = ros_context
        overrides = [Parameter(key, value=value) for key, value in {"device": "cpu", **parameters}.items()]
        self.node = add(DepthFusionNode(context=context, parameter_overrides=overrides))
        self.probe = add(Probe(context=context))
        self.depth = self.probe.watch(Image, "depth/image_rect")
        self.confidence = self.probe.watch(Image, "depth/confidence")
        self.info = self.probe.watch(CameraInfo, "depth/camera_info")
        self.cloud = self.probe.watch(PointCloud2, "depth/points") if watch_cloud else None
        self.diagnostics = self.probe.watch(DiagnosticArray, "/diagnostics", 50)
        self.publisher = self.probe.create_publisher(FocalStackMsg, "focal_stack", stream_qos())

    def status_for(self, stamp_s: float):
        for array in self.diagnostics:
            for status in array.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name == DIAGNOSTIC_NAME and math.isclose(float(values.get("stamp", -1)), stamp_s, abs_tol=1e-6):
                    return status
        return None

    def send(self, msg, timeout_s: float = 60.0):
        """Publish `msg` (re-sent until the node reacts: best-effort QoS) and return its diagnostic."""
        stamp_s = conversions.stamp_to_seconds(msg.header.stamp)
        reacted = spin_until(
            self.executor, lambda: self.status_for(stamp_s) is not None, timeout_s,
            every=lambda: self.publisher.publish(msg), every_s=2.0,
        )
        assert reacted, "the fusion node never reported on the stack"
        return self.status_for(stamp_s)

    def outputs_for(self, stamp_s: float):
        def pick(bucket):
            return [m for m in bucket if math.isclose(conversions.stamp_to_seconds(m.header.stamp), stamp_s, abs_tol=1e-6)]

        buckets = (self.depth, self.confidence, self.info) + ((self.cloud,) if self.cloud is not None else ())
        spin_until(self.executor, lambda: all(pick(b) for b in buckets), 10.0)
        return tuple(pick(b) if b is not None else [] for b in (self.depth, self.confidence, self.info, self.cloud))


def restamp(msg, seconds: float, sweep_number: int | None = None):
    """A copy of the stack message with another stamp (and sweep_number, when given)."""
    msg = copy.deepcopy(msg)
    conversions.seconds_to_stamp(seconds, msg.header.stamp)
    if sweep_number is not None:
        msg.sweep_number = sweep_number
    return msg
