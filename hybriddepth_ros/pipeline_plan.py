"""Which nodes the pipeline runs, with which parameters: shared by the launch file and the fallback runner.

`launch/pipeline.launch.py` turns this plan into launch_ros Node actions; where
launch/launch_ros are not installed (the PyPI-wheel ROS of CI),
`hybriddepth_ros.tools.run_pipeline` starts the same executables with the same
parameters, so the two cannot drift apart. ROS-free: it only builds argument lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .core.capture import CAPTURE_BACKENDS as CAMERA_BACKENDS
from .core.depth.registry import DEPTH_BACKENDS

PACKAGE = "hybriddepth_ros"


@dataclass
class NodePlan:
    """One node: its executable under lib/hybriddepth_ros, node name, params file and overrides."""

    executable: str
    name: str
    params_file: str
    overrides: dict[str, object] = field(default_factory=dict)

    def ros_arguments(self) -> list[str]:
        """The `--ros-args` tail a plain process start needs to apply this plan."""
        args = ["--ros-args", "-r", f"__node:={self.name}", "--params-file", self.params_file]
        for key, value in self.overrides.items():
            args += ["-p", f"{key}:={_ros_literal(value)}"]
        return args


def _ros_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


def default_params_file() -> str:
    """config/pipeline.yaml in the installed share directory, else in the source tree."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return str(Path(get_package_share_directory(PACKAGE)) / "config" / "pipeline.yaml")
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return str(Path(__file__).resolve().parents[1] / "config" / "pipeline.yaml")


def pipeline_plan(
    params_file: str,
    camera_backend: str = "simulated",
    depth_backend: str = "focus_measure",
    checkpoint_path: str = "",
    device: str = "auto",
) -> list[NodePlan]:
    """The sweep and fusion nodes; launch arguments become parameter overrides."""
    if camera_backend not in CAMERA_BACKENDS:
        raise ValueError(f"camera_backend must be one of {CAMERA_BACKENDS}, got '{camera_backend}'")
    if depth_backend not in DEPTH_BACKENDS:
        raise ValueError(f"depth_backend must be one of {DEPTH_BACKENDS}, got '{depth_backend}'")
    fusion_overrides: dict[str, object] = {"backend": depth_backend, "device": device}
    if checkpoint_path:
        fusion_overrides["checkpoint_path"] = checkpoint_path
    return [
        NodePlan("focus_sweep_node", "focus_sweep_node", params_file, {"backend": camera_backend}),
        NodePlan("depth_fusion_node", "depth_fusion_node", params_file, fusion_overrides),
    ]
