"""sensor_msgs/Image <-> numpy: 8-bit colour frames and depth in, rgb8 and 32FC1 (REP 118 depth) out.

Decoding is ROS-free (core/stack/message_decoding.py, shared with the bag
reader) and re-exported here. cv_bridge decodes frames when it works (as a
ROS user expects); the numpy fallback, tested to agree with it, runs where it
does not. That is decided per call: a cv_bridge that is absent (the PyPI
wheels), that imports but lacks its compiled module, or that was built
against another numpy fails, is said so once in the log and not tried again;
a frame cv_bridge refuses is decoded by the fallback (its layout was already
checked here).
"""

from __future__ import annotations

import importlib
import logging

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

_LOG = logging.getLogger(__name__)


class _NotImported(Exception):
    """Stands for cv_bridge.CvBridgeError until cv_bridge is imported."""


class CvBridgeDecoder:
    """cv_bridge's imgmsg_to_cv2 while it works, the numpy fallback for each call where it does not.

    The bridge is created on first use. A failure that is not about the frame
    (no cv_bridge, no compiled module, a numpy ABI mismatch: anything but
    cv_bridge's own CvBridgeError) turns it off for good, said once in the log.
    """

    def __init__(self, module_name: str = "cv_bridge") -> None:
        self._module_name = module_name
        self._bridge = None
        self._bridge_error: type[Exception] = _NotImported  # cv_bridge.CvBridgeError once imported
        self.disabled_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.disabled_reason is None

    def to_rgb8(self, msg: Image) -> np.ndarray:
        check_image_layout(msg)
        if self.disabled_reason is None:
            try:
                if self._bridge is None:
                    module = importlib.import_module(self._module_name)
                    self._bridge_error = module.CvBridgeError
                    self._bridge = module.CvBridge()
                rgb = np.asarray(self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
                if rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8:
                    return np.ascontiguousarray(rgb)
                self._disable(f"it returned {rgb.dtype} {rgb.shape} for a {msg.width}x{msg.height} rgb8 frame")
            except self._bridge_error:
                pass  # this frame only (the checked layout decodes with the fallback)
            except ModuleNotFoundError as exc:
                if exc.name != self._module_name:  # cv_bridge is there but part of it is missing
                    self._disable(f"{type(exc).__name__}: {exc}")
                else:  # not installed (the PyPI wheels): the fallback is the expected path
                    self.disabled_reason = "not installed"
            except Exception as exc:  # broken or incompatible cv_bridge
                self._disable(f"{type(exc).__name__}: {exc}")
        return image_to_rgb8_numpy(msg)

    def _disable(self, reason: str) -> None:
        self.disabled_reason = reason
        _LOG.warning("cv_bridge does not work here (%s): using the numpy image decoder", reason)


_DECODER = CvBridgeDecoder()


def image_to_rgb8(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an 8-bit colour or mono Image (cv_bridge while it works, else numpy)."""
    return _DECODER.to_rgb8(msg)


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
