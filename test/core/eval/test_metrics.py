"""Depth metrics against known answers."""

import math

import numpy as np
import pytest

from hybriddepth_ros.core.eval.metrics import ERROR_METRICS, depth_metrics, error_metrics, mean_metrics


def test_known_answers():
    gt = np.array([1.0, 2.0, 4.0, 5.0])
    pred = np.array([1.1, 2.0, 3.0, 7.0])
    metrics = depth_metrics(pred, gt)
    # |rel| = 0.1, 0, 0.25, 0.4 ; squared errors 0.01, 0, 1, 4 ; ratios 1.1, 1, 1.333, 1.4
    assert metrics["abs_rel"] == pytest.approx(0.75 / 4)
    assert metrics["rmse_m"] == pytest.approx(math.sqrt(5.01 / 4))
    assert metrics["delta1"] == pytest.approx(0.5)
    assert metrics["coverage"] == 1.0 and metrics["count"] == 4


def test_every_metric_by_hand():
    gt = np.array([1.0, 2.0, 4.0, 5.0])
    pred = np.array([1.1, 2.0, 3.0, 7.0])
    m = error_metrics(pred, gt)
    logs = [math.log(1.1), 0.0, math.log(0.75), math.log(1.4)]
    mean_log, mean_log_sq = sum(logs) / 4, sum(e * e for e in logs) / 4
    assert m["sq_rel"] == pytest.approx((0.01 / 1 + 0 + 1 / 4 + 4 / 5) / 4)
    assert m["mse"] == pytest.approx(5.01 / 4) and m["rmse"] == pytest.approx(math.sqrt(5.01 / 4))
    assert m["rmse_log"] == pytest.approx(math.sqrt(mean_log_sq))
    assert m["log10"] == pytest.approx(sum(abs(math.log10(p / g)) for p, g in zip(pred, gt)) / 4)
    assert m["silog"] == pytest.approx(100 * math.sqrt(mean_log_sq - mean_log**2))
    # ratios 1.1, 1, 1.333, 1.4: two below 1.25, all below 1.25^2
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.5, 1.0, 1.0)
    far = error_metrics(np.array([1.0, 2.0]), np.array([1.6, 3.8]))  # ratios 1.6, 1.9 (1.25^3 = 1.95)
    assert (far["delta1"], far["delta2"], far["delta3"]) == (0.0, 0.0, 1.0)


def test_scale_invariance_of_silog_and_units_of_depth_metrics():
    gt = np.array([1.0, 2.0, 3.0])
    assert error_metrics(2 * gt, gt)["silog"] == pytest.approx(0.0, abs=1e-9)
    metres = depth_metrics(gt + 1, gt)
    assert metres["rmse_m"] == 1.0 and metres["mse_m2"] == 1.0 and "rmse" not in metres
    assert metres["sq_rel_m"] == pytest.approx((1 + 0.5 + 1 / 3) / 3)


def test_perfect_prediction():
    gt = np.linspace(0.3, 5.0, 20).reshape(4, 5)
    metrics = error_metrics(gt.copy(), gt)
    assert all(metrics[name] == 0.0 for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "mse"))
    assert (metrics["delta1"], metrics["delta2"], metrics["delta3"]) == (1.0, 1.0, 1.0)
    assert metrics["coverage"] == 1.0 and metrics["count"] == 20


def test_mean_over_images_skips_unscored_images_but_counts_their_coverage():
    gt = np.array([[1.0, 2.0], [2.0, 4.0]])
    half = np.array([[1.5, np.nan], [np.nan, np.nan]])  # one pixel of four: AbsRel 0.5
    none = np.full((2, 2), np.nan)
    exact = gt.copy()
    summary = mean_metrics([error_metrics(half, gt), error_metrics(none, gt), error_metrics(exact, gt)])
    assert summary["images"] == 3 and summary["images_scored"] == 2
    assert summary["abs_rel"] == pytest.approx((0.5 + 0.0) / 2)
    assert summary["coverage"] == pytest.approx((0.25 + 0.0 + 1.0) / 3)
    empty = mean_metrics([error_metrics(none, gt)])
    assert empty["images_scored"] == 0 and all(math.isnan(empty[name]) for name in ERROR_METRICS)


def test_nan_inf_and_non_positive_ground_truth_are_ignored():
    gt = np.array([1.0, 2.0, np.nan, 0.0, -1.0, np.inf, 2.0])
    pred = np.array([1.5, np.nan, 1.0, 1.0, 1.0, 1.0, np.inf])
    metrics = depth_metrics(pred, gt)
    # Usable ground truth: indices 0, 1, 6; only index 0 has a finite prediction.
    assert metrics["count"] == 1
    assert metrics["coverage"] == pytest.approx(1 / 3)
    assert metrics["abs_rel"] == pytest.approx(0.5)
    assert metrics["rmse_m"] == pytest.approx(0.5)
    assert metrics["delta1"] == 0.0


def test_mask_selects_pixels_and_non_positive_prediction_fails_delta1():
    gt = np.array([[1.0, 1.0], [2.0, 2.0]])
    pred = np.array([[1.0, -1.0], [2.0, 9.0]])
    metrics = depth_metrics(pred, gt, mask=np.array([[True, True], [True, False]]))
    assert metrics["count"] == 3
    assert metrics["delta1"] == pytest.approx(2 / 3)
    assert metrics["abs_rel"] == pytest.approx(2.0 / 3)


def test_empty_mask_gives_nan_metrics_and_zero_count():
    gt = np.ones((3, 3))
    metrics = depth_metrics(gt, gt, mask=np.zeros((3, 3), dtype=bool))
    assert metrics["count"] == 0
    assert all(math.isnan(metrics[key]) for key in ("abs_rel", "rmse_m", "delta1", "delta3", "silog", "coverage"))
    all_nan = depth_metrics(np.full((3, 3), np.nan), gt)
    assert all_nan["count"] == 0 and all_nan["coverage"] == 0.0 and math.isnan(all_nan["abs_rel"])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        depth_metrics(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        depth_metrics(np.ones(3), np.ones(3), mask=np.ones(2, dtype=bool))
