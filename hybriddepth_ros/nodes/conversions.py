"""ROS message <-> core conversions: images, camera info, focal stacks, point clouds.

Decoding (message -> core) is ROS-free and lives in core/stack/message_decoding.py,
so bag files are read by the same rules; it is re-exported here.

cv_bridge and sensor_msgs_py are used when the ROS install has them (as a ROS
user expects); the numpy fallbacks here run where they are absent (the PyPI
wheels carry neither) and are tested to agree with them.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from ..core.stack.camera import CameraIntrinsics
from ..core.stack.focal_stack import FocalStack
from ..core.stack.message_decoding import (  # noqa: F401 - re-exported: the nodes' one place for conversions
    SUPPORTED_ENCODINGS,
    ConversionError,
    camera_info_to_intrinsics,
    check_image_layout,
    depth_image_to_metres,
    float_image_to_array,
    image_to_rgb8_numpy,
    stamp_to_ns,
    stamp_to_seconds,
)
from ..core.stack.message_decoding import focal_stack_from_msg as core_focal_stack_from_msg
from ..core.depth.pointcloud import pack_rgb_float

try:  # pragma: no cover - depends on the ROS install
    from cv_bridge import CvBridge, CvBridgeError

    _BRIDGE = CvBridge()
except ImportError:  # PyPI wheels: no cv_bridge
    CvBridgeError = None
    _BRIDGE = None

try:  # pragma: no cover - depends on the ROS install
    from sensor_msgs_py import point_cloud2 as _point_cloud2
except ImportError:
    _point_cloud2 = None


def image_to_rgb8(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an 8-bit colour or mono Image (cv_bridge when installed)."""
    check_image_layout(msg)
    if _BRIDGE is not None:  # pragma: no cover - depends on the ROS install
        try:
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except CvBridgeError as exc:
            raise ConversionError(f"cv_bridge could not convert the image: {exc}") from exc
    return image_to_rgb8_numpy(msg)


def rgb8_to_image(rgb: np.ndarray, header: Header) -> Image:
    """An rgb8 Image message from (H, W, 3) uint8."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    msg = Image(header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8")
    msg.is_bigendian = 0
    msg.step = rgb.shape[1] * 3
    msg.data = rgb.tobytes()
    return msg


def float_image(values: np.ndarray, header: Header) -> Image:
    """A 32FC1 Image (REP 118 depth: metres, NaN unknown) from (H, W) float."""
    values = np.ascontiguousarray(values, dtype="<f4")
    msg = Image(header=header, height=values.shape[0], width=values.shape[1], encoding="32FC1")
    msg.is_bigendian = 0
    msg.step = values.shape[1] * 4
    msg.data = values.tobytes()
    return msg


def intrinsics_to_camera_info(intrinsics: CameraIntrinsics, header: Header) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera with these intrinsics."""
    info = CameraInfo(header=header, width=intrinsics.width, height=intrinsics.height)
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def seconds_to_stamp(seconds: float, stamp) -> None:
    """Write `seconds` into a builtin_interfaces/Time in place."""
    stamp.sec = int(seconds)
    stamp.nanosec = int(round((seconds - int(seconds)) * 1e9)) % 1_000_000_000


def focal_stack_from_msg(msg) -> FocalStack:
    """Core FocalStack from a hybriddepth_ros/FocalStack message (frames through cv_bridge when installed)."""
    return core_focal_stack_from_msg(msg, decode_image=image_to_rgb8)


def focal_stack_to_msg(stack: FocalStack, msg_type, sweep_duration_s: float = 0.0):
    """A FocalStack message (of `msg_type`) from a core FocalStack, frames as rgb8."""
    header = Header(frame_id=stack.frame_id)
    seconds_to_stamp(stack.stamp_s, header.stamp)
    msg = msg_type()
    msg.header = header
    msg.frames = [rgb8_to_image(frame, header) for frame in stack.frames]
    msg.focus_distances = [float(d) for d in stack.focus_distances_m]
    msg.camera_info = intrinsics_to_camera_info(stack.intrinsics, header)
    msg.reference_index = int(stack.reference_index)
    msg.registered = bool(stack.registered)
    msg.sweep_duration = float(sweep_duration_s)
    return msg


CLOUD_FIELDS = [
    PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
    PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
    PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
]
_CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])


def organised_cloud(points: np.ndarray, rgb: np.ndarray, header: Header) -> PointCloud2:
    """Organised PointCloud2 (x, y, z, rgb) from (h, w, 3) points and (h, w, 3) uint8 colours.

    NaN points stay in place (is_dense = False) so the cloud keeps the image grid.
    Built with sensor_msgs_py when installed, else by the numpy fallback.
    """
    structured = np.empty(points.shape[:2], dtype=_CLOUD_DTYPE)
    structured["x"], structured["y"], structured["z"] = points[..., 0], points[..., 1], points[..., 2]
    structured["rgb"] = pack_rgb_float(rgb)
    if _point_cloud2 is not None:  # pragma: no cover - depends on the ROS install
        cloud = _point_cloud2.create_cloud(header, CLOUD_FIELDS, structured.reshape(-1))
        cloud.height, cloud.width = points.shape[0], points.shape[1]
        cloud.row_step = cloud.point_step * cloud.width
        cloud.is_dense = False
        return cloud
    return organised_cloud_numpy(structured, header)


def organised_cloud_numpy(structured: np.ndarray, header: Header) -> PointCloud2:
    """The numpy fallback of organised_cloud, from an (h, w) structured array."""
    height, width = structured.shape
    cloud = PointCloud2(header=header, height=height, width=width, fields=CLOUD_FIELDS)
    cloud.is_bigendian = False
    cloud.point_step = _CLOUD_DTYPE.itemsize
    cloud.row_step = cloud.point_step * width
    cloud.is_dense = False
    cloud.data = structured.tobytes()
    return cloud


def cloud_to_array(cloud: PointCloud2) -> np.ndarray:
    """(height, width) structured array of an x, y, z, rgb cloud made by organised_cloud."""
    return np.frombuffer(bytes(cloud.data), dtype=_CLOUD_DTYPE).reshape(cloud.height, cloud.width)
