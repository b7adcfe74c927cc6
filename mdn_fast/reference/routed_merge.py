"""Reference routing-weighted merge of the two paths (design.md §1.2, §2.2).

Layout: ``x_st, x_ts [B, T, K, D]``; ``weight [K, 2, 2D]``, ``bias [K, 2]``; ``mask [B, T, K]``.
``alpha(b, k) = softmax(R_k([mean_t x_st; mean_t x_ts]) / tau)`` with means over present frames only,
``y = alpha_st * x_st + alpha_ts * x_ts``. An entity absent from every frame of a clip pools to 0.
"""
from __future__ import annotations

import torch

from .._limits import acc_dtype


def masked_time_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over frames of ``x [B, T, K, D]`` counting only frames where ``mask [B, T, K]`` is True;
    ``[B, K, D]`` in the accumulation dtype; 0 where an entity has no present frame."""
    x = x.to(acc_dtype(x.dtype))
    if mask is None:
        return x.mean(dim=1)
    w = mask.to(x.dtype)[..., None]                                  # [B, T, K, 1]
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


def routed_merge(x_st: torch.Tensor, x_ts: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 tau: float = 1.0, mask: torch.Tensor | None = None):
    """Reference ``routed_merge``: returns ``y [B, T, K, D]`` (dtype of x_st) and ``alpha [B, K, 2]``
    (float32; float64 for float64 inputs). Arguments are assumed valid (the public op checks them)."""
    acc = acc_dtype(x_st.dtype)
    pooled = torch.cat([masked_time_mean(x_st, mask), masked_time_mean(x_ts, mask)], dim=-1)  # [B,K,2D]
    logits = torch.einsum("bkc,kjc->bkj", pooled, weight.to(acc)) + bias.to(acc)              # [B,K,2]
    alpha = torch.softmax(logits / tau, dim=-1)
    a = alpha[:, None, :, :, None]                                                             # [B,1,K,2,1]
    y = a[..., 0, :] * x_st.to(acc) + a[..., 1, :] * x_ts.to(acc)
    return y.to(x_st.dtype), alpha
