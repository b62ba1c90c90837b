"""Thin-lens renderer: blur-circle physics, in-focus sharpness, blur growth, occlusion, speed."""

import time

import numpy as np
import pytest

from hybriddepth_ros.core.stack.camera import ThinLens
from hybriddepth_ros.core.stack.focal_stack import diopter_sweep
from hybriddepth_ros.core.sim.thin_lens import (
    circle_of_confusion_px,
    render_defocus,
    render_focal_stack,
)

NYU_LENS = ThinLens(focal_length_m=0.05, f_number=8.0, pixel_pitch_m=12e-6)
LENS = ThinLens(focal_length_m=0.012, f_number=1.4, pixel_pitch_m=15e-6)


def _texture(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _high_frequency_energy(image):
    gray = image.astype(np.float64).mean(axis=2)
    laplacian = 4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    return float(np.mean(laplacian**2))


@pytest.mark.parametrize(
    "depth_m, focus_m, expected_px",
    [
        # c = (f/N) * f * |d - s| / (d * (s - f)) / pitch, worked by hand.
        (2.0, 1.0, 0.00625 * 0.05 * 1.0 / (2.0 * 0.95) / 12e-6),  # 13.706 px
        (0.5, 1.0, 0.00625 * 0.05 * 0.5 / (0.5 * 0.95) / 12e-6),  # 27.412 px
        (3.0, 3.0, 0.0),
        (10.0, 2.0, 0.00625 * 0.05 * 8.0 / (10.0 * 1.95) / 12e-6),  # 10.684 px
    ],
)
def test_circle_of_confusion_matches_thin_lens_formula(depth_m, focus_m, expected_px):
    assert circle_of_confusion_px(depth_m, focus_m, NYU_LENS) == pytest.approx(expected_px, rel=1e-9)


def test_circle_of_confusion_known_value_and_arrays():
    assert circle_of_confusion_px(2.0, 1.0, NYU_LENS) == pytest.approx(13.7061, abs=1e-3)
    coc = circle_of_confusion_px(np.array([0.5, 1.0, 2.0]), 1.0, NYU_LENS)
    assert coc.shape == (3,) and coc[1] == 0.0 and coc[0] > coc[2] > 0
    with pytest.raises(ValueError):
        circle_of_confusion_px(1.0, 0.01, NYU_LENS)  # focused inside the focal length


@pytest.mark.parametrize("psf", ["disc", "gaussian"])
def test_plane_at_focus_distance_stays_sharp(psf):
    rgb = _texture(48, 64)
    depth = np.full((48, 64), 1.5)
    frame = render_defocus(rgb, depth, 1.5, LENS, psf=psf)
    assert frame.dtype == np.uint8 and frame.shape == rgb.shape
    assert np.max(np.abs(frame.astype(int) - rgb.astype(int))) <= 1


def test_blur_grows_with_defocus_in_diopters():
    rgb = _texture(64, 64)
    depth_m = 1.0
    # 0, 0.2, 0.4, 0.7, 1.0 diopters away: blur circles of 0, 1.4, 2.9, 5.0, 7.2 px
    # (below one pixel the disc PSF is an impulse: no visible blur).
    focus_m = [1.0, 1 / 0.8, 1 / 0.6, 1 / 0.3, 1 / 2.0]
    stack = render_focal_stack(rgb, np.full((64, 64), depth_m), focus_m, LENS)
    energy = [_high_frequency_energy(frame) for frame in stack]
    assert all(a > b for a, b in zip(energy, energy[1:])), energy
    assert energy[-1] < 0.05 * energy[0]


def test_blur_of_an_edge_has_the_width_of_the_circle_of_confusion():
    """A step edge blurred by a disc ramps over about one blur-circle diameter."""
    rgb = np.zeros((40, 120, 3), dtype=np.uint8)
    rgb[:, 60:] = 255
    focus_m = 0.5
    depth_m = 2.0
    coc_px = circle_of_confusion_px(depth_m, focus_m, LENS)  # about 16 px
    frame = render_defocus(rgb, np.full((40, 120), depth_m), focus_m, LENS, linear_light=False)
    row = frame[20, :, 0].astype(float) / 255
    ramp_px = np.count_nonzero((row > 0.02) & (row < 0.98))
    assert abs(ramp_px - coc_px) <= 2, (ramp_px, coc_px)


def _occlusion_scene():
    """Red textured foreground at 0.5 m on the left, blue background at 3 m on the right."""
    height, width = 40, 80
    rng = np.random.default_rng(3)
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[:, :40, 0] = rng.integers(128, 256, size=(height, 40))
    rgb[:, 40:, 2] = rng.integers(128, 256, size=(height, 40))
    depth = np.full((height, width), 3.0)
    depth[:, :40] = 0.5
    return rgb, depth


def test_sharp_foreground_is_not_covered_by_blurred_background():
    rgb, depth = _occlusion_scene()
    frame = render_defocus(rgb, depth, 0.5, LENS)
    # Every foreground pixel, up to the edge, is exactly its input: no blue bleeds in.
    assert np.max(np.abs(frame[:, :40].astype(int) - rgb[:, :40].astype(int))) <= 1
    assert frame[:, :40, 2].max() == 0
    # The background is blurred (its texture loses contrast) but stays blue.
    assert frame[:, 50:, 2].std() < 0.5 * rgb[:, 50:, 2].std()
    assert frame[:, 41:, 0].max() == 0


def test_blurred_foreground_spills_over_sharp_background():
    rgb, depth = _occlusion_scene()
    frame = render_defocus(rgb, depth, 3.0, LENS)
    coc_px = circle_of_confusion_px(0.5, 3.0, LENS)  # about 12 px
    spill = frame[:, 40 : 40 + int(coc_px // 2) - 1, 0]
    assert spill.min() > 0  # red from the defocused foreground lies over the background
    # Beyond the blur circle the background is the sharp input.
    far = slice(40 + int(np.ceil(coc_px / 2)) + 1, 80)
    assert np.max(np.abs(frame[:, far].astype(int) - rgb[:, far].astype(int))) <= 1


def test_noise_is_seeded_and_float_input_round_trips():
    rgb = _texture(32, 32)
    depth = np.full((32, 32), 1.0)
    first = render_focal_stack(rgb, depth, [0.5, 1.0], LENS, noise_std=2.0, seed=7)
    again = render_focal_stack(rgb, depth, [0.5, 1.0], LENS, noise_std=2.0, seed=7)
    other = render_focal_stack(rgb, depth, [0.5, 1.0], LENS, noise_std=2.0, seed=8)
    assert first.shape == (2, 32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    noise = first[1].astype(float) - rgb.astype(float)
    assert 1.0 < noise.std() < 3.0
    as_float = render_defocus(rgb.astype(np.float32) / 255, depth, 1.0, LENS)
    assert as_float.dtype == np.float32
    assert np.max(np.abs(as_float - rgb / 255.0)) < 1e-3


def test_bad_inputs_raise():
    rgb = _texture(16, 16)
    with pytest.raises(ValueError):
        render_defocus(rgb, np.full((16, 15), 1.0), 1.0, LENS)
    with pytest.raises(ValueError):
        render_defocus(rgb, np.zeros((16, 16)), 1.0, LENS)
    with pytest.raises(ValueError):
        render_defocus(rgb, np.ones((16, 16)), 1.0, LENS, psf="box")


def test_ten_frame_stack_of_240x320_renders_in_seconds():
    from hybriddepth_ros.core.sim.scene import make_scene

    scene = make_scene(0, 240, 320)
    start_s = time.perf_counter()
    stack = render_focal_stack(scene.rgb, scene.depth_m, diopter_sweep(0.3, 5.0, 10), LENS)
    elapsed_s = time.perf_counter() - start_s
    print(f"render 10x240x320: {elapsed_s:.2f} s")
    assert stack.shape == (10, 240, 320, 3)
    assert elapsed_s < 10.0
