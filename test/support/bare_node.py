"""A node with nothing in it, run by the nodes' main() (nodes/run.py): prints "ready" just before it spins.

    python test/support/bare_node.py   ->  "ready" on stdout, then spins until a stop signal

It imports rclpy only, so it starts in about half a second: a test can stop it
many times in a few seconds.
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from hybriddepth_ros.nodes.run import run_node


def create_node() -> Node:
    node = Node("bare_node")
    print("ready", flush=True)
    return node


if __name__ == "__main__":
    sys.exit(run_node(create_node, "bare_node", ()))
