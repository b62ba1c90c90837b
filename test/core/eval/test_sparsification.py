"""AUSE and the confident-half ratio on known rankings."""

import numpy as np

from hybriddepth_ros.core.eval.sparsification import FRACTIONS_REMOVED, sparsification_abs_rel


def _errors_and_truth(count=1000, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(1.0, 3.0, count)
    relative_error = rng.uniform(0.0, 0.2, count)
    return truth * (1.0 + relative_error), truth, relative_error


def test_confidence_that_ranks_error_perfectly_has_zero_ause():
    pred, truth, error = _errors_and_truth()
    result = sparsification_abs_rel(pred, truth, confidence=-error)
    assert abs(result["ause"]) < 1e-12
    np.testing.assert_allclose(result["curve"], result["oracle"])
    assert abs(result["curve"][0] - np.mean(error)) < 1e-12 and result["curve"].shape == FRACTIONS_REMOVED.shape
    assert result["half_ratio"] < 0.5, "the better half of uniform errors averages a quarter of the range"


def test_uninformative_and_inverted_confidence():
    pred, truth, error = _errors_and_truth()
    constant = sparsification_abs_rel(pred, truth, confidence=np.ones_like(error))
    inverted = sparsification_abs_rel(pred, truth, confidence=error)
    assert constant["ause"] > 0 and abs(constant["half_ratio"] - 1.0) < 0.1
    assert inverted["ause"] > constant["ause"] and inverted["half_ratio"] > 1.4


def test_unusable_pixels_are_not_scored():
    pred, truth, error = _errors_and_truth(10)
    pred[0], truth[1] = np.nan, 0.0
    mask = np.ones(10, dtype=bool)
    mask[2] = False
    result = sparsification_abs_rel(pred, truth, -error, mask)
    expected = np.mean(error[3:])
    assert abs(result["curve"][0] - expected) < 1e-12
    empty = sparsification_abs_rel(pred, truth, -error, np.zeros(10, dtype=bool))
    assert np.isnan(empty["ause"]) and np.isnan(empty["half_ratio"])
