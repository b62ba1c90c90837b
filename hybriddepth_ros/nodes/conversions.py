"""ROS message <-> core conversions: images, camera info, focal stacks, point clouds.

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

# encoding -> (channels, order of R, G, B within the pixel) for 8-bit colour images.
_COLOUR_ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
SUPPORTED_ENCODINGS = tuple(_COLOUR_ENCODINGS)


class ConversionError(ValueError):
    """A message that cannot be turned into core data; the text says why."""


def image_to_rgb8(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an 8-bit colour or mono Image (cv_bridge when installed)."""
    _check_image_layout(msg)
    if _BRIDGE is not None:  # pragma: no cover - depends on the ROS install
        try:
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except CvBridgeError as exc:
            raise ConversionError(f"cv_bridge could not convert the image: {exc}") from exc
    return image_to_rgb8_numpy(msg)


def _check_image_layout(msg: Image) -> None:
    if msg.encoding not in _COLOUR_ENCODINGS:
        raise ConversionError(
            f"unsupported image encoding '{msg.encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    channels, _ = _COLOUR_ENCODINGS[msg.encoding]
    if msg.width == 0 or msg.height == 0:
        raise ConversionError(f"empty image {msg.width}x{msg.height}")
    if msg.step < msg.width * channels:
        raise ConversionError(f"step {msg.step} too small for {msg.width} px of {msg.encoding}")
    if len(msg.data) < msg.step * msg.height:
        raise ConversionError(
            f"image data has {len(msg.data)} bytes, expected step*height = {msg.step * msg.height}"
        )


def image_to_rgb8_numpy(msg: Image) -> np.ndarray:
    """The numpy fallback of image_to_rgb8 (row padding in `step` handled)."""
    _check_image_layout(msg)
    channels, order = _COLOUR_ENCODINGS[msg.encoding]
    buffer = np.frombuffer(bytes(msg.data[: msg.step * msg.height]), dtype=np.uint8)
    rows = buffer.reshape(msg.height, msg.step)[:, : msg.width * channels]
    pixels = rows.reshape(msg.height, msg.width, channels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


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


def float_image_to_array(msg: Image) -> np.ndarray:
    """(H, W) float32 from a 32FC1 Image."""
    if msg.encoding != "32FC1":
        raise ConversionError(f"expected 32FC1, got '{msg.encoding}'")
    dtype = ">f4" if msg.is_bigendian else "<f4"
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    return rows[:, : msg.width * 4].copy().view(dtype).reshape(msg.height, msg.width).astype(np.float32)


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


def stamp_to_seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def seconds_to_stamp(seconds: float, stamp) -> None:
    """Write `seconds` into a builtin_interfaces/Time in place."""
    stamp.sec = int(seconds)
    stamp.nanosec = int(round((seconds - int(seconds)) * 1e9)) % 1_000_000_000


def focal_stack_from_msg(msg) -> FocalStack:
    """Core FocalStack from a hybriddepth_ros/FocalStack message; ConversionError/FocalStackError say why not."""
    if len(msg.frames) == 0:
        raise ConversionError("empty focal stack (no frames)")
    if len(msg.frames) != len(msg.focus_distances):
        raise ConversionError(
            f"{len(msg.frames)} frames but {len(msg.focus_distances)} focus distances"
        )
    first = msg.frames[0]
    for index, frame in enumerate(msg.frames):
        if (frame.width, frame.height) != (first.width, first.height):
            raise ConversionError(
                f"frame {index} is {frame.width}x{frame.height}, frame 0 is {first.width}x{first.height}"
            )
        if frame.encoding != first.encoding:
            raise ConversionError(f"frame {index} is '{frame.encoding}', frame 0 is '{first.encoding}'")
    intrinsics = camera_info_to_intrinsics(msg.camera_info)
    frames = np.stack([image_to_rgb8(frame) for frame in msg.frames])
    stack = FocalStack(
        frames=frames,
        focus_distances_m=np.asarray(msg.focus_distances, dtype=np.float64),
        intrinsics=intrinsics,
        reference_index=int(msg.reference_index),
        registered=bool(msg.registered),
        stamp_s=stamp_to_seconds(msg.header.stamp),
        frame_id=msg.header.frame_id,
    )
    return stack.validate()


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
