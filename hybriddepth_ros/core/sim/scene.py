"""Procedural RGB-D scenes for the simulated camera: textured planes at known depths.

A scene is a back wall and a ground plane with several rectangles and discs in
front of them, some slanted, occluding each other. Plane depth is exact: the
inverse depth (diopters) of a plane is affine in image coordinates, so each
surface is an affine diopter map and the nearest surface wins per pixel.
Most surfaces carry multi-scale texture (noise, checker, stripes); some are one
flat colour, where a focus sweep carries no depth cue.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

TEXTURES = ("noise", "checker", "stripes")


@dataclass(frozen=True)
class Scene:
    """rgb: (H, W, 3) uint8 sRGB; depth_m: (H, W) float32 metres (z, optical axis);
    textureless_mask: (H, W) bool, pixels of flat-colour surfaces."""

    rgb: np.ndarray
    depth_m: np.ndarray
    textureless_mask: np.ndarray


def make_scene(
    seed: int = 0,
    height: int = 240,
    width: int = 320,
    *,
    near_m: float = 0.3,
    far_m: float = 5.0,
    num_objects: int = 6,
    num_textureless: int = 1,
) -> Scene:
    """A reproducible scene (same arguments -> identical arrays) with depths in [near_m, far_m].

    num_textureless of the `num_objects` foreground objects are flat-coloured;
    the wall, the ground and the other objects are textured.
    """
    if not 0 < near_m < far_m:
        raise ValueError(f"need 0 < near_m < far_m, got {near_m}, {far_m}")
    if not 0 <= num_textureless <= num_objects:
        raise ValueError(f"num_textureless must be in 0..{num_objects}, got {num_textureless}")
    if height < 8 or width < 8:
        raise ValueError(f"scene of {width}x{height} is too small")
    rng = np.random.default_rng(seed)
    near_d, far_d = 1.0 / near_m, 1.0 / far_m
    span_d = near_d - far_d
    # Normalised image coordinates: u across [-0.5, 0.5], v scaled by the same unit.
    u = (np.arange(width) + 0.5) / width - 0.5
    v = ((np.arange(height) + 0.5) - height / 2.0) / width
    u, v = np.meshgrid(u, v)
    v_bottom = height / (2.0 * width)

    # Back wall: far, gently slanted.
    wall_d = far_d + span_d * rng.uniform(0.02, 0.12)
    wall = wall_d + span_d * (rng.uniform(-0.04, 0.04) * u + rng.uniform(-0.03, 0.03) * v)
    wall = np.maximum(wall, far_d)
    # Ground: 1/z rises linearly below the horizon, reaching its nearest at the image bottom.
    horizon_v = rng.uniform(-0.1, 0.05) * v_bottom
    ground_near_d = 1.0 / rng.uniform(near_m, 2.0 * near_m)
    ground = ground_near_d * (v - horizon_v) / (v_bottom - horizon_v)
    ground += 0.05 * span_d * rng.uniform(-1.0, 1.0) * u * (v > horizon_v)

    diopters = np.maximum(wall, ground)
    surface_id = np.where(ground > wall, 1, 0)
    textured = {0: True, 1: True}

    flat_indices = set(rng.choice(num_objects, size=num_textureless, replace=False).tolist())
    for index in range(num_objects):
        object_d = rng.uniform(far_d + 0.15 * span_d, near_d - 0.12 * span_d)
        centre_u, centre_v = rng.uniform(-0.4, 0.4), rng.uniform(-0.8, 0.8) * v_bottom
        half_size = rng.uniform(0.06, 0.2)
        if rng.random() < 0.5:
            inside = (np.abs(u - centre_u) < half_size) & (
                np.abs(v - centre_v) < half_size * rng.uniform(0.5, 1.5)
            )
        else:
            inside = (u - centre_u) ** 2 + (v - centre_v) ** 2 < half_size**2
        slant = rng.uniform(-0.3, 0.3, size=2) * span_d * (rng.random() < 0.6)
        plane = object_d + slant[0] * (u - centre_u) + slant[1] * (v - centre_v)
        visible = inside & (plane > diopters)
        diopters = np.where(visible, plane, diopters)
        surface_id = np.where(visible, index + 2, surface_id)
        textured[index + 2] = index not in flat_indices

    depth_m = (1.0 / np.clip(diopters, far_d, near_d)).astype(np.float32)
    rgb = np.zeros((height, width, 3), dtype=np.float64)
    textureless = np.zeros((height, width), dtype=bool)
    for sid, has_texture in textured.items():
        mask = surface_id == sid
        if not mask.any():
            continue
        dark, bright = _colour_pair(rng)
        if has_texture:
            pattern = _texture(rng, height, width)
            rgb[mask] = dark + (bright - dark) * pattern[mask][:, None]
        else:
            rgb[mask] = (dark + bright) / 2.0
            textureless |= mask
    return Scene(
        rgb=np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8),
        depth_m=depth_m,
        textureless_mask=textureless,
    )


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark and a bright colour, far enough apart in brightness for visible texture."""
    hue = rng.uniform(0.4, 1.0, size=3)
    return hue * rng.uniform(0.05, 0.25), hue * rng.uniform(0.8, 1.0)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A (H, W) pattern in [0, 1]: one of TEXTURES mixed with multi-scale noise."""
    noise = _multiscale_noise(rng, height, width)
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    if kind == "noise":
        return noise
    angle = rng.uniform(0.0, np.pi)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    along = cols * np.cos(angle) + rows * np.sin(angle)
    across = -cols * np.sin(angle) + rows * np.cos(angle)
    period_px = rng.uniform(4.0, 16.0)
    if kind == "checker":
        base = (np.floor(along / period_px) + np.floor(across / period_px)) % 2
    else:
        base = 0.5 + 0.5 * np.sin(2.0 * np.pi * along / period_px)
    return 0.6 * base + 0.4 * noise


def _multiscale_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random grids upsampled from periods of 2 to 32 pixels, fine ones weighted most, scaled to [0, 1]."""
    total = np.zeros((height, width), dtype=np.float64)
    for period_px, weight in ((2, 1.0), (4, 1.0), (8, 0.8), (16, 0.6), (32, 0.5)):
        grid = rng.random((height // period_px + 2, width // period_px + 2))
        upsampled = cv2.resize(
            grid, (grid.shape[1] * period_px, grid.shape[0] * period_px), interpolation=cv2.INTER_CUBIC
        )
        total += weight * upsampled[:height, :width]
    low, high = total.min(), total.max()
    return (total - low) / max(high - low, 1e-9)
