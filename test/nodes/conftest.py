"""Fixtures of the node tests: an rclpy context per test, a simulated stack message per module.

Everything here needs rclpy and the generated messages; without them (a pip
install of the ROS-free core) this folder is not collected.
"""

import pytest

try:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
except ImportError:  # no ROS: only the core's tests run
    collect_ignore_glob = ["*.py"]
else:
    from hybriddepth_ros.core.capture.simulated import SimulatedCapture
    from hybriddepth_ros.core.stack.focal_stack import diopter_sweep
    from hybriddepth_ros.msg import FocalStack as FocalStackMsg
    from hybriddepth_ros.nodes import conversions
    from support.fusion_rig import FRAME_ID, HEIGHT, WIDTH


@pytest.fixture
def ros_context():
    """An initialised rclpy context and an executor; everything is shut down afterwards."""
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    nodes: list[Node] = []

    def add(node: Node) -> Node:
        nodes.append(node)
        executor.add_node(node)
        return node

    yield context, executor, add
    for node in nodes:
        executor.remove_node(node)
        node.destroy_node()
    executor.shutdown()
    rclpy.shutdown(context=context)


@pytest.fixture(scope="module")
def simulated():
    """One simulated stack (as a message) and its ground-truth depth."""
    camera = SimulatedCapture(focus_distances_m=diopter_sweep(0.3, 5.0, 8).tolist(), width=WIDTH, height=HEIGHT, seed=3)
    stack = camera.capture_stack()
    stack.frame_id = FRAME_ID
    return conversions.focal_stack_to_msg(stack, FocalStackMsg), camera.ground_truth_depth_m.copy()
