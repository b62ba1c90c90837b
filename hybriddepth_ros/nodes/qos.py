"""QoS of the pipeline's topics, and the standard `qos_overrides` parameters that change it.

Default of every image-carrying topic: reliable, keep last 5, volatile (the
fusion node's `focal_stack` subscription keeps the last 1: while a stack is
fused only the newest waiting one is worth fusing next). Reliable because a
FocalStack is one multi-megabyte sample: under best effort over UDP one lost
fragment loses the whole sweep, and the same holds for depth images and clouds.
Measured on loopback with Fast DDS defaults: the demo needed 180 s to get 3
complete stacks through under best effort, 7.5 s with reliable publishers and
subscribers. A reliable publisher still serves best-effort subscribers (RViz,
image_transport), so nothing downstream loses compatibility.

Every publisher and subscription of the nodes is created with `OVERRIDABLE`
(rclpy's QoSOverridingOptions with the default policies), so the standard ROS 2
read-only parameters `qos_overrides.<topic>.publisher|subscription.reliability|history|depth`
change them at start-up, e.g. in a params file:

    depth_fusion_node:
      ros__parameters:
        qos_overrides:
          /focal_stack:
            subscription:
              reliability: best_effort
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

STREAM_DEPTH = 5
"""Messages a publisher or subscriber of an image-carrying topic keeps by default."""

OVERRIDABLE = QoSOverridingOptions.with_default_policies()
"""Declares the qos_overrides parameters (reliability, history, depth) of a publisher or subscription."""


def stream_qos(depth: int = STREAM_DEPTH) -> QoSProfile:
    """Reliable, keep-last `depth`, volatile: the pipeline's default for images, stacks and clouds."""
    return QoSProfile(
        depth=depth,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
