"""Publishing that survives rclpy: an error while publishing is logged and the node carries on.

A node must not end because one message could not go out (e.g. an RCLError
from the middleware); the caller learns what failed and says so in its
diagnostics. While the node shuts down nothing is logged: the run loop
(nodes/run.py) stops the executor before the context goes, so this is rare.
"""

from __future__ import annotations

from rclpy.node import Node
from rclpy.publisher import Publisher

ERROR_LOG_EVERY_S = 10.0
"""A recurring publishing error is logged at most this often per node."""


def publish_or_log(node: Node, publisher: Publisher, msg) -> str | None:
    """Publish `msg`; None when it went out, else why not (already logged)."""
    try:
        publisher.publish(msg)
    except Exception as exc:  # rclpy raises RCLError, RuntimeError, InvalidHandle, TypeError ...
        reason = f"publishing on {publisher.topic_name} failed: {type(exc).__name__}: {exc}"
        if node.context.ok():
            node.get_logger().error(reason, throttle_duration_sec=ERROR_LOG_EVERY_S)
        return reason
    return None
