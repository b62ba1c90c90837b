"""PhoneBridge / PhoneCapture over loopback with a real WebSocket client, good phones and hostile ones."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import ssl
import time

import cv2
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from hybriddepth_ros.core.capture.base import CaptureError
from hybriddepth_ros.core.capture.phone import server as server_module
from hybriddepth_ros.core.capture.phone.server import PhoneBridge, PhoneCapture
from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from support.phone import (
    HEIGHT_PX, INTRINSICS_PX, REPLY_TIMEOUT_S, TOKEN, WIDTH_PX, exchange, frame_message, jpeg_base64, jpeg_bytes,
    pending_messages, self_signed_certificate,
)

MAX_MESSAGE_BYTES = 64 * 1024
FRAME_PIXELS = WIDTH_PX * HEIGHT_PX


@pytest.fixture
def capture():
    backend = PhoneCapture(token=TOKEN, port=0, max_message_bytes=MAX_MESSAGE_BYTES, max_pending_stacks=2)
    yield backend
    backend.close()


@pytest.fixture
def make_capture():
    """PhoneCapture with the given options on a free port, closed after the test."""
    backends = []

    def make(**options) -> PhoneCapture:
        backends.append(PhoneCapture(token=TOKEN, port=0, **options))
        return backends[-1]

    yield make
    for backend in backends:
        backend.close()


def open_client(bridge: PhoneBridge, **options):
    return connect(f"ws://127.0.0.1:{bridge.port}/", proxy=None, open_timeout=REPLY_TIMEOUT_S, **options)


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


def assert_closed_with(client, code: int) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=REPLY_TIMEOUT_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def refused(capture: PhoneCapture) -> dict[str, int]:
    values = capture.diagnostic_values()
    return {key.removeprefix("phone.refused."): int(v) for key, v in values.items() if key.startswith("phone.refused.")}


# --- good phones --------------------------------------------------------------------------------


def test_good_stack_arrives_sorted_with_metric_focus(capture):
    assert capture.capture_stack() is None
    with open_client(capture.bridge) as client:
        complete = send_good_stack(client, "sweep-1")
    assert complete["focus_distances_m"] == pytest.approx([0.25, 0.5, 1.0])
    assert_good_stack(capture.capture_stack())
    assert capture.capture_stack() is None
    assert capture.new_problems() is None and capture.diagnostic_values()["phone.refused"] == "0"


def test_concurrent_phones_each_complete_their_own_stack(make_capture):
    """The issue's probe: interleaved 3-frame stacks from many phones used to complete none (at 5+ phones)."""
    phones = 12
    capture = make_capture(max_clients=phones, max_pending_stacks=phones, max_completed_stacks=phones)
    with contextlib.ExitStack() as connections:
        clients = [connections.enter_context(open_client(capture.bridge)) for _ in range(phones)]
        replies = {}
        for index, (diopters, grey) in enumerate(((1.0, 40), (4.0, 200), (2.0, 120))):
            for phone, client in enumerate(clients):  # every phone's frame i before any frame i + 1
                extra = INTRINSICS_PX if index == 0 else {}
                replies[phone] = exchange(client, frame_message(f"phone-{phone}", index, 3, diopters, grey, **extra))
    assert all(reply["type"] == "stack_complete" for reply in replies.values()), replies
    stacks = [capture.capture_stack() for _ in range(phones)]
    for stack in stacks:
        assert_good_stack(stack)
    assert capture.capture_stack() is None
    assert capture.diagnostic_values()["phone.stacks_evicted"] == "0"


def test_a_stack_may_span_reconnections(capture):
    with open_client(capture.bridge) as first:
        assert exchange(first, frame_message("r", 0, 3, 1.0, 40, **INTRINSICS_PX))["type"] == "ack"
    with open_client(capture.bridge) as second:
        assert exchange(second, frame_message("r", 1, 3, 4.0, 200))["received"] == 2
        assert exchange(second, frame_message("r", 2, 3, 2.0, 120))["type"] == "stack_complete"
    assert_good_stack(capture.capture_stack())


def test_configured_intrinsics_are_scaled_when_frames_carry_none(make_capture):
    intrinsics = CameraIntrinsics(fx=256.0, fy=256.0, cx=127.5, cy=95.5, width=256, height=192)
    capture = make_capture(intrinsics=intrinsics)
    with open_client(capture.bridge) as client:
        exchange(client, frame_message(7, 0, 2, 1.0))
        assert exchange(client, frame_message(7, 1, 2, 2.0))["stack_id"] == "7"
    stack = capture.capture_stack()
    assert stack.intrinsics == intrinsics.scaled(WIDTH_PX, HEIGHT_PX)


def test_stack_without_any_intrinsics_is_refused(capture):
    with open_client(capture.bridge) as client:
        exchange(client, frame_message("n", 0, 2, 1.0))
        reply = exchange(client, frame_message("n", 1, 2, 2.0))
    assert reply["code"] == "bad_stack" and "fx, fy, cx, cy" in reply["message"]
    assert capture.capture_stack() is None


# --- malformed frames: an error reply, the connection and the stack carry on ---------------------


def test_malformed_messages_get_errors_and_the_connection_survives(make_capture):
    capture = make_capture()  # default limits: the 200000-deep message is 400 kB
    with open_client(capture.bridge) as client:
        first = exchange(client, frame_message("s", 0, 3, 1.0, grey_level=40, **INTRINSICS_PX))
        assert first["type"] == "ack"
        bad_json = {
            "cut short": frame_message("s", 1, 3, 4.0)[:60],
            "nested 200000 deep": '{"token": "%s", "x": %s%s}' % (TOKEN, "[" * 200_000, "]" * 200_000),
            "integer of 5000 digits": '{"token": "%s", "index": %s}' % (TOKEN, "9" * 5000),
            "not an object": '[{"token": "%s"}]' % TOKEN,
        }
        for what, message in bad_json.items():
            reply = exchange(client, message)
            assert (reply["type"], reply["code"]) == ("error", "bad_json"), what

        bad_fields = {
            "missing count": json.dumps({"token": TOKEN, "stack_id": "s", "index": 1}),
            "zero diopters": frame_message("s", 1, 3, 0.0),
            "negative diopters": frame_message("s", 1, 3, -2.0),
            "NaN diopters": frame_message("s", 1, 3, float("nan")),
            "infinite diopters": frame_message("s", 1, 3, float("inf")),
            "diopters beyond a float": frame_message("s", 1, 3, 10**400),
            "focus at 1e30 m": frame_message("s", 1, 3, 1e-30),
            "focus at 1 mm": frame_message("s", 1, 3, 1000.0),
            "index out of range": frame_message("s", 3, 3, 2.0),
            "boolean index": frame_message("s", True, 3, 2.0),
            "count above the limit": frame_message("t", 0, 1000, 2.0),
            "stack id too long": frame_message("x" * 200, 0, 3, 2.0),
            "partial intrinsics": frame_message("s", 1, 3, 2.0, fx=50.0),
            "fx = 1e-30": frame_message("s", 1, 3, 2.0, **{**INTRINSICS_PX, "fx": 1e-30}),
            "principal point far outside": frame_message("s", 1, 3, 2.0, **{**INTRINSICS_PX, "cx": 1e9}),
            "jpeg not a string": frame_message("s", 1, 3, 2.0, jpeg_base64=17),
        }
        for what, message in bad_fields.items():
            reply = exchange(client, message)
            assert (reply["type"], reply["code"]) == ("error", "bad_field"), (what, reply)

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
    counts = refused(capture)
    assert counts["bad_json"] == len(bad_json) and counts["bad_field"] == len(bad_fields)
    problems = capture.new_problems()
    assert f"bad_field x{len(bad_fields)}" in problems and "duplicate_frame x1" in problems
    assert capture.new_problems() is None, "new_problems() reports each refusal once"


def test_bad_base64_and_damaged_jpegs_are_refused_before_they_reach_a_stack(capture):
    png_ok, png = cv2.imencode(".png", np.zeros((HEIGHT_PX, WIDTH_PX, 3), np.uint8))
    assert png_ok
    good = jpeg_bytes(100, 320, 240)
    middle = len(good) // 2
    rng = np.random.default_rng(0)
    payloads = {
        "bad_base64": ["this is not base64!!"],
        "not_jpeg": [
            base64.b64encode(png.tobytes()).decode(),
            base64.b64encode(good[:200]).decode(),  # header only
            base64.b64encode(good[: int(len(good) * 0.6)]).decode(),  # truncated to 60 %
            base64.b64encode(good[:middle] + rng.integers(0, 256, 300, np.uint8).tobytes()
                             + good[middle + 300:]).decode(),  # garbage mid-file
        ],
    }
    with open_client(capture.bridge) as client:
        for code, encoded in payloads.items():
            for payload in encoded:
                message = json.loads(frame_message("b", 0, 3, 1.0))
                message["jpeg_base64"] = payload
                reply = exchange(client, json.dumps(message))
                assert (reply["type"], reply["code"], reply["index"]) == ("error", code, 0), reply
        send_good_stack(client, "b")
    assert_good_stack(capture.capture_stack())
    assert capture.bridge.assembler.held_pixels == 0


def test_huge_declared_jpeg_size_is_refused_before_decoding(capture):
    # A real JPEG header whose start-of-frame claims 60000 x 60000 pixels.
    jpeg = bytearray(jpeg_bytes(100))
    sof = next(i for i in range(len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] == 0xC0)
    jpeg[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2
    message = json.loads(frame_message("h", 0, 2, 1.0))
    message["jpeg_base64"] = base64.b64encode(bytes(jpeg)).decode()
    with open_client(capture.bridge) as client:
        reply = exchange(client, json.dumps(message))
    assert reply["code"] == "frame_too_large"


def test_a_handling_bug_costs_one_reply_not_the_connection(capture, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    with open_client(capture.bridge) as client:
        monkeypatch.setattr(capture.bridge, "_accept_frame", broken)
        reply = exchange(client, frame_message("i", 0, 3, 1.0))
        assert (reply["code"], reply["message"]) == ("internal_error", "RuntimeError: simulated bug")
        monkeypatch.undo()
        send_good_stack(client, "i")
    assert_good_stack(capture.capture_stack())


# --- limits: stacks, pixels, messages, connections ------------------------------------------------


def test_a_new_stack_when_every_slot_is_busy_is_refused_and_succeeds_later(make_capture):
    capture = make_capture(max_pending_stacks=2, max_stacks_per_client=1)
    with open_client(capture.bridge) as a, open_client(capture.bridge) as b, open_client(capture.bridge) as c:
        assert exchange(a, frame_message("a", 0, 3, 1.0, 40, **INTRINSICS_PX))["type"] == "ack"
        assert exchange(b, frame_message("b", 0, 2, 1.0, **INTRINSICS_PX))["type"] == "ack"
        busy = exchange(c, frame_message("c", 0, 2, 1.0, **INTRINSICS_PX))
        assert (busy["code"], busy["stack_id"]) == ("busy", "c")
        assert exchange(b, frame_message("b", 1, 2, 2.0))["type"] == "stack_complete"
        assert exchange(c, frame_message("c", 0, 2, 1.0, **INTRINSICS_PX))["type"] == "ack"
        assert exchange(c, frame_message("c", 1, 2, 2.0))["type"] == "stack_complete"
        assert exchange(a, frame_message("a", 1, 3, 4.0, 200))["type"] == "ack"
        assert exchange(a, frame_message("a", 2, 3, 2.0, 120))["type"] == "stack_complete"
        assert not any(pending_messages(client, 0.1) for client in (a, b, c)), "nobody's stack was evicted"
    stacks = [capture.capture_stack() for _ in range(3)]
    np.testing.assert_allclose([s.focus_distances_m[0] for s in stacks], [0.5, 0.5, 0.25])
    assert_good_stack(stacks[2])


def test_a_client_starting_too_many_stacks_is_told_which_one_was_evicted(make_capture):
    capture = make_capture(max_stacks_per_client=2)
    with open_client(capture.bridge) as client:
        for stack_id in ("first", "second", "third"):
            assert exchange(client, frame_message(stack_id, 0, 2, 1.0, **INTRINSICS_PX))["type"] == "ack"
        [notice] = pending_messages(client)
        assert (notice["type"], notice["code"], notice["stack_id"]) == ("error", "stack_evicted", "first")
        assert "1 of 2 frames" in notice["message"] and "new stack_id" in notice["message"]
        late = exchange(client, frame_message("first", 1, 2, 2.0))
        assert (late["code"], late["stack_id"]) == ("stack_evicted", "first"), "an evicted stack stays closed"
        assert exchange(client, frame_message("second", 1, 2, 2.0))["type"] == "stack_complete"
        assert exchange(client, frame_message("third", 1, 2, 2.0))["type"] == "stack_complete"
    assert capture.capture_stack() is not None and capture.capture_stack() is not None
    assert capture.capture_stack() is None
    assert capture.diagnostic_values()["phone.stacks_evicted"] == "1"


def test_an_abandoned_stack_expires_and_its_owner_is_told(make_capture):
    capture = make_capture(stack_timeout_s=0.3)
    with open_client(capture.bridge) as client:
        assert exchange(client, frame_message("slow", 0, 3, 1.0, **INTRINSICS_PX))["type"] == "ack"
        assert capture.bridge.assembler.held_pixels == FRAME_PIXELS
        notices = pending_messages(client, 1.5)
        assert [(n["code"], n["stack_id"]) for n in notices] == [("stack_evicted", "slow")]
        assert "no frame for 0.3 s" in notices[0]["message"]
    assert capture.bridge.assembler.held_pixels == 0 and capture.bridge.assembler.pending_stacks == 0
    assert "1 incomplete phone stack(s) evicted" in capture.new_problems()


def test_the_decoded_pixel_budget_holds(make_capture):
    capture = make_capture(max_frame_pixels=FRAME_PIXELS, max_decoded_pixels=3 * FRAME_PIXELS)
    with open_client(capture.bridge) as client:
        for index in range(3):
            assert exchange(client, frame_message("big", index, 4, 1.0 + index, **INTRINSICS_PX))["type"] == "ack"
        over = exchange(client, frame_message("big", 3, 4, 5.0))
        assert (over["code"], over["index"]) == ("over_budget", 3)
        assert capture.bridge.assembler.held_pixels == 3 * FRAME_PIXELS
    # Completed stacks the consumer has not taken give way to new frames (oldest first).
    capture = make_capture(max_frame_pixels=FRAME_PIXELS, max_decoded_pixels=3 * FRAME_PIXELS)
    with open_client(capture.bridge) as client:
        for stack_id in ("old", "new"):
            exchange(client, frame_message(stack_id, 0, 2, 1.0, **INTRINSICS_PX))
            assert exchange(client, frame_message(stack_id, 1, 2, 3.0))["type"] == "stack_complete"
    assert capture.bridge.assembler.stacks_dropped == 1
    np.testing.assert_allclose(capture.capture_stack().focus_distances_m, [1 / 3, 1.0])
    assert capture.capture_stack() is None and capture.bridge.assembler.held_pixels == 0


def test_oversized_message_closes_only_that_connection(capture):
    with open_client(capture.bridge) as bystander:
        assert exchange(bystander, frame_message("o", 0, 3, 1.0, 40, **INTRINSICS_PX))["type"] == "ack"
        with open_client(capture.bridge) as offender:
            oversized = json.loads(frame_message("x", 0, 2, 1.0))
            oversized["jpeg_base64"] = base64.b64encode(os.urandom(MAX_MESSAGE_BYTES)).decode()
            offender.send(json.dumps(oversized))
            assert_closed_with(offender, 1009)
        assert exchange(bystander, frame_message("o", 1, 3, 4.0, 200))["type"] == "ack"
        assert exchange(bystander, frame_message("o", 2, 3, 2.0, 120))["type"] == "stack_complete"
    assert_good_stack(capture.capture_stack())
    with open_client(capture.bridge) as newcomer:
        send_good_stack(newcomer, "after")


def test_connections_beyond_the_cap_are_refused_in_the_handshake(make_capture):
    capture = make_capture(max_clients=2)
    with open_client(capture.bridge) as a, open_client(capture.bridge):
        time.sleep(0.2)  # both handlers run (a third racing them is closed with 1013 instead)
        with pytest.raises(InvalidStatus) as refused_status:
            open_client(capture.bridge)
        assert refused_status.value.response.status_code == 503
        send_good_stack(a, "capped")
    time.sleep(0.2)  # the handlers notice the closed connections
    with open_client(capture.bridge) as later:
        send_good_stack(later, "after")
    assert refused(capture) == {"too_many_clients": 1}


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["wrong-token", None, "s3cret-\\u0074oken"])
def test_wrong_missing_or_escaped_token_is_refused_with_policy_violation(capture, token):
    message = json.loads(frame_message("t", 0, 2, 1.0))
    if token is None:
        del message["token"]
    text = json.dumps(message) if token is None else json.dumps(message).replace(TOKEN, token)
    with open_client(capture.bridge) as client:
        reply = exchange(client, text)
        assert (reply["type"], reply["code"]) == ("error", "unauthorized")
        assert_closed_with(client, 1008)
    assert capture.capture_stack() is None
    assert refused(capture) == {"unauthorized": 1}


def test_unauthenticated_messages_are_never_parsed(capture, monkeypatch):
    parsed = []
    real_parse = server_module.parse_json_object
    monkeypatch.setattr(server_module, "parse_json_object", lambda text: parsed.append(1) or real_parse(text))
    big_without_token = json.dumps({"stack_id": "x", "jpeg_base64": "A" * (MAX_MESSAGE_BYTES - 1000)})
    for message in ("not json", big_without_token, '{"token": "wrong", "x": %s}' % ("[" * 10_000)):
        with open_client(capture.bridge) as client:
            assert exchange(client, message)["code"] == "unauthorized"
            assert_closed_with(client, 1008)
    with open_client(capture.bridge) as client:
        client.send(b"\x00binary")
        assert json.loads(client.recv(timeout=REPLY_TIMEOUT_S))["code"] == "bad_json"
        assert_closed_with(client, 1008)
    assert parsed == []


def test_a_silent_connection_is_closed_at_the_authentication_deadline(make_capture):
    capture = make_capture(auth_timeout_s=0.5)
    with open_client(capture.bridge) as idle, open_client(capture.bridge) as phone:
        assert exchange(phone, frame_message("d", 0, 3, 1.0, 40, **INTRINSICS_PX))["type"] == "ack"
        started = time.monotonic()
        assert_closed_with(idle, 1008)
        assert time.monotonic() - started < 2.0
        time.sleep(0.5)
        assert exchange(phone, frame_message("d", 1, 3, 4.0, 200))["type"] == "ack", "authenticated phones stay"
    assert refused(capture) == {"auth_timeout": 1}


def test_a_silent_tcp_connection_is_dropped(make_capture):
    capture = make_capture(auth_timeout_s=0.5)
    with socket.create_connection(("127.0.0.1", capture.bridge.port), timeout=3.0) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n")  # a handshake that never ends
        try:
            assert raw.recv(1024) == b"", "the server closed the connection"
        except ConnectionResetError:  # closed by abort (RST)
            pass


# --- transport: TLS, addresses --------------------------------------------------------------------


def test_tls_serves_wss_to_a_client_that_trusts_the_certificate(make_capture, tmp_path):
    files = self_signed_certificate(tmp_path)
    if files is None:
        pytest.skip("openssl is not installed")
    certificate, key = files
    capture = make_capture(certfile=str(certificate), keyfile=str(key))
    assert capture.diagnostic_values()["phone.url"].startswith("wss://")
    trusting = ssl.create_default_context(cafile=str(certificate))
    url = f"wss://localhost:{capture.bridge.port}/"
    with connect(url, ssl=trusting, proxy=None, open_timeout=REPLY_TIMEOUT_S) as client:
        send_good_stack(client, "secure")
    assert_good_stack(capture.capture_stack())
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(url, ssl=ssl.create_default_context(), proxy=None, open_timeout=REPLY_TIMEOUT_S)
    with pytest.raises(Exception):  # plain ws:// gets no WebSocket from a TLS port
        connect(f"ws://127.0.0.1:{capture.bridge.port}/", proxy=None, open_timeout=2.0)


def test_unusable_tls_files_and_ports_are_clear_errors(tmp_path):
    with pytest.raises(CaptureError, match="missing.crt"):
        PhoneBridge(token=TOKEN, certfile=tmp_path / "missing.crt", keyfile=tmp_path / "missing.key")
    with pytest.raises(ValueError, match="both a certificate"):
        PhoneBridge(token=TOKEN, certfile=tmp_path / "only.crt")
    for port in (70000, -1):
        with pytest.raises(ValueError, match="0..65535"):
            PhoneBridge(token=TOKEN, port=port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bridge = PhoneBridge(token=TOKEN, port=taken.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(CaptureError, match="cannot listen on 127.0.0.1"):
            bridge.start()
        assert time.monotonic() - started < 5.0
    for token in ("", 'with"quote', "x" * 300):
        with pytest.raises(ValueError, match="token"):
            PhoneBridge(token=token)


def test_a_non_loopback_host_without_tls_is_warned_about(caplog):
    bridge = PhoneBridge(token=TOKEN, host="0.0.0.0", port=0)
    with caplog.at_level(logging.WARNING):
        bridge.start()
    bridge.close()
    assert any("without TLS" in record.getMessage() and "clear text" in record.getMessage()
               for record in caplog.records)


def test_close_disconnects_clients_and_frees_the_port():
    bridge = PhoneBridge(token=TOKEN, port=0)
    bridge.start()
    port = bridge.port
    with open_client(bridge) as client:
        bridge.close()
        assert_closed_with(client, 1001)
    with pytest.raises(OSError):
        connect(f"ws://127.0.0.1:{port}/", proxy=None, open_timeout=2.0)
    bridge.close()  # idempotent
