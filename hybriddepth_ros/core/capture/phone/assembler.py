"""Assembling decoded phone frames into focal stacks: pure logic, no sockets, no event loop.

Frames arrive one message at a time, possibly over several connections (a
phone that reconnects). The assembler keeps the partial stacks by id, refuses
frames that contradict their stack, turns a complete stack into a FocalStack
and queues it for the consumer. It bounds what it holds: partial stacks (in
all, and per client), completed stacks, and the decoded pixels of both.
Thread-safe: the server adds from its event loop thread, the sweep node pops
from its own.

A frame goes in two steps so that nothing is decoded that would be refused:
`admit()` with the size its JPEG header declares (checks, opens the stack,
reserves its pixels), then `deliver()` with the decoded pixels, or `cancel()`
when decoding failed. `add_frame()` does both, for callers that decoded already.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from ...stack.camera import CameraIntrinsics
from ...stack.focal_stack import DEFAULT_FRAME_ID, FocalStack, FocalStackError
from .protocol import (
    DEFAULT_MAX_COMPLETED_STACKS,
    DEFAULT_MAX_DECODED_PIXELS,
    DEFAULT_MAX_PENDING_STACKS,
    DEFAULT_MAX_STACKS_PER_CLIENT,
    DEFAULT_STACK_TIMEOUT_S,
    FrameMessage,
    FrameRejected,
)

_LOG = logging.getLogger(__name__)

_REMEMBERED_EVICTIONS = 256


@dataclass(frozen=True)
class ReceivedFrame:
    rgb: np.ndarray
    focus_distance_m: float
    intrinsics_px: tuple[float, float, float, float] | None
    arrival_s: float


@dataclass
class PartialStack:
    count: int
    size_px: tuple[int, int]
    """(width, height) every frame of the stack declares."""
    owner: Hashable | None
    last_frame_s: float
    frames: dict[int, ReceivedFrame] = field(default_factory=dict)
    """By index (capture order)."""
    admitted: set[int] = field(default_factory=set)
    """Indices admitted and not yet delivered (being decoded)."""

    @property
    def held_pixels(self) -> int:
        return (len(self.frames) + len(self.admitted)) * self.size_px[0] * self.size_px[1]


@dataclass(frozen=True)
class Eviction:
    """A partial stack dropped before completion: its owner is told with `notice()`."""

    stack_id: str
    owner: Hashable | None
    received: int
    count: int
    reason: str

    def notice(self) -> dict:
        return FrameRejected(
            "stack_evicted",
            f"stack {self.stack_id!r} dropped with {self.received} of {self.count} frames: {self.reason}; "
            "resend the sweep under a new stack_id",
            self.stack_id,
        ).reply()


class StackAssembler:
    """Partial stacks by id, completed stacks queued for `pop_stack()`, within fixed limits.

    `intrinsics` (optional) are used, scaled, for stacks whose frames carry none.
    `clock` is monotonic seconds (tests inject one).
    """

    def __init__(
        self,
        max_pending_stacks: int = DEFAULT_MAX_PENDING_STACKS,
        max_completed_stacks: int = DEFAULT_MAX_COMPLETED_STACKS,
        intrinsics: CameraIntrinsics | None = None,
        frame_id: str = DEFAULT_FRAME_ID,
        max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS,
        max_stacks_per_client: int = DEFAULT_MAX_STACKS_PER_CLIENT,
        stack_timeout_s: float = DEFAULT_STACK_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("max_pending_stacks", max_pending_stacks),
            ("max_completed_stacks", max_completed_stacks),
            ("max_decoded_pixels", max_decoded_pixels),
            ("max_stacks_per_client", max_stacks_per_client),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not stack_timeout_s > 0:
            raise ValueError(f"stack_timeout_s must be > 0, got {stack_timeout_s}")
        if intrinsics is not None:
            intrinsics.validate()
        self.max_pending_stacks = max_pending_stacks
        self.max_completed_stacks = max_completed_stacks
        self.max_decoded_pixels = max_decoded_pixels
        self.max_stacks_per_client = max_stacks_per_client
        self.stack_timeout_s = stack_timeout_s
        self.intrinsics = intrinsics
        self.frame_id = frame_id
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, PartialStack] = {}
        self._completed: collections.deque[FocalStack] = collections.deque()
        self._held_pixels = 0
        self._evicted_ids: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()
        """Recently evicted stack ids: (why, when); their late frames must not reopen them."""
        self._evictions: list[Eviction] = []
        self.stacks_completed = 0
        self.stacks_evicted = 0
        self.stacks_dropped = 0
        """Completed stacks dropped before the consumer took them (queue full, or pixels needed)."""

    @property
    def held_pixels(self) -> int:
        """Decoded pixels in partial and completed stacks, and reserved for frames being decoded."""
        return self._held_pixels

    @property
    def pending_stacks(self) -> int:
        return len(self._pending)

    def pop_stack(self) -> FocalStack | None:
        """The oldest completed stack, or None."""
        with self._lock:
            if not self._completed:
                return None
            stack = self._completed.popleft()
            self._held_pixels -= _pixels(stack)
            return stack

    def take_evictions(self) -> list[Eviction]:
        """The partial stacks dropped since the last call, for telling their owners."""
        with self._lock:
            evictions, self._evictions = self._evictions, []
            return evictions

    def admit(self, frame: FrameMessage, width_px: int, height_px: int, owner: Hashable | None = None) -> None:
        """Check a frame by its declared size, open its stack and reserve its pixels.

        FrameRejected when the frame contradicts its stack, its stack was
        evicted, every slot is busy, or the pixel budget cannot hold it. Stacks
        evicted to make room are reported by `take_evictions()`.
        """
        with self._lock:
            now = self._clock()
            evicted = self._evicted_ids.get(frame.stack_id)
            if evicted is not None and now - evicted[1] <= self.stack_timeout_s:
                raise frame.rejected(
                    "stack_evicted",
                    f"stack {frame.stack_id!r} was dropped ({evicted[0]}); resend the sweep under a new stack_id",
                )
            partial = self._pending.get(frame.stack_id)
            if partial is not None:
                self._check_against(partial, frame, width_px, height_px)
            else:
                self._make_room(frame, owner, now)
            pixels = width_px * height_px
            if self._held_pixels + pixels > self.max_decoded_pixels:
                while self._completed and self._held_pixels + pixels > self.max_decoded_pixels:
                    self._drop_oldest_completed("the decoded-pixel budget was needed for new frames")
                if self._held_pixels + pixels > self.max_decoded_pixels:
                    raise frame.rejected(
                        "over_budget",
                        f"the bridge holds {self._held_pixels} decoded pixels of its {self.max_decoded_pixels}; "
                        f"this {width_px}x{height_px} frame does not fit: retry later",
                    )
            if partial is None:
                partial = PartialStack(frame.count, (width_px, height_px), owner, now)
                self._pending[frame.stack_id] = partial
            partial.admitted.add(frame.index)
            partial.owner = owner
            partial.last_frame_s = now
            self._held_pixels += pixels

    def deliver(self, frame: FrameMessage, frame_rgb: np.ndarray) -> dict:
        """The decoded pixels of an admitted frame; the reply for its client (ack or stack_complete).

        FrameRejected when the stack was evicted meanwhile or, complete, is unusable (bad_stack).
        """
        with self._lock:
            partial = self._pending.get(frame.stack_id)
            if partial is None or frame.index not in partial.admitted:
                raise frame.rejected("stack_evicted", f"stack {frame.stack_id!r} was dropped while this frame "
                                     "was decoded; resend the sweep under a new stack_id")
            partial.admitted.discard(frame.index)
            width_px, height_px = partial.size_px
            if frame_rgb.shape[0] * frame_rgb.shape[1] != width_px * height_px:
                self._held_pixels -= width_px * height_px
                if not partial.frames and not partial.admitted:
                    del self._pending[frame.stack_id]
                raise frame.rejected("not_jpeg", f"decoded {frame_rgb.shape[1]}x{frame_rgb.shape[0]} px, "
                                     f"the JPEG header declares {width_px}x{height_px}")
            partial.frames[frame.index] = ReceivedFrame(
                frame_rgb, frame.focus_distance_m, frame.intrinsics_px, time.time()
            )
            received = len(partial.frames)
            if received < partial.count:
                return {"type": "ack", "stack_id": frame.stack_id, "index": frame.index,
                        "received": received, "count": partial.count}
            del self._pending[frame.stack_id]
            self._held_pixels -= partial.held_pixels
            try:
                stack = self._assemble(partial)
            except FocalStackError as exc:
                raise frame.rejected("bad_stack", f"stack {frame.stack_id!r} refused: {exc}") from None
            if len(self._completed) >= self.max_completed_stacks:
                self._drop_oldest_completed("phone stacks arrive faster than they are used")
            self._completed.append(stack)
            self._held_pixels += _pixels(stack)
            self.stacks_completed += 1
        _LOG.info("phone stack %r complete (%d frames)", frame.stack_id, stack.num_frames)
        return {
            "type": "stack_complete",
            "stack_id": frame.stack_id,
            "count": stack.num_frames,
            "focus_distances_m": stack.focus_distances_m.tolist(),
        }

    def cancel(self, frame: FrameMessage) -> None:
        """Release an admitted frame that could not be decoded; an emptied new stack is closed again."""
        with self._lock:
            partial = self._pending.get(frame.stack_id)
            if partial is None or frame.index not in partial.admitted:
                return
            partial.admitted.discard(frame.index)
            self._held_pixels -= partial.size_px[0] * partial.size_px[1]
            if not partial.frames and not partial.admitted:
                del self._pending[frame.stack_id]

    def add_frame(self, frame: FrameMessage, frame_rgb: np.ndarray, owner: Hashable | None = None) -> dict:
        """`admit` and `deliver` an already decoded frame; the reply, or FrameRejected."""
        height_px, width_px = frame_rgb.shape[:2]
        self.admit(frame, width_px, height_px, owner)
        return self.deliver(frame, frame_rgb)

    def expire_stale(self) -> None:
        """Drop partial stacks without a frame for `stack_timeout_s` (reported by `take_evictions()`)."""
        with self._lock:
            for stack_id in self._stale(self._clock()):
                self._evict(stack_id, f"no frame for {self.stack_timeout_s:g} s")

    def _stale(self, now: float) -> list[str]:
        """Partial stacks without a frame for `stack_timeout_s`, least recently active first."""
        stale = [stack_id for stack_id, p in self._pending.items()
                 if now - p.last_frame_s > self.stack_timeout_s and not p.admitted]
        return sorted(stale, key=lambda stack_id: self._pending[stack_id].last_frame_s)

    def _check_against(self, partial: PartialStack, frame: FrameMessage, width_px: int, height_px: int) -> None:
        if frame.count != partial.count:
            raise frame.rejected("count_mismatch", f"stack has count {partial.count}, frame says {frame.count}")
        if frame.index in partial.frames or frame.index in partial.admitted:
            raise frame.rejected("duplicate_frame", f"frame {frame.index} was already received")
        if (width_px, height_px) != partial.size_px:
            raise frame.rejected(
                "frame_size_mismatch",
                f"frame is {width_px}x{height_px}, the stack's are {partial.size_px[0]}x{partial.size_px[1]}",
            )

    def _make_room(self, frame: FrameMessage, owner: Hashable | None, now: float) -> None:
        """Evict what lets `owner` open one more stack; FrameRejected('busy') when nothing may go."""
        owned = [stack_id for stack_id, p in self._pending.items()
                 if owner is not None and p.owner == owner and not p.admitted]
        if len(owned) >= self.max_stacks_per_client:
            oldest = min(owned, key=lambda stack_id: self._pending[stack_id].last_frame_s)
            self._evict(oldest, f"the client started another stack and may assemble {self.max_stacks_per_client} "
                        "at once")
        if len(self._pending) >= self.max_pending_stacks:
            stale = self._stale(now)
            if not stale:
                raise frame.rejected(
                    "busy",
                    f"{self.max_pending_stacks} stacks are being assembled (the limit); retry when one completes",
                )
            self._evict(stale[0], f"no frame for {self.stack_timeout_s:g} s and its slot was needed")

    def _evict(self, stack_id: str, reason: str) -> None:
        partial = self._pending.pop(stack_id)
        self._held_pixels -= partial.held_pixels
        self._evicted_ids[stack_id] = (reason, self._clock())
        self._evicted_ids.move_to_end(stack_id)
        while len(self._evicted_ids) > _REMEMBERED_EVICTIONS:
            self._evicted_ids.popitem(last=False)
        self.stacks_evicted += 1
        _LOG.warning("dropped incomplete phone stack %r (%d of %d frames): %s",
                     stack_id, len(partial.frames), partial.count, reason)
        self._evictions.append(Eviction(stack_id, partial.owner, len(partial.frames), partial.count, reason))

    def _drop_oldest_completed(self, reason: str) -> None:
        dropped = self._completed.popleft()
        self._held_pixels -= _pixels(dropped)
        self.stacks_dropped += 1
        _LOG.warning("dropped a completed phone stack the consumer had not taken: %s", reason)

    def _assemble(self, partial: PartialStack) -> FocalStack:
        """The complete stack, nearest focus first, with intrinsics; FocalStackError when unusable."""
        frames = [partial.frames[i] for i in sorted(partial.frames)]
        height_px, width_px = frames[0].rgb.shape[:2]
        given_intrinsics = [frame.intrinsics_px for frame in frames if frame.intrinsics_px is not None]
        if given_intrinsics:
            fx, fy, cx, cy = given_intrinsics[0]
            intrinsics = CameraIntrinsics(fx, fy, cx, cy, width_px, height_px)
        elif self.intrinsics is not None:
            intrinsics = self.intrinsics.scaled(width_px, height_px)
        else:
            raise FocalStackError("no frame carries fx, fy, cx, cy and the bridge has no default")
        return FocalStack.from_frames(
            [frame.rgb for frame in frames],
            [frame.focus_distance_m for frame in frames],
            intrinsics,
            stamps_s=[frame.arrival_s for frame in frames],
            frame_id=self.frame_id,
        )


def _pixels(stack: FocalStack) -> int:
    return stack.num_frames * stack.height * stack.width
