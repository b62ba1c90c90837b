"""flat_run_end_depth on hand-made curves and blur: known answers at both ends of the sweep."""

import torch

from hybriddepth_ros.core.models.focus_measure import FLAT_END_TOLERANCE, PeakFit, RelativeBlur, flat_run_end_depth

DIOPTERS = torch.tensor([2.0, 1.0, 0.5, 1 / 3, 0.25])
"""Five frames, nearest first."""
SIGMA_PX_PER_DIOPTER = 2.0
ALIKE = 1.0 - FLAT_END_TOLERANCE / 2


def _run_depth(curves, peaks, blur_by_pair):
    """flat_run_end_depth for one pixel per curve; blur_by_pair: per pixel, {pair index: relative blur px^2}."""
    focus = torch.tensor(curves, dtype=torch.float32).T[:, None, :]  # (N, 1, pixels)
    pixels = len(curves)
    blur_px2 = torch.zeros(4, 1, pixels)
    for pixel, pairs in enumerate(blur_by_pair):
        for pair, value in pairs.items():
            blur_px2[pair, 0, pixel] = value
    peak_index = torch.tensor([peaks])
    fit = PeakFit(torch.full((1, pixels), torch.nan), torch.ones(1, pixels), peak_index, torch.full((1, pixels), 3.0))
    blur = RelativeBlur(blur_px2, torch.zeros_like(blur_px2), 1.0, torch.zeros(2, 1, pixels), torch.zeros(2, 1, pixels))
    return flat_run_end_depth(fit, focus, blur, DIOPTERS, SIGMA_PX_PER_DIOPTER)


def test_runs_at_either_end_are_placed_by_the_first_blurred_frame_past_them():
    offset_first, offset_last = 0.7, 0.2  # diopters from the first blurred frame
    depth_m, run = _run_depth(
        [[1.0, ALIKE, 0.4, 0.2, 0.1],   # frames 0-1 alike: frame 2 is the first blurred
         [0.1, 0.2, 0.4, ALIKE, 1.0],   # frames 3-4 alike: frame 2 is the first blurred
         [0.1, 0.2, 0.4, 0.8, 1.0]],    # sharpest at the end alone: not a run
        [0, 4, 4],
        # blur_px2[k] > 0 where frame k is the sharper: frame 1 over frame 2; frame 3 over frame 2.
        [{1: (SIGMA_PX_PER_DIOPTER * offset_first) ** 2}, {2: -(SIGMA_PX_PER_DIOPTER * offset_last) ** 2}, {}],
    )
    assert run[0].tolist() == [True, True, False]
    assert torch.isclose(depth_m[0, 0], torch.tensor(1.0 / (0.5 + offset_first)))
    assert torch.isclose(depth_m[0, 1], torch.tensor(1.0 / (0.5 - offset_last)))
    assert torch.isnan(depth_m[0, 2])


def test_depth_stays_within_the_run():
    """Blur that would place the pixel beyond the run's edge frame, or past the end frame, is cut there."""
    depth_m, run = _run_depth(
        [[0.1, 0.2, 0.4, ALIKE, 1.0], [0.1, 0.2, 0.4, ALIKE, 1.0]],
        [4, 4],
        [{2: -(SIGMA_PX_PER_DIOPTER * 0.05) ** 2}, {2: -(SIGMA_PX_PER_DIOPTER * 1.0) ** 2}],
    )
    assert run[0].all()
    assert torch.isclose(depth_m[0, 0], torch.tensor(3.0))  # the edge frame, 1/3 D
    assert torch.isclose(depth_m[0, 1], torch.tensor(4.0))  # the end frame, 0.25 D


def test_unknown_lens_blur_reads_nothing():
    fit_focus = torch.tensor([[0.1, 0.2, 0.4, ALIKE, 1.0]]).T[:, None, :]
    fit = PeakFit(torch.full((1, 1), torch.nan), torch.ones(1, 1), torch.tensor([[4]]), torch.full((1, 1), 3.0))
    blur = RelativeBlur(torch.zeros(4, 1, 1), torch.zeros(4, 1, 1), 1.0, torch.zeros(2, 1, 1), torch.zeros(2, 1, 1))
    depth_m, run = flat_run_end_depth(fit, fit_focus, blur, DIOPTERS, 0.0)
    assert not run.any() and torch.isnan(depth_m).all()
