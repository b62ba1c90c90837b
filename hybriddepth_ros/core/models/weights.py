"""Loading official HybridDepth weights (Lightning .ckpt or plain state_dict) into HybridDepthNet.

Files are read with `torch.load(weights_only=True)`: tensors and plain
containers only, never arbitrary pickled objects, so a checkpoint from the
internet cannot run code. Loading is strict; every way a file can fail gives
a `CheckpointError` that names the file and says what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

LIGHTNING_MODEL_PREFIX = "model."
_LISTED_KEYS = 8


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into the network; the message names the file."""


def _read(path: Path) -> object:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... depending on the damage
        if "weights only load failed" in str(exc).lower():
            raise CheckpointError(
                f"{path}: refused: the file holds pickled objects other than tensors and plain containers, "
                "which weights_only loading does not execute. If the file is trusted, re-save just its "
                "'state_dict' with torch.save and load that."
            ) from exc
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (truncated download or another file type): {exc}"
        ) from exc


def extract_state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """The model's tensors from a Lightning checkpoint or a bare state_dict, without the `model.` prefix."""
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        state = loaded["state_dict"]
    elif isinstance(loaded, Mapping) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        state = loaded
    else:
        top = list(loaded)[:_LISTED_KEYS] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise CheckpointError(f"{path}: no state_dict in the file (found {top})")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {not_tensors[:_LISTED_KEYS]}")
    if all(str(k).startswith(LIGHTNING_MODEL_PREFIX) for k in state):
        return {k[len(LIGHTNING_MODEL_PREFIX):]: v for k, v in state.items()}
    return dict(state)


def _listed(items: list[str]) -> str:
    more = f" ... (+{len(items) - _LISTED_KEYS} more)" if len(items) > _LISTED_KEYS else ""
    return ", ".join(items[:_LISTED_KEYS]) + more


def check_compatible(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise CheckpointError listing missing keys, unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys [{_listed(missing)}]")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys [{_listed(unexpected)}]")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches [{_listed(mismatched)}]")
    if problems:
        raise CheckpointError(f"{path}: checkpoint does not match {type(model).__name__}: " + "; ".join(problems))


def load_hybriddepth_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load `path` into `model` strictly and return the model.

    Accepts an official Lightning .ckpt (`state_dict` with keys `model.…`), or a
    plain state_dict with or without the `model.` prefix.
    """
    path = Path(path)
    state = extract_state_dict(_read(path), path)
    check_compatible(model, state, path)
    model.load_state_dict(state, strict=True)
    return model
