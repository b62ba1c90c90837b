"""All-in-focus composite of an aligned focal stack.

Every scene point is sharpest in the frame focused at its depth, so taking each
pixel from its sharpest frame gives an image sharp everywhere: a better input
for the relative-depth branch than any single frame of a shallow-focus stack.
"""

from __future__ import annotations

import cv2
import numpy as np

from .focal_stack import FocalStack, FocalStackError


def all_in_focus(
    stack: FocalStack,
    focus_window_sigma_px: float = 4.0,
    selection_sigma_px: float = 2.0,
    switch_ratio: float = 2.0,
) -> np.ndarray:
    """(H, W, 3) uint8 composite taking each pixel from the frame where it is sharpest.

    Sharpness is the squared Laplacian averaged over a Gaussian window of
    `focus_window_sigma_px` (a single pixel's Laplacian is mostly noise). The
    per-pixel choice of frame is then softened with a Gaussian of
    `selection_sigma_px`, so frames blend over a few pixels at depth edges
    instead of leaving seams. A pixel leaves the reference frame only where
    another frame is `switch_ratio` times sharper: on blank walls all frames
    are equally (un)sharp and picking by noise would patch together the small
    exposure differences between frames. Those differences (phones re-expose
    between shots) are also removed before blending: each frame's colour
    channels are scaled to the reference's means. Frames must be aligned (`registered`); pixels
    outside `valid_mask` come from the reference frame, since other frames
    hold only replicated borders there. Memory stays O(H*W): frames are
    processed one at a time.
    """
    stack.validate()
    if not stack.registered:
        raise FocalStackError("all_in_focus needs an aligned stack: register it first (registered=False)")
    if focus_window_sigma_px <= 0 or selection_sigma_px < 0 or switch_ratio < 1:
        raise ValueError(
            f"need focus_window_sigma_px > 0, selection_sigma_px >= 0 and switch_ratio >= 1, got "
            f"{focus_window_sigma_px}, {selection_sigma_px}, {switch_ratio}"
        )
    ref = stack.reference_index
    best_energy = switch_ratio * focus_energy(stack.reference_frame, focus_window_sigma_px)
    sharpest_index = np.full((stack.height, stack.width), ref, dtype=np.int32)
    for index, frame in enumerate(stack.frames):
        if index == ref:
            continue
        energy = focus_energy(frame, focus_window_sigma_px)
        sharper = energy > best_energy
        best_energy[sharper] = energy[sharper]
        sharpest_index[sharper] = index

    valid = np.ones((stack.height, stack.width), dtype=bool) if stack.valid_mask is None else stack.valid_mask
    reference_means = stack.reference_frame[valid].mean(axis=0)
    composite = np.zeros((stack.height, stack.width, 3), dtype=np.float32)
    for index, frame in enumerate(stack.frames):
        weight = (sharpest_index == index).astype(np.float32)
        if not weight.any():
            continue
        if selection_sigma_px > 0:
            weight = cv2.GaussianBlur(weight, (0, 0), selection_sigma_px, borderType=cv2.BORDER_REFLECT)
        exposure_gain = (reference_means / np.maximum(frame[valid].mean(axis=0), 1.0)).astype(np.float32)
        composite += weight[..., None] * (frame.astype(np.float32) * exposure_gain)
    if stack.valid_mask is not None:
        composite[~stack.valid_mask] = stack.reference_frame[~stack.valid_mask]
    return np.clip(np.rint(composite), 0, 255).astype(np.uint8)


def focus_energy(frame_rgb: np.ndarray, window_sigma_px: float) -> np.ndarray:
    """Local sharpness (H, W) float32: squared Laplacian of the grey image, Gaussian-averaged."""
    gray = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    laplacian = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    return cv2.GaussianBlur(laplacian * laplacian, (0, 0), window_sigma_px, borderType=cv2.BORDER_REFLECT)
