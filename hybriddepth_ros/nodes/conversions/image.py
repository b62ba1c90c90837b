"""sensor_msgs/Image <-> numpy: 8-bit colour frames in, rgb8 and 32FC1 (REP 118 depth) out.

cv_bridge is used when the ROS install has it (as a ROS user expects); the
numpy fallback runs where it is absent (the PyPI wheels) and is tested to agree.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

try:  # pragma: no cover - depends on the ROS install
    from cv_bridge import CvBridge, CvBridgeError

    _BRIDGE = CvBridge()
except ImportError:  # PyPI wheels: no cv_bridge
    CvBridgeError = None
    _BRIDGE = None

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
