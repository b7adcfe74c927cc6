"""The reference backend: the pure-PyTorch truth, usable everywhere, for every size and dtype."""
from __future__ import annotations

from .. import reference


def unavailable_reason():
    return None


def runtime_reasons(op, device, dtype):
    return []


entity_attention = reference.entity_attention
routed_merge = reference.routed_merge
