"""Replay focal stacks saved as image files, one stack per folder.

File naming: the focus distance in metres is the last `_` field of the file
stem, e.g. `image_3_0.80.jpg` was focused at 0.80 m (the layout of phone
captures such as ../shared/data/pixel6pro_stack). Other files in the folder
(no image extension, hidden) are ignored.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ..stack.camera import CameraIntrinsics
from ..stack.focal_stack import DEFAULT_FRAME_ID, FocalStack, FocalStackError
from .base import CaptureBackend, CaptureError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def focus_distance_from_name(path: Path) -> float:
    """Focus distance in metres from the last `_` field of the stem; CaptureError if absent."""
    field = path.stem.rsplit("_", 1)[-1] if "_" in path.stem else ""
    try:
        distance_m = float(field)
    except ValueError:
        raise CaptureError(
            f"{path}: no focus distance in the name (expected '<anything>_<metres>{path.suffix}', "
            f"last field is '{field}')"
        ) from None
    if not math.isfinite(distance_m) or distance_m <= 0:
        raise CaptureError(f"{path}: focus distance {field} is not a positive number of metres")
    return distance_m


def list_stack_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


class DirectoryCapture(CaptureBackend):
    """Replays stacks from `root`: itself a stack folder, or a folder of stack subfolders.

    Subfolders replay in sorted name order, one stack per `capture_stack()`
    call; after the last one the backend starts again when `loop` is set and
    otherwise returns None. Frames are sorted by ascending focus distance and
    the nearest-focus frame is the reference (index 0), as in the reference
    implementation.

    Size: `width_px` and `height_px` both set resize to exactly that size (the
    aspect ratio may change; x and y intrinsics scale separately); one of them
    set keeps the files' aspect ratio; neither keeps the files' size.
    Intrinsics: `intrinsics` for the files' native size (rescaled to the output
    size) or, without it, a centred pinhole with square pixels and the given
    horizontal field of view (the 70 deg default is a rough phone main camera).
    Stacks come back registered=False: the fusion step aligns them (the one
    place stacks are registered).
    Decoded stacks are cached per folder, so loops do not decode JPEGs again.
    """

    name = "directory"

    def __init__(
        self,
        root: str | Path,
        width_px: int | None = None,
        height_px: int | None = None,
        horizontal_fov_deg: float = 70.0,
        intrinsics: CameraIntrinsics | None = None,
        loop: bool = False,
        frame_id: str = DEFAULT_FRAME_ID,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CaptureError(f"stack directory {self.root} does not exist")
        for label, value in (("width_px", width_px), ("height_px", height_px)):
            if value is not None and value < 8:
                raise CaptureError(f"{label} must be >= 8, got {value}")
        if intrinsics is None:
            try:
                CameraIntrinsics.from_horizontal_fov(horizontal_fov_deg, 8, 8)
            except ValueError as exc:
                raise CaptureError(str(exc)) from None
        if list_stack_images(self.root):
            self.stack_folders = [self.root]
        else:
            self.stack_folders = sorted(p for p in self.root.iterdir() if p.is_dir() and list_stack_images(p))
        if not self.stack_folders:
            raise CaptureError(f"{self.root} holds no images and no subfolders with images")
        self.width_px = width_px
        self.height_px = height_px
        self.horizontal_fov_deg = horizontal_fov_deg
        self.intrinsics = intrinsics
        self.loop = loop
        self.frame_id = frame_id
        self._next_index = 0
        self._cache: dict[Path, FocalStack] = {}

    def capture_stack(self) -> FocalStack | None:
        if self._next_index >= len(self.stack_folders):
            if not self.loop:
                return None
            self._next_index = 0
        folder = self.stack_folders[self._next_index]
        self._next_index += 1
        if folder not in self._cache:
            self._cache[folder] = self.load_stack(folder)
        return replace(self._cache[folder], stamp_s=time.time())

    def load_stack(self, folder: Path) -> FocalStack:
        """Read, sort near to far and resize the stack in `folder`; CaptureError naming the file or folder."""
        paths = list_stack_images(folder)
        if len(paths) < 2:
            raise CaptureError(f"{folder}: a focal stack needs at least 2 images, found {len(paths)}")
        distances_m = [focus_distance_from_name(p) for p in paths]
        frames = [self._read_rgb(p) for p in paths]
        native_height, native_width = frames[0].shape[:2]
        for path, frame in zip(paths, frames):
            if frame.shape[:2] != (native_height, native_width):
                raise CaptureError(
                    f"{folder}: mixed image sizes, {path.name} is {frame.shape[1]}x{frame.shape[0]} "
                    f"but {paths[0].name} is {native_width}x{native_height}"
                )
        width, height = self._output_size(native_width, native_height)
        if (width, height) != (native_width, native_height):
            frames = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
        try:
            return FocalStack.from_frames(
                frames, distances_m, self._native_intrinsics(native_width, native_height).scaled(width, height),
                frame_id=self.frame_id,
            )
        except FocalStackError as exc:
            raise CaptureError(f"{folder}: {exc}") from exc

    def _read_rgb(self, path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CaptureError(f"{path}: unreadable image file")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _output_size(self, native_width: int, native_height: int) -> tuple[int, int]:
        if self.width_px is not None and self.height_px is not None:
            return self.width_px, self.height_px
        if self.width_px is not None:
            return self.width_px, max(1, round(native_height * self.width_px / native_width))
        if self.height_px is not None:
            return max(1, round(native_width * self.height_px / native_height)), self.height_px
        return native_width, native_height

    def _native_intrinsics(self, width: int, height: int) -> CameraIntrinsics:
        if self.intrinsics is not None:
            return self.intrinsics
        return CameraIntrinsics.from_horizontal_fov(self.horizontal_fov_deg, width, height)
