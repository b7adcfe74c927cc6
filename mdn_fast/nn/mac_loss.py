"""``MACLoss``: Mutual Action Consistency between the ST and TS path outputs (design.md §1.3)."""
from __future__ import annotations

import torch
from torch import nn

from ..reference.mac_loss import mac_loss


class MACLoss(nn.Module):
    """Symmetric per-entity InfoNCE between time-pooled ST and TS features over the batch.

    ``forward(x_st [B, T, K, D], x_ts [B, T, K, D], mask [B, T, K] or None) -> scalar``.
    """

    def __init__(self, tau_mac: float = 0.1):
        super().__init__()
        if not tau_mac > 0:
            raise ValueError(f"tau_mac: expected a positive temperature, got {tau_mac!r}")
        self.tau_mac = float(tau_mac)

    def forward(self, x_st: torch.Tensor, x_ts: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x_st.shape != x_ts.shape or x_st.dim() != 4:
            raise ValueError(f"x_st, x_ts: expected equal shapes [B, T, K, D], got {tuple(x_st.shape)} "
                             f"and {tuple(x_ts.shape)}")
        return mac_loss(x_st, x_ts, mask, self.tau_mac)
