"""A phone client's side of the bridge protocol for tests: JPEG frame messages, replies, a TLS certificate."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

TOKEN = "s3cret-token"
WIDTH_PX, HEIGHT_PX = 64, 48
REPLY_TIMEOUT_S = 5.0
INTRINSICS_PX = {"fx": 50.0, "fy": 51.0, "cx": 31.5, "cy": 23.5}


def jpeg_bytes(grey_level: int, width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX) -> bytes:
    """A uniform-grey JPEG (decodes back to the same level) with a red left column block."""
    image_bgr = np.full((height_px, width_px, 3), grey_level, np.uint8)
    image_bgr[:, :16] = (0, 0, 255)
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def jpeg_base64(grey_level: int, width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX) -> str:
    return base64.b64encode(jpeg_bytes(grey_level, width_px, height_px)).decode()


def frame_message(stack_id, index, count, diopters, grey_level=100, token=TOKEN, **extra) -> str:
    message = {
        "token": token,
        "stack_id": stack_id,
        "index": index,
        "count": count,
        "focus_diopters": diopters,
        "jpeg_base64": jpeg_base64(grey_level),
    }
    message.update(extra)
    return json.dumps(message)


def exchange(client, message: str) -> dict:
    client.send(message)
    return json.loads(client.recv(timeout=REPLY_TIMEOUT_S))


def pending_messages(client, wait_s: float = 0.3) -> list[dict]:
    """Every message the server sends within `wait_s` of silence (e.g. unasked eviction notices)."""
    messages = []
    while True:
        try:
            messages.append(json.loads(client.recv(timeout=wait_s)))
        except TimeoutError:
            return messages


def self_signed_certificate(folder: Path) -> tuple[Path, Path] | None:
    """(certificate, key) PEM files for localhost/127.0.0.1 made with openssl, or None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    certificate, key = folder / "bridge.crt", folder / "bridge.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )
    return certificate, key
