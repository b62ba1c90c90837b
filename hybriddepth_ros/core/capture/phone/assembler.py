"""Assembling decoded phone frames into focal stacks: pure logic, no sockets, no event loop.

Frames arrive one message at a time, possibly over several connections (a
phone that reconnects). The assembler keeps the partial stacks by id, refuses
frames that contradict their stack, turns a complete stack into a FocalStack
and queues it for the consumer. Thread-safe: the server adds from its event
loop thread, the sweep node pops from its own.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ...stack.camera import CameraIntrinsics
from ...stack.focal_stack import DEFAULT_FRAME_ID, FocalStack, FocalStackError
from .protocol import FrameMessage

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedFrame:
    rgb: np.ndarray
    focus_distance_m: float
    intrinsics_px: tuple[float, float, float, float] | None
    arrival_s: float


@dataclass
class PartialStack:
    count: int
    frames: dict[int, ReceivedFrame] = field(default_factory=dict)
    """By index (capture order)."""


class StackAssembler:
    """Partial stacks by id, at most `max_pending_stacks` of them; completed stacks queued for `pop_stack()`.

    `intrinsics` (optional) are used, scaled, for stacks whose frames carry none.
    """

    def __init__(
        self,
        max_pending_stacks: int = 4,
        max_completed_stacks: int = 4,
        intrinsics: CameraIntrinsics | None = None,
        frame_id: str = DEFAULT_FRAME_ID,
    ) -> None:
        for name, value in (("max_pending_stacks", max_pending_stacks), ("max_completed_stacks", max_completed_stacks)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if intrinsics is not None:
            intrinsics.validate()
        self.max_pending_stacks = max_pending_stacks
        self.max_completed_stacks = max_completed_stacks
        self.intrinsics = intrinsics
        self.frame_id = frame_id
        self._lock = threading.Lock()
        self._pending: dict[str, PartialStack] = {}
        self._completed: collections.deque[FocalStack] = collections.deque()

    def pop_stack(self) -> FocalStack | None:
        """The oldest completed stack, or None."""
        with self._lock:
            return self._completed.popleft() if self._completed else None

    def add_frame(self, frame: FrameMessage, frame_rgb: np.ndarray) -> dict:
        """Add a decoded frame; the reply for its client (ack or stack_complete), or FrameRejected."""
        with self._lock:
            partial = self._pending.get(frame.stack_id)
            if partial is None:
                partial = self._open_stack(frame.stack_id, frame.count)
            if frame.count != partial.count:
                raise frame.rejected("count_mismatch", f"stack has count {partial.count}, frame says {frame.count}")
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
            partial.frames[frame.index] = ReceivedFrame(
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

    def _open_stack(self, stack_id: str, count: int) -> PartialStack:
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
        partial = PartialStack(count=count)
        self._pending[stack_id] = partial
        return partial

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
