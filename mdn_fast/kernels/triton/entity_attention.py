"""Triton kernels for ``entity_attention`` (design.md §2.1): every path, whatever its axis, in one launch.

Layouts: q, k, v, o, do, dq, dk, dv ``[P, B, T, K, H, Dh]`` read and written through their strides (views
of a packed QKV projection need no copy); mask ``[B, T, K]`` (uint8 view of the bool mask, any strides);
lse ``[P, B, T, K, H]`` float32, the **base-2** log-sum-exp of each query's scaled scores (``+inf`` for
a query whose group has no present key), saved by the forward for the backward.

Tiling. A program owns one (path p, clip b, head h) and a block of whole attention groups of that path:
path p attends along ``axis_p``; its groups have ``n`` members (K entities of a frame when spatial, T
frames of an entity when temporal) and there are ``m`` of them per (b, h). The program's BLOCK_R rows are
``G = BLOCK_R // n`` consecutive groups laid end to end (row r: group ``r // n``, member ``r % n``); the
score tile is BLOCK_R x BLOCK_R with every pair outside a common group masked out, so tiny groups
(K = 6, T = 8) still give the tensor cores a 64-row tile and each program reads whole rows of Dh. The
axis of each path is a bit of ``axes_bits`` (bit p set: temporal), so one launch serves any mix of axes;
the grid is ``(B * H * NGB, P)`` with NGB the most group blocks any path needs; rows past a path's last
group are masked.

Each program owns every query and every key of its groups, so the backward writes dq, dk, dv without
atomics (deterministic), recomputes the probabilities from lse (no attention matrix in memory) and gets
FlashAttention's ``rowsum(dO * O)`` as ``rowsum(P * dP)`` from its own tile, so it never reads o.
Accumulation is fp32; fp32 inputs use IEEE fp32 dots (no TF32).
"""
from __future__ import annotations

import triton
import triton.language as tl

from . import device_fn, jit, next_pow2

LOG2E = 1.4426950408889634


def _program_rows_py(T, K, H, DH, NGB, axes_bits, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's (path, clip, head) and its BLOCK_R rows: row r is member ``r % n`` of group
    ``r // n`` (see the module docstring). Shared by the forward and the backward, which must tile alike."""
    pid = tl.program_id(0)
    p = tl.program_id(1)
    gb = pid % NGB
    bh = pid // NGB
    h = bh % H
    b = (bh // H).to(tl.int64)
    temporal = (axes_bits >> p) & 1
    n = temporal * T + (1 - temporal) * K          # group size
    m = temporal * K + (1 - temporal) * T          # groups per (b, h)
    G = BLOCK_R // n                               # whole groups per program
    r = tl.arange(0, BLOCK_R)
    gl = r // n
    mi = r % n
    gi = gb * G + gl
    valid = (gl < G) & (gi < m)
    t = temporal * mi + (1 - temporal) * gi
    e = temporal * gi + (1 - temporal) * mi
    d = tl.arange(0, BLOCK_D)
    ld = valid[:, None] & (d < DH)[None, :]
    return p.to(tl.int64), b, h, gl, t, e, valid, d, ld


def _load_rows_py(ptr, p64, b, h, t, e, d, ld, s_p, s_b, s_t, s_k, s_h, s_d):
    """Rows ``[BLOCK_R, BLOCK_D]`` of a ``[P, B, T, K, H, Dh]`` tensor through its strides (0 where masked)."""
    rows = p64 * s_p + b * s_b + h * s_h + t * s_t + e * s_k
    return tl.load(ptr + rows[:, None] + d[None, :] * s_d, mask=ld, other=0.0)


_program_rows = device_fn(_program_rows_py)
_load_rows = device_fn(_load_rows_py)


def _ea_fwd(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, m_ptr,
            sq_p, sq_b, sq_t, sq_k, sq_h, sq_d,
            sk_p, sk_b, sk_t, sk_k, sk_h, sk_d,
            sv_p, sv_b, sv_t, sv_k, sv_h, sv_d,
            so_p, so_b, so_t, so_k, so_h, so_d,
            sl_p, sl_b, sl_t, sl_k, sl_h,
            sm_b, sm_t, sm_k,
            T, K, H, DH, NGB, axes_bits, qk_scale,
            HAS_MASK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PREC: tl.constexpr):
    p64, b, h, gl, t, e, valid, d, ld = _program_rows(T, K, H, DH, NGB, axes_bits, BLOCK_R, BLOCK_D)
    q = _load_rows(q_ptr, p64, b, h, t, e, d, ld, sq_p, sq_b, sq_t, sq_k, sq_h, sq_d)
    k = _load_rows(k_ptr, p64, b, h, t, e, d, ld, sk_p, sk_b, sk_t, sk_k, sk_h, sk_d)
    v = _load_rows(v_ptr, p64, b, h, t, e, d, ld, sv_p, sv_b, sv_t, sv_k, sv_h, sv_d)

    key_ok = valid
    if HAS_MASK:
        present = tl.load(m_ptr + b * sm_b + t * sm_t + e * sm_k, mask=valid, other=0)
        key_ok = key_ok & (present != 0)
    allowed = (gl[:, None] == gl[None, :]) & valid[:, None] & key_ok[None, :]

    s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale          # log2 units
    s = tl.where(allowed, s, float("-inf"))
    row_max = tl.max(s, axis=1)
    has_key = row_max > float("-inf")
    row_max = tl.where(has_key, row_max, 0.0)
    pr = tl.exp2(s - row_max[:, None])
    denom = tl.sum(pr, axis=1)
    inv = tl.where(has_key, 1.0 / tl.where(has_key, denom, 1.0), 0.0)
    acc = tl.dot(pr.to(v.dtype), v, input_precision=DOT_PREC) * inv[:, None]

    o_rows = p64 * so_p + b * so_b + h * so_h + t * so_t + e * so_k
    tl.store(o_ptr + o_rows[:, None] + d[None, :] * so_d, acc.to(o_ptr.dtype.element_ty), mask=ld)
    lse = tl.where(has_key, row_max + tl.log2(tl.where(has_key, denom, 1.0)), float("inf"))
    l_rows = p64 * sl_p + b * sl_b + h * sl_h + t * sl_t + e * sl_k
    tl.store(lse_ptr + l_rows, lse, mask=valid)


def _ea_bwd(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, m_ptr, dq_ptr, dk_ptr, dv_ptr,
            sq_p, sq_b, sq_t, sq_k, sq_h, sq_d,
            sk_p, sk_b, sk_t, sk_k, sk_h, sk_d,
            sv_p, sv_b, sv_t, sv_k, sv_h, sv_d,
            sdo_p, sdo_b, sdo_t, sdo_k, sdo_h, sdo_d,
            sg_p, sg_b, sg_t, sg_k, sg_h, sg_d,
            sl_p, sl_b, sl_t, sl_k, sl_h,
            sm_b, sm_t, sm_k,
            T, K, H, DH, NGB, axes_bits, qk_scale, scale,
            HAS_MASK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PREC: tl.constexpr):
    # Same program -> groups mapping as the forward. dq, dk, dv share the strides sg_* (one layout).
    # The program holds whole rows of P, so rowsum(dO * O) = rowsum(P * dP): o is never read.
    p64, b, h, gl, t, e, valid, d, ld = _program_rows(T, K, H, DH, NGB, axes_bits, BLOCK_R, BLOCK_D)
    q = _load_rows(q_ptr, p64, b, h, t, e, d, ld, sq_p, sq_b, sq_t, sq_k, sq_h, sq_d)
    k = _load_rows(k_ptr, p64, b, h, t, e, d, ld, sk_p, sk_b, sk_t, sk_k, sk_h, sk_d)
    v = _load_rows(v_ptr, p64, b, h, t, e, d, ld, sv_p, sv_b, sv_t, sv_k, sv_h, sv_d)
    do = _load_rows(do_ptr, p64, b, h, t, e, d, ld, sdo_p, sdo_b, sdo_t, sdo_k, sdo_h, sdo_d)
    l_rows = p64 * sl_p + b * sl_b + h * sl_h + t * sl_t + e * sl_k
    lse = tl.load(lse_ptr + l_rows, mask=valid, other=float("inf"))

    key_ok = valid
    if HAS_MASK:
        present = tl.load(m_ptr + b * sm_b + t * sm_t + e * sm_k, mask=valid, other=0)
        key_ok = key_ok & (present != 0)
    allowed = (gl[:, None] == gl[None, :]) & valid[:, None] & key_ok[None, :]

    s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
    s = tl.where(allowed, s, float("-inf"))
    # Empty-group rows have lse = +inf and every score -inf: probabilities 0, so all their grads are 0.
    pr = tl.exp2(s - lse[:, None])
    pr = tl.where(allowed, pr, 0.0)
    dv = tl.dot(tl.trans(pr).to(do.dtype), do, input_precision=DOT_PREC)
    dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
    delta = tl.sum(pr * dp, axis=1)                                            # = rowsum(dO * O)
    ds = pr * (dp - delta[:, None]) * scale
    dq = tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    dk = tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=DOT_PREC)

    g_rows = p64 * sg_p + b * sg_b + h * sg_h + t * sg_t + e * sg_k
    g_offs = g_rows[:, None] + d[None, :] * sg_d
    tl.store(dq_ptr + g_offs, dq.to(dq_ptr.dtype.element_ty), mask=ld)
    tl.store(dk_ptr + g_offs, dk.to(dk_ptr.dtype.element_ty), mask=ld)
    tl.store(dv_ptr + g_offs, dv.to(dv_ptr.dtype.element_ty), mask=ld)


ea_fwd_kernel = jit(_ea_fwd)
ea_bwd_kernel = jit(_ea_bwd)


def launch_config(T: int, K: int, Dh: int, axes: list[int], dtype_is_fp32: bool) -> dict:
    """Block sizes and grid width for sizes (T, K, Dh) and per-path axes (0 spatial, 1 temporal).

    BLOCK_R: rows per program, a power of two >= the larger group (so every group fits in one program),
    >= 16 (``tl.dot``'s minimum) and up to 64 so that tiny groups are batched (T = 8, K = 6: one program
    per (p, b, h)). BLOCK_D: next power of two of Dh (>= 16), masked.
    """
    largest = max(T if a else K for a in axes)
    block_r = max(16, next_pow2(largest), min(64, next_pow2(T * K)))
    block_d = max(16, next_pow2(Dh))
    ngb = max(triton.cdiv(K if a else T, block_r // (T if a else K)) for a in axes)
    bits = sum(1 << i for i, a in enumerate(axes) if a)
    return dict(BLOCK_R=block_r, BLOCK_D=block_d, NGB=ngb, axes_bits=bits,
                DOT_PREC="ieee" if dtype_is_fp32 else "tf32",
                num_warps=4 if block_r * block_d <= 64 * 64 else 8)
