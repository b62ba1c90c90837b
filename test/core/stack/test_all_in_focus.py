"""All-in-focus composite: each half of the scene sharp in a different frame."""

import cv2
import numpy as np
import pytest

from hybriddepth_ros.core.stack.all_in_focus import all_in_focus
from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.stack.focal_stack import FocalStack, FocalStackError
from support.stacks import textured_image

HEIGHT, WIDTH = 120, 160
DEFOCUS_SIGMA_PX = 3.0
SEAM_MARGIN_PX = 8


def laplacian_energy(image_rgb: np.ndarray) -> float:
    gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(cv2.Laplacian(gray, cv2.CV_32F) ** 2))


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def split_focus_stack():
    """Frame 0 sharp on the left half, frame 1 on the right, frame 2 blurred everywhere."""
    sharp = textured_image(HEIGHT, WIDTH, seed=3)
    blurred = cv2.GaussianBlur(sharp, (0, 0), DEFOCUS_SIGMA_PX)
    left = np.zeros((HEIGHT, WIDTH), dtype=bool)
    left[:, : WIDTH // 2] = True
    frames = np.stack([rgb(np.where(left, sharp, blurred)), rgb(np.where(left, blurred, sharp)), rgb(blurred)])
    intrinsics = CameraIntrinsics(150.0, 150.0, (WIDTH - 1) / 2, (HEIGHT - 1) / 2, WIDTH, HEIGHT)
    stack = FocalStack(frames, np.array([0.4, 0.8, 1.6]), intrinsics, registered=True)
    return stack, rgb(sharp)


def test_composite_is_sharper_than_every_frame_and_close_to_the_sharp_scene(split_focus_stack):
    stack, sharp = split_focus_stack
    composite = all_in_focus(stack)
    assert composite.shape == (HEIGHT, WIDTH, 3) and composite.dtype == np.uint8
    best_frame_energy = max(laplacian_energy(frame) for frame in stack.frames)
    assert laplacian_energy(composite) > 1.5 * best_frame_energy
    assert laplacian_energy(composite) > 0.9 * laplacian_energy(sharp)
    away_from_seam = np.ones((HEIGHT, WIDTH), dtype=bool)
    away_from_seam[:, WIDTH // 2 - SEAM_MARGIN_PX: WIDTH // 2 + SEAM_MARGIN_PX] = False
    error = np.abs(composite.astype(np.float32) - sharp)[away_from_seam]
    assert error.mean() < 1.0, error.mean()
    frame_error = np.abs(stack.frames[0].astype(np.float32) - sharp).mean()
    assert np.abs(composite.astype(np.float32) - sharp).mean() < 0.3 * frame_error


def test_exposure_change_between_frames_is_evened_out(split_focus_stack):
    stack, sharp = split_focus_stack
    darker = stack.frames.copy()
    darker[1] = np.rint(darker[1] * 0.85).astype(np.uint8)
    composite = all_in_focus(FocalStack(darker, stack.focus_distances_m, stack.intrinsics))
    right_half = np.s_[:, WIDTH // 2 + SEAM_MARGIN_PX:]
    assert abs(composite[right_half].mean() - sharp[right_half].mean()) < 3.0
    assert abs(darker[1][right_half].mean() - sharp[right_half].mean()) > 15.0


def test_pixels_outside_valid_mask_come_from_the_reference(split_focus_stack):
    stack, _ = split_focus_stack
    valid = np.ones((HEIGHT, WIDTH), dtype=bool)
    valid[:, -20:] = False
    masked = FocalStack(stack.frames, stack.focus_distances_m, stack.intrinsics, reference_index=2, valid_mask=valid)
    composite = all_in_focus(masked)
    np.testing.assert_array_equal(composite[:, -20:], stack.frames[2][:, -20:])
    assert np.abs(composite[:, :60].astype(int) - stack.frames[0][:, :60]).max() <= 1


def test_unregistered_stack_is_refused(split_focus_stack):
    stack, _ = split_focus_stack
    unaligned = FocalStack(stack.frames, stack.focus_distances_m, stack.intrinsics, registered=False)
    with pytest.raises(FocalStackError, match="register"):
        all_in_focus(unaligned)
