"""Triton-specific tests of the ``triton`` backend: launch configurations, its refusals, torch registration
(opcheck), compilation for real GPUs, the inductor path on a GPU. Its kernels against the reference: the
backend-parametrised tests of tests/ops/test_entity_attention.py and tests/ops/test_routed_merge.py.

Environment. Triton decides once per process, when ``triton`` is first imported (``import mdn_fast``
does), whether kernels run on the CPU interpreter (``TRITON_INTERPRET=1``) or compile for a GPU. CPU
tests need the interpreter: tests/conftest.py sets the variable when there is no CUDA, and this module
sets it too if triton is not imported yet (so ``pytest tests/ops/test_triton_kernels.py`` works alone, with
or without ``TRITON_INTERPRET=1`` in the shell). In a compiling process (a GPU machine) the CPU tests skip
and the ``gpu`` tests run. Compiling every kernel for sm_80 / sm_90 without a GPU (and their registers,
spills, occupancy) is tests/ops/test_kernel_resources.py.

Layouts: q, k, v ``[P, B, T, K, H, Dh]`` (views of a packed ``[B, T, K, P, 3, H, Dh]`` tensor);
x_st, x_ts ``[B, T, K, D]``; weight ``[K, 2, 2D]``; bias ``[K, 2]``; mask ``[B, T, K]``.
"""
from __future__ import annotations

import os
import sys

import torch

if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from mdn_fast._limits import MAX_DH, MAX_K, MAX_PATHS, MAX_T  # noqa: E402
from mdn_fast.ops import entity_attention, routed_merge  # noqa: E402
from mdn_fast.ops import _backends  # noqa: E402

triton = pytest.importorskip("triton")
tb = pytest.importorskip("mdn_fast.ops.triton_backend")
if tb._IMPORT_ERROR is not None:
    pytest.skip(f"triton backend not importable: {tb._IMPORT_ERROR}", allow_module_level=True)

from mdn_fast.kernels import triton as kt  # noqa: E402
from mdn_fast.kernels.triton import entity_attention as kea  # noqa: E402
from mdn_fast.kernels.triton import routed_merge as krm  # noqa: E402

from tests.ops import _triton_interp_bf16 as interp_bf16  # noqa: E402
from tests._helpers import assert_close, check_routed_merge, packed_qkv  # noqa: E402

AXES = [("spatial", "temporal"), ("temporal", "spatial"), ("temporal",), ("spatial",)]


@pytest.fixture(autouse=True)
def _triton_mode(request, monkeypatch):
    """CPU tests need an interpreting process, GPU tests a compiling one; outputs NaN-poisoned in both."""
    gpu = request.node.get_closest_marker("gpu") is not None
    if gpu and kt.interpreting():
        pytest.skip("this process runs Triton's interpreter (TRITON_INTERPRET=1 at import): GPU tests need "
                    "the compiler; run them without TRITON_INTERPRET")
    if not gpu and not kt.interpreting():
        pytest.skip("Triton was imported without TRITON_INTERPRET=1: run `TRITON_INTERPRET=1 pytest "
                    "tests/ops/test_triton_kernels.py` for the interpreter tests")
    monkeypatch.setenv("MDN_FAST_POISON", "1")


def _qkv(packed):
    return [packed[:, :, :, :, i].permute(3, 0, 1, 2, 4, 5) for i in range(3)]


# ------------------------------------------------------------------ entity_attention, interpreter
# (the kernels against the reference: the backend-parametrised tests of tests/ops/test_entity_attention.py)
def test_entity_attention_launch_config_batches_tiny_groups():
    cfg = kea.launch_config(8, 6, 32, [0, 1], False)     # the paper's sizes: one program per (p, b, h)
    assert cfg["fwd"]["BLOCK_R"] == 64 and cfg["NGB"] == 1 and cfg["fwd"]["BLOCK_D"] == 32 and cfg["axes_bits"] == 2
    assert cfg["fwd"]["WHOLE"] and cfg["bwd"]["WHOLE"]                # one read of every operand
    cfg = kea.launch_config(MAX_T, MAX_K, 24, [1, 0], True)
    assert cfg["bwd"]["BLOCK_R"] == 64 and cfg["NGB"] == 16 and cfg["bwd"]["DOT_PREC"] == "ieee" and cfg["axes_bits"] == 1


def test_entity_attention_launch_config_chunks_wide_and_unaligned_heads():
    for fp32 in (False, True):
        for T, K, Dh, vec in [(8, 6, 128, True), (8, 6, 24, False), (33, 3, 65, False), (5, 3, 40, True)]:
            cfg = kea.launch_config(T, K, Dh, [0, 1], fp32, vec)
            assert cfg["fwd"]["BLOCK_R"] == cfg["bwd"]["BLOCK_R"]          # one tiling: the lse rows match
            for c in (cfg["fwd"], cfg["bwd"]):
                whole = c["BLOCK_D"] <= 32 and (vec or c["BLOCK_R"] <= 32 or (fp32 and c["BLOCK_D"] == 16))
                assert c["WHOLE"] == whole and (c["CHUNK_D"] == c["BLOCK_D"] or not whole), (T, K, Dh, vec, fp32, c)
                assert c["CHUNK_D"] >= 16                                       # tl.dot needs K >= 16
                assert c["BLOCK_D"] % c["CHUNK_D"] == 0


def test_vectorised_follows_what_triton_specialises_on():
    """Rows Triton can load as 16-element vectors: unit column stride, Dh and every other stride a
    multiple of 16, aligned start. Anything else takes the unaligned (chunked, for 64-row tiles) config."""
    assert tb._vectorised(*_qkv(torch.empty(2, 8, 6, 2, 3, 8, 32)))                 # the paper's packed QKV
    assert not tb._vectorised(*_qkv(torch.empty(2, 8, 6, 2, 3, 8, 24)))             # Dh = 24
    assert not tb._vectorised(torch.empty(2, 2, 8, 6, 32, 8).transpose(-1, -2))     # feature stride 8
    assert not tb._vectorised(torch.empty(2 * 2 * 8 * 6 * 8 * 32 + 1)[1:].view(2, 2, 8, 6, 8, 32))  # offset 1
    assert not tb._vectorised(torch.empty(2, 8, 6, 2, 3, 8, 32)[:, :, :3].permute(3, 0, 1, 2, 4, 5, 6)[:, :, :, :, 0],
                              torch.empty(2, 2, 8, 6, 8, 40)[..., :32])             # one of several: row stride 40


# ------------------------------------------------------------------ routed_merge, interpreter
# (the kernel against the reference: the backend-parametrised tests of tests/ops/test_routed_merge.py; here
# only its second tiling, which their sizes do not reach)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_routed_merge_chunked_tiles(dtype, monkeypatch):
    """The two-walk path of the kernel ([T, D] tile beyond ``_SINGLE_TILE``): D = 40 in chunks of 16."""
    monkeypatch.setattr(krm, "_SINGLE_TILE", 64)
    assert not krm.launch_config(7, 40)["SINGLE"]
    check_routed_merge("triton", 2, 7, 5, 40, dtype, "cpu", layout="strided")


# ------------------------------------------------------------------ backend protocol
def test_unsupported_reasons(monkeypatch):
    cpu = torch.device("cpu")
    ok = dict(P=2, B=1, T=8, K=6, H=1, Dh=32)
    rm = dict(B=1, T=8, K=6, D=8)

    def why(op, dtype, sizes):
        return _backends.unsupported_reason("triton", op, cpu, dtype, sizes)

    assert tb.unavailable_reason() is None
    assert why("entity_attention", torch.float32, ok) is None
    assert "float64" in why("entity_attention", torch.float64, ok)
    assert "float64" in why("routed_merge", torch.float64, rm)
    assert why("routed_merge", torch.bfloat16, rm) is None
    monkeypatch.setattr(kt, "INTERPRETER_BF16_DOT_OK", False)    # the plain interpreter: bf16 dot is wrong
    bf16 = why("entity_attention", torch.bfloat16, ok)
    assert "bf16" in bf16 and tb.BF16_DOT_ISSUE in bf16 and "tests/ops/_triton_interp_bf16.py" in bf16
    monkeypatch.setattr(kt, "INTERPRETER_BF16_DOT_OK", True)     # what the harness sets once it fixed it
    assert why("entity_attention", torch.bfloat16, ok) is None
    assert "K <= 16" in why("entity_attention", torch.float32, {**ok, "K": MAX_K + 1})
    assert "T <= 64" in why("routed_merge", torch.float32, dict(rm, T=MAX_T + 1))
    assert why("routed_merge", torch.float32, dict(rm, K=MAX_K + 1)) is None   # K is a grid dimension there
    assert "Dh <= 128" in why("entity_attention", torch.float32, {**ok, "Dh": MAX_DH + 1})
    assert "P <= 64" in why("entity_attention", torch.float32, {**ok, "P": 65})
    q = torch.randn(1, 1, MAX_T + 1, 2, 1, 8)
    with pytest.raises(NotImplementedError, match="T <= 64"):
        entity_attention(q, q, q, ("temporal",), backend="triton")
    monkeypatch.setattr(kt, "interpreting", lambda: False)   # a compiling process refuses CPU tensors
    assert "TRITON_INTERPRET" in why("entity_attention", torch.float32, ok)
    monkeypatch.setattr(kt, "INTERPRETER_BF16_DOT_OK", False)    # the flag is the interpreter's only
    assert "TRITON_INTERPRET" in why("entity_attention", torch.bfloat16, ok)


def test_every_reason_is_given():
    """A refusal lists everything wrong at once: dtype and each size beyond its limit."""
    sizes = dict(P=MAX_PATHS + 1, B=1, T=MAX_T + 1, K=MAX_K + 1, H=1, Dh=MAX_DH + 1)
    reasons = _backends.unsupported_reasons("triton", "entity_attention", "cpu", torch.float64, sizes)
    assert len(reasons) == 5, reasons
    joined = _backends.unsupported_reason("triton", "entity_attention", "cpu", torch.float64, sizes)
    for part in ("float64", f"P <= {MAX_PATHS}", f"K <= {MAX_K}", f"T <= {MAX_T}", f"Dh <= {MAX_DH}"):
        assert part in joined
    q = torch.randn(1, 1, 2, MAX_K + 1, 1, MAX_DH + 1, dtype=torch.float64)
    with pytest.raises(NotImplementedError, match=rf"float64.*K <= {MAX_K}.*Dh <= {MAX_DH}"):
        entity_attention(q, q, q, ("spatial",), backend="triton")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_routed_merge_beyond_the_attention_entity_limit(dtype):
    """routed_merge's K is its grid's dimension: the Triton kernel takes K > MAX_K (as the C++ one does)."""
    check_routed_merge("triton", 2, 5, MAX_K + 3, 24, dtype, "cpu")


# ------------------------------------------------------------------ the harness's bf16 fix (interpreter)
def _harness_fix():
    if not (interp_bf16.STATUS or "").startswith("patched"):
        pytest.skip(f"the Triton interpreter's bf16 fix is not active: {interp_bf16.STATUS}")
    from triton.runtime import interpreter
    return interpreter.InterpreterBuilder


def test_harness_bf16_dot_is_an_fp32_matmul():
    """tests/ops/_triton_interp_bf16.py: with it, an interpreted bf16 (and fp16) tl.dot is the fp32 matmul of
    its inputs plus the accumulator, as on tensor cores (products exact, sums in fp32), and the backend's
    flag is set."""
    _harness_fix()
    assert kt.INTERPRETER_BF16_DOT_OK
    gen = torch.Generator().manual_seed(3)
    for dtype in (torch.bfloat16, torch.float16):
        a, b = (torch.randint(-8, 9, shape, generator=gen).to(dtype) for shape in ((32, 64), (64, 16)))
        acc = torch.randint(-99, 99, (32, 16), generator=gen).float()
        assert torch.equal(interp_bf16.probe_dot(a, b, acc), a.float() @ b.float() + acc), dtype  # exact sums
        a, b = torch.randn(16, 32, generator=gen).to(dtype), torch.randn(32, 16, generator=gen).to(dtype)
        want = a.double() @ b.double()                   # the exact products' sum, then fp32 rounding error
        err = (interp_bf16.probe_dot(a, b).double() - want).abs().max().item()
        assert err <= 32 * 2 ** -24 * (a.double().abs() @ b.double().abs()).max().item(), (dtype, err)


def test_harness_bf16_cast_rounds_to_nearest_even():
    _harness_fix()
    x = torch.randn(4096, generator=torch.Generator().manual_seed(5)) * 3
    x[:4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 3.4e38])   # 3.4e38: past bf16's max
    got, want = interp_bf16.probe_to_bf16(x), x.bfloat16()      # torch rounds to nearest even
    assert got[0].isnan() and torch.equal(got[1:].view(torch.int16), want[1:].view(torch.int16))


def test_harness_bf16_fix_is_needed(monkeypatch):
    """Triton's own interpreter multiplies bf16 bit patterns (1.0 = 0x3F80: ones @ ones over K = 16 gives
    16 * 16256**2) and truncates fp32 -> bf16. Fails as xfail once upstream fixes them: then the harness
    (and the backend's refusal) can go."""
    builder = _harness_fix()
    monkeypatch.setattr(builder, "create_dot", interp_bf16.ORIGINAL["create_dot"])
    monkeypatch.setattr(builder, "cast_impl", interp_bf16.ORIGINAL["cast_impl"])
    ones = torch.ones(16, 16, dtype=torch.bfloat16)
    dot = interp_bf16.probe_dot(ones, ones)[0, 0].item()
    x = torch.tensor([1 + 3 * 2 ** -8] * 16)                 # halfway between two bf16: nearest even rounds up
    cast = interp_bf16.probe_to_bf16(x)[0].item()
    fixed = [what for what, right in (("tl.dot", dot == 16.0), ("the fp32 -> bf16 cast", cast == 1 + 2 ** -6)) if right]
    if fixed:
        pytest.xfail(f"Triton {triton.__version__}'s interpreter gets {' and '.join(fixed)} right: drop that part "
                     "of tests/ops/_triton_interp_bf16.py (for tl.dot, and the backend's bf16 refusal)")
    assert dot == 16 * 0x3F80 ** 2 and cast == 1 + 2 ** -7    # bit patterns multiplied; truncated


def test_opcheck_entity_attention_ops():
    gen = torch.Generator().manual_seed(2)
    P, B, T, K, H, Dh = 2, 2, 3, 2, 1, 16
    q, k, v = (torch.randn(P, B, T, K, H, Dh, generator=gen, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[[True, False]] * T, [[True, True], [False, False], [True, False]]])
    ops = torch.ops.mdn_fast_triton
    for m in (None, mask):
        torch.library.opcheck(ops.entity_attention_fwd, (q, k, v, [0, 1], m, 0.3))
    _, lse = ops.entity_attention_fwd(q.detach(), k.detach(), v.detach(), [1, 0], mask, 0.3)
    do = torch.randn(P, B, T, K, H, Dh, generator=gen)
    torch.library.opcheck(ops.entity_attention_bwd, (do, q.detach(), k.detach(), v.detach(), lse, [1, 0],
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
        torch.library.opcheck(ops.routed_merge_fwd, (xs, xt, w, b, 0.7, m))
    _, alpha = ops.routed_merge_fwd(xs, xt, w, b, 0.7, mask)
    dy, da = torch.randn(B, T, K, D, generator=gen), torch.randn(B, K, 2, generator=gen)
    for grad_alpha in (da, None):  # grad_alpha is optional, as in the C++ schema
        torch.library.opcheck(ops.routed_merge_bwd, (dy, grad_alpha, xs.detach(), xt.detach(), w.detach(),
                                                     alpha.detach(), 0.7, mask))


def _cpp_ops_or_skip():
    from mdn_fast.ops import cpp_backend
    why = cpp_backend.unavailable_reason()
    if why:
        pytest.skip(f"the C++ ops are not here to compare with: {why}")
    return torch.ops.mdn_fast


def _triton_op_ignores_schema() -> bool:
    """torch 2.11's ``triton_op`` takes ``schema=`` and drops it (it always infers one from the type
    hints, and ``list[int]`` infers as ``SymInt[]``); later torches use it. Probed, not version-matched."""
    from torch.library import triton_op

    @triton_op("mdn_fast_test::schema_probe", mutates_args=(), schema="(Tensor a, int[] b) -> Tensor")
    def _probe(a: torch.Tensor, b: list[int]) -> torch.Tensor:
        return a.clone()

    return "SymInt[]" in str(torch.ops.mdn_fast_test.schema_probe.default._schema)


def test_schemas_match_the_cpp_ops():
    """One op naming for both compiled backends: the Triton namespace has every C++ op, with the same
    schema (names, argument names and types, optional arguments, returns), and nothing else. Under a
    torch whose ``triton_op`` drops ``schema=`` (2.11) the inferred ``SymInt[]`` of ``axes`` is the one
    allowed difference (both take a list of Python ints)."""
    cpp, tri = _cpp_ops_or_skip(), torch.ops.mdn_fast_triton
    from mdn_fast.ops._schemas import SCHEMAS
    inferred = _triton_op_ignores_schema()
    for name in SCHEMAS:
        want = str(getattr(cpp, name).default._schema).split("::", 1)[1]
        got = str(getattr(tri, name).default._schema).split("::", 1)[1]
        if inferred:
            got = got.replace("SymInt[]", "int[]")
        assert got == want == name + SCHEMAS[name]
    registered = {str(s.name).split("::", 1)[1] for s in torch._C._jit_get_all_schemas()
                  if str(s.name).startswith(("mdn_fast::", "mdn_fast_triton::"))}  # not the probe's
    assert registered == set(SCHEMAS), "an op exists in one namespace only (or is missing from ops/_schemas.py)"


def test_lse_is_the_cpp_lse():
    """The forward's saved statistic means the same in both backends: the natural-log log-sum-exp, -inf
    for a query whose group has no present key (a poisoned group's lse is unspecified: each backward
    poisons that group's gradients from its inputs); and each backward accepts the other's lse (same
    gradients as with its own)."""
    cpp, tri = _cpp_ops_or_skip(), torch.ops.mdn_fast_triton
    gen = torch.Generator().manual_seed(11)
    P, B, T, K, H, Dh = 2, 2, 5, 3, 2, 16
    q, k, v = packed_qkv(P, B, T, K, H, Dh, torch.float32, "cpu", generator=gen)
    q = q * 3  # scores well away from 0, so lse is not near log(n)
    mask = torch.rand(B, T, K, generator=gen) > 0.4
    mask[1, :, 2] = False      # entity 2 absent from clip 1: its temporal groups are empty
    mask[0, 3] = False         # frame 3 of clip 0 empty: its spatial groups are empty
    mask[1, 4, 0] = True
    k = k.clone()
    k[0, 1, 4, 0, 1, 3] = float("nan")  # poisons one spatial group of path 0 (clip 1, frame 4, head 1)
    o_c, lse_c = cpp.entity_attention_fwd(q, k, v, [0, 1], mask, 0.25)
    o_t, lse_t = tri.entity_attention_fwd(q, k, v, [0, 1], mask, 0.25)
    assert lse_t.dtype == lse_c.dtype == torch.float32 and lse_t.shape == lse_c.shape == (P, B, T, K, H)
    poisoned = o_c.isnan().any(-1)
    assert torch.equal(poisoned, o_t.isnan().any(-1)) and poisoned[0, 1, 4, :, 1].all() and poisoned.sum() == K
    assert torch.isneginf(lse_c).any()  # the empty-group case is exercised
    torch.testing.assert_close(lse_t[~poisoned], lse_c[~poisoned], rtol=1e-5, atol=1e-5)  # -inf == -inf
    grad_out = torch.randn(P, B, T, K, H, Dh, generator=gen)
    k_ok = torch.nan_to_num(k)
    _, lse_c = cpp.entity_attention_fwd(q, k_ok, v, [0, 1], mask, 0.25)
    _, lse_t = tri.entity_attention_fwd(q, k_ok, v, [0, 1], mask, 0.25)
    for bwd, own, other in ((tri.entity_attention_bwd, lse_t, lse_c), (cpp.entity_attention_bwd, lse_c, lse_t)):
        mine = bwd(grad_out, q, k_ok, v, own, [0, 1], mask, 0.25)
        theirs = bwd(grad_out, q, k_ok, v, other, [0, 1], mask, 0.25)
        for a, b in zip(mine, theirs):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_ops_stay_whole_in_compiled_graphs():
    """Under the interpreter the four ops must reach AOTAutograd's graphs whole: decomposed (triton_op's
    default) their interpreted kernels would not be traced and the graphs would lose them. Kept whole by
    ``triton_backend._keep_opaque_under_interpreter`` through torch's private FunctionalTensorMode: this
    fails loudly if torch changes it."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    gen = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(2, 1, 3, 2, 1, 16, generator=gen, requires_grad=True) for _ in range(3))
    xs = torch.randn(1, 3, 2, 16, generator=gen, requires_grad=True)
    w, b = torch.randn(2, 2, 32, generator=gen), torch.randn(2, 2, generator=gen)

    def f(q, k, v, xs):
        o = entity_attention(q, k, v, AXES[0], backend="triton").flatten(-2)
        y, _ = routed_merge(o[0] + xs, o[1], w, b, backend="triton")
        return y.square().sum()

    compiled = torch.compile(f, fullgraph=True, backend=aot_autograd(fw_compiler=capture, bw_compiler=capture))
    compiled(q, k, v, xs).backward()
    ops = {str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"}
    for op in ("entity_attention_fwd", "entity_attention_bwd", "routed_merge_fwd", "routed_merge_bwd"):
        assert f"mdn_fast_triton.{op}.default" in ops, f"{op} was decomposed (or dropped) by functionalization"


# ------------------------------------------------------------------ GPU only
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("D", [256, 2048])
def test_routed_merge_cuda_both_tilings(dtype, D):
    """The [T, D] tile in registers (D = 256) and chunked (D = 2048) at the paper's T, K."""
    assert krm.launch_config(8, D)["SINGLE"] == (D == 256)
    check_routed_merge("triton", 16, 8, 6, D, dtype, "cuda")


@pytest.mark.gpu
def test_opcheck_cuda():
    P, B, T, K, H, Dh = 2, 2, 8, 6, 2, 32
    q, k, v = (torch.randn(P, B, T, K, H, Dh, device="cuda", requires_grad=True) for _ in range(3))
    mask = torch.rand(B, T, K, device="cuda") > 0.3
    torch.library.opcheck(torch.ops.mdn_fast_triton.entity_attention_fwd, (q, k, v, [0, 1], mask, 0.2))
    xs, xt = (torch.randn(B, T, K, 64, device="cuda", requires_grad=True) for _ in range(2))
    w = torch.randn(K, 2, 128, device="cuda", requires_grad=True)
    b = torch.randn(K, 2, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.mdn_fast_triton.routed_merge_fwd, (xs, xt, w, b, 1.0, mask))


@pytest.mark.gpu
def test_compile_fullgraph_cuda():
    P, B, T, K, H, Dh, D = 2, 4, 8, 6, 2, 32, 64
    dtype = torch.bfloat16
    packed = torch.randn(B, T, K, P, 3, H, Dh, device="cuda", dtype=dtype, requires_grad=True)
    xs = torch.randn(B, T, K, D, device="cuda", dtype=dtype, requires_grad=True)
    w = torch.randn(K, 2, 2 * D, device="cuda", requires_grad=True)
    b = torch.randn(K, 2, device="cuda", requires_grad=True)
    mask = torch.rand(B, T, K, device="cuda") > 0.2
    ga = torch.randn(B, K, 2, device="cuda")

    def f(packed, xs, w, b):
        o = entity_attention(*_qkv(packed), ("spatial", "temporal"), mask=mask, backend="triton")
        y, alpha = routed_merge(xs + o[0].flatten(-2)[..., :D], xs, w, b, mask=mask, backend="triton")
        # alpha weighted by random numbers: its rows sum to 1, so alpha.sum() would have zero gradient
        return y.float().square().sum() + (alpha * ga).sum()

    eager = torch.autograd.grad(f(packed, xs, w, b), (packed, xs, w, b))
    compiled = torch.compile(f, fullgraph=True)
    got = torch.autograd.grad(compiled(packed, xs, w, b), (packed, xs, w, b))
    for g, e in zip(got, eager):
        assert_close(g, e, dtype, "compiled grad")
