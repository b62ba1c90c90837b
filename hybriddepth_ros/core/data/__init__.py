"""Datasets for evaluation and training: NYU Depth v2, DDFF12, your recordings, ROS bags, simulated scenes.

`open_dataset(kind, path, ...)` is the one place a reader is chosen by name
(`DATASET_KINDS`); `detect_kind(path)` guesses the name from what is on disk.
Readers import their heavy libraries (h5py, rosbags) on first use.
"""

from __future__ import annotations

from pathlib import Path

from .sample import DatasetError, DepthDataset, DepthSample

DATASET_KINDS = ("nyu-mat", "nyu-folders", "ddff12", "recordings", "rosbag", "simulated")
BAG_SUFFIXES = (".mcap", ".db3")

__all__ = ["DATASET_KINDS", "DatasetError", "DepthDataset", "DepthSample", "detect_kind", "open_dataset"]


def detect_kind(path: str | Path) -> str:
    """The reader for `path`: .mat NYU, .h5 DDFF12, a bag (file or folder), NYU folders, else recordings."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".mat":
            return "nyu-mat"
        if suffix in (".h5", ".hdf5"):
            return "ddff12"
        if suffix in BAG_SUFFIXES:
            return "rosbag"
        raise DatasetError(f"{path}: unknown dataset file type '{suffix}' (.mat, .h5, .mcap, .db3, or a folder)")
    if (path / "metadata.yaml").is_file() or any(p.suffix in BAG_SUFFIXES for p in path.iterdir()):
        return "rosbag"
    if next(path.rglob("rgb_*.jpg"), None) is not None:
        return "nyu-folders"
    return "recordings"


def open_dataset(
    kind: str | None,
    path: str | Path | None = None,
    *,
    split: str | None = None,
    split_file: str | Path | None = None,
    centre_crop: bool = True,
    stack_size: int | None = None,
    stack_topic: str | None = None,
    depth_topic: str | None = None,
    slop_s: float | None = None,
    max_depth_m: float | None = None,
    count: int = 8,
    height: int = 240,
    width: int = 320,
    first_seed: int = 0,
) -> DepthDataset:
    """Open the dataset `kind` (None: detect from `path`) with the options that reader takes.

    split: NYU 'test' | 'train' | 'all' (default test), DDFF12 'val' | 'train' (default val).
    stack_size: DDFF12 frames per stack (all 10 by default).
    count, height, width, first_seed: the simulated scenes.
    """
    if kind is None:
        if path is None:
            raise ValueError("give a dataset path or a dataset kind")
        kind = detect_kind(path)
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind '{kind}' (known: {', '.join(DATASET_KINDS)})")
    if kind == "simulated":
        from .simulated import SimulatedScenes

        return SimulatedScenes(count, height, width, first_seed)
    if path is None:
        raise ValueError(f"the '{kind}' dataset needs a path")
    if kind == "nyu-mat":
        from .nyu import NyuLabeledMat

        return NyuLabeledMat(path, split or "test", centre_crop)
    if kind == "nyu-folders":
        from .nyu import NyuSceneFolders

        return NyuSceneFolders(path, split_file, centre_crop)
    if kind == "ddff12":
        from .ddff12 import DDFF12H5

        return DDFF12H5(path, split or "val", stack_size)
    if kind == "recordings":
        from .recordings import RecordingFolders

        return RecordingFolders(path, max_depth_m)
    from .bags import DEFAULT_SLOP_S, DEFAULT_STACK_TOPIC, RosbagRecording

    return RosbagRecording(path, stack_topic or DEFAULT_STACK_TOPIC, depth_topic,
                           DEFAULT_SLOP_S if slop_s is None else slop_s, max_depth_m=max_depth_m)
