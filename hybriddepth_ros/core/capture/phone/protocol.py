"""The phone protocol: what a frame message must hold, the replies, and the checks done before decoding.

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

import base64
import binascii
import hmac
import json
import math
from dataclasses import dataclass

DEFAULT_PORT = 8765
MAX_STACK_ID_CHARS = 128
INTRINSIC_FIELDS = ("fx", "fy", "cx", "cy")
# JPEG start-of-frame markers: every one but DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


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


def token_matches(token: object, expected: bytes) -> bool:
    """Constant-time comparison of a message's token with the configured one."""
    return isinstance(token, str) and hmac.compare_digest(token.encode(), expected)


def parse_json_object(message: str | bytes) -> dict:
    """The message as a JSON object; FrameRejected('bad_json') for binary frames, invalid JSON or non-objects."""
    if isinstance(message, bytes):
        raise FrameRejected("bad_json", "frames must be sent as JSON text messages, not binary")
    try:
        fields = json.loads(message)
    except json.JSONDecodeError as exc:
        raise FrameRejected("bad_json", f"message is not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise FrameRejected("bad_json", "message must be a JSON object")
    return fields


def check_frame_fields(fields: dict, max_frames_per_stack: int) -> FrameMessage:
    """The frame message's fields, checked; FrameRejected says which one is wrong. The JPEG is not decoded."""
    stack_id = fields.get("stack_id")
    if isinstance(stack_id, int) and not isinstance(stack_id, bool):
        stack_id = str(stack_id)
    if not isinstance(stack_id, str) or not 0 < len(stack_id) <= MAX_STACK_ID_CHARS:
        raise FrameRejected(
            "bad_field", f"stack_id must be a string of 1..{MAX_STACK_ID_CHARS} chars or an integer"
        )
    index = fields.get("index")
    index_or_none = index if _is_int(index) else None

    def rejected(code: str, text: str) -> FrameRejected:
        return FrameRejected(code, text, stack_id, index_or_none)

    count = fields.get("count")
    if not _is_int(count) or not 2 <= count <= max_frames_per_stack:
        raise rejected("bad_field", f"count must be an integer in 2..{max_frames_per_stack}")
    if not _is_int(index) or not 0 <= index < count:
        raise rejected("bad_field", f"index must be an integer in 0..{count - 1}")
    diopters = fields.get("focus_diopters")
    if not _is_number(diopters) or not math.isfinite(diopters) or diopters <= 0:
        raise rejected("bad_field", f"focus_diopters must be a finite number > 0, got {diopters!r}")
    present = [name for name in INTRINSIC_FIELDS if name in fields]
    intrinsics_px = None
    if present:
        values = [fields.get(name) for name in INTRINSIC_FIELDS]
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
    return FrameMessage(stack_id, index, count, 1.0 / float(diopters), jpeg, intrinsics_px)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def jpeg_size_px(jpeg: bytes) -> tuple[int, int]:
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
