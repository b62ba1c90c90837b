"""Choosing the torch device and precision from a node parameter."""

from __future__ import annotations

import logging

import torch

_LOG = logging.getLogger(__name__)

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
    """fp32/fp16/bf16 -> torch dtype; fp16 on a CPU falls back to fp32 (slow and lossy there).

    bf16 on a CPU is fast only with native bf16 instructions (AVX512-BF16 or
    AMX): `make bench` with `--precision bf16` took 1.4 s per 5x480x640 stack
    on a 2-core EPYC with AVX512-BF16 and 102 s on one with AVX2 only (fp32
    there: 3.9 s). Without them a warning says so.
    """
    key = (name or "fp32").strip().lower()
    if key not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got '{name}'")
    if device.type == "cpu" and key == "fp16":
        return torch.float32
    if device.type == "cpu" and key == "bf16" and not cpu_has_native_bf16():
        _LOG.warning(
            "precision bf16 on a CPU without native bf16 instructions (%s): expect it to be many times "
            "slower than fp32", torch.backends.cpu.get_cpu_capability()
        )
    return PRECISIONS[key]


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
