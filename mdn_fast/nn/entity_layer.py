"""``EntityLayer``: a pre-norm transformer layer whose self-attention is restricted to one axis.

Layout: tokens ``[B, T, K, D]`` (frames outer, entities inner).
``h = x + Attn_axis(LN1(x)); h = h + FFN(LN2(h))`` with ``FFN = Linear(D, 4D) -> GELU -> Linear(4D, D)``:
the function of ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu", dropout=0)`` applied
to every group of the axis (the K entities of a frame, or the T frames of an entity).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._limits import AXES
from ..ops import entity_attention
from ..ops import check_backend_name


class EntityLayer(nn.Module):
    """One axis-restricted pre-norm transformer layer.

    Args:
        dim: token features D. heads: attention heads H (D must be divisible by H).
        axis: ``"spatial"`` (attend over entities of a frame) or ``"temporal"`` (over frames of an entity).
        backend: op backend for the attention (``"auto"``, ``"reference"``, ``"triton"``, ``"cpp"``).
    """

    def __init__(self, dim: int, heads: int, axis: str, backend: str = "auto", mlp_ratio: int = 4):
        super().__init__()
        if axis not in AXES:
            raise ValueError(f"axis: expected one of {AXES}, got {axis!r}")
        if dim % heads:
            raise ValueError(f"dim: expected a multiple of heads={heads}, got dim={dim}")
        check_backend_name(backend)
        self.dim, self.heads, self.axis, self.backend = dim, heads, axis, backend
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)       # rows: q, k, v (the in_proj order of nn.MultiheadAttention)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def folded_qkv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """QKV weight ``[3D, D]`` and bias ``[3D]`` with LN1's affine folded in, so that
        ``qkv(LN1(x)) == F.linear(layer_norm(x) without affine, w, b)``: lets layers reading the same
        input share one normalisation and one GEMM."""
        w = self.qkv.weight * self.norm1.weight[None, :]
        b = self.qkv.bias + self.qkv.weight @ self.norm1.bias
        return w, b

    def split_heads(self, qkv: torch.Tensor):
        """``[..., 3D]`` -> q, k, v views ``[..., H, Dh]`` (no copies)."""
        q, k, v = qkv.unflatten(-1, (3, self.heads, self.dim // self.heads)).unbind(-3)
        return q, k, v

    def finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Residual, output projection and FFN: ``attn [B, T, K, H, Dh]`` is the attention output."""
        h = x + self.proj(attn.flatten(-2))
        return h + self.ffn(self.norm2(h))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, T, K, D]``, ``mask [B, T, K]`` bool or None -> ``[B, T, K, D]``."""
        if x.dim() != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"x: expected [B, T, K, D={self.dim}], got shape {tuple(x.shape)}")
        q, k, v = self.split_heads(self.qkv(self.norm1(x)))
        o = entity_attention(q[None], k[None], v[None], (self.axis,), mask=mask, backend=self.backend)
        return self.finish(x, o[0])


def normalize_only(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm without affine (the affine is folded into the next GEMM)."""
    return F.layer_norm(x, x.shape[-1:], eps=eps)
