"""Thin-lens defocus: the circle of confusion and a layered renderer of focal stacks from RGB-D.

The renderer splits the scene into depth layers (evenly spaced in diopters,
where blur is linear), blurs each layer's colour and coverage with the point
spread function of that layer's circle of confusion, and composites the layers
back to front. A defocused foreground edge therefore spreads over whatever lies
behind it, while a sharp foreground is never covered by blurred background, as
with a real lens; a per-pixel variable blur would get both of those wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from ..stack.camera import ThinLens

PSF_SHAPES = ("disc", "gaussian")
_SRGB_GAMMA = 2.2


def circle_of_confusion_px(depth_m, focus_distance_m: float, lens: ThinLens):
    """Blur-circle diameter in pixels of a point at `depth_m` with the lens focused at `focus_distance_m`.

    Thin lens: c = A * f * |d - s| / (d * (s - f)), with aperture A = f / N,
    divided by the pixel pitch. Accepts scalars or arrays of depths.
    """
    lens.validate()
    focal_m = lens.focal_length_m
    if not focus_distance_m > focal_m:
        raise ValueError(
            f"focus distance {focus_distance_m} m must exceed the focal length {focal_m} m"
        )
    depth = np.asarray(depth_m, dtype=np.float64)
    coc_m = (
        lens.aperture_diameter_m
        * focal_m
        * np.abs(depth - focus_distance_m)
        / (depth * (focus_distance_m - focal_m))
    )
    coc_px = coc_m / lens.pixel_pitch_m
    return float(coc_px) if coc_px.ndim == 0 else coc_px


def coc_px_per_diopter(focus_distance_m: float, lens: ThinLens) -> float:
    """How many pixels the blur circle grows per diopter of defocus at this focus distance.

    From the formula above, c = A*f*s / ((s - f) * pitch) * |1/s - 1/d|: blur is
    linear in diopters with this slope.
    """
    focal_m = lens.focal_length_m
    return (
        lens.aperture_diameter_m
        * focal_m
        * focus_distance_m
        / ((focus_distance_m - focal_m) * lens.pixel_pitch_m)
    )


def render_defocus(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    focus_distance_m: float,
    lens: ThinLens,
    **options,
) -> np.ndarray:
    """One frame of the scene seen with the lens focused at `focus_distance_m`.

    `rgb` is (H, W, 3) uint8, or float in [0, 1]; the frame comes back in the same
    kind (uint8, or float32 in [0, 1]). Options as for `render_focal_stack_float`.
    """
    frames = render_focal_stack_float(rgb, depth_m, [focus_distance_m], lens, **options)
    return quantise_frames(frames)[0] if np.asarray(rgb).dtype == np.uint8 else frames[0]


def render_focal_stack(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    focus_distances_m: Sequence[float],
    lens: ThinLens,
    **options,
) -> np.ndarray:
    """(N, H, W, 3) uint8 frames, one per focus distance. Options as for `render_focal_stack_float`."""
    return quantise_frames(render_focal_stack_float(rgb, depth_m, focus_distances_m, lens, **options))


def quantise_frames(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] -> uint8, rounded to the nearest level."""
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)


def add_sensor_noise(frames: np.ndarray, noise_std: float, rng: np.random.Generator) -> np.ndarray:
    """Float frames in [0, 1] plus Gaussian noise of `noise_std` 8-bit levels, clipped to [0, 1]."""
    noise = rng.normal(0.0, noise_std / 255.0, size=frames.shape).astype(np.float32)
    return np.clip(frames + noise, 0.0, 1.0)


def render_focal_stack_float(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    focus_distances_m: Sequence[float],
    lens: ThinLens,
    *,
    psf: str = "disc",
    layer_step_px: float = 0.25,
    noise_std: float = 0.0,
    seed: int | None = None,
    linear_light: bool = True,
) -> np.ndarray:
    """(N, H, W, 3) float32 frames in [0, 1] of an RGB-D scene, one per focus distance.

    rgb: (H, W, 3) uint8 or float in [0, 1] (sRGB); depth_m: (H, W), finite, > 0.
    psf: 'disc' (pillbox of diameter CoC, anti-aliased; a real aperture) or
      'gaussian' (sigma = CoC / 2; not the paper's NYU protocol, which is core/sim/nyu_protocol.py).
    layer_step_px: depth-layer spacing as the largest blur-size step between
      neighbouring layers; each pixel is split linearly between its two nearest
      layers, so blur varies smoothly along slanted surfaces.
    noise_std: sensor noise, Gaussian, in 8-bit digital numbers, drawn from
      `seed` (independent per frame).
    linear_light: blur in linear intensity (sRGB decoded with gamma 2.2), as light adds.
    """
    if psf not in PSF_SHAPES:
        raise ValueError(f"psf must be one of {PSF_SHAPES}, got '{psf}'")
    if not layer_step_px > 0:
        raise ValueError(f"layer_step_px must be > 0, got {layer_step_px}")
    colour = _as_unit_float(rgb)
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.shape != colour.shape[:2]:
        raise ValueError(f"depth shape {depth.shape} != image shape {colour.shape[:2]}")
    if not np.all(np.isfinite(depth)) or np.any(depth <= 0):
        raise ValueError("depth must be finite and > 0 m everywhere")
    focus_m = np.asarray(focus_distances_m, dtype=np.float64).reshape(-1)
    if focus_m.size == 0:
        raise ValueError("no focus distances")

    if linear_light:
        colour = colour**_SRGB_GAMMA
    diopters = 1.0 / depth
    slope_px = max(coc_px_per_diopter(float(s), lens) for s in focus_m)
    layer_diopters, layer_alpha = _split_into_layers(diopters, layer_step_px / slope_px)
    height, width = depth.shape
    # Premultiplied colour and coverage of each layer, far layers first, kept as
    # (h, w, 4) crops to the bounding box of its pixels: most layers are small.
    layers = []
    for diopter, alpha in zip(layer_diopters, layer_alpha):
        rows = np.flatnonzero(alpha.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(alpha.any(axis=0))
        box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
        crop = (slice(box[0], box[1]), slice(box[2], box[3]))
        premultiplied = np.concatenate(
            [alpha[crop][..., None] * colour[crop], alpha[crop][..., None]], axis=2
        )
        layers.append((1.0 / diopter, box, premultiplied.astype(np.float32)))

    frames = np.empty((focus_m.size, height, width, 3), dtype=np.float32)
    for index, focus_distance_m in enumerate(focus_m):
        composite = np.zeros((height, width, 4), dtype=np.float32)
        for layer_depth_m, box, premultiplied in layers:
            coc_px = circle_of_confusion_px(layer_depth_m, float(focus_distance_m), lens)
            rows, cols, blurred = _blur_layer(
                premultiplied, box, (height, width), _psf_kernel(coc_px, psf)
            )
            # "Over" operator on premultiplied colour: nearer layers cover farther ones.
            target = composite[rows, cols]
            target *= 1.0 - np.clip(blurred[..., 3:4], 0.0, 1.0)
            target += blurred
        # Normalising by total coverage fills what a layer split leaves uncovered
        # (e.g. behind a foreground object, where the background is unknown).
        image = np.clip(composite[..., :3] / np.maximum(composite[..., 3:4], 1e-6), 0.0, 1.0)
        frames[index] = image ** (1.0 / _SRGB_GAMMA) if linear_light else image
    return add_sensor_noise(frames, noise_std, np.random.default_rng(seed)) if noise_std > 0 else frames


def _blur_layer(premultiplied: np.ndarray, box, image_shape, kernel: np.ndarray):
    """Convolve a layer, given as its bounding-box crop, with `kernel`.

    Returns the (rows, cols) slices of the image that the blurred layer covers
    and the blurred values there. Beyond the image border the layer is extended
    by its edge pixels (replicate), so frames do not darken at the borders.
    """
    height, width = image_shape
    radius = kernel.shape[0] // 2
    top, bottom, left, right = box
    if radius == 0:
        return slice(top, bottom), slice(left, right), premultiplied * kernel[0, 0]
    out_top, out_bottom = max(top - radius, 0), min(bottom + radius, height)
    out_left, out_right = max(left - radius, 0), min(right + radius, width)
    # Index the crop framed by one row/column of zeros: image pixels outside the
    # box read a zero, positions beyond the image read the nearest image pixel.
    framed = np.pad(premultiplied, ((1, 1), (1, 1), (0, 0)))
    source_rows = np.arange(out_top - radius, out_bottom + radius).clip(0, height - 1) - top + 1
    source_cols = np.arange(out_left - radius, out_right + radius).clip(0, width - 1) - left + 1
    source = framed[
        source_rows.clip(0, bottom - top + 1)[:, None], source_cols.clip(0, right - left + 1)[None, :]
    ]
    blurred = cv2.filter2D(source, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    return (
        slice(out_top, out_bottom),
        slice(out_left, out_right),
        blurred[radius:-radius, radius:-radius],
    )


def _as_unit_float(rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def _split_into_layers(diopters: np.ndarray, step_diopter: float):
    """Layer diopters (ascending: far first) and (L, H, W) float32 coverage.

    Each pixel's weight goes to its two nearest layers, linearly in diopters.
    """
    lowest, highest = float(diopters.min()), float(diopters.max())
    count = max(1, math.ceil((highest - lowest) / step_diopter) + 1)
    layer_diopters = np.linspace(lowest, highest, count) if count > 1 else np.array([lowest])
    alpha = np.zeros((count,) + diopters.shape, dtype=np.float32)
    if count == 1:
        alpha[0] = 1.0
        return layer_diopters, alpha
    position = (diopters - lowest) / (layer_diopters[1] - layer_diopters[0])
    lower = np.clip(np.floor(position).astype(np.int64), 0, count - 2)
    upper_weight = np.clip(position - lower, 0.0, 1.0)
    rows, cols = np.indices(diopters.shape)
    alpha[lower, rows, cols] = 1.0 - upper_weight
    alpha[lower + 1, rows, cols] += upper_weight
    return layer_diopters, alpha


def _psf_kernel(coc_px: float, psf: str) -> np.ndarray:
    """Normalised, odd-sized float32 PSF for a blur circle of `coc_px` pixels diameter."""
    if psf == "disc":
        # Coverage of each pixel by a disc of radius c/2, anti-aliased over one pixel;
        # below one pixel diameter it is a unit impulse.
        radius_px = math.ceil(max(coc_px / 2.0 - 0.5, 0.0))
        offsets = np.arange(-radius_px, radius_px + 1)
        distance = np.hypot(offsets[:, None], offsets[None, :])
        kernel = np.clip(coc_px / 2.0 + 0.5 - distance, 0.0, 1.0)
    else:
        sigma_px = coc_px / 2.0
        radius_px = math.ceil(3.0 * sigma_px)
        offsets = np.arange(-radius_px, radius_px + 1)
        distance = np.hypot(offsets[:, None], offsets[None, :])
        kernel = np.exp(-(distance**2) / (2.0 * max(sigma_px, 1e-3) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)
