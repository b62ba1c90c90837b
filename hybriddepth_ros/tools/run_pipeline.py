"""Start the pipeline's nodes as processes, the way pipeline.launch.py does, without `launch`.

The ROS 2 PyPI wheels (and so CI) carry no launch/launch_ros; this runner starts
the same installed executables with the same parameters (hybriddepth_ros.pipeline_plan).
    python -m hybriddepth_ros.tools.run_pipeline [--camera-backend simulated] ...
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..pipeline_plan import (
    CAMERA_BACKENDS,
    DEPTH_BACKENDS,
    PACKAGE,
    RVIZ_PACKAGE,
    NodePlan,
    default_params_file,
    pipeline_plan,
    rviz_config_file,
    rviz_missing_reason,
)


def executable_path(name: str) -> list[str]:
    """Command that runs node `name`: the installed lib/<package>/<name>, else the module."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        try:
            path = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / name
            if path.exists():
                return [sys.executable, str(path)]
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return [sys.executable, "-m", f"{PACKAGE}.nodes.{name}"]


def rviz_command() -> list[str]:
    """rviz2 with the pipeline's display configuration (call when rviz_missing_reason() is None)."""
    from ament_index_python.packages import get_package_prefix

    return [str(Path(get_package_prefix(RVIZ_PACKAGE)) / "lib" / RVIZ_PACKAGE / "rviz2"), "-d", rviz_config_file()]


def start_nodes(plan: list[NodePlan], env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """Start every node of the plan; the caller stops them with stop_nodes."""
    return [
        subprocess.Popen(executable_path(node.executable) + node.ros_arguments(), env=env or dict(os.environ))
        for node in plan
    ]


def stop_nodes(processes: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """SIGINT (rclpy's clean shutdown), then kill what is left after `timeout_s`."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    not_given = " (default: the params file's)"
    parser.add_argument("--camera-backend", choices=CAMERA_BACKENDS, help="focus_sweep_node backend" + not_given)
    parser.add_argument("--depth-backend", choices=DEPTH_BACKENDS, help="depth_fusion_node backend" + not_given)
    parser.add_argument("--checkpoint-path", help="HybridDepth .ckpt" + not_given)
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N" + not_given)
    parser.add_argument("--params-file", default=default_params_file())
    parser.add_argument("--rviz", action="store_true", help="start RViz too (when rviz2 is installed)")
    args = parser.parse_args(argv)
    plan = pipeline_plan(
        args.params_file, args.camera_backend, args.depth_backend, args.checkpoint_path, args.device
    )
    processes = start_nodes(plan)
    viewers = []
    if args.rviz:
        reason = rviz_missing_reason()
        if reason:
            print(reason, file=sys.stderr)
        else:
            viewers.append(subprocess.Popen(rviz_command()))
    try:
        while all(process.poll() is None for process in processes):  # closing RViz stops nothing
            try:
                processes[0].wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        pass
    finally:
        stop_nodes(processes + viewers)
    return max(abs(process.returncode or 0) for process in processes)


if __name__ == "__main__":
    sys.exit(main())
