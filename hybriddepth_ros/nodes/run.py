"""The main() every node shares: configuration errors exit 2 with one clear line, Ctrl-C exits 0."""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
import rclpy.executors
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node


def run_node(create_node: Callable[[], Node], name: str, configuration_errors: tuple[type[Exception], ...],
             args=None) -> int:
    rclpy.init(args=args)
    try:
        node = create_node()
    except (*configuration_errors, InvalidParameterTypeException, InvalidParameterValueException) as exc:
        print(f"{name}: bad configuration: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
