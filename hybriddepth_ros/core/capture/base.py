"""The interface of a focus-sweep capture backend (simulated, v4l2, directory, phone, driver)."""

from __future__ import annotations

import abc

from ..stack.focal_stack import FocalStack


MAX_SWEEP_RATE_HZ = 60.0
"""Sweeps per second at most: a 120 fps camera sweeping two frames."""


class CaptureError(RuntimeError):
    """A sweep failed (camera gone, unreadable file, bad client data); the sweep node logs it and retries."""


class CaptureBackend(abc.ABC):
    """Produces one FocalStack per call.

    The sweep node calls `capture_stack()` from its timer at the configured rate;
    it returns a stack, returns None when none is ready yet (no error), or raises
    CaptureError. Stacks come back sorted by increasing focus distance, with
    intrinsics for the frames' size, `stamp_s` set from the backend's clock
    (time.time()) when the reference frame was captured.
    """

    name: str = "abstract"

    @abc.abstractmethod
    def capture_stack(self) -> FocalStack | None:
        """Run (or collect) one sweep."""

    def diagnostic_values(self) -> dict[str, str]:
        """Counters the sweep node adds to its /diagnostics status (e.g. the phone bridge's refusals)."""
        return {}

    def new_problems(self) -> str | None:
        """What went wrong since the last call without failing a sweep (e.g. refused phone messages), or None.

        The sweep node publishes it as a WARN diagnostic, so every refusal reaches /diagnostics once.
        """
        return None

    def close(self) -> None:
        """Release the camera, sockets or files. Default: nothing to release."""
