"""Triton kernels for ``routed_merge`` (design.md §2.2): masked time pooling of both paths, per-entity
router, tempered softmax and weighted merge in one launch; one backward launch.

Layouts (read and written through strides): x_st, x_ts, y, dy, dx_st, dx_ts ``[B, T, K, D]``; weight
``[K, 2, 2D]`` (any float dtype, read as fp32), bias ``[K, 2]``; mask ``[B, T, K]`` (uint8 view of the
bool mask); alpha, dalpha ``[B, K, 2]`` float32; backward scratch: dlogits ``[B, K, 2]`` and pooled
``[B, K, 2D]`` float32 (the means ``[mean_t x_st ; mean_t x_ts]``).

A program owns one (clip b, entity k): its ``[T, D]`` slices of x_st and x_ts. When they fit one tile
(``SINGLE``: T * D small enough) they are loaded once and kept in registers for both the pooling and the
merge, so each path output is read exactly once; otherwise D is walked in BLOCK_D chunks twice (the router
logits are a sum over D, so they are complete only after the first walk; the second walk's reads mostly
hit L2). The router's weight and bias gradients are ``dlogits^T @ pooled`` and ``sum_b dlogits``: the
backward writes per-(b, k) ``dlogits`` and ``pooled`` and the host reduces them with torch (a batched
matmul and a sum): no atomics, so every gradient is deterministic.

The chunk loops run ``NCHUNK`` (a ``tl.constexpr``, ``cdiv(D, BLOCK_D)``) times rather than over
``range(0, D, BLOCK_D)``: Triton's CPU interpreter holds a runtime int argument as a 1-element numpy
array, which Triton 3.6 turns into a loop bound with ``int(array)``, an error since NumPy 2.4 (Triton 3.8
squeezes the array first); a constexpr is a plain int under every Triton and NumPy. D itself stays a
runtime argument: made a constexpr, it let the compiler fold the ``< D`` masks into more live registers
(8 bytes of spill on sm_80 in the chunked fp16/bf16 forward, tools/kernel_resources.py).
"""
from __future__ import annotations

import triton
import triton.language as tl

from . import check_flavour, next_pow2


@triton.jit
def _program_pooling(m_ptr, sm_b, sm_t, sm_k, T, K, HAS_MASK: tl.constexpr, BLOCK_T: tl.constexpr,
                     BLOCK_D: tl.constexpr):
    """This program's (clip b, entity k), its frame and feature ranges, and the masked time-pooling
    weights (1/count on present frames, 0 elsewhere). Shared by forward and backward."""
    pid = tl.program_id(0)
    k = pid % K
    b = (pid // K).to(tl.int64)
    t = tl.arange(0, BLOCK_T)
    d = tl.arange(0, BLOCK_D)
    tmask = t < T
    if HAS_MASK:
        wt = (tl.load(m_ptr + b * sm_b + t * sm_t + k * sm_k, mask=tmask, other=0) != 0).to(tl.float32)
    else:
        wt = tmask.to(tl.float32)
    wt = wt / tl.maximum(tl.sum(wt, axis=0), 1.0)
    return b, k, t, d, tmask, wt


@triton.jit
def _rm_fwd(xs_ptr, xt_ptr, w_ptr, bias_ptr, m_ptr, y_ptr, a_ptr,
            sxs_b, sxs_t, sxs_k, sxs_d,
            sxt_b, sxt_t, sxt_k, sxt_d,
            sy_b, sy_t, sy_k, sy_d,
            sw_k, sw_j, sw_c, sb_k, sb_j,
            sm_b, sm_t, sm_k, sa_b, sa_k, sa_j,
            T, K, D, inv_tau,
            HAS_MASK: tl.constexpr, SINGLE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
            NCHUNK: tl.constexpr):
    b, k, t, d, tmask, wt = _program_pooling(m_ptr, sm_b, sm_t, sm_k, T, K, HAS_MASK, BLOCK_T, BLOCK_D)
    xs_base = xs_ptr + b * sxs_b + k * sxs_k + t[:, None] * sxs_t
    xt_base = xt_ptr + b * sxt_b + k * sxt_k + t[:, None] * sxt_t
    w0 = w_ptr + k * sw_k
    w1 = w_ptr + k * sw_k + sw_j

    if SINGLE:
        ld = tmask[:, None] & (d < D)[None, :]
        xs = tl.load(xs_base + d[None, :] * sxs_d, mask=ld, other=0.0).to(tl.float32)
        xt = tl.load(xt_base + d[None, :] * sxt_d, mask=ld, other=0.0).to(tl.float32)
        ps = tl.sum(xs * wt[:, None], axis=0)
        pt = tl.sum(xt * wt[:, None], axis=0)
        dm = d < D
        l0 = tl.sum(ps * tl.load(w0 + d * sw_c, mask=dm, other=0.0).to(tl.float32)
                    + pt * tl.load(w0 + (D + d) * sw_c, mask=dm, other=0.0).to(tl.float32), axis=0)
        l1 = tl.sum(ps * tl.load(w1 + d * sw_c, mask=dm, other=0.0).to(tl.float32)
                    + pt * tl.load(w1 + (D + d) * sw_c, mask=dm, other=0.0).to(tl.float32), axis=0)
    else:
        acc0 = tl.zeros([BLOCK_D], dtype=tl.float32)
        acc1 = tl.zeros([BLOCK_D], dtype=tl.float32)
        for c in range(NCHUNK):
            dc = c * BLOCK_D + d
            dm = dc < D
            ld = tmask[:, None] & dm[None, :]
            ps = tl.sum(tl.load(xs_base + dc[None, :] * sxs_d, mask=ld, other=0.0).to(tl.float32)
                        * wt[:, None], axis=0)
            pt = tl.sum(tl.load(xt_base + dc[None, :] * sxt_d, mask=ld, other=0.0).to(tl.float32)
                        * wt[:, None], axis=0)
            acc0 += (ps * tl.load(w0 + dc * sw_c, mask=dm, other=0.0).to(tl.float32)
                     + pt * tl.load(w0 + (D + dc) * sw_c, mask=dm, other=0.0).to(tl.float32))
            acc1 += (ps * tl.load(w1 + dc * sw_c, mask=dm, other=0.0).to(tl.float32)
                     + pt * tl.load(w1 + (D + dc) * sw_c, mask=dm, other=0.0).to(tl.float32))
        l0 = tl.sum(acc0, axis=0)
        l1 = tl.sum(acc1, axis=0)

    z0 = (l0 + tl.load(bias_ptr + k * sb_k).to(tl.float32)) * inv_tau
    z1 = (l1 + tl.load(bias_ptr + k * sb_k + sb_j).to(tl.float32)) * inv_tau
    zmax = tl.maximum(z0, z1)
    e0 = tl.exp(z0 - zmax)
    e1 = tl.exp(z1 - zmax)
    a0 = e0 / (e0 + e1)
    a1 = e1 / (e0 + e1)
    tl.store(a_ptr + b * sa_b + k * sa_k, a0)
    tl.store(a_ptr + b * sa_b + k * sa_k + sa_j, a1)

    y_base = y_ptr + b * sy_b + k * sy_k + t[:, None] * sy_t
    if SINGLE:
        tl.store(y_base + d[None, :] * sy_d, (a0 * xs + a1 * xt).to(y_ptr.dtype.element_ty), mask=ld)
    else:
        for c in range(NCHUNK):
            dc = c * BLOCK_D + d
            ld = tmask[:, None] & (dc < D)[None, :]
            xs = tl.load(xs_base + dc[None, :] * sxs_d, mask=ld, other=0.0).to(tl.float32)
            xt = tl.load(xt_base + dc[None, :] * sxt_d, mask=ld, other=0.0).to(tl.float32)
            tl.store(y_base + dc[None, :] * sy_d, (a0 * xs + a1 * xt).to(y_ptr.dtype.element_ty), mask=ld)


@triton.jit
def _rm_bwd(dy_ptr, da_ptr, xs_ptr, xt_ptr, w_ptr, a_ptr, m_ptr, dxs_ptr, dxt_ptr, dl_ptr, pool_ptr,
            sdy_b, sdy_t, sdy_k, sdy_d,
            sxs_b, sxs_t, sxs_k, sxs_d,
            sxt_b, sxt_t, sxt_k, sxt_d,
            sg_b, sg_t, sg_k, sg_d,
            sw_k, sw_j, sw_c,
            sm_b, sm_t, sm_k, sa_b, sa_k, sa_j, sda_b, sda_k, sda_j,
            T, K, D, inv_tau,
            HAS_MASK: tl.constexpr, SINGLE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
            NCHUNK: tl.constexpr):
    # dx_st, dx_ts share the strides sg_*; dl [B, K, 2] and pooled [B, K, 2D] are contiguous fp32.
    pid = tl.program_id(0)
    b, k, t, d, tmask, wt = _program_pooling(m_ptr, sm_b, sm_t, sm_k, T, K, HAS_MASK, BLOCK_T, BLOCK_D)
    a0 = tl.load(a_ptr + b * sa_b + k * sa_k)
    a1 = tl.load(a_ptr + b * sa_b + k * sa_k + sa_j)
    xs_base = xs_ptr + b * sxs_b + k * sxs_k + t[:, None] * sxs_t
    xt_base = xt_ptr + b * sxt_b + k * sxt_k + t[:, None] * sxt_t
    dy_base = dy_ptr + b * sdy_b + k * sdy_k + t[:, None] * sdy_t
    pool_base = pool_ptr + pid.to(tl.int64) * 2 * D
    w0 = w_ptr + k * sw_k
    w1 = w_ptr + k * sw_k + sw_j

    # Pass 1: pooled means (for dweight) and dL/dalpha from y = a0 * x_st + a1 * x_ts.
    if SINGLE:
        dm = d < D
        ld = tmask[:, None] & dm[None, :]
        dy = tl.load(dy_base + d[None, :] * sdy_d, mask=ld, other=0.0).to(tl.float32)
        xs = tl.load(xs_base + d[None, :] * sxs_d, mask=ld, other=0.0).to(tl.float32)
        xt = tl.load(xt_base + d[None, :] * sxt_d, mask=ld, other=0.0).to(tl.float32)
        tl.store(pool_base + d, tl.sum(xs * wt[:, None], axis=0), mask=dm)
        tl.store(pool_base + D + d, tl.sum(xt * wt[:, None], axis=0), mask=dm)
        ga0 = tl.sum(tl.sum(dy * xs, axis=1), axis=0)
        ga1 = tl.sum(tl.sum(dy * xt, axis=1), axis=0)
    else:
        acc0 = tl.zeros([BLOCK_D], dtype=tl.float32)
        acc1 = tl.zeros([BLOCK_D], dtype=tl.float32)
        for c in range(NCHUNK):
            dc = c * BLOCK_D + d
            dm = dc < D
            ld = tmask[:, None] & dm[None, :]
            dy = tl.load(dy_base + dc[None, :] * sdy_d, mask=ld, other=0.0).to(tl.float32)
            xs = tl.load(xs_base + dc[None, :] * sxs_d, mask=ld, other=0.0).to(tl.float32)
            xt = tl.load(xt_base + dc[None, :] * sxt_d, mask=ld, other=0.0).to(tl.float32)
            tl.store(pool_base + dc, tl.sum(xs * wt[:, None], axis=0), mask=dm)
            tl.store(pool_base + D + dc, tl.sum(xt * wt[:, None], axis=0), mask=dm)
            acc0 += tl.sum(dy * xs, axis=0)
            acc1 += tl.sum(dy * xt, axis=0)
        ga0 = tl.sum(acc0, axis=0)
        ga1 = tl.sum(acc1, axis=0)

    # Softmax backward (alpha = softmax(logits / tau)), adding the gradient that reaches alpha directly.
    ga0 += tl.load(da_ptr + b * sda_b + k * sda_k)
    ga1 += tl.load(da_ptr + b * sda_b + k * sda_k + sda_j)
    gbar = a0 * ga0 + a1 * ga1
    dl0 = a0 * (ga0 - gbar) * inv_tau
    dl1 = a1 * (ga1 - gbar) * inv_tau
    tl.store(dl_ptr + pid.to(tl.int64) * 2, dl0)
    tl.store(dl_ptr + pid.to(tl.int64) * 2 + 1, dl1)

    # Pass 2: dx = alpha * dy + (present / count) * (dlogits @ W_k) for each path's half of W_k.
    g_base = b * sg_b + k * sg_k + t[:, None] * sg_t
    if SINGLE:
        dps = (dl0 * tl.load(w0 + d * sw_c, mask=dm, other=0.0).to(tl.float32)
               + dl1 * tl.load(w1 + d * sw_c, mask=dm, other=0.0).to(tl.float32))
        dpt = (dl0 * tl.load(w0 + (D + d) * sw_c, mask=dm, other=0.0).to(tl.float32)
               + dl1 * tl.load(w1 + (D + d) * sw_c, mask=dm, other=0.0).to(tl.float32))
        offs = g_base + d[None, :] * sg_d
        tl.store(dxs_ptr + offs, (a0 * dy + wt[:, None] * dps[None, :]).to(dxs_ptr.dtype.element_ty), mask=ld)
        tl.store(dxt_ptr + offs, (a1 * dy + wt[:, None] * dpt[None, :]).to(dxt_ptr.dtype.element_ty), mask=ld)
    else:
        for c in range(NCHUNK):
            dc = c * BLOCK_D + d
            dm = dc < D
            ld = tmask[:, None] & dm[None, :]
            dy = tl.load(dy_base + dc[None, :] * sdy_d, mask=ld, other=0.0).to(tl.float32)
            dps = (dl0 * tl.load(w0 + dc * sw_c, mask=dm, other=0.0).to(tl.float32)
                   + dl1 * tl.load(w1 + dc * sw_c, mask=dm, other=0.0).to(tl.float32))
            dpt = (dl0 * tl.load(w0 + (D + dc) * sw_c, mask=dm, other=0.0).to(tl.float32)
                   + dl1 * tl.load(w1 + (D + dc) * sw_c, mask=dm, other=0.0).to(tl.float32))
            offs = g_base + dc[None, :] * sg_d
            tl.store(dxs_ptr + offs, (a0 * dy + wt[:, None] * dps[None, :]).to(dxs_ptr.dtype.element_ty),
                     mask=ld)
            tl.store(dxt_ptr + offs, (a1 * dy + wt[:, None] * dpt[None, :]).to(dxt_ptr.dtype.element_ty),
                     mask=ld)


rm_fwd_kernel = _rm_fwd
rm_bwd_kernel = _rm_bwd
check_flavour(rm_fwd_kernel, rm_bwd_kernel)

#: Largest [BLOCK_T, BLOCK_D] tile per path kept in registers (fp32): beyond it D is walked in chunks.
_SINGLE_TILE = 4096


def launch_config(T: int, D: int) -> dict:
    """BLOCK_T = next power of two of T; BLOCK_D = that of D when the [T, D] tile fits (SINGLE, each input
    read once), else the largest power of two keeping the tile within ``_SINGLE_TILE``."""
    block_t = next_pow2(T)
    block_d_full = next_pow2(D)
    single = block_t * block_d_full <= _SINGLE_TILE
    block_d = block_d_full if single else max(16, _SINGLE_TILE // block_t)
    # 8 warps from 2048-element tiles, 16 from 4096: fewer spill (4 warps on the paper's [8, 256] bf16
    # tile on sm_80; 8 warps on the chunked [8, 512] fp16/bf16 forward) (tools/kernel_resources.py).
    return dict(BLOCK_T=block_t, BLOCK_D=block_d, SINGLE=single, NCHUNK=-(-D // block_d),
                num_warps=4 if block_t * block_d < 2048 else (8 if block_t * block_d < 4096 else 16))
