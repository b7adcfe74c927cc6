"""Debug hooks shared by every backend.

``MDN_FAST_POISON=1`` makes every backend allocate its outputs filled with NaN instead of uninitialised
memory, so a test can tell an element the kernel never wrote from one it wrote.
"""
from __future__ import annotations

import os

import torch


def poison_enabled() -> bool:
    return os.environ.get("MDN_FAST_POISON", "0") == "1"


def new_output(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """Allocate an op output: NaN-filled under ``MDN_FAST_POISON=1``, else ``torch.empty``."""
    if poison_enabled():
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)
