"""ros2 launch hybriddepth_ros pipeline.launch.py [camera_backend:=simulated] [rviz:=true] ...

Starts focus_sweep_node and depth_fusion_node with the params file (default
config/pipeline.yaml; the plan in hybriddepth_ros.pipeline_plan), and RViz with
config/pipeline.rviz when asked for and installed. `camera_backend`,
`depth_backend`, `checkpoint_path` and `device` override the params file only
when given; left out, the file's values apply.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from hybriddepth_ros.pipeline_plan import (
    CAMERA_BACKENDS,
    DEPTH_BACKENDS,
    PACKAGE,
    RVIZ_PACKAGE,
    pipeline_plan,
    rviz_missing_reason,
)

SHARE = Path(get_package_share_directory(PACKAGE))


def _nodes_from_plan(context):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    plan = pipeline_plan(
        params_file=value("params_file"),
        camera_backend=value("camera_backend"),
        depth_backend=value("depth_backend"),
        checkpoint_path=value("checkpoint_path"),
        device=value("device"),
    )
    return [
        Node(
            package=PACKAGE,
            executable=node.executable,
            name=node.name,
            parameters=[node.params_file, node.overrides] if node.overrides else [node.params_file],
            output="screen",
            emulate_tty=True,
        )
        for node in plan
    ]


def _rviz(context):
    """RViz when rviz2 is installed; otherwise a clear message, and the nodes run on without it."""
    reason = rviz_missing_reason()
    if reason:
        return [LogInfo(msg=reason)]
    return [Node(package=RVIZ_PACKAGE, executable="rviz2",
                 arguments=["-d", str(SHARE / "config" / "pipeline.rviz")], output="screen")]


def _not_given(what: str) -> str:
    return f"{what}; empty (default): the params file's value"


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "camera_backend", default_value="",
                description=_not_given(f"focus_sweep_node backend: {' | '.join(CAMERA_BACKENDS)}"),
            ),
            DeclareLaunchArgument(
                "depth_backend", default_value="",
                description=_not_given(f"depth_fusion_node backend: {' | '.join(DEPTH_BACKENDS)} "
                                       "(hybriddepth needs checkpoint_path)"),
            ),
            DeclareLaunchArgument("checkpoint_path", default_value="", description=_not_given("HybridDepth .ckpt")),
            DeclareLaunchArgument("device", default_value="", description=_not_given("auto | cpu | cuda | cuda:N")),
            DeclareLaunchArgument(
                "params_file", default_value=str(SHARE / "config" / "pipeline.yaml"),
                description="parameters of both nodes",
            ),
            DeclareLaunchArgument("rviz", default_value="false",
                                  description="start RViz (needs rviz2, an optional dependency)"),
            OpaqueFunction(function=_nodes_from_plan),
            OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("rviz"))),
        ]
    )
