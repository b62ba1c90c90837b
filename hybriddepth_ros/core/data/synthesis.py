"""Focal stacks for RGB-D datasets, synthesised on the torch device by the paper's NYU protocol.

Two sweep protocols say where the lens is focused:
- 'paper': N distances linear from each image's smallest to its largest valid
  ground-truth depth (core/sim/nyu_protocol.py), as the paper evaluates. It is
  an oracle: it knows the scene's depth range before measuring it.
- 'fixed': the camera's own sweep, N distances from `near_m` to `far_m` evenly
  spaced in diopters (core/stack/focal_stack.py `diopter_sweep`, the spacing
  the focus_sweep_node drives a lens through), the same for every image, as a
  robot has it.
Frames are rendered by the NYU protocol's 7x7 gather and quantised to 8 bits,
as a camera delivers them, so an evaluation runs backends on exactly what
DepthFusion would receive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..sim.nyu_protocol import nyu_focus_distances_m, render_nyu_focal_stack
from ..stack.camera import CameraIntrinsics
from ..stack.focal_stack import FocalStack, diopter_sweep
from .sample import DatasetError, DepthSample

SWEEP_PROTOCOLS = ("paper", "fixed")


@dataclass(frozen=True)
class SweepProtocol:
    """Where the N frames of a synthesised stack are focused ('paper' oracle or 'fixed' camera sweep)."""

    name: str
    count: int
    near_m: float | None = None
    far_m: float | None = None

    def __post_init__(self) -> None:
        if self.name not in SWEEP_PROTOCOLS:
            raise ValueError(f"sweep protocol must be one of {SWEEP_PROTOCOLS}, got '{self.name}'")
        if self.count < 2:
            raise ValueError(f"a focal stack needs at least 2 frames, got {self.count}")
        if self.name == "fixed":
            diopter_sweep(self.near_m, self.far_m, self.count)  # raises on an unusable range

    def focus_distances_m(self, depth_m: np.ndarray) -> np.ndarray:
        if self.name == "paper":
            return nyu_focus_distances_m(depth_m, self.count)
        return diopter_sweep(self.near_m, self.far_m, self.count)

    def describe(self) -> str:
        if self.name == "paper":
            return f"paper sweep ({self.count} frames, each image's min..max ground truth)"
        return f"fixed sweep ({self.count} frames, {self.near_m:g}..{self.far_m:g} m, even in diopters)"


def quantise_8bit(frames: torch.Tensor) -> torch.Tensor:
    """Frames in 0..255 rounded and clipped to what an 8-bit camera delivers (still float)."""
    return frames.round().clamp(0.0, 255.0)


def nominal_intrinsics(height: int, width: int) -> CameraIntrinsics:
    """A centred pinhole with focal length = image width (about 53 deg across); depth does not depend on it."""
    return CameraIntrinsics(fx=float(width), fy=float(width), cx=(width - 1) / 2.0, cy=(height - 1) / 2.0,
                            width=width, height=height)


def synthesize_stack(sample: DepthSample, sweep: SweepProtocol, device: str | torch.device = "cpu") -> FocalStack:
    """The registered uint8 FocalStack of an RGB-D sample under `sweep`, rendered on `device`."""
    if sample.rgb is None:
        raise ValueError(f"sample {sample.name} has a real focal stack; only RGB-D samples are synthesised")
    try:
        distances_m = sweep.focus_distances_m(sample.depth_m)
    except ValueError as exc:
        raise DatasetError(f"sample {sample.name}: {exc}") from None
    frames = quantise_8bit(render_nyu_focal_stack(sample.rgb, sample.depth_m, distances_m, device=device))
    height, width = sample.depth_m.shape
    return FocalStack(
        frames=frames.to(torch.uint8).cpu().numpy(),
        focus_distances_m=np.asarray(distances_m, dtype=np.float64),
        intrinsics=nominal_intrinsics(height, width),
        registered=True,
    )
