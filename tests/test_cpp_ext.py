"""The compiled ``cpp`` backend (``mdn_fast._C``): its ops against the float64 reference, their torch
registration (opcheck, fake tensors, autograd, torch.compile), and the package without ``_C``.

Inputs are fresh random tensors; q, k, v are non-contiguous views of one packed ``[B, T, K, P, 3, H, Dh]``
projection; outputs are NaN-poisoned (``MDN_FAST_POISON=1``) so an element a kernel never writes fails.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mdn_fast import reference
from mdn_fast._limits import REL_TOL
from mdn_fast.ops import cpp_backend, entity_attention, routed_merge

from . import _helpers as _h
from ._helpers import rel_err as rel

WHY = cpp_backend.unavailable_reason()
needs_c = pytest.mark.skipif(WHY is not None, reason=f"cpp backend unavailable: {WHY}")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def packed_qkv(B, T, K, P, H, Dh, dtype, device="cpu", seed=0):
    """q, k, v ``[P, B, T, K, H, Dh]`` as strided views of one ``[B, T, K, P, 3, H, Dh]`` tensor."""
    return _h.packed_qkv(P, B, T, K, H, Dh, dtype, device, torch.Generator().manual_seed(seed))


def ragged_mask(B, T, K, device="cpu", seed=1):
    """Random presence with one track absent in every frame and one frame with no entity at all."""
    return _h.holey_mask(B, T, K, device, torch.Generator().manual_seed(seed))


@pytest.fixture
def poison(monkeypatch):
    monkeypatch.setenv("MDN_FAST_POISON", "1")


def check_entity_attention(q, k, v, axes, mask, dtype, backend="cpp"):
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    out = entity_attention(q, k, v, axes, mask=mask, backend=backend)
    assert out.dtype == dtype and out.is_contiguous() and out.shape == q.shape
    assert not out.isnan().any(), "unwritten (NaN-poisoned) output elements"
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = reference.entity_attention(q64, k64, v64, axes, mask.to(q64.device) if mask is not None else None)
    grad = torch.randn_like(ref)
    out.backward(grad.to(dtype))
    ref.backward(grad)
    tol = REL_TOL[dtype]
    assert rel(out, ref) < tol
    for name, a, b in (("q", q, q64), ("k", k, k64), ("v", v, v64)):
        assert not a.grad.isnan().any(), f"NaN in d{name}"
        assert rel(a.grad, b.grad) < tol, f"d{name}: rel err {rel(a.grad, b.grad):.2e} >= {tol}"


@needs_c
def test_extension_loads_and_reports_build():
    info = cpp_backend.build_info()
    assert info.get("cpu") == "1"
    assert info.get("cuda") in ("0", "1")
    assert hasattr(torch.ops.mdn_fast, "entity_attention_fwd")


@needs_c
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("axes", [("spatial", "temporal"), ("temporal", "spatial")], ids="-".join)
def test_entity_attention_matches_reference(dtype, masked, axes, poison):
    B, T, K, H, Dh = 3, 7, 5, 2, 24
    q, k, v = packed_qkv(B, T, K, len(axes), H, Dh, dtype)
    assert not q.is_contiguous()
    check_entity_attention(q, k, v, axes, ragged_mask(B, T, K) if masked else None, dtype)


@needs_c
@pytest.mark.parametrize("axes", [("temporal",), ("spatial", "spatial", "temporal")], ids="-".join)
def test_entity_attention_path_counts_and_strided_features(axes, poison):
    """P != 2, and a feature dim that is not the innermost one (stride(-1) != 1)."""
    B, T, K, H, Dh = 2, 5, 3, 3, 20
    P = len(axes)
    base = torch.randn(3, P, B, T, K, Dh, H)
    q, k, v = (base[i].transpose(-1, -2) for i in range(3))
    assert q.stride(-1) != 1
    check_entity_attention(q, k, v, axes, ragged_mask(B, T, K, seed=3), torch.float32)


@needs_c
def test_entity_attention_limits_of_group_sizes(poison):
    """Largest supported groups (T = 64, K = 16) and Dh = 128 still match; beyond, a clear refusal."""
    q, k, v = packed_qkv(1, 64, 16, 2, 1, 128, torch.float32, seed=4)
    check_entity_attention(q, k, v, ("spatial", "temporal"), ragged_mask(1, 64, 16, seed=5), torch.float32)
    assert "K = 17" in cpp_backend.unsupported_reason("entity_attention", torch.device("cpu"), torch.float32,
                                                      {"P": 2, "B": 1, "T": 4, "K": 17, "H": 1, "Dh": 8})
    q, k, v = (torch.randn(1, 1, 2, 17, 1, 8) for _ in range(3))
    with pytest.raises(NotImplementedError, match="K = 17"):
        entity_attention(q, k, v, ("spatial",), backend="cpp")


def check_routed_merge(dtype, masked, w_dtype=None, B=3, T=7, K=5, D=24, tau=0.7):
    g = torch.Generator().manual_seed(11)
    mk = lambda *s, dt=dtype: torch.randn(*s, generator=g).to(dt).requires_grad_()  # noqa: E731
    # Paths as strided views of one [B, T, K, 2, D] tensor (as a fused projection would give them).
    both = torch.randn(B, T, K, 2, D, generator=g).to(dtype)
    x_st, x_ts = (both[..., i, :].detach().requires_grad_() for i in range(2))
    weight, bias = mk(K, 2, 2 * D, dt=w_dtype or dtype), mk(K, 2, dt=w_dtype or dtype)
    mask = ragged_mask(B, T, K) if masked else None
    y, alpha = routed_merge(x_st, x_ts, weight, bias, tau=tau, mask=mask, backend="cpp")
    ins64 = [t.detach().double().requires_grad_() for t in (x_st, x_ts, weight, bias)]
    y64, a64 = reference.routed_merge(*ins64, tau=tau, mask=mask)
    assert y.dtype == dtype and y.is_contiguous() and alpha.dtype == torch.float32
    assert not y.isnan().any() and not alpha.isnan().any()
    tol = REL_TOL[dtype]
    assert rel(y, y64) < tol and rel(alpha, a64) < tol
    gy, ga = torch.randn_like(y64), torch.randn_like(a64)  # alpha's own gradient is used too
    grads = torch.autograd.grad((y * gy.to(dtype)).sum() + (alpha * ga.float()).sum(), (x_st, x_ts, weight, bias))
    grads64 = torch.autograd.grad((y64 * gy).sum() + (a64 * ga).sum(), ins64)
    for name, a, b in zip(("x_st", "x_ts", "weight", "bias"), grads, grads64):
        assert not a.isnan().any(), f"NaN in d{name}"
        assert rel(a, b) < tol, f"d{name}: rel err {rel(a, b):.2e} >= {tol}"


@needs_c
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_routed_merge_matches_reference(dtype, masked, poison):
    check_routed_merge(dtype, masked)


@needs_c
def test_routed_merge_router_in_another_dtype(poison):
    """fp16 paths with an fp32 router (a common autocast situation): gradients come back in fp32."""
    check_routed_merge(torch.float16, True, w_dtype=torch.float32)


@needs_c
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_routed_merge_large_outputs_streaming_path(masked, poison):
    """Outputs of >= 4 MiB take the kernel's streaming-store path (small ones stay cached)."""
    B, T, K, D = 64, 8, 4, 512                       # y, dx_st, dx_ts: 4 MiB each in fp32
    x_st, x_ts = (torch.randn(B, T, K, D, requires_grad=True) for _ in range(2))
    weight = (torch.randn(K, 2, 2 * D) * 0.5 * (2 * D) ** -0.5).requires_grad_()  # unsaturated router
    bias = (torch.randn(K, 2) * 0.1).requires_grad_()
    mask = ragged_mask(B, T, K) if masked else None
    y, alpha = routed_merge(x_st, x_ts, weight, bias, tau=0.7, mask=mask, backend="cpp")
    ins64 = [t.detach().double().requires_grad_() for t in (x_st, x_ts, weight, bias)]
    y64, a64 = reference.routed_merge(*ins64, tau=0.7, mask=mask)
    assert rel(y, y64) < REL_TOL[torch.float32] and rel(alpha, a64) < REL_TOL[torch.float32]
    gy, ga = torch.randn_like(y64), torch.randn_like(a64)
    grads = torch.autograd.grad((y * gy.float()).sum() + (alpha * ga.float()).sum(), (x_st, x_ts, weight, bias))
    grads64 = torch.autograd.grad((y64 * gy).sum() + (a64 * ga).sum(), ins64)
    for name, a, b in zip(("x_st", "x_ts", "weight", "bias"), grads, grads64):
        assert rel(a, b) < REL_TOL[torch.float32], f"d{name}: rel err {rel(a, b):.2e}"


@needs_c
def test_routed_merge_weight_grad_is_deterministic():
    g = torch.Generator().manual_seed(5)
    B, T, K, D = 16, 4, 3, 40
    x_st, x_ts = (torch.randn(B, T, K, D, generator=g) for _ in range(2))
    weight = torch.randn(K, 2, 2 * D, generator=g, requires_grad=True)
    bias = torch.randn(K, 2, generator=g, requires_grad=True)
    gy = torch.randn(B, T, K, D, generator=g)
    runs = []
    for _ in range(2):
        y, _ = routed_merge(x_st, x_ts, weight, bias, mask=ragged_mask(B, T, K), backend="cpp")
        runs.append(torch.autograd.grad((y * gy).sum(), (weight, bias)))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@needs_c
def test_gradcheck_float64():
    B, T, K, H, Dh = 2, 3, 4, 1, 5
    q, k, v = (x.detach().requires_grad_() for x in packed_qkv(B, T, K, 2, H, Dh, torch.float64, seed=6))
    mask = ragged_mask(B, T, K, seed=7)
    mask[1, 0, :] = False
    fn = lambda q, k, v: entity_attention(q, k, v, ("spatial", "temporal"), mask=mask, backend="cpp")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v))
    D = 3
    x_st, x_ts = (torch.randn(B, T, K, D, dtype=torch.float64, requires_grad=True) for _ in range(2))
    w = torch.randn(K, 2, 2 * D, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, 2, dtype=torch.float64, requires_grad=True)
    fn2 = lambda *a: routed_merge(*a, tau=0.5, mask=mask, backend="cpp")  # noqa: E731
    assert torch.autograd.gradcheck(fn2, (x_st, x_ts, w, b))


@needs_c
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_opcheck(masked):
    from torch.library import opcheck

    ops = torch.ops.mdn_fast
    B, T, K, H, Dh, D = 2, 3, 4, 2, 8, 6
    mask = ragged_mask(B, T, K) if masked else None
    q, k, v = (x.detach().requires_grad_() for x in packed_qkv(B, T, K, 2, H, Dh, torch.float32))
    axes = [0, 1]
    opcheck(ops.entity_attention_fwd.default, (q, k, v, axes, mask, 0.3))
    out, lse = ops.entity_attention_fwd(q, k, v, axes, mask, 0.3)
    opcheck(ops.entity_attention_bwd.default, (torch.randn_like(out), q.detach(), k.detach(), v.detach(), lse, axes,
                                               mask, 0.3))
    x_st, x_ts = (torch.randn(B, T, K, D, requires_grad=True) for _ in range(2))
    w = torch.randn(K, 2, 2 * D, requires_grad=True)
    b = torch.randn(K, 2, requires_grad=True)
    opcheck(ops.routed_merge_fwd.default, (x_st, x_ts, w, b, 0.7, mask))
    y, alpha = ops.routed_merge_fwd(x_st, x_ts, w, b, 0.7, mask)
    opcheck(ops.routed_merge_bwd.default, (torch.randn_like(y), torch.randn_like(alpha), x_st.detach(),
                                           x_ts.detach(), w.detach(), alpha.detach(), 0.7, mask))


@needs_c
def test_torch_compile_fullgraph():
    """The ops trace without graph breaks (fake impls + autograd); aot_eager keeps the test fast."""
    q, k, v = (x.detach().requires_grad_() for x in packed_qkv(2, 3, 4, 2, 2, 8, torch.float32))
    mask = ragged_mask(2, 3, 4)

    def f(q, k, v):
        return entity_attention(q, k, v, ("spatial", "temporal"), mask=mask, backend="cpp").square().sum()

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(q, k, v), (q, k, v))
    want = torch.autograd.grad(f(q, k, v), (q, k, v))
    assert all(rel(a, b) < REL_TOL[torch.float32] for a, b in zip(got, want))


@needs_c
def test_bad_calls_are_refused_with_clear_errors():
    q, k, v = packed_qkv(1, 2, 3, 1, 1, 4, torch.float32)
    with pytest.raises(RuntimeError, match="axes"):
        torch.ops.mdn_fast.entity_attention_fwd(q, k, v, [2], None, 1.0)
    with pytest.raises(RuntimeError, match="mask"):
        torch.ops.mdn_fast.entity_attention_fwd(q, k, v, [0], torch.ones(1, 2, 3), 1.0)  # not bool
    x = torch.randn(1, 2, 3, 4)
    with pytest.raises(RuntimeError, match="weight"):
        torch.ops.mdn_fast.routed_merge_fwd(x, x, torch.randn(3, 2, 7), torch.randn(3, 2), 1.0, None)


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


_WITHOUT_C = """
import torch, mdn_fast
why = mdn_fast.available_backends()["cpp"]
assert why, "cpp backend should be unavailable"
print("REASON:", why)
q = torch.randn(1, 2, 3, 4, 2, 8)
o = mdn_fast.ops.entity_attention(q, q, q, ("spatial",))          # auto -> reference
y, a = mdn_fast.ops.routed_merge(torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5),
                                 torch.randn(4, 2, 10), torch.randn(4, 2))
try:
    mdn_fast.ops.entity_attention(q, q, q, ("spatial",), backend="cpp")
except NotImplementedError as e:
    print("REFUSED:", e)
else:
    raise AssertionError("backend='cpp' should refuse without _C")
"""


def test_package_works_without_extension_disabled():
    r = _run_python(_WITHOUT_C, MDN_FAST_DISABLE_C="1")
    assert r.returncode == 0, r.stderr
    assert "MDN_FAST_DISABLE_C" in r.stdout and "REFUSED:" in r.stdout


def test_package_works_when_extension_fails_to_load():
    """Simulates a broken _C (e.g. built against another torch): importing it raises."""
    code = "import sys; sys.modules['mdn_fast._C'] = None\n" + _WITHOUT_C
    r = _run_python(code)
    assert r.returncode == 0, r.stderr
    assert "REASON: mdn_fast._C" in r.stdout


# ------------------------------------------------------------------------------------------ GPU
def _cuda_ready():
    return torch.cuda.is_available() and WHY is None and cpp_backend.built_with_cuda()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES + (torch.float64,), ids=str)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_cuda_entity_attention_matches_reference(dtype, masked, poison):
    if not _cuda_ready():
        pytest.skip("needs a CUDA device and mdn_fast._C built with CUDA")
    B, T, K, H, Dh = 3, 7, 5, 2, 24
    q, k, v = packed_qkv(B, T, K, 2, H, Dh, dtype, device="cuda")
    check_entity_attention(q, k, v, ("spatial", "temporal"), ragged_mask(B, T, K, "cuda") if masked else None, dtype)
    q, k, v = packed_qkv(1, 64, 16, 2, 1, 128, dtype, device="cuda", seed=3)
    check_entity_attention(q, k, v, ("temporal", "spatial"), ragged_mask(1, 64, 16, "cuda") if masked else None,
                           dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES + (torch.float64,), ids=str)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_cuda_routed_merge_matches_reference(dtype, masked, poison):
    if not _cuda_ready():
        pytest.skip("needs a CUDA device and mdn_fast._C built with CUDA")
    B, T, K, D, tau = 3, 7, 5, 300, 0.7
    g = torch.Generator().manual_seed(2)
    x_st, x_ts = (torch.randn(B, T, K, D, generator=g).to("cuda", dtype).requires_grad_() for _ in range(2))
    w = torch.randn(K, 2, 2 * D, generator=g).to("cuda", dtype).requires_grad_()
    b = torch.randn(K, 2, generator=g).to("cuda", dtype).requires_grad_()
    mask = ragged_mask(B, T, K, "cuda") if masked else None
    y, alpha = routed_merge(x_st, x_ts, w, b, tau=tau, mask=mask, backend="cpp")
    ins64 = [t.detach().double().requires_grad_() for t in (x_st, x_ts, w, b)]
    y64, a64 = reference.routed_merge(*ins64, tau=tau, mask=mask)
    tol = REL_TOL[dtype]
    assert rel(y, y64) < tol and rel(alpha, a64) < tol
    gy, ga = torch.randn_like(y64), torch.randn_like(a64)
    grads = torch.autograd.grad((y * gy.to(dtype)).sum() + (alpha * ga.to(alpha.dtype)).sum(), (x_st, x_ts, w, b))
    grads64 = torch.autograd.grad((y64 * gy).sum() + (a64 * ga).sum(), ins64)
    assert all(rel(a, c) < tol for a, c in zip(grads, grads64))
