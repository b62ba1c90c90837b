"""Synthetic images and focal stacks that several tests build."""

from __future__ import annotations

import cv2
import numpy as np

from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.stack.focal_stack import FocalStack


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Float32 grey texture in [20, 240] with structure at 64, 16 and 4 px scales."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width), np.float32)
    for cell_px in (64, 16, 4):
        coarse = rng.random((height // cell_px + 2, width // cell_px + 2)).astype(np.float32)
        size = (width + 2 * cell_px, height + 2 * cell_px)
        upsampled = cv2.resize(coarse, size, interpolation=cv2.INTER_CUBIC)
        image += upsampled[cell_px:cell_px + height, cell_px:cell_px + width]
    return (image - image.min()) / (image.max() - image.min()) * 220 + 20


WORKING = (96, 128)
"""(height, width) px the HybridDepth backend tests run the network at."""
DISTANCES_M = np.array([0.4, 0.7, 1.2, 2.0])


def textured_stack(height, width, seed=0, **fields):
    """Frames of 4x4 px random colour blocks, darker at each focus step: network-shaped input, not a physical stack."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    frames = np.stack([np.kron(base, np.ones((4, 4, 1), dtype=np.uint8)) // (k + 1) for k in range(len(DISTANCES_M))])
    intrinsics = CameraIntrinsics(fx=100.0, fy=100.0, cx=width / 2, cy=height / 2, width=width, height=height)
    return FocalStack(frames=frames, focus_distances_m=DISTANCES_M.copy(), intrinsics=intrinsics, **fields)
