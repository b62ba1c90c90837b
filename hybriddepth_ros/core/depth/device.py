"""Choosing the torch device and precision from a node parameter."""

from __future__ import annotations

import torch

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(requested: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU raises RuntimeError."""
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{requested}' requested but torch sees no CUDA GPU")
    if requested == "cpu" or requested.startswith("cuda"):
        return torch.device(requested)
    raise ValueError(f"device must be 'auto', 'cuda[:N]' or 'cpu', got '{requested}'")


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """fp32/fp16/bf16 -> torch dtype; half precision on CPU falls back to fp32 (slow and lossy there)."""
    key = (name or "fp32").strip().lower()
    if key not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got '{name}'")
    if device.type == "cpu" and key == "fp16":
        return torch.float32
    return PRECISIONS[key]
