"""The simulator's procedural RGB-D scenes (core/sim/scene.py) as a dataset: ground truth known exactly."""

from __future__ import annotations

import inspect

import numpy as np

from ..sim.scene import make_scene
from .sample import DepthDataset, DepthSample, finite_positive, require_samples

_SCENE_DEFAULTS = inspect.signature(make_scene).parameters
SCENE_RANGE_M = (_SCENE_DEFAULTS["near_m"].default, _SCENE_DEFAULTS["far_m"].default)
"""Depth range make_scene draws scenes in, the fixed sweep's default range on them."""


class SimulatedScenes(DepthDataset):
    """`count` scenes of `height` x `width` px, make_scene(seed=first_seed + i): reproducible."""

    kind = "simulated"
    fixed_sweep_m = SCENE_RANGE_M

    def __init__(self, count: int = 8, height: int = 240, width: int = 320, first_seed: int = 0) -> None:
        require_samples(count, "simulated scenes", "count 0")
        self.count, self.height, self.width, self.first_seed = count, height, width, first_seed

    def __len__(self) -> int:
        return self.count

    def sample(self, index: int) -> DepthSample:
        seed = self.first_seed + index
        scene = make_scene(seed, self.height, self.width)
        depth_m = scene.depth_m.astype(np.float32)
        return DepthSample(name=f"scene_{seed:04d}", depth_m=depth_m, valid_mask=finite_positive(depth_m), rgb=scene.rgb)

    def describe(self) -> str:
        return (f"simulated scenes: {self.count} of {self.width}x{self.height} px, seeds "
                f"{self.first_seed}..{self.first_seed + self.count - 1}")
