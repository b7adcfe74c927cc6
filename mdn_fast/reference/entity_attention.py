"""Reference entity-wise attention for P paths (design.md §2.1).

Layout: q, k, v are ``[P, B, T, K, H, Dh]``; path p attends along ``axes[p]``:
- ``"spatial"``:  a token (b, t, k) attends to the K entities of frame t;
- ``"temporal"``: a token (b, t, k) attends to the T frames of entity k.
``mask [B, T, K]`` is a key-padding mask (False keys are never attended to). A query whose group has
no present key outputs 0 and receives zero gradient (never NaN).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .._limits import acc_dtype

# Per axis: the permutation of [B, T, K, H, Dh] that puts the attended group in dim -2, and its inverse.
_TO_GROUP = {"spatial": (0, 1, 3, 2, 4), "temporal": (0, 2, 3, 1, 4)}  # -> [B,T,H,K,Dh] / [B,K,H,T,Dh]
_MASK_TO_GROUP = {"spatial": (0, 1, 2), "temporal": (0, 2, 1)}          # [B,T,K] -> [B,T,K] / [B,K,T]


def _attend_one_path(q, k, v, axis: str, mask, scale: float):
    perm = _TO_GROUP[axis]
    qg, kg, vg = (x.permute(perm).to(acc_dtype(x.dtype)) for x in (q, k, v))
    if mask is None:
        scores = torch.matmul(qg, kg.transpose(-1, -2)) * scale      # [..., H, N, N]
        return torch.matmul(torch.softmax(scores, dim=-1), vg).permute(_inverse(perm))
    key_ok = mask.permute(_MASK_TO_GROUP[axis])[..., None, None, :]  # [B, G, 1, 1, N]
    any_key = key_ok.any(dim=-1, keepdim=True)                       # [B, G, 1, 1, 1]
    # A masked key never touches any output, even a non-finite one: its probability is exactly 0, but
    # 0 * NaN (probs @ v, and dscores @ k in the backward) would still be NaN, so its k and v rows are
    # zeroed (torch.where: its backward gives them an exact zero gradient too).
    row_ok = key_ok.transpose(-1, -2)                                # [B, G, 1, N, 1]
    kg, vg = torch.where(row_ok, kg, 0.0), torch.where(row_ok, vg, 0.0)
    scores = torch.matmul(qg, kg.transpose(-1, -2)) * scale
    # Rows without any present key: score 0 everywhere (finite softmax), output zeroed below, so
    # their gradient is exactly zero instead of NaN from a softmax over all -inf.
    scores = scores.masked_fill(~key_ok & any_key, float("-inf")).masked_fill(~any_key, 0.0)
    probs = torch.softmax(scores, dim=-1) * any_key
    return torch.matmul(probs, vg).permute(_inverse(perm))


def _inverse(perm):
    return tuple(perm.index(i) for i in range(len(perm)))


def entity_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, axes: Sequence[str],
                     mask: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """Reference ``entity_attention``: ``[P, B, T, K, H, Dh]`` in, ``[P, B, T, K, H, Dh]`` out (dtype of q,
    contiguous). Computes in fp32 (fp64 for fp64 inputs). Arguments are assumed valid: the public op
    ``mdn_fast.ops.entity_attention`` checks them."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    outs = [_attend_one_path(q[p], k[p], v[p], axis, mask, scale) for p, axis in enumerate(axes)]
    return torch.stack(outs).to(q.dtype).contiguous()
