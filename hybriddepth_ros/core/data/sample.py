"""What every dataset reader yields, and the rules it is scored by.

A reader is a sequence of `DepthSample`s. RGB-D datasets (NYU Depth v2, the
simulator's scenes) give a sharp RGB image and ground truth, and their focal
stacks are synthesised (core/data/synthesis.py); focal-stack datasets
(DDFF12, your recordings, ROS bags) give the stack itself. Ground truth is
always metres; a dataset whose published metrics are in another convention
(DDFF12: disparity) says so in its `ScoringSpace`, and the metrics are
computed there.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..stack.focal_stack import FocalStack


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message starts with the file's path and says why."""


@dataclass
class DepthSample:
    """One scored view.

    name: unique within the dataset (file or folder name, index).
    depth_m: (H, W) float32 ground truth in metres; NaN where there is none.
    valid_mask: (H, W) bool, the pixels the dataset's protocol scores.
    rgb: (H, W, 3) uint8 sharp image of an RGB-D dataset (its stack is synthesised), else None.
    stack: the real focal stack of a focal-stack dataset, frames of the ground truth's size, else None.
    """

    name: str
    depth_m: np.ndarray
    valid_mask: np.ndarray
    rgb: np.ndarray | None = None
    stack: FocalStack | None = None

    def __post_init__(self) -> None:
        if (self.rgb is None) == (self.stack is None):
            raise ValueError(f"sample {self.name}: give exactly one of rgb (RGB-D) or stack (focal stack)")
        image = self.rgb if self.rgb is not None else self.stack.frames[0]
        if image.shape[:2] != self.depth_m.shape or self.valid_mask.shape != self.depth_m.shape:
            raise ValueError(
                f"sample {self.name}: image {image.shape[:2]}, depth {self.depth_m.shape} and mask "
                f"{self.valid_mask.shape} differ in size"
            )

    @property
    def reference_rgb(self) -> np.ndarray:
        """The sharp image (RGB-D) or the stack's reference frame."""
        return self.rgb if self.rgb is not None else self.stack.reference_frame


@dataclass(frozen=True)
class ScoringSpace:
    """The quantity metrics are computed on: depth in metres, or disparity = constant / depth.

    DDFF12 publishes disparity ground truth and DFV and HybridDepth report their
    DDFF12 metrics on disparity, so its readers score there (core/data/ddff12.py).
    """

    name: str
    unit: str
    disparity_times_depth: float | None = None
    """`constant` of disparity = constant / depth_m; None: scored on depth itself."""

    def from_metres(self, depth_m: np.ndarray) -> np.ndarray:
        depth_m = np.asarray(depth_m, dtype=np.float64)
        if self.disparity_times_depth is None:
            return depth_m
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.disparity_times_depth / depth_m


METRES = ScoringSpace("depth", "m")


def finite_positive(depth_m: np.ndarray, max_depth_m: float | None = None) -> np.ndarray:
    """The default valid-pixel rule: ground truth is finite and > 0 (and <= max_depth_m, a depth camera's range)."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth_m) & (depth_m > 0)
        return valid & (depth_m <= max_depth_m) if max_depth_m is not None else valid


class DepthDataset(abc.ABC):
    """A sized sequence of DepthSamples; readers check their files when opened and name the file in every error.

    `kind` names the reader; `space` is where metrics are computed;
    `fixed_sweep_m` a (near, far) focus range of a camera that would see
    this dataset's scenes, the default of the fixed-sweep protocol for RGB-D
    datasets (None for focal-stack datasets).
    """

    kind: str = "abstract"
    space: ScoringSpace = METRES
    fixed_sweep_m: tuple[float, float] | None = None

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def sample(self, index: int) -> DepthSample:
        """The sample at `index` (0 <= index < len); DatasetError when its files are unusable."""

    def __getitem__(self, index: int) -> DepthSample:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} outside 0..{len(self) - 1}")
        return self.sample(index)

    def __iter__(self) -> Iterator[DepthSample]:
        for index in range(len(self)):
            yield self.sample(index)

    @property
    def has_stacks(self) -> bool:
        """True for focal-stack datasets, False for RGB-D ones (stacks synthesised)."""
        return self.fixed_sweep_m is None

    def describe(self) -> str:
        """One line for reports: what was read."""
        return f"{self.kind}: {len(self)} samples"


class Subset(DepthDataset):
    """The samples `indices` of `base`, in that order (a --limit, a validation split, a DDP shard)."""

    def __init__(self, base: DepthDataset, indices, what: str = "subset") -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        self.what = what
        self.kind, self.space, self.fixed_sweep_m = base.kind, base.space, base.fixed_sweep_m
        bad = [i for i in self.indices if not 0 <= i < len(base)]
        if bad:
            raise IndexError(f"{base.describe()}: sample indices {bad[:5]} outside 0..{len(base) - 1}")
        require_samples(len(self.indices), base.describe(), f"empty {what}")

    def __len__(self) -> int:
        return len(self.indices)

    def sample(self, index: int) -> DepthSample:
        return self.base.sample(self.indices[index])

    def describe(self) -> str:
        return f"{self.base.describe()} ({self.what}: {len(self)} of {len(self.base)})"


def open_hdf5(path: Path, what: str, format_name: str = "an HDF5 file"):
    """`path` opened read-only with h5py (imported here, on first use); DatasetError naming `what` the
    file should be when it is missing, or `format_name` when h5py cannot read it."""
    import h5py

    if not path.is_file():
        raise DatasetError(f"{path}: no such file ({what})")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path}: not {format_name}: {exc}") from None


def require_samples(count: int, source: str, what: str) -> None:
    """DatasetError for an empty split: evaluating or training on nothing is a mistake, never a 0-row report."""
    if count == 0:
        raise DatasetError(f"{source}: no samples ({what})")
