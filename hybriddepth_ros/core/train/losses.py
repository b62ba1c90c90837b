"""The paper's training loss: L = L_SILog + 0.5 * L_grad, on the scored (valid ground-truth) pixels.

Facts used (the paper; the HybridDepth reference's loss.py and model/main.py):
- L_SILog = 10 * sqrt(var(g) + beta * mean(g)^2), g = log(d + alpha) - log(d_gt + alpha)
  over the valid pixels of the whole batch, with beta = 0.15, alpha = 1e-7 and
  torch's (unbiased) variance, computed in float32 outside autocast;
- L_grad: the mean absolute difference of the spatial gradients of prediction
  and ground truth, summed over a 4-level pyramid; each level is a 3x3
  binomial blur then stride 2 (kornia's blur_pool2d) and the gradients are
  normalised Sobel filters (kornia's spatial_gradient: the 3x3 Sobel kernel
  divided by 8);
- L = L_SILog + 0.5 * L_grad.
Our choices where the reference leaves a question: the gradient term counts
only pixels whose whole 3x3 Sobel support is valid ground truth at that level
(the reference masks by "ground-truth gradient non-zero", which counts the
edges of invalid holes as huge gradients); the square root is taken of
max(D, 1e-12), so a perfect prediction has a zero gradient, not NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

SILOG_BETA = 0.15
SILOG_ALPHA = 1e-7
GRADIENT_WEIGHT = 0.5
GRADIENT_SCALES = 4
_BINOMIAL = (1.0, 2.0, 1.0)


@dataclass
class LossTerms:
    total: torch.Tensor
    silog: torch.Tensor
    gradient: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {"loss": self.total.item(), "silog": self.silog.item(), "gradient": self.gradient.item()}


def silog_loss(pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor, beta: float = SILOG_BETA,
               alpha: float = SILOG_ALPHA) -> torch.Tensor:
    """10 * sqrt(var(g) + beta * mean(g)^2) over the valid pixels of the batch (float32)."""
    g = torch.log(pred_m.float()[valid] + alpha) - torch.log(gt_m.float()[valid] + alpha)
    spread = torch.var(g) + beta * g.mean() ** 2
    return 10.0 * torch.sqrt(spread.clamp_min(1e-12))


def _blur_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 binomial blur, then every second pixel (a pyramid level), edges replicated."""
    taps = torch.tensor(_BINOMIAL, device=x.device, dtype=x.dtype)
    kernel = (taps[:, None] * taps[None, :] / 16.0).view(1, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, stride=2)


def sobel_gradients(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H-2, W-2): normalised Sobel d/dx and d/dy of (B, 1, H, W), valid positions only."""
    smooth = torch.tensor(_BINOMIAL, device=x.device, dtype=x.dtype)
    diff = torch.tensor((-1.0, 0.0, 1.0), device=x.device, dtype=x.dtype)
    d_dx = (smooth[:, None] * diff[None, :]) / 8.0
    kernels = torch.stack([d_dx, d_dx.t()])[:, None]
    return F.conv2d(x, kernels)


def gradient_loss(pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor,
                  scales: int = GRADIENT_SCALES) -> torch.Tensor:
    """Sum over `scales` pyramid levels of mean |grad(pred) - grad(gt)| where the Sobel support is valid."""
    mask = valid.float()
    pred = torch.where(valid, pred_m.float(), torch.zeros_like(pred_m, dtype=torch.float32))
    gt = torch.where(valid, gt_m.float(), torch.zeros_like(gt_m, dtype=torch.float32))
    total = pred.new_zeros(())
    for level in range(scales):
        if level:
            pred, gt = _blur_pool(pred), _blur_pool(gt)
            mask = (_blur_pool(mask) > 1.0 - 1e-6).float()  # a coarse pixel is valid when all it averages is
        if min(mask.shape[-2:]) < 3:
            break
        support = -F.max_pool2d(-mask, 3, stride=1) > 0.5  # all 3x3 valid, (H-2, W-2) positions
        if support.any():
            difference = (sobel_gradients(pred) - sobel_gradients(gt)).abs()
            total = total + difference[support.expand_as(difference)].mean()
    return total


def hybrid_loss(pred_m: torch.Tensor, gt_m: torch.Tensor, valid: torch.Tensor,
                gradient_weight: float = GRADIENT_WEIGHT, beta: float = SILOG_BETA) -> LossTerms:
    """L_SILog + gradient_weight * L_grad of (B, 1, H, W) prediction against ground truth on `valid` pixels."""
    if pred_m.shape != gt_m.shape or valid.shape != gt_m.shape:
        raise ValueError(f"prediction {tuple(pred_m.shape)}, ground truth {tuple(gt_m.shape)} and mask "
                         f"{tuple(valid.shape)} must have one shape")
    silog = silog_loss(pred_m, gt_m, valid, beta)
    gradient = gradient_loss(pred_m, gt_m, valid) if gradient_weight else silog.new_zeros(())
    return LossTerms(silog + gradient_weight * gradient, silog, gradient)
