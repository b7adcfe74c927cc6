"""entity_attention: the reference against PyTorch, and every available backend against the reference.

Layout everywhere: q, k, v, o ``[P, B, T, K, H, Dh]``; mask ``[B, T, K]``.
"""
import pytest
import torch
import torch.nn.functional as F

from mdn_fast import reference
from mdn_fast.ops import entity_attention

from ._helpers import BACKENDS, DTYPES, assert_close, backend_reason, device_params, holey_mask, packed_qkv

AXES2 = ("spatial", "temporal")


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


def test_reference_empty_groups_are_zero_with_finite_zero_gradient():
    P, B, T, K, H, Dh = 2, 2, 5, 4, 1, 8
    q, k, v = (torch.randn(P, B, T, K, H, Dh, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = holey_mask(B, T, K, "cpu")
    out = reference.entity_attention(q, k, v, AXES2, mask)
    assert (out[0, -1, T // 2] == 0).all(), "spatial queries of an empty frame must output 0"
    assert (out[1, 0, :, K // 2] == 0).all(), "temporal queries of an absent track must output 0"
    out.square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[0, -1, T // 2] == 0).all() and (q.grad[1, 0, :, K // 2] == 0).all()
    assert (k.grad[0, -1, T // 2] == 0).all(), "absent keys get no gradient"


@pytest.mark.parametrize("backend", ["reference"])
def test_gradcheck_float64(backend):
    P, B, T, K, H, Dh = 2, 2, 4, 3, 1, 5
    q, k, v = (torch.randn(P, B, T, K, H, Dh, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = holey_mask(B, T, K, "cpu")
    fn = lambda q, k, v: entity_attention(q, k, v, AXES2, mask=mask, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v))


# --- every backend against the float64 reference ------------------------------------------------------
CASES = [  # (P, B, T, K, H, Dh, axes): odd sizes, both orders, a single path
    (2, 2, 7, 5, 2, 24, ("spatial", "temporal")),
    (2, 1, 5, 3, 1, 16, ("temporal", "spatial")),
    (1, 2, 8, 6, 2, 32, ("temporal",)),
]


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"P{c[0]}B{c[1]}T{c[2]}K{c[3]}H{c[4]}D{c[5]}-{c[6][0][0]}")
@pytest.mark.parametrize("with_mask", [False, True], ids=["nomask", "holes"])
def test_backend_matches_reference(backend, dtype, case, with_mask, device, monkeypatch):
    P, B, T, K, H, Dh, axes = case
    why = backend_reason(backend, "entity_attention", device, dtype, dict(P=P, B=B, T=T, K=K, H=H, Dh=Dh))
    if why:
        pytest.skip(why)
    monkeypatch.setenv("MDN_FAST_POISON", "1")  # unwritten output elements stay NaN and fail
    q, k, v = packed_qkv(P, B, T, K, H, Dh, dtype, device)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    mask = holey_mask(B, T, K, device) if with_mask else None
    out = entity_attention(q, k, v, axes, mask=mask, backend=backend)
    assert out.dtype == dtype and out.shape == q.shape and out.is_contiguous()
    grad = torch.randn_like(out)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)

    q64, k64, v64 = (t.detach().double().cpu().requires_grad_() for t in (q, k, v))
    m64 = None if mask is None else mask.cpu()
    ref = reference.entity_attention(q64, k64, v64, axes, m64)
    rq, rk, rv = torch.autograd.grad(ref, (q64, k64, v64), grad.double().cpu())
    assert_close(out, ref, dtype, "out")
    for name, got, want in (("dq", dq, rq), ("dk", dk, rk), ("dv", dv, rv)):
        assert_close(got, want, dtype, name)

    again = entity_attention(q, k, v, axes, mask=mask, backend=backend)
    assert torch.equal(out, again), "two runs on the same inputs differ"


# --- dispatch and errors -------------------------------------------------------------------------------
def _qkv(*shape, dtype=torch.float32):
    return [torch.randn(*shape, dtype=dtype) for _ in range(3)]


def test_auto_falls_back_to_reference_beyond_fused_limits():
    q, k, v = _qkv(1, 1, 3, 17, 1, 8)  # K = 17 > 16
    out = entity_attention(q, k, v, ("spatial",), backend="auto")
    torch.testing.assert_close(out, reference.entity_attention(q, k, v, ("spatial",)))


@pytest.mark.parametrize("backend", ["triton", "cpp"])
def test_named_fused_backend_refuses_beyond_limits(backend):
    q, k, v = _qkv(1, 1, 65, 2, 1, 8)  # T = 65 > 64
    with pytest.raises(NotImplementedError, match=backend):
        entity_attention(q, k, v, ("temporal",), backend=backend)


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


def test_compile_fullgraph_reference():
    q, k, v = _qkv(2, 2, 4, 3, 2, 8)
    mask = holey_mask(2, 4, 3, "cpu")
    fn = torch.compile(lambda q, k, v: entity_attention(q, k, v, AXES2, mask=mask, backend="reference"),
                       fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(fn(q, k, v), reference.entity_attention(q, k, v, AXES2, mask))
