"""DDFF12 (light-field focal stacks with disparity ground truth) in the h5 layout that DFV publishes.

Facts used (where from):
- Layout (DFV, data_preprocess/pack_to_h5.py; its dataloader/DDFF12.py reads
  it): datasets `stack_train` (N, 10, H, W, 3) RGB values 0..255 stored as
  floats, `disp_train` (N, H, W) disparity with 0 where unknown, `AiF_train`
  (unused), and the same with `_val`. The official DDFF-12 test file has
  `stack_test` without disparity, so it cannot be scored.
- Frame k is focused at disparity linspace(0.28, 0.02, 10)[k]: near to far
  (DFV and HybridDepth loaders, `disp_dist = linspace(max_disp, min_disp, 10)`).
- disparity = baseline * f_sub / depth with baseline = K2 / f_lens * 1e-3 and
  f_sub = 521.4052 px (DFV data_preprocess/depth2disp.py, from the DDFF
  toolbox); K2 = 1982.0250823695178 and f_lens = 7317.020641763665 (the
  calibration IntParamLF.mat, as quoted in the HybridDepth reference's
  dataloader/DDFF12/loader.py). So disparity * depth = 0.141238 m: the frames
  are focused at 0.504 m .. 7.06 m.
- Fewer than 10 frames: frames linspace(0, 9, N) as DFV's evaluation indexes a
  torch tensor with them, which truncates (N=5: frames 0, 2, 4, 6, 9; torch
  2.13 measured).
- Scored pixels: 0.02 < ground-truth disparity < 0.28 (the HybridDepth
  reference's DDFF12 loader mask), and metrics are computed on disparity, the
  convention DFV and the paper report DDFF12 in.
Depth in this package is metres everywhere else: the reader converts focus
positions and ground truth to metres, backends run as on any stack, and the
evaluation converts predictions back to disparity for scoring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..stack.camera import CameraIntrinsics
from ..stack.focal_stack import FocalStack
from .sample import DatasetError, DepthDataset, DepthSample, ScoringSpace, open_hdf5, require_samples

LENS_K2 = 1982.0250823695178
LENS_FOCAL_PX = 7317.020641763665
SUBAPERTURE_FOCAL_PX = 521.4052
DISPARITY_TIMES_DEPTH_M = LENS_K2 / LENS_FOCAL_PX * 1e-3 * SUBAPERTURE_FOCAL_PX
"""disparity * depth in metres (0.141238)."""
FRAME_DISPARITIES = np.linspace(0.28, 0.02, 10)
"""Focus disparity of the 10 frames, near to far."""
VALID_DISPARITY = (0.02, 0.28)
"""Open interval of ground-truth disparity that is scored."""
DDFF12_DISPARITY = ScoringSpace("disparity", "disparity (px*m/m, DDFF12 convention)", DISPARITY_TIMES_DEPTH_M)
SPLITS = ("train", "val")


def frame_subset(count: int, available: int = len(FRAME_DISPARITIES)) -> np.ndarray:
    """Indices of `count` frames spread over `available` as DFV's evaluation picks them (truncated linspace)."""
    if not 2 <= count <= available:
        raise ValueError(f"a DDFF12 stack has {available} frames; the stack size must be 2..{available}, got {count}")
    return np.linspace(0, available - 1, count).astype(int)


class DDFF12H5(DepthDataset):
    """One split ('train' or 'val') of a DFV-layout DDFF12 h5; `stack_size` frames per stack (default all 10)."""

    kind = "ddff12"
    space = DDFF12_DISPARITY

    def __init__(self, path: str | Path, split: str = "val", stack_size: int | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"DDFF12 split must be one of {SPLITS}, got '{split}'")
        self.path = Path(path)
        self.split = split
        self._file = open_hdf5(self.path, "a DDFF12 h5 in DFV's layout")
        stack_key, disp_key = f"stack_{split}", f"disp_{split}"
        missing = [key for key in (stack_key, disp_key) if key not in self._file]
        if missing:
            hint = " (the official test file has no disparity: it cannot be scored)" if "stack_test" in self._file else ""
            raise DatasetError(
                f"{self.path}: no {' or '.join(repr(k) for k in missing)} dataset (found {sorted(self._file.keys())}){hint}"
            )
        self._stacks, self._disparities = self._file[stack_key], self._file[disp_key]
        stacks, disparities = self._stacks.shape, self._disparities.shape
        if (len(stacks) != 5 or stacks[-1] != 3 or len(disparities) != 3 or stacks[0] != disparities[0]
                or stacks[2:4] != disparities[1:]):
            raise DatasetError(
                f"{self.path}: '{stack_key}' {stacks} and '{disp_key}' {disparities} are not DFV's layout "
                "(N, frames, H, W, 3) and (N, H, W)"
            )
        available = stacks[1]
        if available != len(FRAME_DISPARITIES):
            raise DatasetError(f"{self.path}: stacks of {available} frames; DDFF12 stacks have {len(FRAME_DISPARITIES)}")
        self.frames = frame_subset(stack_size or available, available)
        require_samples(stacks[0], str(self.path), f"split '{split}'")

    def __len__(self) -> int:
        return int(self._stacks.shape[0])

    def sample(self, index: int) -> DepthSample:
        stored = np.asarray(self._stacks[index])[self.frames]
        disparity = np.asarray(self._disparities[index], dtype=np.float64)
        frames = np.clip(np.rint(stored), 0, 255).astype(np.uint8)
        height, width = disparity.shape
        with np.errstate(divide="ignore", invalid="ignore"):
            depth_m = np.where(disparity > 0, DISPARITY_TIMES_DEPTH_M / disparity, np.nan).astype(np.float32)
        low, high = VALID_DISPARITY
        valid = np.isfinite(disparity) & (disparity > low) & (disparity < high)
        stack = FocalStack(
            frames=frames,
            focus_distances_m=DISPARITY_TIMES_DEPTH_M / FRAME_DISPARITIES[self.frames],
            intrinsics=CameraIntrinsics(
                fx=SUBAPERTURE_FOCAL_PX, fy=SUBAPERTURE_FOCAL_PX, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0,
                width=width, height=height,
            ),
            registered=True,
        )
        return DepthSample(name=f"{self.split}_{index:04d}", depth_m=depth_m, valid_mask=valid, stack=stack)

    def describe(self) -> str:
        return (f"DDFF12 {self.path.name}, split '{self.split}': {len(self)} stacks of {len(self.frames)} frames "
                f"(frames {self.frames.tolist()}), scored on disparity")
