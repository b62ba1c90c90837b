"""The phone bridge's WebSocket server (its own event loop in a background thread) and its capture adapter.

The protocol (message fields, replies, error codes, limits) is in protocol.py;
stack assembly is in assembler.py. The server authenticates, checks and decodes
frames as they arrive, hands them to a StackAssembler and answers the client;
`PhoneCapture.capture_stack()` pops completed stacks.

Memory is bounded before authentication: a connection buffers at most one
message being handled plus one more (`max_queue=1`), each at most
`max_message_bytes`, and at most `max_clients` connections exist; a message is
parsed only once its raw text carries the token. Decoded frames are bounded by
`max_decoded_pixels` (3 bytes each), checked on the JPEG header before
decoding. Decoding runs in a worker thread, one frame at a time (decode_rgb of a
12.5 MP JPEG of ../shared/data/pixel6pro_stack: 0.43 s on the shared 2-core
development machine), so the event loop keeps answering other phones, pings
and authentication deadlines meanwhile.

Every refusal is counted (`counters`); `PhoneCapture` reports them through
`diagnostic_values()` and `new_problems()`, which the sweep node publishes on
/diagnostics.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import http
import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .websockets_version import require_websockets

require_websockets()  # a clear CaptureError, before the imports below fail on a too-old websockets
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.frames import CloseCode  # noqa: E402
from websockets.http11 import Request, Response  # noqa: E402

from ...stack.camera import CameraIntrinsics
from ...stack.focal_stack import DEFAULT_FRAME_ID, MAX_FRAMES, MAX_IMAGE_SIDE_PX, FocalStack
from ..base import CaptureBackend, CaptureError
from ..image_decode import ImageDecodeError, decode_rgb, jpeg_size_px
from .assembler import StackAssembler
from .protocol import (
    DEFAULT_AUTH_TIMEOUT_S,
    DEFAULT_MAX_CLIENTS,
    DEFAULT_MAX_COMPLETED_STACKS,
    DEFAULT_MAX_DECODED_PIXELS,
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_FRAMES_PER_STACK,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_PENDING_STACKS,
    DEFAULT_MAX_STACKS_PER_CLIENT,
    DEFAULT_PORT,
    DEFAULT_STACK_TIMEOUT_S,
    REFUSAL_CODES,
    FrameMessage,
    FrameRejected,
    check_frame_fields,
    parse_json_object,
    raw_token_matches,
    token_matches,
    token_problem,
)

_LOG = logging.getLogger(__name__)

CONNECTION_REFUSALS = ("too_many_clients", "auth_timeout")
"""Connection-level refusals counted beside the error codes of protocol.REFUSAL_CODES."""
REFUSAL_LOG_LINES = 20
REFUSAL_LOG_WINDOW_S = 10.0
"""At most 20 refusal log lines per 10 s: a client looping on bad messages cannot flood the log."""
LARGE_MESSAGE_BYTES = 1024 * 1024
"""After a message this large the bridge hands freed memory back to the system (see _release_memory)."""


class BridgeCounters:
    """Refusals and events by name, in total and since the last `take_new()`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: collections.Counter[str] = collections.Counter()
        self._new: collections.Counter[str] = collections.Counter()

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._totals[name] += count
            self._new[name] += count

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._totals)

    def take_new(self) -> dict[str, int]:
        with self._lock:
            new, self._new = dict(self._new), collections.Counter()
            return new


class PhoneBridge:
    """The WebSocket server; runs its own event loop in a background thread.

    `port=0` binds a free port, readable from `port` after `start()`.
    `intrinsics` (optional) are used, scaled, for stacks whose frames carry none.
    `certfile` and `keyfile` (PEM) turn on TLS (wss://). The limits are
    explained in protocol.py. Invalid options raise ValueError, an unusable
    certificate CaptureError.
    """

    def __init__(
        self,
        token: str,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
        max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS,
        max_frames_per_stack: int = DEFAULT_MAX_FRAMES_PER_STACK,
        max_pending_stacks: int = DEFAULT_MAX_PENDING_STACKS,
        max_stacks_per_client: int = DEFAULT_MAX_STACKS_PER_CLIENT,
        max_completed_stacks: int = DEFAULT_MAX_COMPLETED_STACKS,
        stack_timeout_s: float = DEFAULT_STACK_TIMEOUT_S,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        intrinsics: CameraIntrinsics | None = None,
        frame_id: str = DEFAULT_FRAME_ID,
    ) -> None:
        problem = token_problem(token)
        if problem:
            raise ValueError(problem)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535 (0: any free port), got {port!r}")
        if not isinstance(host, str) or not host.strip():
            raise ValueError("host must be an address or host name to listen on")
        for name, value in (("max_message_bytes", max_message_bytes), ("max_frame_pixels", max_frame_pixels),
                            ("max_clients", max_clients)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 2 <= max_frames_per_stack <= MAX_FRAMES:
            raise ValueError(f"max_frames_per_stack must be in 2..{MAX_FRAMES}, got {max_frames_per_stack}")
        if max_decoded_pixels < 2 * max_frame_pixels:
            raise ValueError(
                f"max_decoded_pixels ({max_decoded_pixels}) must hold at least a 2-frame stack of "
                f"max_frame_pixels ({max_frame_pixels})"
            )
        if not auth_timeout_s > 0:
            raise ValueError(f"auth_timeout_s must be > 0, got {auth_timeout_s}")
        self.assembler = StackAssembler(
            max_pending_stacks, max_completed_stacks, intrinsics, frame_id, max_decoded_pixels,
            max_stacks_per_client, stack_timeout_s,
        )
        self._token = token.encode()
        self.host = host
        self.requested_port = port
        self.max_message_bytes = max_message_bytes
        self.max_frame_pixels = max_frame_pixels
        self.max_frames_per_stack = max_frames_per_stack
        self.max_clients = max_clients
        self.auth_timeout_s = auth_timeout_s
        self.ssl_context = _server_tls_context(certfile, keyfile)
        self.counters = BridgeCounters()
        self._port: int | None = None
        self._clients_connected = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._background: set[asyncio.Task] = set()
        self._trim_scheduled = False
        self._log_window_start_s = float("-inf")
        self._log_lines = 0
        self._log_suppressed = 0

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context is not None else "ws"

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
        self._thread = threading.Thread(target=self._run, args=(ready,), name="phone-bridge", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise CaptureError(f"phone bridge did not start within {timeout_s} s")
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise CaptureError(
                f"phone bridge cannot listen on {self.host}:{self.requested_port}: {self._start_error}"
            )
        _LOG.info("phone bridge listening on %s://%s:%d/", self.scheme, self.host, self._port)
        if self.ssl_context is None and not _is_loopback(self.host):
            _LOG.warning(
                "phone bridge listens on %s without TLS: the token and the frames travel in clear text to "
                "anyone on the network; give it a certificate and key (phone.certfile, phone.keyfile) for wss://",
                self.host,
            )

    def pop_stack(self) -> FocalStack | None:
        """The oldest completed stack, or None."""
        return self.assembler.pop_stack()

    def close(self) -> None:
        """Close every connection (1001 going away), stop the server and join its thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop already ended
                pass
        thread.join(timeout=10.0)
        if thread.is_alive():
            _LOG.warning("phone bridge thread did not stop within 10 s")

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # noqa: BLE001 - reported to start() or logged, never a thread traceback
            if not ready.is_set():
                self._start_error = exc
            else:
                _LOG.error("phone bridge stopped: %s: %s", type(exc).__name__, exc)
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await serve(
            self._serve_client,
            self.host,
            self.requested_port,
            max_size=self.max_message_bytes,
            max_queue=1,
            compression=None,
            open_timeout=self.auth_timeout_s,
            process_request=self._refuse_when_full,
            ssl=self.ssl_context,
        )
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        expiry = asyncio.create_task(self._expire_stale_stacks())
        await self._stop.wait()
        expiry.cancel()
        server.close()
        await server.wait_closed()

    def _refuse_when_full(self, connection: ServerConnection, request: Request) -> Response | None:
        """HTTP 503 during the handshake once `max_clients` connections are open."""
        if self._clients_connected < self.max_clients:
            return None
        self.counters.add("too_many_clients")
        return connection.respond(
            http.HTTPStatus.SERVICE_UNAVAILABLE, f"{self.max_clients} phones are connected (the limit); retry later\n"
        )

    async def _expire_stale_stacks(self) -> None:
        interval_s = min(1.0, self.assembler.stack_timeout_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.assembler.expire_stale()
                self._notify_evictions()
            except Exception:  # a bug must not end the expiry of every later stack
                _LOG.error("phone bridge: expiring stale stacks failed", exc_info=True)

    async def _serve_client(self, connection: ServerConnection) -> None:
        if self._clients_connected >= self.max_clients:  # raced past the handshake check
            self.counters.add("too_many_clients")
            await connection.close(CloseCode.TRY_AGAIN_LATER, "too many phones connected")
            return
        peer = connection.remote_address
        self._clients_connected += 1
        authenticated = False
        deadline = asyncio.get_running_loop().call_later(self.auth_timeout_s, self._authentication_late, connection)
        try:
            async for message in connection:
                try:
                    reply, authenticated, close_reason = await self._handle(connection, message, authenticated)
                except Exception as exc:  # a bug must cost one reply, not the connection or the server
                    _LOG.error("phone %s: message handling failed", peer, exc_info=True)
                    self.counters.add("internal_error")
                    reply, close_reason = FrameRejected("internal_error", f"{type(exc).__name__}: {exc}").reply(), None
                if authenticated:
                    deadline.cancel()
                if len(message) >= LARGE_MESSAGE_BYTES:
                    self._release_memory_soon()
                await connection.send(json.dumps(reply))
                self._notify_evictions()
                if close_reason is not None:
                    await connection.close(CloseCode.POLICY_VIOLATION, close_reason)
                    return
        except ConnectionClosed as exc:
            _LOG.info("phone %s disconnected: %s", peer, exc)
        finally:
            deadline.cancel()
            self._clients_connected -= 1

    def _authentication_late(self, connection: ServerConnection) -> None:
        self.counters.add("auth_timeout")
        _LOG.warning("phone %s: no authenticated message within %g s, closing", connection.remote_address,
                     self.auth_timeout_s)
        self._in_background(connection.close(CloseCode.POLICY_VIOLATION, "authentication timeout"))

    async def _handle(self, connection: ServerConnection, message: str | bytes, authenticated: bool
                ) -> tuple[dict, bool, str | None]:
        """(reply, authenticated now, close reason or None) for one message."""
        peer = connection.remote_address
        if isinstance(message, str) and raw_token_matches(message, self._token):
            try:
                fields = parse_json_object(message)
            except FrameRejected as exc:
                return self._refused(peer, exc), True, None
            if not token_matches(fields.get("token"), self._token):
                return self._refused(peer, FrameRejected("unauthorized", "wrong or missing token")), False, \
                    "wrong or missing token"
            try:
                return await self._accept_frame(fields, connection), True, None
            except FrameRejected as exc:
                return self._refused(peer, exc), True, None
        if isinstance(message, bytes):
            refusal = FrameRejected("bad_json", "frames must be sent as JSON text messages, not binary")
            return self._refused(peer, refusal), authenticated, None if authenticated else "authenticate first"
        refusal = FrameRejected("unauthorized", "wrong or missing token (it must be a plain JSON string)")
        return self._refused(peer, refusal), False, "wrong or missing token"

    def _refused(self, peer, refusal: FrameRejected) -> dict:
        self.counters.add(refusal.code)
        now_s = time.monotonic()
        if now_s - self._log_window_start_s > REFUSAL_LOG_WINDOW_S:
            if self._log_suppressed:
                _LOG.warning("phone bridge: %d more refusals were not logged (all are counted in /diagnostics)",
                             self._log_suppressed)
            self._log_window_start_s, self._log_lines, self._log_suppressed = now_s, 0, 0
        if self._log_lines < REFUSAL_LOG_LINES:
            self._log_lines += 1
            _LOG.warning("phone %s: refused (%s): %s", peer, refusal.code, str(refusal)[:300])
        else:
            self._log_suppressed += 1
        return refusal.reply()

    async def _accept_frame(self, fields: Mapping, owner: ServerConnection) -> dict:
        frame = check_frame_fields(fields, self.max_frames_per_stack)
        try:
            width_px, height_px = jpeg_size_px(frame.jpeg)
        except ImageDecodeError as exc:
            raise frame.rejected("not_jpeg", str(exc)) from None
        if width_px * height_px > self.max_frame_pixels or max(width_px, height_px) > MAX_IMAGE_SIDE_PX:
            raise frame.rejected(
                "frame_too_large",
                f"{width_px}x{height_px} JPEG exceeds {self.max_frame_pixels} pixels or {MAX_IMAGE_SIDE_PX} px "
                "on a side",
            )
        self._check_intrinsics(frame, width_px, height_px)
        self.assembler.admit(frame, width_px, height_px, owner)
        try:
            # Decoding takes up to half a second for a phone photo: the event loop keeps serving meanwhile.
            frame_rgb = await asyncio.to_thread(decode_rgb, frame.jpeg, max_pixels=width_px * height_px)
        except ImageDecodeError as exc:
            self.assembler.cancel(frame)
            raise frame.rejected("not_jpeg", f"the JPEG cannot be used: {exc}") from None
        except BaseException:
            self.assembler.cancel(frame)
            raise
        return self.assembler.deliver(frame, frame_rgb)

    @staticmethod
    def _check_intrinsics(frame: FrameMessage, width_px: int, height_px: int) -> None:
        if frame.intrinsics_px is None:
            return
        try:
            CameraIntrinsics(*frame.intrinsics_px, width_px, height_px).validate()
        except ValueError as exc:
            raise frame.rejected("bad_field", f"intrinsics for this {width_px}x{height_px} JPEG: {exc}") from None

    def _notify_evictions(self) -> None:
        """Tell the owners of the partial stacks the assembler dropped."""
        for eviction in self.assembler.take_evictions():
            self.counters.add("stacks_evicted")
            owner = eviction.owner
            if isinstance(owner, ServerConnection):
                self._in_background(_send_quietly(owner, json.dumps(eviction.notice())))

    def _release_memory_soon(self) -> None:
        """malloc_trim within a second, once however many large messages came meanwhile.

        glibc keeps the freed buffers of multi-megabyte messages for reuse: 20
        clients sending 8 MiB messages with a wrong token left the bridge's
        process 63 MB larger for good; trimmed, 0 MB (`python -m
        hybriddepth_ros.tools.probe_phone_bridge --probes unauthenticated`).
        """
        if self._trim_scheduled or _MALLOC_TRIM is None:
            return
        self._trim_scheduled = True

        def trim() -> None:
            self._trim_scheduled = False
            _MALLOC_TRIM(0)

        asyncio.get_running_loop().call_later(1.0, trim)

    def _in_background(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _send_quietly(connection: ServerConnection, text: str) -> None:
    try:
        await connection.send(text)
    except ConnectionClosed:
        pass


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_MALLOC_TRIM = _glibc_malloc_trim()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server_tls_context(certfile: str | Path | None, keyfile: str | Path | None) -> ssl.SSLContext | None:
    """A TLS 1.2+ server context from PEM files, or None without them; CaptureError naming an unusable file."""
    if not certfile and not keyfile:
        return None
    if not certfile or not keyfile:
        raise ValueError("TLS needs both a certificate file and its private key file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(certfile), str(keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise CaptureError(f"phone bridge TLS: certificate {certfile} with key {keyfile} unusable: {exc}") from None
    return context


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

    def diagnostic_values(self) -> dict[str, str]:
        bridge, assembler = self.bridge, self.bridge.assembler
        totals = bridge.counters.totals()
        refusals = {code: totals[code] for code in (*REFUSAL_CODES, *CONNECTION_REFUSALS) if totals.get(code)}
        values = {
            "phone.url": f"{bridge.scheme}://{bridge.host}:{bridge.port}/",
            "phone.clients": bridge.clients_connected,
            "phone.pending_stacks": assembler.pending_stacks,
            "phone.decoded_pixels_held": assembler.held_pixels,
            "phone.stacks_completed": assembler.stacks_completed,
            "phone.stacks_evicted": assembler.stacks_evicted,
            "phone.stacks_dropped": assembler.stacks_dropped,
            "phone.refused": sum(refusals.values()),
        }
        values.update({f"phone.refused.{code}": count for code, count in refusals.items()})
        return {key: str(value) for key, value in values.items()}

    def new_problems(self) -> str | None:
        new = self.bridge.counters.take_new()
        refusals = {code: new[code] for code in (*REFUSAL_CODES, *CONNECTION_REFUSALS) if new.get(code)}
        parts = []
        if refusals:
            listed = ", ".join(f"{code} x{count}" for code, count in sorted(refusals.items()))
            parts.append(f"phone bridge refused {sum(refusals.values())} since the last report ({listed})")
        if new.get("stacks_evicted"):
            parts.append(f"{new['stacks_evicted']} incomplete phone stack(s) evicted")
        return "; ".join(parts) or None

    def close(self) -> None:
        self.bridge.close()
