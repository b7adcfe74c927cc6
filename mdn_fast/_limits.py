"""One source of truth for the shapes, limits and tolerances every backend and test shares."""
from __future__ import annotations

import torch

#: Axis names accepted by ``entity_attention`` (per path).
AXES = ("spatial", "temporal")

#: Largest group sizes every fused backend supports (design.md §2.1).
MAX_K = 16   # entities per frame (spatial groups)
MAX_T = 64   # frames per clip (temporal groups)
MAX_DH = 128  # head dimension

#: Floating dtypes the ops accept. float64 runs on the reference (and wherever a backend says so).
OP_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

#: Relative-error tolerances ‖out − ref‖/‖ref‖ against a float64 reference, per input dtype
#: (design.md §4). Tests import this table; no test carries its own numbers.
REL_TOL = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 1e-2,
}


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp32 for 16-bit and 32-bit inputs, fp64 for fp64 inputs."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def fused_size_reason(T: int, K: int, Dh: int | None = None) -> str | None:
    """Why a fused kernel cannot take these group sizes (None when it can). The reference has no limit;
    ``backend="auto"`` falls back to it, an explicitly named fused backend raises with this text."""
    if K > MAX_K:
        return f"K = {K} entities exceeds the fused kernels' limit K <= {MAX_K}"
    if T > MAX_T:
        return f"T = {T} frames exceeds the fused kernels' limit T <= {MAX_T}"
    if Dh is not None and Dh > MAX_DH:
        return f"Dh = {Dh} exceeds the fused kernels' limit Dh <= {MAX_DH}"
    return None
