"""Inputs and baselines the benchmark suites share with each other and with the probes in ``tools/``.

Their own module, not a benchmark file's: nothing imports a ``test_*.py`` module of ``benchmarks/``
(tests/ops/test_benchmark_imports.py holds every module to that), so a benchmark file stays free to change
its cases without breaking an importer.

- ``entity_mask``: the entity mask every op and block benchmark uses (about 10% absent tokens, no empty
  group);
- ``sdpa_entity_attention``: the SDPA baseline of ``entity_attention`` (what a user writes with PyTorch
  alone).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def entity_mask(B: int, T: int, K: int, device, seed: int = 2) -> torch.Tensor:
    """``[B, T, K]`` bool, ~90% present; frame t keeps entity t % K and entity k keeps frame k % T, so
    no spatial or temporal group is empty."""
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(B, T, K, generator=g) < 0.9
    m[:, torch.arange(T), torch.arange(T) % K] = True
    m[:, torch.arange(K) % T, torch.arange(K)] = True
    return m.to(device)


# Per axis: [B, T, K, H, Dh] -> [B, G, H, N, Dh] and the attended group of the mask [B, T, K] -> [B, G, N].
_TO_GROUP = {"spatial": (0, 1, 3, 2, 4), "temporal": (0, 2, 3, 1, 4)}
_FROM_GROUP = {"spatial": (0, 1, 3, 2, 4), "temporal": (0, 3, 1, 2, 4)}
_MASK_TO_GROUP = {"spatial": (0, 1, 2), "temporal": (0, 2, 1)}


def sdpa_entity_attention(q, k, v, axes, mask, scale):
    """The SDPA baseline: per path, reshape to ``[B·G, H, N, Dh]`` and call
    ``F.scaled_dot_product_attention`` (boolean ``attn_mask [B·G, 1, 1, N]``, True = attend)."""
    outs = []
    for p, axis in enumerate(axes):
        perm = _TO_GROUP[axis]
        grouped = [x[p].permute(perm) for x in (q, k, v)]              # [B, G, H, N, Dh]
        B, G, Hh, N, Dh = grouped[0].shape
        qg, kg, vg = (x.reshape(B * G, Hh, N, Dh) for x in grouped)     # copies: strided views
        attn_mask = None
        if mask is not None:
            attn_mask = mask.permute(_MASK_TO_GROUP[axis]).reshape(B * G, 1, 1, N)
        o = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=attn_mask, scale=scale)
        outs.append(o.reshape(B, G, Hh, N, Dh).permute(_FROM_GROUP[axis]))
    return torch.stack(outs)                                            # [P, B, T, K, H, Dh] contiguous
