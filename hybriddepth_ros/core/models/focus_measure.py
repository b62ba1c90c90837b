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
is flat; a sweep of two frames has no interior frame and gives no depth.

Confidence in [0, 1] is the product of three factors: how far the peak rises
above the rest of the curve (1 - mean/peak; near 0 on textureless surfaces,
where every frame looks alike), whether the curve has a single peak (a second
one appears at depth edges, where the window sees two surfaces, and on
periodic texture), and how much texture signal the peak has over sensor noise.
"""

from __future__ import annotations

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
        """(N, H, W) window-averaged sum-modified Laplacian of (N, H, W) luminance."""
        padded = F.pad(luma[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
        centre = padded[:, 1:-1, 1:-1]
        modified_laplacian = (
            2 * centre - padded[:, 1:-1, :-2] - padded[:, 1:-1, 2:]
        ).abs() + (2 * centre - padded[:, :-2, 1:-1] - padded[:, 2:, 1:-1]).abs()
        half = self.window_px // 2
        if half == 0:
            return modified_laplacian
        padded = F.pad(modified_laplacian[:, None], (half,) * 4, mode="replicate")
        return F.avg_pool2d(padded, self.window_px, stride=1)[:, 0]

    def peak_depth(self, focus: torch.Tensor, diopters: torch.Tensor):
        """Depth (m, NaN without an interior peak) and confidence from (N, H, W) focus curves."""
        count = focus.shape[0]
        peak = focus.argmax(dim=0)
        peak_value = focus.gather(0, peak[None])[0]
        if count < 3:
            return torch.full_like(peak_value, torch.nan), torch.zeros_like(peak_value)
        relative = focus / peak_value.clamp(min=1e-12)
        rise = 1.0 - relative.mean(dim=0)
        inner = peak.clamp(1, count - 2)
        y0, y1, y2 = (
            self._box_cox(relative.gather(0, (inner + k)[None])[0]) for k in (-1, 0, 1)
        )
        x0, x1, x2 = (diopters[inner + k] for k in (-1, 0, 1))
        vertex = _parabola_vertex(x0, y0, x1, y1, x2, y2)
        has_peak = (peak > 0) & (peak < count - 1) & (rise > 0)
        depth_m = torch.where(has_peak, 1.0 / vertex, torch.nan)

        # A single clean peak over N frames leaves the mean well below the peak;
        # scale so that a rise of 0.5 or more counts as fully peaked.
        peakedness = (rise / 0.5).clamp(0.0, 1.0)
        unimodal = (1.0 - _second_peak(relative, peak) / self.second_peak_tolerance).clamp(0.0, 1.0)
        signal = peak_value / (peak_value + self.noise_floor)
        return depth_m, peakedness * unimodal * signal

    def _box_cox(self, relative_focus: torch.Tensor) -> torch.Tensor:
        values = relative_focus.clamp(min=1e-6)
        if self.curve_exponent == 0:
            return torch.log(values)
        return (values**self.curve_exponent - 1.0) / self.curve_exponent


def luminance(frames_rgb: torch.Tensor) -> torch.Tensor:
    """(N, H, W) luminance from (N, 3, H, W) RGB, in the frames' own scale."""
    weights = torch.tensor(LUMA_WEIGHTS, device=frames_rgb.device, dtype=frames_rgb.dtype)
    return torch.einsum("nchw,c->nhw", frames_rgb, weights)


def _second_peak(relative: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """How far (relative to the main peak) a (N, H, W) curve rises again after falling from its peak.

    Walking away from the peak, a single-peaked curve only falls; the largest
    rise over the lowest value passed so far measures a second peak, as at depth
    edges where the window sees two surfaces.
    """
    index = torch.arange(relative.shape[0], device=relative.device)[:, None, None]
    beyond = torch.full_like(relative, torch.inf)
    right = torch.where(index >= peak[None], relative, beyond).cummin(dim=0).values
    left = torch.where(index <= peak[None], relative, beyond).flip(0).cummin(dim=0).values.flip(0)
    lowest_so_far = torch.minimum(right, left)
    return (relative - lowest_so_far).amax(dim=0)


def _parabola_vertex(x0, y0, x1, y1, x2, y2) -> torch.Tensor:
    """Abscissa of the parabola through three points, clamped to [min(x0, x2), max(x0, x2)]."""
    d10, d12 = x1 - x0, x1 - x2
    numerator = d10**2 * (y1 - y2) - d12**2 * (y1 - y0)
    denominator = d10 * (y1 - y2) - d12 * (y1 - y0)
    safe = denominator.abs() > 1e-12
    vertex = x1 - 0.5 * numerator / torch.where(safe, denominator, torch.ones_like(denominator))
    vertex = torch.where(safe, vertex, x1)
    return torch.minimum(torch.maximum(vertex, torch.minimum(x0, x2)), torch.maximum(x0, x2))
