"""entity_attention: the reference against PyTorch, and every available backend against the reference.

Layout everywhere: q, k, v, o ``[P, B, T, K, H, Dh]``; mask ``[B, T, K]``.
"""
import pytest
import torch
import torch.nn.functional as F

from mdn_fast import reference
from mdn_fast._limits import MAX_DH, MAX_K, MAX_PATHS, MAX_T
from mdn_fast.ops import entity_attention
from mdn_fast.ops._backends import unavailable_reason

from tests._helpers import (BACKENDS, DTYPES, check_entity_attention, device_params, holey_mask, packed_qkv,
                       skip_unless_supported)

AXES2 = ("spatial", "temporal")


@pytest.fixture
def poison(monkeypatch):
    monkeypatch.setenv("MDN_FAST_POISON", "1")  # unwritten output elements stay NaN and fail


def _sdpa_reference(q, k, v, axis, mask):
    """One path through F.scaled_dot_product_attention on the reshaped axis; groups without any present
    key give 0 (SDPA itself would give NaN there)."""
    perm, inv = ((0, 1, 3, 2, 4), (0, 1, 3, 2, 4)) if axis == "spatial" else ((0, 2, 3, 1, 4), (0, 3, 1, 2, 4))
    qg, kg, vg = (x.permute(perm) for x in (q, k, v))                    # [B, G, H, N, Dh]
    if mask is None:
        return F.scaled_dot_product_attention(qg, kg, vg).permute(inv)
    km = (mask if axis == "spatial" else mask.transpose(1, 2))[:, :, None, None, :]
    out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=km)
    return torch.where(km.any(-1, keepdim=True), out, 0.0).permute(inv)


@pytest.mark.parametrize("with_mask", [False, True])
def test_reference_equals_sdpa_on_reshaped_axis(with_mask):
    P, B, T, K, H, Dh = 2, 3, 7, 5, 2, 24
    q, k, v = (torch.randn(P, B, T, K, H, Dh, dtype=torch.float64) for _ in range(3))
    mask = holey_mask(B, T, K, "cpu") if with_mask else None
    out = reference.entity_attention(q, k, v, AXES2, mask)
    for p, axis in enumerate(AXES2):
        torch.testing.assert_close(out[p], _sdpa_reference(q[p], k[p], v[p], axis, mask), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    P, B, T, K, H, Dh = 2, 2, 4, 3, 1, 5
    skip_unless_supported(backend, {"entity_attention": dict(P=P, B=B, T=T, K=K, H=H, Dh=Dh)}, "cpu",
                          torch.float64)
    q, k, v = (x.detach().requires_grad_() for x in packed_qkv(P, B, T, K, H, Dh, torch.float64, "cpu",
                                                               torch.Generator().manual_seed(6)))
    mask = holey_mask(B, T, K, "cpu", torch.Generator().manual_seed(7))
    fn = lambda q, k, v: entity_attention(q, k, v, AXES2, mask=mask, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v))


# --- every backend against the reference (the one backend test; tests/_helpers.check_entity_attention) --
CASES = [  # (P, B, T, K, H, Dh, axes, layout): odd sizes, both orders, one and three paths, strided features
    (2, 2, 7, 5, 2, 24, ("spatial", "temporal"), "packed"),
    (2, 1, 5, 3, 1, 16, ("temporal", "spatial"), "packed"),
    (1, 2, 8, 6, 2, 32, ("temporal",), "packed"),
    (3, 2, 5, 3, 3, 20, ("spatial", "spatial", "temporal"), "strided_features"),
    (2, 1, 33, 3, 1, 20, ("spatial", "temporal"), "packed"),  # T > 32: one temporal group per Triton program
    # Dh > 32: Triton walks the head dim in chunks (the last one partly, one wholly past Dh in 16-bit)
    (2, 2, 7, 5, 2, 40, ("spatial", "temporal"), "strided_features"),
]


def _case_id(c):
    return f"P{c[0]}B{c[1]}T{c[2]}K{c[3]}H{c[4]}D{c[5]}-{''.join(a[0] for a in c[6])}-{c[7]}"


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES + [torch.float64], ids=str)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("with_mask", [False, True], ids=["nomask", "holes"])
def test_backend_matches_reference(backend, dtype, case, with_mask, device, poison):
    P, B, T, K, H, Dh, axes, layout = case
    check_entity_attention(backend, P, B, T, K, H, Dh, axes, dtype, device, with_mask=with_mask, layout=layout)


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T,K,Dh", [(MAX_T, MAX_K, 16), (5, 3, MAX_DH)], ids=["maxTK", "maxDh"])
def test_backend_at_size_limits(backend, T, K, Dh, device, poison):
    """Largest groups (T = MAX_T, K = MAX_K) and largest head dim, both axes in one call. (Both limits at
    once run in the GPU test: the Triton interpreter needs ~5 s for them.)"""
    check_entity_attention(backend, 2, 1, T, K, 1, Dh, ("spatial", "temporal"), torch.float32, device)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_backend_at_all_limits_at_once_cuda(backend, dtype, poison):
    check_entity_attention(backend, 2, 2, MAX_T, MAX_K, 2, MAX_DH, ("temporal", "spatial"), dtype, "cuda")


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_groups_give_zero_output_and_zero_gradient(backend, poison):
    T, K = 7, 5
    out, (dq, dk, dv), mask = check_entity_attention(backend, 2, 2, T, K, 2, 24, AXES2, torch.float32, "cpu")
    assert (out[0, -1, T // 2] == 0).all(), "spatial queries of an empty frame must output 0"
    assert (out[1, 0, :, K // 2] == 0).all(), "temporal queries of an absent track must output 0"
    assert (dq[0, -1, T // 2] == 0).all() and (dq[1, 0, :, K // 2] == 0).all(), "their queries get no gradient"
    absent = ~mask                                  # keys never attended to get no gradient, in every path
    for g in (dk, dv):
        assert (g[:, absent] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_fullgraph_matches_eager(backend):
    """Forward and backward through torch.compile(fullgraph=True) (fake impls, autograd wiring) equal
    eager's; aot_eager keeps it fast (the GPU inductor path: tests/ops/test_triton_kernels.py)."""
    P, B, T, K, H, Dh = 2, 2, 4, 3, 2, 8
    skip_unless_supported(backend, {"entity_attention": dict(P=P, B=B, T=T, K=K, H=H, Dh=Dh)}, "cpu",
                          torch.float32)
    gen = torch.Generator().manual_seed(8)
    q, k, v = (x.detach().requires_grad_() for x in packed_qkv(P, B, T, K, H, Dh, torch.float32, "cpu", gen))
    mask = holey_mask(B, T, K, "cpu", gen)
    w = torch.randn(P, B, T, K, H, Dh, generator=gen)

    def f(q, k, v):
        return (entity_attention(q, k, v, AXES2, mask=mask, backend=backend) * w).sum()

    torch._dynamo.reset()
    got = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(q, k, v), (q, k, v))
    want = torch.autograd.grad(f(q, k, v), (q, k, v))
    for g, e in zip(got, want):
        assert torch.equal(g, e)


_RAW_FORWARD = {  # each fused backend's forward op: (out, its softmax statistic)
    "cpp": lambda: torch.ops.mdn_fast.entity_attention_fwd,
    "triton": lambda: torch.ops.mdn_fast_triton.entity_attention_fwd,
}


@pytest.mark.parametrize("backend", sorted(_RAW_FORWARD))
def test_softmax_statistic_is_not_differentiable(backend):
    """Both fused backends save the softmax statistic ``lse`` for their backward; with the one autograd
    wiring (mdn_fast/ops/_autograd.py) it is not differentiable."""
    P, B, T, K, H, Dh = 2, 2, 3, 2, 1, 16
    skip_unless_supported(backend, {"entity_attention": dict(P=P, B=B, T=T, K=K, H=H, Dh=Dh)}, "cpu",
                          torch.float32)
    q, k, v = (x.detach().requires_grad_() for x in packed_qkv(P, B, T, K, H, Dh, torch.float32, "cpu"))
    out, stats = _RAW_FORWARD[backend]()(q, k, v, [0, 1], None, 0.3)
    assert out.requires_grad and not stats.requires_grad
    assert stats.shape == (P, B, T, K, H)


# --- dispatch and errors -------------------------------------------------------------------------------
def _qkv(*shape, dtype=torch.float32):
    return [torch.randn(*shape, dtype=dtype) for _ in range(3)]


def test_auto_falls_back_to_reference_beyond_fused_limits():
    q, k, v = _qkv(1, 1, 3, 17, 1, 8)  # K = 17 > 16
    out = entity_attention(q, k, v, ("spatial",), backend="auto")
    torch.testing.assert_close(out, reference.entity_attention(q, k, v, ("spatial",)))


@pytest.mark.parametrize("backend", ["triton", "cpp"])
@pytest.mark.parametrize("shape, axes, what", [
    ((1, 1, MAX_T + 1, 2, 1, 8), ("temporal",), f"T <= {MAX_T}"),
    ((1, 1, 2, MAX_K + 1, 1, 8), ("spatial",), f"K <= {MAX_K}"),
    ((1, 1, 2, 2, 1, MAX_DH + 1), ("spatial",), f"Dh <= {MAX_DH}"),
    ((MAX_PATHS + 1, 1, 2, 2, 1, 8), ("spatial",) * (MAX_PATHS + 1), f"P <= {MAX_PATHS}"),
], ids=["T", "K", "Dh", "P"])
def test_named_fused_backend_refuses_beyond_limits(backend, shape, axes, what):
    if unavailable_reason(backend):
        pytest.skip(unavailable_reason(backend))
    q, k, v = _qkv(*shape)
    with pytest.raises(NotImplementedError, match=f"{backend}.*{what}"):
        entity_attention(q, k, v, axes, backend=backend)


@pytest.mark.parametrize("args, kwargs, exc, pattern", [
    ((torch.randn(2, 1, 3, 2, 1, 4),) * 2 + (torch.randn(2, 1, 3, 2, 1, 5),), {}, ValueError, r"v: expected the same shape"),
    ((torch.randn(1, 3, 2, 1, 4),) * 3, {}, ValueError, r"q: expected 6 dims \[P, B, T, K, H, Dh\]"),
    ((torch.randn(2, 1, 3, 2, 1, 4),) * 2 + (torch.randn(2, 1, 3, 2, 1, 4).double(),), {}, TypeError, r"v: expected the same dtype"),
    ((torch.randint(0, 3, (1, 1, 3, 2, 1, 4)),) * 3, {}, TypeError, r"q: expected a floating dtype"),
], ids=["shape", "ndim", "dtype-mismatch", "int-dtype"])
def test_bad_tensors_raise_naming_the_argument(args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        entity_attention(*args, ("spatial",) * args[0].shape[0] if args[0].dim() == 6 else ("spatial",), **kwargs)


def test_bad_axes_mask_scale_backend_raise():
    q, k, v = _qkv(2, 1, 3, 2, 1, 4)
    with pytest.raises(ValueError, match=r"axes: expected 2 entries"):
        entity_attention(q, k, v, ("spatial",))
    with pytest.raises(ValueError, match=r"axes: each entry must be one of \('spatial', 'temporal'\), got \['time'\]"):
        entity_attention(q, k, v, ("spatial", "time"))
    with pytest.raises(TypeError, match=r"axes: expected a sequence"):
        entity_attention(q, k, v, "spatial")
    with pytest.raises(ValueError, match=r"mask: expected shape \[B, T, K\] = \(1, 3, 2\), got \(1, 2, 3\)"):
        entity_attention(q, k, v, AXES2, mask=torch.ones(1, 2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"mask: expected dtype torch.bool"):
        entity_attention(q, k, v, AXES2, mask=torch.ones(1, 3, 2))
    with pytest.raises(ValueError, match=r"scale: expected a positive float"):
        entity_attention(q, k, v, AXES2, scale=-1.0)
    with pytest.raises(ValueError, match=r"backend: expected one of \('reference', 'triton', 'cpp', 'auto'\), got 'cuda'"):
        entity_attention(q, k, v, AXES2, backend="cuda")
