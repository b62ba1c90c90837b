"""Global scale+shift alignment of relative depth onto metric depth-from-focus depth.

HybridDepth's relative branch (Depth Anything, inverted) is correct only up to an
affine map; one scale and one shift per image, fitted by least squares against
the DFF branch's metric depth, bring it to metres before per-pixel refinement.

Everything is closed form and batched over B, on whatever device the tensors
live on. Sums are accumulated in float64 because a 640x480 image has 3e5 terms
and the normal equations subtract nearly equal products.

Degenerate inputs never produce NaN:
- a sample with no usable pixel (empty mask, all non-finite, zero weights)
  raises `AlignmentError`, naming the batch index;
- a sample whose relative depth is constant over its pixels (singular normal
  equations) gets the documented fallback scale = 0, shift = weighted mean of
  the target, the best constant fit.
"""

from __future__ import annotations

import torch

ALIGNMENT_METHODS = ("least_squares", "confidence_weighted")
_SINGULAR_RELATIVE_TOLERANCE = 1e-12
_MAD_TO_SIGMA = 1.4826
_TUKEY_C = 4.685
ROBUST_MAX_PIXELS = 1 << 16


class AlignmentError(ValueError):
    """The alignment has no data to work with; the message names the batch sample."""


def _flatten(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).to(torch.float64)


def _support_weights(
    relative: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flattened float64 (relative, target, weight) with weight 0 outside the mask and at non-finite values."""
    if relative.shape != target.shape or relative.ndim != 4:
        raise ValueError(f"relative {tuple(relative.shape)} and target {tuple(target.shape)} must both be (B,1,H,W)")
    rel, tgt = _flatten(relative), _flatten(target)
    w = torch.ones_like(rel) if weights is None else _flatten(weights.expand_as(relative))
    usable = torch.isfinite(rel) & torch.isfinite(tgt) & torch.isfinite(w) & (w > 0)
    if mask is not None:
        usable &= _flatten(mask.expand_as(relative)).bool()
    zero = torch.zeros((), dtype=torch.float64, device=rel.device)
    return torch.where(usable, rel, zero), torch.where(usable, tgt, zero), torch.where(usable, w, zero)


def _solve_weighted(rel: torch.Tensor, tgt: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form weighted least squares of tgt ~ scale*rel + shift per row; constant rows get (0, mean)."""
    a00 = (w * rel * rel).sum(1)
    a01 = (w * rel).sum(1)
    a11 = w.sum(1)
    b0 = (w * rel * tgt).sum(1)
    b1 = (w * tgt).sum(1)
    det = a00 * a11 - a01 * a01
    regular = det > _SINGULAR_RELATIVE_TOLERANCE * a00 * a11
    safe_det = torch.where(regular, det, torch.ones_like(det))
    safe_a11 = torch.where(a11 > 0, a11, torch.ones_like(a11))
    scale = torch.where(regular, (a11 * b0 - a01 * b1) / safe_det, torch.zeros_like(det))
    shift = torch.where(regular, (a00 * b1 - a01 * b0) / safe_det, b1 / safe_a11)
    return scale, shift


def _require_support(w: torch.Tensor) -> None:
    empty = (w.sum(1) <= 0).nonzero().flatten().tolist()
    if empty:
        raise AlignmentError(
            f"no usable pixel to fit scale and shift in batch sample(s) {empty} "
            "(empty mask, zero weights or non-finite depth)"
        )


def fit_scale_shift(
    relative: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (scale (B,), shift (B,)) minimising sum w * (scale*relative + shift - target)^2.

    With mask=None and weights=None this is the reference's plain least squares
    over all pixels. `mask` (B,1,H,W) bool selects pixels; `weights` (B,1,H,W)
    >= 0 weights them (e.g. `confidence_weights(dff_std)`).
    """
    rel, tgt, w = _support_weights(relative, target, mask, weights)
    _require_support(w)
    scale, shift = _solve_weighted(rel, tgt, w)
    return scale.to(_result_dtype(relative)), shift.to(_result_dtype(relative))


def fit_scale_shift_robust(
    relative: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    l1_iterations: int = 20,
    tukey_iterations: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outlier-resistant (scale, shift): iteratively reweighted least squares on top of `weights`.

    First an L1 fit (weights / |residual|), which tolerates gross outliers in up
    to about half of the pixels, then Tukey-biweight steps with the residual
    scale from the median absolute residual: pixels beyond 4.685 sigma get
    weight 0, so on exact inliers the fit becomes exact. Images larger than
    ROBUST_MAX_PIXELS are fitted on an evenly strided pixel subset: two
    parameters need far fewer samples, and the iterations stay cheap.
    """
    rel, tgt, prior = _support_weights(relative, target, mask, weights)
    stride = -(-rel.shape[1] // ROBUST_MAX_PIXELS)
    rel, tgt, prior = rel[:, ::stride], tgt[:, ::stride], prior[:, ::stride]
    _require_support(prior)
    support = prior > 0
    scale, shift = _solve_weighted(rel, tgt, prior)
    # Residual floor for the L1 weights: relative to the target's magnitude, never 0.
    mean_abs_target = (prior * tgt.abs()).sum(1, keepdim=True) / prior.sum(1, keepdim=True)
    floor = 1e-9 * mean_abs_target + torch.finfo(torch.float64).tiny
    nan = torch.full_like(rel, float("nan"))
    for iteration in range(l1_iterations + tukey_iterations):
        residual = (tgt - scale[:, None] * rel - shift[:, None]).abs()
        if iteration < l1_iterations:
            w = prior / torch.maximum(residual, floor)
        else:
            median = torch.nanmedian(torch.where(support, residual, nan), dim=1, keepdim=True).values
            cutoff = _TUKEY_C * torch.maximum(_MAD_TO_SIGMA * median, floor)
            w = prior * torch.clamp(1 - (residual / cutoff) ** 2, min=0) ** 2
        w = torch.where(support, w, torch.zeros_like(w))
        new_scale, new_shift = _solve_weighted(rel, tgt, w)
        keep = w.sum(1) > 0
        scale, shift = torch.where(keep, new_scale, scale), torch.where(keep, new_shift, shift)
    return scale.to(_result_dtype(relative)), shift.to(_result_dtype(relative))


def confidence_weights(dff_std_m: torch.Tensor, floor_m: float = 0.01) -> torch.Tensor:
    """Inverse-variance weights 1 / (std^2 + floor^2) from the DFF branch's per-pixel std (metres).

    The floor keeps a handful of overconfident pixels from dominating the fit.
    """
    return 1.0 / (dff_std_m.to(torch.float32) ** 2 + floor_m**2)


def align(
    relative: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    dff_std_m: torch.Tensor | None = None,
    method: str = "least_squares",
) -> torch.Tensor:
    """`relative` mapped by its fitted per-sample scale and shift onto `target`, (B,1,H,W).

    'least_squares': the reference's plain fit (all pixels in `mask`, equal weight).
    'confidence_weighted': robust IRLS fit weighted by `confidence_weights(dff_std_m)`.
    """
    if method == "least_squares":
        scale, shift = fit_scale_shift(relative, target, mask)
    elif method == "confidence_weighted":
        weights = None if dff_std_m is None else confidence_weights(dff_std_m)
        scale, shift = fit_scale_shift_robust(relative, target, mask, weights)
    else:
        raise ValueError(f"alignment must be one of {ALIGNMENT_METHODS}, got '{method}'")
    dtype = _result_dtype(relative)
    return relative.to(dtype) * scale[:, None, None, None] + shift[:, None, None, None]


def _result_dtype(relative: torch.Tensor) -> torch.dtype:
    """float32 for half-precision inputs (depth in metres needs the mantissa), else the input dtype."""
    return torch.promote_types(relative.dtype, torch.float32)
