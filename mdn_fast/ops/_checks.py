"""Argument checks for every public op, in one place. Each error names the argument, what was expected
and what was given, so the message alone says how to fix the call."""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch

from .._limits import AXES, MAX_SCALE, MIN_TAU, OP_DTYPES


def _fail(msg: str, exc=ValueError):
    raise exc(msg)


def _check_tensor(name: str, x, ndim: int, layout: str):
    if not isinstance(x, torch.Tensor):
        _fail(f"{name}: expected a torch.Tensor {layout}, got {type(x).__name__}", TypeError)
    if x.dim() != ndim:
        _fail(f"{name}: expected {ndim} dims {layout}, got shape {tuple(x.shape)}")
    if x.dtype not in OP_DTYPES:
        _fail(f"{name}: expected a floating dtype in {[str(d) for d in OP_DTYPES]}, got {x.dtype}; "
              f"cast with {name}.float()", TypeError)


def _check_same(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor, what=("shape", "dtype", "device")):
    for attr in what:
        a, b = getattr(x, attr), getattr(ref, attr)
        if a != b:
            shown = tuple(a) if attr == "shape" else a
            shown_ref = tuple(b) if attr == "shape" else b
            _fail(f"{name}: expected the same {attr} as {ref_name} ({shown_ref}), got {shown}",
                  TypeError if attr in ("dtype", "device") else ValueError)


def _real(name: str, x, expected: str) -> float:
    """``x`` as a float: any real number (``int``, ``float``, NumPy's integer and floating scalars: whatever
    registers as ``numbers.Real``). A bool is refused (``True`` would silently mean 1.0), and so is a tensor
    (even 0-d: reading its value is a host sync, and a graph break under ``torch.compile``)."""
    if isinstance(x, bool) or type(x).__name__ == "bool_":  # Python's bool is an int; NumPy's bool_ is not Real
        _fail(f"{name}: expected {expected}, got the bool {x!r} (a bool is not a number here)", TypeError)
    if isinstance(x, torch.Tensor):
        _fail(f"{name}: expected {expected}, got a torch.Tensor of shape {tuple(x.shape)}; pass a Python "
              f"number (e.g. float({name}) or {name}.item(), once, outside the step)", TypeError)
    if not isinstance(x, (int, float)) and not isinstance(x, numbers.Real):
        _fail(f"{name}: expected {expected}, got {type(x).__name__} {x!r}", TypeError)
    try:
        return float(x)
    except OverflowError:  # an int beyond the float range
        return math.inf


def check_scale(scale, Dh: int) -> float:
    """``entity_attention``'s softmax scale as a float: None gives ``Dh ** -0.5``; otherwise a real number,
    finite, > 0 and <= ``MAX_SCALE`` (beyond it the float32 scores overflow on plain inputs: see
    ``mdn_fast._limits``)."""
    if scale is None:
        return Dh ** -0.5
    expected = (f"a positive float, finite and <= {MAX_SCALE:g} (mdn_fast._limits.MAX_SCALE), "
                f"or None (default Dh ** -0.5)")
    value = _real("scale", scale, expected)
    if not (math.isfinite(value) and 0 < value <= MAX_SCALE):
        _fail(f"scale: expected {expected}, got {scale!r}")
    return value


def check_tau(tau, name: str = "tau") -> float:
    """``routed_merge``'s softmax temperature as a float: a real number, finite and >= ``MIN_TAU`` (below
    it ``1 / tau`` overflows the float32 logits: see ``mdn_fast._limits``). The model's constructors
    check their ``tau`` with it too, so a bad value fails when the model is built."""
    expected = f"a positive float (softmax temperature), finite and >= {MIN_TAU:g} (mdn_fast._limits.MIN_TAU)"
    value = _real(name, tau, expected)
    if not (math.isfinite(value) and value >= MIN_TAU):
        _fail(f"{name}: expected {expected}, got {tau!r}")
    return value


def _check_mask(mask, B: int, T: int, K: int, device: torch.device):
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        _fail(f"mask: expected a bool tensor [B, T, K] or None, got {type(mask).__name__}", TypeError)
    if mask.dtype != torch.bool:
        _fail(f"mask: expected dtype torch.bool [B, T, K] (True = present), got {mask.dtype}; "
              f"use mask.bool()", TypeError)
    if tuple(mask.shape) != (B, T, K):
        _fail(f"mask: expected shape [B, T, K] = {(B, T, K)}, got {tuple(mask.shape)}")
    if mask.device != device:
        _fail(f"mask: expected device {device} (that of the inputs), got {mask.device}", TypeError)


def check_entity_attention(q, k, v, axes, mask, scale) -> tuple[tuple[str, ...], float]:
    """Validate ``entity_attention`` arguments; return ``(axes as a tuple, scale as a float)``."""
    layout = "[P, B, T, K, H, Dh]"
    _check_tensor("q", q, 6, layout)
    _check_same("k", k, "q", q) if isinstance(k, torch.Tensor) else _check_tensor("k", k, 6, layout)
    _check_same("v", v, "q", q) if isinstance(v, torch.Tensor) else _check_tensor("v", v, 6, layout)
    P, B, T, K, H, Dh = q.shape
    if isinstance(axes, str) or not isinstance(axes, Sequence):
        _fail(f"axes: expected a sequence of {P} entries from {AXES} (one per path), got {axes!r}", TypeError)
    axes = tuple(axes)
    if len(axes) != P:
        _fail(f"axes: expected {P} entries (q.shape[0] = P paths), got {len(axes)}: {axes!r}")
    bad = [a for a in axes if a not in AXES]
    if bad:
        _fail(f"axes: each entry must be one of {AXES}, got {bad!r}")
    if min(q.shape) == 0:
        _fail(f"q: every dim of {layout} must be non-zero, got shape {tuple(q.shape)}")
    _check_mask(mask, B, T, K, q.device)
    return axes, check_scale(scale, Dh)


def check_routed_merge(x_st, x_ts, weight, bias, tau, mask) -> float:
    """Validate ``routed_merge`` arguments; return tau as a float."""
    layout = "[B, T, K, D]"
    _check_tensor("x_st", x_st, 4, layout)
    _check_tensor("x_ts", x_ts, 4, layout)
    _check_same("x_ts", x_ts, "x_st", x_st)
    B, T, K, D = x_st.shape
    if min(x_st.shape) == 0:
        _fail(f"x_st: every dim of {layout} must be non-zero, got shape {tuple(x_st.shape)}")
    _check_tensor("weight", weight, 3, "[K, 2, 2D]")
    if tuple(weight.shape) != (K, 2, 2 * D):
        _fail(f"weight: expected shape [K, 2, 2D] = {(K, 2, 2 * D)}, got {tuple(weight.shape)}")
    _check_tensor("bias", bias, 2, "[K, 2]")
    if tuple(bias.shape) != (K, 2):
        _fail(f"bias: expected shape [K, 2] = {(K, 2)}, got {tuple(bias.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t.device != x_st.device:
            _fail(f"{name}: expected device {x_st.device} (that of x_st), got {t.device}", TypeError)
    tau = check_tau(tau)
    _check_mask(mask, B, T, K, x_st.device)
    return tau
