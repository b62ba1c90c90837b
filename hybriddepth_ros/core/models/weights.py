"""The one loader of every weight file: official HybridDepth checkpoints, Depth Anything V1/V2, DFV, resume files.

`load_weights(module, path)` reads `path` with `torch.load(weights_only=True)`
(tensors and plain containers only: a file from the internet cannot run code)
and loads it strictly. Every way a file can fail raises `WeightsError`, whose
message starts with the file's path and says what is wrong: missing, a
directory, a symbolic-link loop, empty, truncated or not a torch file, pickled
objects, no state_dict, entries that are not tensors, missing or unexpected
keys, shapes or dtypes other than the network's, or non-finite values.

Layouts accepted, so the files users download load as they are:
- the tensors at the top level, or under 'state_dict' (Lightning, DFV's
  release) or 'model' (some Depth Anything exports);
- every key prefixed 'module.' (saved from DataParallel);
- an official HybridDepth checkpoint (keys 'model.<branch>.…') for the whole
  network, or for one branch: `load_weights(DFVNet(), "NYUBest5.ckpt")` takes
  the 'model.DFF_model.' part.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .depth_anything import DepthAnything
from .dfv import DFVNet
from .scale_map_learner import ScaleMapLearner

LIGHTNING_MODEL_PREFIX = "model."
DATA_PARALLEL_PREFIX = "module."
NESTING_KEYS = ("state_dict", "model")
BRANCH_PREFIXES: dict[type[nn.Module], str] = {
    DepthAnything: "model.depth_anything.",
    DFVNet: "model.DFF_model.",
    ScaleMapLearner: "model.ScaleMapLearner.",
}
"""Where each branch's tensors sit in an official HybridDepth checkpoint."""
_LISTED = 8


class WeightsError(ValueError):
    """A weight file that cannot be loaded into the network; the message starts with the file's path."""


def load_weights(module: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...] = ()) -> nn.Module:
    """Load the weight file `path` into `module` strictly and return the module.

    `ignore_prefixes`: parts of the file (keys as the module names them) the
    module has no place for by design, dropped before the strict check: e.g.
    'DFF_model.' when the DFF branch is the weight-free one.
    """
    path = Path(path)
    state = _for_module(module, read_state_dict(path))
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)} if ignore_prefixes else state
    check_compatible(module, state, path)
    module.load_state_dict(state, strict=True)
    return module


def read_training_state(path: str | Path, required: tuple[str, ...]) -> dict:
    """A training resume file: its weights under 'state_dict' and its other top-level entries, which must
    include `required` (read by `read_state_dict`, weights_only like every weight file)."""
    path = Path(path)
    entries: dict = {}
    state = read_state_dict(path, other_entries=entries)
    missing = [key for key in required if key != "state_dict" and key not in entries]
    if missing:
        raise WeightsError(
            f"{path}: not a resumable training state: no {', '.join(missing)} "
            f"(found [{_listed(sorted(['state_dict', *map(str, entries)]))}])"
        )
    return {"state_dict": state, **entries}


def read_state_dict(path: str | Path, other_entries: dict | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a weight file, keys as saved (less a DataParallel prefix): the package's only torch.load.

    `other_entries`, when given, receives the file's top-level entries beside a
    'state_dict' (a resume file's optimizer state and progress: plain containers).
    """
    path = Path(path)
    _check_readable_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... depending on the damage
        head = _file_head(path)
        if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save writes a zip (torch >= 1.6) or a pickle
            raise WeightsError(
                f"{path}: not a torch weight file: it starts with {head!r} (a web page or another format "
                "saved under this name?)"
            ) from None
        if "weights only load failed" in str(exc).lower():
            raise WeightsError(
                f"{path}: refused: the file holds pickled objects other than tensors and plain containers, "
                "which weights_only loading does not execute. If the file is trusted, re-save just its "
                "'state_dict' with torch.save and load that."
            ) from None
        raise WeightsError(
            f"{path}: not a readable torch file (truncated download or another file type): "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        ) from None
    if other_entries is not None and isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        other_entries.update({str(k): v for k, v in loaded.items() if k != "state_dict"})
    for key in NESTING_KEYS:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not loaded or not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        found = _listed([str(k) for k in loaded]) if isinstance(loaded, Mapping) else type(loaded).__name__
        raise WeightsError(f"{path}: no state_dict in the file (found [{found}])")
    not_tensors = [str(k) for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{path}: state_dict entries that are not tensors: [{_listed(not_tensors)}]")
    state = {str(k): v for k, v in loaded.items()}
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def check_compatible(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise WeightsError listing missing and unexpected keys, shape and dtype mismatches, non-finite tensors."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    common = sorted(set(state) & set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in common
        if state[k].shape != expected[k].shape
    ]
    dtypes = [
        f"{k}: file {_dtype_name(state[k])} vs network {_dtype_name(expected[k])}"
        for k in common
        if state[k].dtype != expected[k].dtype
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys [{_listed(missing)}]")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys [{_listed(unexpected)}]")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches [{_listed(shapes)}]")
    if dtypes:
        problems.append(
            f"{len(dtypes)} dtype mismatches [{_listed(dtypes)}] (convert a trusted file with "
            "{k: v.float() for k, v in state.items()} for floating tensors)"
        )
    if problems:
        raise WeightsError(f"{path}: does not match {type(module).__name__}: " + "; ".join(problems))
    non_finite = [k for k in common if state[k].is_floating_point() and not torch.isfinite(state[k]).all()]
    if non_finite:
        raise WeightsError(f"{path}: {len(non_finite)} tensors hold NaN or infinite values [{_listed(non_finite)}]")


def _check_readable_file(path: Path) -> None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise WeightsError(f"{path}: symbolic link loop") from None
        raise WeightsError(f"{path}: cannot be read: {exc.strerror}") from None
    if path.is_dir():
        raise WeightsError(f"{path}: is a directory, not a weight file")
    if not path.is_file():
        raise WeightsError(f"{path}: not a regular file")
    if stat.st_size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise WeightsError(f"{path}: no permission to read it")


def _file_head(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read(8)


def _for_module(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's keys as `module` names them: a whole checkpoint without 'model.', or the module's own branch."""
    branch_prefix = next((p for cls, p in BRANCH_PREFIXES.items() if isinstance(module, cls)), None)
    if branch_prefix is not None and any(k.startswith(branch_prefix) for k in state):
        return {k[len(branch_prefix):]: v for k, v in state.items() if k.startswith(branch_prefix)}
    if all(k.startswith(LIGHTNING_MODEL_PREFIX) for k in state):
        return {k[len(LIGHTNING_MODEL_PREFIX):]: v for k, v in state.items()}
    return state


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _listed(items: list[str]) -> str:
    more = f" ... (+{len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return ", ".join(items[:_LISTED]) + more
