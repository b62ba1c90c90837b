"""Parameters of focus_sweep_node's capture backends, and building the chosen one.

Each backend's parameters live under its own prefix (`simulated.`, `v4l2.`,
`directory.`, `phone.`, `driver.`); `camera.` holds intrinsics shared by the real
cameras. Adding a backend means a declare block and a build branch here, nothing
in the node itself.
"""

from __future__ import annotations

import math

from rclpy.node import Node

from ..core.stack.camera import CameraIntrinsics
from ..core.capture.base import CaptureBackend

_PARAMETERS = {
    "camera.horizontal_fov_deg": 70.0,
    "camera.fx": 0.0,
    "camera.fy": 0.0,
    "camera.cx": 0.0,
    "camera.cy": 0.0,
    "simulated.seed": 0,
    "simulated.scene_change_every": 0,
    "simulated.noise_std": 1.0,
    "v4l2.device": "/dev/video0",
    "v4l2.calibration_file": "",
    "v4l2.settle_frames": 3,
    "v4l2.settle_time_s": 0.0,
    "directory.path": "",
    "directory.loop": True,
    "phone.host": "127.0.0.1",
    "phone.port": 8765,
    "phone.token": "",
    "phone.max_message_bytes": 8 * 1024 * 1024,
    "driver.image_topic": "image_raw",
    "driver.focus_command_topic": "focus/command",
    "driver.focus_state_topic": "focus/state",
    "driver.camera_info_topic": "camera_info",
    "driver.sync_slop_s": 0.02,
    "driver.focus_tolerance_m": 0.02,
    "driver.settle_time_s": 0.05,
    "driver.sweep_timeout_s": 5.0,
}


def declare_capture_parameters(node: Node) -> None:
    for name, default in _PARAMETERS.items():
        node.declare_parameter(name, default)


def configured_intrinsics(node: Node, width: int, height: int) -> CameraIntrinsics:
    """`camera.fx/fy/cx/cy` when fx > 0, else a centred pinhole from `camera.horizontal_fov_deg`."""
    value = lambda name: float(node.get_parameter(name).value)  # noqa: E731
    if value("camera.fx") > 0:
        return CameraIntrinsics(
            fx=value("camera.fx"), fy=value("camera.fy") or value("camera.fx"),
            cx=value("camera.cx"), cy=value("camera.cy"), width=width, height=height,
        )
    fov_deg = value("camera.horizontal_fov_deg")
    if not 0 < fov_deg < 180:
        raise ValueError(f"camera.horizontal_fov_deg must be in (0, 180), got {fov_deg}")
    focal_px = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return CameraIntrinsics(
        fx=focal_px, fy=focal_px, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0, width=width, height=height
    )


def create_capture_backend(node: Node, name: str, focus_distances_m: list[float]) -> CaptureBackend:
    """The backend called `name`, configured from `node`'s parameters."""
    value = lambda param: node.get_parameter(param).value  # noqa: E731
    width, height = int(value("width")), int(value("height"))
    if name == "simulated":
        from ..core.capture.simulated import SimulatedCapture

        return SimulatedCapture(
            focus_distances_m=focus_distances_m,
            width=width,
            height=height,
            seed=int(value("simulated.seed")),
            scene_change_every=int(value("simulated.scene_change_every")),
            noise_std=float(value("simulated.noise_std")),
        )
    if name == "v4l2":
        from ..core.capture.v4l2 import V4L2Capture
        from ..core.capture.focus_calibration import FocusCalibration

        calibration_file = value("v4l2.calibration_file")
        if not calibration_file:
            raise ValueError(
                "the v4l2 backend needs v4l2.calibration_file, the lens-unit -> metres table "
                "written by `python -m hybriddepth_ros.tools.calibrate_focus`"
            )
        device = value("v4l2.device")
        return V4L2Capture(
            device=int(device) if str(device).isdigit() else device,
            focus_distances_m=focus_distances_m,
            calibration=FocusCalibration.load(calibration_file),
            intrinsics=configured_intrinsics(node, width, height),
            settle_frames=int(value("v4l2.settle_frames")),
            settle_time_s=float(value("v4l2.settle_time_s")),
            frame_size_px=(width, height),
        )
    if name == "directory":
        from ..core.capture.directory import DirectoryCapture

        if not value("directory.path"):
            raise ValueError("the directory backend needs directory.path (a focal-stack folder)")
        return DirectoryCapture(
            root=value("directory.path"),
            width_px=width,
            height_px=height,
            horizontal_fov_deg=float(value("camera.horizontal_fov_deg")),
            intrinsics=configured_intrinsics(node, width, height) if value("camera.fx") > 0 else None,
            loop=bool(value("directory.loop")),
        )
    if name == "phone":
        from ..core.capture.phone.server import PhoneCapture

        if not value("phone.token"):
            raise ValueError("the phone backend needs phone.token (the secret the phone app sends)")
        return PhoneCapture(
            token=value("phone.token"),
            host=value("phone.host"),
            port=int(value("phone.port")),
            max_message_bytes=int(value("phone.max_message_bytes")),
        )
    if name == "driver":
        from .driver_capture import DriverCapture

        return DriverCapture(
            node,
            focus_distances_m=focus_distances_m,
            image_topic=value("driver.image_topic"),
            focus_command_topic=value("driver.focus_command_topic"),
            focus_state_topic=value("driver.focus_state_topic"),
            camera_info_topic=value("driver.camera_info_topic"),
            sync_slop_s=float(value("driver.sync_slop_s")),
            focus_tolerance_m=float(value("driver.focus_tolerance_m")),
            settle_time_s=float(value("driver.settle_time_s")),
            sweep_timeout_s=float(value("driver.sweep_timeout_s")),
            intrinsics=configured_intrinsics(node, width, height),
        )
    raise ValueError(f"unknown camera backend '{name}' (known: simulated, v4l2, directory, phone, driver)")
