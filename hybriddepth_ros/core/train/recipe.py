"""The paper's training recipe, as the defaults of hybriddepth-train.

Facts (the paper, section 4 and its implementation details; the HybridDepth
reference's configs/config_fit_*.yaml, model/depthNet.py, model/main.py and
DDFF12 loader):
- the relative (Depth Anything) and DFF (DFV) branches are frozen; only the
  scale-map refiner trains;
- AdamW, betas (0.9, 0.999), weight decay 1e-3;
- NYU Depth v2: lr 3e-4, batch 24, no augmentation (the reference's NYU
  loader), stacks synthesised per image by the NYU protocol;
- DDFF12: lr 1e-5, batch 8 (the paper; the reference's config file has
  lr 1e-4 and weight decay 1e-4 instead, we follow the paper), random
  224x224 crops and random horizontal and vertical flips (DFV's DDFF12
  training transform, which the reference reuses);
- stacks of 5 frames (the released NYUBest5 and the reference's DDFF12 data
  module, n_stack=5), in ascending focus order;
- 60000 steps (the reference's max_steps), validation every epoch, the best
  checkpoint by validation loss kept (its ModelCheckpoint on val/total_loss).
Your own recordings are real focal stacks like DDFF12 and get its recipe;
RGB-D data (NYU, the simulator) gets NYU's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.sample import DepthDataset

ADAMW_BETAS = (0.9, 0.999)
WEIGHT_DECAY = 1e-3
STACK_SIZE = 5
MAX_STEPS = 60000
TRAINABLE_PARTS = ("refiner", "dfv", "relative")
DEFAULT_TRAINABLE = ("refiner",)


@dataclass(frozen=True)
class Recipe:
    name: str
    lr: float
    batch_size: int
    crop_px: tuple[int, int] | None
    flip: str


NYU_RECIPE = Recipe("paper NYU recipe", lr=3e-4, batch_size=24, crop_px=None, flip="none")
DDFF12_RECIPE = Recipe("paper DDFF12 recipe", lr=1e-5, batch_size=8, crop_px=(224, 224), flip="both")


def recipe_for(dataset: DepthDataset) -> Recipe:
    """DDFF12's recipe for datasets of real focal stacks, NYU's for RGB-D datasets (synthesised stacks)."""
    return DDFF12_RECIPE if dataset.has_stacks else NYU_RECIPE
