"""Your own recordings: focal-stack folders as the directory backend reads them, each with its ground-truth depth.

Layout (one sample per folder; `root` is one sample folder or holds them):
    <root>/<sample>/<anything>_<focus metres>.png   the frames (core/capture/directory.py naming)
    <root>/<sample>/ground_truth_depth.npy          float32 metres, (H, W) of the frames; NaN or 0: none
    <root>/<sample>/stack_info.yaml                 optional: intrinsics, registered, stamps (the recorder writes it)
The ground truth is a .npy, not an image, so that the folder stays a valid
stack folder: `focus_sweep_node` with the `directory` backend replays a
recording as it is. Units are checked: integer arrays (millimetres?) and
float arrays whose median exceeds 100 m are refused.

`dataset_recorder_node` writes this layout from a live `focal_stack` topic
and a depth camera's topic; the depth must already be in the focal-stack
camera's view (e.g. an RGB-D camera's depth aligned to its colour camera
mounted as the focus camera): `depth_to_stack_size` only rescales a depth map
of the same aspect ratio (nearest neighbour) and refuses anything else.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import yaml

from ..capture.base import CaptureError
from ..capture.directory import DirectoryCapture
from ..stack.camera import CameraIntrinsics
from ..stack.focal_stack import FocalStack
from .files import atomic_directory
from .sample import DatasetError, DepthDataset, DepthSample, finite_positive, require_samples

GROUND_TRUTH_FILE = "ground_truth_depth.npy"
INFO_FILE = "stack_info.yaml"
MAX_PLAUSIBLE_MEDIAN_DEPTH_M = 100.0
"""A median ground truth above this is taken for millimetres saved as metres, and refused."""
ASPECT_TOLERANCE = 0.01


def depth_to_stack_size(depth_m: np.ndarray, height: int, width: int, source: str) -> np.ndarray:
    """`depth_m` at (height, width): as it is, or nearest-neighbour rescaled when only the resolution differs."""
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if depth_m.shape == (height, width):
        return depth_m
    depth_h, depth_w = depth_m.shape
    if abs(depth_w / depth_h - width / height) > ASPECT_TOLERANCE * width / height:
        raise DatasetError(
            f"{source}: depth is {depth_w}x{depth_h} but the focal stack is {width}x{height}: a different aspect "
            "ratio means the depth is not in the focal-stack camera's view (register it to that camera first)"
        )
    return cv2.resize(depth_m, (width, height), interpolation=cv2.INTER_NEAREST)


def write_recording_sample(
    root: str | Path, name: str, stack: FocalStack, depth_m: np.ndarray, info: dict | None = None
) -> Path:
    """Write one sample folder `root/name` atomically (frames, ground truth, stack_info.yaml); return its path."""
    depth_m = depth_to_stack_size(depth_m, stack.height, stack.width, f"{root}/{name}")
    intrinsics = stack.intrinsics
    record = {
        "registered": bool(stack.registered),
        "reference_index": int(stack.reference_index),
        "frame_id": stack.frame_id,
        "stamp_s": float(stack.stamp_s),
        "camera": {k: getattr(intrinsics, k) for k in ("fx", "fy", "cx", "cy", "width", "height")},
        **(info or {}),
    }
    folder = Path(root) / name
    with atomic_directory(folder) as partial:
        for index, (frame, distance_m) in enumerate(zip(stack.frames, stack.focus_distances_m)):
            path = partial / f"frame_{index:02d}_{float(distance_m):.6f}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
                raise OSError(f"{path}: could not write the frame")
        np.save(partial / GROUND_TRUTH_FILE, np.asarray(depth_m, dtype=np.float32))
        (partial / INFO_FILE).write_text(yaml.safe_dump(record, sort_keys=False))
    return folder


def read_ground_truth(path: Path, height: int, width: int) -> np.ndarray:
    """(H, W) float32 metres, NaN where none; DatasetError naming `path` for a wrong file, size or unit."""
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npy array: {exc}") from None
    if not np.issubdtype(depth.dtype, np.floating):
        raise DatasetError(
            f"{path}: depth is {depth.dtype}; save float32 metres (integer depth is usually millimetres)"
        )
    if depth.shape != (height, width):
        raise DatasetError(f"{path}: depth is {tuple(depth.shape)} but the frames are ({height}, {width})")
    depth = np.asarray(depth, dtype=np.float32)
    valid = finite_positive(depth)
    if valid.any() and float(np.median(depth[valid])) > MAX_PLAUSIBLE_MEDIAN_DEPTH_M:
        raise DatasetError(
            f"{path}: median depth {float(np.median(depth[valid])):.1f} is not plausible in metres "
            "(millimetres? divide by 1000)"
        )
    return np.where(valid, depth, np.nan).astype(np.float32)


class RecordingFolders(DepthDataset):
    """Recorded focal stacks with ground truth (the layout above); pixels above `max_depth_m` are not scored."""

    kind = "recordings"

    def __init__(self, root: str | Path, max_depth_m: float | None = None) -> None:
        self.root = Path(root)
        self.max_depth_m = max_depth_m
        try:
            self.folders = DirectoryCapture(self.root).stack_folders
        except CaptureError as exc:
            raise DatasetError(f"{exc} (recordings: stack folders of <name>_<metres>.png + {GROUND_TRUTH_FILE})") from None
        missing = [folder / GROUND_TRUTH_FILE for folder in self.folders if not (folder / GROUND_TRUTH_FILE).is_file()]
        if missing:
            raise DatasetError(f"{missing[0]}: missing (every sample folder needs its ground truth)"
                               + (f"; {len(missing) - 1} more folders lack it" if len(missing) > 1 else ""))
        require_samples(len(self.folders), str(self.root), "no sample folders")

    def __len__(self) -> int:
        return len(self.folders)

    def sample(self, index: int) -> DepthSample:
        folder = self.folders[index]
        info = self._info(folder)
        intrinsics = CameraIntrinsics(**info["camera"]) if "camera" in info else None
        try:
            stack = DirectoryCapture(folder, intrinsics=intrinsics).load_stack(folder)
        except CaptureError as exc:
            raise DatasetError(str(exc)) from None
        stack = dataclasses.replace(
            stack,
            registered=bool(info.get("registered", False)),
            stamp_s=float(info.get("stamp_s", 0.0)),
            frame_id=str(info.get("frame_id", stack.frame_id)),
        )
        depth_m = read_ground_truth(folder / GROUND_TRUTH_FILE, stack.height, stack.width)
        valid = finite_positive(depth_m, self.max_depth_m)
        name = folder.name if folder != self.root else self.root.name
        return DepthSample(name=name, depth_m=depth_m, valid_mask=valid, stack=stack)

    @staticmethod
    def _info(folder: Path) -> dict:
        path = folder / INFO_FILE
        if not path.is_file():
            return {}
        try:
            info = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise DatasetError(f"{path}: not valid YAML: {exc}") from None
        camera = info.get("camera")
        if camera is not None:
            keys = ("fx", "fy", "cx", "cy", "width", "height")
            if not isinstance(camera, dict) or any(not isinstance(camera.get(k), (int, float)) for k in keys) \
                    or not all(math.isfinite(camera[k]) for k in keys):
                raise DatasetError(f"{path}: 'camera' needs numbers {', '.join(keys)}")
            info["camera"] = {k: (int(camera[k]) if k in ("width", "height") else float(camera[k])) for k in keys}
        return info

    def describe(self) -> str:
        return f"recordings {self.root}: {len(self)} stacks"
