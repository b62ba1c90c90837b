"""Spinning real rclpy nodes in a test: collect messages over DDS until a condition holds."""

from __future__ import annotations

import time
from typing import Callable

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from hybriddepth_ros.nodes.qos import stream_qos


class Probe(Node):
    """A test node that records every message of the topics it is asked to watch."""

    def __init__(self, name: str = "test_probe", **node_kwargs) -> None:
        super().__init__(name, **node_kwargs)
        self.received: dict[str, list] = {}

    def watch(self, msg_type, topic: str, qos=stream_qos()) -> list:
        bucket = self.received.setdefault(topic, [])
        self.create_subscription(msg_type, topic, bucket.append, qos)
        return bucket


def spin_until(executor: SingleThreadedExecutor, condition: Callable[[], bool], timeout_s: float,
               every: Callable[[], None] | None = None, every_s: float = 0.5) -> bool:
    """Spin until `condition()` is true or `timeout_s` passes; call `every()` periodically (re-publish)."""
    deadline = time.monotonic() + timeout_s
    next_call = 0.0
    while time.monotonic() < deadline:
        if condition():
            return True
        if every is not None and time.monotonic() >= next_call:
            every()
            next_call = time.monotonic() + every_s
        executor.spin_once(timeout_sec=0.05)
    return condition()
