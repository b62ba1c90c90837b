"""Which nodes the pipeline runs, with which parameters: shared by the launch file and the fallback runner.

`launch/pipeline.launch.py` turns this plan into launch_ros Node actions; where
launch/launch_ros are not installed (the PyPI-wheel ROS of CI),
`hybriddepth_ros.tools.run_pipeline` starts the same executables with the same
parameters, so the two cannot drift apart. ROS-free: it only builds argument lists.

Launch arguments override the params file only when given: an empty value
(their default) leaves the file's setting, so `backend`, `device` and
`checkpoint_path` in a user's params file take effect under `ros2 launch` too.
RViz is optional (not a dependency of the package): `rviz_missing_reason()`
says why it cannot start, and both starters then run without it.
"""

from __future__ import annotations

import os
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
    camera_backend: str | None = None,
    depth_backend: str | None = None,
    checkpoint_path: str | None = None,
    device: str | None = None,
) -> list[NodePlan]:
    """The sweep and fusion nodes; each launch argument given (not None or '') overrides the params file."""
    if camera_backend and camera_backend not in CAMERA_BACKENDS:
        raise ValueError(f"camera_backend must be one of {CAMERA_BACKENDS}, got '{camera_backend}'")
    if depth_backend and depth_backend not in DEPTH_BACKENDS:
        raise ValueError(f"depth_backend must be one of {DEPTH_BACKENDS}, got '{depth_backend}'")
    given = lambda **values: {key: value for key, value in values.items() if value}  # noqa: E731
    return [
        NodePlan("focus_sweep_node", "focus_sweep_node", params_file, given(backend=camera_backend)),
        NodePlan("depth_fusion_node", "depth_fusion_node", params_file,
                 given(backend=depth_backend, device=device, checkpoint_path=checkpoint_path)),
    ]


RVIZ_PACKAGE = "rviz2"


def rviz_config_file() -> str:
    """config/pipeline.rviz next to the params file default_params_file() finds."""
    return str(Path(default_params_file()).with_name("pipeline.rviz"))


def rviz_missing_reason() -> str | None:
    """Why RViz cannot be started here (rviz2 is not installed), or None when it can."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return "rviz:=true, but ament_index_python is missing, so rviz2 cannot be found: running without RViz"
    try:
        get_package_prefix(RVIZ_PACKAGE)
    except PackageNotFoundError:
        distro = os.environ.get("ROS_DISTRO", "<distro>")
        return (f"rviz:=true, but rviz2 is not installed (e.g. sudo apt install ros-{distro}-rviz2): "
                "running without RViz")
    return None
