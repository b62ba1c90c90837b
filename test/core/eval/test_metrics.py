"""Depth metrics against known answers."""

import math

import numpy as np
import pytest

from hybriddepth_ros.core.eval.metrics import depth_metrics


def test_known_answers():
    gt = np.array([1.0, 2.0, 4.0, 5.0])
    pred = np.array([1.1, 2.0, 3.0, 7.0])
    metrics = depth_metrics(pred, gt)
    # |rel| = 0.1, 0, 0.25, 0.4 ; squared errors 0.01, 0, 1, 4 ; ratios 1.1, 1, 1.333, 1.4
    assert metrics["abs_rel"] == pytest.approx(0.75 / 4)
    assert metrics["rmse_m"] == pytest.approx(math.sqrt(5.01 / 4))
    assert metrics["delta1"] == pytest.approx(0.5)
    assert metrics["coverage"] == 1.0 and metrics["count"] == 4


def test_perfect_prediction():
    gt = np.linspace(0.3, 5.0, 20).reshape(4, 5)
    metrics = depth_metrics(gt.copy(), gt)
    assert metrics == {"abs_rel": 0.0, "rmse_m": 0.0, "delta1": 1.0, "coverage": 1.0, "count": 20}


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
    assert all(math.isnan(metrics[key]) for key in ("abs_rel", "rmse_m", "delta1", "coverage"))
    all_nan = depth_metrics(np.full((3, 3), np.nan), gt)
    assert all_nan["count"] == 0 and all_nan["coverage"] == 0.0 and math.isnan(all_nan["abs_rel"])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        depth_metrics(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        depth_metrics(np.ones(3), np.ones(3), mask=np.ones(2, dtype=bool))
