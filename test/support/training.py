"""Small training set-ups the training tests share: golden-filled Depth Anything weights, one torch thread."""

from __future__ import annotations

import contextlib

import torch

from hybriddepth_ros.core.models.depth_anything import DepthAnything

from .golden_fill import filled_state_dict

SCENE_SIZE = (64, 96)
"""(height, width) of the simulated scenes the training tests learn on: the refiner's smallest comfortable size."""


def write_relative_weights(path) -> str:
    """A Depth Anything ViT-S file filled by the reference rule (the modular mode's relative branch)."""
    torch.save(filled_state_dict(DepthAnything("vits"), "model.depth_anything."), path)
    return str(path)


@contextlib.contextmanager
def one_torch_thread():
    """On this project's 2 shared cores one intra-op thread trains the refiner about 3x faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
