"""Align the frames of a hand-held focal stack to its reference frame.

Between the shots of a sweep the camera moves a little and focus breathing
changes the field of view by a few percent, so frame i shows the scene slightly
shifted, rotated and scaled. Fusing unaligned frames blends different scene
points into one focus curve. Each frame is aligned directly to
`stack.reference_index` by inverse-compositional Gauss-Newton (Baker and
Matthews' Lucas-Kanade variant), coarse to fine on an image pyramid: the
reference's gradients and Hessian are computed once per pyramid level, so each
iteration is one warp of the frame and one 8 x N product. Each iteration first
fits the warped frame's gain and offset to the reference (a normalised
correlation, as in ECC), so exposure changes between shots do not bias the
warp; defocus blur (a symmetric point-spread function) lowers the correlation
but does not move its maximum, and a Gaussian pre-filter on every level
narrows the sharpness gap further. It replaced OpenCV's ECC, whose forward-
additive iterations recompute the frame's gradients and Jacobian every step:
on the Pixel stack at 640x480 registration went from about 700 ms (ECC at full
size) to about 30 ms (this, at the default 240 px working width; machine shared,
medians of 11), with recovered warps within 0.1 px of known ones on 640x480
synthetic stacks either way.

Warp convention: `warps[i]` (3x3) maps a pixel (x, y, 1) of the reference view
to where the same scene point lies in the original frame i; the registered
frame is the original sampled there (OpenCV's WARP_INVERSE_MAP).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .focal_stack import FocalStack, FocalStackError

MOTIONS = {"affine": 6, "homography": 8}
"""Motion models by name, with their number of warp parameters."""
DEFAULT_REGISTRATION_WIDTH_PX = 240
"""Warps are estimated on a copy at most this wide: on 640x480 synthetic stacks with known warps
the error is 0.08 px at 640 and 320 px, 0.09 px at 240 and 0.10 px at 160; the Pixel stack at
640x480 registered in about 29 ms at 240 px against 35 ms at 320 (medians of 11, machine shared;
before _working_gray halved, now 18-22 ms at 240 px)."""
PREFILTER_SIGMA_PX = 1.0
TEMPLATE_MARGIN_FRACTION = 0.06
"""The reference's border strip left out of the fit: hand-held frames rarely cover it."""
_COARSE_ITERATIONS, _FINEST_ITERATIONS = 30, 10
_COARSE_TOLERANCE_PX, _FINEST_TOLERANCE_PX = 0.01, 0.02


class RegistrationError(FocalStackError):
    """The frames cannot be aligned well enough to be fused; the message says why."""


@dataclass
class RegistrationResult:
    """The aligned stack and how each frame was aligned.

    `warps` (N, 3, 3) follow the module's convention, in pixels of the stack.
    `correlation` is the final normalised correlation of each pre-filtered
    warped frame with the reference at the working size (1 for the
    reference). `residual_px` is the median misalignment left per frame,
    measured independently of the fit by tracking corners of the reference into the
    registered frame (0 for the reference, NaN where no corner could be
    tracked, and NaN throughout when `measure_residual` was off).
    """

    stack: FocalStack
    warps: np.ndarray
    correlation: np.ndarray
    residual_px: np.ndarray


def register_stack(
    stack: FocalStack,
    motion: str = "homography",
    *,
    max_working_width_px: int = DEFAULT_REGISTRATION_WIDTH_PX,
    min_correlation: float = 0.5,
    max_scale_change: float = 0.1,
    max_shift_fraction: float = 0.15,
    min_valid_fraction: float = 0.5,
    measure_residual: bool = True,
) -> RegistrationResult:
    """Warp every frame onto the reference frame; refuse stacks that do not align.

    Warps are estimated on a copy at most `max_working_width_px` wide and
    applied to the frames at their own size. The registered frames replicate
    their edge where the warp leaves no data; `valid_mask` marks the pixels
    every warped frame covers. Raises RegistrationError when the fit diverges,
    the reference has no texture to align on, the correlation is below
    `min_correlation`, a warp changes scale by more than `max_scale_change` or
    moves a corner by more than `max_shift_fraction` of the image size, or the
    common valid area is below `min_valid_fraction`. `measure_residual` runs
    the independent corner-tracking check (tens of ms; the fusion path skips
    it). The input `valid_mask`, if any, is not carried over.
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
    templates = [_Template(level, MOTIONS[motion]) for level in _pyramid(_prefiltered(grays[ref]))]
    if templates[0].singular:
        raise RegistrationError("the reference frame has no texture to align the other frames on")
    warps = np.tile(np.eye(3), (stack.num_frames, 1, 1))
    correlation = np.ones(stack.num_frames)
    # Outward from the reference, so each frame starts from its neighbour's warp:
    # breathing and drift grow gradually along the sweep.
    order = list(range(ref + 1, stack.num_frames)) + list(range(ref - 1, -1, -1))
    for index in order:
        neighbour = index - 1 if index > ref else index + 1
        initial_work = to_work @ warps[neighbour] @ to_full
        work_warp, correlation[index] = _align_coarse_to_fine(
            templates, _pyramid(_prefiltered(grays[index])), initial_work, index
        )
        warps[index] = to_full @ work_warp @ to_work
        if correlation[index] < min_correlation:
            raise RegistrationError(
                f"frame {index} correlates only {correlation[index]:.2f} with the reference "
                f"after alignment (< {min_correlation}): not the same view"
            )
        _check_warp_plausible(warps[index], width, height, index, max_scale_change, max_shift_fraction)

    registered = np.empty_like(stack.frames)
    registered[ref] = stack.frames[ref]
    for index in order:
        _warp(stack.frames[index], warps[index], cv2.BORDER_REPLICATE, out=registered[index])
    valid_mask = common_valid_mask(warps, width, height)
    valid_fraction = float(valid_mask.mean())
    if valid_fraction < min_valid_fraction:
        raise RegistrationError(
            f"only {valid_fraction:.0%} of the reference view is covered by every frame "
            f"(< {min_valid_fraction:.0%})"
        )

    residual_px = np.full(stack.num_frames, np.nan)
    residual_px[ref] = 0.0
    if measure_residual:
        work_mask = cv2.resize(valid_mask.astype(np.uint8), work_size, interpolation=cv2.INTER_NEAREST) > 0
        for index in order:
            work_registered = _working_gray(registered[index], work_size)
            residual_px[index] = alignment_residual_px(grays[ref], work_registered, work_mask) / work_scale

    aligned = replace(stack, frames=registered, registered=True, valid_mask=valid_mask)
    return RegistrationResult(stack=aligned, warps=warps, correlation=correlation, residual_px=residual_px)


def common_valid_mask(warps: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W) bool: reference pixels that every warp maps inside its frame ([0, W-1] x [0, H-1]).

    Each frame covers the convex quadrilateral that its warp's inverse makes of
    the frame's rectangle; the quadrilaterals are rasterised with 1/256 px
    vertices (pixels on the outline count as inside) and intersected.
    """
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)
    valid = np.ones((height, width), dtype=np.uint8)
    quad_mask = np.empty_like(valid)
    for warp in warps:
        if np.allclose(warp, np.eye(3)):
            continue
        outline = apply_homography(np.linalg.inv(warp), corners)
        quad_mask[:] = 0
        cv2.fillConvexPoly(quad_mask, np.round(outline * 256).astype(np.int32), 1, lineType=cv2.LINE_8, shift=8)
        valid &= quad_mask
    return valid.astype(bool)


def alignment_residual_px(
    reference_gray: np.ndarray, frame_gray: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Median displacement (px) of reference corners tracked into `frame_gray`; NaN if none track.

    An alignment quality figure independent of the fit: pyramidal Lucas-Kanade
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
    """Grey at `size` (width, height): halved by 2x2 means while at least twice too wide, then bilinear.

    INTER_AREA at a ratio that is not a whole number takes 0.86 ms a 640x480
    frame (to 240x180); halving and then bilinear take 0.08 ms.
    """
    gray = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    while gray.shape[1] >= 2 * size[0] and gray.shape[0] >= 2 * size[1]:
        gray = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if (gray.shape[1], gray.shape[0]) != size:
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR)
    return gray.astype(np.float32)


def _prefiltered(gray: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(gray, (0, 0), PREFILTER_SIGMA_PX)


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


class _Template:
    """One pyramid level of the reference: its inner box, steepest-descent images and inverse Hessian.

    Coordinates are normalised (centre 0, half width 1) so that the eight
    homography parameters are of similar size and the Hessian well conditioned.
    """

    def __init__(self, gray: np.ndarray, parameter_count: int) -> None:
        height, width = gray.shape
        margin_y = int(round(TEMPLATE_MARGIN_FRACTION * height))
        margin_x = int(round(TEMPLATE_MARGIN_FRACTION * width))
        self.box_size = (width - 2 * margin_x, height - 2 * margin_y)
        self.unit_px = width / 2.0
        centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
        self.to_normalised = np.array(
            [[1 / self.unit_px, 0, -centre_x / self.unit_px], [0, 1 / self.unit_px, -centre_y / self.unit_px], [0, 0, 1]]
        )
        self.from_box = np.array([[1.0, 0.0, margin_x], [0.0, 1.0, margin_y], [0.0, 0.0, 1.0]])
        inner = (slice(margin_y, height - margin_y), slice(margin_x, width - margin_x))
        grad_x = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, scale=self.unit_px / 8)[inner].ravel()
        grad_y = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, scale=self.unit_px / 8)[inner].ravel()
        rows, cols = np.mgrid[inner]
        x = ((cols - centre_x) / self.unit_px).astype(np.float32).ravel()
        y = ((rows - centre_y) / self.unit_px).astype(np.float32).ravel()
        images = [grad_x * x, grad_y * x, grad_x * y, grad_y * y, grad_x, grad_y]
        if parameter_count == 8:
            images += [-(grad_x * x + grad_y * y) * x, -(grad_x * x + grad_y * y) * y]
        # einsum, not matmul: BLAS's threads contend with OpenCV's (12 ms instead of 0.3 ms per product here).
        self.steepest_descent = np.stack(images)
        hessian = np.einsum("ij,kj->ik", self.steepest_descent, self.steepest_descent).astype(np.float64)
        self.singular = not np.all(np.isfinite(hessian)) or np.linalg.cond(hessian) > 1e12 or hessian.trace() <= 0
        self.inverse_hessian = None if self.singular else np.linalg.inv(hessian)
        values = gray[inner].ravel()
        self.centred = values - values.mean()
        self.norm = float(np.sqrt(self.centred @ self.centred))

    def step_warp(self, parameters: np.ndarray) -> np.ndarray:
        """Pixel-coordinate warp of a parameter increment (identity at zero)."""
        p = np.zeros(8)
        p[: len(parameters)] = parameters
        normalised = np.array([[1 + p[0], p[2], p[4]], [p[1], 1 + p[3], p[5]], [p[6], p[7], 1.0]])
        return np.linalg.inv(self.to_normalised) @ normalised @ self.to_normalised


def _align_coarse_to_fine(
    templates: list[_Template], frame_pyramid: list[np.ndarray], initial_warp: np.ndarray, index: int
) -> tuple[np.ndarray, float]:
    """Gauss-Newton on each level from coarsest to finest; returns the finest warp (3x3) and correlation."""
    coarsest = len(templates) - 1
    halve = np.diag([0.5, 0.5, 1.0])
    warp = np.linalg.matrix_power(halve, coarsest) @ initial_warp @ np.linalg.matrix_power(np.linalg.inv(halve), coarsest)
    correlation = 0.0
    for level in range(coarsest, -1, -1):
        template = templates[level]
        if template.singular:
            continue  # too coarse to carry texture: the finer levels do the work
        finest = level == 0
        iterations = _FINEST_ITERATIONS if finest else _COARSE_ITERATIONS
        tolerance_px = _FINEST_TOLERANCE_PX if finest else _COARSE_TOLERANCE_PX
        frame = frame_pyramid[level]
        for _ in range(iterations):
            warped = cv2.warpPerspective(
                frame, warp @ template.from_box, template.box_size,
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
            ).ravel()
            centred = warped - warped.mean()
            energy = float(centred @ centred)
            gain = float(centred @ template.centred) / max(energy, 1e-12)
            correlation = gain * np.sqrt(energy) / max(template.norm, 1e-12)
            error = gain * centred - template.centred
            step = template.inverse_hessian @ np.einsum("ij,j->i", template.steepest_descent, error).astype(np.float64)
            warp = warp @ np.linalg.inv(template.step_warp(step))
            warp = warp / warp[2, 2]
            if not np.all(np.isfinite(warp)) or np.abs(warp[:2, 2]).max() > 4 * max(frame.shape):
                raise RegistrationError(
                    f"frame {index} could not be aligned to the reference (the fit diverged at pyramid level {level})"
                )
            if np.abs(step).max() * template.unit_px < tolerance_px:
                break
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


def _warp(image: np.ndarray, warp: np.ndarray, border_mode: int, out: np.ndarray | None = None) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpPerspective(
        image, warp, (width, height), dst=out,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border_mode,
    )


def _to_u8(gray: np.ndarray) -> np.ndarray:
    return gray if gray.dtype == np.uint8 else np.clip(gray, 0, 255).astype(np.uint8)
