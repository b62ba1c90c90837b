"""A focus curve that stays at its peak up to an end frame is an end-of-sweep bound, not an interior peak:
known answers on hand-made curves and on an NYU-protocol render, where far frames are exactly alike."""

import numpy as np
import pytest
import torch

from hybriddepth_ros.core.capture.simulated import DEFAULT_SIMULATED_LENS
from hybriddepth_ros.core.depth.focus_measure import FocusMeasureBackend
from hybriddepth_ros.core.models.focus_measure import FLAT_END_TOLERANCE, FocusMeasureDFF, luminance
from hybriddepth_ros.core.sim.nyu_protocol import render_nyu_focal_stack
from hybriddepth_ros.core.sim.scene import make_scene
from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.stack.focal_stack import FocalStack

DIOPTERS = torch.tensor([2.0, 1.0, 0.5, 0.33, 0.25])
"""Five frames, nearest first."""


def _fit(*curves):
    """PeakFit of one pixel per curve (values per frame)."""
    focus = torch.tensor(curves, dtype=torch.float32).T[:, None, :]  # (N, 1, pixels)
    return FocusMeasureDFF().peak_fit(focus, DIOPTERS, flat_end=True)


def test_curve_flat_from_peak_to_last_frame_is_sharpest_there():
    alike = 1.0 - FLAT_END_TOLERANCE / 2
    fit = _fit([0.1, 0.3, 1.0, alike, alike])
    assert int(fit.peak_index[0, 0]) == 4
    assert torch.isnan(fit.depth_m[0, 0])  # a bound, not a measurement
    assert 0.25 <= 1.0 / float(fit.end_depth_m[0, 0]) <= (0.25 + 0.33) / 2 + 1e-6


def test_curve_flat_from_first_frame_to_peak_is_sharpest_there():
    alike = 1.0 - FLAT_END_TOLERANCE / 2
    fit = _fit([alike, 1.0, 0.4, 0.2, 0.1])
    assert int(fit.peak_index[0, 0]) == 0 and torch.isnan(fit.depth_m[0, 0])
    assert torch.isfinite(fit.end_depth_m[0, 0])


@pytest.mark.parametrize("curve", [
    [0.1, 0.3, 1.0, 0.97, 0.97],  # falls by more than the tolerance
    [0.1, 0.3, 1.0, 0.9, 1.0 - FLAT_END_TOLERANCE / 2],  # the run to the end is broken
    [0.1, 0.3, 1.0, 1.0 - FLAT_END_TOLERANCE / 2, 0.5],  # flat over two frames, not to the end
])
def test_interior_peaks_stay_interior(curve):
    fit = _fit(curve)
    assert int(fit.peak_index[0, 0]) == 2 and torch.isfinite(fit.depth_m[0, 0])


def test_curve_flat_to_both_ends_keeps_its_peak():
    fit = _fit([0.995, 0.996, 1.0, 0.997, 0.995])
    assert int(fit.peak_index[0, 0]) == 2  # no end to prefer; the flat curve's rise gives it no confidence
    assert float(fit.confidence[0, 0]) < 0.05


def test_nyu_far_plane_alike_in_last_frames_is_a_bound_read_at_its_depth():
    """A textured plane at the sweep's last focus distance under the NYU protocol: its blur circle is under
    2 px in the last three frames (linear in metres, 1-5 m), which the protocol leaves untouched, so they
    are exactly alike. Read as an interior peak it came to 3.88 m, between two of them; as a bound,
    defocus against the frames before places it."""
    height, width = 96, 128
    far_m = 5.0
    depth_m = np.full((height, width), far_m, dtype=np.float32)
    rgb = make_scene(3, height, width, num_objects=0, num_textureless=0).rgb
    focus_m = np.linspace(1.0, far_m, 10)
    frames = np.clip(np.rint(render_nyu_focal_stack(rgb, depth_m, focus_m).numpy()), 0, 255).astype(np.uint8)
    assert np.array_equal(frames[-1], frames[-2])  # the protocol's untouched pixels
    stack = FocalStack(frames, focus_m, CameraIntrinsics.from_lens(DEFAULT_SIMULATED_LENS, width, height)).validate()

    dff = FocusMeasureDFF(curve_exponent=-1.5)
    luma = luminance(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0)
    diopters = torch.tensor(1.0 / focus_m, dtype=torch.float32)
    inner = (slice(8, -8), slice(8, -8))
    interior = dff.peak_fit(dff.focus_measure(luma), diopters)  # measured-only depth: as before
    assert abs(np.nanmedian(interior.depth_m.numpy()[inner]) - 3.88) < 0.1
    bound = dff.peak_fit(dff.focus_measure(luma), diopters, flat_end=True)
    assert np.isnan(bound.depth_m.numpy()[inner]).mean() > 0.95  # bounds, not measurements
    assert (bound.peak_index.numpy()[inner] == len(focus_m) - 1).mean() > 0.95

    dense = FocusMeasureBackend(device="cpu", curve_exponent=-1.5, coarse_band_weight=1.0).estimate(stack)
    assert abs(np.median(dense.depth_m[inner]) / far_m - 1.0) < 0.05
    assert dense.measured[inner].mean() < 0.05
