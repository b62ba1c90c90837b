"""sensor_msgs/Image <-> numpy: 8-bit colour frames and depth in, rgb8 and 32FC1 (REP 118 depth) out.

Decoding is ROS-free (core/stack/message_decoding.py, shared with the bag
reader) and re-exported here; cv_bridge is used when the ROS install has it
(as a ROS user expects); the numpy fallback runs where it is absent (the PyPI
wheels) and is tested to agree.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ...core.stack.message_decoding import (  # noqa: F401 - re-exported
    SUPPORTED_ENCODINGS,
    ConversionError,
    check_image_layout,
    depth_image_to_metres,
    float_image_to_array,
    image_to_rgb8_numpy,
)

try:  # pragma: no cover - depends on the ROS install
    from cv_bridge import CvBridge, CvBridgeError

    _BRIDGE = CvBridge()
except ImportError:  # PyPI wheels: no cv_bridge
    CvBridgeError = None
    _BRIDGE = None


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
