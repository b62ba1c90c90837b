"""The NYU-protocol renderer against the reference README's rule, computed by hand on small scenes."""

import math

import numpy as np
import pytest
import torch

from hybriddepth_ros.core.sim.nyu_protocol import (
    NYU_LENS,
    gather_width_px,
    nyu_focus_distances_m,
    render_nyu_focal_stack,
)


def width_px(depth_m: float, focus_m: float) -> float:
    """c = CoC / 2 / pixel, CoC = A f |d - s| / (d (s - f)), A = f / 8, f = 50 mm, 12 um pixels (README)."""
    f_m, aperture_m, pitch_m = 0.05, 0.05 / 8, 12e-6
    return aperture_m * f_m * abs(depth_m - focus_m) / (depth_m * (focus_m - f_m)) / 2 / pitch_m


def gathered_by_hand(image, widths, y, x):
    """The README's 7x7 gather at (y, x), written out pixel by pixel."""
    if widths[y][x] <= 1:
        return image[y][x]
    numerator = denominator = 0.0
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            qy, qx = y + dy, x + dx
            if 0 <= qy < len(image) and 0 <= qx < len(image[0]) and widths[qy][qx] > 1:
                c = widths[qy][qx]
                weight = math.exp(-2 * (dy * dy + dx * dx) / c**2) / c**2
                numerator += weight * image[qy][qx]
                denominator += weight
    return numerator / denominator


def test_lens_and_width_follow_the_readme():
    assert (NYU_LENS.focal_length_m, NYU_LENS.f_number, NYU_LENS.pixel_pitch_m) == (0.05, 8.0, 12e-6)
    depth = torch.tensor([[0.5, 1.0, 2.0, 7.5]])
    expected = [width_px(d, 1.0) for d in (0.5, 1.0, 2.0, 7.5)]
    assert gather_width_px(depth, 1.0).tolist()[0] == pytest.approx(expected, rel=1e-6)


def test_step_edge_two_depths_matches_the_hand_computed_gather():
    """Left: in focus (c = 0); right: 1.6 m, blurred, with an intensity step inside it; a band at 3 m below."""
    focus_m = 1.0
    height, width = 9, 14
    depth = np.full((height, width), focus_m)
    depth[:, 7:] = 1.6
    depth[6:, 7:] = 3.0  # a second blurred depth: neighbours with other widths
    image = np.zeros((height, width))
    image[:, 10:] = 1.0
    image[:, :4] = 0.5
    widths = [[width_px(d, focus_m) for d in row] for row in depth]
    assert widths[0][0] == 0 and 1 < widths[0][10] < widths[8][10], "two blurred widths, both over one pixel"

    frame = render_nyu_focal_stack(image, depth, [focus_m])[0, ..., 0].numpy()
    for y in range(height):
        for x in range(width):
            assert frame[y, x] == pytest.approx(gathered_by_hand(image, widths, y, x), abs=1e-6), (y, x)
    # In-focus pixels keep their value and never leak into the blurred side (the gather skips them).
    np.testing.assert_array_equal(frame[:, :7], image[:, :7])
    assert frame[3, 7] == pytest.approx(gathered_by_hand(image, widths, 3, 7))
    assert 0 < frame[3, 9] < frame[3, 10] < 1


def test_focus_distances_are_linear_between_valid_extremes():
    depth = np.array([[0.0, 0.8, 1.2], [2.0, 3.8, 12.0]])  # 0 and 12 m are not valid ground truth
    np.testing.assert_allclose(nyu_focus_distances_m(depth, 5), np.linspace(0.8, 3.8, 5))
    with pytest.raises(ValueError, match="no valid pixel"):
        nyu_focus_distances_m(np.zeros((2, 2)), 5)


def test_pixels_without_valid_depth_keep_their_value_and_are_not_neighbours():
    depth = np.full((7, 7), 3.0)
    depth[3, 3] = 0.0  # a hole in the ground truth
    image = np.random.default_rng(0).random((7, 7, 3))
    frames = render_nyu_focal_stack(image, depth, [1.0]).numpy()
    np.testing.assert_array_equal(frames[0, 3, 3], image[3, 3].astype(np.float32))
    widths = [[width_px(d, 1.0) if d > 0 else 0.0 for d in row] for row in depth]
    for channel in range(3):
        expected = gathered_by_hand(image[..., channel].tolist(), widths, 3, 4)
        assert frames[0, 3, 4, channel] == pytest.approx(expected, abs=1e-6)


def test_every_focus_distance_gives_a_frame_in_the_input_scale():
    rgb = (np.random.default_rng(1).random((16, 20, 3)) * 255).astype(np.uint8)
    depth = np.linspace(0.6, 4.0, 16 * 20).reshape(16, 20)
    frames = render_nyu_focal_stack(rgb, depth, nyu_focus_distances_m(depth, 5))
    assert frames.shape == (5, 16, 20, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 255
    for frame, focus_m in zip(frames, nyu_focus_distances_m(depth, 5)):
        in_focus = gather_width_px(torch.from_numpy(depth).float(), focus_m) <= 1
        assert in_focus.any()
        torch.testing.assert_close(frame[in_focus], torch.from_numpy(rgb).float()[in_focus], rtol=0, atol=0)
        assert not torch.equal(frame[~in_focus], torch.from_numpy(rgb).float()[~in_focus])
