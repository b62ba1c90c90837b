"""Depth backends by name, and what runs when the learned one has no usable weights.

The fusion node, the demo, the benchmark and the evaluation tool all choose
their backend here, so they agree on the names and on the fallback policy:
- 'hybriddepth' configured with no weight file at all runs the weight-free
  'focus_measure' backend instead, with a warning;
- 'hybriddepth' whose weight file cannot be used (WeightsError: missing,
  unreadable, wrong layout, wrong dtype, non-finite...) also runs
  'focus_measure', with an error naming the file;
- anything else wrong (an unknown name, an option outside its set or range,
  an unusable device) is a configuration error and is raised: a typo never
  silently swaps the backend.
Backend modules are imported on first use, so reading the names costs no torch import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .base import DepthBackend

DEPTH_BACKENDS = ("focus_measure", "hybriddepth")
WEIGHT_FREE_BACKEND = "focus_measure"


def create_depth_backend(name: str, device: str = "auto", **options: Any) -> DepthBackend:
    """Build the backend called `name` (one of DEPTH_BACKENDS) on `device` with its own keyword options."""
    if name == "focus_measure":
        from .focus_measure import FocusMeasureBackend

        return FocusMeasureBackend(device=device, **options)
    if name == "hybriddepth":
        from .hybriddepth import HybridDepthBackend

        return HybridDepthBackend(device=device, **options)
    raise ValueError(f"unknown depth backend '{name}' (known: {', '.join(DEPTH_BACKENDS)})")


@dataclass(frozen=True)
class BackendChoice:
    """The backend that runs, and why it is not the requested one (None when it is)."""

    backend: DepthBackend
    requested: str
    fallback_reason: str | None = None
    fallback_is_error: bool = False
    """True when a weight file was refused (log as an error), False when none was given (a warning)."""

    @property
    def name(self) -> str:
        return self.backend.name


def choose_depth_backend(
    name: str, device: str = "auto", options: Mapping[str, Mapping[str, Any]] | None = None
) -> BackendChoice:
    """The backend `name`, or the weight-free one by the module's policy.

    `options` holds each backend's keyword options by backend name, so the
    fallback runs with its own configured options too.
    """
    options = options or {}
    if name not in DEPTH_BACKENDS:
        raise ValueError(f"unknown depth backend '{name}' (known: {', '.join(DEPTH_BACKENDS)})")
    from ..models.weights import WeightsError
    from .hybriddepth import MissingWeightsError

    try:
        return BackendChoice(create_depth_backend(name, device, **options.get(name, {})), name)
    except MissingWeightsError as exc:
        reason, is_error = str(exc), False
    except WeightsError as exc:
        reason, is_error = f"cannot use the weights: {exc}", True
    fallback = create_depth_backend(WEIGHT_FREE_BACKEND, device, **options.get(WEIGHT_FREE_BACKEND, {}))
    return BackendChoice(
        fallback, name, f"{reason}; depth comes from the weight-free '{WEIGHT_FREE_BACKEND}' backend instead", is_error
    )
