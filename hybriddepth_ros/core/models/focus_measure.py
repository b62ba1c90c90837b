"""Weight-free depth from focus: per-pixel sharpest frame of the sweep, refined in diopters.

Each frame's focus measure is the sum-modified Laplacian (SML) of its
luminance averaged over a square window. A pixel's depth is where its focus
measure curve peaks: the sharpest frame, refined by a parabola through that
frame and its two neighbours in diopter space, where blur grows linearly with
defocus. The parabola is fitted to a Box-Cox transform of the focus measure,
((f/f_peak)^λ - 1)/λ, where λ = 0 is the log (a Gaussian fit) and a more
negative λ suits focus curves with heavier tails. Disc-shaped blur (a real
aperture) makes the focus measure fall off as a power of defocus: on simulated
textured planes a log fit pulls estimates towards the nearest frame by up to
1/7 of a focus step, the default λ = -3 by about 1/40; for Gaussian blur
(the paper's NYU protocol) λ = -1.5 does best.
Where the sharpest frame is the first or the last of the sweep the
true focus may lie beyond it, so depth there is NaN, as it is where the curve
is flat; a sweep of two frames has no interior frame and gives no depth. For
densified output a curve that stays at its peak all the way to an end frame
counts as sharpest there (peak_at_flat_end).

Confidence in [0, 1] is the product of three factors: how far the peak rises
above the rest of the curve (1 - mean/peak; near 0 on textureless surfaces,
where every frame looks alike), whether the curve has a single peak (a second
one appears at depth edges, where the window sees two surfaces, and on
periodic texture), and how much texture signal the peak has over sensor noise.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .metric_branch import std_from_confidence

LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class FocusMeasureDFF(nn.Module):
    """Depth from focus without learned weights, as a HybridDepthNet metric branch; any torch device.

    window_px: side of the square window the focus measure is averaged over
      (odd); larger is steadier on weak texture, blurrier at depth edges.
    curve_exponent: λ of the Box-Cox transform the peak parabola is fitted to
      (-3 for disc blur, -1.5 for Gaussian blur).
    noise_floor: SML level (luminance in [0, 1] per pixel) that sensor noise
      alone reaches; peaks near it get low confidence.
    second_peak_tolerance: a second peak this high (relative to the main
      one) drives confidence to 0.

    forward(focal_stack (B,N,3,H,W) in [0,1] without normalisation,
    focus_distances_m (B,N) ascending) -> (depth_m, std_m), each (B,1,H,W).
    Depth is NaN where the focus curve has no interior peak; std is mapped
    from the confidence by `std_from_confidence` (half the sweep range where
    there is no depth), so the refiner sees the same kind of signal as from DFV.
    """

    def __init__(
        self,
        window_px: int = 9,
        curve_exponent: float = -3.0,
        noise_floor: float = 0.01,
        second_peak_tolerance: float = 0.2,
    ) -> None:
        super().__init__()
        if window_px < 1 or window_px % 2 == 0:
            raise ValueError(f"window_px must be a positive odd number, got {window_px}")
        if not noise_floor > 0:
            raise ValueError(f"noise_floor must be > 0, got {noise_floor}")
        self.window_px = window_px
        self.curve_exponent = curve_exponent
        self.noise_floor = noise_floor
        self.second_peak_tolerance = second_peak_tolerance

    def forward(self, focal_stack: torch.Tensor, focus_distances_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depths, stds = [], []
        for frames, distances in zip(focal_stack.float(), focus_distances_m.float()):
            depth_m, confidence = self.depth_and_confidence(luminance(frames), distances)
            depths.append(depth_m)
            stds.append(std_from_confidence(confidence, distances))
        return torch.stack(depths)[:, None], torch.stack(stds)[:, None]

    def depth_and_confidence(self, luma: torch.Tensor, focus_distances_m: torch.Tensor):
        """(H, W) depth in metres (NaN without an interior peak) and confidence (0 there) from (N, H, W) luminance."""
        depth_m, confidence = self.peak_depth(self.focus_measure(luma), 1.0 / focus_distances_m.float())
        return depth_m, torch.where(torch.isnan(depth_m), torch.zeros_like(confidence), confidence)

    def focus_measure(self, luma: torch.Tensor) -> torch.Tensor:
        """(N, H, W) window-averaged sum-modified Laplacian of (N, H, W) luminance.

        The window sum is two 1-D passes of shifted adds (2 x 9 adds per pixel
        instead of avg_pool2d's 81; 8 ms instead of 90 ms CPU time for a
        5x480x640 stack, one thread); it differs from the 2-D average only by
        float rounding.
        """
        return box_mean(modified_laplacian(luma), self.window_px)

    def peak_depth(self, focus: torch.Tensor, diopters: torch.Tensor):
        """Depth (m, NaN without an interior peak) and confidence from (N, H, W) focus curves."""
        fit = self.peak_fit(focus, diopters)
        return fit.depth_m, fit.confidence

    def peak_fit(self, focus: torch.Tensor, diopters: torch.Tensor, flat_end: bool = False) -> "PeakFit":
        """The focus-curve peak per pixel: depth, confidence and the sharpest frame, from (N, H, W) focus curves.

        flat_end: a curve flat from its peak to an end frame counts as sharpest there
        (peak_at_flat_end); the rule of densified output, off by default so that
        measured-only depth stays as it was.

        Written as a loop over the N frames of per-pixel operations on (H, W)
        planes: torch's reductions over a short leading axis (argmax, cummin)
        are several times slower on a CPU than these few passes.
        """
        count = focus.shape[0]
        frames = focus.unbind(0)
        peak_value = frames[0]
        peak = torch.zeros_like(frames[0])  # frame index, as float for the arithmetic selections below
        for index in range(1, count):
            higher = (frames[index] > peak_value).to(peak.dtype)  # ties keep the first frame, as argmax does
            peak_value = torch.maximum(peak_value, frames[index])
            peak = _select(higher, index, peak)
        if count < 3:
            nothing = torch.full_like(peak_value, torch.nan)
            return PeakFit(nothing, torch.zeros_like(peak_value), peak.long(), nothing)
        scale = 1.0 / peak_value.clamp(min=1e-12)
        relative = [frame * scale for frame in frames]
        if flat_end:
            peak = peak_at_flat_end(relative, peak)
        total = relative[0].clone()
        for plane in relative[1:]:
            total += plane
        rise = 1.0 - total / count
        inner = peak.clamp(1, count - 2)
        # The three frames around the peak (shifted inwards at the ends), by selection over the frames.
        below, at, above = relative[0], relative[1], relative[2]
        x0, x1, x2 = (diopters[k].to(peak.dtype).expand_as(peak) for k in range(3))
        for index in range(2, count - 1):
            here = (inner == index).to(peak.dtype)
            below, at, above = (_select(here, relative[index + k], plane) for k, plane in ((-1, below), (0, at), (1, above)))
            x0, x1, x2 = (_select(here, diopters[index + k], plane) for k, plane in ((-1, x0), (0, x1), (1, x2)))
        y0, y1, y2 = (self._box_cox(values) for values in (below, at, above))
        vertex = _parabola_vertex(x0, y0, x1, y1, x2, y2)
        interior = (peak > 0) & (peak < count - 1)
        depth_m = (1.0 / vertex).masked_fill(~(interior & (rise > 0)), torch.nan)
        # At an end frame the vertex is kept between that frame and the midpoint to its neighbour.
        at_end = ~interior & (rise > 0)
        # Only a concave parabola's vertex is a peak; else the end frame itself is the estimate.
        end_x = _select((peak == 0).to(peak.dtype), x0, x2)
        middle_x = (end_x + x1) / 2
        curvature = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
        end_vertex = torch.minimum(torch.maximum(vertex, torch.minimum(end_x, middle_x)), torch.maximum(end_x, middle_x))
        end_vertex = _select((curvature < 0).to(peak.dtype), end_vertex, end_x)
        end_depth_m = (1.0 / end_vertex).masked_fill(~at_end, torch.nan)

        # A single clean peak over N frames leaves the mean well below the peak;
        # scale so that a rise of 0.5 or more counts as fully peaked.
        peakedness = (rise / 0.5).clamp(0.0, 1.0)
        unimodal = (1.0 - _second_peak(relative, peak) / self.second_peak_tolerance).clamp(0.0, 1.0)
        signal = peak_value / (peak_value + self.noise_floor)
        return PeakFit(depth_m, peakedness * unimodal * signal, peak.long(), end_depth_m)

    def _box_cox(self, relative_focus: torch.Tensor) -> torch.Tensor:
        values = relative_focus.clamp(min=1e-6)
        if self.curve_exponent == 0:
            return torch.log(values)
        if self.curve_exponent == -3.0:  # the default: a tenth of pow's time (0.06 against 0.57 ms a 240x320 plane)
            return (values * values * values).reciprocal_().sub_(1.0).div_(-3.0)
        return (values**self.curve_exponent - 1.0) / self.curve_exponent


@dataclass
class PeakFit:
    """Per pixel (H, W): depth in metres (NaN without an interior peak), confidence in [0, 1], sharpest frame index.

    end_depth_m: where the sharpest frame is the first or the last, the
    parabola's vertex kept between that frame and the midpoint to its
    neighbour, or that frame's distance where the parabola has no maximum
    (NaN elsewhere): a bound rather than a measurement, since the
    true focus may lie beyond the sweep; confidence is computed for these
    pixels as for the others.
    """

    depth_m: torch.Tensor
    confidence: torch.Tensor
    peak_index: torch.Tensor
    end_depth_m: torch.Tensor


def modified_laplacian(luma: torch.Tensor) -> torch.Tensor:
    """(N, H, W) |d2/dx2| + |d2/dy2| of (N, H, W) planes, edges replicated."""
    if opencv_applies(luma):
        def modified_laplacian_into(plane: np.ndarray, out: np.ndarray) -> None:
            cv2.filter2D(plane, -1, _SECOND_DIFFERENCE, dst=out, borderType=cv2.BORDER_REPLICATE)
            np.abs(out, out=out)
            out += np.abs(cv2.filter2D(plane, -1, _SECOND_DIFFERENCE.T, borderType=cv2.BORDER_REPLICATE))
        return _opencv_per_plane(luma, modified_laplacian_into)
    padded = F.pad(luma[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    twice = 2 * padded[:, 1:-1, 1:-1]
    result = (twice - padded[:, 1:-1, :-2] - padded[:, 1:-1, 2:]).abs()
    result += (twice - padded[:, :-2, 1:-1] - padded[:, 2:, 1:-1]).abs()
    return result


def box_mean(planes: torch.Tensor, window_px: int) -> torch.Tensor:
    """Mean over a `window_px` square (odd) around each pixel of (N, H, W) planes, edges replicated."""
    half = window_px // 2
    if half == 0:
        return planes
    if opencv_applies(planes):
        return _opencv_per_plane(planes, lambda plane, out: cv2.blur(
            plane, (window_px, window_px), dst=out, borderType=cv2.BORDER_REPLICATE))
    height, width = planes.shape[-2:]
    padded = F.pad(planes[:, None], (half,) * 4, mode="replicate")[:, 0]
    rows = padded[..., :width].clone()
    for shift in range(1, window_px):
        rows += padded[..., shift:shift + width]
    total = rows[:, :height].clone()
    for shift in range(1, window_px):
        total += rows[:, shift:shift + height]
    return total / (window_px * window_px)


def box_max(planes: torch.Tensor, window_px: int) -> torch.Tensor:
    """Maximum over a `window_px` square (odd) around each pixel of (N, H, W) planes, edges replicated.

    OpenCV's dilation on the CPU (0.17 ms a 240x320 plane at 21 px; torch's
    max_pool2d took 36 ms, or 10 ms as two 1-D passes, which the other devices use).
    """
    half = window_px // 2
    if half == 0:
        return planes
    if opencv_applies(planes):
        kernel = np.ones((window_px, window_px), dtype=np.uint8)
        return _opencv_per_plane(planes, lambda plane, out: cv2.dilate(
            plane, kernel, dst=out, borderType=cv2.BORDER_REPLICATE))
    rows = F.max_pool2d(planes[:, None], (1, window_px), stride=1, padding=(0, half))
    return F.max_pool2d(rows, (window_px, 1), stride=1, padding=(half, 0))[:, 0]


_SECOND_DIFFERENCE = np.array([[1.0, -2.0, 1.0]], dtype=np.float32)


def opencv_applies(planes: torch.Tensor) -> bool:
    """Whether OpenCV may do this filter: float32 planes on the CPU that need no gradient.

    OpenCV's filters are the same sums, 2-5 times faster than torch's shifted adds here (a 5x240x320
    stack's 9 px box mean: 0.74 against 4.2 ms; a 480x640 plane's modified Laplacian: 0.41 against
    1.9 ms, one thread each); results agree to float rounding (test/core/depth/test_focus_measure.py).
    """
    return (not FORCE_TORCH_FILTERS and planes.device.type == "cpu" and planes.dtype == torch.float32
            and planes.dim() == 3 and not (planes.requires_grad and torch.is_grad_enabled()))


FORCE_TORCH_FILTERS = False
"""True: the filters use torch on the CPU too (tests compare the two paths)."""


def _opencv_per_plane(planes: torch.Tensor, apply) -> torch.Tensor:
    """A new (N, H, W) CPU tensor filled plane by plane by `apply(plane, out)` (numpy views, OpenCV's `dst`)."""
    result = torch.empty(planes.shape, dtype=planes.dtype)
    for plane, out in zip(planes.contiguous().numpy(), result.numpy()):
        apply(plane, out)
    return result


def luminance(frames_rgb: torch.Tensor) -> torch.Tensor:
    """(N, H, W) luminance from (N, 3, H, W) RGB, in the frames' own scale."""
    weights = torch.tensor(LUMA_WEIGHTS, device=frames_rgb.device, dtype=frames_rgb.dtype)
    return torch.einsum("nchw,c->nhw", frames_rgb, weights)


def _select(choose: torch.Tensor, chosen, otherwise: torch.Tensor) -> torch.Tensor:
    """`chosen` where `choose` (float, 0 or 1) is 1, else `otherwise`: exact for finite values.

    torch.lerp, which returns its ends exactly, rather than torch.where, which
    is slower on a CPU where the choice changes from pixel to pixel (a random
    240x320 mask: 0.03 against 0.34 ms, one thread; 0.06 ms for a mask in two
    halves; the product-and-sum form this replaced took 0.09 ms).
    """
    if not isinstance(otherwise, torch.Tensor):
        otherwise = torch.full_like(choose, otherwise)
    if not isinstance(chosen, torch.Tensor):
        chosen = torch.full_like(otherwise, chosen)
    return torch.lerp(otherwise, chosen, choose)


FLAT_END_TOLERANCE = 0.01
"""A focus curve within this fraction of its peak from the peak to an end frame is sharpest at that end
(peak_at_flat_end)."""


def peak_at_flat_end(relative: list[torch.Tensor], peak: torch.Tensor,
                      tolerance: float = FLAT_END_TOLERANCE) -> torch.Tensor:
    """`peak` (frame index, float) moved to the end frame where the curve (N (H, W) planes, relative to
    the peak) stays within `tolerance` of the peak from the peak to that end, at one end only.

    Frames that look alike from the peak to the end of the sweep all hold the
    pixel in focus: its focus may lie at or beyond that end, so it is an
    end-of-sweep bound, not an interior peak whose vertex would sit in the
    middle of the run. The NYU protocol leaves a pixel untouched where its
    blur circle is under 2 px, so far frames of a sweep linear in metres are
    exactly alike there. Seeds 1000-1019, NYU protocol at 0.8-6 m
    (tools/evaluate_weight_free.py), without -> with: 10 frames dense AbsRel
    0.1059 -> 0.0579, half 0.84 -> 0.50; 5 frames 0.0996 -> 0.0994, half
    0.73 -> 0.68; simulated stacks (1 DN noise) within 0.0001.
    """
    count = len(relative)
    floor = 1.0 - tolerance
    to_end = []
    for indices in (range(count), range(count - 1, -1, -1)):
        unbroken = torch.ones_like(peak, dtype=torch.bool)
        reached = torch.zeros_like(unbroken)
        for index in indices:
            unbroken &= relative[index] >= floor
            reached |= unbroken & (peak == index)
        to_end.append(reached)
    to_first, to_last = to_end
    peak = torch.where(to_first & ~to_last, 0.0, peak)
    return torch.where(to_last & ~to_first, float(count - 1), peak)


_FAR_ABOVE = 1e30
"""Stands for +infinity where infinity times 0 would make NaN."""


def _second_peak(relative: list[torch.Tensor], peak: torch.Tensor) -> torch.Tensor:
    """How far (relative to the main peak) a curve, given as N (H, W) planes, rises again after falling from its peak.

    Walking away from the peak, a single-peaked curve only falls; the largest
    rise over the lowest value passed so far measures a second peak, as at depth
    edges where the window sees two surfaces. `peak` is the frame index (float).
    """
    count = len(relative)
    rise = torch.zeros_like(relative[0])
    for direction in (range(count), range(count - 1, -1, -1)):
        # Before the peak `lowest` stays _FAR_ABOVE (relative values are at most 1), so the rise there is
        # far below 0 and changes nothing: no selection needed (6 operations a frame instead of 9).
        lowest = torch.full_like(relative[0], _FAR_ABOVE)
        for index in direction:
            before_peak = (peak > index) if direction.step > 0 else (peak < index)
            lowest = torch.minimum(lowest, torch.mul(before_peak, _FAR_ABOVE).add_(relative[index]))
            rise = torch.maximum(rise, relative[index] - lowest)
    return rise


OCCLUDER_MIN_RELATIVE = 0.5
"""A focus-curve maximum counts as a peak for occluder_peak_curves from this fraction of the curve's
highest value. Chosen on 5-frame simulated stacks, seeds 1000-1009, with the first version of the rule
(flat share 0.8, any second rise): 0.3, 0.5, 0.7 gave dense AbsRel 0.1077, 0.1080, 0.1081 (sim) and
0.1085, 0.1080, 0.1080 (nyu_far)."""


OCCLUDER_MIN_RISE = 0.35
"""A flat curve counts as two-peaked when it rises again after the valley by at least this fraction of
its highest value. Smaller rises are noise: on the Pixel stack's blank wall (no ground truth; it
stands behind the table) any rise pulled the wall nearer, its top corners to 0.57 and 0.59 m, 0.2 to
0.61 and 0.59 m, 0.35 left them as without occluder_peak (0.77 and 0.64 m). Seeds 1000-1009, 5 frames,
flat share 0.8, dense AbsRel sim / nyu_far: any rise 0.1076 / 0.1075, 0.2 0.1078 / 0.1077, 0.35 0.1096 / 0.1081."""


def occluder_peak_curves(
    focus: torch.Tensor, min_relative: float = OCCLUDER_MIN_RELATIVE, min_rise: float = OCCLUDER_MIN_RISE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) focus curves cut after the valley that follows their nearest peak, and the (H, W) pixels
    whose curve has a second peak beyond that valley.

    A flat pixel next to an occlusion edge has two peaks: the edge, sharp where
    the occluder (the nearer surface, whose silhouette the edge is) is in focus,
    and the farther texture, seen in the window or through the occluder's
    blurred rim. The window's texture peak is often the higher one, and the
    fill then gives a flat foreground object the background's depth (5-frame
    simulated stacks, seeds 1000-1019: flat objects' pixels had AbsRel 1.54,
    0.065 of the dense mean 0.149). Each curve beyond the valley that follows
    its nearest peak (a local maximum of at least `min_relative` of the highest)
    is lowered to that valley, so that a peak fit of the cut curve reads the
    occluder's depth as a single peak. A curve has two peaks where it rises
    again after that valley by at least `min_rise` of its highest value
    (smaller rises are noise). Frames are ordered near to far. The cut means
    something only where there are two peaks; the caller chooses the pixels
    that fit it (flat ones: occluder_peak; textured ones read an occlusion rim's
    near peak, core.depth.focus_measure.occlusion_rim_depth).
    """
    count = focus.shape[0]
    frames = focus.unbind(0)
    dtype = frames[0].dtype
    # Float arithmetic and selections, as in peak_fit: comparisons chained with & cost more on a CPU.
    highest = focus.amax(0)
    threshold = min_relative * highest
    nearest = torch.full_like(frames[0], float(count))  # index of the nearest peak, as float
    for index in reversed(range(count)):
        margin = frames[index] - threshold
        if index > 0:
            margin = torch.minimum(margin, frames[index] - frames[index - 1])
        if index < count - 1:
            margin = torch.minimum(margin, frames[index] - frames[index + 1])
        nearest = _select((margin >= 0).to(dtype), float(index), nearest)
    valley = torch.full_like(frames[0], _FAR_ABOVE)
    cut = torch.empty_like(focus)
    for index in range(count):
        valley = torch.minimum(valley, frames[index] + (nearest >= index).to(dtype) * _FAR_ABOVE)
        torch.minimum(frames[index], valley, out=cut[index])
    return cut, two_peaked(focus, cut, min_rise)


def two_peaked(focus: torch.Tensor, cut: torch.Tensor, min_rise: float = OCCLUDER_MIN_RISE) -> torch.Tensor:
    """(H, W) bool: curves `focus` (N, H, W) that rise again above their cut (occluder_peak_curves) by at
    least `min_rise` of their highest value."""
    rise = (focus - cut).amax(0)
    return (rise > 0) & (rise >= min_rise * focus.amax(0))


def _parabola_vertex(x0, y0, x1, y1, x2, y2) -> torch.Tensor:
    """Abscissa of the parabola through three points, clamped to [min(x0, x2), max(x0, x2)]."""
    d10, d12 = x1 - x0, x1 - x2
    numerator = d10**2 * (y1 - y2) - d12**2 * (y1 - y0)
    denominator = d10 * (y1 - y2) - d12 * (y1 - y0)
    safe = denominator.abs() > 1e-12
    vertex = x1 - 0.5 * numerator / torch.where(safe, denominator, torch.ones_like(denominator))
    vertex = torch.where(safe, vertex, x1)
    return torch.minimum(torch.maximum(vertex, torch.minimum(x0, x2)), torch.maximum(x0, x2))


RELATIVE_BLUR_WINDOW_PX = 9
"""Window (pixels of the plane given: the dense path's half size) over which relative blur is fitted.
Chosen on 5-frame simulated stacks, seeds 1000-1019: textured end-of-sweep pixels' AbsRel 0.103, 0.095,
0.101 at 5, 9, 15 px."""
RELATIVE_BLUR_MIN_CALIBRATION_PX = 200
"""Measured pixels needed to calibrate the blur rate; with fewer the end-of-sweep bound is kept as it is,
unless earlier stacks of the same camera and sweep calibrated one (BlurRates)."""
RELATIVE_BLUR_CALIBRATION_REACH = 0.35
"""Calibration pixels lie within this fraction of a step from the sharper frame of their pair: the
blur configuration of end-of-sweep pixels, which lie within half a step of the end frame. 0.25, 0.35,
0.5 gave 0.094, 0.095, 0.098 (as RELATIVE_BLUR_WINDOW_PX)."""


def relative_blur_px2(
    sharper: torch.Tensor, blurrier: torch.Tensor, window_px: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) how much more blur `blurrier` has than `sharper` ((H, W) planes): its variance in px^2,
    and that estimate's standard error.

    Blurring by a Gaussian of variance v adds (v / 2) times the Laplacian to
    first order (the heat equation), so v is the least-squares fit of the
    difference of the planes to half the Laplacian of their mean, over a window.
    The texture cancels; v is negative where `blurrier` is in fact the sharper.
    The standard error is the fit's, its residuals taken as independent over the window.
    """
    return _fit_relative_blur(heat_equation_products(sharper, blurrier), window_px)


def heat_equation_products(sharper: torch.Tensor, blurrier: torch.Tensor) -> torch.Tensor:
    """(3, H, W): the Laplacian of the planes' mean (replicated border) L and their difference D, as
    L * D, L * L and D * D, the per-pixel terms of relative_blur_px2's fit."""
    mean = 0.5 * (sharper + blurrier)
    padded = F.pad(mean[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    laplacian = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4.0 * mean
    difference = blurrier - sharper
    return torch.stack([laplacian * difference, laplacian * laplacian, difference * difference])


def _fit_relative_blur(products: torch.Tensor, window_px: int,
                       over: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """relative_blur_px2 from heat_equation_products; `over` (optional, (H, W) bool): the window's sums
    run over these pixels only."""
    if over is not None:
        products = products * over.to(products.dtype)
    sums = box_mean(products, window_px)
    laplacian_energy = sums[1].clamp(min=1e-12)
    residual = (sums[2] - sums[0] ** 2 / laplacian_energy).clamp(min=0.0)
    return 2.0 * sums[0] / laplacian_energy, 2.0 * torch.sqrt(residual / laplacian_energy / window_px**2)


def same_side_blur_px2(products: list[torch.Tensor], pairs: "VertexPairs", pixels: torch.Tensor,
                       window_px: int) -> torch.Tensor:
    """(H, W): at `pixels`, the relative blur of their vertex's pair (relative_blur_px2's sign) fitted over
    the pixels of the window whose vertex lies in the same pair on the same side (0 elsewhere).
    products: heat_equation_products of each pair of neighbouring frames.

    A window across a depth edge takes in pixels in another blur configuration, whose blur between the
    two frames differs or runs the other way. Calibrating c on such fits while end_blur_px2 excludes them
    mismatched the two: seeds 1000-1019, 5-frame sim, dense AbsRel 0.0538 -> 0.0524, measured 0.0198 ->
    0.0188, simfit 0.0709 -> 0.0680 (seeds 2000-2009: sim 0.0744 -> 0.0730, simfit 0.0765 -> 0.0711);
    10-frame sim 0.0405 -> 0.0415. One mask per pair (sides mixed): 0.0521, but 10-frame 0.0425. It costs
    4-5 ms a 5-frame 240x320 stack, 10-12 ms a 10-frame one (one thread).
    """
    has_pair = torch.isfinite(pairs.step)
    blur_px2 = torch.zeros_like(products[0][0])
    for index, pair_products in enumerate(products):
        in_pair = has_pair & (pairs.pair == index)
        if not bool((pixels & in_pair).any()):
            continue
        for side in (in_pair & (pairs.sharper_sign > 0), in_pair & (pairs.sharper_sign < 0)):
            wanted = pixels & side
            if bool(wanted.any()):
                sums = box_mean(pair_products[:2] * side, window_px)
                blur_px2 = torch.where(wanted, 2.0 * sums[0] / sums[1].clamp(min=1e-12), blur_px2)
    return blur_px2


@dataclass(frozen=True)
class RelativeBlur:
    """Relative blur of each pair of neighbouring frames and the lens's blur rate, calibrated on a stack.

    blur_px2: (N - 1, H, W), pair k = frames (k, k + 1), positive where frame
    k is the sharper (relative_blur_px2); blur_error_px2: its standard error.
    rate_px2: c in v = c * ((s - d)^2 - d^2) for a pixel d diopters from the
    sharper frame of a pair s diopters apart. end_blur_px2: (2, H, W), the
    first and the last pair's blur fitted over the pixels sharpest in that end
    frame alone (end_frame_pairs, sharpest_at_end), for end_defocus_depth;
    end_blur_error_px2: its standard error, for end_defocus_error_d.
    """

    blur_px2: torch.Tensor
    blur_error_px2: torch.Tensor
    rate_px2: float
    end_blur_px2: torch.Tensor
    end_blur_error_px2: torch.Tensor

    @classmethod
    def calibrate(cls, fit: PeakFit, pairs: "VertexPairs", luma: torch.Tensor, min_confidence: float,
                  window_px: int = RELATIVE_BLUR_WINDOW_PX, pool: "BlurRates | None" = None) -> "RelativeBlur | None":
        """Blur of every pair, and c fitted (least squares through the origin) on the measured pixels
        that lie near the sharper frame of their pair (RELATIVE_BLUR_CALIBRATION_REACH), whose depth is
        known to about 4 %; None with fewer than RELATIVE_BLUR_MIN_CALIBRATION_PX of them or no positive c.
        Their blur is fitted over the pixels of their window in the same blur configuration
        (same_side_blur_px2), as end_blur_px2 is for the end frames' pixels.

        pairs: the fit's VertexPairs; luma: (N, H, W) luminance at the fit's size. With a `pool` (the
        same camera's and sweep's earlier stacks) c is the pool's, this stack's own included, and a stack
        that cannot calibrate itself takes the pool's c; None only while the pool has none.
        """
        count = luma.shape[0]
        if count < 3:
            return None
        calibration = (fit.confidence >= min_confidence) & (pairs.near_d < RELATIVE_BLUR_CALIBRATION_REACH * pairs.step)
        enough = int(calibration.sum()) >= RELATIVE_BLUR_MIN_CALIBRATION_PX
        if not enough and (pool is None or pool.rate_px2 is None):
            return None
        products = [heat_equation_products(luma[index], luma[index + 1]) for index in range(count - 1)]
        fits = [_fit_relative_blur(pair_products, window_px) for pair_products in products]
        blur_px2 = torch.stack([blur for blur, _ in fits])
        own_rate_px2 = None
        if enough:
            measured_blur = same_side_blur_px2(products, pairs, calibration, window_px)[calibration]
            measured_blur = measured_blur * pairs.sharper_sign[calibration]
            near_d = pairs.near_d[calibration]
            g = (pairs.step[calibration] - near_d) ** 2 - near_d**2
            own_rate_px2 = float((measured_blur * g).sum() / (g * g).sum().clamp(min=1e-12))
            if not (math.isfinite(own_rate_px2) and own_rate_px2 > 0):
                own_rate_px2 = None
        rate_px2 = own_rate_px2 if pool is None else pool.add(own_rate_px2)
        if rate_px2 is None:
            return None
        # A window across an end-of-sweep surface's outline would mix in the nearer surface, whose blur
        # runs the other way between the two frames.
        end_fits = [_fit_relative_blur(products[min(end, neighbour)], window_px, over=sharpest_at_end(fit, end))
                    for end, neighbour in end_frame_pairs(count)]
        return cls(blur_px2, torch.stack([error for _, error in fits]), rate_px2,
                   torch.stack([blur for blur, _ in end_fits]), torch.stack([error for _, error in end_fits]))

    def offset_from_sharper(self, pair: torch.Tensor, sharper_sign: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """(H, W) d = s / 2 - v / (2 c s) for each pixel's pair (index (H, W)), its sharper frame's sign, step."""
        blur = self.blur_px2.gather(0, pair[None])[0] * sharper_sign
        return step / 2 - blur / (2 * self.rate_px2 * step)


DEFAULT_BLUR_RATE_STACKS = 32
"""Stacks whose blur-rate calibrations BlurRates averages (1: each stack its own)."""
BLUR_RATE_POOL_KEYS = 8
"""Cameras and sweeps BlurRatePool keeps rates for (the least recently used dropped first)."""


class BlurRates:
    """Own blur rates c of the recent stacks of one camera and sweep; the rate is their mean.

    One stack's own calibration errs with its scene, since the vertices it rests
    on are off in each scene's own way. 5-frame simulated sweeps of one lens,
    seeds 1000-1019: own rates 0.95-1.40 px^2/D^2 (mean 1.25), while the rate
    that reads each scene's end-of-sweep pixels best is 1.20-1.30 in 14 of the
    20. What c is measured to be also depends on the sweep's step (the same
    lens: mean 1.25 over 5 frames, 1.85 over 10), hence one BlurRates per
    camera and sweep (BlurRatePool).
    """

    def __init__(self, max_stacks: int) -> None:
        self._rates_px2: deque[float] = deque(maxlen=max_stacks)

    def add(self, rate_px2: float | None) -> float | None:
        """Adds a stack's own rate (None: it had none) and returns the mean of the last max_stacks."""
        if rate_px2 is not None:
            self._rates_px2.append(rate_px2)
        return self.rate_px2

    @property
    def rate_px2(self) -> float | None:
        return sum(self._rates_px2) / len(self._rates_px2) if self._rates_px2 else None

    @property
    def stacks(self) -> int:
        return len(self._rates_px2)


class BlurRatePool:
    """BlurRates per camera and sweep (a hashable `key`), for the last `max_keys` keys used.

    Stacks of several sweeps may come interleaved (an evaluation scoring each
    scene under two protocols); each sweep keeps its own rates.
    """

    def __init__(self, max_stacks: int = DEFAULT_BLUR_RATE_STACKS, max_keys: int = BLUR_RATE_POOL_KEYS) -> None:
        if not (int(max_stacks) == max_stacks >= 1 and int(max_keys) == max_keys >= 1):
            raise ValueError(f"max_stacks and max_keys must be integers >= 1, got {max_stacks}, {max_keys}")
        self.max_stacks, self.max_keys = int(max_stacks), int(max_keys)
        self._by_key: OrderedDict[object, BlurRates] = OrderedDict()

    def for_key(self, key: object) -> BlurRates:
        rates = self._by_key.pop(key, None)
        if rates is None:
            rates = BlurRates(self.max_stacks)
        self._by_key[key] = rates
        while len(self._by_key) > self.max_keys:
            self._by_key.popitem(last=False)
        return rates


@dataclass(frozen=True)
class VertexPairs:
    """Per pixel (H, W): the pair of neighbouring frames its focus peak's vertex lies in.

    pair: index k of frames (k, k + 1); sharper_sign: +1 where the peak frame
    is k, -1 where it is k + 1; step: the pair's spacing in diopters (NaN where
    there is no vertex or no frame on its side); near_d: the vertex's distance
    from the peak frame, diopters; direction: sign of the other frame's diopters minus the peak's.
    """

    pair: torch.Tensor
    sharper_sign: torch.Tensor
    step: torch.Tensor
    near_d: torch.Tensor
    direction: torch.Tensor

    @classmethod
    def of(cls, fit: PeakFit, diopters: torch.Tensor) -> "VertexPairs":
        count = diopters.shape[0]
        measured_diopters = 1.0 / fit.depth_m
        peak = fit.peak_index.clamp(0, count - 1)
        peak_x = diopters.take(peak)  # take: 1.5 times faster than indexing here
        toward_next = (measured_diopters - peak_x) * (diopters.take((peak + 1).clamp(max=count - 1)) - peak_x) > 0
        other = torch.where(toward_next, peak + 1, peak - 1)
        has_pair = (other >= 0) & (other < count) & torch.isfinite(measured_diopters)
        other = other.clamp(0, count - 1)
        pair = torch.minimum(peak, other)
        offset_x = diopters.take(other) - peak_x
        step = torch.where(has_pair, offset_x.abs(), torch.nan)
        sharper_sign = torch.where(pair == peak, 1.0, -1.0)
        return cls(pair, sharper_sign, step, (measured_diopters - peak_x).abs(), torch.sign(offset_x))


PEAK_ERROR_PER_STEP_CUBED = 0.05
"""Modelled standard error of a focus peak's vertex, in diopters, per cubed step (in diopters) of the
pair it lies in: the parabola's model error grows fast with the step. Against relative blur's own
standard error it sets how defocus_blended_depth weighs the two. Measured pixels' AbsRel at half size,
seeds 1000-1009, for 0.025, 0.05, 0.15 (the peak alone): 5-frame simulated 0.0319, 0.0291, 0.0297
(0.0430); 10-frame 0.0182, 0.0185, 0.0204 (0.0182); NYU protocol at 0.8-6 m, 5 frames 0.0736, 0.0736,
0.0746 (0.0757)."""


def defocus_blended_depth(fit: PeakFit, pairs: VertexPairs, blur: RelativeBlur, diopters: torch.Tensor,
                          peak_error: float = PEAK_ERROR_PER_STEP_CUBED) -> tuple[torch.Tensor, torch.Tensor]:
    """PeakFit.depth_m with each vertex averaged with its depth from relative blur, by inverse variance, and
    that average's standard error in diopters (NaN where the vertex has no pair: depth_m is kept there).

    The pair is the peak frame and the frame on the vertex's side; relative blur
    gives d = s / 2 - v / (2 c s) from the peak frame (RelativeBlur), with the
    standard error of v over 2 c s. On 5-frame sweeps its error is smaller than
    the parabola's, on 10-frame ones larger; the weights follow the step.
    """
    safe_step = torch.nan_to_num(pairs.step, nan=1.0)
    from_blur = blur.offset_from_sharper(pairs.pair, pairs.sharper_sign, safe_step).clamp(min=0.0)
    from_blur = torch.minimum(from_blur, safe_step)
    blur_error = blur.blur_error_px2.gather(0, pairs.pair[None])[0] / (2 * blur.rate_px2 * safe_step)
    blur_weight = 1.0 / blur_error.clamp(min=1e-6) ** 2
    peak_weight = 1.0 / (peak_error * safe_step**3).clamp(min=1e-6) ** 2
    blended = (peak_weight * pairs.near_d + blur_weight * from_blur) / (peak_weight + blur_weight)
    peak_x = diopters.take(fit.peak_index.clamp(0, diopters.shape[0] - 1))
    depth_m = 1.0 / (peak_x + pairs.direction * blended)
    blended_here = torch.isfinite(pairs.step) & torch.isfinite(depth_m)
    error_d = torch.where(blended_here, (peak_weight + blur_weight).rsqrt(), torch.nan)
    return torch.where(blended_here, depth_m, fit.depth_m), error_d


def end_frame_pairs(count: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(end frame, its neighbour) for the first and the last frame of a `count`-frame sweep, in
    RelativeBlur.end_blur_px2's order."""
    return (0, 1), (count - 1, count - 2)


def sharpest_at_end(fit: PeakFit, end: int) -> torch.Tensor:
    """(H, W) bool: the pixels sharpest in frame `end` (0 or the last), which have an end-of-sweep bound."""
    return torch.isfinite(fit.end_depth_m) & (fit.peak_index == end)


def end_defocus_error_d(fit: PeakFit, blur: RelativeBlur, diopters: torch.Tensor) -> torch.Tensor:
    """(H, W) standard error in diopters of end_defocus_depth's offset from the end frame (end_blur_error_px2
    over 2 c s) at the pixels sharpest in an end frame (sharpest_at_end), NaN elsewhere."""
    count = diopters.shape[0]
    error_d = torch.full_like(fit.end_depth_m, torch.nan)
    for which, (end, neighbour) in enumerate(end_frame_pairs(count)):
        step = abs(float(diopters[neighbour]) - float(diopters[end]))
        error_d = torch.where(sharpest_at_end(fit, end), blur.end_blur_error_px2[which] / (2 * blur.rate_px2 * step),
                              error_d)
    return error_d


def end_defocus_depth(fit: PeakFit, blur: RelativeBlur, diopters: torch.Tensor) -> torch.Tensor:
    """PeakFit.end_depth_m re-estimated by depth from defocus between the end frame and its neighbour.

    A pixel sharpest in the last frame lies between that frame and the
    midpoint to its neighbour, and the three-frame parabola places it badly
    there: the third frame is defocused beyond where the focus curve follows
    the parabola (5-frame simulated sweeps, last two frames at 0.98 and
    0.2 D: AbsRel 0.32 before the fill, read towards the neighbour). Blur
    variance grows with the square of defocus in diopters, so a pixel d
    diopters from a frame and s - d from the next has relative blur
    v = c * ((s - d)^2 - d^2) between them (relative_blur_px2), whatever its
    texture; c is a constant of the lens (RelativeBlur.calibrate). Then
    d = s / 2 - v / (2 c s), kept in [0, s / 2]. 5-frame simulated stacks, seeds
    1000-1019: end-of-sweep pixels' AbsRel 0.096 (a band-energy ratio with
    its own calibration: 0.170; c known: 0.071). v is fitted over the pixels
    sharpest in the same end frame alone (RelativeBlur.end_blur_px2): dense
    AbsRel 0.0548 -> 0.0538 and delta1 0.947 -> 0.951 there (seeds 2000-2009:
    0.0753 -> 0.0744), for 1.6 ms at 240x320.
    """
    count = diopters.shape[0]
    refined = fit.end_depth_m.clone()
    for which, (end, neighbour) in enumerate(end_frame_pairs(count)):
        at_end = sharpest_at_end(fit, end)
        if not bool(at_end.any()):
            continue
        end_x, neighbour_x = float(diopters[end]), float(diopters[neighbour])
        step = abs(neighbour_x - end_x)
        end_blur_px2 = blur.end_blur_px2[which] * (1.0 if end < neighbour else -1.0)  # end frame the sharper
        offset = (step / 2 - end_blur_px2 / (2 * blur.rate_px2 * step)).clamp(0.0, step / 2)
        depth_m = 1.0 / (end_x + offset * (1.0 if neighbour_x > end_x else -1.0))
        refined = torch.where(at_end, depth_m, refined)
    return refined


def flat_run_end_depth(fit: PeakFit, focus: torch.Tensor, blur: RelativeBlur, diopters: torch.Tensor,
                       blur_sigma_px_per_diopter: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) depth (m) of the end-of-sweep pixels whose focus curve stays at its peak (within
    FLAT_END_TOLERANCE) over two or more frames from the end, and (H, W) bool: which pixels those are.

    Frames that look alike are all in focus, so the relative blur between the
    last two is 0 and end_defocus_depth reads the middle of their step,
    though the pixel may lie anywhere where all of them are in focus. The first
    frame past the run is blurred, by a Gaussian of variance
    (k x)^2 for a pixel x diopters from its focus, k = blur_sigma_px_per_diopter
    (a constant of the lens, at the planes' scale); its relative blur against
    the run's edge frame gives x. Under the NYU protocol the last frames of a
    sweep linear in metres are exactly alike over much of the far range; there
    k is known (NYU_PROTOCOL_SETTINGS). The stack's own calibrated rate does not
    serve: it is fitted where the heat equation underestimates large, capped
    blur (seeds 1000-1019, 5-frame NYU protocol at 0.8-6 m: 0.0845 with it
    against 0.0778 with k; without this 0.0830). The depth is kept within the
    run's span. `focus`: the (N, H, W) curves the fit was made on.
    """
    count = focus.shape[0]
    depth_m = torch.full_like(fit.end_depth_m, torch.nan)
    at_any = torch.zeros_like(depth_m, dtype=torch.bool)
    if count < 3 or not blur_sigma_px_per_diopter > 0:
        return depth_m, at_any
    relative = focus / focus.amax(0).clamp(min=1e-12)
    alike = relative >= 1.0 - FLAT_END_TOLERANCE
    rate_px2 = blur_sigma_px_per_diopter**2
    for end in (0, count - 1):
        inward = 1 if end == 0 else -1
        at_end = sharpest_at_end(fit, end)
        if not bool(at_end.any()):
            continue
        # edge: the last frame of the run of frames alike that starts at the end frame.
        edge = torch.full_like(fit.peak_index, end)
        unbroken = alike[end].clone()
        for index in range(end + inward, count - 1 - end, inward):  # stops one short of the far end
            unbroken &= alike[index]
            edge = torch.where(unbroken, index, edge)
        run = at_end & (edge != end)
        if not bool(run.any()):
            continue
        blurred = edge + inward  # the first frame past the run, which is blurred
        pair = torch.minimum(edge, blurred)
        # blur_px2[k] is positive where frame k is the sharper: the edge frame is pair k at the first end
        # (inward +1) and pair k + 1 at the last (inward -1).
        blur_px2 = (blur.blur_px2.gather(0, pair[None])[0] * inward).clamp(min=0.0)
        offset_d = torch.sqrt(blur_px2 / rate_px2)
        blurred_x, edge_x, end_x = diopters.take(blurred), diopters.take(edge), diopters[end]
        x = blurred_x + torch.sign(edge_x - blurred_x) * offset_d
        x = torch.clamp(x, torch.minimum(edge_x, end_x), torch.maximum(edge_x, end_x))
        depth_m = torch.where(run, 1.0 / x, depth_m)
        at_any |= run
    return depth_m, at_any
