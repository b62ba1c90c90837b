"""Frozen branches computed once per sample: the paper trains the refiner with both branches frozen.

With frozen weights and inputs that do not change between epochs (no random
crop or flip: the paper's NYU recipe), the relative branch (Depth Anything at
518x518) and the DFF branch give every sample the same outputs each epoch, and
they are most of a step's cost. These modules stand in for the two branches
inside the HybridDepthNet the trainer runs, so `HybridDepthNet.forward` stays
the one writing of the stage sequence: each returns the branch's output for
the batch's sample keys, computing (and keeping, on the CPU) those it has not
seen. The trainer sets `keys` before every forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.depth_anything import DepthAnything, predict_relative_depth


class _SampleCache(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.keys: list | None = None
        self.outputs: dict = {}

    def missing(self, keys) -> bool:
        return any(key not in self.outputs for key in keys)

    def _lookup(self, compute) -> list:
        if self.keys is None:
            raise RuntimeError("set the cache's keys to the batch's sample keys before the forward pass")
        if self.missing(self.keys):
            computed = compute()
            for row, key in enumerate(self.keys):
                self.outputs[key] = tuple(t[row].detach().float().cpu() for t in computed)
        return [self.outputs[key] for key in self.keys]


class CachedRelativeBranch(_SampleCache):
    """A frozen relative branch: the inverse relative depth (B,1,H,W) it gives each sample key, computed once."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, aif: torch.Tensor | None) -> torch.Tensor:
        def compute():
            if aif is None:
                raise RuntimeError("the relative branch has samples it has not seen: the batch needs its inputs")
            with torch.no_grad():
                if isinstance(self.branch, DepthAnything):
                    return (predict_relative_depth(self.branch, aif),)
                return (self.branch(aif),)

        rows = self._lookup(compute)
        device = aif.device if aif is not None else _device_of(self.branch)
        return torch.stack([row[0] for row in rows]).to(device)


class CachedMetricBranch(_SampleCache):
    """A frozen DFF branch: the (depth_m, std_m) it gives each sample key, computed once."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, focal_stack: torch.Tensor | None, focus_distances_m: torch.Tensor):
        def compute():
            if focal_stack is None:
                raise RuntimeError("the DFF branch has samples it has not seen: the batch needs its inputs")
            with torch.no_grad():
                return self.branch(focal_stack, focus_distances_m)

        rows = self._lookup(compute)
        device = focus_distances_m.device
        return torch.stack([row[0] for row in rows]).to(device), torch.stack([row[1] for row in rows]).to(device)


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
