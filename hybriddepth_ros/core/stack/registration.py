"""Align the frames of a hand-held focal stack to its reference frame.

Between the shots of a sweep the camera moves a little and focus breathing
changes the field of view by a few percent, so frame i shows the scene slightly
shifted, rotated and scaled. Fusing unaligned frames blends different scene
points into one focus curve. Each frame is aligned directly to
`stack.reference_index` with OpenCV's ECC maximisation, coarse to fine on an
image pyramid. ECC's criterion is a normalised correlation, so it tolerates
exposure changes; defocus blur (a symmetric point-spread function) lowers the
correlation but does not move its maximum, and the Gaussian pre-filter inside
ECC narrows the sharpness gap further.

Warp convention: `warps[i]` (3x3) maps a pixel (x, y, 1) of the reference view
to where the same scene point lies in the original frame i; the registered
frame is the original sampled there (OpenCV's WARP_INVERSE_MAP).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .focal_stack import FocalStack, FocalStackError

MOTIONS = {"affine": cv2.MOTION_AFFINE, "homography": cv2.MOTION_HOMOGRAPHY}


class RegistrationError(FocalStackError):
    """The frames cannot be aligned well enough to be fused; the message says why."""


@dataclass
class RegistrationResult:
    """The aligned stack and how each frame was aligned.

    `warps` (N, 3, 3) follow the module's convention, in pixels of the stack.
    `correlation` is ECC's final correlation coefficient per frame (1 for the
    reference). `residual_px` is the median misalignment left per frame,
    measured independently of ECC by tracking corners of the reference into the
    registered frame (0 for the reference, NaN where no corner could be tracked).
    """

    stack: FocalStack
    warps: np.ndarray
    correlation: np.ndarray
    residual_px: np.ndarray


def register_stack(
    stack: FocalStack,
    motion: str = "homography",
    *,
    max_working_width_px: int = 800,
    min_correlation: float = 0.5,
    max_scale_change: float = 0.1,
    max_shift_fraction: float = 0.15,
    min_valid_fraction: float = 0.5,
) -> RegistrationResult:
    """Warp every frame onto the reference frame; refuse stacks that do not align.

    Warps are estimated on a copy at most `max_working_width_px` wide (as the
    reference implementation registers at 640x480) and applied to the frames at
    their own size. The registered frames replicate their edge where the warp
    leaves no data; `valid_mask` marks the pixels every warped frame covers.
    Raises RegistrationError when ECC does not converge, its correlation is
    below `min_correlation`, a warp changes scale by more than
    `max_scale_change` or moves a corner by more than `max_shift_fraction` of
    the image size, or the common valid area is below `min_valid_fraction`.
    The input `valid_mask`, if any, is not carried over.
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {sorted(MOTIONS)}, got '{motion}'")
    stack.validate()
    height, width = stack.height, stack.width
    work_scale = min(1.0, max_working_width_px / width)
    work_size = (max(8, round(width * work_scale)), max(8, round(height * work_scale)))
    grays = [_working_gray(frame, work_size) for frame in stack.frames]
    to_work = _resize_transform(width, height, *work_size)
    to_full = np.linalg.inv(to_work)

    ref = stack.reference_index
    reference_pyramid = _pyramid(grays[ref])
    warps = np.tile(np.eye(3), (stack.num_frames, 1, 1))
    correlation = np.ones(stack.num_frames)
    # Outward from the reference, so each frame starts from its neighbour's warp:
    # breathing and drift grow gradually along the sweep.
    order = list(range(ref + 1, stack.num_frames)) + list(range(ref - 1, -1, -1))
    for index in order:
        neighbour = index - 1 if index > ref else index + 1
        initial_work = to_work @ warps[neighbour] @ to_full
        work_warp, correlation[index] = _ecc_coarse_to_fine(
            reference_pyramid, _pyramid(grays[index]), MOTIONS[motion], initial_work, index
        )
        warps[index] = to_full @ work_warp @ to_work
        if correlation[index] < min_correlation:
            raise RegistrationError(
                f"frame {index} correlates only {correlation[index]:.2f} with the reference "
                f"after alignment (< {min_correlation}): not the same view"
            )
        _check_warp_plausible(warps[index], width, height, index, max_scale_change, max_shift_fraction)

    registered = np.stack([_warp(frame, warp, cv2.BORDER_REPLICATE) for frame, warp in zip(stack.frames, warps)])
    valid_mask = np.ones((height, width), dtype=bool)
    coverage = np.ones((height, width), dtype=np.float32)
    for warp in warps:
        valid_mask &= _warp(coverage, warp, cv2.BORDER_CONSTANT) >= 1.0 - 1e-4
    valid_fraction = float(valid_mask.mean())
    if valid_fraction < min_valid_fraction:
        raise RegistrationError(
            f"only {valid_fraction:.0%} of the reference view is covered by every frame "
            f"(< {min_valid_fraction:.0%})"
        )

    work_mask = cv2.resize(valid_mask.astype(np.uint8), work_size, interpolation=cv2.INTER_NEAREST) > 0
    residual_px = np.zeros(stack.num_frames)
    for index in order:
        work_registered = _working_gray(registered[index], work_size)
        residual_px[index] = alignment_residual_px(grays[ref], work_registered, work_mask) / work_scale

    aligned = replace(stack, frames=registered, registered=True, valid_mask=valid_mask)
    return RegistrationResult(stack=aligned, warps=warps, correlation=correlation, residual_px=residual_px)


def alignment_residual_px(
    reference_gray: np.ndarray, frame_gray: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Median displacement (px) of reference corners tracked into `frame_gray`; NaN if none track.

    An alignment quality figure independent of ECC: pyramidal Lucas-Kanade
    follows up to 200 well-textured points; the median ignores points on
    moving objects or at parallax the global warp cannot explain. A large
    window (41 px) keeps the bias that a defocus difference puts on windowed
    matching below about 0.2 px.
    """
    reference_u8 = _to_u8(reference_gray)
    frame_u8 = _to_u8(frame_gray)
    mask_u8 = None if mask is None else mask.astype(np.uint8)
    corners = cv2.goodFeaturesToTrack(
        reference_u8, maxCorners=200, qualityLevel=0.01, minDistance=8, mask=mask_u8, blockSize=7
    )
    if corners is None:
        return float("nan")
    tracked, status, _ = cv2.calcOpticalFlowPyrLK(
        reference_u8, frame_u8, corners, None, winSize=(41, 41), maxLevel=3,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01),
    )
    ok = status.reshape(-1) == 1
    if not np.any(ok):
        return float("nan")
    shifts = np.linalg.norm((tracked - corners).reshape(-1, 2)[ok], axis=1)
    return float(np.median(shifts))


def apply_homography(warp: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """Map (K, 2) pixel coordinates through a 3x3 warp."""
    homogeneous = np.c_[points_xy, np.ones(len(points_xy))] @ np.asarray(warp, dtype=np.float64).T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def _working_gray(frame_rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    gray = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    if (gray.shape[1], gray.shape[0]) != size:
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray.astype(np.float32)


def _resize_transform(width: int, height: int, new_width: int, new_height: int) -> np.ndarray:
    """Pixel-coordinate map of cv2.resize (pixel centres at integer coordinates)."""
    sx, sy = new_width / width, new_height / height
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _pyramid(gray: np.ndarray, min_side_px: int = 48) -> list[np.ndarray]:
    """Finest first; cv2.pyrDown halves coordinates exactly (x_coarse = x / 2)."""
    levels = [gray]
    while min(levels[-1].shape) // 2 >= min_side_px:
        levels.append(cv2.pyrDown(levels[-1]))
    return levels


def _ecc_coarse_to_fine(
    reference_pyramid: list[np.ndarray],
    frame_pyramid: list[np.ndarray],
    motion_type: int,
    initial_warp: np.ndarray,
    index: int,
) -> tuple[np.ndarray, float]:
    """ECC on each level from coarsest to finest; returns the finest warp (3x3) and correlation."""
    coarsest = len(reference_pyramid) - 1
    halve = np.diag([0.5, 0.5, 1.0])
    warp = np.linalg.matrix_power(halve, coarsest) @ initial_warp @ np.linalg.matrix_power(
        np.linalg.inv(halve), coarsest
    )
    correlation = 0.0
    for level in range(coarsest, -1, -1):
        finest = level == 0
        max_iterations, min_gain = (100, 1e-6) if finest else (60, 1e-5)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, max_iterations, min_gain)
        ecc_warp = warp.astype(np.float32) if motion_type == cv2.MOTION_HOMOGRAPHY else warp[:2].astype(np.float32)
        try:
            correlation, ecc_warp = cv2.findTransformECC(
                reference_pyramid[level], frame_pyramid[level], ecc_warp, motion_type, criteria, None, 5
            )
        except cv2.error as exc:
            raise RegistrationError(
                f"frame {index} could not be aligned to the reference (ECC did not converge at "
                f"pyramid level {level}): {exc.err}"
            ) from exc
        warp = np.vstack([ecc_warp, [0.0, 0.0, 1.0]]) if ecc_warp.shape[0] == 2 else ecc_warp.astype(np.float64)
        warp = warp / warp[2, 2]
        if not finest:
            warp = np.linalg.inv(halve) @ warp @ halve
    return warp, float(correlation)


def _check_warp_plausible(
    warp: np.ndarray, width: int, height: int, index: int, max_scale_change: float, max_shift_fraction: float
) -> None:
    """Reject warps no hand-held sweep produces: large zoom, large shift, folded image."""
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)
    centre = np.array([[(width - 1) / 2.0, (height - 1) / 2.0]])
    step = np.array([[1.0, 0.0], [0.0, 1.0]])
    mapped = apply_homography(warp, np.vstack([corners, centre, centre + step]))
    jacobian = (mapped[5:7] - mapped[4]).T
    det = float(np.linalg.det(jacobian))
    scale = np.sqrt(abs(det))
    if det <= 0 or not (1.0 / (1.0 + max_scale_change) <= scale <= 1.0 + max_scale_change):
        raise RegistrationError(
            f"frame {index}: implausible warp scale {scale:.3f} (allowed 1 +/- {max_scale_change})"
        )
    shift_px = float(np.max(np.linalg.norm(mapped[:5] - np.vstack([corners, centre]), axis=1)))
    if shift_px > max_shift_fraction * max(width, height):
        raise RegistrationError(
            f"frame {index}: warp moves the image by {shift_px:.0f} px "
            f"(> {max_shift_fraction:.0%} of {max(width, height)} px)"
        )
    edges = np.roll(mapped[:4], -1, axis=0) - mapped[:4]
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not (np.all(turns > 0) or np.all(turns < 0)):
        raise RegistrationError(f"frame {index}: warp folds the image (non-convex outline)")


def _warp(image: np.ndarray, warp: np.ndarray, border_mode: int) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpPerspective(
        image, warp, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border_mode
    )


def _to_u8(gray: np.ndarray) -> np.ndarray:
    return gray if gray.dtype == np.uint8 else np.clip(gray, 0, 255).astype(np.uint8)
