"""Registration of hand-held focal stacks: synthetic stacks with known warps, refusals, the real Pixel stack."""

import cv2
import numpy as np
import pytest

from support import PIXEL_STACK
from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.stack.focal_stack import FocalStack, FocalStackError
from hybriddepth_ros.core.stack.registration import RegistrationError, apply_homography, register_stack
from support.stacks import textured_image

WIDTH, HEIGHT = 320, 240
BLUR_SIGMAS_PX = [0.5, 1.0, 1.6, 2.2, 2.8]



def similarity(scale: float, angle_deg: float, tx_px: float, ty_px: float) -> np.ndarray:
    """Zoom and rotation about the image centre, then a shift: focus breathing plus hand shake."""
    centre = np.array([(WIDTH - 1) / 2.0, (HEIGHT - 1) / 2.0])
    angle = np.deg2rad(angle_deg)
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    warp = np.eye(3)
    warp[:2, :2] = linear
    warp[:2, 2] = centre - linear @ centre + [tx_px, ty_px]
    return warp


def synthetic_stack(true_warps, blur_sigmas_px=BLUR_SIGMAS_PX, seed=0) -> FocalStack:
    """Frame i shows the reference view's pixel x at true_warps[i] @ x, blurred by its own sigma."""
    pad_px = 60
    scene = textured_image(HEIGHT + 2 * pad_px, WIDTH + 2 * pad_px, seed)
    scene_from_reference = np.array([[1.0, 0, pad_px], [0, 1.0, pad_px], [0, 0, 1.0]])
    frames = []
    for warp, sigma_px in zip(true_warps, blur_sigmas_px):
        frame = cv2.warpPerspective(
            scene, scene_from_reference @ np.linalg.inv(warp), (WIDTH, HEIGHT),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        )
        frame = cv2.GaussianBlur(frame, (0, 0), sigma_px)
        frames.append(np.repeat(np.clip(frame, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
    intrinsics = CameraIntrinsics(300.0, 300.0, (WIDTH - 1) / 2, (HEIGHT - 1) / 2, WIDTH, HEIGHT)
    distances_m = np.array([0.5, 0.65, 0.8, 0.95, 1.3])[: len(frames)]
    return FocalStack(np.stack(frames), distances_m, intrinsics, registered=False)


def mean_grid_error_px(estimated: np.ndarray, true: np.ndarray) -> float:
    xs, ys = np.meshgrid(np.linspace(0, WIDTH - 1, 5), np.linspace(0, HEIGHT - 1, 5))
    points = np.c_[xs.ravel(), ys.ravel()]
    displacement = apply_homography(estimated, points) - apply_homography(true, points)
    return float(np.linalg.norm(displacement, axis=1).mean())


BREATHING_WARPS = [
    np.eye(3),
    similarity(1.008, 0.3, 2.0, -1.5),
    similarity(1.016, -0.4, -3.0, 2.5),
    similarity(1.023, 0.5, 4.5, 3.0),
    similarity(1.030, -0.7, -5.0, -4.0),
]


def with_perspective(warp: np.ndarray, px: float, py: float) -> np.ndarray:
    tilted = warp.copy()
    tilted[2, :2] = [px, py]
    return tilted


HOMOGRAPHY_WARPS = BREATHING_WARPS[:3] + [
    with_perspective(BREATHING_WARPS[3], 4e-5, -3e-5),
    with_perspective(BREATHING_WARPS[4], -5e-5, 4e-5),
]


@pytest.mark.parametrize("motion, true_warps", [("affine", BREATHING_WARPS), ("homography", HOMOGRAPHY_WARPS)])
def test_recovers_known_warps_despite_different_blur(motion, true_warps):
    stack = synthetic_stack(true_warps)
    result = register_stack(stack, motion)
    errors_px = [mean_grid_error_px(est, true) for est, true in zip(result.warps, true_warps)]
    assert max(errors_px) <= 0.3, errors_px
    assert result.stack.registered and result.warps.shape == (5, 3, 3)
    assert np.all(result.correlation > 0.9)
    assert result.residual_px[0] == 0.0 and np.all(result.residual_px[1:] < 0.5), result.residual_px
    np.testing.assert_array_equal(result.stack.frames[0], stack.frames[0])
    assert stack.registered is False, "the input stack must not be modified"


def test_homography_frames_need_homography_motion():
    """An affine model cannot absorb perspective: the error that homography motion removes is real."""
    stack = synthetic_stack(HOMOGRAPHY_WARPS)
    affine_error_px = mean_grid_error_px(register_stack(stack, "affine").warps[4], HOMOGRAPHY_WARPS[4])
    assert affine_error_px > 0.5


def test_valid_mask_matches_true_coverage_at_borders():
    stack = synthetic_stack(BREATHING_WARPS)
    mask = register_stack(stack, "affine").stack.valid_mask
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    pixels = np.c_[xs.ravel(), ys.ravel()].astype(np.float64)
    expected = np.ones(HEIGHT * WIDTH, dtype=bool)
    for warp in BREATHING_WARPS:
        mapped = apply_homography(warp, pixels)
        expected &= (mapped[:, 0] >= 0) & (mapped[:, 0] <= WIDTH - 1)
        expected &= (mapped[:, 1] >= 0) & (mapped[:, 1] <= HEIGHT - 1)
    expected = expected.reshape(HEIGHT, WIDTH)
    kernel = np.ones((3, 3), np.uint8)
    surely_in = cv2.erode(expected.astype(np.uint8), kernel).astype(bool)
    maybe_in = cv2.dilate(expected.astype(np.uint8), kernel).astype(bool)
    assert mask.dtype == bool and mask.shape == (HEIGHT, WIDTH)
    assert np.all(mask[surely_in]) and not np.any(mask[~maybe_in])
    assert not mask[:, -1].any(), "frame 3 shifts 4.5 px right, so the last columns are empty"
    assert 0.8 < mask.mean() < 0.97


def test_unrelated_images_are_refused():
    rng = np.random.default_rng(7)
    stack = synthetic_stack(BREATHING_WARPS[:3], seed=1)
    stack.frames = rng.integers(0, 256, stack.frames.shape, dtype=np.uint8)
    with pytest.raises(RegistrationError, match="frame 1"):
        register_stack(stack)
    assert issubclass(RegistrationError, FocalStackError)


def test_different_scenes_are_refused():
    stack = synthetic_stack(BREATHING_WARPS[:3])
    stack.frames[2] = synthetic_stack([np.eye(3)], seed=5).frames[0]
    with pytest.raises(RegistrationError):
        register_stack(stack)


def test_absurd_zoom_is_refused():
    stack = synthetic_stack(BREATHING_WARPS)
    with pytest.raises(RegistrationError, match="scale"):
        register_stack(stack, max_scale_change=0.02)


def test_small_common_area_is_refused():
    stack = synthetic_stack(BREATHING_WARPS)
    with pytest.raises(RegistrationError, match="covered"):
        register_stack(stack, min_valid_fraction=0.97)


def test_warps_estimated_at_working_size_apply_at_full_size():
    stack = synthetic_stack(BREATHING_WARPS)
    result = register_stack(stack, "affine", max_working_width_px=WIDTH // 2)
    errors_px = [mean_grid_error_px(est, true) for est, true in zip(result.warps, BREATHING_WARPS)]
    assert max(errors_px) <= 0.4, errors_px


def test_unknown_motion_is_a_value_error():
    with pytest.raises(ValueError, match="motion"):
        register_stack(synthetic_stack(BREATHING_WARPS[:2]), "projective")


@pytest.mark.skipif(not PIXEL_STACK.is_dir(), reason="../shared/data/pixel6pro_stack not present")
def test_register_stack_cli_on_real_pixel_stack(tmp_path, capsys):
    from hybriddepth_ros.tools.register_stack import main

    out = tmp_path / "before_after.png"
    assert main([str(PIXEL_STACK), "--out", str(out), "--width", "640", "--height", "480"]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines() if line[:5].strip().isdigit()]
    assert len(table) == 5
    correlation = np.array([float(row[2]) for row in table])
    before_px = np.array([float(row[5]) for row in table])
    after_px = np.array([float(row[6]) for row in table])
    assert np.all(correlation > 0.99)
    assert np.all(before_px[1:] > 5.0), "hand-held frames start visibly misaligned"
    assert np.all(after_px < 1.0)
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > image.shape[1]
