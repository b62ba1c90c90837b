"""The phone bridge's WebSocket server (its own event loop in a background thread) and its capture adapter.

The protocol (message fields, replies, error codes) is in protocol.py; stack
assembly is in assembler.py. The server authenticates, checks and decodes
frames as they arrive, hands them to a StackAssembler and answers the client;
`PhoneCapture.capture_stack()` pops completed stacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import cv2
import numpy as np

from .websockets_version import require_websockets

require_websockets()  # a clear CaptureError, before the imports below fail on a too-old websockets
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.frames import CloseCode  # noqa: E402

from ...stack.camera import CameraIntrinsics
from ...stack.focal_stack import DEFAULT_FRAME_ID, FocalStack
from ..base import CaptureBackend, CaptureError
from .assembler import StackAssembler
from .protocol import DEFAULT_PORT, FrameRejected, check_frame_fields, jpeg_size_px, parse_json_object, token_matches

_LOG = logging.getLogger(__name__)


class PhoneBridge:
    """The WebSocket server; runs its own event loop in a background thread.

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
        frame_id: str = DEFAULT_FRAME_ID,
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("the phone bridge needs a non-empty token")
        for name, value in (("max_message_bytes", max_message_bytes), ("max_frame_pixels", max_frame_pixels)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if max_frames_per_stack < 2:
            raise ValueError(f"max_frames_per_stack must be >= 2, got {max_frames_per_stack}")
        self.assembler = StackAssembler(max_pending_stacks, max_completed_stacks, intrinsics, frame_id)
        self._token = token.encode()
        self.host = host
        self.requested_port = port
        self.max_message_bytes = max_message_bytes
        self.max_frame_pixels = max_frame_pixels
        self.max_frames_per_stack = max_frames_per_stack
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
        return self.assembler.pop_stack()

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
                    fields = parse_json_object(message)
                except FrameRejected as exc:
                    _LOG.warning("phone %s: %s", peer, exc)
                    await connection.send(json.dumps(exc.reply()))
                    if not authenticated:
                        await connection.close(CloseCode.POLICY_VIOLATION, "authenticate first")
                        return
                    continue
                if not token_matches(fields.get("token"), self._token):
                    _LOG.warning("phone %s: wrong or missing token, closing", peer)
                    refusal = FrameRejected("unauthorized", "wrong or missing token")
                    await connection.send(json.dumps(refusal.reply()))
                    await connection.close(CloseCode.POLICY_VIOLATION, "wrong or missing token")
                    return
                authenticated = True
                try:
                    reply = await self._accept_frame(fields)
                except FrameRejected as exc:
                    _LOG.warning("phone %s: frame refused (%s): %s", peer, exc.code, exc)
                    reply = exc.reply()
                await connection.send(json.dumps(reply))
        except ConnectionClosed as exc:
            _LOG.info("phone %s disconnected: %s", peer, exc)
        finally:
            self._clients_connected -= 1

    async def _accept_frame(self, fields: dict) -> dict:
        frame = check_frame_fields(fields, self.max_frames_per_stack)
        try:
            width_px, height_px = jpeg_size_px(frame.jpeg)
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
        return self.assembler.add_frame(frame, cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))


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
