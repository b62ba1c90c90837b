"""The phone protocol: what a frame message must hold, the replies, and the checks done before decoding.

The phone sweeps its lens, then sends each frame as one JSON text message.
The bridge checks and decodes frames as they arrive, assembles them per stack
and queues each completed FocalStack for `PhoneCapture.capture_stack()`.

Protocol, version 1 (ws://HOST:PORT/, or wss:// when the bridge has a TLS
certificate; any path):

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

and, unasked, `{"type": "error", "code": "stack_evicted", "stack_id": s, ...}`
when a partial stack of this client is dropped (see Limits).

`stack_complete` replaces the ack of the frame that completes a stack.
Error codes (REFUSAL_CODES): unauthorized, bad_json, bad_field, bad_base64,
not_jpeg (not a JPEG, or damaged: truncated, corrupt data), frame_too_large,
frame_size_mismatch, count_mismatch, duplicate_frame, bad_stack (the complete
stack was unusable, e.g. two frames with one focus), busy (every partial-stack
slot is in use: retry later), over_budget (the decoded-pixel budget is spent:
retry later), stack_evicted, internal_error (a bug; the connection stays).
`stack_id` and `index` are present in an error when the message carried them.

Authentication:
- Every message carries the token, as a plain JSON string (no escape
  sequences). The bridge finds it in the raw text and compares it before it
  parses the message, so nothing a client without the token sends is parsed
  or decoded. A wrong or missing token gets an `unauthorized` error and the
  connection is closed with 1008 (policy violation); so does a binary message
  on a connection that has not authenticated yet.
- A connection must send its first authenticated message within
  `auth_timeout_s` of connecting, or it is closed with 1008.
- At most `max_clients` connections at once; more are refused during the
  handshake with HTTP 503 (or closed with 1013, try again later, when they
  raced past it).

Limits:
- Messages larger than `max_message_bytes` close the connection with 1009
  (message too big) before they are read in full; other clients are unaffected.
- A frame declaring more than `max_frame_pixels` (or a side above
  MAX_IMAGE_SIDE_PX) is refused before decoding, as is one that would take the
  pixels held by the bridge (partial and completed stacks) above
  `max_decoded_pixels` after dropping completed stacks the consumer has not
  taken yet.
- A stack's frames may come over several connections (a phone that
  reconnects). At most `max_pending_stacks` stacks are assembled at once and a
  client owns at most `max_stacks_per_client` of them (a stack belongs to the
  connection that sent its latest frame). A client starting one more stack
  evicts its own least recently active one; a new stack when every slot is
  taken evicts one without a frame for `stack_timeout_s`, or else is refused
  as `busy`. Stacks without a frame for `stack_timeout_s` are dropped anyway.
  The owner of a dropped stack is sent `stack_evicted`, and frames of that
  stack id within the next `stack_timeout_s` are refused the same way (they
  must not reopen it half empty): resend the sweep under a new id.
- At most `max_completed_stacks` completed stacks wait for the consumer; a new
  one drops the oldest.
- Intrinsics of a stack: those of its first frame (by index) that carries
  them; otherwise the bridge's configured intrinsics scaled to the frame size;
  with neither, the stack is refused (bad_stack). Given intrinsics must be
  those of a real camera (CameraIntrinsics.validate), or the frame is refused
  (bad_field).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
from dataclasses import dataclass

from ...stack.focal_stack import MAX_FOCUS_DISTANCE_M, MIN_FOCUS_DISTANCE_M

DEFAULT_PORT = 8765
# The limits' defaults (PhoneBridge options, node parameters phone.*); see "Limits" above.
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""8 MiB: a 12.5 MP phone JPEG (1-1.4 MB in ../shared/data/pixel6pro_stack) as base64 fits 5 times over."""
DEFAULT_MAX_FRAME_PIXELS = 4096 * 4096
"""16.8 MP: a 12.5 MP phone photo (4080x3072) fits; larger frames are refused before decoding."""
DEFAULT_MAX_DECODED_PIXELS = 128_000_000
"""Decoded pixels held at most (partial and completed stacks): 384 MB of RGB, two 5-frame stacks
of 12.5 MP phone photos, or 41 stacks of ten 640x480 frames."""
DEFAULT_MAX_FRAMES_PER_STACK = 32
DEFAULT_MAX_CLIENTS = 8
DEFAULT_MAX_PENDING_STACKS = 8
DEFAULT_MAX_STACKS_PER_CLIENT = 2
DEFAULT_MAX_COMPLETED_STACKS = 4
DEFAULT_STACK_TIMEOUT_S = 10.0
"""A sweep of a phone takes 1-3 s; a partial stack silent for 10 s was abandoned."""
DEFAULT_AUTH_TIMEOUT_S = 10.0
"""Time for the handshake and the first message: an 8 MiB message at 1 MB/s Wi-Fi fits."""
MAX_STACK_ID_CHARS = 128
MAX_TOKEN_CHARS = 256
INTRINSIC_FIELDS = ("fx", "fy", "cx", "cy")
REFUSAL_CODES = (
    "unauthorized", "bad_json", "bad_field", "bad_base64", "not_jpeg", "frame_too_large", "frame_size_mismatch",
    "count_mismatch", "duplicate_frame", "bad_stack", "busy", "over_budget", "stack_evicted", "internal_error",
)
"""Every error code a client can receive, for counting refusals."""

_RAW_TOKEN = re.compile(r'"token"\s*:\s*"([^"\\]{0,%d})"' % MAX_TOKEN_CHARS)
"""The token field in a message's raw text. Inside a JSON string every quote is escaped, so
`"token"` followed by a colon only matches a real key (or text that fails to parse later)."""


class FrameRejected(Exception):
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
class FrameMessage:
    """The checked fields of one frame message, JPEG not yet decoded."""

    stack_id: str
    index: int
    count: int
    focus_distance_m: float
    jpeg: bytes
    intrinsics_px: tuple[float, float, float, float] | None

    def rejected(self, code: str, text: str) -> FrameRejected:
        return FrameRejected(code, text, self.stack_id, self.index)


def token_problem(token: object) -> str | None:
    """Why `token` cannot be the bridge's shared secret, or None."""
    if not isinstance(token, str) or not token:
        return "the phone bridge needs a non-empty token"
    if len(token) > MAX_TOKEN_CHARS:
        return f"the token must be at most {MAX_TOKEN_CHARS} characters"
    if any(c in token for c in '"\\') or not token.isprintable():
        return 'the token must be printable characters without " or \\ (it travels as a plain JSON string)'
    return None


def raw_token_matches(message: str, expected: bytes) -> bool:
    """Whether the raw text of a message carries the token (constant-time compare), without parsing it."""
    found = _RAW_TOKEN.search(message)
    return found is not None and hmac.compare_digest(found.group(1).encode(), expected)


def token_matches(token: object, expected: bytes) -> bool:
    """Constant-time comparison of a parsed message's token with the configured one."""
    return isinstance(token, str) and hmac.compare_digest(token.encode(), expected)


def parse_json_object(message: str | bytes) -> dict:
    """The message as a JSON object; FrameRejected('bad_json') for binary frames, invalid JSON or non-objects.

    Invalid includes nesting deeper than Python's recursion limit and integers
    longer than its digit limit, which the json module reports as RecursionError
    and ValueError.
    """
    if isinstance(message, bytes):
        raise FrameRejected("bad_json", "frames must be sent as JSON text messages, not binary")
    try:
        fields = json.loads(message)
    except RecursionError:
        raise FrameRejected("bad_json", "message is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and the int digit limit
        raise FrameRejected("bad_json", f"message is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(fields, dict):
        raise FrameRejected("bad_json", "message must be a JSON object")
    return fields


def check_frame_fields(fields: dict, max_frames_per_stack: int) -> FrameMessage:
    """The frame message's fields, checked; FrameRejected says which one is wrong. The JPEG is not decoded."""
    stack_id = fields.get("stack_id")
    if isinstance(stack_id, int) and not isinstance(stack_id, bool) and abs(stack_id) < 10**MAX_STACK_ID_CHARS:
        stack_id = str(stack_id)
    if not isinstance(stack_id, str) or not 0 < len(stack_id) <= MAX_STACK_ID_CHARS:
        raise FrameRejected(
            "bad_field", f"stack_id must be a string of 1..{MAX_STACK_ID_CHARS} chars or an integer"
        )
    index = fields.get("index")
    index_or_none = index if _is_int(index) and abs(index) <= 1_000_000 else None

    def rejected(code: str, text: str) -> FrameRejected:
        return FrameRejected(code, text, stack_id, index_or_none)

    count = fields.get("count")
    if not _is_int(count) or not 2 <= count <= max_frames_per_stack:
        raise rejected("bad_field", f"count must be an integer in 2..{max_frames_per_stack}")
    if not _is_int(index) or not 0 <= index < count:
        raise rejected("bad_field", f"index must be an integer in 0..{count - 1}")
    given = fields.get("focus_diopters")
    diopters = _finite_float(given)
    if diopters is None or diopters <= 0:
        raise rejected("bad_field", f"focus_diopters must be a finite number > 0, got {str(given)[:40]}")
    if not 1.0 / MAX_FOCUS_DISTANCE_M <= diopters <= 1.0 / MIN_FOCUS_DISTANCE_M:
        raise rejected(
            "bad_field",
            f"focus_diopters must be within {1.0 / MAX_FOCUS_DISTANCE_M:g}..{1.0 / MIN_FOCUS_DISTANCE_M:g} "
            f"(focus {MIN_FOCUS_DISTANCE_M:g}..{MAX_FOCUS_DISTANCE_M:g} m), got {diopters:g}",
        )
    present = [name for name in INTRINSIC_FIELDS if name in fields]
    intrinsics_px = None
    if present:
        values = [_finite_float(fields.get(name)) for name in INTRINSIC_FIELDS]
        if len(present) != 4 or any(v is None for v in values):
            raise rejected("bad_field", "fx, fy, cx, cy must all be given as finite numbers")
        if values[0] <= 0 or values[1] <= 0:
            raise rejected("bad_field", "fx and fy must be > 0 pixels")
        intrinsics_px = tuple(values)
    encoded = fields.get("jpeg_base64")
    if not isinstance(encoded, str):
        raise rejected("bad_field", "jpeg_base64 must be a string")
    try:
        jpeg = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise rejected("bad_base64", f"jpeg_base64 is not valid base64: {exc}") from None
    return FrameMessage(stack_id, index, count, 1.0 / diopters, jpeg, intrinsics_px)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_float(value: object) -> float | None:
    """A JSON number as a finite float, or None (not a number, infinite, or an integer too large for a float)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
