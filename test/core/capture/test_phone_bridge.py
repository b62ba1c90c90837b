"""PhoneBridge / PhoneCapture over loopback with a real WebSocket client."""

from __future__ import annotations

import base64
import json
import os

import cv2
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.capture.phone.server import PhoneBridge, PhoneCapture

TOKEN = "s3cret-token"
WIDTH_PX, HEIGHT_PX = 64, 48
MAX_MESSAGE_BYTES = 64 * 1024
REPLY_TIMEOUT_S = 5.0


def jpeg_base64(grey_level: int, width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX) -> str:
    """A uniform-grey JPEG (decodes back to the same level) with a red left column block."""
    image_bgr = np.full((height_px, width_px, 3), grey_level, np.uint8)
    image_bgr[:, :16] = (0, 0, 255)
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return base64.b64encode(encoded.tobytes()).decode()


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


INTRINSICS_PX = {"fx": 50.0, "fy": 51.0, "cx": 31.5, "cy": 23.5}


@pytest.fixture
def capture():
    backend = PhoneCapture(
        token=TOKEN,
        port=0,
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_pending_stacks=2,
    )
    yield backend
    backend.close()


def open_client(bridge: PhoneBridge):
    return connect(f"ws://127.0.0.1:{bridge.port}/", proxy=None, open_timeout=REPLY_TIMEOUT_S)


def exchange(client, message: str) -> dict:
    client.send(message)
    return json.loads(client.recv(timeout=REPLY_TIMEOUT_S))


def send_good_stack(client, stack_id: str) -> dict:
    """Frames sent far, near, middle (1, 4, 2 dioptres); returns the last reply."""
    replies = [
        exchange(client, frame_message(stack_id, 0, 3, 1.0, grey_level=40, **INTRINSICS_PX)),
        exchange(client, frame_message(stack_id, 1, 3, 4.0, grey_level=200)),
        exchange(client, frame_message(stack_id, 2, 3, 2.0, grey_level=120)),
    ]
    assert [r["type"] for r in replies] == ["ack", "ack", "stack_complete"], replies
    assert replies[1] == {"type": "ack", "stack_id": stack_id, "index": 1, "received": 2, "count": 3}
    return replies[-1]


def assert_good_stack(stack) -> None:
    stack.validate()
    np.testing.assert_allclose(stack.focus_distances_m, [0.25, 0.5, 1.0])
    assert stack.frames.shape == (3, HEIGHT_PX, WIDTH_PX, 3)
    # Sorted near to far: the frames sent with grey 200, 120, 40.
    grey_levels = stack.frames[:, :, 32:].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(grey_levels, [200, 120, 40], atol=2)
    # BGR -> RGB: the red block is in channel 0.
    assert stack.frames[0, :, :8, 0].mean() > 240 and stack.frames[0, :, :8, 2].mean() < 15
    assert stack.intrinsics == CameraIntrinsics(50.0, 51.0, 31.5, 23.5, WIDTH_PX, HEIGHT_PX)
    assert stack.reference_index == 0 and stack.registered is False


def test_good_stack_arrives_sorted_with_metric_focus(capture):
    assert capture.capture_stack() is None
    with open_client(capture.bridge) as client:
        complete = send_good_stack(client, "sweep-1")
    assert complete["focus_distances_m"] == pytest.approx([0.25, 0.5, 1.0])
    assert_good_stack(capture.capture_stack())
    assert capture.capture_stack() is None


def test_malformed_messages_get_errors_and_the_connection_survives(capture):
    with open_client(capture.bridge) as client:
        first = exchange(client, frame_message("s", 0, 3, 1.0, grey_level=40, **INTRINSICS_PX))
        assert first["type"] == "ack"
        partial_json = frame_message("s", 1, 3, 4.0)[:40]
        reply = exchange(client, partial_json)
        assert reply["type"] == "error" and reply["code"] == "bad_json"

        bad_messages = {
            "missing count": json.dumps({"token": TOKEN, "stack_id": "s", "index": 1}),
            "zero diopters": frame_message("s", 1, 3, 0.0),
            "negative diopters": frame_message("s", 1, 3, -2.0),
            "NaN diopters": frame_message("s", 1, 3, float("nan")),
            "index out of range": frame_message("s", 3, 3, 2.0),
            "partial intrinsics": frame_message("s", 1, 3, 2.0, fx=50.0),
        }
        for what, message in bad_messages.items():
            reply = exchange(client, message)
            assert (reply["type"], reply["code"]) == ("error", "bad_field"), what

        reply = exchange(client, frame_message("s", 1, 4, 4.0))
        assert reply["code"] == "count_mismatch"
        reply = exchange(client, frame_message("s", 0, 3, 3.0))
        assert reply["code"] == "duplicate_frame"
        wrong_size = json.loads(frame_message("s", 1, 3, 4.0))
        wrong_size["jpeg_base64"] = jpeg_base64(200, width_px=32)
        reply = exchange(client, json.dumps(wrong_size))
        assert (reply["code"], reply["stack_id"], reply["index"]) == ("frame_size_mismatch", "s", 1)

        # The same connection finishes the stack.
        assert exchange(client, frame_message("s", 1, 3, 4.0, grey_level=200))["type"] == "ack"
        done = exchange(client, frame_message("s", 2, 3, 2.0, grey_level=120))
        assert done["type"] == "stack_complete"
    assert_good_stack(capture.capture_stack())


def test_bad_base64_and_not_a_jpeg_are_answered_with_errors(capture):
    png_ok, png = cv2.imencode(".png", np.zeros((HEIGHT_PX, WIDTH_PX, 3), np.uint8))
    assert png_ok
    truncated_jpeg = base64.b64decode(jpeg_base64(100))[:200]
    payloads = {
        "bad_base64": "this is not base64!!",
        "not_jpeg": base64.b64encode(png.tobytes()).decode(),
    }
    with open_client(capture.bridge) as client:
        for code, payload in payloads.items():
            message = json.loads(frame_message("b", 0, 3, 1.0))
            message["jpeg_base64"] = payload
            reply = exchange(client, json.dumps(message))
            assert (reply["type"], reply["code"], reply["index"]) == ("error", code, 0)
        message["jpeg_base64"] = base64.b64encode(truncated_jpeg).decode()
        reply = exchange(client, json.dumps(message))
        assert (reply["type"], reply["code"]) == ("error", "not_jpeg")
        send_good_stack(client, "b")
    assert_good_stack(capture.capture_stack())


def test_huge_declared_jpeg_size_is_refused_before_decoding(capture):
    # A real JPEG header whose start-of-frame claims 60000 x 60000 pixels.
    jpeg = bytearray(base64.b64decode(jpeg_base64(100)))
    sof = next(i for i in range(len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] == 0xC0)
    jpeg[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2
    message = json.loads(frame_message("h", 0, 2, 1.0))
    message["jpeg_base64"] = base64.b64encode(bytes(jpeg)).decode()
    with open_client(capture.bridge) as client:
        reply = exchange(client, json.dumps(message))
    assert reply["code"] == "frame_too_large"


def test_oversized_message_closes_only_that_connection(capture):
    with open_client(capture.bridge) as bystander:
        assert exchange(bystander, frame_message("o", 0, 3, 1.0, 40, **INTRINSICS_PX))["type"] == "ack"
        with open_client(capture.bridge) as offender:
            oversized = json.loads(frame_message("x", 0, 2, 1.0))
            oversized["jpeg_base64"] = base64.b64encode(os.urandom(MAX_MESSAGE_BYTES)).decode()
            offender.send(json.dumps(oversized))
            with pytest.raises(ConnectionClosed) as closed:
                offender.recv(timeout=REPLY_TIMEOUT_S)
            assert closed.value.rcvd.code == 1009
        assert exchange(bystander, frame_message("o", 1, 3, 4.0, 200))["type"] == "ack"
        assert exchange(bystander, frame_message("o", 2, 3, 2.0, 120))["type"] == "stack_complete"
    assert_good_stack(capture.capture_stack())
    with open_client(capture.bridge) as newcomer:
        send_good_stack(newcomer, "after")


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_wrong_or_missing_token_is_refused_with_policy_violation(capture, token):
    message = json.loads(frame_message("t", 0, 2, 1.0))
    if token is None:
        del message["token"]
    else:
        message["token"] = token
    with open_client(capture.bridge) as client:
        reply = exchange(client, json.dumps(message))
        assert (reply["type"], reply["code"]) == ("error", "unauthorized")
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=REPLY_TIMEOUT_S)
        assert closed.value.rcvd.code == 1008
    assert capture.capture_stack() is None


def test_unauthenticated_garbage_is_closed(capture):
    with open_client(capture.bridge) as client:
        reply = exchange(client, "not json")
        assert reply["code"] == "bad_json"
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=REPLY_TIMEOUT_S)
        assert closed.value.rcvd.code == 1008


def test_oldest_incomplete_stack_is_dropped_at_the_limit(capture):
    # max_pending_stacks=2: starting a third stack evicts the first.
    with open_client(capture.bridge) as client:
        for stack_id in ("a", "b", "c"):
            assert exchange(client, frame_message(stack_id, 0, 2, 1.0, **INTRINSICS_PX))["received"] == 1
        evicted = exchange(client, frame_message("a", 1, 2, 2.0))
        assert (evicted["type"], evicted["received"]) == ("ack", 1)  # "a" started afresh
        kept = exchange(client, frame_message("c", 1, 2, 2.0))
        assert kept["type"] == "stack_complete"
    stack = capture.capture_stack()
    np.testing.assert_allclose(stack.focus_distances_m, [0.5, 1.0])


def test_configured_intrinsics_are_scaled_when_frames_carry_none():
    intrinsics = CameraIntrinsics(fx=256.0, fy=256.0, cx=127.5, cy=95.5, width=256, height=192)
    backend = PhoneCapture(token=TOKEN, port=0, intrinsics=intrinsics)
    try:
        with open_client(backend.bridge) as client:
            exchange(client, frame_message(7, 0, 2, 1.0))
            assert exchange(client, frame_message(7, 1, 2, 2.0))["stack_id"] == "7"
        stack = backend.capture_stack()
        assert stack.intrinsics == intrinsics.scaled(WIDTH_PX, HEIGHT_PX)
    finally:
        backend.close()


def test_stack_without_any_intrinsics_is_refused(capture):
    with open_client(capture.bridge) as client:
        exchange(client, frame_message("n", 0, 2, 1.0))
        reply = exchange(client, frame_message("n", 1, 2, 2.0))
    assert reply["code"] == "bad_stack" and "fx, fy, cx, cy" in reply["message"]
    assert capture.capture_stack() is None


def test_close_disconnects_clients_and_frees_the_port():
    bridge = PhoneBridge(token=TOKEN, port=0)
    bridge.start()
    port = bridge.port
    with open_client(bridge) as client:
        bridge.close()
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=REPLY_TIMEOUT_S)
    assert closed.value.rcvd.code == 1001
    with pytest.raises(OSError):
        connect(f"ws://127.0.0.1:{port}/", proxy=None, open_timeout=2.0)
    bridge.close()  # idempotent


def test_token_is_required():
    with pytest.raises(ValueError, match="token"):
        PhoneBridge(token="")
