"""The paper's loss terms against hand-computed answers."""

import math

import pytest
import torch

from hybriddepth_ros.core.train.losses import (
    GRADIENT_WEIGHT,
    SILOG_BETA,
    gradient_loss,
    hybrid_loss,
    silog_loss,
    sobel_gradients,
)


def plane(height=32, width=48, slope=0.01):
    cols = torch.arange(width, dtype=torch.float32)
    return (1.0 + slope * cols).expand(1, 1, height, width).clone()


def test_silog_of_a_scaled_prediction_is_10_sqrt_beta_log_scale():
    gt = plane()
    valid = torch.ones_like(gt, dtype=torch.bool)
    # g = log(2) everywhere: variance 0, so L = 10 sqrt(beta) |log 2|.
    assert silog_loss(2 * gt, gt, valid).item() == pytest.approx(10 * math.sqrt(SILOG_BETA) * math.log(2), rel=1e-5)


def test_silog_uses_only_valid_pixels_and_unbiased_variance():
    gt = torch.tensor([[[[1.0, 1.0, 1.0, 5.0]]]])
    pred = torch.tensor([[[[1.0, math.e, math.e**2, 1.0]]]])
    valid = torch.tensor([[[[True, True, True, False]]]])
    g = torch.tensor([0.0, 1.0, 2.0])  # log ratios of the valid pixels
    expected = 10 * math.sqrt(g.var(unbiased=True).item() + SILOG_BETA * g.mean().item() ** 2)
    assert silog_loss(pred, gt, valid).item() == pytest.approx(expected, rel=1e-5)


def test_normalised_sobel_of_a_ramp_is_its_slope():
    ramp = plane(slope=0.25)
    gradients = sobel_gradients(ramp)
    assert torch.allclose(gradients[:, 0], torch.tensor(0.25)) and torch.allclose(gradients[:, 1], torch.tensor(0.0))


def test_gradient_loss_by_hand_and_its_mask():
    gt = plane()
    valid = torch.ones_like(gt, dtype=torch.bool)
    assert gradient_loss(gt.clone(), gt, valid).item() == 0.0
    # A ramp of 0.2 per px added: |d/dx| differs by 0.2, d/dy by 0, mean over both = 0.1 at full resolution.
    tilted = gt + plane(slope=0.2) - 1.0
    assert gradient_loss(tilted, gt, valid, scales=1).item() == pytest.approx(0.1, rel=1e-5)
    assert gradient_loss(tilted, gt, valid).item() > 0.1  # coarser levels add their own terms
    # A hole of invalid ground truth (stored as 0) is no edge: a correct prediction still scores 0.
    holed = gt.clone()
    holed[..., 10:14, 20:26] = 0.0
    hole_valid = holed > 0
    assert gradient_loss(gt, holed, hole_valid).item() == pytest.approx(0.0, abs=1e-7)


def test_hybrid_loss_is_silog_plus_half_gradient_and_perfect_is_zero_with_finite_gradient():
    gt = plane()
    valid = torch.ones_like(gt, dtype=torch.bool)
    pred = (gt * 1.1 + plane(slope=0.05) - 1.0).requires_grad_(True)
    terms = hybrid_loss(pred, gt, valid)
    assert terms.total.item() == pytest.approx(terms.silog.item() + GRADIENT_WEIGHT * terms.gradient.item(), rel=1e-6)
    perfect = gt.clone().requires_grad_(True)
    loss = hybrid_loss(perfect, gt, valid).total
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-4) and torch.isfinite(perfect.grad).all()
    with pytest.raises(ValueError, match="must have one shape"):
        hybrid_loss(gt, gt[..., :-1], valid)
