"""The focal stack: N frames of one view, each with the focus distance it was taken at."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .camera import CameraIntrinsics

DEFAULT_FRAME_ID = "camera_optical_frame"

# What a real variable-focus camera can produce; anything beyond is a configuration or input error.
MAX_FRAMES = 64
"""Frames per stack: sweeps of 5-10 frames are usual; 64 at 640x480 is already 59 MB of RGB."""
MAX_IMAGE_SIDE_PX = 8192
"""Longest image side: 8K video; phone photos (4080x3072) are resized below it."""
MIN_FOCUS_DISTANCE_M = 0.01
"""Nearest focus: macro lenses focus from about 1 cm."""
MAX_FOCUS_DISTANCE_M = 1000.0
"""Farthest focus: beyond a few hundred metres every lens is at infinity focus."""


class FocalStackError(ValueError):
    """A focal stack that cannot be fused; the message says what is wrong with it."""


@dataclass
class FocalStack:
    """Frames as an (N, H, W, 3) uint8 RGB array, focus distances in metres, intrinsics.

    Ordering rule (the same as the `FocalStack` message): frame i was taken with
    the lens focused at `focus_distances_m[i]`, strictly increasing (near to far).
    `reference_index` names the view that depth is reported in (registration
    target and the relative branch's input). `registered` says whether frames
    are already aligned to it. `stamp_s` is the capture time of the reference
    frame in seconds; `frame_id` the camera optical frame.
    """

    frames: np.ndarray
    focus_distances_m: np.ndarray
    intrinsics: CameraIntrinsics
    reference_index: int = 0
    registered: bool = True
    stamp_s: float = 0.0
    frame_id: str = DEFAULT_FRAME_ID
    valid_mask: np.ndarray | None = field(default=None)
    """Optional (H, W) bool: pixels that every registered frame covers."""

    @classmethod
    def from_frames(
        cls,
        frames: Sequence[np.ndarray],
        focus_distances_m: Sequence[float],
        intrinsics: CameraIntrinsics,
        stamps_s: Sequence[float] | float = 0.0,
        frame_id: str = DEFAULT_FRAME_ID,
    ) -> "FocalStack":
        """The stack of captured frames in any order: sorted near to far, validated, not yet registered.

        The one way a capture backend turns frames into a stack. The nearest-focus
        frame is the reference (the reference implementation registers to it), and
        `stamp_s` is its capture time when `stamps_s` gives one per frame.
        Raises FocalStackError naming the first problem (mixed sizes, bad distances...).
        """
        distances_m = np.asarray(focus_distances_m, dtype=np.float64).reshape(-1)
        if len(frames) != distances_m.size:
            raise FocalStackError(f"{len(frames)} frames but {distances_m.size} focus distances")
        if len(frames) == 0:
            raise FocalStackError("a focal stack needs at least 2 frames, got 0")
        shapes = [np.shape(frame) for frame in frames]
        for index, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise FocalStackError(f"frame {index} is {shape}, frame 0 is {shapes[0]}: frames differ in size")
        order = np.argsort(distances_m, kind="stable")
        stamp_s = float(stamps_s) if np.ndim(stamps_s) == 0 else float(np.asarray(stamps_s, dtype=np.float64)[order[0]])
        return cls(
            frames=np.stack([np.asarray(frames[i]) for i in order]),
            focus_distances_m=distances_m[order],
            intrinsics=intrinsics,
            reference_index=0,
            registered=False,
            stamp_s=stamp_s,
            frame_id=frame_id,
        ).validate()

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def reference_frame(self) -> np.ndarray:
        return self.frames[self.reference_index]

    def validate(self) -> "FocalStack":
        """Raise FocalStackError naming the first problem; return self when fusable."""
        validate_focus_distances(self.focus_distances_m, expected_count=None)
        frames = self.frames
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
            shape = getattr(frames, "shape", None)
            raise FocalStackError(f"frames must be an (N, H, W, 3) array, got shape {shape}")
        if frames.dtype != np.uint8:
            raise FocalStackError(f"frames must be uint8 RGB, got {frames.dtype}")
        if frames.shape[0] != len(self.focus_distances_m):
            raise FocalStackError(
                f"{frames.shape[0]} frames but {len(self.focus_distances_m)} focus distances"
            )
        if frames.shape[0] < 2:
            raise FocalStackError(f"a focal stack needs at least 2 frames, got {frames.shape[0]}")
        if frames.shape[0] > MAX_FRAMES:
            raise FocalStackError(f"a focal stack holds at most {MAX_FRAMES} frames, got {frames.shape[0]}")
        if frames.shape[1] < 8 or frames.shape[2] < 8:
            raise FocalStackError(f"frames of {frames.shape[2]}x{frames.shape[1]} are too small")
        if max(frames.shape[1], frames.shape[2]) > MAX_IMAGE_SIDE_PX:
            raise FocalStackError(
                f"frames of {frames.shape[2]}x{frames.shape[1]} exceed {MAX_IMAGE_SIDE_PX} px on a side"
            )
        if not 0 <= self.reference_index < frames.shape[0]:
            raise FocalStackError(
                f"reference_index {self.reference_index} outside 0..{frames.shape[0] - 1}"
            )
        try:
            self.intrinsics.validate()
        except ValueError as exc:
            raise FocalStackError(f"camera intrinsics unusable: {exc}") from exc
        if (self.intrinsics.width, self.intrinsics.height) != (frames.shape[2], frames.shape[1]):
            raise FocalStackError(
                f"camera info is for {self.intrinsics.width}x{self.intrinsics.height} "
                f"but frames are {frames.shape[2]}x{frames.shape[1]}"
            )
        if self.valid_mask is not None and self.valid_mask.shape != frames.shape[1:3]:
            raise FocalStackError(
                f"valid_mask shape {self.valid_mask.shape} != frame size {frames.shape[1:3]}"
            )
        return self


def validate_focus_distances(focus_distances_m, expected_count: int | None) -> np.ndarray:
    """Check focus distances are finite, within what a lens can focus at and strictly increasing; float64 array.

    At most MAX_FRAMES of them, each in MIN_FOCUS_DISTANCE_M..MAX_FOCUS_DISTANCE_M.
    """
    distances = np.asarray(focus_distances_m, dtype=np.float64).reshape(-1)
    if distances.size == 0:
        raise FocalStackError("no focus distances")
    if expected_count is not None and distances.size != expected_count:
        raise FocalStackError(f"{distances.size} focus distances for {expected_count} frames")
    if distances.size > MAX_FRAMES:
        raise FocalStackError(f"at most {MAX_FRAMES} focus distances, got {distances.size}")
    if not np.all(np.isfinite(distances)):
        raise FocalStackError(f"focus distances must be finite, got {distances.tolist()}")
    if np.any(distances <= 0):
        raise FocalStackError(f"focus distances must be > 0 m, got {distances.tolist()}")
    if np.any(distances < MIN_FOCUS_DISTANCE_M) or np.any(distances > MAX_FOCUS_DISTANCE_M):
        raise FocalStackError(
            f"focus distances must be within {MIN_FOCUS_DISTANCE_M:g}..{MAX_FOCUS_DISTANCE_M:g} m "
            f"(what a lens can focus at), got {distances.tolist()}"
        )
    steps = np.diff(distances)
    if np.any(steps == 0):
        raise FocalStackError(f"duplicated focus distances: {distances.tolist()}")
    if np.any(steps < 0):
        raise FocalStackError(
            f"focus distances must be strictly increasing (near to far), got {distances.tolist()}"
        )
    return distances



def diopter_sweep(near_m: float, far_m: float, count: int) -> np.ndarray:
    """`count` focus distances from near to far, evenly spaced in diopters (1/m).

    Defocus blur is linear in diopters, so even diopter steps give even blur steps.
    """
    if count < 2:
        raise ValueError(f"a sweep needs at least 2 focus distances, got {count}")
    if not (0 < near_m < far_m) or not math.isfinite(far_m):
        raise ValueError(f"need 0 < near < far (finite), got near={near_m} far={far_m}")
    diopters = np.linspace(1.0 / near_m, 1.0 / far_m, count)
    return 1.0 / diopters
