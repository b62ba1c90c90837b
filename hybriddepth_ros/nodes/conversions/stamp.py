"""builtin_interfaces/Time <-> seconds."""

from __future__ import annotations


def stamp_to_seconds(stamp) -> float:
    """Seconds of a builtin_interfaces/Time."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def seconds_to_stamp(seconds: float, stamp) -> None:
    """Write `seconds` into a builtin_interfaces/Time in place."""
    stamp.sec = int(seconds)
    stamp.nanosec = int(round((seconds - int(seconds)) * 1e9)) % 1_000_000_000
