"""Procedural scenes and the simulated variable-focus camera built on them."""

import numpy as np
import pytest

from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.capture.base import CaptureBackend
from hybriddepth_ros.core.capture.simulated import (
    DEFAULT_FOCUS_DISTANCES_M,
    DEFAULT_SIMULATED_LENS,
    SimulatedCapture,
)
from hybriddepth_ros.core.stack.focal_stack import FocalStackError
from hybriddepth_ros.core.sim.scene import make_scene
from hybriddepth_ros.core.sim.thin_lens import coc_px_per_diopter


def test_same_seed_gives_identical_arrays_and_other_seeds_differ():
    first, again, other = make_scene(4, 120, 160), make_scene(4, 120, 160), make_scene(5, 120, 160)
    for name in ("rgb", "depth_m", "textureless_mask"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.depth_m, other.depth_m)
    assert not np.array_equal(first.rgb, other.rgb)


@pytest.mark.parametrize("seed", range(6))
def test_depth_spans_the_range_with_several_surfaces(seed):
    scene = make_scene(seed, 240, 320)
    assert scene.rgb.shape == (240, 320, 3) and scene.rgb.dtype == np.uint8
    assert scene.depth_m.shape == (240, 320) and scene.depth_m.dtype == np.float32
    assert scene.depth_m.min() >= 0.3 - 1e-6 and scene.depth_m.max() <= 5.0 + 1e-6
    assert scene.depth_m.max() / scene.depth_m.min() > 3  # near ground to far wall
    # Slanted planes: many distinct depths, not a handful of constant layers.
    assert np.unique(np.round(scene.depth_m, 3)).size > 100


@pytest.mark.parametrize("seed", range(6))
def test_textureless_region_is_flat_colour_and_the_rest_is_textured(seed):
    scene = make_scene(seed, 240, 320)
    mask = scene.textureless_mask
    assert mask.dtype == np.bool_ and 0 < mask.mean() < 0.5
    gray = scene.rgb.astype(float).mean(axis=2)
    laplacian = np.abs(4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:])
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    assert inner.any() and laplacian[inner].max() < 1e-9  # no focus cue inside
    assert np.median(laplacian[~mask[1:-1, 1:-1]]) > 5  # texture everywhere else


def test_scene_options_are_checked():
    with pytest.raises(ValueError):
        make_scene(0, 64, 64, near_m=2.0, far_m=1.0)
    with pytest.raises(ValueError):
        make_scene(0, 64, 64, num_objects=2, num_textureless=3)
    scene = make_scene(0, 64, 64, near_m=1.0, far_m=2.0, num_textureless=0)
    assert not scene.textureless_mask.any()
    assert 1.0 - 1e-6 <= scene.depth_m.min() and scene.depth_m.max() <= 2.0 + 1e-6


def test_default_lens_gives_several_pixels_of_blur_per_diopter():
    slope_px = coc_px_per_diopter(5.0, DEFAULT_SIMULATED_LENS)
    assert 5.0 < slope_px < 10.0
    assert DEFAULT_FOCUS_DISTANCES_M[0] == pytest.approx(0.3)
    assert DEFAULT_FOCUS_DISTANCES_M[-1] == pytest.approx(5.0)
    assert np.allclose(np.diff(1.0 / np.array(DEFAULT_FOCUS_DISTANCES_M)), -(1 / 0.3 - 0.2) / 9)


def test_simulated_capture_returns_valid_stacks_with_ground_truth():
    capture = SimulatedCapture(width=160, height=120, seed=2)
    assert isinstance(capture, CaptureBackend) and capture.ground_truth_depth_m is None
    stack = capture.capture_stack().validate()
    assert stack.frames.shape == (10, 120, 160, 3) and stack.frames.dtype == np.uint8
    assert np.allclose(stack.focus_distances_m, DEFAULT_FOCUS_DISTANCES_M)
    assert stack.intrinsics == CameraIntrinsics.from_lens(DEFAULT_SIMULATED_LENS, 160, 120)
    assert stack.reference_index == 0 and stack.registered
    assert abs(stack.stamp_s - __import__("time").time()) < 60
    assert np.array_equal(capture.ground_truth_depth_m, make_scene(2, 120, 160).depth_m)
    # Fresh, reproducible noise per stack on the same scene.
    second = capture.capture_stack()
    assert not np.array_equal(stack.frames, second.frames)
    assert np.abs(stack.frames.astype(int) - second.frames.astype(int)).mean() < 3
    replay = SimulatedCapture(width=160, height=120, seed=2)
    assert np.array_equal(replay.capture_stack().frames, stack.frames)


def test_scene_change_every_cycles_seeds():
    capture = SimulatedCapture(
        focus_distances_m=[0.5, 1.0, 2.0], width=64, height=48, seed=10, scene_change_every=2, noise_std=0
    )
    truths = []
    for _ in range(4):
        capture.capture_stack()
        truths.append(capture.ground_truth_depth_m)
    assert np.array_equal(truths[0], truths[1]) and np.array_equal(truths[2], truths[3])
    assert np.array_equal(truths[2], make_scene(11, 48, 64).depth_m)
    assert not np.array_equal(truths[1], truths[2])


def test_simulated_capture_rejects_bad_settings():
    with pytest.raises(FocalStackError):
        SimulatedCapture(focus_distances_m=[2.0, 1.0])
    with pytest.raises(ValueError):
        SimulatedCapture(noise_std=-1.0)
    with pytest.raises(ValueError):
        SimulatedCapture(focus_distances_m=[0.005, 1.0])
