"""Replay focal stacks saved as image files, one stack per folder.

File naming: the focus distance in metres is the last `_` field of the file
stem, e.g. `image_3_0.80.jpg` was focused at 0.80 m (the layout of phone
captures such as ../shared/data/pixel6pro_stack). Other files in the folder
(no image extension, hidden) are ignored.

A damaged file (a JPEG cut short or with garbage inside, which OpenCV would
decode with grey rows) fails the stack with a CaptureError naming the file
(image_decode.py), so it is reported as an ERROR and never published. Memory
stays bounded: at most MAX_FRAMES files per stack, each at most
MAX_IMAGE_FILE_BYTES and MAX_IMAGE_SIDE_PX squared pixels, resized as soon as
it is decoded, and decoded stacks cached up to `max_cache_bytes`.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ..stack.camera import CameraIntrinsics
from ..stack.focal_stack import DEFAULT_FRAME_ID, MAX_FRAMES, MAX_IMAGE_SIDE_PX, FocalStack, FocalStackError
from .base import CaptureBackend, CaptureError
from .image_decode import ImageDecodeError, decode_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
MAX_IMAGE_FILE_BYTES = 256 * 1024 * 1024
"""Largest image file read: an uncompressed 8192x8192 RGB BMP is 201 MB."""
DEFAULT_CACHE_BYTES = 512 * 1024 * 1024
"""Decoded stacks kept for replay loops: 58 stacks of ten 640x480 frames."""


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
    """The image files of a stack folder, sorted by name; CaptureError when the folder cannot be listed."""
    try:
        return sorted(
            p for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
    except OSError as exc:
        raise CaptureError(f"{folder}: cannot list the folder: {exc.strerror or exc}") from None


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
    Decoded stacks are cached per folder, least recently used dropped first
    beyond `max_cache_bytes` (0: no cache), so loops do not decode JPEGs again.
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
        max_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CaptureError(f"stack directory {self.root} does not exist")
        for label, value in (("width_px", width_px), ("height_px", height_px)):
            if value is not None and not 8 <= value <= MAX_IMAGE_SIDE_PX:
                raise CaptureError(f"{label} must be in 8..{MAX_IMAGE_SIDE_PX}, got {value}")
        if max_cache_bytes < 0:
            raise CaptureError(f"max_cache_bytes must be >= 0, got {max_cache_bytes}")
        if intrinsics is None:
            try:
                CameraIntrinsics.from_horizontal_fov(horizontal_fov_deg, 8, 8)
            except ValueError as exc:
                raise CaptureError(str(exc)) from None
        if list_stack_images(self.root):
            self.stack_folders = [self.root]
        else:
            try:
                subfolders = sorted(p for p in self.root.iterdir() if p.is_dir())
            except OSError as exc:
                raise CaptureError(f"{self.root}: cannot list the folder: {exc.strerror or exc}") from None
            self.stack_folders = [p for p in subfolders if list_stack_images(p)]
        if not self.stack_folders:
            raise CaptureError(f"{self.root} holds no images and no subfolders with images")
        self.width_px = width_px
        self.height_px = height_px
        self.horizontal_fov_deg = horizontal_fov_deg
        self.intrinsics = intrinsics
        self.loop = loop
        self.frame_id = frame_id
        self.max_cache_bytes = max_cache_bytes
        self._next_index = 0
        self._cache: collections.OrderedDict[Path, FocalStack] = collections.OrderedDict()

    def capture_stack(self) -> FocalStack | None:
        if self._next_index >= len(self.stack_folders):
            if not self.loop:
                return None
            self._next_index = 0
        folder = self.stack_folders[self._next_index]
        self._next_index += 1
        stack = self._cache.get(folder)
        if stack is None:
            stack = self.load_stack(folder)
            self._remember(folder, stack)
        else:
            self._cache.move_to_end(folder)
        return replace(stack, stamp_s=time.time())

    def _remember(self, folder: Path, stack: FocalStack) -> None:
        if stack.frames.nbytes > self.max_cache_bytes:
            return
        self._cache[folder] = stack
        while sum(s.frames.nbytes for s in self._cache.values()) > self.max_cache_bytes:
            self._cache.popitem(last=False)

    def load_stack(self, folder: Path) -> FocalStack:
        """Read, sort near to far and resize the stack in `folder`; CaptureError naming the file or folder."""
        paths = list_stack_images(folder)
        if len(paths) < 2:
            raise CaptureError(f"{folder}: a focal stack needs at least 2 images, found {len(paths)}")
        if len(paths) > MAX_FRAMES:
            raise CaptureError(f"{folder}: a focal stack holds at most {MAX_FRAMES} images, found {len(paths)}")
        distances_m = [focus_distance_from_name(p) for p in paths]
        frames = []
        native_size = output_size = None
        for path in paths:  # each frame resized as soon as it is decoded: one native-size frame at a time
            frame = self._read_rgb(path)
            size = (frame.shape[1], frame.shape[0])
            if native_size is None:
                native_size, output_size = size, self._output_size(*size)
            elif size != native_size:
                raise CaptureError(
                    f"{folder}: mixed image sizes, {path.name} is {size[0]}x{size[1]} "
                    f"but {paths[0].name} is {native_size[0]}x{native_size[1]}"
                )
            if output_size != native_size:
                frame = cv2.resize(frame, output_size, interpolation=cv2.INTER_AREA)
            frames.append(frame)
        (native_width, native_height), (width, height) = native_size, output_size
        try:
            return FocalStack.from_frames(
                frames, distances_m, self._native_intrinsics(native_width, native_height).scaled(width, height),
                frame_id=self.frame_id,
            )
        except FocalStackError as exc:
            raise CaptureError(f"{folder}: {exc}") from exc

    @staticmethod
    def _read_rgb(path: Path) -> np.ndarray:
        """The file's pixels; CaptureError naming the file when it is unreadable, too large or damaged."""
        try:
            size_bytes = path.stat().st_size
            if size_bytes > MAX_IMAGE_FILE_BYTES:
                raise CaptureError(f"{path}: {size_bytes} bytes, larger than the {MAX_IMAGE_FILE_BYTES} of an image")
            data = path.read_bytes()
        except OSError as exc:
            raise CaptureError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
        try:
            return decode_rgb(data, max_pixels=MAX_IMAGE_SIDE_PX * MAX_IMAGE_SIDE_PX)
        except ImageDecodeError as exc:
            raise CaptureError(f"{path}: unreadable image file: {exc}") from None

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
