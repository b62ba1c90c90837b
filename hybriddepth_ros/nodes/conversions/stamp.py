"""builtin_interfaces/Time <-> seconds; reading a stamp is ROS-free (core/stack/message_decoding.py)."""

from __future__ import annotations

from ...core.stack.message_decoding import stamp_to_ns, stamp_to_seconds  # noqa: F401 - re-exported


def seconds_to_stamp(seconds: float, stamp) -> None:
    """Write `seconds` into a builtin_interfaces/Time in place."""
    stamp.sec = int(seconds)
    stamp.nanosec = int(round((seconds - int(seconds)) * 1e9)) % 1_000_000_000
