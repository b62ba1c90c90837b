"""Images for people: colour-mapped depth and side-by-side panels."""

from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth_m: np.ndarray, min_depth_m: float, max_depth_m: float) -> np.ndarray:
    """BGR uint8 image of depth (turbo map, near = red, far = blue, in inverse depth); NaN black."""
    finite = np.isfinite(depth_m)
    inverse = np.zeros(depth_m.shape, dtype=np.float32)
    inverse[finite] = 1.0 / np.clip(depth_m[finite], min_depth_m, max_depth_m)
    lo, hi = 1.0 / max_depth_m, 1.0 / min_depth_m
    scaled = np.clip((inverse - lo) / (hi - lo), 0.0, 1.0)
    coloured = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    coloured[~finite] = 0
    return coloured
