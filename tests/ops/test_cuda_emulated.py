"""The CUDA C++ kernels (csrc/cuda) run on the CPU through the emulation of CUDA's execution model
(csrc/emu, built from this checkout by tests/ops/_cuda_emu.py): every kernel, forward and backward, in
fp32/fp64/fp16/bf16, through the same backend-vs-reference checks as every other backend, under every
schedule; bit-level comparisons that no tolerance can hide; and the emulator's own checks on kernels with
planted bugs. ``pytest -m cuda_emulated tests/`` selects these tests.

What this cannot see (a GPU run can: ``scripts/gpu_check.sh``): races between threads that never meet at a
barrier or shuffle (the memory model), device intrinsics' rounding, FMA contraction as nvcc chooses it,
occupancy and speed. See docs/testing.md.
"""
from __future__ import annotations

import os
import shutil
import zlib

import pytest
import torch

from tests.ops import _cuda_emu as emu
from tests._helpers import check_entity_attention, check_routed_merge, holey_mask, packed_qkv, routed_merge_inputs
from tests.ops.test_group_independence import PLANTS, _check_planted

pytestmark = pytest.mark.cuda_emulated

if emu.unavailable_reason():
    pytest.skip(f"the CUDA emulation cannot be built here: {emu.unavailable_reason()}", allow_module_level=True)

SCHEDULES = emu.SCHEDULES
ALL_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Shared memory is filled before every block with one of these bytes: 0xFF makes floats NaN and a mask
# byte "present", 0x00 makes floats 0 and mask bytes "absent", 0x7F large finite floats.
POISON = {"lockstep": 0xFF, "lockstep-reversed": 0x00, "lockstep-shuffled": 0x7F, "warp-serial": 0xFF,
          "warp-serial-reversed": 0x00}


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


@pytest.fixture
def as_cpp(monkeypatch):
    """``backend="cpp"`` on CPU tensors runs the emulated CUDA kernels; outputs NaN-poisoned."""
    monkeypatch.setenv("MDN_FAST_POISON", "1")
    with emu.standing_in_for_cpp():
        yield


# ------------------------------------------------------------------ every kernel against the reference
EA_CASES = [  # (P, B, T, K, H, Dh, axes, layout)
    (2, 2, 7, 5, 2, 24, ("spatial", "temporal"), "packed"),              # odd sizes, stage-1 order
    (3, 2, 5, 3, 3, 20, ("spatial", "spatial", "temporal"), "strided_features"),  # P = 3, mixed axes
    (2, 1, 33, 3, 1, 20, ("temporal", "spatial"), "packed"),             # more members than warps
    (1, 2, 4, 6, 2, 40, ("spatial",), "strided_features"),               # Dh > 32: two features a lane
]


def _ea_id(c):
    return f"P{c[0]}B{c[1]}T{c[2]}K{c[3]}H{c[4]}D{c[5]}-{''.join(a[0] for a in c[6])}-{c[7]}"


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("case", EA_CASES, ids=_ea_id)
def test_entity_attention_matches_reference(case, dtype, schedule, as_cpp):
    """Masks with absent groups; inputs NaN-gapped, shared memory poisoned, outputs guarded."""
    P, B, T, K, H, Dh, axes, layout = case
    with emu.schedule(schedule, seed=_seed(case, dtype), poison_byte=POISON[schedule]):
        check_entity_attention("cpp", P, B, T, K, H, Dh, axes, dtype, "cpu", layout=layout, seed=_seed(case))


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_entity_attention_without_mask_or_gaps(dtype, as_cpp):
    """No mask (the kernels' null-mask branch) and inputs passed as given (packed QKV views, no NaN gaps)."""
    with emu.schedule("lockstep-shuffled", seed=3, nan_gaps=False):
        check_entity_attention("cpp", 2, 2, 7, 5, 2, 24, ("spatial", "temporal"), dtype, "cpu", with_mask=False)


# The largest groups the kernels take (T = 64, K = 16, Dh = 128): ~7 s per schedule, so fp32 runs under
# every schedule and the other dtypes under one each.
LARGEST = [(torch.float32, s) for s in SCHEDULES] + [
    (torch.float64, "warp-serial-reversed"), (torch.float16, "lockstep-shuffled"), (torch.bfloat16, "warp-serial")]


@pytest.mark.slow
@pytest.mark.parametrize("dtype,schedule", LARGEST, ids=[f"{d}-{s}" for d, s in LARGEST])
def test_entity_attention_largest_groups(dtype, schedule, as_cpp):
    with emu.schedule(schedule, seed=11, poison_byte=POISON[schedule]):
        check_entity_attention("cpp", 2, 1, 64, 16, 1, 128, ("temporal", "spatial"), dtype, "cpu", seed=5)


RM_CASES = [  # (B, T, K, D, layout, grad_of)
    (2, 5, 3, 40, "packed", ("y", "alpha")),
    (3, 7, 5, 300, "strided", ("y", "alpha")),     # D = 300: more than one stride of the 256 threads
    (2, 3, 16, 24, "packed", ("y",)),              # K = 16; alpha's gradient absent (the null dalpha)
    (1, 64, 2, 8, "strided", ("alpha",)),          # T = 64; y's gradient absent (zeros)
]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("case", RM_CASES, ids=lambda c: f"B{c[0]}T{c[1]}K{c[2]}D{c[3]}-{c[4]}-{'+'.join(c[5])}")
def test_routed_merge_matches_reference(case, dtype, schedule, as_cpp):
    B, T, K, D, layout, grad_of = case
    with emu.schedule(schedule, seed=_seed(case, dtype), poison_byte=POISON[schedule]):
        check_routed_merge("cpp", B, T, K, D, dtype, "cpu", layout=layout, grad_of=grad_of,
                           w_dtype=torch.float64 if dtype == torch.float64 else torch.float32, seed=_seed(case))


@pytest.mark.parametrize("tensor,value,masked", PLANTS, ids=[f"{t}-{v}-{'masked' if m else 'present'}" for t, v, m in PLANTS])
@pytest.mark.parametrize("axes", [("spatial", "temporal"), ("temporal", "spatial")], ids=["st", "ts"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_non_finite_values_stay_in_their_group(dtype, axes, tensor, value, masked, as_cpp):
    """tests/ops/test_group_independence.py's check on the emulated CUDA kernels: NaN / inf planted in one token
    changes nothing outside its groups, and nothing at all as a masked key (bit for bit)."""
    schedule = SCHEDULES[_seed(dtype, axes, tensor, value, masked) % len(SCHEDULES)]
    with emu.schedule(schedule, seed=7, poison_byte=POISON[schedule]):
        _check_planted("cpp", "cpu", dtype, axes, tensor, value, masked, 8, 0)


# ----------------------------------------------------------------------------- last-place comparisons
def _ea_run(ops, q, k, v, axes, mask, gout, scale=0.3):
    out, lse = ops.entity_attention_fwd(q, k, v, axes, mask, scale)
    grads = ops.entity_attention_bwd(gout, q, k, v, lse, axes, mask, scale)
    return [out, lse, *grads]


def _rm_run(ops, x_st, x_ts, w, b, mask, gy, ga, tau=0.7):
    y, alpha = ops.routed_merge_fwd(x_st, x_ts, w, b, tau, mask)
    grads = ops.routed_merge_bwd(gy, ga, x_st, x_ts, w, alpha, tau, mask)
    return [y, alpha, *grads]


def _ea_inputs(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    P, B, T, K, H, Dh = 2, 2, 6, 5, 2, 36
    q, k, v = (x.detach() for x in packed_qkv(P, B, T, K, H, Dh, dtype, "cpu", g))
    mask = holey_mask(B, T, K, "cpu", g)
    gout = torch.randn(P, B, T, K, H, Dh, generator=g).to(dtype)
    return q, k, v, [0, 1], mask, gout


def _rm_inputs(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, T, K, D = 3, 6, 4, 40
    x_st, x_ts, w, b = (x.detach() for x in routed_merge_inputs(B, T, K, D, dtype, "cpu", generator=g))
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    w, b = (0.1 * w).to(acc), b.to(acc)
    mask = holey_mask(B, T, K, "cpu", g)
    gy = torch.randn(B, T, K, D, generator=g).to(dtype)
    ga = torch.randn(B, K, 2, generator=g).to(acc)
    return x_st, x_ts, w, b, mask, gy, ga


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("op", ["entity_attention", "routed_merge"])
def test_low_precision_is_the_fp32_kernel_rounded(op, dtype):
    """A 16-bit kernel widens its inputs exactly and computes in fp32, so its results must equal, bit for bit,
    the fp32 kernel's on the widened inputs, rounded to nearest even (torch's ``.to``): a store that rounds
    another way (toward zero, say) differs in about half the elements' last place."""
    ops = emu.ops()
    mk, run = (_ea_inputs, _ea_run) if op == "entity_attention" else (_rm_inputs, _rm_run)
    args = mk(dtype, seed=7)
    wide = [a.float() if isinstance(a, torch.Tensor) and a.dtype == dtype else a for a in args]
    with emu.schedule("lockstep"):
        low, f32 = run(ops, *args), run(ops, *wide)
    for i, (a, b) in enumerate(zip(low, f32)):
        expect = b.to(a.dtype)
        differ = (a.view(torch.int16 if a.element_size() == 2 else torch.int32)
                  != expect.view(torch.int16 if a.element_size() == 2 else torch.int32)).sum().item()
        assert differ == 0, f"{op} result {i} ({a.dtype}): {differ} of {a.numel()} elements differ from the fp32 " \
                            f"kernel's rounded to nearest even"


def _cpp_cpu_ops():
    from mdn_fast.ops import cpp_backend
    if cpp_backend.unavailable_reason():
        pytest.skip(f"the C++ CPU kernels are not built: {cpp_backend.unavailable_reason()}")
    return torch.ops.mdn_fast


def _ulps_apart(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How many representable values of a's dtype lie between a and b (finite, same dtype)."""
    it = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    ia, ib = a.contiguous().view(it).long(), b.contiguous().view(it).long()
    top = 1 << (8 * a.element_size() - 1)
    ia = torch.where(ia < 0, -top - ia, ia)  # sign-magnitude -> monotonic integers
    ib = torch.where(ib < 0, -top - ib, ib)
    return (ia - ib).abs()


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("op", ["entity_attention", "routed_merge"])
def test_matches_cpp_cpu_kernels_in_the_last_place(op, dtype):
    """Against the C++ CPU kernels, which sum in another order. In fp32 / fp64 the two stay within a few
    units in the last place (relative to the largest element); in fp16 / bf16 both round nearly the same fp32
    value, so they differ by at most one unit of the tensor's scale and almost all elements are identical
    — a kernel that rounds its stores differently (e.g. toward zero) fails the second condition."""
    cpu, ops = _cpp_cpu_ops(), emu.ops()
    mk, run = (_ea_inputs, _ea_run) if op == "entity_attention" else (_rm_inputs, _rm_run)
    args = mk(dtype, seed=13)
    with emu.schedule("warp-serial"):
        a_all, b_all = run(ops, *args), run(cpu, *args)
    names = (["out", "lse", "dq", "dk", "dv"] if op == "entity_attention"
             else ["y", "alpha", "dx_st", "dx_ts", "dweight", "dbias"])
    for name, a, b in zip(names, a_all, b_all):
        fin = torch.isfinite(b)
        assert torch.equal(torch.isfinite(a), fin), f"{op} {name}: non-finite elements differ"
        a, b = a[fin], b[fin]
        if a.dtype in (torch.float16, torch.bfloat16):
            ulps = _ulps_apart(a, b)
            frac = (ulps == 0).float().mean().item()
            # Near zero (cancellation) a last-place step is tiny: bound the difference at the tensor's scale.
            diff = (a.double() - b.double()).abs().max().item()
            scale = torch.finfo(a.dtype).eps * b.double().abs().max().item()
            assert diff <= scale and frac >= 0.97, \
                f"{op} {name} ({a.dtype}): max {ulps.max().item()} ulp / {diff:.2e} apart (bound {scale:.2e}), " \
                f"{frac:.1%} identical"
        else:
            eps = torch.finfo(a.dtype).eps
            err = (a.double() - b.double()).abs().max().item() / max(b.double().abs().max().item(), 1e-30)
            assert err <= 64 * eps, f"{op} {name} ({a.dtype}): max error {err:.2e} = {err / eps:.0f} eps"


def test_two_schedules_give_identical_bits():
    """No kernel result depends on the order threads or blocks run in (no atomics, fixed reduction orders)."""
    ops = emu.ops()
    results = []
    for s in ("lockstep-shuffled", "warp-serial-reversed"):
        with emu.schedule(s, seed=99):
            results.append(_ea_run(ops, *_ea_inputs(torch.float32, 21)) + _rm_run(ops, *_rm_inputs(torch.float32, 21)))
    for a, b in zip(*results):
        assert torch.equal(a, b)


# ------------------------------------------------------------------- argument errors reach the caller
def test_argument_errors_name_the_argument():
    ops = emu.ops()
    q, k, v, axes, mask, _ = _ea_inputs(torch.float32)
    with pytest.raises(RuntimeError, match=r"mask: expected shape \[B, T, K\] = \[2, 6, 5\], got \[2, 5, 6\]"):
        ops.entity_attention_fwd(q, k, v, axes, mask.transpose(1, 2), 0.5)
    with pytest.raises(RuntimeError, match=r"k: expected dtype float32 \(that of q\), got float16"):
        ops.entity_attention_fwd(q, k.half(), v, axes, mask, 0.5)
    with pytest.raises(RuntimeError, match=r"axes: expected 2 entries"):
        ops.entity_attention_fwd(q, k, v, [0], mask, 0.5)
    with pytest.raises(RuntimeError, match=r"q: every dimension must be >= 1"):
        ops.entity_attention_fwd(q[:, :0], k[:, :0], v[:, :0], axes, mask[:0], 0.5)
    x_st, x_ts, w, b, mask, _, _ = _rm_inputs(torch.float32)
    with pytest.raises(RuntimeError, match=r"weight: expected a contiguous \[K, 2, 2D\]"):
        ops.routed_merge_fwd(x_st, x_ts, w.double(), b, 1.0, mask)


# -------------------------------------------------------------------------- the emulator's own checks
FAILING = {  # self-test kernel -> what the emulator must say
    "partial_barrier": r"__syncthreads\(\) at selftest_kernels.cu:\d+ reached by 40 of 64 threads: thread \(40, 0, 0\)",
    "divergent_barrier": r"the threads wait at different barriers",
    "shuffle_absent_lane": r"names lane 16 in mask 0xffffffff, but this warp has only 16 threads",
    "shuffle_exited_lane": r"names lane 5 in mask 0xffffffff, which has exited",
    "shuffle_mask_disagree": r"disagree on its mask: .*0xffffffff.*0x7fffffff",
    "deadlock": r"deadlock: thread \(1, 0, 0\) .* waits at a shuffle .* but thread \(0, 0, 0\) .* __syncthreads",
    "big_shared": r"65536 bytes of shared memory per block \(65536 static \+ 0 dynamic; at most 48 KiB\)",
    "dynamic_shared": r"49153 bytes of shared memory per block \(0 static \+ 49153 dynamic",
    "too_many_threads": r"block \(1025, 1, 1\) beyond the limits",
    "grid_too_tall": r"grid \(1, 70000, 1\) / block \(32, 1, 1\) beyond the limits",
}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", sorted(FAILING))
def test_emulator_refuses_planted_bug(name, schedule):
    with emu.schedule(schedule, seed=1):
        with pytest.raises(RuntimeError, match=r"emulated CUDA: .*" + FAILING[name]) as e:
            emu.selftest(name)
    assert "kernel" in str(e.value) or "launch of" in str(e.value)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_emulator_runs_correct_kernels(schedule):
    with emu.schedule(schedule, seed=2):
        assert torch.equal(emu.selftest("block_sum")[:96], torch.full((96,), float(sum(range(96)))))
        assert torch.equal(emu.selftest("exchange")[:64], torch.arange(63, -1, -1).float())


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_missing_barrier_reads_poisoned_shared_memory(schedule):
    """Without the barrier, some thread reads another's slot before it is written: poisoned (NaN) under
    every schedule."""
    with emu.schedule(schedule, seed=3, poison_byte=0xFF):
        assert torch.isnan(emu.selftest("exchange_no_barrier")[:64]).any()


def test_only_warp_serial_sees_a_barrier_replaced_by_a_warp_sum():
    """A warp-level shuffle orders the lanes of one warp only: lockstep schedules cannot tell it from a block
    barrier, a warp-serial one can — the reason both kinds of schedule run."""
    expect = ((torch.arange(64) + 32) % 64).float()
    for s in ("lockstep", "lockstep-reversed", "lockstep-shuffled"):
        with emu.schedule(s, seed=4):
            assert torch.equal(emu.selftest("warp_only_sync")[:64], expect)
    for s in ("warp-serial", "warp-serial-reversed"):
        with emu.schedule(s, poison_byte=0xFF):
            assert torch.isnan(emu.selftest("warp_only_sync")[:64]).any()


def test_build_follows_the_sources(tmp_path, monkeypatch):
    """The library is keyed by a hash of every file under csrc/: editing a kernel rebuilds it."""
    copy = tmp_path / "csrc"
    shutil.copytree(emu.CSRC, copy)
    monkeypatch.setattr(emu, "CSRC", str(copy))
    before = emu._digest("c++", "inc", [])
    kernel = copy / "cuda" / "entity_attention_cuda.cu"
    kernel.write_text(kernel.read_text() + "\n// edited\n")
    assert emu._digest("c++", "inc", []) != before
    monkeypatch.undo()
    assert os.path.exists(emu.build())  # the checkout's own library: cached, not rebuilt
