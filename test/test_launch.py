"""pipeline.launch.py and the launch-free runner start the same nodes with the same parameters.

The plan (hybriddepth_ros.pipeline_plan) is tested everywhere; the launch file
itself is evaluated with the real `launch`/`launch_ros` where they are installed
(a ROS install), and the runner's processes are started for real over DDS.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import yaml

from hybriddepth_ros.pipeline_plan import default_params_file, pipeline_plan

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "pipeline.launch.py"


def test_plan_starts_sweep_and_fusion_with_launch_arguments_as_overrides():
    plan = pipeline_plan("/p.yaml", camera_backend="directory", depth_backend="hybriddepth",
                         checkpoint_path="/w/x.ckpt", device="cpu")
    assert [(n.executable, n.name) for n in plan] == [
        ("focus_sweep_node", "focus_sweep_node"), ("depth_fusion_node", "depth_fusion_node")]
    assert plan[0].overrides == {"backend": "directory"}
    assert plan[1].overrides == {"backend": "hybriddepth", "device": "cpu", "checkpoint_path": "/w/x.ckpt"}
    assert plan[1].ros_arguments() == [
        "--ros-args", "-r", "__node:=depth_fusion_node", "--params-file", "/p.yaml",
        "-p", "backend:=hybriddepth", "-p", "device:=cpu", "-p", "checkpoint_path:=/w/x.ckpt"]
    with pytest.raises(ValueError, match="camera_backend"):
        pipeline_plan("/p.yaml", camera_backend="kinect")


def test_params_file_configures_both_nodes_with_declared_parameters():
    params = yaml.safe_load(Path(default_params_file()).read_text())
    assert set(params) == {"focus_sweep_node", "depth_fusion_node"}
    assert params["focus_sweep_node"]["ros__parameters"]["backend"] == "simulated"
    assert params["depth_fusion_node"]["ros__parameters"]["backend"] == "focus_measure"


def _launch_file_nodes(arguments: dict[str, str]):
    launch = pytest.importorskip("launch")
    pytest.importorskip("launch_ros")
    spec = importlib.util.spec_from_file_location("pipeline_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = launch.LaunchContext()
    for entity in description.entities:
        if isinstance(entity, launch.actions.DeclareLaunchArgument):
            entity.visit(context)
    context.launch_configurations.update(arguments)
    opaque = next(e for e in description.entities if isinstance(e, launch.actions.OpaqueFunction))
    nodes = opaque.execute(context)
    for node in nodes:
        node._perform_substitutions(context)
    return nodes


@pytest.mark.parametrize("camera_backend,depth_backend", [("simulated", "focus_measure"), ("v4l2", "hybriddepth")])
def test_launch_file_starts_exactly_the_plan(camera_backend, depth_backend):
    params_file = default_params_file()
    arguments = {"camera_backend": camera_backend, "depth_backend": depth_backend,
                 "checkpoint_path": "/w/x.ckpt", "device": "cpu", "params_file": params_file}
    nodes = _launch_file_nodes(arguments)
    plan = pipeline_plan(params_file, camera_backend, depth_backend, "/w/x.ckpt", "cpu")
    assert len(nodes) == len(plan)
    for node, planned in zip(nodes, plan):
        assert (node.node_package, node.node_executable, node.node_name.split("/")[-1]) == (
            "hybriddepth_ros", planned.executable, planned.name)
        expanded = node._Node__expanded_parameter_arguments
        assert expanded[0] == (planned.params_file, True)
        overrides = yaml.safe_load(Path(expanded[1][0]).read_text())["/**"]["ros__parameters"]
        assert overrides == planned.overrides


def test_runner_starts_the_installed_nodes_and_depth_flows_over_dds(tmp_path):
    """The launch-free runner: real processes from the plan, depth received by a probe."""
    rclpy = pytest.importorskip("rclpy")
    import rclpy.executors
    from sensor_msgs.msg import Image

    from hybriddepth_ros.tools.run_pipeline import start_nodes, stop_nodes
    from support.ros_harness import Probe, spin_until

    plan = pipeline_plan(default_params_file())
    plan[0].overrides.update({"width": 96, "height": 72, "focus_count": 6, "rate_hz": 2.0})
    plan[1].overrides.update({"device": "cpu"})
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    probe = Probe("runner_probe", context=context)
    processes = start_nodes(plan, env=dict(os.environ))
    try:
        executor.add_node(probe)
        depth = probe.watch(Image, "depth/image_rect")
        assert spin_until(executor, lambda: len(depth) >= 1, timeout_s=90.0), "no depth from the runner's nodes"
        assert (depth[0].width, depth[0].height, depth[0].encoding) == (96, 72, "32FC1")
        assert depth[0].header.frame_id == "camera_optical_frame"
    finally:
        stop_nodes(processes)
        executor.shutdown()
        probe.destroy_node()
        rclpy.shutdown(context=context)
    assert all(p.returncode == 0 for p in processes), [p.returncode for p in processes]
