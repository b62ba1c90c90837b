"""One DiagnosticStatus per event on /diagnostics, as robot monitoring stacks expect."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR


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
