"""sensor_msgs/CameraInfo <-> core CameraIntrinsics (an undistorted pinhole)."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from ...core.stack.camera import CameraIntrinsics
from .image import ConversionError


def camera_info_to_intrinsics(msg: CameraInfo) -> CameraIntrinsics:
    """CameraIntrinsics from CameraInfo.k; raises ConversionError when missing or zero."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9 or not np.all(np.isfinite(k)) or k[0] <= 0 or k[4] <= 0:
        raise ConversionError(f"camera_info has missing or zero intrinsics K={k.tolist()}")
    if msg.width == 0 or msg.height == 0:
        raise ConversionError("camera_info has no image size (width/height 0)")
    return CameraIntrinsics(
        fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]), width=int(msg.width), height=int(msg.height)
    )


def intrinsics_to_camera_info(intrinsics: CameraIntrinsics, header: Header) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera with these intrinsics."""
    info = CameraInfo(header=header, width=intrinsics.width, height=intrinsics.height)
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info
