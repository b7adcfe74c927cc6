"""Triton kernels for ``entity_attention`` (design.md §2.1): every path, whatever its axis, in one launch.

Layouts: q, k, v, o, do, dq, dk, dv ``[P, B, T, K, H, Dh]`` read and written through their strides (views
of a packed QKV projection need no copy); mask ``[B, T, K]`` (uint8 view of the bool mask, any strides);
lse ``[P, B, T, K, H]`` float32, the natural-log log-sum-exp of each query's scaled scores (``-inf`` for
a query whose group has no present key), saved by the forward for the backward: the same statistic, in
the same convention, as the C++ kernels' ``lse``. The kernels work in natural-log units throughout
(``_exp``: ``exp2`` of a natural-unit difference times log2 e), so the backward's ``s * scale - lse`` is
bit for bit the forward's ``s * scale - row_max - log(denom)``: a base-2 kernel storing a natural-log
lse would round it twice (ln 2 on the store, log2 e on the load), and at large scales that error, times
``scale``, reaches the gradients of a saturated softmax, which must be exactly 0.

Tiling. A program owns one (path p, clip b, head h) and a block of whole attention groups of that path:
path p attends along ``axis_p``; its groups have ``n`` members (K entities of a frame when spatial, T
frames of an entity when temporal) and there are ``m`` of them per (b, h). The program's BLOCK_R rows are
``G = BLOCK_R // n`` consecutive groups laid end to end (row r: group ``r // n``, member ``r % n``); the
score tile is BLOCK_R x BLOCK_R with every pair outside a common group masked out, so tiny groups
(K = 6, T = 8) still give the tensor cores a 64-row tile and each program reads whole rows of Dh. The
axis of each path is a bit of ``axes_bits`` (bit p set: temporal), so one launch serves any mix of axes;
the grid is ``(B * H * NGB, P)`` with NGB the most group blocks any path needs; rows past a path's last
group are masked.

Head dimension. Up to 32 columns a program holds whole rows of q, k, v (and do): each is read once.
Wider heads (and 64-row tiles whose rows Triton cannot load as vectors) are walked in chunks of
``CHUNK_D`` columns (``launch_config``): the forward accumulates S = Q K^T over the chunks, then writes
O = P V chunk by chunk; the backward accumulates S and dP = dO V^T over the chunks, then writes dv, dq,
dk chunk by chunk. The second pass re-reads chunks this program read moments before (L1/L2 hits are
expected, so HBM traffic should not grow: not yet measured on a GPU), and only [BLOCK_R, CHUNK_D]
operand tiles are live: no configuration spills registers (whole 128-column fp32 rows spilled up to
10 KB per thread).

Each program owns every query and every key of its groups, so the backward writes dq, dk, dv without
atomics (deterministic), recomputes the probabilities from lse (no attention matrix in memory) and gets
FlashAttention's ``rowsum(dO * O)`` as ``rowsum(P * dP)`` from its own tile, so it never reads o.
Accumulation is fp32; fp32 inputs use IEEE fp32 dots (no TF32).

Group independence (design.md §4): stacked groups must behave as separate launches, and a masked key must
never reach any output. Every tile is loaded finite (``_load_rows``: non-finite entries, masked keys and
padding rows read as 0, plus a per-row flag of what was non-finite) and every cross-group / masked pair of
the score, dP and dS tiles is selected away with ``tl.where``, never multiplied by 0; a non-finite input
comes back as NaN scores (forward) or NaN dP (backward) on the pairs of its own group only, so it
poisons exactly its groups' outputs and gradients.
"""
from __future__ import annotations

import triton
import triton.language as tl

from . import check_flavour, next_pow2


@triton.jit
def _program_rows(T, K, H, NGB, axes_bits, BLOCK_R: tl.constexpr):
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
    return p.to(tl.int64), b, h, gl, t, e, valid


@triton.jit
def _cols(c, valid, DH, WIDTH: tl.constexpr):
    """Head-dimension columns ``c .. c + WIDTH`` and the [BLOCK_R, WIDTH] load/store mask (valid rows,
    columns below Dh)."""
    d = c + tl.arange(0, WIDTH)
    return d, valid[:, None] & (d < DH)[None, :]


@triton.jit
def _key_rows(m_ptr, b, t, e, valid, gl, sm_b, sm_t, sm_k, HAS_MASK: tl.constexpr):
    """Which rows are present keys, and the [BLOCK_R, BLOCK_R] pairs (query, key) that may interact:
    same group, valid query, present key."""
    key_ok = valid
    if HAS_MASK:
        present = tl.load(m_ptr + b * sm_b + t * sm_t + e * sm_k, mask=valid, other=0)
        key_ok = key_ok & (present != 0)
    allowed = (gl[:, None] == gl[None, :]) & valid[:, None] & key_ok[None, :]
    return key_ok, allowed


@triton.jit
def _load_rows(ptr, p64, b, h, t, e, d, ld, keep, s_p, s_b, s_t, s_k, s_h, s_d):
    """Rows ``[BLOCK_R, len(d)]`` (columns ``d``) of a ``[P, B, T, K, H, Dh]`` tensor through its strides,
    made finite (non-finite entries, masked-out elements and rows not in ``keep`` read as 0), and
    ``bad [BLOCK_R]``: which kept rows held a non-finite value in these columns.

    Why: a program's tile stacks several groups, and a row-contracting tl.dot (P @ V, dS @ K, ...)
    multiplies every row by the probabilities of every other group's queries, which are exactly 0 there:
    but 0 * NaN = NaN. So no operand of a dot may carry a non-finite value; the kernels put the poison
    back where it belongs, as NaN scores of the pairs inside the group that hold a bad row."""
    rows = p64 * s_p + b * s_b + h * s_h + t * s_t + e * s_k
    x = tl.load(ptr + rows[:, None] + d[None, :] * s_d, mask=ld, other=0.0)
    finite = tl.abs(x) < float("inf")                # False for NaN and +-inf
    bad = (tl.max(tl.where(finite, 0, 1), axis=1) > 0) & keep
    return tl.where(finite & keep[:, None], x, 0.0).to(x.dtype), bad


@triton.jit
def _reload_rows(ptr, p64, b, h, t, e, d, ld, keep, s_p, s_b, s_t, s_k, s_h, s_d):
    """``_load_rows`` again in a later pass over the head dimension (values only; the flags are known):
    addressed as column pointers plus row offsets, so the compiler recomputes the addresses instead of
    keeping the first pass's 64-bit pointer tile alive across the softmax (registers). The bytes come
    from L1/L2: this program read them moments ago."""
    rows = p64 * s_p + b * s_b + h * s_h + t * s_t + e * s_k
    x = tl.load((ptr + d * s_d)[None, :] + rows[:, None], mask=ld, other=0.0)
    finite = tl.abs(x) < float("inf")
    return tl.where(finite & keep[:, None], x, 0.0).to(x.dtype)


@triton.jit
def _chunked_scores(q_ptr, k_ptr, p64, b, h, t, e, valid, key_ok, DH,
                    sq_p, sq_b, sq_t, sq_k, sq_h, sq_d, sk_p, sk_b, sk_t, sk_k, sk_h, sk_d,
                    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK_D: tl.constexpr, DOT_PREC: tl.constexpr):
    """S = Q K^T (unscaled, fp32 [BLOCK_R, BLOCK_R]) accumulated over the head dim in chunks of CHUNK_D
    columns, and which query rows (of q) and key rows (of k) held a non-finite value."""
    s = tl.zeros([BLOCK_R, BLOCK_R], dtype=tl.float32)
    bad_q = tl.zeros([BLOCK_R], dtype=tl.int1)
    bad_k = tl.zeros([BLOCK_R], dtype=tl.int1)
    for c in tl.range(0, BLOCK_D, CHUNK_D, num_stages=1):
        d, ld = _cols(c, valid, DH, CHUNK_D)
        q, bq = _load_rows(q_ptr, p64, b, h, t, e, d, ld, valid, sq_p, sq_b, sq_t, sq_k, sq_h, sq_d)
        k, bk = _load_rows(k_ptr, p64, b, h, t, e, d, ld, key_ok, sk_p, sk_b, sk_t, sk_k, sk_h, sk_d)
        s += tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        bad_q = bad_q | bq
        bad_k = bad_k | bk
    return s, bad_q, bad_k


@triton.jit
def _exp(x):
    """e ** x as ``exp2(x * log2 e)``: one multiply and the hardware ``ex2``. Triton's ``tl.exp`` costs
    registers here (the chunked 64-row configurations spilled 8-16 B with it: kernel_resources); the
    argument is still the natural-unit difference, so the backward's ``s - lse`` stays the forward's."""
    return tl.exp2(x * 1.4426950408889634)


@triton.jit
def _softmax_rows(s, allowed, poisoned):
    """Probabilities ``pr`` (unnormalised: row max subtracted), ``1 / denominator``, row max and
    denominator of score rows ``s`` (scaled, natural-log units) over the ``allowed`` pairs; ``poisoned``
    pairs become NaN.

    Allowed scores are finite or NaN (poison), so a row max of -inf means an empty group. A row with a
    key has denom >= 1, an empty one 0 (output 0), a poisoned one NaN (stays poisoned: NaN != 0)."""
    s = tl.where(allowed, tl.where(poisoned, float("nan"), s), float("-inf"))
    row_max = tl.max(s, axis=1)
    row_max = tl.where(row_max == float("-inf"), 0.0, row_max)
    pr = _exp(s - row_max[:, None])
    denom = tl.sum(pr, axis=1)
    has_key = denom != 0.0
    inv = tl.where(has_key, 1.0 / tl.where(has_key, denom, 1.0), 0.0)
    return pr, inv, row_max, denom


@triton.jit
def _lse(row_max, denom):
    """Natural-log log-sum-exp of the rows, -inf for an empty group: the C++ kernels' convention.
    Computed after the output is stored (the row statistics stay two [BLOCK_R] vectors across the P @ V
    dots, not a third)."""
    has_key = denom != 0.0
    ln_denom = tl.log2(tl.where(has_key, denom, 1.0)) * 0.6931471805599453   # ln via lg2 (cheaper than tl.log)
    return tl.where(has_key, row_max + ln_denom, float("-inf"))


@triton.jit
def _bwd_lse(lse):
    """The statistic the backward subtracts from its scaled scores, from the stored ``lse``: an empty
    group's -inf becomes +inf, so ``exp(s - lse)`` is 0 there (it has no allowed pair anyway); a poisoned
    row's NaN stays NaN."""
    return tl.where(lse == float("-inf"), float("inf"), lse)


@triton.jit
def _score_grads(pr, dp, scale):
    """dS = P * (dP - rowsum(P * dP)) * scale; rowsum(P * dP) = rowsum(dO * O), so o is never read.
    A poisoned row's NaN rowsum would turn its exact zeros (other groups, masked keys) into NaN; its
    allowed pairs stay NaN through pr."""
    delta = tl.sum(pr * dp, axis=1)
    delta = tl.where(delta == delta, delta, 0.0)
    return pr * (dp - delta[:, None]) * scale


@triton.jit
def _ea_fwd(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, m_ptr,
            sq_p, sq_b, sq_t, sq_k, sq_h, sq_d,
            sk_p, sk_b, sk_t, sk_k, sk_h, sk_d,
            sv_p, sv_b, sv_t, sv_k, sv_h, sv_d,
            so_p, so_b, so_t, so_k, so_h, so_d,
            sl_p, sl_b, sl_t, sl_k, sl_h,
            sm_b, sm_t, sm_k,
            T, K, H, DH, NGB, axes_bits, scale,
            HAS_MASK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK_D: tl.constexpr,
            WHOLE: tl.constexpr, DOT_PREC: tl.constexpr):
    p64, b, h, gl, t, e, valid = _program_rows(T, K, H, NGB, axes_bits, BLOCK_R)
    key_ok, allowed = _key_rows(m_ptr, b, t, e, valid, gl, sm_b, sm_t, sm_k, HAS_MASK)
    if WHOLE:
        # Whole rows: q, k, v read once and held until the output.
        d, ld = _cols(0, valid, DH, BLOCK_D)
        q, bad_q = _load_rows(q_ptr, p64, b, h, t, e, d, ld, valid, sq_p, sq_b, sq_t, sq_k, sq_h, sq_d)
        k, bad_k = _load_rows(k_ptr, p64, b, h, t, e, d, ld, key_ok, sk_p, sk_b, sk_t, sk_k, sk_h, sk_d)
        v, bad_v = _load_rows(v_ptr, p64, b, h, t, e, d, ld, key_ok, sv_p, sv_b, sv_t, sv_k, sv_h, sv_d)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        bad_kv = bad_k | bad_v
    else:
        # Chunks of CHUNK_D columns: S = Q K^T accumulated chunk by chunk, then v's non-finite flags
        # (its values are read again, from L1/L2, for the output).
        s, bad_q, bad_kv = _chunked_scores(q_ptr, k_ptr, p64, b, h, t, e, valid, key_ok, DH,
                                           sq_p, sq_b, sq_t, sq_k, sq_h, sq_d, sk_p, sk_b, sk_t, sk_k, sk_h, sk_d,
                                           BLOCK_R, BLOCK_D, CHUNK_D, DOT_PREC)
        for c in tl.range(0, BLOCK_D, CHUNK_D, num_stages=1):
            d, ld = _cols(c, valid, DH, CHUNK_D)
            bad_kv = bad_kv | _load_rows(v_ptr, p64, b, h, t, e, d, ld, key_ok,
                                         sv_p, sv_b, sv_t, sv_k, sv_h, sv_d)[1]
    pr, inv, row_max, denom = _softmax_rows(s * scale, allowed, bad_q[:, None] | bad_kv[None, :])
    o_rows = p64 * so_p + b * so_b + h * so_h + t * so_t + e * so_k
    if WHOLE:
        acc = tl.dot(pr.to(v.dtype), v, input_precision=DOT_PREC) * inv[:, None]
        tl.store(o_ptr + o_rows[:, None] + d[None, :] * so_d, acc.to(o_ptr.dtype.element_ty), mask=ld)
    else:
        pv = pr.to(v_ptr.dtype.element_ty)
        for c in tl.range(0, BLOCK_D, CHUNK_D, num_stages=1):
            d, ld = _cols(c, valid, DH, CHUNK_D)
            v = _reload_rows(v_ptr, p64, b, h, t, e, d, ld, key_ok, sv_p, sv_b, sv_t, sv_k, sv_h, sv_d)
            acc = tl.dot(pv, v, input_precision=DOT_PREC) * inv[:, None]
            tl.store(o_ptr + o_rows[:, None] + d[None, :] * so_d, acc.to(o_ptr.dtype.element_ty), mask=ld)
    l_rows = p64 * sl_p + b * sl_b + h * sl_h + t * sl_t + e * sl_k
    tl.store(lse_ptr + l_rows, _lse(row_max, denom), mask=valid)


@triton.jit
def _ea_bwd(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, m_ptr, dq_ptr, dk_ptr, dv_ptr,
            sq_p, sq_b, sq_t, sq_k, sq_h, sq_d,
            sk_p, sk_b, sk_t, sk_k, sk_h, sk_d,
            sv_p, sv_b, sv_t, sv_k, sv_h, sv_d,
            sdo_p, sdo_b, sdo_t, sdo_k, sdo_h, sdo_d,
            sg_p, sg_b, sg_t, sg_k, sg_h, sg_d,
            sl_p, sl_b, sl_t, sl_k, sl_h,
            sm_b, sm_t, sm_k,
            T, K, H, DH, NGB, axes_bits, scale,
            HAS_MASK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK_D: tl.constexpr,
            WHOLE: tl.constexpr, DOT_PREC: tl.constexpr):
    # Same program -> groups mapping as the forward. dq, dk, dv share the strides sg_* (one layout).
    # Empty-group rows have lse = -inf (+inf here) and no allowed pair: probabilities 0, so all their
    # grads are 0.
    # A poisoned row has NaN at every allowed pair (here, or through the forward's NaN lse).
    p64, b, h, gl, t, e, valid = _program_rows(T, K, H, NGB, axes_bits, BLOCK_R)
    key_ok, allowed = _key_rows(m_ptr, b, t, e, valid, gl, sm_b, sm_t, sm_k, HAS_MASK)
    g_rows = p64 * sg_p + b * sg_b + h * sg_h + t * sg_t + e * sg_k
    l_rows = p64 * sl_p + b * sl_b + h * sl_h + t * sl_t + e * sl_k
    lse = _bwd_lse(tl.load(lse_ptr + l_rows, mask=valid, other=float("-inf")))
    if WHOLE:
        # Whole rows. Each gradient is stored as soon as it is complete and the pair mask dies with P,
        # so fewer tiles are live at once (registers, hence occupancy).
        d, ld = _cols(0, valid, DH, BLOCK_D)
        g_offs = g_rows[:, None] + d[None, :] * sg_d
        q, bad_q = _load_rows(q_ptr, p64, b, h, t, e, d, ld, valid, sq_p, sq_b, sq_t, sq_k, sq_h, sq_d)
        k, bad_k = _load_rows(k_ptr, p64, b, h, t, e, d, ld, key_ok, sk_p, sk_b, sk_t, sk_k, sk_h, sk_d)
        v, bad_v = _load_rows(v_ptr, p64, b, h, t, e, d, ld, key_ok, sv_p, sv_b, sv_t, sv_k, sv_h, sv_d)
        do, bad_do = _load_rows(do_ptr, p64, b, h, t, e, d, ld, valid, sdo_p, sdo_b, sdo_t, sdo_k, sdo_h, sdo_d)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * scale
        s = tl.where((bad_q | bad_do)[:, None] | (bad_k | bad_v)[None, :], float("nan"), s)
        pr = tl.where(allowed, _exp(s - lse[:, None]), 0.0)
        dv = tl.dot(tl.trans(pr).to(do.dtype), do, input_precision=DOT_PREC)
        tl.store(dv_ptr + g_offs, dv.to(dv_ptr.dtype.element_ty), mask=ld)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)                 # finite: finite operands
        ds = _score_grads(pr, dp, scale)
        dq = tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
        tl.store(dq_ptr + g_offs, dq.to(dq_ptr.dtype.element_ty), mask=ld)
        dk = tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=DOT_PREC)
        tl.store(dk_ptr + g_offs, dk.to(dk_ptr.dtype.element_ty), mask=ld)
    else:
        # Chunks of CHUNK_D columns, four loops so that at most two [BLOCK_R, BLOCK_R] tiles and one
        # operand pair are live in any of them (fp32 FMA dots hold whole K-slices of both operands per
        # thread): S = Q K^T, then dP = dO V^T (with the rows' non-finite flags: q, do for query rows,
        # k, v for key rows); then dv = P^T dO, then dq = dS K and dk = dS^T Q. The second reads of do,
        # k and q come from L1/L2 (this program read them moments before).
        s, bad_r, bad_c = _chunked_scores(q_ptr, k_ptr, p64, b, h, t, e, valid, key_ok, DH,
                                          sq_p, sq_b, sq_t, sq_k, sq_h, sq_d, sk_p, sk_b, sk_t, sk_k, sk_h, sk_d,
                                          BLOCK_R, BLOCK_D, CHUNK_D, DOT_PREC)
        dp = tl.zeros([BLOCK_R, BLOCK_R], dtype=tl.float32)
        for c in tl.range(0, BLOCK_D, CHUNK_D, num_stages=1):
            d, ld = _cols(c, valid, DH, CHUNK_D)
            v, bv = _load_rows(v_ptr, p64, b, h, t, e, d, ld, key_ok, sv_p, sv_b, sv_t, sv_k, sv_h, sv_d)
            do, bdo = _load_rows(do_ptr, p64, b, h, t, e, d, ld, valid,
                                 sdo_p, sdo_b, sdo_t, sdo_k, sdo_h, sdo_d)
            dp += tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
            bad_r = bad_r | bdo
            bad_c = bad_c | bv
        s = tl.where(bad_r[:, None] | bad_c[None, :], float("nan"), s * scale)
        pr = tl.where(allowed, _exp(s - lse[:, None]), 0.0)
        dtype = q_ptr.dtype.element_ty
        pr_t = tl.trans(pr).to(dtype)
        for c in tl.range(0, BLOCK_D, CHUNK_D, num_stages=1):
            d, ld = _cols(c, valid, DH, CHUNK_D)
            do = _reload_rows(do_ptr, p64, b, h, t, e, d, ld, valid, sdo_p, sdo_b, sdo_t, sdo_k, sdo_h, sdo_d)
            dv = tl.dot(pr_t, do, input_precision=DOT_PREC)
            tl.store(dv_ptr + g_rows[:, None] + d[None, :] * sg_d, dv.to(dv_ptr.dtype.element_ty), mask=ld)
        ds = _score_grads(pr, dp, scale)
        ds_k = ds.to(dtype)
        ds_q = tl.trans(ds).to(dtype)
        for c in tl.range(0, BLOCK_D, CHUNK_D, num_stages=1):
            d, ld = _cols(c, valid, DH, CHUNK_D)
            g_offs = g_rows[:, None] + d[None, :] * sg_d
            k = _reload_rows(k_ptr, p64, b, h, t, e, d, ld, key_ok, sk_p, sk_b, sk_t, sk_k, sk_h, sk_d)
            dq = tl.dot(ds_k, k, input_precision=DOT_PREC)
            tl.store(dq_ptr + g_offs, dq.to(dq_ptr.dtype.element_ty), mask=ld)
            q = _reload_rows(q_ptr, p64, b, h, t, e, d, ld, valid, sq_p, sq_b, sq_t, sq_k, sq_h, sq_d)
            dk = tl.dot(ds_q, q, input_precision=DOT_PREC)
            tl.store(dk_ptr + g_offs, dk.to(dk_ptr.dtype.element_ty), mask=ld)


ea_fwd_kernel = _ea_fwd
ea_bwd_kernel = _ea_bwd
check_flavour(ea_fwd_kernel, ea_bwd_kernel)


def _warps(fp32: bool, block_r: int, block_d: int, whole: bool) -> tuple[int, int]:
    """(forward, backward) num_warps. The rule: the largest live tile (whole rows BLOCK_R x BLOCK_D;
    chunked, the score tile BLOCK_R x BLOCK_R) below 32 x 32 runs 4 warps, else 8 (at 4 the paper's
    64 x 32 bf16 backward spills on sm_80; at 8 it fits in 128 registers with the same or better
    occupancy). The exceptions are where ptxas spills at the rule's count (sm_80/sm_90, Triton 3.6 and
    3.8: ``python -m tools.kernel_resources``, each checked with both stacks)."""
    tile = block_r * (block_d if whole else block_r)
    fwd = bwd = 4 if tile < 32 * 32 else 8
    if block_r == 64 and not whole and not fp32:
        fwd = 16                    # at 8, ptxas holds the chunked forward to 64 registers and spills
        if block_d == 32:
            bwd = 16                # two chunks of 16: at 8 spills 24 B on sm_80 (Triton 3.6)
    if fp32 and block_r == 64 and whole and block_d == 16:
        fwd = bwd = 16              # unaligned rows (64-row fp32 whole rows are chosen only then): 8 B at 8
    if fp32 and block_r == 16 and not whole:
        fwd = bwd = 8               # FMA dots: more threads, shorter K-slices each (8 B spilled at 4)
    return fwd, bwd


def launch_config(T: int, K: int, Dh: int, axes: list[int], dtype_is_fp32: bool,
                  vectorised: bool = True) -> dict:
    """Grid width (``NGB``), axes bitmask and the launch meta-parameters of each kernel (``fwd``, ``bwd``:
    ``BLOCK_R``, ``BLOCK_D``, ``CHUNK_D``, ``WHOLE``, ``DOT_PREC``, ``num_warps``) for sizes (T, K, Dh),
    per-path axes (0 spatial, 1 temporal) and dtype. Registers, spills and occupancy of every
    configuration chosen here: ``python -m tools.kernel_resources`` (CI holds them to zero spills on its
    Triton, 3.8; on 3.6 the 16-bit backward of BLOCK_R=32, BLOCK_D=64, CHUNK_D=32 spills 8 B/thread on sm_80).

    BLOCK_R: rows per program, a power of two >= the larger group (so every group fits in one program),
    >= 16 (``tl.dot``'s minimum) and, to batch tiny groups, up to 64 rows of groups for 16-bit inputs
    (T = 8, K = 6: one program per (p, b, h)) and 32 for fp32: fp32 dots are IEEE FMA dots, not
    tensor-core MMA, whose threads hold whole K-slices of both operands, so a 64-row fp32 tile needs
    more registers than a thread has. Both kernels use the same BLOCK_R (the backward reads the
    forward's lse row by row). BLOCK_D: next power of two of Dh (>= 16), masked.

    WHOLE, CHUNK_D: whether a program holds whole rows (one read of every operand, the fewest
    instructions; CHUNK_D = BLOCK_D), else how many columns of the head dimension it holds at once.
    Whole rows up to 32 columns; wider heads are walked in chunks (32 columns for 16-bit 32-row tiles,
    else 16: Triton 3.6's tl.dot needs K >= 16), so Dh = 128 costs the registers of a narrow head
    (whole 128-column rows spilled up to 10 KB per thread). ``vectorised`` says whether Triton will see
    16-element-aligned rows (``triton_backend._vectorised``); when it will not, every element is a
    separate load with its own address and 64-row whole-row tiles spill on sm_80, so those are chunked
    too, except fp32 Dh <= 16 (one chunk of 16 would not shrink it: 16 warps instead, see ``_warps``).
    """
    largest = max(T if a else K for a in axes)
    batch = 32 if dtype_is_fp32 else 64
    block_r = max(16, next_pow2(largest), min(batch, next_pow2(T * K)))
    block_d = max(16, next_pow2(Dh))
    ngb = max(triton.cdiv(K if a else T, block_r // (T if a else K)) for a in axes)
    bits = sum(1 << i for i, a in enumerate(axes) if a)
    widest = 32 if block_r == 32 and not dtype_is_fp32 else 16     # tl.dot: K >= 16 (Triton 3.6)
    whole = block_d <= 32 and (vectorised or block_r <= 32 or (dtype_is_fp32 and block_d == 16))
    chunk_d = block_d if whole else min(widest, block_d)
    common = dict(BLOCK_R=block_r, BLOCK_D=block_d, CHUNK_D=chunk_d, WHOLE=whole,
                  DOT_PREC="ieee" if dtype_is_fp32 else "tf32")
    fwd, bwd = _warps(dtype_is_fp32, block_r, block_d, whole)
    return dict(NGB=ngb, axes_bits=bits, fwd=dict(common, num_warps=fwd), bwd=dict(common, num_warps=bwd))
