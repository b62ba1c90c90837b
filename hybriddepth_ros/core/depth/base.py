"""The interface every depth backend of the fusion node implements.

A backend turns a validated FocalStack into metric depth in the reference view.
The weight-free focus-measure backend and the learned HybridDepth network both
sit behind it, so the node never knows which one runs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from ..stack.focal_stack import FocalStack, FocalStackError


@dataclass
class DepthResult:
    """Depth of the reference view.

    depth_m: (H, W) float32 metres, NaN where unknown (REP 118).
    confidence: (H, W) float32 in [0, 1], 0 where depth is NaN.
    timings_s: seconds spent per stage, for diagnostics and benchmarks.
    diagnostics: figures and notes about this result for the node's
      diagnostics, e.g. the weight-free backend's `measured_fraction` (pixels
      with a focus measurement, of the registered ones) and a `note` when the
      stack has no focus cue at all.
    measured: (H, W) bool, pixels whose depth was measured rather than
      propagated from others (None when the backend does not tell them apart).
    """

    depth_m: np.ndarray
    confidence: np.ndarray
    timings_s: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, float | str] = field(default_factory=dict)
    measured: np.ndarray | None = None


class DepthBackend(abc.ABC):
    """Estimates metric depth from a focal stack on one torch device.

    Stacks reach a backend through DepthFusion, the one place that validates
    and registers them: backends rely on focus distances strictly increasing
    and frames aligned to the reference, and refuse a stack that is not.
    """

    name: str = "abstract"

    def estimate(self, stack: FocalStack) -> DepthResult:
        """Depth of `stack` (validated and registered by DepthFusion) in its reference view."""
        if not stack.registered:
            raise FocalStackError(
                f"the {self.name} backend needs a registered stack: run it through DepthFusion, which registers"
            )
        return self._estimate(stack)

    @abc.abstractmethod
    def _estimate(self, stack: FocalStack) -> DepthResult:
        """The backend's own work on a validated, registered stack."""
