"""One DiagnosticStatus per event on /diagnostics, as robot monitoring stacks expect."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from .publishing import publish_or_log
from .qos import OVERRIDABLE

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR

SWEEP_DIAGNOSTIC_NAME = "hybriddepth_ros: focus sweep"
FUSION_DIAGNOSTIC_NAME = "hybriddepth_ros: depth fusion"
RECORDER_DIAGNOSTIC_NAME = "hybriddepth_ros: dataset recorder"
"""The status names on /diagnostics, for monitoring tools (and the demo) to pick the pipeline's out."""


class DiagnosticReporter:
    """Publishes the node's status under a fixed name on /diagnostics."""

    def __init__(self, node: Node, name: str) -> None:
        self._node = node
        self._name = name
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10,
                                                qos_overriding_options=OVERRIDABLE)

    def report(self, level: bytes, message: str, values: dict[str, str] | None = None) -> None:
        status = DiagnosticStatus(level=level, name=self._name, message=message, hardware_id=self._node.get_name())
        status.values = [KeyValue(key=key, value=str(value)) for key, value in (values or {}).items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        publish_or_log(self._node, self._publisher, array)


class DroppedStackCounter:
    """Counts the stacks a subscriber never got, from gaps in FocalStack.sweep_number.

    The number travels in the message, so this works on every ROS 2
    distribution and middleware (Humble's rclpy shows Python subscribers no
    sequence numbers, Jazzy's no publisher id). Stacks are told apart by
    header.frame_id, one camera per frame.
    """

    def __init__(self) -> None:
        self._last_number: dict[str, int] = {}
        self.total = 0

    def update(self, source: str, sweep_number: int) -> int | None:
        """Stacks missed between this one and the previous one of `source`; None when the stack is not numbered."""
        if sweep_number <= 0:
            return None
        last = self._last_number.get(source)
        self._last_number[source] = sweep_number
        if last is None or sweep_number <= last:  # first from this source, or its publisher restarted
            return 0
        dropped = sweep_number - last - 1
        self.total += dropped
        return dropped
