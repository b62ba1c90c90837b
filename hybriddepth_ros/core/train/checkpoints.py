"""Checkpoints hybriddepth-train writes: the official key layout, so the backend and the node load them strictly.

A checkpoint is `{"state_dict": {"model." + key: tensor}, "hybriddepth_ros": {...}}`,
the Lightning layout of the authors' files (core/models/weights.py reads it,
and ignores the metadata). The resume file (`last.ckpt`) is the same plus
"optimizer", "scaler" and "progress": tensors and plain containers only, so it
loads with weights_only, through weights.py like every other file. Files are
written atomically. A network trained with the weight-free DFF branch has no
'model.DFF_model.' part: it loads with metric_branch 'focus_measure'.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data.files import atomic_write
from ..models.weights import LIGHTNING_MODEL_PREFIX, read_training_state

METADATA_KEY = "hybriddepth_ros"
RESUME_KEYS = ("state_dict", "optimizer", "progress")


def official_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """The network's tensors under the official 'model.' keys, on the CPU, in standard memory layout."""
    return {LIGHTNING_MODEL_PREFIX + key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}


def save_checkpoint(path: str | Path, network: nn.Module, metadata: dict, training_state: dict | None = None) -> Path:
    """Write the official-layout checkpoint (plus resume state when given) atomically."""
    document = {"state_dict": official_state_dict(network), METADATA_KEY: metadata, **(training_state or {})}
    return atomic_write(path, lambda temporary: torch.save(document, temporary))


def read_resume(path: str | Path) -> dict:
    """A resume file's contents (WeightsError naming the file when it is not one)."""
    return read_training_state(path, RESUME_KEYS)
