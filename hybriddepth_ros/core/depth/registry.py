"""Registry of depth backends by name, as the fusion node's `backend` parameter selects them."""

from __future__ import annotations

from typing import Any

from .base import DepthBackend


def create_depth_backend(name: str, device: str = "auto", **options: Any) -> DepthBackend:
    """Build the backend called `name` ('focus_measure' or 'hybriddepth') on `device`.

    Options are the backend's own keyword arguments; unknown names raise ValueError.
    """
    if name == "focus_measure":
        from .focus_measure import FocusMeasureBackend

        return FocusMeasureBackend(device=device, **options)
    if name == "hybriddepth":
        from .hybriddepth import HybridDepthBackend

        return HybridDepthBackend(device=device, **options)
    raise ValueError(f"unknown depth backend '{name}' (known: focus_measure, hybriddepth)")
