"""Global scale+shift alignment: reference least squares, robust confidence-weighted fit, degenerate inputs."""

import numpy as np
import pytest
import torch

from support.golden_fill import GOLDEN_PATH, rel_err
from hybriddepth_ros.core.models.alignment import (
    AlignmentError,
    align,
    confidence_weights,
    fit_scale_shift,
    fit_scale_shift_robust,
)


def synthetic(batch=2, size=(48, 64), seed=0):
    """Relative depth and its exact affine image with known (scale, shift) per sample."""
    g = torch.Generator().manual_seed(seed)
    relative = torch.rand(batch, 1, *size, generator=g) * 3 + 0.2
    scale = torch.tensor([0.7, 2.5][:batch])
    shift = torch.tensor([0.3, -1.1][:batch])
    target = relative * scale[:, None, None, None] + shift[:, None, None, None]
    return relative, target, scale, shift, g


def test_plain_fit_recovers_exact_affine_map_per_sample():
    relative, target, scale, shift, _ = synthetic()
    fitted_scale, fitted_shift = fit_scale_shift(relative, target)
    assert torch.allclose(fitted_scale, scale, atol=1e-5)
    assert torch.allclose(fitted_shift, shift, atol=1e-5)
    assert torch.allclose(align(relative, target), target, atol=1e-5)


def test_mask_and_non_finite_pixels_are_ignored():
    relative, target, scale, shift, _ = synthetic()
    corrupted = target.clone()
    corrupted[..., :10, :] = 100.0
    corrupted[..., 10, :5] = float("nan")
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[..., :10, :] = False
    fitted_scale, fitted_shift = fit_scale_shift(relative, corrupted, mask=mask)
    assert torch.allclose(fitted_scale, scale, atol=1e-5)
    assert torch.allclose(fitted_shift, shift, atol=1e-5)


def test_weighted_fit_recovers_exact_map_and_resists_outliers_that_break_plain_fit():
    relative, target, scale, shift, g = synthetic()
    noisy = target.clone()
    outliers = torch.rand(target.shape, generator=g) < 0.3
    noisy[outliers] = torch.rand(int(outliers.sum()), generator=g) * 20 - 5
    std = torch.where(outliers, torch.tensor(0.5), torch.tensor(0.05))

    plain_scale, plain_shift = fit_scale_shift(relative, noisy)
    assert torch.all((plain_scale - scale).abs() > 0.1), "the outliers must break the plain fit"

    robust_scale, robust_shift = fit_scale_shift_robust(relative, noisy, weights=confidence_weights(std))
    assert torch.allclose(robust_scale, scale, atol=1e-5)
    assert torch.allclose(robust_shift, shift, atol=1e-5)
    # Robust even without any confidence information.
    unweighted_scale, _ = fit_scale_shift_robust(relative, noisy)
    assert torch.allclose(unweighted_scale, scale, atol=1e-5)
    aligned = align(relative, noisy, dff_std_m=std, method="confidence_weighted")
    assert torch.allclose(aligned, target, atol=1e-4)


def test_inverse_variance_weights_favour_confident_pixels():
    relative, target, scale, shift, _ = synthetic(batch=1)
    biased = target.clone()
    biased[..., :, :32] += 1.0  # a biased half the DFF branch is unsure about
    std = torch.full_like(target, 0.02)
    std[..., :, :32] = 2.0
    weighted_scale, weighted_shift = fit_scale_shift(relative, biased, weights=confidence_weights(std))
    plain_shift = fit_scale_shift(relative, biased)[1]
    assert abs(float(weighted_shift - shift)) < 0.01 < abs(float(plain_shift - shift))
    assert confidence_weights(torch.tensor([0.0])).item() == pytest.approx(1e4)


def test_constant_relative_depth_falls_back_to_mean_target():
    relative = torch.full((1, 1, 8, 8), 0.5)
    target = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    scale, shift = fit_scale_shift(relative, target)
    assert scale.item() == 0.0 and shift.item() == pytest.approx(31.5)
    out = align(relative, target, method="confidence_weighted")
    assert torch.all(torch.isfinite(out))


def test_empty_mask_raises_naming_the_sample():
    relative, target, *_ = synthetic()
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(AlignmentError, match=r"\[1\]"):
        fit_scale_shift(relative, target, mask=mask)
    with pytest.raises(AlignmentError):
        align(relative, target, mask=mask, method="confidence_weighted")
    with pytest.raises(ValueError, match="alignment must be one of"):
        align(relative, target, method="median")


def test_half_precision_input_gives_float32_output():
    relative, target, *_ = synthetic()
    assert align(relative.half(), target.half()).dtype == torch.float32


@pytest.mark.skipif(not GOLDEN_PATH.exists(), reason="../shared/reference absent")
def test_golden_global_depth():
    golden = np.load(GOLDEN_PATH)
    relative = torch.from_numpy(golden["relative_depth"])
    global_depth = align(relative, torch.from_numpy(golden["dff_depth"]))
    assert rel_err(global_depth.numpy(), golden["global_depth"]) <= 1e-4
