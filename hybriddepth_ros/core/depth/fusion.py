"""The fusion step the node runs per stack: validate, register, estimate, mask.

The only place a stack is validated and registered on its way to depth (`prepare_stack`):
backends rely on it (and refuse unregistered stacks). Kept ROS-free so the
node, the demo, the benchmark and the evaluation tool run exactly this code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..stack.focal_stack import FocalStack, FocalStackError
from ..stack.registration import register_stack
from .base import DepthBackend

DEFAULT_CONFIDENCE_THRESHOLD = 0.0
"""Depth below this confidence is published as NaN. 0 publishes every pixel that has depth: the
weight-free backend fills the registered area densely and says in the confidence how far to trust
each pixel, so a consumer can threshold it for itself (README, "Weight-free depth")."""
DEFAULT_MIN_DEPTH_M = 0.1
DEFAULT_MAX_DEPTH_M = 10.0


def prepare_stack(stack: FocalStack, timings_s: dict[str, float] | None = None) -> FocalStack:
    """`stack` validated and registered to its reference frame (as it is when already registered).

    Raises FocalStackError (or RegistrationError); adds the registration time to `timings_s`.
    Training (core/train) prepares recorded stacks with it too, so it learns on what the node fuses.
    """
    stack.validate()
    if stack.registered:
        return stack
    start_s = time.perf_counter()
    stack = register_stack(stack, measure_residual=False).stack
    if timings_s is not None:
        timings_s["registration"] = time.perf_counter() - start_s
    return stack


@dataclass
class FusedDepth:
    """Published depth of one stack: NaN outside range, below confidence, or unregistered borders; confidence 0 there."""

    depth_m: np.ndarray
    confidence: np.ndarray
    reference_rgb: np.ndarray
    stack: FocalStack
    timings_s: dict[str, float]
    diagnostics: dict[str, float | str] = field(default_factory=dict)
    """The backend's diagnostics (DepthResult.diagnostics) plus `coverage`."""

    @property
    def coverage(self) -> float:
        """Fraction of pixels with a published (finite) depth."""
        return float(np.isfinite(self.depth_m).mean())


@dataclass
class DepthFusion:
    """Runs a DepthBackend on validated, registered stacks and applies the publishing masks."""

    backend: DepthBackend
    min_depth_m: float = DEFAULT_MIN_DEPTH_M
    max_depth_m: float = DEFAULT_MAX_DEPTH_M
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD

    def __post_init__(self) -> None:
        if not (0 < self.min_depth_m < self.max_depth_m):
            raise ValueError(f"need 0 < min_depth_m < max_depth_m, got {self.min_depth_m}, {self.max_depth_m}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold}")

    def process(self, stack: FocalStack) -> FusedDepth:
        """Depth of `stack`; raises FocalStackError (or RegistrationError) on unusable input."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        stack = prepare_stack(stack, timings)
        result = self.backend.estimate(stack)
        timings.update(result.timings_s)
        depth = np.asarray(result.depth_m, dtype=np.float32).copy()
        confidence = np.nan_to_num(np.asarray(result.confidence, dtype=np.float32), nan=0.0)
        if depth.shape != (stack.height, stack.width) or confidence.shape != depth.shape:
            raise FocalStackError(
                f"backend '{self.backend.name}' returned depth {depth.shape} / confidence "
                f"{confidence.shape} for a {stack.height}x{stack.width} stack"
            )
        t0 = time.perf_counter()
        unknown = ~np.isfinite(depth)
        unknown |= (depth < self.min_depth_m) | (depth > self.max_depth_m)
        unknown |= confidence < self.confidence_threshold
        if stack.valid_mask is not None:
            unknown |= ~stack.valid_mask
        depth[unknown] = np.nan
        confidence = np.where(unknown, 0.0, np.clip(confidence, 0.0, 1.0)).astype(np.float32)
        timings["masks"] = time.perf_counter() - t0
        timings["fusion_total"] = time.perf_counter() - started
        diagnostics = dict(result.diagnostics)
        diagnostics["coverage"] = float(np.mean(~unknown))
        return FusedDepth(
            depth_m=depth,
            confidence=confidence,
            reference_rgb=stack.reference_frame,
            stack=stack,
            timings_s=timings,
            diagnostics=diagnostics,
        )
