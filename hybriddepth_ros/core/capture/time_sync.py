"""Pairing two stamped message streams by nearest stamp (approximate time synchronisation).

The `driver` capture backend pairs each camera image with the focus state the
lens was in. On a ROS install it uses message_filters' ApproximateTimeSynchronizer;
where message_filters is missing (the PyPI wheels) it uses this ROS-free pairer,
which follows the pairing rule of the Python message_filters implementation for
two inputs, so both give the same pairs on the same message sequence:

- each input queues at most `queue_size` messages keyed by stamp; a message whose
  stamp is already queued on that input replaces it; when a queue overflows, the
  message with the oldest stamp is dropped (not the one that arrived first), which
  can be the newcomer itself when it arrives late;
- a newcomer pairs with the queued message of the other input whose stamp is
  nearest to its own (ties: the one queued first) when the stamps differ by
  strictly less than `slop_s`; both then leave their queues;
- unpaired messages stay queued, so a late partner can still pair with them.

Differences: the caller passes stamps as integer nanoseconds (this module never
reads message headers, so there is no headerless mode), and the result is
returned instead of calling registered callbacks. The slop is truncated to whole
nanoseconds like rclpy's Duration(seconds=...), so "< slop" here and there are the
same test; it differs from "<= slop" only at exactly slop.
"""

from __future__ import annotations

import threading
from typing import Any


class ApproximatePairer:
    """Pairs messages of input 0 with messages of input 1 whose stamps are within the slop.

    Thread-safe: `add` may be called from several executor threads at once.
    """

    def __init__(self, queue_size: int, slop_s: float) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop_s > 0:
            raise ValueError(f"slop_s must be > 0 s, got {slop_s}")
        self.queue_size = int(queue_size)
        self.slop_ns = int(slop_s * 1e9)
        # One {stamp_ns: message} per input; dict order is the order stamps were first queued.
        self._queues: tuple[dict[int, Any], dict[int, Any]] = ({}, {})
        self._lock = threading.Lock()

    def add(self, input_index: int, stamp_ns: int, message: Any) -> tuple[Any, Any] | None:
        """Queue `message` on input 0 or 1; return (input-0 message, input-1 message) when it pairs."""
        if input_index not in (0, 1):
            raise ValueError(f"input_index must be 0 or 1, got {input_index}")
        stamp_ns = int(stamp_ns)
        with self._lock:
            own, other = self._queues[input_index], self._queues[1 - input_index]
            own[stamp_ns] = message
            while len(own) > self.queue_size:
                del own[min(own)]
            if stamp_ns not in own:  # arrived too late: older than everything in a full queue
                return None
            partner_stamp_ns = min(other, key=lambda queued_ns: abs(queued_ns - stamp_ns), default=None)
            if partner_stamp_ns is None or abs(partner_stamp_ns - stamp_ns) >= self.slop_ns:
                return None
            partner = other.pop(partner_stamp_ns)
            del own[stamp_ns]
        return (message, partner) if input_index == 0 else (partner, message)
