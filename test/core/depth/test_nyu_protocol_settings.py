"""The backend's NYU-protocol settings on NYU-protocol renders with a known answer: textured planes in the
wide first step of a 5-frame sweep linear in metres, where the protocol's capped blur puts every far frame
on the same floor of the focus curve, and planes in its last step, where the last frames are alike."""

from types import MappingProxyType

import numpy as np
import pytest
import torch

from hybriddepth_ros.core.capture.simulated import DEFAULT_SIMULATED_LENS
from hybriddepth_ros.core.depth.densify import sum_pool_2x2
from hybriddepth_ros.core.depth.focus_measure import NYU_PROTOCOL_SETTINGS, FocusMeasureBackend
from hybriddepth_ros.core.models.blur_equalisation import BlurEqualised
from hybriddepth_ros.core.sim.nyu_protocol import NYU_LENS, nyu_focus_distances_m, render_nyu_focal_stack
from hybriddepth_ros.core.sim.scene import make_scene
from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.stack.focal_stack import FocalStack

HEIGHT, WIDTH = 96, 128
NEAR_M, FAR_M = 0.8, 6.0
PLANE_INSIDE = (slice(8, -20), slice(8, WIDTH // 2 - 8))
"""The plane's pixels at least a focus window away from the other surfaces."""
WITHOUT_LENS = MappingProxyType({**NYU_PROTOCOL_SETTINGS, "blur_sigma_px_per_diopter": 0.0})
"""The NYU settings with the lens's blur unknown: no blur equalisation, no flat-run rule."""


def _plane_stack(plane_m: float, texture_seed: int, plane_contrast: float = 1.0) -> FocalStack:
    """Left half a textured plane at `plane_m`, right half a wall at FAR_M, a strip along the bottom at
    NEAR_M: the protocol's 5 focus distances are 0.8, 2.1, 3.4, 4.7 and 6.0 m. `plane_contrast`: the plane's
    texture at that many times its own about mid-grey."""
    depth_m = np.full((HEIGHT, WIDTH), FAR_M, dtype=np.float32)
    depth_m[:, :WIDTH // 2] = plane_m
    depth_m[-12:, :] = NEAR_M
    rgb = make_scene(texture_seed, HEIGHT, WIDTH, num_objects=0, num_textureless=0).rgb
    if plane_contrast != 1.0:
        rgb = rgb.astype(np.float32)
        plane = rgb[:, :WIDTH // 2]
        rgb[:, :WIDTH // 2] = 128.0 + plane_contrast * (plane - plane.mean())
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
    read 16-27 % near without curve_floor (measured when written: mean |error| 0.197 without, 0.107 with).
    The peak fit alone, the lens's blur unknown: with it, blur equalisation reads these planes (below)."""
    with_floor, without_floor = [], []
    for plane_m in (1.7, 1.9, 2.3):
        for texture_seed in (3, 5, 7):
            stack = _plane_stack(plane_m, texture_seed)
            with_floor.append(abs(_plane_error(stack, plane_m, **WITHOUT_LENS)))
            without_floor.append(abs(_plane_error(stack, plane_m, **{**WITHOUT_LENS, "curve_floor": 0.0})))
    assert all(a < b for a, b in zip(with_floor, without_floor)), (with_floor, without_floor)
    assert np.mean(with_floor) < 0.7 * np.mean(without_floor)
    assert min(without_floor) > 0.15  # the bias the floor addresses is there without it


def test_with_the_lens_blur_known_planes_in_the_wide_first_step_read_their_depth():
    """Blur equalisation (core/models/blur_equalisation.py) reads the protocol's capped blur exactly where
    the heat-equation fit and the peak fit do not (measured when written: mean |error| 0.012 with the lens
    known, 0.107 without; at most 3.1 %, a 1.9 m plane, 0.05 D from the 2.1 m frame, which leaves it
    untouched; with 8 candidates per step instead of 16, 0.030 and 8.4 %)."""
    with_lens, without_lens = [], []
    for plane_m in (1.7, 1.9, 2.3):
        for texture_seed in (3, 5, 7):
            stack = _plane_stack(plane_m, texture_seed)
            with_lens.append(abs(_plane_error(stack, plane_m, **NYU_PROTOCOL_SETTINGS)))
            without_lens.append(abs(_plane_error(stack, plane_m, **WITHOUT_LENS)))
    assert np.mean(with_lens) < 0.25 * np.mean(without_lens), (with_lens, without_lens)
    assert max(with_lens) < 0.05, with_lens


@pytest.mark.parametrize("curve_floor", [-0.1, 1.0, float("nan")])
def test_curve_floor_outside_zero_to_one_is_refused(curve_floor):
    with pytest.raises(ValueError, match="curve_floor"):
        FocusMeasureBackend(device="cpu", curve_floor=curve_floor)


def _far_plane_stack(plane_m: float, texture_seed: int) -> FocalStack:
    """192x384: left third a textured plane at `plane_m`, middle third at 2.5 m (interior peaks, which
    calibrate relative blur), right third a wall at FAR_M, a strip along the bottom at NEAR_M."""
    height, width = 192, 384
    depth_m = np.full((height, width), FAR_M, dtype=np.float32)
    depth_m[:, :width // 3] = plane_m
    depth_m[:, width // 3:2 * width // 3] = 2.5
    depth_m[-24:, :] = NEAR_M
    rgb = make_scene(texture_seed, height, width, num_objects=0, num_textureless=0).rgb
    focus_m = nyu_focus_distances_m(depth_m, 5)
    frames = np.clip(np.rint(render_nyu_focal_stack(rgb, depth_m, focus_m).numpy()), 0, 255).astype(np.uint8)
    return FocalStack(frames, focus_m, CameraIntrinsics.from_lens(DEFAULT_SIMULATED_LENS, width, height)).validate()


def test_last_frames_alike_read_depth_from_the_first_blurred_frame_with_the_lens_blur_known():
    """Planes at 5.2-6 m are in focus in both the 4.7 and the 6 m frame, which the protocol leaves exactly
    alike, so relative blur between them is 0 and reads the middle of their step (5.27 m) whatever the
    depth; the 3.4 m frame's blur, with the protocol's blur per diopter, places them (measured when
    written, with flat_run_end_depth alone: within 0-5 % far, against -12 to +1 % without; with blur
    equalisation as well: -0.9 to +1.0 %)."""
    inside = (slice(16, -40), slice(16, 384 // 3 - 16))
    with_lens, without_lens = {}, {}
    for plane_m in (5.2, 5.5, 6.0):
        for texture_seed in (3, 5):
            stack = _far_plane_stack(plane_m, texture_seed)
            for errors, options in ((with_lens, NYU_PROTOCOL_SETTINGS),
                                    (without_lens, WITHOUT_LENS)):
                depth_m = FocusMeasureBackend(device="cpu", **options).estimate(stack).depth_m
                errors[plane_m, texture_seed] = float(np.median(depth_m[inside])) / plane_m - 1.0
    assert np.mean(np.abs(list(with_lens.values()))) < 0.7 * np.mean(np.abs(list(without_lens.values())))
    for texture_seed in (3, 5):
        assert abs(with_lens[6.0, texture_seed]) < 0.02  # the wall at the last focus distance
        assert without_lens[6.0, texture_seed] < -0.1  # read at the middle of the last step


def test_nyu_settings_blur_per_diopter_is_the_protocol_lens():
    """The gather's Gaussian has standard deviation CoC / 4 px, CoC = A f / pixel pitch per diopter (far focus)."""
    per_diopter_px = NYU_LENS.aperture_diameter_m * NYU_LENS.focal_length_m / NYU_LENS.pixel_pitch_m / 4.0
    assert NYU_PROTOCOL_SETTINGS["blur_sigma_px_per_diopter"] == pytest.approx(per_diopter_px, rel=0.005)


@pytest.mark.parametrize("sigma", [-1.0, float("inf"), float("nan")])
def test_blur_per_diopter_negative_or_not_finite_is_refused(sigma):
    with pytest.raises(ValueError, match="blur_sigma_px_per_diopter"):
        FocusMeasureBackend(device="cpu", blur_sigma_px_per_diopter=sigma)


def test_blur_equalised_depth_replaces_anchors_but_next_to_an_occlusion_edge(monkeypatch):
    """Blocks whose 3x3 neighbourhood of equalised depths spans more than BLUR_EQUALISED_EDGE_SPREAD in
    inverse depth (a window across an occlusion edge), or whose equalised error is infinite (nothing read),
    keep their own depth and expected error; NaN stays NaN where the read is not sure enough to add an
    anchor; bounds are treated as vertices are."""
    from hybriddepth_ros.core.depth import focus_measure as backend_module
    from hybriddepth_ros.core.models.focus_measure import PeakFit

    assert backend_module.BLUR_EQUALISED_EDGE_SPREAD == 2.0
    # Columns 0-2 at 1 m, 3-5 at 3 m (3 times farther): columns 2 and 3 see both in their 3x3 blocks.
    equalised_m = torch.tensor([[1.0, 1.0, 1.0, 3.0, 3.0, 3.0]]).expand(3, 6)
    equalised_error = torch.tensor([[float("inf"), 0.01, 0.01, 0.01, 0.01, 0.5]]).expand(3, 6)  # column 0 read nothing
    read = BlurEqualised(equalised_m, equalised_error, torch.zeros(3, 6))
    monkeypatch.setattr(backend_module, "blur_equalised_depth", lambda *args: read)
    nan = float("nan")
    own_m = torch.tensor([[1.5, 1.5, 1.5, 1.5, 1.5, nan]]).expand(3, 6)
    bound_m = torch.tensor([[nan, nan, nan, nan, nan, 2.0]]).expand(3, 6)
    fit = PeakFit(depth_m=own_m, confidence=torch.ones(3, 6), peak_index=torch.zeros(3, 6, dtype=torch.long),
                  end_depth_m=bound_m)
    backend = FocusMeasureBackend(device="cpu", **NYU_PROTOCOL_SETTINGS)
    textured = torch.from_numpy(np.random.default_rng(0).uniform(0.3, 0.7, (5, 6, 12)).astype(np.float32))
    refined, taken_error = backend._blur_equalised(fit, textured, sum_pool_2x2(textured) / 4.0, torch.ones(5))
    expected_m = torch.tensor([[1.5, 1.0, 1.5, 1.5, 3.0, nan]]).expand(3, 6)
    torch.testing.assert_close(refined.depth_m, expected_m, equal_nan=True)
    torch.testing.assert_close(refined.end_depth_m, torch.tensor([[nan] * 5 + [3.0]]).expand(3, 6), equal_nan=True)
    # The expected error goes with the depth taken, NaN where the anchor kept its own.
    torch.testing.assert_close(taken_error, torch.tensor([[nan, 0.01, nan, nan, 0.01, 0.5]]).expand(3, 6),
                               equal_nan=True)
    # Anchors that keep their own depth across the edge count for BLUR_EQUALISED_EDGE_CONFIDENCE of their
    # peak's confidence; elsewhere it is untouched.
    assert backend_module.BLUR_EQUALISED_EDGE_CONFIDENCE == 0.5
    torch.testing.assert_close(refined.confidence, torch.tensor([[1.0, 1.0, 0.5, 0.5, 1.0, 1.0]]).expand(3, 6))
    # Over frames without contrast (BLUR_EQUALISED_EDGE_MIN_CONTRAST) the spread is not an occlusion edge: the
    # same depths are kept, at their full confidence.
    blank = torch.full((5, 6, 12), 0.5) + 0.5 * backend_module.BLUR_EQUALISED_EDGE_MIN_CONTRAST * (textured - 0.5)
    refined_blank, _ = backend._blur_equalised(fit, blank, sum_pool_2x2(blank) / 4.0, torch.ones(5))
    torch.testing.assert_close(refined_blank.depth_m, expected_m, equal_nan=True)
    torch.testing.assert_close(refined_blank.confidence, fit.confidence)


def test_pixels_without_a_peak_anchor_take_a_sure_blur_equalised_read_as_a_vertex(monkeypatch):
    """Where a pixel anchors nothing (no vertex, or one below the seed confidence, and no bound), the
    equalised depth becomes a vertex of confidence 1 if its expected error is below
    BLUR_EQUALISED_ADDED_MAX_ERROR and it leaves less than BLUR_EQUALISED_ADDED_MAX_UNEXPLAINED of the
    frames' own disagreement; otherwise the pixel keeps what it had."""
    from hybriddepth_ros.core.depth import focus_measure as backend_module
    from hybriddepth_ros.core.models.focus_measure import PeakFit

    limit_error = backend_module.BLUR_EQUALISED_ADDED_MAX_ERROR
    limit_share = backend_module.BLUR_EQUALISED_ADDED_MAX_UNEXPLAINED
    nan = float("nan")
    # Columns: sure (no vertex); sure (a vertex below the seed confidence); error at the limit; share at the
    # limit; nothing read; a vertex above the seed confidence (taken as before, its confidence kept).
    equalised_m = torch.full((3, 6), 2.0)
    equalised_error = torch.tensor([[0.01, 0.01, limit_error, 0.01, float("inf"), 0.01]]).expand(3, 6)
    unexplained = torch.tensor([[0.1, 0.1, 0.1, limit_share, 0.1, 0.1]]).expand(3, 6)
    read = BlurEqualised(equalised_m, equalised_error, unexplained)
    monkeypatch.setattr(backend_module, "blur_equalised_depth", lambda *args: read)
    own_m = torch.tensor([[nan, 1.5, nan, nan, nan, 1.5]]).expand(3, 6)
    confidence = torch.tensor([[0.0, 0.1, 0.0, 0.0, 0.0, 0.6]]).expand(3, 6)
    fit = PeakFit(depth_m=own_m, confidence=confidence, peak_index=torch.zeros(3, 6, dtype=torch.long),
                  end_depth_m=torch.full((3, 6), nan))
    backend = FocusMeasureBackend(device="cpu", **NYU_PROTOCOL_SETTINGS)
    assert backend.densify_params.seed_min_confidence == 0.25
    refined, taken_error = backend._blur_equalised(fit, torch.zeros(5, 6, 12), torch.zeros(5, 3, 6), torch.ones(5))
    torch.testing.assert_close(refined.depth_m, torch.tensor([[2.0, 2.0, nan, nan, nan, 2.0]]).expand(3, 6),
                               equal_nan=True)
    torch.testing.assert_close(refined.confidence, torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.6]]).expand(3, 6))
    torch.testing.assert_close(taken_error, torch.tensor([[0.01, 0.01, nan, nan, nan, 0.01]]).expand(3, 6),
                               equal_nan=True)


def test_anchors_across_occlusion_edges_count_less_and_the_scenes_read_better(monkeypatch):
    """The simulator's NYU-protocol scenes (objects in front of walls; seeds 0-5, 240x320, 5 frames): with
    anchors across occlusion edges at BLUR_EQUALISED_EDGE_CONFIDENCE of their peak's confidence, mean dense
    AbsRel is lower than with their full confidence (with edge_snapped: 0.0674 against 0.0704; before it, with
    the contrast test, 0.0831 against 0.0898, 4 of the 6 scenes better). Edge snapping repairs much of what
    these anchors cost, so the margin is smaller; seeds 1000-1019 (480x640, 5 frames) with snapping: nyu 0.0405
    against 0.0425, nyu_far 0.0250 against 0.0275."""
    from hybriddepth_ros.core.depth import focus_measure as backend_module
    from hybriddepth_ros.tools.evaluate_weight_free import make_stack

    def mean_abs_rel(stacks) -> float:
        backend = FocusMeasureBackend(device="cpu", **NYU_PROTOCOL_SETTINGS)
        return float(np.mean([np.nanmean(np.abs(backend.estimate(stack).depth_m / truth - 1.0))
                              for stack, truth in stacks]))

    stacks = [make_stack("nyu", seed, 5, 240, 320, None) for seed in range(6)]
    assert backend_module.BLUR_EQUALISED_EDGE_CONFIDENCE == 0.5
    counted_less = mean_abs_rel(stacks)
    monkeypatch.setattr(backend_module, "BLUR_EQUALISED_EDGE_CONFIDENCE", 1.0)
    assert counted_less < 0.97 * mean_abs_rel(stacks)


def test_weakly_textured_planes_read_their_depth_from_blur_equalisation_where_no_peak_anchors(monkeypatch):
    """Planes whose texture is a tenth of the scene's contrast: their focus peaks are mostly below the seed
    confidence, so without added anchors the fill brings them the wall's or the strip's depth (measured when
    written: median errors 0.022, 0.214, 0.001, 0.211, 0.004, 0.024); blur equalisation reads them (0.024,
    0.027, 0.001, 0.002, 0.004, 0.004) and they count as measured."""
    from hybriddepth_ros.core.depth import focus_measure as backend_module

    def plane_error(stack: FocalStack, plane_m: float) -> tuple[float, float]:
        result = FocusMeasureBackend(device="cpu", **NYU_PROTOCOL_SETTINGS).estimate(stack)
        error = float(np.median(np.abs(result.depth_m[PLANE_INSIDE] / plane_m - 1.0)))
        return error, float(result.measured[PLANE_INSIDE].mean())

    stacks = [(plane_m, _plane_stack(plane_m, seed, plane_contrast=0.1)) for plane_m in (1.4, 2.6, 4.0) for seed in (3, 5)]
    added = [plane_error(stack, plane_m) for plane_m, stack in stacks]
    monkeypatch.setattr(backend_module, "BLUR_EQUALISED_ADDED_MAX_ERROR", 0.0)
    without = [plane_error(stack, plane_m)[0] for plane_m, stack in stacks]
    assert max(error for error, _ in added) < 0.04, added
    assert min(share for _, share in added) > 0.5, added
    assert np.mean(without) > 3 * np.mean([error for error, _ in added]), (without, added)
    assert max(without) > 0.15, without


@pytest.mark.parametrize("radius", [-1, 1.5, True, 65])
def test_blur_psf_radius_not_an_integer_in_range_is_refused(radius):
    with pytest.raises(ValueError, match="blur_psf_radius_px"):
        FocusMeasureBackend(device="cpu", blur_psf_radius_px=radius)
