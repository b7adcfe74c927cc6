"""``DualPathBlock``: the ST and TS paths of Micro-DualNet and their routed merge (design.md §1.2).

Layout: ``x [B, T, K, D]``, ``mask [B, T, K]`` bool (True = entity present).
```
X_ST = TemporalLayer_st( SpatialLayer_st(X)  + MLP_s(X) )
X_TS = SpatialLayer_ts( TemporalLayer_ts(X) + MLP_t(X) )
Y, alpha = routed_merge(X_ST, X_TS, R, tau, mask)
```
Computed in two ``entity_attention`` launches: stage 1 runs the first layer of both paths
(axes ``("spatial", "temporal")``; both read X, so their QKV projections come from one GEMM on one
shared normalisation), stage 2 the second layers (axes ``("temporal", "spatial")``; one batched GEMM).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import entity_attention, routed_merge
from ..ops import check_backend_name
from ..ops._checks import check_tau
from .entity_layer import EntityLayer, normalize_only


class BlockOutput(NamedTuple):
    y: torch.Tensor       # [B, T, K, D] merged tokens
    alpha: torch.Tensor   # [B, K, 2] routing weights (ST, TS), float32
    x_st: torch.Tensor    # [B, T, K, D] ST path output (before routing)
    x_ts: torch.Tensor    # [B, T, K, D] TS path output (before routing)


def _mlp(dim: int) -> nn.Sequential:
    """The residual route keeping the block input in each path: Linear D->2D, GELU, Linear 2D->D."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


class DualPathBlock(nn.Module):
    """One dual-path block.

    Args:
        dim: D. heads: H. tau: routing softmax temperature (fixed).
        backend: op backend for attention and merge. num_entities: K (the routers are per entity).
    """

    def __init__(self, dim: int, heads: int, tau: float = 1.0, backend: str = "auto", num_entities: int = 6):
        super().__init__()
        check_backend_name(backend)
        tau = check_tau(tau)  # the op's own rule, checked when the block is built
        self.dim, self.heads, self.tau, self.backend, self.num_entities = dim, heads, tau, backend, num_entities
        self.spatial_st = EntityLayer(dim, heads, "spatial", backend)
        self.temporal_st = EntityLayer(dim, heads, "temporal", backend)
        self.temporal_ts = EntityLayer(dim, heads, "temporal", backend)
        self.spatial_ts = EntityLayer(dim, heads, "spatial", backend)
        self.mlp_s = _mlp(dim)
        self.mlp_t = _mlp(dim)
        self.router_weight = nn.Parameter(torch.randn(num_entities, 2, 2 * dim) * 0.02)  # R_k: [K, 2, 2D]
        self.router_bias = nn.Parameter(torch.zeros(num_entities, 2))

    def _stage1_qkv(self, x: torch.Tensor):
        """q, k, v ``[2, B, T, K, H, Dh]`` (views) of SpatialLayer_st and TemporalLayer_ts on x."""
        (wa, ba), (wb, bb) = self.spatial_st.folded_qkv(), self.temporal_ts.folded_qkv()
        qkv = F.linear(normalize_only(x, self.spatial_st.norm1.eps), torch.cat([wa, wb]), torch.cat([ba, bb]))
        q, k, v = self.spatial_st.split_heads(qkv.unflatten(-1, (2, 3 * self.dim)))  # [B,T,K,2,H,Dh]
        return tuple(t.movedim(3, 0) for t in (q, k, v))

    def _stage2_qkv(self, u_st: torch.Tensor, u_ts: torch.Tensor):
        """q, k, v ``[2, B, T, K, H, Dh]`` (views) of TemporalLayer_st on u_st and SpatialLayer_ts on
        u_ts, from one batched GEMM."""
        la, lb = self.temporal_st, self.spatial_ts
        h = torch.stack([la.norm1(u_st), lb.norm1(u_ts)]).flatten(1, 3)                  # [2, N, D]
        w = torch.stack([la.qkv.weight, lb.qkv.weight]).transpose(1, 2)                  # [2, D, 3D]
        b = torch.stack([la.qkv.bias, lb.qkv.bias])[:, None]                             # [2, 1, 3D]
        qkv = torch.baddbmm(b, h, w).view(2, *u_st.shape[:3], 3 * self.dim)
        return la.split_heads(qkv)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> BlockOutput:
        """``x [B, T, K, D]``, ``mask [B, T, K]`` bool or None -> ``BlockOutput``."""
        if x.dim() != 4 or x.shape[-1] != self.dim or x.shape[2] != self.num_entities:
            raise ValueError(f"x: expected [B, T, K={self.num_entities}, D={self.dim}], got shape {tuple(x.shape)}")
        o1 = entity_attention(*self._stage1_qkv(x), ("spatial", "temporal"), mask=mask, backend=self.backend)
        u_st = self.spatial_st.finish(x, o1[0]) + self.mlp_s(x)
        u_ts = self.temporal_ts.finish(x, o1[1]) + self.mlp_t(x)
        o2 = entity_attention(*self._stage2_qkv(u_st, u_ts), ("temporal", "spatial"), mask=mask, backend=self.backend)
        x_st = self.temporal_st.finish(u_st, o2[0])
        x_ts = self.spatial_ts.finish(u_ts, o2[1])
        y, alpha = routed_merge(x_st, x_ts, self.router_weight, self.router_bias, tau=self.tau, mask=mask,
                                backend=self.backend)
        return BlockOutput(y, alpha, x_st, x_ts)

    def forward_unfused(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> BlockOutput:
        """The same function written layer by layer, straight from the equations (for tests)."""
        x_st = self.temporal_st(self.spatial_st(x, mask) + self.mlp_s(x), mask)
        x_ts = self.spatial_ts(self.temporal_ts(x, mask) + self.mlp_t(x), mask)
        y, alpha = routed_merge(x_st, x_ts, self.router_weight, self.router_bias, tau=self.tau, mask=mask,
                                backend="reference")
        return BlockOutput(y, alpha, x_st, x_ts)
