"""pipeline.launch.py and the launch-free runner start the same nodes with the same parameters.

The plan (hybriddepth_ros.pipeline_plan) is tested everywhere; the launch file
itself is evaluated with the real `launch`/`launch_ros` where they are installed
(a ROS install), and the runner's processes are started for real over DDS.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hybriddepth_ros.pipeline_plan import default_params_file, pipeline_plan, rviz_missing_reason

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "pipeline.launch.py"


def test_plan_starts_sweep_and_fusion_with_given_launch_arguments_as_overrides():
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


def test_launch_arguments_left_out_leave_the_params_file_in_charge():
    for plan in (pipeline_plan("/p.yaml"), pipeline_plan("/p.yaml", "", "", "", "")):
        assert [node.overrides for node in plan] == [{}, {}]
        assert plan[1].ros_arguments() == ["--ros-args", "-r", "__node:=depth_fusion_node", "--params-file", "/p.yaml"]
    assert pipeline_plan("/p.yaml", device="cuda")[1].overrides == {"device": "cuda"}


def _params_file_with_backends(tmp_path) -> Path:
    """A user's params file that picks the directory camera and the hybriddepth backend."""
    import cv2
    import numpy as np

    stack = tmp_path / "stack"
    stack.mkdir()
    for focus_m in (0.5, 1.0):
        cv2.imwrite(str(stack / f"frame_{focus_m}.png"), np.full((24, 32, 3), 128, np.uint8))
    params = yaml.safe_load(Path(default_params_file()).read_text())
    params["focus_sweep_node"]["ros__parameters"].update({"backend": "directory", "width": 32, "height": 24})
    params["focus_sweep_node"]["ros__parameters"]["directory"]["path"] = str(stack)
    params["depth_fusion_node"]["ros__parameters"].update({"backend": "hybriddepth", "device": "cpu"})
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("camera_backend, expected", [("", "directory"), ("simulated", "simulated")])
def test_the_params_file_backend_wins_unless_the_argument_is_given(tmp_path, camera_backend, expected):
    """The real sweep node started from the plan, as the runner and the launch file do: which backend runs."""
    pytest.importorskip("rclpy")
    from hybriddepth_ros.tools.run_pipeline import executable_path

    sweep = pipeline_plan(str(_params_file_with_backends(tmp_path)), camera_backend=camera_backend)[0]
    process = subprocess.Popen(executable_path(sweep.executable) + sweep.ros_arguments(),
                               stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "focus sweep ready" in line or "bad configuration" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert f"backend={expected}" in lines[-1], "".join(lines)


def test_params_file_configures_both_nodes_with_declared_parameters():
    params = yaml.safe_load(Path(default_params_file()).read_text())
    assert set(params) == {"focus_sweep_node", "depth_fusion_node"}
    assert params["focus_sweep_node"]["ros__parameters"]["backend"] == "simulated"
    assert params["depth_fusion_node"]["ros__parameters"]["backend"] == "focus_measure"


def _evaluated_launch_file(arguments: dict[str, str]):
    """The launch file's OpaqueFunctions (nodes, RViz) and a context holding its arguments' values."""
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
    return [e for e in description.entities if isinstance(e, launch.actions.OpaqueFunction)], context


def _launch_file_nodes(arguments: dict[str, str]):
    (nodes_from_plan, _), context = _evaluated_launch_file(arguments)
    nodes = nodes_from_plan.execute(context)
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


def test_launch_file_without_backend_arguments_passes_only_the_params_file(tmp_path):
    params_file = str(_params_file_with_backends(tmp_path))
    nodes = _launch_file_nodes({"params_file": params_file})
    assert [node._Node__expanded_parameter_arguments for node in nodes] == [[(params_file, True)]] * 2
    given = _launch_file_nodes({"params_file": params_file, "depth_backend": "focus_measure"})
    overrides = yaml.safe_load(Path(given[1]._Node__expanded_parameter_arguments[1][0]).read_text())
    assert overrides["/**"]["ros__parameters"] == {"backend": "focus_measure"}


def _fake_rviz2_prefix(tmp_path) -> Path:
    prefix = tmp_path / "rviz_prefix"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").write_text("")
    return prefix


def test_rviz_is_optional_and_its_absence_is_said(tmp_path, monkeypatch):
    pytest.importorskip("ament_index_python")
    reason = rviz_missing_reason()
    if reason is not None:  # no rviz2 in this ROS install (the PyPI wheels)
        assert "rviz2 is not installed" in reason and "running without RViz" in reason
    prefix = _fake_rviz2_prefix(tmp_path)
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{prefix}{os.pathsep}{os.environ.get('AMENT_PREFIX_PATH', '')}")
    assert rviz_missing_reason() is None
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "empty"))
    assert "rviz2 is not installed" in rviz_missing_reason()
    package_xml = (REPO / "package.xml").read_text()
    assert "<exec_depend>rviz2</exec_depend>" not in package_xml, "rviz2 is not a dependency of the package"


def _launch_rviz_actions(arguments: dict[str, str]):
    (_, rviz), context = _evaluated_launch_file(arguments)
    return rviz.execute(context) if rviz.condition.evaluate(context) else []


def test_launch_rviz_true_without_rviz2_says_so_and_starts_the_nodes_anyway(tmp_path, monkeypatch):
    launch = pytest.importorskip("launch")
    launch_ros = pytest.importorskip("launch_ros")
    assert _launch_rviz_actions({"rviz": "false"}) == []
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.environ.get("AMENT_PREFIX_PATH", "").replace("rviz2", "-"))
    if rviz_missing_reason() is None:
        pytest.skip("rviz2 is installed here")
    [message] = _launch_rviz_actions({"rviz": "true"})
    assert isinstance(message, launch.actions.LogInfo)
    assert len(_launch_file_nodes({"params_file": default_params_file()})) == 2, "the nodes start without RViz"
    prefix = _fake_rviz2_prefix(tmp_path)
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{prefix}{os.pathsep}{os.environ['AMENT_PREFIX_PATH']}")
    [rviz] = _launch_rviz_actions({"rviz": "true"})
    assert isinstance(rviz, launch_ros.actions.Node) and rviz.node_package == "rviz2"


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
