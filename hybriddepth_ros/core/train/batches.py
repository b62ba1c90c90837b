"""Training batches on the torch device: RGB-D samples get their stacks synthesised there, recorded stacks are prepared.

Per sample, in this order:
1. crop: a random window of `crop` px in training, the central one in
   validation (none: the sample's own size; a batch then needs one size);
2. flip: horizontal (and, with 'both', vertical, as DFV augments DDFF12),
   each with probability 0.5, training only;
3. RGB-D: the focal stack is rendered on the device by the NYU protocol with
   the sweep protocol's distances (core/data/synthesis.py), quantised to 8
   bits; the relative branch sees the sharp RGB (the paper's recipe,
   'sharp') or the nearest-focus frame ('reference', what a camera gives);
   recorded stacks: validated and registered as DepthFusion does
   (`prepare_stack`), `stack_size` frames picked as DFV picks them, the
   reference frame for the relative branch, the registration's border mask
   limiting the scored pixels.
Randomness comes from (seed, epoch, sample index) only, so a batch is the
same whatever the process count, and a resumed run repeats it exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..data.ddff12 import frame_subset
from ..data.sample import DatasetError, DepthDataset, DepthSample
from ..data.synthesis import SweepProtocol, quantise_8bit
from ..depth.fusion import prepare_stack
from ..sim.nyu_protocol import render_nyu_focal_stack
from ..stack.focal_stack import FocalStackError

FLIPS = ("none", "horizontal", "both")
RELATIVE_INPUTS = ("sharp", "reference")


@dataclass
class Batch:
    """Tensors on the device. aif (B,3,H,W) and focal_stack (B,N,3,H,W) in [0, 1] (None when not needed),
    focus_distances_m (B,N) ascending, depth_m (B,1,H,W) (0 where not valid), valid (B,1,H,W) bool."""

    indices: list[int]
    names: list[str]
    aif: torch.Tensor | None
    focal_stack: torch.Tensor | None
    focus_distances_m: torch.Tensor
    depth_m: torch.Tensor
    valid: torch.Tensor
    stack_valid: torch.Tensor | None = None
    """(B,1,H,W) pixels every registered frame covers, for the global fit; None when all are covered."""

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class _Prepared:
    name: str
    depth_m: np.ndarray
    valid: np.ndarray
    rgb: np.ndarray | None
    frames: np.ndarray | None
    distances_m: np.ndarray | None
    stack_valid: np.ndarray | None


class BatchBuilder:
    """Makes Batches from a dataset; see the module docstring for the steps."""

    def __init__(
        self,
        dataset: DepthDataset,
        device: torch.device,
        stack_size: int,
        sweep: SweepProtocol | None = None,
        crop_px: tuple[int, int] | None = None,
        flip: str = "none",
        relative_input: str = "sharp",
        seed: int = 0,
    ) -> None:
        if flip not in FLIPS:
            raise ValueError(f"flip must be one of {FLIPS}, got '{flip}'")
        if relative_input not in RELATIVE_INPUTS:
            raise ValueError(f"relative_input must be one of {RELATIVE_INPUTS}, got '{relative_input}'")
        if not dataset.has_stacks and sweep is None:
            raise ValueError(f"{dataset.describe()}: an RGB-D dataset needs a sweep protocol to synthesise stacks")
        if sweep is not None and sweep.count != stack_size:
            raise ValueError(f"sweep of {sweep.count} frames for stacks of {stack_size}")
        if crop_px is not None and min(crop_px) < 32:
            raise ValueError(f"crop must be at least 32x32 px, got {crop_px}")
        self.dataset, self.device, self.stack_size, self.sweep = dataset, device, stack_size, sweep
        self.crop_px, self.flip, self.relative_input, self.seed = crop_px, flip, relative_input, seed
        self._registered: dict[int, object] = {}
        """Recorded stacks that needed registration, registered (the others are read again each time)."""

    @property
    def deterministic(self) -> bool:
        """True when a sample's tensors never change between epochs (no random crop, no flip)."""
        return self.crop_px is None and self.flip == "none"

    def build(self, indices, epoch: int, train: bool, with_inputs: bool = True) -> Batch:
        """The batch of dataset samples `indices`; without `with_inputs` only ground truth and distances."""
        prepared = [self._prepare(int(i), epoch, train, with_inputs) for i in indices]
        shapes = {p.depth_m.shape for p in prepared}
        if len(shapes) > 1:
            raise DatasetError(
                f"{self.dataset.describe()}: samples of different sizes {sorted(shapes)} in one batch; "
                "give a crop size (--crop H W) or batch size 1"
            )
        device = self.device
        depth = torch.from_numpy(np.stack([np.nan_to_num(p.depth_m, nan=0.0) for p in prepared])[:, None]).to(device)
        valid = torch.from_numpy(np.stack([p.valid for p in prepared])[:, None]).to(device)
        stack_valid = None
        if any(p.stack_valid is not None for p in prepared):
            masks = [p.stack_valid if p.stack_valid is not None else np.ones_like(p.valid) for p in prepared]
            stack_valid = torch.from_numpy(np.stack(masks)[:, None]).to(device)
        aif = focal_stack = None
        distances = []
        frames = []
        for p in prepared:
            if p.rgb is not None and with_inputs:  # RGB-D: render here, on the device
                rgb = torch.from_numpy(p.rgb).to(device).float()
                frames.append(quantise_8bit(render_nyu_focal_stack(rgb, torch.from_numpy(p.depth_m).to(device),
                                                                   p.distances_m, device=device)))
            elif with_inputs:
                frames.append(torch.from_numpy(p.frames).to(device).float())
            distances.append(np.asarray(p.distances_m, dtype=np.float32))
        if with_inputs:
            stacks = torch.stack(frames).permute(0, 1, 4, 2, 3) / 255.0  # (B, N, 3, H, W)
            if self.relative_input == "sharp" and all(p.rgb is not None for p in prepared):
                aif = torch.stack([torch.from_numpy(p.rgb).to(device) for p in prepared]).permute(0, 3, 1, 2).float() / 255.0
            else:
                aif = stacks[:, 0]
            focal_stack = stacks
        return Batch(
            indices=[int(i) for i in indices],
            names=[p.name for p in prepared],
            aif=aif,
            focal_stack=focal_stack,
            focus_distances_m=torch.from_numpy(np.stack(distances)).to(device),
            depth_m=depth.float(),
            valid=valid,
            stack_valid=stack_valid,
        )

    def _prepare(self, index: int, epoch: int, train: bool, with_inputs: bool) -> _Prepared:
        sample = self.dataset[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        if sample.stack is not None:
            return self._prepare_stack(index, sample, rng, train)
        try:
            distances = self.sweep.focus_distances_m(sample.depth_m) if self.crop_px is None else None
        except ValueError as exc:
            raise DatasetError(f"sample {sample.name}: {exc}") from None
        window, flips = self._augmentation(sample.depth_m.shape, rng, train)
        rgb, depth, valid = (_apply(a, window, flips) for a in (sample.rgb, sample.depth_m, sample.valid_mask))
        if distances is None:
            try:
                distances = self.sweep.focus_distances_m(depth)
            except ValueError as exc:
                raise DatasetError(f"sample {sample.name} (cropped): {exc}") from None
        return _Prepared(sample.name, depth, valid, rgb, None, distances, None)

    def _prepare_stack(self, index: int, sample: DepthSample, rng: np.random.Generator, train: bool) -> _Prepared:
        stack = self._registered.get(index, sample.stack)
        try:
            if not stack.registered:  # registration is deterministic: done once per sample, kept
                stack = self._registered[index] = prepare_stack(stack)
            stack.validate()
        except FocalStackError as exc:
            raise DatasetError(f"sample {sample.name}: {exc}") from None
        available = stack.num_frames
        if available < self.stack_size:
            raise DatasetError(f"sample {sample.name}: {available} frames, fewer than the stack size {self.stack_size}")
        chosen = frame_subset(self.stack_size, available)
        stack = dataclasses.replace(stack, frames=stack.frames[chosen], focus_distances_m=stack.focus_distances_m[chosen],
                                    reference_index=0)
        window, flips = self._augmentation(sample.depth_m.shape, rng, train)
        frames = np.stack([_apply(frame, window, flips) for frame in stack.frames])
        depth, valid = _apply(sample.depth_m, window, flips), _apply(sample.valid_mask, window, flips)
        stack_valid = _apply(stack.valid_mask, window, flips) if stack.valid_mask is not None else None
        if stack_valid is not None:
            valid = valid & stack_valid
        return _Prepared(sample.name, depth, valid, None, frames, np.asarray(stack.focus_distances_m), stack_valid)

    def _augmentation(self, shape: tuple[int, int], rng: np.random.Generator, train: bool):
        height, width = shape
        window = (slice(0, height), slice(0, width))
        if self.crop_px is not None:
            crop_h, crop_w = self.crop_px
            if crop_h > height or crop_w > width:
                raise DatasetError(f"{self.dataset.describe()}: crop {crop_h}x{crop_w} is larger than a {height}x{width} sample")
            top = int(rng.integers(0, height - crop_h + 1)) if train else (height - crop_h) // 2
            left = int(rng.integers(0, width - crop_w + 1)) if train else (width - crop_w) // 2
            window = (slice(top, top + crop_h), slice(left, left + crop_w))
        flips = (False, False)
        if train and self.flip != "none":
            flips = (bool(rng.random() < 0.5), self.flip == "both" and bool(rng.random() < 0.5))
        return window, flips


def _apply(array: np.ndarray, window, flips: tuple[bool, bool]) -> np.ndarray:
    out = array[window]
    if flips[0]:
        out = out[:, ::-1]
    if flips[1]:
        out = out[::-1]
    return np.ascontiguousarray(out)
