"""ROS message fields -> core data, without importing ROS.

Everything here reads attributes only (`msg.encoding`, `msg.data`, `msg.k`,
`msg.header.stamp.sec`...), so it decodes rclpy messages in the nodes and the
dataclasses that the `rosbags` library deserialises from bag files alike: a bag
is read with exactly the rules the fusion node applies to a live topic.
nodes/conversions/ re-exports these names and adds cv_bridge where a ROS
install has it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .camera import CameraIntrinsics
from .focal_stack import FocalStack

# encoding -> (channels, order of R, G, B within the pixel) for 8-bit colour images.
COLOUR_ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
SUPPORTED_ENCODINGS = tuple(COLOUR_ENCODINGS)
DEPTH_ENCODINGS = ("32FC1", "16UC1", "mono16")
"""Depth images: 32FC1 in metres (REP 118), 16UC1 / mono16 in millimetres (REP 118's integer form)."""
MILLIMETRES_PER_METRE = 1000.0


class ConversionError(ValueError):
    """A message that cannot be turned into core data; the text says why."""


def check_image_layout(msg) -> None:
    """ConversionError unless `msg` is a well-formed 8-bit colour or mono image."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise ConversionError(
            f"unsupported image encoding '{msg.encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    channels, _ = COLOUR_ENCODINGS[msg.encoding]
    _check_buffer(msg, channels)


def _check_buffer(msg, bytes_per_pixel: int) -> None:
    if msg.width == 0 or msg.height == 0:
        raise ConversionError(f"empty image {msg.width}x{msg.height}")
    if msg.step < msg.width * bytes_per_pixel:
        raise ConversionError(f"step {msg.step} too small for {msg.width} px of {msg.encoding}")
    if len(msg.data) < msg.step * msg.height:
        raise ConversionError(
            f"image data has {len(msg.data)} bytes, expected step*height = {msg.step * msg.height}"
        )


def _rows(msg, bytes_per_pixel: int) -> np.ndarray:
    """(height, width * bytes_per_pixel) uint8 view of the pixel bytes, row padding in `step` dropped."""
    buffer = np.frombuffer(bytes(msg.data[: msg.step * msg.height]), dtype=np.uint8)
    return buffer.reshape(msg.height, msg.step)[:, : msg.width * bytes_per_pixel]


def image_to_rgb8_numpy(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an 8-bit colour or mono image (row padding in `step` handled)."""
    check_image_layout(msg)
    channels, order = COLOUR_ENCODINGS[msg.encoding]
    pixels = _rows(msg, channels).reshape(msg.height, msg.width, channels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def float_image_to_array(msg) -> np.ndarray:
    """(H, W) float32 from a 32FC1 image."""
    if msg.encoding != "32FC1":
        raise ConversionError(f"expected 32FC1, got '{msg.encoding}'")
    _check_buffer(msg, 4)
    dtype = ">f4" if msg.is_bigendian else "<f4"
    return _rows(msg, 4).copy().view(dtype).reshape(msg.height, msg.width).astype(np.float32)


def depth_image_to_metres(msg) -> np.ndarray:
    """(H, W) float32 metres, NaN where the camera has no depth, from a 32FC1 (m) or 16UC1/mono16 (mm) image.

    A 16-bit 0 means "no depth" (REP 118); so does a non-finite or non-positive 32FC1 value.
    """
    if msg.encoding == "32FC1":
        depth_m = float_image_to_array(msg)
    elif msg.encoding in ("16UC1", "mono16"):
        _check_buffer(msg, 2)
        dtype = ">u2" if msg.is_bigendian else "<u2"
        millimetres = _rows(msg, 2).copy().view(dtype).reshape(msg.height, msg.width)
        depth_m = np.where(millimetres > 0, millimetres / MILLIMETRES_PER_METRE, np.nan).astype(np.float32)
    else:
        raise ConversionError(
            f"unsupported depth encoding '{msg.encoding}' (supported: {', '.join(DEPTH_ENCODINGS)})"
        )
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float32)


def camera_info_to_intrinsics(msg) -> CameraIntrinsics:
    """CameraIntrinsics from CameraInfo.k; raises ConversionError when missing or zero."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9 or not np.all(np.isfinite(k)) or k[0] <= 0 or k[4] <= 0:
        raise ConversionError(f"camera_info has missing or zero intrinsics K={k.tolist()}")
    if msg.width == 0 or msg.height == 0:
        raise ConversionError("camera_info has no image size (width/height 0)")
    return CameraIntrinsics(
        fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]), width=int(msg.width), height=int(msg.height)
    )


def stamp_to_seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_to_ns(stamp) -> int:
    """A builtin_interfaces/Time as integer nanoseconds (exact, unlike float seconds)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def focal_stack_from_msg(msg, decode_image: Callable[[object], np.ndarray] = image_to_rgb8_numpy) -> FocalStack:
    """Core FocalStack from a hybriddepth_ros/FocalStack message; ConversionError says why not.

    Only what the conversion needs is checked here (frame count, sizes and
    encodings); the stack itself is validated by DepthFusion, the one place.
    `decode_image` turns one frame into (H, W, 3) uint8 RGB (the nodes pass cv_bridge's when installed).
    """
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
    frames = np.stack([decode_image(frame) for frame in msg.frames])
    return FocalStack(
        frames=frames,
        focus_distances_m=np.asarray(msg.focus_distances, dtype=np.float64),
        intrinsics=intrinsics,
        reference_index=int(msg.reference_index),
        registered=bool(msg.registered),
        stamp_s=stamp_to_seconds(msg.header.stamp),
        frame_id=msg.header.frame_id,
    )
