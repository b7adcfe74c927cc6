"""routed_merge: the reference against the equations, and every available backend against the reference.

Layout: x_st, x_ts, y ``[B, T, K, D]``; weight ``[K, 2, 2D]``; bias ``[K, 2]``; alpha ``[B, K, 2]``.
"""
import os

import pytest
import torch

from mdn_fast import reference
from mdn_fast.ops import entity_attention, routed_merge

from tests._helpers import (BACKENDS, DTYPES, assert_matches_reference, check_routed_merge, device_params, holey_mask,
                       routed_merge_inputs, skip_unless_supported)


@pytest.fixture
def poison(monkeypatch):
    monkeypatch.setenv("MDN_FAST_POISON", "1")  # unwritten output elements stay NaN and fail


def _loop_reference(x_st, x_ts, weight, bias, tau, mask):
    """The equations of design.md §1.2 written with explicit loops over clips and entities."""
    B, T, K, D = x_st.shape
    y, alpha = torch.empty_like(x_st), torch.empty(B, K, 2, dtype=x_st.dtype)
    for b in range(B):
        for k in range(K):
            frames = [t for t in range(T) if mask is None or mask[b, t, k]]
            pool = lambda x: (sum(x[b, t, k] for t in frames) / len(frames)) if frames else torch.zeros(D, dtype=x.dtype)  # noqa: E731
            z = torch.cat([pool(x_st), pool(x_ts)])
            a = torch.softmax((weight[k] @ z + bias[k]) / tau, dim=0)
            alpha[b, k] = a
            y[b, :, k] = a[0] * x_st[b, :, k] + a[1] * x_ts[b, :, k]
    return y, alpha


@pytest.mark.parametrize("with_mask", [False, True])
def test_reference_matches_loops(with_mask):
    B, T, K, D = 3, 7, 5, 12
    x_st, x_ts = torch.randn(B, T, K, D, dtype=torch.float64), torch.randn(B, T, K, D, dtype=torch.float64)
    w, b = torch.randn(K, 2, 2 * D, dtype=torch.float64), torch.randn(K, 2, dtype=torch.float64)
    mask = holey_mask(B, T, K, "cpu") if with_mask else None
    y, alpha = reference.routed_merge(x_st, x_ts, w, b, 0.7, mask)
    y2, alpha2 = _loop_reference(x_st, x_ts, w, b, 0.7, mask)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(alpha, alpha2)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(B, K, dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [3, 8], ids=["D3", "D8"])  # the C++ kernel's converted and in-place rows
def test_gradcheck_float64(backend, D):
    B, T, K = 2, 4, 3
    skip_unless_supported(backend, {"routed_merge": dict(B=B, T=T, K=K, D=D)}, "cpu", torch.float64)
    g = torch.Generator().manual_seed(3)
    args = [torch.randn(B, T, K, D, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(2)]
    args += [torch.randn(K, 2, 2 * D, dtype=torch.float64, generator=g, requires_grad=True),
             torch.randn(K, 2, dtype=torch.float64, generator=g, requires_grad=True)]
    mask = holey_mask(B, T, K, "cpu", g)
    assert torch.autograd.gradcheck(lambda *a: routed_merge(*a, tau=0.5, mask=mask, backend=backend), args)


# --- every backend against the reference (the one backend test; tests/_helpers.check_routed_merge) ------
CASES = [  # (B, T, K, D, layout): odd sizes; D = 13 is no whole number of vectors
    (2, 7, 5, 24, "packed"),
    (3, 8, 6, 32, "strided"),
    (2, 3, 3, 13, "packed"),
]


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES + [torch.float64], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}T{}K{}D{}-{}".format(*c))
@pytest.mark.parametrize("with_mask", [False, True], ids=["nomask", "holes"])
def test_backend_matches_reference(backend, dtype, case, with_mask, device, poison):
    B, T, K, D, layout = case
    check_routed_merge(backend, B, T, K, D, dtype, device, with_mask=with_mask, layout=layout)


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("backend", BACKENDS)
def test_router_in_the_paths_dtype(backend, device, poison):
    """fp16 paths with an fp16 router (the default test has an fp32 router, as under autocast): the
    router's gradients come back in fp16."""
    check_routed_merge(backend, 3, 7, 5, 24, torch.float16, device, w_dtype=torch.float16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grad_of", [("alpha",), ("y",)], ids=["alpha-only", "y-only"])
def test_gradient_through_one_result_only(backend, grad_of, poison):
    """A loss on alpha alone (or y alone): the other result's gradient is missing and counts as zero."""
    check_routed_merge(backend, 2, 5, 3, 16, torch.float32, "cpu", grad_of=grad_of)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_outputs(backend, poison):
    """Outputs of >= 4 MiB (the C++ kernel streams its stores past the caches there)."""
    if backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("~70 s in the Triton interpreter, and the size matters only to kernels with a cache policy")
    check_routed_merge(backend, 64, 8, 4, 512, torch.float32, "cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_router_gradient_is_deterministic(backend):
    B, T, K, D = 9, 3, 3, 24
    skip_unless_supported(backend, {"routed_merge": dict(B=B, T=T, K=K, D=D)}, "cpu", torch.float32)
    g = torch.Generator().manual_seed(5)
    x_st, x_ts, weight, bias = routed_merge_inputs(B, T, K, D, torch.float32, "cpu", generator=g)
    gy, ga = torch.randn(B, T, K, D, generator=g), torch.randn(B, K, 2, generator=g)
    mask = holey_mask(B, T, K, "cpu", g)
    runs = []
    for _ in range(2):
        y, alpha = routed_merge(x_st, x_ts, weight, bias, mask=mask, backend=backend)
        runs.append(torch.autograd.grad((y * gy).sum() + (alpha * ga).sum(), (weight, bias)))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_fullgraph_through_both_ops(backend):
    """entity_attention into routed_merge under torch.compile(fullgraph=True): forward and every gradient
    equal eager's. The loss weights alpha by random numbers: alpha's rows sum to 1, so a plain alpha.sum()
    would have zero gradient and leave the path through alpha unchecked."""
    P, B, T, K, H, Dh = 2, 2, 5, 3, 2, 8
    skip_unless_supported(backend, {"entity_attention": dict(P=P, B=B, T=T, K=K, H=H, Dh=Dh),
                                    "routed_merge": dict(B=B, T=T, K=K, D=H * Dh)}, "cpu", torch.float32)
    gen = torch.Generator().manual_seed(6)
    packed = torch.randn(B, T, K, P, 3, H, Dh, generator=gen, requires_grad=True)
    w = torch.randn(K, 2, 2 * H * Dh, generator=gen, requires_grad=True)
    b = torch.randn(K, 2, generator=gen, requires_grad=True)
    ga = torch.randn(B, K, 2, generator=gen)
    mask = holey_mask(B, T, K, "cpu", gen)

    def merged(packed, w, b):
        q, k, v = (packed[:, :, :, :, i].permute(3, 0, 1, 2, 4, 5) for i in range(3))
        o = entity_attention(q, k, v, ("spatial", "temporal"), mask=mask, backend=backend).flatten(-2)
        return routed_merge(o[0], o[1], w, b, mask=mask, backend=backend)

    def f(packed, w, b):
        y, alpha = merged(packed, w, b)
        return y.square().sum() + (alpha * ga).sum()

    (g_alpha,) = torch.autograd.grad((merged(packed, w, b)[1] * ga).sum(), (w,))
    assert g_alpha.abs().max() > 0, "the loss's alpha term must reach the router"
    eager = torch.autograd.grad(f(packed, w, b), (packed, w, b))
    torch._dynamo.reset()
    got = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(packed, w, b), (packed, w, b))
    for g, e in zip(got, eager):
        assert torch.equal(g, e)


def test_bad_inputs_raise_naming_the_argument():
    B, T, K, D = 2, 3, 4, 8
    x = torch.randn(B, T, K, D)
    w, b = torch.randn(K, 2, 2 * D), torch.randn(K, 2)
    with pytest.raises(ValueError, match=r"weight: expected shape \[K, 2, 2D\] = \(4, 2, 16\), got \(4, 2, 8\)"):
        routed_merge(x, x, torch.randn(K, 2, D), b)
    with pytest.raises(ValueError, match=r"bias: expected shape \[K, 2\] = \(4, 2\), got \(3, 2\)"):
        routed_merge(x, x, w, torch.randn(K - 1, 2))
    with pytest.raises(ValueError, match=r"bias: expected 2 dims \[K, 2\], got shape \(4,\)"):
        routed_merge(x, x, w, torch.randn(K))
    with pytest.raises(ValueError, match=r"x_ts: expected the same shape as x_st"):
        routed_merge(x, x[:, :2], w, b)
    with pytest.raises(TypeError, match=r"x_ts: expected the same dtype as x_st"):
        routed_merge(x, x.half(), w, b)
    with pytest.raises(ValueError, match=r"tau: expected a positive float"):
        routed_merge(x, x, w, b, tau=0.0)
    with pytest.raises(ValueError, match=r"mask: expected shape \[B, T, K\]"):
        routed_merge(x, x, w, b, mask=torch.ones(B, T, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"backend: expected one of"):
        routed_merge(x, x, w, b, backend="fast")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_accuracy_criterion_catches_a_small_error(dtype):
    """The shared criterion (tests/_helpers.assert_matches_reference) is not vacuous: the reference's own
    result passes, the same result with one element off by 1% of the largest magnitude fails."""
    B, T, K, D = 2, 5, 3, 16
    ins = routed_merge_inputs(B, T, K, D, dtype, "cpu", generator=torch.Generator().manual_seed(9))
    y64, _ = reference.routed_merge(*[t.detach().double() for t in ins], 0.7)
    y_dt, _ = reference.routed_merge(*[t.detach() for t in ins], 0.7)
    assert_matches_reference(y_dt, y64, y_dt, dtype, "y")
    wrong = y_dt.clone()
    wrong.view(-1)[7] += 0.01 * y64.abs().max().to(dtype)
    with pytest.raises(AssertionError, match="max \\|out - ref64\\|"):
        assert_matches_reference(wrong, y64, y_dt, dtype, "y")
