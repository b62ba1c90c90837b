"""The backend's NYU-protocol settings on NYU-protocol renders with a known answer: textured planes in the
wide first step of a 5-frame sweep linear in metres, where the protocol's capped blur puts every far frame
on the same floor of the focus curve."""

import numpy as np
import pytest

from hybriddepth_ros.core.capture.simulated import DEFAULT_SIMULATED_LENS
from hybriddepth_ros.core.depth.focus_measure import NYU_PROTOCOL_SETTINGS, FocusMeasureBackend
from hybriddepth_ros.core.sim.nyu_protocol import nyu_focus_distances_m, render_nyu_focal_stack
from hybriddepth_ros.core.sim.scene import make_scene
from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.stack.focal_stack import FocalStack

HEIGHT, WIDTH = 96, 128
NEAR_M, FAR_M = 0.8, 6.0
PLANE_INSIDE = (slice(8, -20), slice(8, WIDTH // 2 - 8))
"""The plane's pixels at least a focus window away from the other surfaces."""


def _plane_stack(plane_m: float, texture_seed: int) -> FocalStack:
    """Left half a textured plane at `plane_m`, right half a wall at FAR_M, a strip along the bottom at
    NEAR_M: the protocol's 5 focus distances are 0.8, 2.1, 3.4, 4.7 and 6.0 m."""
    depth_m = np.full((HEIGHT, WIDTH), FAR_M, dtype=np.float32)
    depth_m[:, :WIDTH // 2] = plane_m
    depth_m[-12:, :] = NEAR_M
    rgb = make_scene(texture_seed, HEIGHT, WIDTH, num_objects=0, num_textureless=0).rgb
    focus_m = nyu_focus_distances_m(depth_m, 5)
    frames = np.clip(np.rint(render_nyu_focal_stack(rgb, depth_m, focus_m).numpy()), 0, 255).astype(np.uint8)
    return FocalStack(frames, focus_m, CameraIntrinsics.from_lens(DEFAULT_SIMULATED_LENS, WIDTH, HEIGHT)).validate()


def _plane_error(stack: FocalStack, plane_m: float, **options) -> float:
    """Relative error of the plane's median depth."""
    result = FocusMeasureBackend(device="cpu", **options).estimate(stack)
    return float(np.median(result.depth_m[PLANE_INSIDE])) / plane_m - 1.0


def test_taking_off_the_curves_floor_reads_planes_in_the_wide_first_step_nearer_their_depth():
    """Frames 0.8 and 2.1 m bracket the planes; the 0.8 m frame, and the 3.4 m one beyond, sit on the floor
    that the 7x7 gather leaves, so the three-frame vertex is pulled towards their middle and the planes
    read 16-27 % near without curve_floor (measured when written: mean |error| 0.197 without, 0.107 with)."""
    with_floor, without_floor = [], []
    for plane_m in (1.7, 1.9, 2.3):
        for texture_seed in (3, 5, 7):
            stack = _plane_stack(plane_m, texture_seed)
            with_floor.append(abs(_plane_error(stack, plane_m, **NYU_PROTOCOL_SETTINGS)))
            without_floor.append(abs(_plane_error(stack, plane_m, **{**NYU_PROTOCOL_SETTINGS, "curve_floor": 0.0})))
    assert all(a < b for a, b in zip(with_floor, without_floor)), (with_floor, without_floor)
    assert np.mean(with_floor) < 0.7 * np.mean(without_floor)
    assert min(without_floor) > 0.15  # the bias the floor addresses is there without it


@pytest.mark.parametrize("curve_floor", [-0.1, 1.0, float("nan")])
def test_curve_floor_outside_zero_to_one_is_refused(curve_floor):
    with pytest.raises(ValueError, match="curve_floor"):
        FocusMeasureBackend(device="cpu", curve_floor=curve_floor)
