"""Public ``entity_attention``: all paths' entity-wise attention in one call (design.md §2.1)."""
from __future__ import annotations

from typing import Sequence

import torch

from . import _backends
from ._checks import check_entity_attention


def entity_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, axes: Sequence[str], *,
                     mask: torch.Tensor | None = None, scale: float | None = None,
                     backend: str = "auto") -> torch.Tensor:
    """Entity-wise attention of P paths, each along its own axis.

    Args:
        q, k, v: ``[P, B, T, K, H, Dh]``, any strides (views of a fused QKV projection are fine).
        axes: P entries, each ``"spatial"`` (attend over the K entities of a frame) or
            ``"temporal"`` (attend over the T frames of an entity).
        mask: ``[B, T, K]`` bool or None; False tokens are never attended to (key padding). A query
            whose group has no present key outputs 0.
        scale: softmax scale, default ``Dh ** -0.5``.
        backend: ``"auto"`` | ``"reference"`` | ``"triton"`` | ``"cpp"``.

    Returns:
        ``[P, B, T, K, H, Dh]`` contiguous, dtype of q, accumulated in fp32.
    """
    axes, scale = check_entity_attention(q, k, v, axes, mask, scale)
    P, B, T, K, H, Dh = q.shape
    impl = _backends.resolve("entity_attention", backend, q, {"P": P, "B": B, "T": T, "K": K, "H": H, "Dh": Dh},
                             inputs=(q, k, v))
    return impl.entity_attention(q, k, v, axes, mask, scale)
