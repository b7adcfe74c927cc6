"""``MACLoss``: Mutual Action Consistency between the ST and TS path outputs (design.md §1.3)."""
from __future__ import annotations

import torch
from torch import nn

from ..reference.mac_loss import mac_loss_pooled
from ..reference.routed_merge import masked_time_mean


class MACLoss(nn.Module):
    """Symmetric per-entity InfoNCE between time-pooled ST and TS features over the batch.

    ``forward(x_st [B, T, K, D], x_ts [B, T, K, D], mask [B, T, K] or None) -> scalar``.

    Under ``torch.distributed`` (initialised, world size > 1, ``gather=True``) the negatives are the clips
    of the *global* batch: the pooled features of every rank are all-gathered with autograd, so that with
    DDP's gradient averaging a multi-process step computes the same function as one process on the
    concatenated batch.
    """

    def __init__(self, tau_mac: float = 0.1, gather: bool = True):
        super().__init__()
        if not tau_mac > 0:
            raise ValueError(f"tau_mac: expected a positive temperature, got {tau_mac!r}")
        self.tau_mac = float(tau_mac)
        self.gather = gather

    def forward(self, x_st: torch.Tensor, x_ts: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x_st.shape != x_ts.shape or x_st.dim() != 4:
            raise ValueError(f"x_st, x_ts: expected equal shapes [B, T, K, D], got {tuple(x_st.shape)} "
                             f"and {tuple(x_ts.shape)}")
        B, _, K, _ = x_st.shape
        m_st, m_ts = masked_time_mean(x_st, mask), masked_time_mean(x_ts, mask)      # [B, K, D]
        present = (mask.any(dim=1) if mask is not None
                   else torch.ones(B, K, dtype=torch.bool, device=x_st.device))   # [B, K]
        if self.gather and _world_size() > 1:
            m_st, m_ts, present = _gather_batch(m_st, m_ts, present)
        return mac_loss_pooled(m_st, m_ts, present, self.tau_mac)


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _gather_batch(m_st, m_ts, present):
    """All ranks' rows, rank order; ranks with fewer clips are padded with absent rows (never anchors
    or negatives). Feature gradients flow back to their own rank."""
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=present.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([present.shape[0]], device=present.device))
    sizes = [int(s) for s in sizes]
    pad = max(sizes) - present.shape[0]
    if pad:
        m_st = torch.cat([m_st, m_st.new_zeros(pad, *m_st.shape[1:])])
        m_ts = torch.cat([m_ts, m_ts.new_zeros(pad, *m_ts.shape[1:])])
        present = torch.cat([present, present.new_zeros(pad, present.shape[1])])
    flags = [torch.empty_like(present, dtype=torch.uint8) for _ in range(world)]
    dist.all_gather(flags, present.to(torch.uint8))   # gloo has no bool collectives
    flags = [f.bool() for f in flags]
    st, ts = all_gather(m_st), all_gather(m_ts)
    keep = lambda parts: torch.cat([p[:n] for p, n in zip(parts, sizes)])  # noqa: E731
    return keep(st), keep(ts), keep(flags)
