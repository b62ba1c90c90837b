"""Depth accuracy against ground truth: the monocular-depth metrics the paper reports, plus coverage.

Per image (the paper's and DFV's protocol: metrics per image, then the mean
over images), over the scored pixels p (prediction) and g (ground truth):
- abs_rel = mean |p - g| / g; sq_rel = mean (p - g)^2 / g;
- mse = mean (p - g)^2; rmse = sqrt(mse);
- rmse_log = sqrt(mean (ln p - ln g)^2); log10 = mean |log10 p - log10 g|;
- silog = 100 * sqrt(mean(e^2) - mean(e)^2), e = ln p - ln g (the scale-
  invariant log error as the KITTI/NYU benchmarks print it: scale-invariant,
  x100);
- delta_k = fraction with max(p/g, g/p) < 1.25^k, k = 1, 2, 3 (a prediction
  <= 0 never passes);
- coverage = scored pixels / pixels with usable ground truth: a backend that
  leaves NaN (unknown) is scored where it answers and its coverage says how
  much that is.
A pixel is scored when the ground truth is finite and > 0, inside `mask` (the
dataset's valid-pixel rule, e.g. 1 mm < d < 10 m on NYU) and the prediction is
finite. Log terms take a non-positive prediction as LOG_FLOOR. Metrics are in
the inputs' units; `depth_metrics` names metres where they carry a unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

DELTA1_RATIO = 1.25
LOG_FLOOR = 1e-6
"""A prediction <= 0 enters log metrics as this value (it still counts, and fails every delta)."""
ERROR_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3", "mse")
"""Order of the report's columns."""
LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "mse"}


def error_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """ERROR_METRICS, coverage and count of one image, in the units of the inputs; NaN metrics when nothing is scored."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
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
        return {**{name: float("nan") for name in ERROR_METRICS}, "coverage": coverage, "count": 0}
    p, g = pred[scored], gt[scored]
    error = p - g
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(p > 0, np.maximum(p / g, g / p), np.inf)
    log_error = np.log(np.maximum(p, LOG_FLOOR)) - np.log(g)
    mse = float(np.mean(error**2))
    return {
        "abs_rel": float(np.mean(np.abs(error) / g)),
        "sq_rel": float(np.mean(error**2 / g)),
        "rmse": math.sqrt(mse),
        "rmse_log": float(np.sqrt(np.mean(log_error**2))),
        "log10": float(np.mean(np.abs(log_error)) / math.log(10.0)),
        "silog": 100.0 * math.sqrt(max(float(np.mean(log_error**2) - np.mean(log_error) ** 2), 0.0)),
        "delta1": float(np.mean(ratio < DELTA1_RATIO)),
        "delta2": float(np.mean(ratio < DELTA1_RATIO**2)),
        "delta3": float(np.mean(ratio < DELTA1_RATIO**3)),
        "mse": mse,
        "coverage": coverage,
        "count": count,
    }


_METRE_NAMES = {"rmse": "rmse_m", "mse": "mse_m2", "sq_rel": "sq_rel_m"}


def depth_metrics(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """`error_metrics` of depth in metres, the keys that carry a unit named with it (rmse_m, mse_m2, sq_rel_m)."""
    return {_METRE_NAMES.get(key, key): value for key, value in error_metrics(pred_m, gt_m, mask).items()}


def mean_metrics(per_image: Iterable[Mapping[str, float]]) -> dict:
    """Mean over images of each metric (images where nothing was scored are left out), with image counts.

    `images` counts all images, `images_scored` those with at least one scored pixel;
    coverage is averaged over every image with usable ground truth (a backend that
    answers nowhere scores 0 there).
    """
    rows = list(per_image)
    scored = [row for row in rows if row["count"] > 0]
    summary = {name: (float(np.mean([row[name] for row in scored])) if scored else float("nan")) for name in ERROR_METRICS}
    coverages = [row["coverage"] for row in rows if not math.isnan(row["coverage"])]
    summary["coverage"] = float(np.mean(coverages)) if coverages else float("nan")
    summary["images"] = len(rows)
    summary["images_scored"] = len(scored)
    return summary
