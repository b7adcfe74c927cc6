"""Reference Mutual Action Consistency (MAC) loss (design.md §1.3).

For each entity k: ``z_st = normalize(mean_t x_st[:, :, k])``, ``z_ts = normalize(mean_t x_ts[:, :, k])``
(means over present frames), then a symmetric InfoNCE over the batch: the positive of clip i is the
other path of clip i, the negatives are the other path of the other clips, same entity. Only clips in
which the entity is present take part (as anchors and as negatives); entities present in fewer than two
clips have no negatives and are skipped. The loss is the mean over the remaining entities (0 if none).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .routed_merge import masked_time_mean


def mac_loss(x_st: torch.Tensor, x_ts: torch.Tensor, mask: torch.Tensor | None = None,
             tau_mac: float = 0.1) -> torch.Tensor:
    """``x_st, x_ts [B, T, K, D]``, ``mask [B, T, K]`` bool or None -> scalar loss (fp32/fp64)."""
    B, T, K, _ = x_st.shape
    present = (mask.any(dim=1) if mask is not None
               else torch.ones(B, K, dtype=torch.bool, device=x_st.device))          # [B, K]
    return mac_loss_pooled(masked_time_mean(x_st, mask), masked_time_mean(x_ts, mask), present, tau_mac)


def mac_loss_pooled(m_st: torch.Tensor, m_ts: torch.Tensor, present: torch.Tensor,
                    tau_mac: float = 0.1) -> torch.Tensor:
    """The loss from time-pooled path features ``m_st, m_ts [B, K, D]`` and ``present [B, K]`` (entity
    seen in at least one frame of the clip): the part a distributed run evaluates on the gathered batch."""
    z_st = F.normalize(m_st, dim=-1).transpose(0, 1)                           # [K, B, D]
    z_ts = F.normalize(m_ts, dim=-1).transpose(0, 1)
    present = present.T                                                        # [K, B]
    logits = torch.bmm(z_st, z_ts.transpose(1, 2)) / tau_mac                   # [K, B(st), B(ts)]
    pair_ok = present[:, :, None] & present[:, None, :]
    logits = logits.masked_fill(~pair_ok, float("-inf"))
    diag = torch.diagonal(logits, dim1=1, dim2=2)                              # [K, B]
    # Absent anchors have an all -inf row; give them a finite row so logsumexp stays finite, weight 0.
    safe = logits.masked_fill(~present[:, :, None], 0.0)
    safe_t = logits.transpose(1, 2).masked_fill(~present[:, :, None], 0.0)
    nll_st = torch.logsumexp(safe, dim=2) - diag.masked_fill(~present, 0.0)    # ST anchor -> TS
    nll_ts = torch.logsumexp(safe_t, dim=2) - diag.masked_fill(~present, 0.0)  # TS anchor -> ST
    n = present.sum(dim=1)                                                     # [K]
    per_entity = ((nll_st + nll_ts) * present).sum(dim=1) / (2 * n.clamp_min(1))
    used = n >= 2
    return (per_entity * used).sum() / used.sum().clamp_min(1)
