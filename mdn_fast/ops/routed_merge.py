"""Public ``routed_merge``: masked time-pooling, per-entity router, tempered softmax and merge (design.md §2.2)."""
from __future__ import annotations

import torch

from . import _backends
from ._checks import check_routed_merge


def routed_merge(x_st: torch.Tensor, x_ts: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                 tau: float = 1.0, mask: torch.Tensor | None = None, backend: str = "auto"):
    """Merge the two path outputs with per-entity routing weights.

    Args:
        x_st, x_ts: ``[B, T, K, D]`` outputs of the ST and TS paths.
        weight: ``[K, 2, 2D]``, bias: ``[K, 2]``: the per-entity routers ``R_k``.
        tau: softmax temperature.
        mask: ``[B, T, K]`` bool or None; time means count present frames only.
        backend: ``"auto"`` | ``"reference"`` | ``"triton"`` | ``"cpp"``.

    Returns:
        ``(y [B, T, K, D] in x_st's dtype, alpha [B, K, 2] float32 (float64 for float64 inputs))``
        with ``y = alpha[..., 0] * x_st + alpha[..., 1] * x_ts``.
    """
    tau = check_routed_merge(x_st, x_ts, weight, bias, tau, mask)
    B, T, K, D = x_st.shape
    impl = _backends.resolve("routed_merge", backend, x_st, {"B": B, "T": T, "K": K, "D": D},
                             inputs=(x_st, x_ts, weight, bias))
    return impl.routed_merge(x_st, x_ts, weight, bias, tau, mask)
