"""Depth accuracy figures against ground truth (the usual monocular-depth metrics)."""

from __future__ import annotations

import numpy as np

DELTA1_RATIO = 1.25


def depth_metrics(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """AbsRel, RMSE (m) and delta1 over pixels where both depths are usable.

    A pixel counts when the ground truth is finite and > 0, the prediction is
    finite, and `mask` (optional, bool) is set. coverage is the fraction of
    pixels with usable ground truth (inside `mask`) that have a finite
    prediction; count is the number of pixels scored. With no pixel to score
    the three errors are NaN and count is 0.
    delta1 is the fraction with max(pred/gt, gt/pred) < 1.25 (a prediction <= 0
    never passes).
    """
    pred = np.asarray(pred_m, dtype=np.float64)
    gt = np.asarray(gt_m, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    with np.errstate(invalid="ignore"):
        gt_usable = np.isfinite(gt) & (gt > 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != gt.shape:
            raise ValueError(f"mask shape {mask.shape} != ground truth shape {gt.shape}")
        gt_usable &= mask
    scored = gt_usable & np.isfinite(pred)
    count = int(scored.sum())
    usable = int(gt_usable.sum())
    coverage = count / usable if usable else float("nan")
    if count == 0:
        nan = float("nan")
        return {"abs_rel": nan, "rmse_m": nan, "delta1": nan, "coverage": coverage, "count": 0}
    p, g = pred[scored], gt[scored]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(p > 0, np.maximum(p / g, g / p), np.inf)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "rmse_m": float(np.sqrt(np.mean((p - g) ** 2))),
        "delta1": float(np.mean(ratio < DELTA1_RATIO)),
        "coverage": coverage,
        "count": count,
    }
