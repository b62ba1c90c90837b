"""The interface every depth backend of the fusion node implements.

A backend turns a validated FocalStack into metric depth in the reference view.
The weight-free focus-measure backend and the learned HybridDepth network both
sit behind it, so the node never knows which one runs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from ..stack.focal_stack import FocalStack


@dataclass
class DepthResult:
    """Depth of the reference view.

    depth_m: (H, W) float32 metres, NaN where unknown (REP 118).
    confidence: (H, W) float32 in [0, 1], 0 where depth is NaN.
    timings_s: seconds spent per stage, for diagnostics and benchmarks.
    """

    depth_m: np.ndarray
    confidence: np.ndarray
    timings_s: dict[str, float] = field(default_factory=dict)


class DepthBackend(abc.ABC):
    """Estimates metric depth from a focal stack on one torch device."""

    name: str = "abstract"

    @abc.abstractmethod
    def estimate(self, stack: FocalStack) -> DepthResult:
        """Depth of `stack` in its reference view. The stack is already validated."""
