"""The full HybridDepth network: relative branch + DFF branch + global alignment + scale-map refinement.

Stages run in the reference's order:
1. relative branch on the all-in-focus RGB -> relative inverse depth, inverted
   to relative depth (1/x, infinities set to 0);
2. DFF branch on the focal stack -> metric depth (expected focus distance) and
   its per-pixel std;
3. one scale and shift per image fitted from relative depth onto DFF depth
   -> globally aligned depth;
4. scale map = DFF depth / aligned depth (non-finite -> 1); the refiner sees
   [aligned depth, scale map, DFF std] and outputs metric depth.

`forward` is the package's only writing of this sequence: callers that time or
measure the stages (the depth backend, the benchmark) pass a `stage` hook,
entered around each stage by name. Attribute names make `state_dict()` equal
the official checkpoint's keys with the leading `model.` removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ContextManager

import torch
from torch import nn

from .alignment import ALIGNMENT_METHODS, align
from .depth_anything import DepthAnything, predict_relative_depth
from .dfv import DFVNet
from .scale_map_learner import ScaleMapLearner

STAGES = ("relative", "dff", "alignment", "refinement")
StageHook = Callable[[str], ContextManager]
"""Called with a stage's name; the context manager it returns is entered around that stage."""


@dataclass
class HybridDepthOutput:
    """Every intermediate of one forward pass, each (B,1,H,W); depths in metres except `relative_depth`."""

    relative_depth: torch.Tensor
    dff_depth: torch.Tensor
    dff_std: torch.Tensor
    global_depth: torch.Tensor
    scale_map: torch.Tensor
    metric_depth: torch.Tensor


class HybridDepthNet(nn.Module):
    """HybridDepth with swappable branches.

    relative_branch: DepthAnything (run at 518x518 via `predict_relative_depth`),
        or any module mapping RGB (B,3,H,W) in [0,1] to relative inverse depth (B,1,H,W).
        Default: Depth Anything ViT-S.
    metric_branch: any module mapping (focal_stack (B,N,3,H,W), focus_distances_m (B,N))
        to (depth_m, std_m), each (B,1,H,W). Default: DFVNet; a weight-free DFF fits too.
    alignment: 'least_squares' (the reference) or 'confidence_weighted' (robust, DFF-std weighted).
    refiner: a ScaleMapLearner (e.g. one shared with another instance), or any module mapping
        (refiner input, global depth) to metric depth. Default: a new ScaleMapLearner.
    """

    def __init__(
        self,
        relative_branch: nn.Module | None = None,
        metric_branch: nn.Module | None = None,
        alignment: str = "least_squares",
        refiner: nn.Module | None = None,
    ):
        super().__init__()
        if alignment not in ALIGNMENT_METHODS:
            raise ValueError(f"alignment must be one of {ALIGNMENT_METHODS}, got '{alignment}'")
        self.alignment = alignment
        self.depth_anything = relative_branch if relative_branch is not None else DepthAnything("vits")
        self.DFF_model = metric_branch if metric_branch is not None else DFVNet()
        self.ScaleMapLearner = (
            refiner if refiner is not None else ScaleMapLearner(in_channels=3, min_pred_m=0.02, max_pred_m=0.28)
        )

    def relative_depth(self, aif: torch.Tensor) -> torch.Tensor:
        """Relative depth (inverted relative-branch output, inf -> 0), (B,1,H,W) float32."""
        if isinstance(self.depth_anything, DepthAnything):
            inverse = predict_relative_depth(self.depth_anything, aif)
        else:
            inverse = self.depth_anything(aif)
        relative = 1.0 / inverse.float()  # float32 under autocast too: half precision overflows near 0
        return torch.where(relative == float("inf"), torch.zeros_like(relative), relative)

    def dff_depth(self, focal_stack: torch.Tensor, focus_distances_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Metric depth from focus and its per-pixel std, each (B,1,H,W) float32 in metres."""
        depth_m, std_m = self.DFF_model(focal_stack, focus_distances_m)
        return depth_m.float(), std_m.float()

    def global_depth(
        self,
        relative_depth: torch.Tensor,
        dff_depth: torch.Tensor,
        dff_std: torch.Tensor,
        valid_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Relative depth mapped onto the DFF depth by one scale and shift per image."""
        return align(relative_depth, dff_depth.float(), valid_mask, dff_std, method=self.alignment)

    def refine(
        self, global_depth: torch.Tensor, dff_depth: torch.Tensor, dff_std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale_map, metric_depth): the scale map the refiner starts from and its metric output."""
        ratio = dff_depth.float() / global_depth
        scale_map = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
        refiner_input = torch.cat([global_depth, scale_map, dff_std.to(global_depth.dtype)], dim=1)
        return scale_map, self.ScaleMapLearner(refiner_input, global_depth)

    def forward(
        self,
        aif: torch.Tensor,
        focal_stack: torch.Tensor,
        focus_distances_m: torch.Tensor,
        valid_mask: torch.Tensor | None = None,
        stage: StageHook | None = None,
    ) -> HybridDepthOutput:
        """aif (B,3,H,W) in [0,1]; focal_stack (B,N,3,H,W) as the DFF branch expects; distances (B,N) ascending.

        `valid_mask` (B,1,H,W) bool limits the global fit to pixels every frame covers.
        `stage(name)` is entered around each of STAGES (timing, FLOP counting).
        """
        stage = stage or _no_hook
        with stage("relative"):
            relative = self.relative_depth(aif)
        with stage("dff"):
            dff_depth, dff_std = self.dff_depth(focal_stack, focus_distances_m)
        with stage("alignment"):
            global_depth = self.global_depth(relative, dff_depth, dff_std, valid_mask)
        with stage("refinement"):
            scale_map, metric_depth = self.refine(global_depth, dff_depth, dff_std)
        return HybridDepthOutput(relative, dff_depth, dff_std, global_depth, scale_map, metric_depth)


def _no_hook(name: str) -> ContextManager:
    return contextlib.nullcontext()
