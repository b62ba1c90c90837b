"""The weight-free depth backend: the focus-measure DFF (core.models.focus_measure) on one torch device.

No weights, no download: the default backend and the fallback when the
HybridDepth network has none. The physics and the confidence are described in
core/models/focus_measure.py.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..models.focus_measure import FocusMeasureDFF, luminance
from ..stack.focal_stack import FocalStack
from .base import DepthBackend, DepthResult
from .device import resolve_device


class FocusMeasureBackend(DepthBackend):
    """Depth from focus without learned weights.

    window_px, curve_exponent, noise_floor, second_peak_tolerance: those of
      FocusMeasureDFF.
    min_confidence: depth below this confidence is set to NaN (0 keeps every
      interior peak; the confidence map is returned either way).
    """

    name = "focus_measure"

    def __init__(
        self,
        device: str = "auto",
        window_px: int = 9,
        curve_exponent: float = -3.0,
        noise_floor: float = 0.01,
        second_peak_tolerance: float = 0.2,
        min_confidence: float = 0.0,
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.device = resolve_device(device)
        self.dff = FocusMeasureDFF(window_px, curve_exponent, noise_floor, second_peak_tolerance)
        self.min_confidence = min_confidence

    def _estimate(self, stack: FocalStack) -> DepthResult:
        timings_s: dict[str, float] = {}
        start_s = time.perf_counter()
        frames = torch.from_numpy(np.ascontiguousarray(stack.frames)).to(self.device)
        luma = luminance(frames.permute(0, 3, 1, 2).float() / 255.0)
        focus = self.dff.focus_measure(luma)
        timings_s["focus_measure"] = time.perf_counter() - start_s

        start_s = time.perf_counter()
        distances_m = torch.as_tensor(np.asarray(stack.focus_distances_m, dtype=np.float64), device=self.device)
        depth_m, confidence = self.dff.peak_depth(focus, (1.0 / distances_m).float())
        if self.min_confidence > 0:
            depth_m = torch.where(confidence >= self.min_confidence, depth_m, torch.nan)
        confidence = torch.where(torch.isnan(depth_m), 0.0, confidence)
        depth_np = depth_m.cpu().numpy().astype(np.float32)
        confidence_np = confidence.cpu().numpy().astype(np.float32)
        timings_s["peak_fit"] = time.perf_counter() - start_s
        return DepthResult(depth_m=depth_np, confidence=confidence_np, timings_s=timings_s)
