"""sensor_msgs/CameraInfo <-> core CameraIntrinsics (an undistorted pinhole); decoding is ROS-free, in core."""

from __future__ import annotations

from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from ...core.stack.camera import CameraIntrinsics
from ...core.stack.message_decoding import camera_info_to_intrinsics  # noqa: F401 - re-exported (ROS-free)


def intrinsics_to_camera_info(intrinsics: CameraIntrinsics, header: Header) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera with these intrinsics."""
    info = CameraInfo(header=header, width=intrinsics.width, height=intrinsics.height)
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info
