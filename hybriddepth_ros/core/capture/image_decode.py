"""Decoding image files strictly: a corrupt or truncated file is an error, never a partly grey frame.

OpenCV returns an image for a JPEG that libjpeg found corrupt (garbage in the
entropy-coded data, a file cut short on OpenCV 4): the missing rows come out
flat grey and the only trace is a line libjpeg writes to stderr ("Corrupt JPEG
data: ...", "Premature end of JPEG file"). `decode_rgb` captures what the
decoders write to file descriptor 2 while it decodes and refuses the image when
it reports damage. Everything captured is written back to stderr afterwards, so
nothing another thread printed meanwhile is lost; a thread that prints a
decoder's damage message during a decode would make that decode fail (the
package's own log lines never contain those messages).

`declared_size_px` reads the size a JPEG, PNG or BMP declares in its header, so
that callers refuse an image too large for their memory before decoding it (a
0.5 MB JPEG can declare 5000x5000 px, 72 MB decoded).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading

import cv2
import numpy as np

DAMAGE_MESSAGES = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Inconsistent progression sequence",
    "libpng error",
    "OpenCV TIFF:",
    "[ERROR:",
)
"""Decoder messages, as the decoders spell them, that mean the pixels are not those of the file:
libjpeg's damage warnings (JWRN_*), libpng errors, OpenCV's TIFF errors and [ERROR] log lines.
Harmless warnings (libpng's 'iCCP: known incorrect sRGB profile', libjpeg's 'Invalid SOS
parameters for sequential JPEG') do not refuse an image."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: every one but DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_DECODE_LOCK = threading.Lock()
"""File descriptor 2 is process-wide: one capturing decode at a time."""


class ImageDecodeError(ValueError):
    """An image that cannot be used: not decodable, damaged or too large; the message says which."""


def decode_rgb(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an encoded image; ImageDecodeError when damaged, undecodable or too large.

    `max_pixels` bounds the size: checked on the declared size before decoding
    where the format has one (JPEG, PNG, BMP), and on the result otherwise.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    declared = declared_size_px(data)
    if max_pixels is not None and declared is not None and declared[0] * declared[1] > max_pixels:
        raise ImageDecodeError(f"{declared[0]}x{declared[1]} px exceeds the limit of {max_pixels} pixels")
    try:
        bgr, messages = _imdecode_capturing_stderr(np.frombuffer(data, np.uint8))
    except cv2.error as exc:  # OpenCV refuses some inputs with an exception rather than None
        raise ImageDecodeError(f"not a decodable image: {str(exc).strip().splitlines()[-1][:200]}") from None
    damage = [line for line in messages if any(text in line for text in DAMAGE_MESSAGES)]
    if damage:
        raise ImageDecodeError(f"damaged image data (decoder says: {'; '.join(damage)[:300]})")
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ImageDecodeError("not a decodable image (truncated, or not an image format OpenCV reads)")
    if max_pixels is not None and bgr.shape[0] * bgr.shape[1] > max_pixels:
        raise ImageDecodeError(f"{bgr.shape[1]}x{bgr.shape[0]} px exceeds the limit of {max_pixels} pixels")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)


def _imdecode_capturing_stderr(buffer: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """cv2.imdecode, and the lines written to file descriptor 2 meanwhile (decoder warnings)."""
    with _DECODE_LOCK:
        try:
            sys.stderr.flush()
            saved_fd = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr to capture: decode without the check
            return cv2.imdecode(buffer, cv2.IMREAD_COLOR), []
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
            finally:
                os.dup2(saved_fd, 2)
                os.close(saved_fd)
            sink.seek(0)
            written = sink.read()
        if written:  # never swallow what the decoder (or another thread) printed; still locked, so
            os.write(2, written)  # this cannot land in the next decode's capture
    return image, written.decode("utf-8", "replace").splitlines()


def declared_size_px(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG, PNG or BMP header; None for other formats.

    ImageDecodeError for a JPEG or PNG whose header holds no usable size.
    """
    if data.startswith(b"\xff\xd8"):
        return jpeg_size_px(data)
    if data.startswith(_PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageDecodeError("PNG without an IHDR header")
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"BM") and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return abs(width), abs(height)  # negative height: rows stored top-down
    return None


def jpeg_size_px(jpeg: bytes) -> tuple[int, int]:
    """Width and height declared by the JPEG's start-of-frame header, read before decoding.

    ImageDecodeError when the data is not a JPEG or declares no size.
    """
    if not jpeg.startswith(b"\xff\xd8"):
        raise ImageDecodeError("data does not start with a JPEG start-of-image marker")
    position = 2
    while position + 4 <= len(jpeg):
        if jpeg[position] != 0xFF:
            break
        marker = jpeg[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        segment_length = int.from_bytes(jpeg[position + 2 : position + 4], "big")
        if marker in _SOF_MARKERS and position + 9 <= len(jpeg):
            height_px = int.from_bytes(jpeg[position + 5 : position + 7], "big")
            width_px = int.from_bytes(jpeg[position + 7 : position + 9], "big")
            if width_px and height_px:
                return width_px, height_px
            break
        position += 2 + segment_length
    raise ImageDecodeError("no JPEG frame header with a size was found")
