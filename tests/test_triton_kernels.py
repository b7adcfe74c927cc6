"""Triton-specific tests of the ``triton`` backend (the generic backend tests live in
tests/test_entity_attention.py and tests/test_routed_merge.py).

Environment. Triton decides once per process, when ``triton`` is first imported (``import mdn_fast``
does), whether kernels run on the CPU interpreter (``TRITON_INTERPRET=1``) or compile for a GPU. CPU
tests need the interpreter: tests/conftest.py sets the variable when there is no CUDA, and this module
sets it too if triton is not imported yet (so ``pytest tests/test_triton_kernels.py`` works alone, with
or without ``TRITON_INTERPRET=1`` in the shell). In a compiling process (a GPU machine) the CPU tests skip
and the ``gpu`` tests run; ``test_kernels_compile_for_gpus`` compiles every kernel for sm_80 / sm_90 in a
subprocess without the interpreter, with Triton's bundled ptxas: no GPU needed.

Layouts: q, k, v ``[P, B, T, K, H, Dh]`` (views of a packed ``[B, T, K, P, 3, H, Dh]`` tensor);
x_st, x_ts ``[B, T, K, D]``; weight ``[K, 2, 2D]``; bias ``[K, 2]``; mask ``[B, T, K]``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from mdn_fast import reference  # noqa: E402
from mdn_fast._limits import MAX_DH, MAX_K, MAX_T  # noqa: E402
from mdn_fast.ops import entity_attention, routed_merge  # noqa: E402

triton = pytest.importorskip("triton")
tb = pytest.importorskip("mdn_fast.ops.triton_backend")
if tb._IMPORT_ERROR is not None:
    pytest.skip(f"triton backend not importable: {tb._IMPORT_ERROR}", allow_module_level=True)

from mdn_fast.kernels import triton as kt  # noqa: E402
from mdn_fast.kernels.triton import entity_attention as kea  # noqa: E402
from mdn_fast.kernels.triton import routed_merge as krm  # noqa: E402

from ._helpers import assert_close, holey_mask  # noqa: E402

AXES = [("spatial", "temporal"), ("temporal", "spatial"), ("temporal",), ("spatial",)]


@pytest.fixture(autouse=True)
def _triton_mode(request, monkeypatch):
    """CPU tests need an interpreting process, GPU tests a compiling one; outputs NaN-poisoned in both."""
    gpu = request.node.get_closest_marker("gpu") is not None
    if request.node.originalname == "test_kernels_compile_for_gpus":  # runs its own process
        return
    if gpu and kt.interpreting():
        pytest.skip("this process runs Triton's interpreter (TRITON_INTERPRET=1 at import): GPU tests need "
                    "the compiler; run them without TRITON_INTERPRET")
    if not gpu and not kt.interpreting():
        pytest.skip("Triton was imported without TRITON_INTERPRET=1: run `TRITON_INTERPRET=1 pytest "
                    "tests/test_triton_kernels.py` for the interpreter tests")
    monkeypatch.setenv("MDN_FAST_POISON", "1")


def _packed(P, B, T, K, H, Dh, dtype, device, gen):
    packed = torch.randn(B, T, K, P, 3, H, Dh, generator=gen).to(device=device, dtype=dtype)
    return packed.requires_grad_()


def _qkv(packed):
    return [packed[:, :, :, :, i].permute(3, 0, 1, 2, 4, 5) for i in range(3)]


def _run_attention(P, B, T, K, H, Dh, axes, dtype, device, with_mask, seed=0):
    """Triton forward + backward (through the public op) and the float64 reference's."""
    gen = torch.Generator().manual_seed(seed)
    packed = _packed(P, B, T, K, H, Dh, dtype, device, gen)
    mask = holey_mask(B, T, K, device, gen) if with_mask else None
    q, k, v = _qkv(packed)
    assert not q.is_contiguous()
    out = entity_attention(q, k, v, axes, mask=mask, backend="triton")
    grad_out = torch.randn(out.shape, generator=gen).to(device=device, dtype=dtype)
    (g_packed,) = torch.autograd.grad(out, packed, grad_out)

    ref_packed = packed.detach().double().requires_grad_()
    ref = reference.entity_attention(*_qkv(ref_packed), axes, mask)
    (g_ref,) = torch.autograd.grad(ref, ref_packed, grad_out.double())
    return out, g_packed, ref, g_ref, mask


# ------------------------------------------------------------------ entity_attention, interpreter
ATT_CASES = [  # (P, B, T, K, H, Dh): the odd sizes of design §4, both orders, single paths
    pytest.param(2, 2, 7, 5, 2, 24, AXES[0], id="T7K5D24-st"),
    pytest.param(2, 2, 7, 5, 2, 24, AXES[1], id="T7K5D24-ts"),
    pytest.param(1, 2, 7, 5, 2, 24, AXES[2], id="P1-t"),
    pytest.param(1, 3, 5, 3, 1, 8, AXES[3], id="P1-s-D8"),
    pytest.param(2, 1, 33, 3, 1, 20, AXES[0], id="T33-one-group-per-program"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("with_mask", [False, True], ids=["nomask", "holes"])
@pytest.mark.parametrize("P,B,T,K,H,Dh,axes", ATT_CASES)
def test_entity_attention_matches_reference(P, B, T, K, H, Dh, axes, dtype, with_mask):
    out, g, ref, g_ref, _ = _run_attention(P, B, T, K, H, Dh, axes, dtype, "cpu", with_mask)
    assert out.dtype == dtype and out.is_contiguous() and out.shape == (P, B, T, K, H, Dh)
    assert_close(out, ref, dtype, "o")
    for i, name in enumerate("qkv"):
        assert_close(g[:, :, :, :, i], g_ref[:, :, :, :, i], dtype, f"d{name}")


@pytest.mark.parametrize("T,K,Dh", [(MAX_T, MAX_K, 16), (5, 3, MAX_DH)], ids=["maxTK", "maxDh"])
def test_entity_attention_at_size_limits(T, K, Dh):
    """Largest groups (T = MAX_T, K = MAX_K), largest head dim (MAX_DH); both axes in one launch.
    (Both limits at once are checked on a GPU: the interpreter needs ~5 s for them.)"""
    out, g, ref, g_ref, _ = _run_attention(2, 1, T, K, 1, Dh, AXES[0], torch.float32, "cpu", True)
    assert_close(out, ref, torch.float32, "o")
    assert_close(g, g_ref, torch.float32, "d(q, k, v)")


def test_entity_attention_empty_groups_give_zero_and_zero_grad():
    T, K = 7, 5
    out, g, _, _, mask = _run_attention(2, 2, T, K, 2, 24, AXES[0], torch.float32, "cpu", True)
    assert torch.isfinite(out).all() and torch.isfinite(g).all()
    assert (out[0, -1, T // 2] == 0).all(), "spatial queries of an empty frame must output 0"
    assert (out[1, 0, :, K // 2] == 0).all(), "temporal queries of an absent track must output 0"
    gq = g[..., 0, :, :]                                   # [B, T, K, P, H, Dh]
    assert (gq[-1, T // 2, :, 0] == 0).all() and (gq[0, :, K // 2, 1] == 0).all()
    absent = ~mask                                         # keys never attended to get no gradient
    assert (g[..., 1:, :, :][absent] == 0).all()


def test_entity_attention_is_deterministic():
    runs = [_run_attention(2, 2, 7, 5, 1, 24, AXES[0], torch.float16, "cpu", True, seed=3)[:2] for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_entity_attention_launch_config_batches_tiny_groups():
    cfg = kea.launch_config(8, 6, 32, [0, 1], False)     # the paper's sizes: one program per (p, b, h)
    assert cfg["BLOCK_R"] == 64 and cfg["NGB"] == 1 and cfg["BLOCK_D"] == 32 and cfg["axes_bits"] == 2
    cfg = kea.launch_config(MAX_T, MAX_K, 24, [1, 0], True)
    assert cfg["BLOCK_R"] == 64 and cfg["NGB"] == 16 and cfg["DOT_PREC"] == "ieee" and cfg["axes_bits"] == 1


# ------------------------------------------------------------------ routed_merge, interpreter
def _run_merge(B, T, K, D, dtype, device, with_mask, seed=0, w_dtype=torch.float32, tau=0.7):
    gen = torch.Generator().manual_seed(seed)
    # Non-contiguous inputs: x_st a strided slice, x_ts a transposed view.
    x_st = torch.randn(B, T, K, 2 * D, generator=gen).to(device=device, dtype=dtype)[..., ::2]
    x_ts = torch.randn(B, K, T, D, generator=gen).to(device=device, dtype=dtype).transpose(1, 2)
    weight = (0.3 * torch.randn(K, 2, 2 * D, generator=gen)).to(device=device, dtype=w_dtype)
    bias = torch.randn(K, 2, generator=gen).to(device=device, dtype=w_dtype)
    mask = holey_mask(B, T, K, device, gen) if with_mask else None
    ins = [t.requires_grad_() for t in (x_st, x_ts, weight, bias)]
    y, alpha = routed_merge(*ins, tau=tau, mask=mask, backend="triton")
    gy = torch.randn(y.shape, generator=gen).to(device=device, dtype=dtype)
    ga = torch.randn(alpha.shape, generator=gen).to(device)
    grads = torch.autograd.grad((y, alpha), ins, (gy, ga))

    ref_ins = [t.detach().double().requires_grad_() for t in ins]
    y_ref, a_ref = reference.routed_merge(*ref_ins, tau=tau, mask=mask)
    ref_grads = torch.autograd.grad((y_ref, a_ref), ref_ins, (gy.double(), ga.double()))
    return (y, alpha, grads), (y_ref, a_ref, ref_grads)


MERGE_CASES = [pytest.param(dt, "single", id=f"single-{dt}") for dt in (torch.float32, torch.float16, torch.bfloat16)]
MERGE_CASES += [pytest.param(torch.float32, "chunked", id="chunked-float32")]


@pytest.mark.parametrize("with_mask", [False, True], ids=["nomask", "holes"])
@pytest.mark.parametrize("dtype,tile", MERGE_CASES)
def test_routed_merge_matches_reference(dtype, with_mask, tile, monkeypatch):
    """bf16 runs here too: routed_merge has no tl.dot, and the interpreter's bf16 loads/stores are right."""
    B, T, K, D = 3, 7, 5, 40
    if tile == "chunked":  # force the two-walk path: D = 40 in chunks of 16
        monkeypatch.setattr(krm, "_SINGLE_TILE", 64)
        B = 2
    (y, alpha, grads), (y_ref, a_ref, ref_grads) = _run_merge(B, T, K, D, dtype, "cpu", with_mask)
    assert y.dtype == dtype and y.is_contiguous() and alpha.dtype == torch.float32
    assert_close(y, y_ref, dtype, "y")
    assert_close(alpha, a_ref, torch.float32, "alpha")
    for g, r, name in zip(grads, ref_grads, ("dx_st", "dx_ts", "dweight", "dbias")):
        # Router grads are fp32 sums of fp32 math on dtype inputs: held to the input dtype's tolerance.
        assert_close(g, r, dtype, name)


def test_routed_merge_gradient_through_alpha_only():
    gen = torch.Generator().manual_seed(1)
    B, T, K, D = 2, 5, 3, 16
    ins = [torch.randn(B, T, K, D, generator=gen), torch.randn(B, T, K, D, generator=gen),
           torch.randn(K, 2, 2 * D, generator=gen), torch.randn(K, 2, generator=gen)]
    ins = [t.requires_grad_() for t in ins]
    _, alpha = routed_merge(*ins, backend="triton")
    grads = torch.autograd.grad(alpha[..., 0].square().sum(), ins)
    ref_ins = [t.detach().double().requires_grad_() for t in ins]
    ref_grads = torch.autograd.grad(reference.routed_merge(*ref_ins)[1][..., 0].square().sum(), ref_ins)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, torch.float32, "grad through alpha")


def test_routed_merge_is_deterministic():
    runs = [_run_merge(3, 7, 5, 40, torch.float16, "cpu", True, seed=5)[0] for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    for a, b in zip(runs[0][2], runs[1][2]):
        assert torch.equal(a, b)


# ------------------------------------------------------------------ backend protocol
def test_unsupported_reasons(monkeypatch):
    cpu = torch.device("cpu")
    ok = dict(P=2, B=1, T=8, K=6, H=1, Dh=32)
    assert tb.unavailable_reason() is None
    assert tb.unsupported_reason("entity_attention", cpu, torch.float32, ok) is None
    assert "float64" in tb.unsupported_reason("entity_attention", cpu, torch.float64, ok)
    assert "float64" in tb.unsupported_reason("routed_merge", cpu, torch.float64, dict(B=1, T=8, K=6, D=8))
    assert "bf16" in tb.unsupported_reason("entity_attention", cpu, torch.bfloat16, ok)
    assert "K <= 16" in tb.unsupported_reason("entity_attention", cpu, torch.float32, {**ok, "K": MAX_K + 1})
    assert "T <= 64" in tb.unsupported_reason("routed_merge", cpu, torch.float32, dict(B=1, T=MAX_T + 1, K=2, D=8))
    assert "Dh <= 128" in tb.unsupported_reason("entity_attention", cpu, torch.float32, {**ok, "Dh": MAX_DH + 1})
    q = torch.randn(1, 1, MAX_T + 1, 2, 1, 8)
    with pytest.raises(NotImplementedError, match="T <= 64"):
        entity_attention(q, q, q, ("temporal",), backend="triton")
    monkeypatch.setattr(kt, "interpreting", lambda: False)   # a compiling process refuses CPU tensors
    assert "TRITON_INTERPRET" in tb.unsupported_reason("entity_attention", cpu, torch.float32, ok)


def test_opcheck_entity_attention_ops():
    gen = torch.Generator().manual_seed(2)
    P, B, T, K, H, Dh = 2, 2, 3, 2, 1, 16
    q, k, v = (torch.randn(P, B, T, K, H, Dh, generator=gen, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[[True, False]] * T, [[True, True], [False, False], [True, False]]])
    ops = torch.ops.mdn_fast_triton
    for m in (None, mask):
        torch.library.opcheck(ops.entity_attention, (q, k, v, [0, 1], m, 0.3))
    _, lse = ops.entity_attention(q.detach(), k.detach(), v.detach(), [1, 0], mask, 0.3)
    do = torch.randn(P, B, T, K, H, Dh, generator=gen)
    torch.library.opcheck(ops.entity_attention_backward, (do, q.detach(), k.detach(), v.detach(), lse, [1, 0],
                                                          mask, 0.3))


def test_opcheck_routed_merge_ops():
    gen = torch.Generator().manual_seed(4)
    B, T, K, D = 2, 3, 2, 8
    xs, xt = (torch.randn(B, T, K, D, generator=gen, requires_grad=True) for _ in range(2))
    w = torch.randn(K, 2, 2 * D, generator=gen, requires_grad=True)
    b = torch.randn(K, 2, generator=gen, requires_grad=True)
    mask = torch.rand(B, T, K, generator=gen) > 0.3
    ops = torch.ops.mdn_fast_triton
    for m in (None, mask):
        torch.library.opcheck(ops.routed_merge, (xs, xt, w, b, 0.7, m))
    _, alpha = ops.routed_merge(xs, xt, w, b, 0.7, mask)
    dy, da = torch.randn(B, T, K, D, generator=gen), torch.randn(B, K, 2, generator=gen)
    torch.library.opcheck(ops.routed_merge_backward, (dy, da, xs.detach(), xt.detach(), w.detach(),
                                                      alpha.detach(), 0.7, mask))


def test_torch_compile_fullgraph_through_both_ops():
    """Under the interpreter the ops stay whole in the graph (their kernels cannot be traced); fullgraph
    compile of forward + backward through both must still give eager's gradients (aot_eager backend:
    the inductor path for compiled kernels is checked by the gpu test below)."""
    gen = torch.Generator().manual_seed(6)
    P, B, T, K, H, Dh = 2, 2, 5, 3, 2, 8
    packed = torch.randn(B, T, K, P, 3, H, Dh, generator=gen, requires_grad=True)
    w = torch.randn(K, 2, 2 * H * Dh, generator=gen, requires_grad=True)
    b = torch.randn(K, 2, generator=gen, requires_grad=True)
    mask = holey_mask(B, T, K, "cpu", gen)

    def f(packed, w, b):
        o = entity_attention(*_qkv(packed), AXES[0], mask=mask, backend="triton").flatten(-2)
        y, alpha = routed_merge(o[0], o[1], w, b, mask=mask, backend="triton")
        return y.square().sum() + alpha[..., 0].sum()

    eager = torch.autograd.grad(f(packed, w, b), (packed, w, b))
    got = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(packed, w, b), (packed, w, b))
    for g, e in zip(got, eager):
        assert torch.equal(g, e)


# ------------------------------------------------------------------ compiles for real GPUs (no GPU needed)
_TL_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.uint8: "u8"}


def _compile_for(kernel, args, constexprs, capability, num_warps):
    """Compile ``kernel`` ahead of time for ``cuda:capability`` the way a launch with ``args`` would (ints
    equal to 1 and arguments the kernel declares ``tl.constexpr`` specialised to constants, as Triton's
    launcher does). Needs a non-interpreting process."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    sig, consts = {}, dict(constexprs)
    for i, (name, a) in enumerate(zip(kernel.arg_names, args)):
        if i in kernel.constexprs:
            sig[name], consts[name] = "constexpr", a
        elif isinstance(a, torch.Tensor):
            sig[name] = "*" + _TL_DTYPE[a.dtype]
        elif isinstance(a, int) and a == 1:
            sig[name], consts[name] = "constexpr", 1
        else:
            sig[name] = "i32" if isinstance(a, int) else "fp32"
    for name in constexprs:
        sig[name] = "constexpr"
    src = ASTSource(kernel, sig, consts)
    return triton.compile(src, target=GPUTarget("cuda", capability, 32), options={"num_warps": num_warps})


def compile_all_kernels() -> None:
    """Compile every kernel in its launch configurations for the paper's sizes, with the strides of q/k/v
    views of a packed [B, T, K, P, 3, H, Dh] tensor: for sm_90 all of them (entity_attention in bf16 and
    its fp32 IEEE-dot variant; routed_merge with its [T, D] tile in registers and chunked), for sm_80 the
    tensor-core (bf16) entity_attention kernels, whose MMA lowering differs by architecture."""
    P, B, T, K, H, Dh = 2, 256, 8, 6, 8, 32
    m, f32 = torch.empty(1, dtype=torch.uint8), torch.empty(1)
    packed = [3 * H * Dh, T * K * P * 3 * H * Dh, K * P * 3 * H * Dh, P * 3 * H * Dh, Dh, 1]
    dense = [B * T * K * H * Dh, T * K * H * Dh, K * H * Dh, H * Dh, Dh, 1]
    lse_s = [B * T * K * H, T * K * H, K * H, H, 1]
    for cap, dtypes in ((90, (torch.bfloat16, torch.float32)), (80, (torch.bfloat16,))):
        for dtype in dtypes:
            x = torch.empty(1, dtype=dtype)
            cfg = kea.launch_config(T, K, Dh, [0, 1], dtype == torch.float32)
            consts = dict(HAS_MASK=True, BLOCK_R=cfg["BLOCK_R"], BLOCK_D=cfg["BLOCK_D"], DOT_PREC=cfg["DOT_PREC"])
            tail = [T, K, H, Dh, cfg["NGB"], cfg["axes_bits"]]
            fwd = [x, x, x, x, f32, m, *packed * 3, *dense, *lse_s, T * K, K, 1, *tail, 0.25]
            bwd = [x, x, x, x, f32, m, x, x, x, *packed * 3, *dense, *dense, *lse_s, T * K, K, 1, *tail, 0.25, 0.17]
            for kernel, args in ((kea.ea_fwd_kernel, fwd), (kea.ea_bwd_kernel, bwd)):
                compiled = _compile_for(kernel, args, consts, cap, cfg["num_warps"])
                if dtype == torch.bfloat16:
                    assert "mma" in compiled.asm["ptx"], f"{kernel.fn.__name__}: tl.dot should lower to MMA"
        if cap == 80:
            continue
        x = torch.empty(1, dtype=torch.bfloat16)
        for D in (256, 2048):
            cfg = krm.launch_config(T, D)
            assert cfg["SINGLE"] == (D == 256)
            consts = dict(HAS_MASK=True, SINGLE=cfg["SINGLE"], BLOCK_T=cfg["BLOCK_T"], BLOCK_D=cfg["BLOCK_D"])
            xs = [T * K * D, K * D, D, 1]
            small = [2 * 2 * D, 2 * D, 1]
            fwd = [x, x, f32, f32, m, x, f32, *xs * 3, *small, 2, 1, T * K, K, 1, 2 * K, 2, 1, T, K, D, 1.3]
            bwd = [x, f32, x, x, f32, f32, m, x, x, f32, f32, *xs * 4, *small, T * K, K, 1, 2 * K, 2, 1,
                   2 * K, 2, 1, T, K, D, 1.3]
            for kernel, args in ((krm.rm_fwd_kernel, fwd), (krm.rm_bwd_kernel, bwd)):
                _compile_for(kernel, args, consts, cap, cfg["num_warps"])


@pytest.mark.slow
def test_kernels_compile_for_gpus():
    """The interpreter does not exercise Triton's code generator: compile every kernel for sm_80 and
    sm_90 in a fresh process without the interpreter (the flavour is fixed at triton's import)."""
    from triton.backends import backends
    if "nvidia" not in backends:
        pytest.skip("triton's NVIDIA backend is not installed")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    code = "from tests.test_triton_kernels import compile_all_kernels; compile_all_kernels()"
    run = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]


# ------------------------------------------------------------------ GPU only
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("axes", AXES[:2], ids=["st", "ts"])
def test_entity_attention_cuda(dtype, axes):
    for P, B, T, K, H, Dh in ((2, 2, 7, 5, 2, 24), (2, 32, 8, 6, 8, 32), (2, 2, MAX_T, MAX_K, 2, MAX_DH)):
        out, g, ref, g_ref, _ = _run_attention(P, B, T, K, H, Dh, axes, dtype, "cuda", True)
        assert_close(out, ref, dtype, "o")
        assert_close(g, g_ref, dtype, "d(q, k, v)")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("D", [40, 256, 2048])
def test_routed_merge_cuda(dtype, D):
    (y, alpha, grads), (y_ref, a_ref, ref_grads) = _run_merge(16, 8, 6, D, dtype, "cuda", True)
    assert_close(y, y_ref, dtype, "y")
    assert_close(alpha, a_ref, torch.float32, "alpha")
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, dtype, "grad")


@pytest.mark.gpu
def test_opcheck_cuda():
    P, B, T, K, H, Dh = 2, 2, 8, 6, 2, 32
    q, k, v = (torch.randn(P, B, T, K, H, Dh, device="cuda", requires_grad=True) for _ in range(3))
    mask = torch.rand(B, T, K, device="cuda") > 0.3
    torch.library.opcheck(torch.ops.mdn_fast_triton.entity_attention, (q, k, v, [0, 1], mask, 0.2))
    xs, xt = (torch.randn(B, T, K, 64, device="cuda", requires_grad=True) for _ in range(2))
    w = torch.randn(K, 2, 128, device="cuda", requires_grad=True)
    b = torch.randn(K, 2, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.mdn_fast_triton.routed_merge, (xs, xt, w, b, 1.0, mask))


@pytest.mark.gpu
def test_compile_fullgraph_cuda():
    P, B, T, K, H, Dh, D = 2, 4, 8, 6, 2, 32, 64
    dtype = torch.bfloat16
    packed = torch.randn(B, T, K, P, 3, H, Dh, device="cuda", dtype=dtype, requires_grad=True)
    xs = torch.randn(B, T, K, D, device="cuda", dtype=dtype, requires_grad=True)
    w = torch.randn(K, 2, 2 * D, device="cuda", requires_grad=True)
    b = torch.randn(K, 2, device="cuda", requires_grad=True)
    mask = torch.rand(B, T, K, device="cuda") > 0.2

    def f(packed, xs, w, b):
        o = entity_attention(*_qkv(packed), ("spatial", "temporal"), mask=mask, backend="triton")
        y, alpha = routed_merge(xs + o[0].flatten(-2)[..., :D], xs, w, b, mask=mask, backend="triton")
        return y.float().square().sum() + alpha.sum()

    eager = torch.autograd.grad(f(packed, xs, w, b), (packed, xs, w, b))
    compiled = torch.compile(f, fullgraph=True)
    got = torch.autograd.grad(compiled(packed, xs, w, b), (packed, xs, w, b))
    for g, e in zip(got, eager):
        assert_close(g, e, dtype, "compiled grad")
