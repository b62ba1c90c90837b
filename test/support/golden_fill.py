"""The deterministic weight fill of ../shared/reference/README.md, for golden-equivalence tests."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from . import SHARED

SHARED_REFERENCE = SHARED / "reference"
GOLDEN_PATH = SHARED_REFERENCE / "hybriddepth_golden.npz"
MANIFEST_PATH = SHARED_REFERENCE / "hybriddepth_state_dict_manifest.json"
SPECIAL_BIAS = "model.depth_anything.depth_head.scratch.output_conv2.2.bias"


def fill_value(name: str, shape) -> np.ndarray:
    """The reference fill for one floating-point tensor named `name` (full key)."""
    shape = tuple(int(s) for s in shape)
    z = np.random.default_rng(zlib.crc32(name.encode())).standard_normal(shape)
    if name == SPECIAL_BIAS:
        return np.full(shape, 2.0, dtype=np.float32)
    last = name.rsplit(".", 1)[-1]
    if last == "running_var":
        v = 1 + 0.1 * np.abs(z)
    elif last in ("running_mean", "bias"):
        v = 0.1 * z
    elif len(shape) <= 1:
        v = 1 + 0.1 * z
    else:
        v = z / np.sqrt(np.prod(shape[1:]))
    return v.astype(np.float32)


def filled_state_dict(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """A state_dict for `module` (keys without `prefix`) filled by the golden rule using `prefix + key`."""
    out = {}
    for key, tensor in module.state_dict().items():
        if tensor.is_floating_point():
            out[key] = torch.from_numpy(fill_value(prefix + key, tensor.shape))
        else:
            out[key] = torch.zeros_like(tensor)
    return out


def rel_err(a, b) -> float:
    """max |a - b| / max |b|, the README's tolerance measure."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
