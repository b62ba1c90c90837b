"""ros2 launch hybriddepth_ros pipeline.launch.py [camera_backend:=simulated] [rviz:=true] ...

Starts focus_sweep_node and depth_fusion_node with config/pipeline.yaml (the
plan in hybriddepth_ros.pipeline_plan), and RViz with config/pipeline.rviz.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from hybriddepth_ros.pipeline_plan import CAMERA_BACKENDS, DEPTH_BACKENDS, PACKAGE, pipeline_plan

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
            parameters=[node.params_file, node.overrides],
            output="screen",
            emulate_tty=True,
        )
        for node in plan
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "camera_backend", default_value="simulated", choices=list(CAMERA_BACKENDS),
                description="focus_sweep_node capture backend",
            ),
            DeclareLaunchArgument(
                "depth_backend", default_value="focus_measure", choices=list(DEPTH_BACKENDS),
                description="depth_fusion_node backend (hybriddepth needs checkpoint_path)",
            ),
            DeclareLaunchArgument("checkpoint_path", default_value="", description="HybridDepth .ckpt"),
            DeclareLaunchArgument("device", default_value="auto", description="auto, cuda or cpu"),
            DeclareLaunchArgument(
                "params_file", default_value=str(SHARE / "config" / "pipeline.yaml"),
                description="parameters of both nodes",
            ),
            DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
            OpaqueFunction(function=_nodes_from_plan),
            Node(
                package="rviz2",
                executable="rviz2",
                arguments=["-d", str(SHARE / "config" / "pipeline.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")),
            ),
        ]
    )
