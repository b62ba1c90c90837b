"""Does confidence rank error? Sparsification curves, AUSE and the confident-half ratio.

Removing the least confident pixels first should lower the error of what
remains as fast as removing the worst pixels first (the oracle) would. The
area between the two AbsRel curves (AUSE) is 0 for a perfect ranking.
"""

from __future__ import annotations

import numpy as np

FRACTIONS_REMOVED = np.linspace(0.0, 0.99, 100)


def sparsification_abs_rel(pred_m: np.ndarray, gt_m: np.ndarray, confidence: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """AbsRel after removing the least confident (and, for the oracle, the worst) fractions of the scored pixels.

    Pixels are scored where the ground truth is finite and > 0, the
    prediction finite, and `mask` set. Returns curve, oracle (AbsRel at each
    of FRACTIONS_REMOVED), ause (mean gap between the curves, in AbsRel units)
    and half_ratio (AbsRel of the most confident half / AbsRel of all). With no
    pixel to score, every figure is NaN.
    """
    pred = np.asarray(pred_m, dtype=np.float64)
    gt = np.asarray(gt_m, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        scored = np.isfinite(gt) & (gt > 0) & np.isfinite(pred) & np.isfinite(conf)
    if mask is not None:
        scored &= np.asarray(mask, dtype=bool)
    if not scored.any():
        nan_curve = np.full(FRACTIONS_REMOVED.shape, np.nan)
        return {"curve": nan_curve, "oracle": nan_curve, "ause": float("nan"), "half_ratio": float("nan")}
    errors = np.abs(pred[scored] - gt[scored]) / gt[scored]
    by_confidence = errors[np.argsort(-conf[scored], kind="stable")]
    by_error = np.sort(errors)
    count = errors.size
    keep = np.maximum(1, np.round((1.0 - FRACTIONS_REMOVED) * count).astype(int))
    curve = np.cumsum(by_confidence)[keep - 1] / keep
    oracle = np.cumsum(by_error)[keep - 1] / keep
    half = max(1, count // 2)
    return {
        "curve": curve,
        "oracle": oracle,
        "ause": float(np.mean(curve - oracle)),
        "half_ratio": float(by_confidence[:half].mean() / max(errors.mean(), 1e-12)),
    }
