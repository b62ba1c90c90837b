"""What a real camera can produce: stacks and intrinsics beyond it are refused with the reason."""

import math

import numpy as np
import pytest

from hybriddepth_ros.core.stack.camera import MAX_FIELD_OF_VIEW_DEG, MIN_FIELD_OF_VIEW_DEG, CameraIntrinsics
from hybriddepth_ros.core.stack.focal_stack import (
    MAX_FOCUS_DISTANCE_M,
    MAX_FRAMES,
    MAX_IMAGE_SIDE_PX,
    MIN_FOCUS_DISTANCE_M,
    FocalStack,
    FocalStackError,
    validate_focus_distances,
)

WIDTH, HEIGHT = 64, 48


def pinhole(fx=60.0, fy=60.0, cx=31.5, cy=23.5, width=WIDTH, height=HEIGHT):
    return CameraIntrinsics(fx, fy, cx, cy, width, height)


def stack(count=3, width=WIDTH, height=HEIGHT, distances_m=None, intrinsics=None):
    distances_m = np.geomspace(0.3, 3.0, count) if distances_m is None else np.asarray(distances_m)
    return FocalStack(
        frames=np.zeros((len(distances_m), height, width, 3), np.uint8),
        focus_distances_m=distances_m,
        intrinsics=intrinsics or pinhole(width=width, height=height, cx=(width - 1) / 2, cy=(height - 1) / 2),
    )


def test_a_camera_like_stack_passes():
    stack().validate()
    stack(count=MAX_FRAMES).validate()
    stack(distances_m=[MIN_FOCUS_DISTANCE_M, MAX_FOCUS_DISTANCE_M]).validate()


@pytest.mark.parametrize(
    "distances_m, words",
    [
        ([1e-30, 1.0], "within 0.01..1000 m"),
        ([0.5, 1e6], "within 0.01..1000 m"),
        (np.geomspace(0.3, 3.0, MAX_FRAMES + 1), f"at most {MAX_FRAMES} focus distances"),
    ],
)
def test_focus_distances_beyond_a_lens_are_refused(distances_m, words):
    with pytest.raises(FocalStackError, match=words):
        validate_focus_distances(distances_m, expected_count=None)


def test_frames_larger_than_a_camera_makes_are_refused():
    with pytest.raises(FocalStackError, match=f"exceed {MAX_IMAGE_SIDE_PX} px on a side"):
        stack(count=2, width=MAX_IMAGE_SIDE_PX + 1, height=8).validate()


@pytest.mark.parametrize(
    "intrinsics, words",
    [
        (pinhole(fx=1e-30), "fx=1e-30 px gives a 180 deg horizontal field of view"),
        (pinhole(fy=1e-30), "vertical field of view"),
        (pinhole(fx=1e30), r"fx=1e\+30 px gives a"),
        (pinhole(cx=-1e9), "principal point cx"),
        (pinhole(cy=3 * HEIGHT), "principal point cy"),
        (pinhole(fx=math.inf), "not finite"),
    ],
)
def test_intrinsics_no_camera_has_are_refused(intrinsics, words):
    with pytest.raises(ValueError, match=words):
        intrinsics.validate()
    with pytest.raises(FocalStackError, match="camera intrinsics unusable"):
        stack(intrinsics=intrinsics).validate()


def test_field_of_view_bounds_are_inclusive_and_hold_the_configurable_range():
    for fov_deg in (MIN_FIELD_OF_VIEW_DEG, MAX_FIELD_OF_VIEW_DEG):
        CameraIntrinsics.from_horizontal_fov(fov_deg, 1000, 1000).validate()
    for fov_deg in (1.0, 70.0, 179.0):  # camera.horizontal_fov_deg's range, on a 4:3 sensor
        CameraIntrinsics.from_horizontal_fov(fov_deg, 4000, 3000).validate()
