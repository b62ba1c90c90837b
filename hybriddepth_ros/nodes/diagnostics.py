"""One DiagnosticStatus per event on /diagnostics, as robot monitoring stacks expect."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

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
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def report(self, level: bytes, message: str, values: dict[str, str] | None = None) -> None:
        status = DiagnosticStatus(level=level, name=self._name, message=message, hardware_id=self._node.get_name())
        status.values = [KeyValue(key=key, value=str(value)) for key, value in (values or {}).items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)


class DroppedMessageCounter:
    """Counts the messages a keep-last subscription never handed over, from gaps in publisher sequence numbers.

    Fed each callback's MessageInfo. A middleware that gives no publication
    sequence number makes the count unknown (None).
    """

    def __init__(self) -> None:
        self._last_sequence: dict[str, int] = {}
        self.total = 0

    def update(self, info: dict) -> int | None:
        """Messages dropped between this one and the previous one from the same publisher."""
        sequence = info.get("publication_sequence_number")
        if sequence is None:
            return None
        publisher = repr(info.get("publisher_gid"))
        last = self._last_sequence.get(publisher)
        self._last_sequence[publisher] = sequence
        if last is None or sequence <= last:  # first from this publisher, or it was restarted
            return 0
        dropped = sequence - last - 1
        self.total += dropped
        return dropped
