"""Edge-aware densification: measured depth propagated into the pixels without a focus cue.

Depth from focus measures depth only where there is texture. The rest (blank
walls, boxes, the near floor) is filled by a weighted least-squares solve on
the torch device, guided by the all-in-focus image:

    minimise  sum_i c_i (u_i - t_i)^2  +  lambda * sum_(i,j neighbours) w_ij (u_i - u_j)^2

over inverse depth u (diopters), where t_i is the measured inverse depth, c_i
its confidence (0 where nothing was measured) and w_ij = exp(-|g_i - g_j|^2 /
(2 sigma^2)) falls across colour edges of the guide g, so depth does not leak
from one surface onto the next. It also falls where the guide's texture
changes (log_texture_energy, TEXTURE_SIGMA), so a flat object in front of a
textured surface of about its mean colour is not filled from that surface.
A plane's inverse depth is affine in image coordinates and affine functions
solve the smoothness term exactly, so a hole in a textured plane, slanted or
not, is filled with the plane.

Confidence of a propagated pixel comes from a second field solved with the same
edge-aware weights plus a decay term (a screened Poisson equation): the
measured confidence diffuses away from the measurements and falls by about
1/e every `decay_px` pixels of uniform colour, and much faster across
edges of the guide. Measured pixels keep their own confidence, lowered where
the fill through them disagrees (AGREEMENT_SCALE): on 10-frame simulated
stacks that brought the most confident half's AbsRel from 0.57 to 0.41 of all.

Both solves run together as preconditioned conjugate gradients, coarse to fine
on an image pyramid: the coarsest level propagates across large holes in few
iterations, the finer ones sharpen edges. Method chosen against a guided
pyramid normalised convolution and nearest-measurement filling (README,
"Weight-free depth"; `python -m hybriddepth_ros.tools.evaluate_weight_free --compare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.focus_measure import LUMA_WEIGHTS, box_max, box_mean, modified_laplacian

DEFAULT_SEED_MIN_CONFIDENCE = 0.5
"""Measured pixels at or above this confidence anchor the solve; those below are filled like holes."""
DEFAULT_SMOOTHNESS = 0.5
DEFAULT_GUIDE_SIGMA = 0.03
"""Colour difference (guide in [0, 1]) at which neighbours' coupling falls to exp(-1/2). Smaller keeps a
flat object's inside, anchored only near its outline, from the surface behind it. Seeds 1000-1019, dense
AbsRel for 0.06, 0.03, 0.02: 5-frame sim 0.0613, 0.0555, 0.0552 (the flat objects' part 0.016, 0.011),
10-frame sim 0.0452, 0.0433, 0.0431; simfit 0.0754, 0.0731, 0.0723; NYU protocol 0.3772, 0.3810, 0.3943
and at 0.8-6 m 0.1038, 0.1031, 0.1045. Seeds 2000-2009, 5-frame sim: 0.0850 at 0.06, 0.0788 at 0.03.
The shared Pixel stack from 0.06 to 0.03: 12 % of its pixels move by more than 2 % (median 0.6 %)."""
DEFAULT_DECAY_PX = 16.0
MIN_EDGE_WEIGHT = 1e-4
"""Coupling kept across the strongest edges, so every pixel connected to a measurement gets depth."""
COARSEST_SIDE_PX = 24
AGREEMENT_SCALE = 0.05
"""Relative gap between a measurement and the fill through it at which its confidence halves."""
ITERATIONS_COARSE, ITERATIONS_PER_LEVEL, ITERATIONS_FINEST = 60, 6, 4
"""Conjugate-gradient iterations per level: ITERATIONS_COARSE on levels whose short side is at most
COARSE_LEVEL_SIDE_PX, ITERATIONS_FINEST on the input's size, ITERATIONS_PER_LEVEL on the others. With
none at the finest level (the joint-upsampled solution of the next as it is) 480x640 stacks scored the
same (5-frame sim, seeds 1000-1009: dense AbsRel 0.1189 against 0.1185) and saved about 5 ms, but on
`make demo`'s 320x240 stacks (three levels) measured pixels lost confidence to the rougher fill through
them: 78 % of pixels kept at a 0.5 threshold instead of 81 %."""
COARSE_LEVEL_SIDE_PX = 64
"""Levels up to this short side (60x80 and 30x40 for a 480x640 stack, solved at 240x320) carry the fill
across large holes, such as a flat object's inside, whose only anchors are at its outline; a few
iterations there leave it unconverged, part way to the coarser level's blend across the outline. 30
iterations on the 60x80 level as on the coarsest (6 before; about 2 ms more): 5-frame sim, seeds
1000-1019, dense AbsRel 0.0692 to 0.0676; converged on every level (hundreds of iterations) 0.0663.
Once texture cuts the outline (TEXTURE_SIGMA) these levels converge more slowly: 60 iterations instead
of 30 (3 ms more, 240x320, one thread), 5-frame sim 0.0503 -> 0.0497 (seed 1012's box 0.098 -> 0.085),
100 the same; seeds 2000-2009 0.0733 -> 0.0691. Without the texture term 60 gave 0.0521 against 0.0524.
Converged on every level is worse (without the texture term: 0.0530): some scenes' fills gain from the
finer levels' few iterations."""
PROPAGATED_CONFIDENCE_SCALE = 0.5
"""A propagated pixel's confidence is at most this times its nearest measurements': below the
anchors' own (>= seed_min_confidence 0.5), so thresholding at 0.5 keeps measured pixels only."""


@dataclass(frozen=True)
class DensifyParams:
    """seed_min_confidence, smoothness (lambda), guide_sigma, decay_px: see the module docstring."""

    seed_min_confidence: float = DEFAULT_SEED_MIN_CONFIDENCE
    smoothness: float = DEFAULT_SMOOTHNESS
    guide_sigma: float = DEFAULT_GUIDE_SIGMA
    decay_px: float = DEFAULT_DECAY_PX

    def validate(self) -> "DensifyParams":
        if not 0.0 <= self.seed_min_confidence <= 1.0:
            raise ValueError(f"seed_min_confidence must be in [0, 1], got {self.seed_min_confidence}")
        if not (self.smoothness > 0 and self.guide_sigma > 0 and self.decay_px > 0):
            raise ValueError(
                f"smoothness, guide_sigma and decay_px must be > 0, got {self.smoothness}, {self.guide_sigma}, {self.decay_px}"
            )
        return self


@dataclass
class Densified:
    """(H, W) tensors: depth in metres (NaN only outside `valid`), confidence in [0, 1], and which pixels were measured."""

    depth_m: torch.Tensor
    confidence: torch.Tensor
    measured: torch.Tensor


def densify(
    depth_m: torch.Tensor,
    confidence: torch.Tensor,
    guide: torch.Tensor,
    valid: torch.Tensor | None = None,
    params: DensifyParams = DensifyParams(),
) -> Densified:
    """Fill (H, W) measured `depth_m` (NaN where unmeasured) edge-aware under the (C, H, W) `guide` in [0, 1].

    Pixels outside `valid` (bool, (H, W)) are neither anchors nor published.
    With no anchor at all, nothing is invented: depth stays NaN everywhere.
    """
    inside = torch.ones_like(depth_m, dtype=torch.bool) if valid is None else valid
    measured = torch.isfinite(depth_m) & (depth_m > 0) & (confidence >= params.seed_min_confidence) & inside
    if not bool(measured.any()):
        return Densified(torch.full_like(depth_m, torch.nan), torch.zeros_like(confidence), measured)
    anchor_weight = torch.where(measured, confidence, 0.0)
    inverse_depth = torch.where(measured, 1.0 / depth_m, 0.0)
    # Two fields solved together: inverse depth weighted by confidence, and the
    # confidence itself, anchored with unit weight and decaying away from anchors.
    weights = torch.stack([anchor_weight, measured.to(depth_m.dtype)])
    targets = torch.stack([inverse_depth, torch.where(measured, confidence, 0.0)])
    decay = torch.tensor([0.0, params.smoothness / params.decay_px**2], device=depth_m.device, dtype=depth_m.dtype)

    levels = _pyramid(weights, weights * targets, _edge_weights(guide, params), guide)
    solution = None
    for level_index in range(len(levels) - 1, -1, -1):
        level = levels[level_index]
        if solution is None:
            known = level.weight > 0
            mean = level.numerator.sum((1, 2)) / level.weight.sum((1, 2)).clamp(min=1e-12)
            solution = torch.where(known, level.numerator / level.weight.clamp(min=1e-12), mean[:, None, None])
        else:
            solution = joint_upsample(solution, luminance(levels[level_index + 1].guide), luminance(level.guide),
                                      params.guide_sigma * UPSAMPLE_SIGMA_FRACTION)
        if min(level.weight.shape[-2:]) <= COARSE_LEVEL_SIDE_PX:
            iterations = ITERATIONS_COARSE
        else:
            iterations = ITERATIONS_FINEST if level_index == 0 else ITERATIONS_PER_LEVEL
        if iterations > 0:
            operator = _Operator(level, decay * 4.0**level_index)
            solution = _conjugate_gradients(operator, level.numerator, solution, iterations)

    # Conjugate-gradient iterates can overshoot; the exact solution lies within the anchors' range.
    # (Unmeasured pixels hold 0 in inverse_depth, below every anchor; no boolean indexing, which syncs.)
    lowest, highest = torch.where(measured, inverse_depth, torch.inf).min(), inverse_depth.max()
    filled_inverse = solution[0].clamp(min=lowest, max=highest)
    filled_depth = torch.where(measured, depth_m, 1.0 / filled_inverse)
    # A measurement its edge-aware neighbourhood disagrees with is likely an outlier (noise, an
    # edge's halo): its confidence falls with the relative gap to the smooth solution.
    gap = (inverse_depth - filled_inverse).abs() / filled_inverse / AGREEMENT_SCALE
    propagated_confidence = PROPAGATED_CONFIDENCE_SCALE * solution[1].clamp(0.0, 1.0)
    filled_confidence = torch.where(measured, confidence / (1.0 + gap * gap), propagated_confidence)
    filled_depth = torch.where(inside, filled_depth, torch.nan)
    filled_confidence = torch.where(inside, filled_confidence, 0.0)
    return Densified(filled_depth, filled_confidence, measured)


@dataclass
class _Level:
    weight: torch.Tensor  # (K, h, w) data weights, summed over the pixels a coarse pixel covers
    numerator: torch.Tensor  # (K, h, w) weight * target, summed likewise
    horizontal: torch.Tensor  # (h, w - 1) coupling of each pixel to its right neighbour
    vertical: torch.Tensor  # (h - 1, w) coupling to the neighbour below
    guide: torch.Tensor  # (C, h, w), 2x2 means of the finer level's


def _edge_weights(guide: torch.Tensor, params: DensifyParams) -> tuple[torch.Tensor, torch.Tensor]:
    """lambda * exp(-|g_i - g_j|^2 / (2 sigma^2)) * max(exp(-(t_i - t_j)^2 / (2 TEXTURE_SIGMA^2)), TEXTURE_MIN_FACTOR)
    between horizontal and vertical neighbours of the full-size guide g, t its log texture energy (log_texture_energy)."""
    two_sigma_sq = 2.0 * params.guide_sigma**2
    texture = log_texture_energy(guide) * (1.0 / (math.sqrt(2.0) * TEXTURE_SIGMA))
    most = -math.log(TEXTURE_MIN_FACTOR)
    horizontal = ((guide[:, :, 1:] - guide[:, :, :-1]) ** 2).sum(0) / two_sigma_sq
    horizontal.add_(((texture[:, 1:] - texture[:, :-1]) ** 2).clamp_(max=most))
    vertical = ((guide[:, 1:, :] - guide[:, :-1, :]) ** 2).sum(0) / two_sigma_sq
    vertical.add_(((texture[1:, :] - texture[:-1, :]) ** 2).clamp_(max=most))
    return (params.smoothness * horizontal.neg_().clamp_(min=EXP_FLOOR).exp_().clamp_(min=MIN_EDGE_WEIGHT),
            params.smoothness * vertical.neg_().clamp_(min=EXP_FLOOR).exp_().clamp_(min=MIN_EDGE_WEIGHT))


TEXTURE_WINDOW_PX = 5
"""Side of the square over which log_texture_energy averages the guide's modified Laplacian."""
TEXTURE_FLOOR = 0.01
"""Added to the texture energy before the log: about a flat surface's under 1 DN of noise (0.008-0.014,
the inside of a simulated flat box), so that noise on flat pixels is no texture edge."""
TEXTURE_SIGMA = 0.25
"""Difference of log texture energy between neighbours at which their coupling falls to exp(-1/2). A flat
surface meets a textured one over a few pixels with log steps of 0.3-0.9 each (a flat box, 0.01, in
front of a checkered wall, 0.22). A flat object's inside, anchored only at its outline, otherwise took
much of its depth from the textured surface around it where their colours are close (seed 1012's box
at 0.40 m filled at 0.54 m). Seeds 1000-1019, dense AbsRel without -> with 1.0, 0.5, 0.3, 0.25
(TEXTURE_FLOOR 0.001, ITERATIONS_COARSE 30, no TEXTURE_MIN_FACTOR): 5-frame sim 0.0524 -> 0.0522, 0.0516,
0.0505, 0.0501; 0.12: 0.0514. With TEXTURE_FLOOR 0.01 at 0.25: 0.0503, and 10-frame sim 0.0415 -> 0.0400,
simfit 0.0680 -> 0.0646 and 0.0409 -> 0.0396, NYU protocol 0.3805 -> 0.3669 and 0.2603 -> 0.2497, at
0.8-6 m 0.1022 -> 0.1003 and 0.1064 -> 0.1068; seeds 2000-2009, 5-frame sim 0.0730 -> 0.0733."""
TEXTURE_MIN_FACTOR = 0.01
"""The texture term cuts a coupling to no less than this, 100 times MIN_EDGE_WEIGHT. Uncapped, the band
where a step edge between two flat surfaces shows as texture was cut off from both sides as strongly as
by the colour edge, and filled half from the other side (1.24 m on the 1 m side of
test_an_edge_in_the_guide_stops_propagation). 5-frame sim, seeds 1000-1019, with ITERATIONS_COARSE 60:
0.0497 uncapped; 0.0498, 0.0498, 0.0499, 0.0502 for 0.003, 0.01, 0.03, 0.1."""


def log_texture_energy(guide: torch.Tensor) -> torch.Tensor:
    """(H, W) log of TEXTURE_FLOOR plus the mean over TEXTURE_WINDOW_PX of the modified Laplacian of the
    (3, H, W) guide's luminance: how textured each pixel's surroundings are, on a scale of ratios."""
    energy = box_mean(modified_laplacian(luminance(guide)[None]), TEXTURE_WINDOW_PX)[0]
    return energy.add_(TEXTURE_FLOOR).log_()


def _pyramid(weight: torch.Tensor, numerator: torch.Tensor, edges, guide: torch.Tensor) -> list[_Level]:
    """Levels from the input's size to the coarsest (short side >= COARSEST_SIDE_PX).

    Coarse couplings come from the fine ones (`_coarse_couplings`), so an edge
    of the guide stays an edge at every level instead of being averaged away.
    """
    horizontal, vertical = edges
    levels = []
    while True:
        levels.append(_Level(weight, numerator, horizontal, vertical, guide))
        if min(weight.shape[-2:]) // 2 < COARSEST_SIDE_PX:
            break
        weight, numerator, guide = sum_pool_2x2(weight), sum_pool_2x2(numerator), sum_pool_2x2(guide) / 4.0
        horizontal, vertical = _coarse_couplings(horizontal, vertical, *weight.shape[-2:])
    return levels


def joint_upsample(coarse: torch.Tensor, coarse_luma: torch.Tensor, fine_luma: torch.Tensor, sigma: float) -> torch.Tensor:
    """(K, H, W) from (K, h, w) by 2x joint bilateral upsampling (Kopf et al. 2007); H in (2h, 2h + 1), W likewise.

    Each fine pixel blends its four bilinear coarse neighbours (weights 9, 3,
    3, 1 / 16), each weighted also by exp(-d^2 / (2 sigma^2)), d the difference
    of guide luminance ((h, w) and (H, W)) to the fine pixel's, so values do
    not blend across an edge of the guide as plain bilinear upsampling would.
    Worked out for the four fine pixels of each coarse pixel separately, on
    shifted views of the coarse grid: no index arrays or interleaved copies.
    """
    values, rows, cols = coarse.shape
    padded = F.pad(torch.cat([coarse, coarse_luma[None]])[None], (1, 1, 1, 1), mode="replicate")[0]
    scale = -1.0 / (2.0 * sigma**2)
    log_bilinear = {weight: torch.tensor(math.log(weight), device=coarse.device) for weight in (9 / 16, 3 / 16, 1 / 16)}
    result = coarse.new_empty(values, 2 * rows, 2 * cols)
    for row_parity in (0, 1):
        for col_parity in (0, 1):
            fine = fine_luma[row_parity:2 * rows:2, col_parity:2 * cols:2].contiguous()
            # Fine row 2i has coarse rows i (parent) and i - 1 (partner); fine row 2i + 1 has i and i + 1.
            partner_row, partner_col = 2 * row_parity, 2 * col_parity
            total = norm = None
            for row, col, bilinear in ((1, 1, 9 / 16), (1, partner_col, 3 / 16), (partner_row, 1, 3 / 16),
                                       (partner_row, partner_col, 1 / 16)):
                neighbour = padded[:, row:row + rows, col:col + cols]
                difference = torch.sub(neighbour[values], fine)
                # bilinear * (exp(scale d^2) + 1e-6) as exp(scale d^2 + log bilinear) + 1e-6 bilinear: fewer
                # passes. Clamped where exp underflows (below -87): float exp is 15 times slower there (this
                # CPU), and the 1e-6 added outweighs anything smaller anyway.
                weight = torch.addcmul(log_bilinear[bilinear], difference, difference, value=scale)
                weight.clamp_(min=EXP_FLOOR).exp_().add_(1e-6 * bilinear)
                if total is None:
                    total, norm = neighbour[:values] * weight, weight
                else:
                    total.addcmul_(neighbour[:values], weight)
                    norm.add_(weight)
            result[:, row_parity::2, col_parity::2] = total.div_(norm)
    height, width = fine_luma.shape[-2:]
    if (height, width) != (2 * rows, 2 * cols):
        result = F.pad(result[None], (0, width - 2 * cols, 0, height - 2 * rows), mode="replicate")[0]
    return result


EDGE_SNAP_SPREAD = 1.2
"""A pixel whose 3x3 neighbours' inverse depths span more than this factor lies on a depth edge's ramp
(edge_snapped). 5-frame sim, seeds 1000-1019, dense AbsRel with 1.1, 1.2 and 1.35: 0.0436, 0.0436, 0.0443."""
EDGE_SNAP_WINDOW_PX = 11
"""Window of the colour vote that decides an edge pixel's side (edge_snapped), sampled every EDGE_SNAP_STEP_PX:
at the fill's half size, 22 px of the frames, past the ramp. 5-frame sim, seeds 1000-1019, dense AbsRel with
7 px and every pixel 0.0446; 11 px, every pixel 0.0433, every other 0.0436 (a third of the cost)."""
EDGE_SNAP_STEP_PX = 2
"""Every how many pixels, along each axis, a neighbour in that window votes."""
EDGE_SNAP_SIGMA = 0.05
"""Colour difference (guide in [0, 1]) at which a neighbour's vote falls to exp(-1/2)."""


def inverse_depth_extremes(inverse: torch.Tensor, window_px: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) largest and smallest inverse depth within `window_px` (odd) of each pixel of (H, W) `inverse`, the
    non-finite left out (0 and inf where nothing finite is within reach)."""
    known = torch.isfinite(inverse)
    largest = box_max(torch.where(known, inverse, 0.0)[None], window_px)[0]
    smallest = -box_max(torch.where(known, -inverse, -torch.inf)[None], window_px)[0]
    return largest, smallest


def edge_snapped(depth_m: torch.Tensor, guide: torch.Tensor, spread: float = EDGE_SNAP_SPREAD,
                 window_px: int = EDGE_SNAP_WINDOW_PX, step_px: int = EDGE_SNAP_STEP_PX,
                 sigma: float = EDGE_SNAP_SIGMA) -> torch.Tensor:
    """(H, W) `depth_m` with each pixel on a depth edge's ramp set to the nearer or the farther depth of its
    3x3 neighbours, whichever side its colour in `guide` ((3, H, W), [0, 1]) belongs to.

    Across an edge the fill leaves a ramp a few pixels wide: pixels between the two sides' anchors, and focus
    windows that straddle the edge, read depths between the two surfaces, which belong to neither. Each ramp
    pixel (3x3 inverse depths spanning more than `spread`) takes the side its neighbours within `window_px`
    vote for: each neighbour off the ramp votes for the side its own depth is on (nearer or farther than the
    geometric middle of the two), weighted by colour similarity, exp(-|g_p - g_q|^2 / (2 sigma^2)). With no
    vote the pixel keeps its depth. Only ramp pixels are visited (5 % of a 240x320 fill of a simulated scene:
    4.9-5.1 ms, one thread).

    Seeds 1000-1019 (tools/evaluate_weight_free.py), dense AbsRel, 5 frames, without and with: sim 0.0492 and
    0.0436, simfit 0.0632 and 0.0579, nyu 0.0507 and 0.0405, nyu_far 0.0331 and 0.0250, photo 0.0151 and
    0.0138, photofit (no occlusion edges) 0.0717 and 0.0718; seeds 2000-2019, sim 0.0688 and 0.0636.
    """
    inverse = depth_m.reciprocal()
    known = torch.isfinite(inverse)
    nearest, farthest = inverse_depth_extremes(inverse, 3)
    ramp = known & (nearest > spread * farthest)
    if not bool(ramp.any()):
        return depth_m
    width = inverse.shape[1]
    pad = window_px // 2
    # Guide, inverse depth and whether a pixel may vote, padded and flattened, so that each offset of the
    # window is one gather at the ramp pixels' flat indices.
    planes = torch.cat([guide, torch.where(known, inverse, 0.0)[None], (known & ~ramp).to(inverse.dtype)[None]])
    planes = F.pad(planes[None], (pad, pad, pad, pad), mode="replicate")[0].flatten(1)
    rows, cols = torch.nonzero(ramp, as_tuple=True)
    padded_width = width + 2 * pad
    centre = (rows + pad) * padded_width + (cols + pad)
    colour = guide[:, rows, cols]
    near_inverse, far_inverse = nearest[rows, cols], farthest[rows, cols]
    middle = (near_inverse * far_inverse).sqrt()
    scale = -1.0 / (2.0 * sigma**2)
    vote_near = torch.zeros_like(middle)
    votes = torch.zeros_like(middle)
    for row_offset in range(-pad, pad + 1, step_px):
        for col_offset in range(-pad, pad + 1, step_px):
            neighbour = planes[:, centre + row_offset * padded_width + col_offset]
            difference = neighbour[:3] - colour
            weight = torch.exp(scale * (difference * difference).sum(0)) * neighbour[4]
            votes += weight
            vote_near += weight * (neighbour[3] > middle)
    side = torch.where(vote_near > 0.5 * votes, near_inverse, far_inverse)
    snapped = depth_m.clone()
    snapped[rows, cols] = torch.where(votes > 0, side.reciprocal(), depth_m[rows, cols])
    return snapped


def luminance(guide: torch.Tensor) -> torch.Tensor:
    """(H, W) luminance of a (3, H, W) guide."""
    return guide[0] * LUMA_WEIGHTS[0] + guide[1] * LUMA_WEIGHTS[1] + guide[2] * LUMA_WEIGHTS[2]


EXP_FLOOR = -80.0
"""Exponents are clamped here before exp: exp(-80) is far below MIN_EDGE_WEIGHT and the upsampling's
1e-6, so results are unchanged, and float exp of values below about -87 (underflow) took 15 times as
long (0.8-1.8 ms against 0.11 ms for a 240x320 plane, one thread, this CPU). A guard for scenes of
strong contrast: on the Pixel stack and a simulated one 0.05-0.07 % of the upsampling's exponents
underflow, and the densify stage times the same either way."""
UPSAMPLE_SIGMA_FRACTION = 0.5
"""Joint upsampling compares luminance only, so it separates edges more sharply (sigma / 2) than the solve, which compares colour."""


def _coarse_couplings(horizontal: torch.Tensor, vertical: torch.Tensor, height: int, width: int):
    """Couplings between 2x2 blocks: the path from one block's middle to the next in series.

    Half a block of the first (its inner coupling), the two fine couplings
    crossing the boundary, half a block of the second: conductances in series,
    scaled so that uniform couplings w stay w. An edge inside a block (inner
    coupling near 0) thus cuts the block off as an edge on its boundary does.
    """
    def series(inner_a, crossing, inner_b):
        return 4.0 / (1.0 / inner_a + 2.0 / crossing + 1.0 / inner_b)

    inner_h = (horizontal[0:2 * height:2, 0:2 * width:2] + horizontal[1:2 * height:2, 0:2 * width:2]) / 2
    crossing_h = (horizontal[0:2 * height:2, 1:2 * width - 1:2] + horizontal[1:2 * height:2, 1:2 * width - 1:2]) / 2
    inner_v = (vertical[0:2 * height:2, 0:2 * width:2] + vertical[0:2 * height:2, 1:2 * width:2]) / 2
    crossing_v = (vertical[1:2 * height - 1:2, 0:2 * width:2] + vertical[1:2 * height - 1:2, 1:2 * width:2]) / 2
    return (series(inner_h[:, :-1], crossing_h, inner_h[:, 1:]),
            series(inner_v[:-1, :], crossing_v, inner_v[1:, :]))


def sum_pool_2x2(planes: torch.Tensor) -> torch.Tensor:
    """2x2 sums over the last two axes; an odd last row or column is dropped (slices: avg_pool2d is slower on a CPU)."""
    height, width = planes.shape[-2] // 2 * 2, planes.shape[-1] // 2 * 2
    rows = planes[..., 0:height:2, :width] + planes[..., 1:height:2, :width]
    return rows[..., 0::2] + rows[..., 1::2]


class _Operator:
    """A x = c x + L_w x + mu x for K fields on one level (L_w includes lambda), with its Jacobi preconditioner."""

    def __init__(self, level: _Level, decay: torch.Tensor) -> None:
        self.horizontal, self.vertical = level.horizontal, level.vertical
        self.diagonal_data = level.weight + decay[:, None, None]
        degree = torch.zeros_like(level.weight[0])
        degree[:, 1:] += self.horizontal
        degree[:, :-1] += self.horizontal
        degree[1:, :] += self.vertical
        degree[:-1, :] += self.vertical
        self.inverse_diagonal = 1.0 / (self.diagonal_data + degree)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_views(_NeighbourViews(x), torch.empty_like(x))

    def apply_views(self, x: "_NeighbourViews", out: torch.Tensor,
                    out_views: "_NeighbourViews | None" = None) -> torch.Tensor:
        """A x into `out`, from views made once (slicing is a dispatch of its own, as costly as the
        arithmetic on the coarsest levels: the coarsest solve's 30 iterations took 4.1 ms with them)."""
        out_views = out_views or _NeighbourViews(out)
        torch.mul(self.diagonal_data, x.whole, out=out)
        for coupling, first, rest, out_first, out_rest, flow in (
            (self.horizontal, x.left, x.right, out_views.left, out_views.right, x.flow_horizontal),
            (self.vertical, x.top, x.bottom, out_views.top, out_views.bottom, x.flow_vertical),
        ):
            torch.sub(rest, first, out=flow).mul_(coupling)
            out_first.sub_(flow)
            out_rest.add_(flow)
        return out


class _NeighbourViews:
    """A (K, h, w) tensor with its shifted views and scratch for the flows between neighbours."""

    def __init__(self, whole: torch.Tensor) -> None:
        self.whole = whole
        self.left, self.right = whole[:, :, :-1], whole[:, :, 1:]
        self.top, self.bottom = whole[:, :-1, :], whole[:, 1:, :]
        self.flow_horizontal = torch.empty_like(self.left)
        self.flow_vertical = torch.empty_like(self.top)


def _conjugate_gradients(operator: _Operator, rhs: torch.Tensor, x: torch.Tensor, iterations: int) -> torch.Tensor:
    """Jacobi-preconditioned CG, each of the K fields with its own step sizes; updates in place, on views made once."""
    x = x.clone()
    residual = rhs - operator(x)
    z = operator.inverse_diagonal * residual
    direction = z.clone()
    direction_views = _NeighbourViews(direction)
    a_direction = torch.empty_like(direction)
    a_direction_views = _NeighbourViews(a_direction)
    product = torch.empty_like(direction)
    rz = torch.mul(residual, z, out=product).sum((1, 2), keepdim=True)
    for _ in range(iterations):
        operator.apply_views(direction_views, a_direction, a_direction_views)
        step = rz / torch.mul(direction, a_direction, out=product).sum((1, 2), keepdim=True).clamp_(min=1e-30)
        x.addcmul_(step, direction)
        residual.addcmul_(step, a_direction, value=-1.0)
        torch.mul(operator.inverse_diagonal, residual, out=z)
        rz_next = torch.mul(residual, z, out=product).sum((1, 2), keepdim=True)
        direction.mul_(rz_next / rz.clamp_(min=1e-30)).add_(z)
        rz = rz_next
    return x
