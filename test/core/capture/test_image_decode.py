"""Strict image decoding: exact pixels from intact files, an error from damaged ones, sizes before decoding."""

import cv2
import numpy as np
import pytest

from hybriddepth_ros.core.capture.image_decode import ImageDecodeError, declared_size_px, decode_rgb
from support import PIXEL_STACK


def test_intact_png_decodes_to_its_rgb_pixels():
    rgb = np.random.default_rng(0).integers(0, 256, (12, 16, 3), np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(decode_rgb(png.tobytes()), rgb)


@pytest.mark.parametrize("extension, expected", [(".jpg", (40, 30)), (".png", (40, 30)), (".bmp", (40, 30)),
                                                 (".tiff", None)])
def test_declared_size_is_read_from_the_header(extension, expected):
    ok, data = cv2.imencode(extension, np.zeros((30, 40, 3), np.uint8))
    assert ok
    assert declared_size_px(data.tobytes()) == expected


def test_a_size_limit_holds_before_decoding():
    ok, data = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="40x30 px exceeds the limit of 1000 pixels"):
        decode_rgb(data.tobytes(), max_pixels=1000)
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_rgb(b"")
    with pytest.raises(ImageDecodeError, match="no JPEG frame header"):
        decode_rgb(b"\xff\xd8\xff\xe0\x00\x10JFIF")


@pytest.mark.skipif(not PIXEL_STACK.is_dir(), reason="../shared/data/pixel6pro_stack is not present")
def test_a_real_phone_jpeg_cut_short_or_with_garbage_is_refused():
    """The issue's probe: OpenCV decoded these with a third to half of the frame flat grey."""
    data = sorted(PIXEL_STACK.glob("*.jpg"))[0].read_bytes()
    middle = len(data) // 2
    garbage = np.random.default_rng(2).integers(0, 256, 2000, np.uint8).tobytes()
    for damaged in (data[: int(len(data) * 0.6)], data[:middle] + garbage + data[middle + 2000:]):
        with pytest.raises(ImageDecodeError):
            decode_rgb(damaged)
