"""WebSocket bridge that receives focal stacks from a phone (the paper's mobile client).

The phone sweeps its lens, then sends each frame as one JSON text message.
The bridge checks and decodes frames as they arrive, assembles them per stack
and queues each completed FocalStack for `PhoneCapture.capture_stack()`.

Protocol, version 1 (ws://HOST:PORT/, any path):

Client -> server, one text message per frame::

    {"token": "<shared secret>",
     "stack_id": "<string or integer, same for every frame of one sweep>",
     "index": i,                # 0 <= i < count, capture order
     "count": N,                # frames in this stack, 2 <= N <= max_frames_per_stack
     "focus_diopters": d,       # lens focus, 1/m, finite and > 0 (distance = 1/d metres)
     "jpeg_base64": "<base64 of one baseline/progressive JPEG>",
     "fx": .., "fy": .., "cx": .., "cy": ..}   # optional, all four together,
                                                # pixels of this JPEG

Server -> client, one text reply per message::

    {"type": "ack", "stack_id": s, "index": i, "received": k, "count": N}
    {"type": "stack_complete", "stack_id": s, "count": N, "focus_distances_m": [...]}
    {"type": "error", "code": "<code>", "message": "<why>", "stack_id": s, "index": i}

`stack_complete` replaces the ack of the frame that completes a stack.
Error codes: unauthorized, bad_json, bad_field, bad_base64, not_jpeg,
frame_too_large, frame_size_mismatch, count_mismatch, duplicate_frame,
bad_stack (the complete stack was unusable, e.g. two frames with one focus).
`stack_id` and `index` are present in an error when the message carried them.

Rules:
- Every message carries the token. A parsable message with a wrong or missing
  token gets an `unauthorized` error and the connection is closed with 1008
  (policy violation). A connection that has not yet sent a valid token is
  also closed after an unparsable message.
- Any other bad frame gets an error reply and is dropped; the connection stays
  open and the rest of its stack can still be sent.
- Messages larger than `max_message_bytes` close the connection with 1009
  (message too big); other clients are unaffected.
- A stack's frames may come over several connections (a phone that
  reconnects). At most `max_pending_stacks` stacks are assembled at once: a
  new one evicts the oldest incomplete one, with a logged warning. At most
  `max_completed_stacks` completed stacks wait for the consumer; a new one
  evicts the oldest.
- Intrinsics of a stack: those of its first frame (by index) that carries
  them; otherwise the bridge's configured intrinsics scaled to the frame size;
  with neither, the stack is refused (bad_stack).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hmac
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from ...stack.camera import CameraIntrinsics
from ...stack.focal_stack import FocalStack, FocalStackError
from ..base import CaptureBackend, CaptureError

_LOG = logging.getLogger(__name__)

DEFAULT_PORT = 8765
MAX_STACK_ID_CHARS = 128
_INTRINSIC_FIELDS = ("fx", "fy", "cx", "cy")
# JPEG start-of-frame markers: every one but DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class _FrameRejected(Exception):
    """A message the bridge answers with an error reply."""

    def __init__(self, code: str, message: str, stack_id: str | None = None, index: int | None = None):
        super().__init__(message)
        self.code = code
        self.stack_id = stack_id
        self.index = index

    def reply(self) -> dict:
        body = {"type": "error", "code": self.code, "message": str(self)}
        if self.stack_id is not None:
            body["stack_id"] = self.stack_id
        if self.index is not None:
            body["index"] = self.index
        return body


@dataclass(frozen=True)
class _FrameMessage:
    """The checked fields of one frame message, JPEG not yet decoded."""

    stack_id: str
    index: int
    count: int
    focus_distance_m: float
    jpeg: bytes
    intrinsics_px: tuple[float, float, float, float] | None

    def rejected(self, code: str, text: str) -> _FrameRejected:
        return _FrameRejected(code, text, self.stack_id, self.index)


@dataclass(frozen=True)
class _ReceivedFrame:
    rgb: np.ndarray
    focus_distance_m: float
    intrinsics_px: tuple[float, float, float, float] | None
    arrival_s: float


@dataclass
class _PartialStack:
    count: int
    frames: dict[int, _ReceivedFrame] = field(default_factory=dict)
    """By index (capture order)."""


class PhoneBridge:
    """The WebSocket server and stack assembler; runs its own event loop in a background thread.

    `port=0` binds a free port, readable from `port` after `start()`.
    `intrinsics` (optional) are used, scaled, for stacks whose frames carry none.
    """

    def __init__(
        self,
        token: str,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        max_message_bytes: int = 8 * 1024 * 1024,
        max_frame_pixels: int = 25_000_000,
        max_frames_per_stack: int = 32,
        max_pending_stacks: int = 4,
        max_completed_stacks: int = 4,
        intrinsics: CameraIntrinsics | None = None,
        frame_id: str = "camera_optical_frame",
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("the phone bridge needs a non-empty token")
        for name, value in (
            ("max_message_bytes", max_message_bytes),
            ("max_frame_pixels", max_frame_pixels),
            ("max_pending_stacks", max_pending_stacks),
            ("max_completed_stacks", max_completed_stacks),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if max_frames_per_stack < 2:
            raise ValueError(f"max_frames_per_stack must be >= 2, got {max_frames_per_stack}")
        if intrinsics is not None:
            intrinsics.validate()
        self._token = token.encode()
        self.host = host
        self.requested_port = port
        self.max_message_bytes = max_message_bytes
        self.max_frame_pixels = max_frame_pixels
        self.max_frames_per_stack = max_frames_per_stack
        self.max_pending_stacks = max_pending_stacks
        self.max_completed_stacks = max_completed_stacks
        self.intrinsics = intrinsics
        self.frame_id = frame_id
        self._lock = threading.Lock()
        self._pending: dict[str, _PartialStack] = {}
        self._completed: collections.deque[FocalStack] = collections.deque()
        self._port: int | None = None
        self._clients_connected = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._start_error: Exception | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when `port=0` was asked for)."""
        if self._port is None:
            raise RuntimeError("the phone bridge is not started")
        return self._port

    @property
    def clients_connected(self) -> int:
        return self._clients_connected

    def start(self, timeout_s: float = 10.0) -> None:
        """Bind and serve in a background thread; CaptureError when the address cannot be bound."""
        if self._thread is not None:
            raise RuntimeError("the phone bridge is already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready)), name="phone-bridge", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout_s):
            raise CaptureError(f"phone bridge did not start within {timeout_s} s")
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise CaptureError(
                f"phone bridge cannot listen on {self.host}:{self.requested_port}: {self._start_error}"
            )
        _LOG.info("phone bridge listening on ws://%s:%d/", self.host, self._port)

    def pop_stack(self) -> FocalStack | None:
        """The oldest completed stack, or None."""
        with self._lock:
            return self._completed.popleft() if self._completed else None

    def close(self) -> None:
        """Close every connection (1001 going away), stop the server and join its thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(timeout=10.0)
        if thread.is_alive():
            _LOG.warning("phone bridge thread did not stop within 10 s")

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await serve(
                self._serve_client, self.host, self.requested_port, max_size=self.max_message_bytes
            )
        except OSError as exc:
            self._start_error = exc
            ready.set()
            return
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        await self._stop.wait()
        server.close()
        await server.wait_closed()

    async def _serve_client(self, connection: ServerConnection) -> None:
        peer = connection.remote_address
        authenticated = False
        self._clients_connected += 1
        try:
            async for message in connection:
                try:
                    fields = _parse_json_object(message)
                except _FrameRejected as exc:
                    _LOG.warning("phone %s: %s", peer, exc)
                    await connection.send(json.dumps(exc.reply()))
                    if not authenticated:
                        await connection.close(CloseCode.POLICY_VIOLATION, "authenticate first")
                        return
                    continue
                if not self._token_matches(fields.get("token")):
                    _LOG.warning("phone %s: wrong or missing token, closing", peer)
                    refusal = _FrameRejected("unauthorized", "wrong or missing token")
                    await connection.send(json.dumps(refusal.reply()))
                    await connection.close(CloseCode.POLICY_VIOLATION, "wrong or missing token")
                    return
                authenticated = True
                try:
                    reply = await self._accept_frame(fields)
                except _FrameRejected as exc:
                    _LOG.warning("phone %s: frame refused (%s): %s", peer, exc.code, exc)
                    reply = exc.reply()
                await connection.send(json.dumps(reply))
        except ConnectionClosed as exc:
            _LOG.info("phone %s disconnected: %s", peer, exc)
        finally:
            self._clients_connected -= 1

    def _token_matches(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self._token)

    async def _accept_frame(self, fields: dict) -> dict:
        frame = self._check_fields(fields)
        try:
            width_px, height_px = _jpeg_size_px(frame.jpeg)
        except ValueError as exc:
            raise frame.rejected("not_jpeg", str(exc)) from None
        if width_px * height_px > self.max_frame_pixels:
            raise frame.rejected(
                "frame_too_large",
                f"{width_px}x{height_px} JPEG exceeds {self.max_frame_pixels} pixels",
            )
        # Decoding takes tens of ms for a phone photo: keep the event loop serving others.
        frame_bgr = await asyncio.to_thread(
            cv2.imdecode, np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR
        )
        if frame_bgr is None:
            raise frame.rejected("not_jpeg", "the JPEG cannot be decoded")
        return self._add_frame(frame, cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))

    def _check_fields(self, fields: dict) -> _FrameMessage:
        stack_id = fields.get("stack_id")
        if isinstance(stack_id, int) and not isinstance(stack_id, bool):
            stack_id = str(stack_id)
        if not isinstance(stack_id, str) or not 0 < len(stack_id) <= MAX_STACK_ID_CHARS:
            raise _FrameRejected(
                "bad_field", f"stack_id must be a string of 1..{MAX_STACK_ID_CHARS} chars or an integer"
            )
        index = fields.get("index")
        index_or_none = index if _is_int(index) else None

        def rejected(code: str, text: str) -> _FrameRejected:
            return _FrameRejected(code, text, stack_id, index_or_none)

        count = fields.get("count")
        if not _is_int(count) or not 2 <= count <= self.max_frames_per_stack:
            raise rejected("bad_field", f"count must be an integer in 2..{self.max_frames_per_stack}")
        if not _is_int(index) or not 0 <= index < count:
            raise rejected("bad_field", f"index must be an integer in 0..{count - 1}")
        diopters = fields.get("focus_diopters")
        if not _is_number(diopters) or not math.isfinite(diopters) or diopters <= 0:
            raise rejected("bad_field", f"focus_diopters must be a finite number > 0, got {diopters!r}")
        present = [name for name in _INTRINSIC_FIELDS if name in fields]
        intrinsics_px = None
        if present:
            values = [fields.get(name) for name in _INTRINSIC_FIELDS]
            if len(present) != 4 or not all(_is_number(v) and math.isfinite(v) for v in values):
                raise rejected("bad_field", "fx, fy, cx, cy must all be given as finite numbers")
            if values[0] <= 0 or values[1] <= 0:
                raise rejected("bad_field", "fx and fy must be > 0 pixels")
            intrinsics_px = tuple(float(v) for v in values)
        encoded = fields.get("jpeg_base64")
        if not isinstance(encoded, str):
            raise rejected("bad_field", "jpeg_base64 must be a string")
        try:
            jpeg = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise rejected("bad_base64", f"jpeg_base64 is not valid base64: {exc}") from None
        return _FrameMessage(stack_id, index, count, 1.0 / float(diopters), jpeg, intrinsics_px)

    def _add_frame(self, frame: _FrameMessage, frame_rgb: np.ndarray) -> dict:
        with self._lock:
            partial = self._pending.get(frame.stack_id)
            if partial is None:
                partial = self._open_stack(frame.stack_id, frame.count)
            if frame.count != partial.count:
                raise frame.rejected(
                    "count_mismatch", f"stack has count {partial.count}, frame says {frame.count}"
                )
            if frame.index in partial.frames:
                raise frame.rejected("duplicate_frame", f"frame {frame.index} was already received")
            if partial.frames:
                expected_shape = next(iter(partial.frames.values())).rgb.shape
                if frame_rgb.shape != expected_shape:
                    raise frame.rejected(
                        "frame_size_mismatch",
                        f"frame is {frame_rgb.shape[1]}x{frame_rgb.shape[0]}, the stack's "
                        f"are {expected_shape[1]}x{expected_shape[0]}",
                    )
            partial.frames[frame.index] = _ReceivedFrame(
                frame_rgb, frame.focus_distance_m, frame.intrinsics_px, time.time()
            )
            received = len(partial.frames)
            if received < partial.count:
                return {
                    "type": "ack",
                    "stack_id": frame.stack_id,
                    "index": frame.index,
                    "received": received,
                    "count": partial.count,
                }
            del self._pending[frame.stack_id]
            try:
                stack = self._assemble(partial)
            except FocalStackError as exc:
                raise frame.rejected("bad_stack", f"stack {frame.stack_id!r} refused: {exc}") from None
            if len(self._completed) >= self.max_completed_stacks:
                self._completed.popleft()
                _LOG.warning("phone stacks arrive faster than they are used: dropped the oldest one")
            self._completed.append(stack)
        _LOG.info("phone stack %r complete (%d frames)", frame.stack_id, stack.num_frames)
        return {
            "type": "stack_complete",
            "stack_id": frame.stack_id,
            "count": stack.num_frames,
            "focus_distances_m": stack.focus_distances_m.tolist(),
        }

    def _open_stack(self, stack_id: str, count: int) -> _PartialStack:
        """Start assembling a stack, evicting the oldest incomplete one when at the limit."""
        if len(self._pending) >= self.max_pending_stacks:
            oldest_id = next(iter(self._pending))
            oldest = self._pending.pop(oldest_id)
            _LOG.warning(
                "dropped incomplete phone stack %r (%d of %d frames) to make room for %r",
                oldest_id,
                len(oldest.frames),
                oldest.count,
                stack_id,
            )
        partial = _PartialStack(count=count)
        self._pending[stack_id] = partial
        return partial

    def _assemble(self, partial: _PartialStack) -> FocalStack:
        """Sort frames near to far, attach intrinsics; FocalStackError when unusable."""
        near_to_far = sorted(partial.frames.values(), key=lambda f: f.focus_distance_m)
        frames = np.stack([f.rgb for f in near_to_far])
        height_px, width_px = frames.shape[1:3]
        given_intrinsics = [
            partial.frames[i].intrinsics_px
            for i in sorted(partial.frames)
            if partial.frames[i].intrinsics_px is not None
        ]
        if given_intrinsics:
            fx, fy, cx, cy = given_intrinsics[0]
            intrinsics = CameraIntrinsics(fx, fy, cx, cy, width_px, height_px)
        elif self.intrinsics is not None:
            intrinsics = self.intrinsics.scaled(width_px, height_px)
        else:
            raise FocalStackError("no frame carries fx, fy, cx, cy and the bridge has no default")
        return FocalStack(
            frames=frames,
            focus_distances_m=np.array([f.focus_distance_m for f in near_to_far]),
            intrinsics=intrinsics,
            reference_index=0,
            registered=False,
            stamp_s=near_to_far[0].arrival_s,
            frame_id=self.frame_id,
        ).validate()


class PhoneCapture(CaptureBackend):
    """Capture backend that serves stacks sent by a phone; starts its PhoneBridge at once.

    Keyword arguments are PhoneBridge's. `capture_stack()` never waits.
    """

    name = "phone"

    def __init__(self, **bridge_options) -> None:
        self.bridge = PhoneBridge(**bridge_options)
        self.bridge.start()

    def capture_stack(self) -> FocalStack | None:
        return self.bridge.pop_stack()

    def close(self) -> None:
        self.bridge.close()


def _parse_json_object(message: str | bytes) -> dict:
    if isinstance(message, bytes):
        raise _FrameRejected("bad_json", "frames must be sent as JSON text messages, not binary")
    try:
        fields = json.loads(message)
    except json.JSONDecodeError as exc:
        raise _FrameRejected("bad_json", f"message is not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise _FrameRejected("bad_json", "message must be a JSON object")
    return fields


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _jpeg_size_px(jpeg: bytes) -> tuple[int, int]:
    """Width and height declared by the JPEG's start-of-frame header, read before decoding.

    Lets the bridge refuse a small file that declares a huge image before
    allocating it. ValueError when the data is not a JPEG.
    """
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("data does not start with a JPEG start-of-image marker")
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
    raise ValueError("no JPEG frame header with a size was found")
