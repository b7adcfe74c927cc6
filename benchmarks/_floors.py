"""Physical floors of the benchmarked ops: the bytes that must cross the memory bus, and matmul FLOPs.

Every function returns the *minimum* traffic of one call of an ideal implementation that reads each
input once and writes each output once (no intermediate ever leaves the chip). The report divides it by
the measured time and by the device's copy bandwidth measured in the same run (``_harness``:
a large ``dst.copy_(src)``, counting read + write), giving the fraction of the bandwidth floor reached:
1.0 means the op moved its unavoidable bytes at copy speed.

Sizes follow design.md: ``n = P·B·T·K·H·Dh`` elements per attention tensor ``[P, B, T, K, H, Dh]``,
``n = B·T·K·D`` per path tensor ``[B, T, K, D]``; ``itemsize`` is the element size of the dtype (4 for
fp32, 2 for bf16). Masks are bool ``[B, T, K]`` (1 byte per element). ``mode`` is ``"fwd"``, ``"bwd"``
or ``"fwd+bwd"``; fwd+bwd is the sum of the two passes, because autograd runs them as separate
passes (the output is materialised, the output gradient arrives after).
"""
from __future__ import annotations

MODES = ("fwd", "bwd", "fwd+bwd")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")


def entity_attention_bytes(P: int, B: int, T: int, K: int, H: int, Dh: int, itemsize: int, mode: str,
                           masked: bool, with_lse: bool = False) -> int:
    """Bytes ``entity_attention`` must move.

    - fwd:  read q, k, v + write o                         = 4·n·itemsize (+ mask read)
    - bwd:  read q, k, v, o, do + write dq, dk, dv         = 8·n·itemsize (+ mask read)
    - fwd+bwd: the sum                                     = 12·n·itemsize (+ 2 mask reads)

    ``with_lse`` adds the fp32 logsumexp ``[P, B, T, K, H]`` a backend may save in the forward (written
    once, read once in the backward). Off by default: a backward may recompute it, so it is not
    unavoidable.
    """
    _check_mode(mode)
    n = P * B * T * K * H * Dh
    mask = B * T * K if masked else 0
    lse = P * B * T * K * H * 4 if with_lse else 0
    fwd = 4 * n * itemsize + mask + lse
    bwd = 8 * n * itemsize + mask + lse
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


def routed_merge_bytes(B: int, T: int, K: int, D: int, itemsize: int, mode: str, masked: bool) -> int:
    """Bytes ``routed_merge`` must move (router ``weight [K, 2, 2D]``, ``bias [K, 2]`` in the input dtype,
    ``alpha [B, K, 2]`` fp32).

    - fwd:  read x_st, x_ts + write y (3·n·itemsize) + read weight, bias + write alpha (+ mask)
    - bwd:  read x_st, x_ts, dy + write dx_st, dx_ts (5·n·itemsize) + read weight, alpha
            + write dweight, dbias (+ mask)
    - fwd+bwd: the sum
    """
    _check_mode(mode)
    n = B * T * K * D
    mask = B * T * K if masked else 0
    router = (K * 2 * 2 * D + K * 2) * itemsize
    alpha = B * K * 2 * 4
    fwd = 3 * n * itemsize + router + alpha + mask
    bwd = 5 * n * itemsize + K * 2 * 2 * D * itemsize + alpha + router + mask
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


def dual_path_block_bytes(B: int, T: int, K: int, D: int, itemsize: int, mode: str, masked: bool,
                          n_params: int) -> int:
    """Bytes a ``DualPathBlock`` must move at the least: its inputs and outputs, nothing in between.

    - fwd:  read x + parameters, write y, x_st, x_ts, alpha         = 4·n·itemsize + params (+ mask)
    - bwd:  read x, dy + parameters, write dx + parameter gradients = 3·n·itemsize + 2·params (+ mask)
    - fwd+bwd: the sum

    This is a loose bound: the block is dominated by its GEMMs (see ``dual_path_block_flops``), and
    every fused implementation also moves the per-layer activations. Read its floor fraction as "how far
    from pure streaming", not as an efficiency target.
    """
    _check_mode(mode)
    n = B * T * K * D
    mask = B * T * K if masked else 0
    params = n_params * itemsize
    alpha = B * K * 2 * 4
    fwd = 4 * n * itemsize + params + alpha + mask
    bwd = 3 * n * itemsize + 2 * params + mask
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


def dual_path_block_flops(B: int, T: int, K: int, D: int, mode: str) -> int:
    """Matmul FLOPs of one ``DualPathBlock`` call (design.md §1.2), counting a multiply-add as 2.

    Per token and forward: four entity layers, each QKV (2·D·3D) + output projection (2·D·D) + FFN
    (2·D·4D·2) = 24·D²; the two residual MLPs (2·D·2D·2 = 8·D² each); attention scores and weighted sum
    (4·N·D per layer, N = K for spatial and T for temporal layers, two of each). The router is negligible.
    The backward costs twice the forward (gradients of activations and of weights).
    """
    _check_mode(mode)
    tokens = B * T * K
    fwd = tokens * (4 * 24 * D * D + 2 * 8 * D * D + 2 * 4 * K * D + 2 * 4 * T * D)
    return {"fwd": fwd, "bwd": 2 * fwd, "fwd+bwd": 3 * fwd}[mode]
