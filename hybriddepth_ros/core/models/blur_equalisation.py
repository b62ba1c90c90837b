"""Depth from defocus by blur equalisation, for a lens whose blur is known.

Two frames of one surface, F_a = S * K_a and F_b = S * K_b (S the sharp image,
K the lens's blur at each frame's focus, * convolution), satisfy
F_a * K_b = F_b * K_a at the surface's true depth, whatever S is: each side is
S blurred by both kernels. So, with the blur known as a function of defocus,
each candidate depth predicts both kernels, and the candidate whose
reblurred frames agree best over a window is the depth. No texture model
and no calibration: where the heat-equation fit of relative blur
(core.models.focus_measure.relative_blur_px2) reads the NYU protocol's large,
capped blur as smaller than it is, this reads it exactly.

The blur modelled is a Gaussian of standard deviation k |D - D_f| pixels for a
pixel D diopters from a frame's focus D_f (k the lens's blur per diopter),
truncated to a square of the given radius (the NYU protocol's 7x7 gather: 3)
and left out (the identity) where its width 2 sigma is at most 1 px, as the
protocol leaves pixels that near focus untouched. Candidates are GRID_PER_STEP
per step of the sweep (candidate_diopters); every pair of frames pair_step
apart (neighbours in short sweeps) adds its disagreement, so a candidate where
two frames are alike (both within focus) is told apart by the frames that are
not.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .focus_measure import box_mean, opencv_applies

GRID_PER_STEP = 16
"""Candidate depths per step of the sweep, evenly in diopters; the minimum is refined by a parabola.
NYU-protocol stacks, seeds 1000-1019 (tools/evaluate_weight_free.py), dense AbsRel with 8, 16 and 24:
5-frame nyu_far 0.0450, 0.0412, 0.0406 (AUSE 0.0119, 0.0082, 0.0073), nyu 0.0881, 0.0790, 0.0785;
10 frames with 8 and 16: nyu_far 0.0408, 0.0389, nyu 0.0727, 0.0700. The cost grows with the count (5-frame
backend medians 180, 280 and 400 ms). An earlier form scored 0.0617 with 4 against 0.0518 with 8. All
measured with the rounding taken off every candidate alike (ROUNDING_VARIANCE)."""
WINDOW_PX = 9
"""Side of the square over which the reblurred frames' disagreement is summed (full-size pixels), applied to
its 2x2 block means (block_window_taps). Summed exactly at full size, pair by pair (ROUNDING_VARIANCE), it
took 270-310 ms of a 5x480x640 stack against 190-215 ms; on 10-pixel block-aligned windows instead, 5-frame
NYU-protocol stacks of seeds 2000-2009 (nyu) scored 0.0870 against 0.0817 exact and 0.0835 with the taps."""
ROUNDING_VARIANCE = 1.0 / 12.0 / 255.0**2
"""Variance of rounding to 8 bits, in luminance of [0, 1]: the noise of a rendered frame where the blur
changed it. Blurring it away lowers the disagreement, so uncorrected the minimum leans towards the candidates
that blur most; subtracted, a weakly textured wall (crops of the Pixel photo's, luminance std 1.5-2.6 DN)
reads its depth instead of the sweep's near end (test_blur_equalisation.py). It is an upper bound: the
luminance of three rounded channels carries 0.45-0.5 of it, and frames that are blurred but smooth round
back to nearly their source, or alike (measured on those crops: a pair left 0.15-0.5 of what the model takes
off). Taken off every candidate alike, that over-subtraction favoured whichever candidate leaves a frame
untouched: 7 of 21 wall planes across a 0.85-1.75 m sweep read 34-60 % off. So each pair's disagreement
stops at zero (a pair's rounding cannot explain more than its disagreement): all within 2.3 %.
NYU-protocol stacks (tools/evaluate_weight_free.py), 5 / 10 frames, dense AbsRel taken off alike, then pair
by pair: `photo` (the Pixel stack's image_3_0.80.jpg over smooth depth fields), seeds 1000-1019, 0.0329 /
0.0801 to 0.0152 / 0.0172; image_5_1.3.jpg, seeds 2000-2009, 0.0491 / 0.0948 to 0.0173 / 0.0242. On the
procedural scenes, seeds 1000-1019: nyu_far 0.0412 / 0.0389 to 0.0378 / 0.0395, nyu 0.0790 / 0.0700 to
0.0762 / 0.0697; seeds 2000-2009: nyu_far 0.0519 / 0.0285 to 0.0498 / 0.0281, nyu 0.0822 / 0.0680 to
0.0835 / 0.0714."""

PAIR_SPAN_DIVISOR = 4
"""Frames are paired (N - 1) // PAIR_SPAN_DIVISOR steps apart, at least neighbours (pair_step): about a quarter
of the sweep. In a fine sweep neighbouring frames differ little in blur, so over weak texture their pair's
disagreement stays within rounding at most candidates. NYU-protocol stacks (tools/evaluate_weight_free.py),
seeds 1000-1019, dense AbsRel photo / nyu / nyu_far with pairs 1, 2 and 3 steps apart, and 1 and 2 together:
10 frames 0.0159 / 0.0598 / 0.0394, 0.0126 / 0.0473 / 0.0349, 0.0141 / 0.0463 / 0.0368, 0.0117 / 0.0494 /
0.0352 (twice the cost); 7 frames 0.0139 / 0.0573 / 0.0359 with neighbours, 0.0146 / 0.0524 / 0.0399 two
apart; 5 frames 0.0151 / 0.0539 / 0.0369 with neighbours, 0.0192 / 0.0593 / 0.0438 two apart, 0.0147 / 0.0569
/ 0.0416 both. Seeds 2000-2009, 10 frames, 2 steps apart against neighbours: photo (image_5_1.3.jpg) 0.0240
to 0.0151, nyu 0.0552 to 0.0407, nyu_far 0.0285 to 0.0260."""

TIE_BREAK = 1e-3
"""Weight of the disagreement as summed (rounding included) added to the disagreement less rounding, so that
candidates that all lie within rounding (net zero) are told apart by the least disagreement."""


def lens_blur_taps(sigma_px: float, radius_px: int = 0) -> np.ndarray:
    """1-D taps (float32, summing to 1) of the modelled blur: a Gaussian of `sigma_px` truncated to `radius_px`
    (0: to 3 sigma), or the single tap 1 where 2 sigma <= 1 (no blur)."""
    if not 2 * sigma_px > 1:
        return np.ones(1, dtype=np.float32)
    radius = radius_px if radius_px > 0 else math.ceil(3 * sigma_px)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-offsets**2 / (2 * sigma_px**2))
    return (taps / taps.sum()).astype(np.float32)


def separable_blur(plane: torch.Tensor, taps: np.ndarray) -> torch.Tensor:
    """(H, W) plane blurred by `taps` along each axis, edges replicated (the plane itself for a single tap)."""
    if taps.size == 1:
        return plane
    if opencv_applies(plane[None]):
        return torch.from_numpy(_cv_blur(plane.contiguous().numpy(), taps))
    half = taps.size // 2
    kernel = torch.as_tensor(taps, device=plane.device, dtype=plane.dtype)
    rows = F.conv2d(F.pad(plane[None, None], (half, half, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(rows, (0, 0, half, half), mode="replicate"), kernel.view(1, 1, -1, 1))[0, 0]


def _energy(taps: np.ndarray) -> float:
    """Sum of squares of the 2-D separable kernel with these 1-D taps."""
    return float((taps.astype(np.float64) ** 2).sum()) ** 2


def _cv_blur(plane: np.ndarray, taps: np.ndarray) -> np.ndarray:
    if taps.size == 1:
        return plane
    return cv2.sepFilter2D(plane, -1, taps, taps, borderType=cv2.BORDER_REPLICATE)


def pair_step(count: int) -> int:
    """Steps of the sweep between the two frames of each pair, for `count` frames (PAIR_SPAN_DIVISOR)."""
    return max(1, (count - 1) // PAIR_SPAN_DIVISOR)


def candidate_diopters(diopters: torch.Tensor, per_step: int = GRID_PER_STEP) -> np.ndarray:
    """Candidate inverse depths (float64, in the sweep's order): `per_step` per step of the sweep, evenly in
    diopters, its frames included. None beyond the ends: there a frame's blur grows alike on both sides of
    its focus, and the other frames' capped blur cannot tell the sides apart (a plane at 0.9 m read 0.72 m
    on the sweep of test_blur_equalisation.py with candidates a quarter step beyond the ends; 5-frame
    NYU-protocol stacks at 0.8-6 m, seeds 1000-1019, dense AbsRel 0.0518 with them, 0.0496 without)."""
    focus_d = [float(value) for value in diopters]
    grid = []
    for near_d, far_d in zip(focus_d[:-1], focus_d[1:]):
        grid.extend(np.linspace(near_d, far_d, per_step + 1)[:-1])
    grid.append(focus_d[-1])
    return np.array(grid)


class BlurEqualised(NamedTuple):
    """Per 2x2 block (H // 2, W // 2): blur_equalised_depth's read."""

    depth_m: torch.Tensor
    relative_error: torch.Tensor
    """Expected relative depth error; infinite where nothing was read."""
    unexplained_share: torch.Tensor
    """Disagreement left at the depth read, as a share of the frames' own (unblurred) disagreement; infinite
    where the frames do not differ at all."""


def blur_equalised_depth(luma: torch.Tensor, diopters: torch.Tensor, sigma_px_per_diopter: float,
                         radius_px: int = 0, window_px: int = WINDOW_PX,
                         per_step: int = GRID_PER_STEP) -> BlurEqualised:
    """(H // 2, W // 2) depth in metres per 2x2 block from (N, H, W) luminance frames at `diopters` (N,), by blur
    equalisation over every pair of frames pair_step apart with the lens's known blur (module docstring), and
    its expected relative error (from the disagreement left at the minimum against the curvature there;
    infinite where the frames agree at every candidate, as on a flat grey stack, or the minimum has no
    curvature).

    Each pair's squared disagreement is averaged over each 2x2 block, the grid the dense path works on, and
    over a `window_px` square (block_window_taps); less the share 8-bit rounding adds, but never below zero:
    a pair's rounding cannot explain more than its disagreement (ROUNDING_VARIANCE).
    Where the window mixes two surfaces the minimum belongs to the more textured one (FocusMeasureBackend
    keeps its own estimate across occlusion edges).
    5x480x640, 65 candidates: 190-215 ms on this project's CPU (one thread, OpenCV's filters); 10 frames, 145
    candidates: 920-1050 ms.

    The minimum is chosen on the disagreement less rounding and refined by a parabola through the
    disagreement as summed: NYU-protocol photo stacks (tools/evaluate_weight_free.py), seeds 1000-1019,
    5 frames, dense AbsRel / AUSE / half 0.0159 / 0.0058 / 0.63 refined on the first, 0.0150 / 0.0044 / 0.55
    on the second; nyu_far 0.0386 / 0.0101 / 0.35 and 0.0387 / 0.0084 / 0.32. The wall planes of
    test_blur_equalisation.py read within 3.2 % and 2.3 %.
    """
    count, height, width = luma.shape
    if count < 2:
        raise ValueError(f"blur equalisation needs at least 2 frames, got {count}")
    rows, cols = height // 2, width // 2
    focus_d = [float(value) for value in diopters]
    grid = candidate_diopters(diopters, per_step)
    on_cpu = opencv_applies(luma)
    even = luma[:, :2 * rows, :2 * cols]
    planes = [plane.numpy() for plane in even.contiguous()] if on_cpu else list(even)
    window_taps = block_window_taps(window_px)
    step = pair_step(count)
    pairs = [(index, index + step) for index in range(count - step)]
    # Each pair's windowed squared difference as the frames are: what candidates that blur neither frame
    # disagree by, and what the depth read is measured against (unexplained_share).
    one_tap = np.ones(1, dtype=np.float32)
    unblurred = [_windowed_square(planes[index], planes[other], one_tap, one_tap, window_taps, on_cpu)
                 for index, other in pairs]
    disagreement = luma.new_empty((len(grid), rows, cols))  # less rounding, pair by pair, never below zero
    raw = luma.new_empty((len(grid), rows, cols))  # as summed, rounding included
    for which, candidate_d in enumerate(grid):
        net_total, raw_total = disagreement[which].zero_(), raw[which].zero_()
        for (index, other), as_taken in zip(pairs, unblurred):
            # Each frame of the pair takes the other's blur at this candidate.
            taps_a = lens_blur_taps(sigma_px_per_diopter * abs(candidate_d - focus_d[other]), radius_px)
            taps_b = lens_blur_taps(sigma_px_per_diopter * abs(candidate_d - focus_d[index]), radius_px)
            # A frame carries rounding noise where the blur changed it (its own kernel, the other's taps, is more
            # than one tap); the other frame's kernel passes the energy of its taps, squared (separable), of it.
            noise_floor = ROUNDING_VARIANCE * ((taps_b.size > 1) * _energy(taps_a)
                                               + (taps_a.size > 1) * _energy(taps_b))
            if taps_a.size == taps_b.size == 1:
                pair = as_taken
            else:
                pair = _windowed_square(planes[index], planes[other], taps_a, taps_b, window_taps, on_cpu)
            raw_total += pair
            net_total += (pair - noise_floor).clamp_(min=0) if noise_floor > 0 else pair
    # Where every pair is within its rounding (weak texture) the net disagreements tie at zero: the least
    # disagreement decides, as it did before rounding was taken off.
    disagreement.add_(raw, alpha=TIE_BREAK)
    grid_t = torch.as_tensor(grid, dtype=luma.dtype, device=luma.device)
    best = disagreement.argmin(0).clamp(1, len(grid) - 2)
    # Refined on the disagreement as summed, which is smooth across candidates; the one less rounding is flat
    # wherever a pair stopped at zero, and its vertex fell on the candidates (docstring).
    y0, y1, y2 = (raw.gather(0, (best + shift)[None])[0] for shift in (-1, 0, 1))
    x0, x1, x2 = grid_t[best - 1], grid_t[best], grid_t[best + 1]
    curvature = y0 - 2 * y1 + y2
    offset = torch.where(curvature > 0, 0.5 * (y0 - y2) / curvature.clamp(min=1e-30), 0.0).clamp(-0.5, 0.5)
    # The grid is even within a step, not across steps: interpolate towards the side the vertex lies on.
    inverse_depth = torch.where(offset < 0, x1 + offset * (x1 - x0), x1 + offset * (x2 - x1))
    # A parabola y_min + a (x - x*)^2 whose floor y_min is the disagreement left at the best candidate (with
    # the rounding noise's share) moves its vertex by about sqrt(y_min / a) when that floor is noise:
    # a = curvature / (2 spacing^2).
    spacing = torch.where(offset < 0, x1 - x0, x2 - x1).abs()
    floor = raw.gather(0, best[None])[0].clamp(min=0)
    error_d = spacing * torch.sqrt(2 * floor / curvature.clamp(min=1e-30))
    # Frames alike at every candidate (no texture, or none left by the blur) read nothing.
    no_signal = raw.amax(0) - raw.amin(0) <= 1e-3 * ROUNDING_VARIANCE
    error_d = torch.where((curvature > 0) & ~no_signal, error_d, torch.inf)
    # How much of the frames' own differences the best candidate leaves: none of it explained where they do
    # not differ at all (identical frames: every candidate's blur only adds disagreement).
    frames_differ = sum(unblurred)
    unexplained = torch.where(frames_differ > 0, floor / frames_differ.clamp(min=1e-30), torch.inf)
    return BlurEqualised(inverse_depth.reciprocal(), error_d / inverse_depth, unexplained)


def block_window_taps(window_px: int) -> np.ndarray:
    """1-D taps over 2x2 block means (float32, summing to 1) that stand for a `window_px` (odd) box at full
    size followed by the 2x2 mean: the full-size weights of each block summed. Exact where a block's two rows
    (columns) are alike; filtering a quarter of the pixels is what makes a window per pair affordable."""
    half = window_px // 2
    rows = np.arange(-half, half + 2)  # the full-size rows that output block 0 (rows 0 and 1) takes in
    full = np.convolve(np.ones(window_px), np.ones(2))  # their weights: the box, then the 2x2 mean
    weights = np.bincount(rows // 2 - rows[0] // 2, weights=full)
    return (weights / weights.sum()).astype(np.float32)


def _windowed_square(plane_a, plane_b, taps_a: np.ndarray, taps_b: np.ndarray, window_taps: np.ndarray,
                     on_cpu: bool) -> torch.Tensor:
    """(H // 2, W // 2) squared difference of plane_a blurred by taps_a and plane_b blurred by taps_b, as 2x2
    block means filtered by `window_taps` (block_window_taps) along each axis (planes of even size: numpy on
    the CPU, tensors elsewhere)."""
    if on_cpu:
        difference = cv2.subtract(_cv_blur(plane_a, taps_a), _cv_blur(plane_b, taps_b))
        cv2.multiply(difference, difference, dst=difference)
        rows, cols = difference.shape[0] // 2, difference.shape[1] // 2
        blocks = cv2.resize(difference, (cols, rows), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(_cv_blur(blocks, window_taps))
    difference = separable_blur(plane_a, taps_a) - separable_blur(plane_b, taps_b)
    blocks = F.avg_pool2d((difference * difference)[None], 2)[0]
    return separable_blur(blocks, window_taps)
