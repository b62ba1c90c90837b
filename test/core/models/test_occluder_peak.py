"""Flat pixels with two focus peaks read their occlusion edge: known curves and a known scene."""

import numpy as np
import pytest
import torch

from hybriddepth_ros.core.capture.simulated import DEFAULT_SIMULATED_LENS
from hybriddepth_ros.core.depth.focus_measure import FocusMeasureBackend
from hybriddepth_ros.core.models.focus_measure import occluder_peak_curves
from hybriddepth_ros.core.sim.scene import make_scene
from hybriddepth_ros.core.sim.thin_lens import render_focal_stack
from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.stack.focal_stack import FocalStack, diopter_sweep

CURVES = {
    # name: (curve over 5 frames, near to far; flat; expected curve)
    "far peak higher": ([0.2, 1.0, 0.3, 0.6, 0.9], True, [0.2, 1.0, 0.3, 0.3, 0.3]),
    "near peak lower": ([0.2, 0.6, 0.3, 0.7, 1.0], True, [0.2, 0.6, 0.3, 0.3, 0.3]),
    "near bump below half": ([0.1, 0.4, 0.2, 0.5, 1.0], True, [0.1, 0.4, 0.2, 0.5, 1.0]),
    "single peak": ([0.2, 0.5, 1.0, 0.5, 0.2], True, [0.2, 0.5, 1.0, 0.5, 0.2]),
    "textured pixel": ([0.2, 1.0, 0.3, 0.6, 0.9], False, [0.2, 1.0, 0.3, 0.6, 0.9]),
    "near end peak": ([1.0, 0.4, 0.3, 0.8, 0.5], True, [1.0, 0.4, 0.3, 0.3, 0.3]),
    "second bump within noise": ([0.2, 1.0, 0.5, 0.75, 0.6], True, [0.2, 1.0, 0.5, 0.75, 0.6]),
}


@pytest.mark.parametrize("name", sorted(CURVES))
def test_a_flat_curve_is_cut_after_the_valley_that_follows_its_nearest_peak(name):
    curve, flat, expected = CURVES[name]
    focus = torch.tensor(curve, dtype=torch.float32)[:, None, None]
    cut, two_peaks = occluder_peak_curves(focus)
    changed = two_peaks & torch.tensor([[flat]])  # the backend cuts flat pixels' curves only
    assert torch.where(changed, cut, focus)[:, 0, 0].tolist() == pytest.approx(expected)
    assert bool(changed[0, 0]) == (expected != curve)


def test_every_curve_is_cut_whatever_its_texture():
    """The cut does not depend on texture: a textured pixel's two-peaked curve is cut as a flat one's (its near
    peak is an occlusion rim's, core.depth.focus_measure.occlusion_rim_depth)."""
    curve, _, _ = CURVES["textured pixel"]
    cut, two_peaks = occluder_peak_curves(torch.tensor(curve, dtype=torch.float32)[:, None, None])
    assert bool(two_peaks[0, 0]) and cut[:, 0, 0].tolist() == pytest.approx([0.2, 1.0, 0.3, 0.3, 0.3])


HEIGHT, WIDTH = 96, 128
DISC_M, BACKGROUND_M = 0.45, 3.0
"""A flat disc near the sweep's start in front of a textured plane beyond its fourth frame (1.02 m)."""


def test_a_flat_object_in_front_of_texture_takes_its_edge_depth_not_the_background():
    rgb = make_scene(3, HEIGHT, WIDTH, num_objects=0, num_textureless=0).rgb.copy()
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    radius_sq = (rows - HEIGHT / 2) ** 2 + (cols - WIDTH / 2) ** 2
    disc = radius_sq < (0.3 * HEIGHT) ** 2
    depth_m = np.where(disc, DISC_M, BACKGROUND_M).astype(np.float32)
    rgb[disc] = (230, 230, 230)
    focus_m = diopter_sweep(0.3, 5.0, 5)
    frames = render_focal_stack(rgb, depth_m, focus_m, DEFAULT_SIMULATED_LENS, noise_std=1.0, seed=0)
    stack = FocalStack(frames, np.asarray(focus_m), CameraIntrinsics.from_lens(DEFAULT_SIMULATED_LENS, WIDTH, HEIGHT))
    inner = radius_sq < (0.2 * HEIGHT) ** 2  # the flat interior, away from the rim that measures the edge

    with_occluder = FocusMeasureBackend(device="cpu").estimate(stack.validate())
    without = FocusMeasureBackend(device="cpu", occluder_peak=False, front_edge=False).estimate(stack)
    error = np.median(np.abs(with_occluder.depth_m[inner] - DISC_M)) / DISC_M
    old_error = np.median(np.abs(without.depth_m[inner] - DISC_M)) / DISC_M
    assert error < 0.05, error  # measured 0.025
    assert old_error > 2.0, old_error  # measured 8.5: the background's depth, read through the fill
    # Reading the edge is not measuring the flat pixel: it is not counted as measured, and its confidence
    # stays out of the set a 0.5 threshold keeps (measured pixels only), yet above 0.
    assert not with_occluder.measured[disc].any()
    assert 0.0 < with_occluder.confidence[inner].min() and with_occluder.confidence[disc].max() < 0.5
