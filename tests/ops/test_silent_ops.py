"""Issue 20 (round 2), the op parts: nothing silent, nothing lost.

- Higher-order gradients through the fused backends are the reference's (a ``create_graph=True`` backward
  goes through the reference math, ``ops._autograd``), never torch's silent 0; the ordinary backward
  still runs the fused kernel. torch.func's differentiating transforms and forward-mode AD, which the
  fused ops' autograd cannot serve, are refused by name on a named fused backend and run the reference on
  ``"auto"``.
- ``scale`` and ``tau`` are refused, named with their value and bound, where they would make finite
  inputs give non-finite outputs (``mdn_fast._limits.MAX_SCALE`` / ``MIN_TAU``); at the bounds every
  backend is finite and agrees with the reference.
- ``scale`` / ``tau`` take any real number (NumPy scalars included) and refuse bools and tensors.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mdn_fast import reference
from mdn_fast._limits import MAX_SCALE, MIN_TAU
from mdn_fast.nn.dual_path_block import DualPathBlock
from mdn_fast.nn.micro_dualnet import MicroDualNet
from mdn_fast.ops import entity_attention, routed_merge

from tests._helpers import assert_matches_reference, holey_mask, skip_unless_supported
from tests._model_helpers import body25_keypoints
from tests._paths import REPO

FUSED = ["cpp", "triton"]
AXES2 = ("spatial", "temporal")
EA = dict(P=2, B=2, T=3, K=4, H=1, Dh=4)
RM = dict(B=2, T=3, K=4, D=5)
_NOT_REGISTERED = "autograd kernel was not registered"


def _dtype(backend):
    """float64 where the backend runs it (cpp), else float32 (Triton's kernels have no float64)."""
    return torch.float64 if backend in ("cpp", "reference") else torch.float32


def _ea_inputs(dtype, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    P, B, T, K, H, Dh = EA.values()
    q, k, v = (torch.randn(P, B, T, K, H, Dh, generator=g, dtype=torch.float64).to(dtype) for _ in range(3))
    mask = holey_mask(B, T, K, "cpu", g)
    return [t.requires_grad_(requires_grad) for t in (q, k, v)], mask


def _rm_inputs(dtype, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    B, T, K, D = RM.values()
    x_st, x_ts = (torch.randn(B, T, K, D, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    weight = torch.randn(K, 2, 2 * D, generator=g, dtype=torch.float64).to(dtype)
    bias = torch.randn(K, 2, generator=g, dtype=torch.float64).to(dtype)
    mask = holey_mask(B, T, K, "cpu", g)
    return [t.requires_grad_(requires_grad) for t in (x_st, x_ts, weight, bias)], mask


def _skip(backend, op, dtype):
    skip_unless_supported(backend, {op: EA if op == "entity_attention" else RM}, "cpu", dtype)


def _second_order(op, backend, ins, mask):
    """A gradient penalty: the first-order gradients of a loss (taken with ``create_graph=True``), their
    weighted squares summed, and that penalty's gradient with respect to every input."""
    g = torch.Generator().manual_seed(1)
    if op == "entity_attention":
        outs = (entity_attention(*ins, AXES2, mask=mask, backend=backend),)
    else:
        outs = routed_merge(*ins, tau=0.7, mask=mask, backend=backend)
    loss = sum((o.double() * torch.randn(o.shape, generator=g, dtype=torch.float64)).sum()
               + (o.double() ** 2).sum() for o in outs)   # grad_out depends on the output (requires grad)
    first = torch.autograd.grad(loss, ins, create_graph=True)
    penalty = sum((f.double() ** 2 * torch.rand(f.shape, generator=g, dtype=torch.float64)).sum() for f in first)
    return first, torch.autograd.grad(penalty, ins)


# ------------------------------------------------------------------------------------------ item 1
@pytest.mark.parametrize("op", ["entity_attention", "routed_merge"])
@pytest.mark.parametrize("backend", FUSED)
def test_second_order_gradients_are_the_references(op, backend):
    """Double backward through a fused backend equals the reference's (it was 0, with torch's "autograd
    kernel was not registered" warning the only sign), and no such warning is given."""
    dtype = _dtype(backend)
    _skip(backend, op, dtype)
    make = _ea_inputs if op == "entity_attention" else _rm_inputs
    ins, mask = make(dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = _second_order(op, backend, ins, mask)
    assert not [w for w in caught if _NOT_REGISTERED in str(w.message)], "torch backpropagated through a bwd op"
    ref_ins, _ = make(torch.float64)
    ref_first, ref_second = _second_order(op, "reference", ref_ins, mask)
    f32_ins, _ = make(dtype)
    f32_first, f32_second = _second_order(op, "reference", f32_ins, mask)
    for name, got, want, own in zip(("first",) * len(first) + ("second",) * len(second),
                                    (*first, *second), (*ref_first, *ref_second), (*f32_first, *f32_second)):
        assert want.abs().max() > 0
        assert_matches_reference(got, want, own, dtype, f"{backend} {op} {name}-order gradient")


@pytest.mark.parametrize("backend", FUSED)
def test_gradgradcheck(backend):
    """torch's own second-order check (numerical vs analytical) through the fused ops, float64 (cpp) only:
    Triton has no float64 kernels."""
    _skip(backend, "entity_attention", torch.float64)
    _skip(backend, "routed_merge", torch.float64)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 2, 3, 1, 2, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    mask = torch.tensor([[[True, False, True], [True, True, True]], [[False, False, False], [True, True, False]]])
    assert torch.autograd.gradgradcheck(
        lambda q, k, v: entity_attention(q, k, v, AXES2, mask=mask, backend=backend), (q, k, v), fast_mode=True)
    x_st, x_ts = (torch.randn(2, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    w = torch.randn(3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda *a: routed_merge(*a, tau=0.7, mask=mask, backend=backend), (x_st, x_ts, w, b), fast_mode=True)


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("op", ["entity_attention", "routed_merge"])
@pytest.mark.parametrize("backend", FUSED)
def test_first_order_backward_is_the_fused_kernel(op, backend):
    """The ordinary backward (``create_graph=False``) still runs the backend's backward op, and only a
    ``create_graph=True`` one takes the reference path."""
    dtype = torch.float32
    _skip(backend, op, dtype)
    ins, mask = (_ea_inputs if op == "entity_attention" else _rm_inputs)(dtype)
    bwd = {"cpp": "mdn_fast.", "triton": "mdn_fast_triton."}[backend] + op + "_bwd."  # str(OpOverload)

    def run(create_graph):
        if op == "entity_attention":
            outs = (entity_attention(*ins, AXES2, mask=mask, backend=backend),)
        else:
            outs = routed_merge(*ins, tau=0.7, mask=mask, backend=backend)
        loss = sum(o.sum() for o in outs)
        with _OpLog() as log:
            torch.autograd.grad(loss, ins, create_graph=create_graph)
        return [n for n in log.names if bwd in n]

    assert run(False), f"the fused backward op {bwd} did not run"
    assert not run(True), f"{bwd} ran in a create_graph=True backward (its result would be a constant)"


def _pose_model(backend):
    torch.manual_seed(3)
    return MicroDualNet(num_classes=5, num_body_classes=3, modality="pose", num_frames=4, dim=16, heads=2,
                        depth=1, backend=backend).double()


def _penalty_grads(model, kp, labels):
    """A WGAN-GP-style gradient penalty: the norm of the loss's gradient w.r.t. the input keypoints'
    coordinates, differentiated w.r.t. every weight."""
    xy = kp[..., :2].clone().requires_grad_()
    out = model(keypoints=torch.cat([xy, kp[..., 2:]], dim=-1))
    loss = torch.nn.functional.cross_entropy(out.logits, labels)
    (g,) = torch.autograd.grad(loss, xy, create_graph=True)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad((g ** 2).sum(), params, allow_unused=True)


@pytest.mark.parametrize("backend", ["cpp"])
def test_gradient_penalty_through_micro_dualnet(backend):
    """The issue's case: a gradient penalty through a pose MicroDualNet on a fused backend gives the
    reference backend's weight gradients (float64: the C++ kernels run it)."""
    skip_unless_supported(backend, {"entity_attention": dict(P=2, B=3, T=4, K=6, H=2, Dh=8),
                                    "routed_merge": dict(B=3, T=4, K=6, D=16)}, "cpu", torch.float64)
    fast, ref = _pose_model(backend), _pose_model("reference")
    ref.load_state_dict(fast.state_dict())
    kp = body25_keypoints(3, 4, 48, torch.Generator().manual_seed(0), drop=0.2).double()
    labels = torch.tensor([0, 2, 4])
    got, want = _penalty_grads(fast, kp, labels), _penalty_grads(ref, kp, labels)
    checked = 0
    for (name, _), g, w in zip(fast.named_parameters(), got, want):
        assert (g is None) == (w is None), name
        if w is not None and w.abs().max() > 0:
            torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9 * w.abs().max().item(), msg=name)
            checked += 1
    assert checked > 10


def _ea_sum(backend, k, v, mask):
    return lambda q: entity_attention(q, k, v, AXES2, mask=mask, backend=backend).sum()


_TRANSFORM_MSG = r"backend='(cpp|triton)' cannot run entity_attention here: a differentiating torch\.func transform"


@pytest.mark.parametrize("transform", ["grad", "jacrev", "jacfwd", "hessian"])
@pytest.mark.parametrize("backend", FUSED)
def test_torch_func_transforms_refused_by_name_on_fused_backends(backend, transform):
    """torch.func's differentiating transforms cannot run the fused ops' registered autograd: a named
    fused backend refuses them by name (was torch's generic "must override the setup_context
    staticmethod"), pointing at 'auto' / 'reference'."""
    dtype = torch.float32
    _skip(backend, "entity_attention", dtype)
    (q, k, v), mask = _ea_inputs(dtype, requires_grad=False)
    fn = getattr(torch.func, transform)
    with pytest.raises(NotImplementedError, match=_TRANSFORM_MSG + r".*Use backend='auto' or 'reference'"):
        fn(_ea_sum(backend, k, v, mask))(q)
    x_st, x_ts, w, b = _rm_inputs(dtype, requires_grad=False)[0]
    with pytest.raises(NotImplementedError, match=r"backend='(cpp|triton)' cannot run routed_merge here"):
        fn(lambda x: routed_merge(x, x_ts, w, b, backend=backend)[0].sum())(x_st)


@pytest.mark.parametrize("transform", ["grad", "jacrev", "jacfwd"])
def test_torch_func_transforms_on_auto_are_the_references(transform):
    """On ``"auto"`` (the model's default) torch.func's transforms run the reference: the reference's values."""
    (q, k, v), mask = _ea_inputs(torch.float64, requires_grad=False)
    fn = getattr(torch.func, transform)
    torch.testing.assert_close(fn(_ea_sum("auto", k, v, mask))(q), fn(_ea_sum("reference", k, v, mask))(q))
    x_st, x_ts, w, b = _rm_inputs(torch.float64, requires_grad=False)[0]
    got, want = (fn(lambda x, be=be: routed_merge(x, x_ts, w, b, tau=0.7, backend=be)[1].sum())(x_st)
                 for be in ("auto", "reference"))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", FUSED)
def test_vmap_alone_still_runs_the_fused_backend(backend):
    """vmap differentiates nothing: a fused backend still runs under it (torch loops over the samples)."""
    dtype = torch.float32
    _skip(backend, "entity_attention", dtype)
    (q, k, v), mask = _ea_inputs(dtype, requires_grad=False)
    qs = torch.stack([q, 2 * q])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "no batching rule, falling back to a loop" warning
        got = torch.func.vmap(lambda x: entity_attention(x, k, v, AXES2, mask=mask, backend=backend))(qs)
    want = torch.stack([reference.entity_attention(x.double(), k.double(), v.double(), AXES2, mask) for x in qs])
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", FUSED + ["auto"])
def test_forward_mode_ad_is_never_dropped(backend):
    """A forward-mode tangent through a fused op was dropped without a word (tangent None): a named fused
    backend refuses it by name, ``"auto"`` gives the reference's tangent."""
    dtype = torch.float64 if backend != "triton" else torch.float32
    if backend != "auto":
        _skip(backend, "entity_attention", dtype)
    import torch.autograd.forward_ad as fwAD
    (q, k, v), mask = _ea_inputs(dtype, requires_grad=False)
    tangent = torch.randn_like(q)
    with fwAD.dual_level():
        want = fwAD.unpack_dual(entity_attention(fwAD.make_dual(q, tangent), k, v, AXES2, mask=mask,
                                                 backend="reference")).tangent
        if backend == "auto":
            got = fwAD.unpack_dual(entity_attention(fwAD.make_dual(q, tangent), k, v, AXES2, mask=mask,
                                                    backend=backend)).tangent
            torch.testing.assert_close(got, want)
        else:
            with pytest.raises(NotImplementedError, match=r"forward-mode AD tangent"):
                entity_attention(fwAD.make_dual(q, tangent), k, v, AXES2, mask=mask, backend=backend)
        # a dual level with no tangent on the op's inputs does not count
        out = entity_attention(q, k, v, AXES2, mask=mask, backend="cpp" if backend == "auto" else backend)
        assert fwAD.unpack_dual(out).tangent is None


# ------------------------------------------------------------------------------------------ item 6
BAD_SCALES = [math.inf, -math.inf, math.nan, 1e38, MAX_SCALE * 1.001, 0.0, -1.0, 10 ** 400]


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else "10**400"
BAD_TAUS = [1e-45, MIN_TAU * 0.999, 0.0, -1.0, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("scale", BAD_SCALES, ids=_short)
def test_scale_outside_bounds_refused_naming_it(scale):
    """scale = inf / 1e38 gave NaN (different elements per backend): refused, naming the argument, the
    value and the bound, before any backend is chosen."""
    (q, k, v), _ = _ea_inputs(torch.float32, requires_grad=False)
    msg = rf"scale: expected a positive float, finite and <= {MAX_SCALE:g} \(mdn_fast._limits.MAX_SCALE\).*got "
    for backend in ("reference", "cpp", "triton", "auto"):
        with pytest.raises(ValueError, match=msg + re.escape(repr(scale))):
            entity_attention(q, k, v, AXES2, scale=scale, backend=backend)


@pytest.mark.parametrize("tau", BAD_TAUS, ids=_short)
def test_tau_outside_bounds_refused_naming_it(tau):
    """tau = 1e-45 gave NaN (1 / tau is inf in float32): refused by the op and by the model's constructors."""
    (x_st, x_ts, w, b), _ = _rm_inputs(torch.float32, requires_grad=False)
    msg = rf"tau: expected a positive float \(softmax temperature\), finite and >= {MIN_TAU:g}.*got "
    for backend in ("reference", "cpp", "triton", "auto"):
        with pytest.raises(ValueError, match=msg + re.escape(repr(tau))):
            routed_merge(x_st, x_ts, w, b, tau=tau, backend=backend)
    with pytest.raises(ValueError, match=msg):
        DualPathBlock(16, 2, tau=tau, num_entities=4)
    with pytest.raises(ValueError, match=msg):
        MicroDualNet(num_classes=5, modality="pose", num_frames=4, dim=16, heads=2, tau=tau)


def test_defaults_lie_inside_the_bounds():
    from mdn_fast.ops._checks import check_scale, check_tau
    for Dh in (1, 4, 32, 128):
        assert 0 < check_scale(None, Dh) <= MAX_SCALE
    assert check_tau(1.0) == 1.0
    assert DualPathBlock(16, 2, num_entities=4).tau == 1.0
    assert MicroDualNet(num_classes=5, modality="pose", num_frames=4, dim=16, heads=2).config["tau"] == 1.0


_BACKENDS_CPU = ["reference", "cpp", "triton"]


@pytest.mark.parametrize("scale", [MAX_SCALE, 1e-30], ids=["max_scale", "tiny_scale"])
@pytest.mark.parametrize("backend", _BACKENDS_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_every_backend_finite_and_same_at_the_scale_bounds(backend, dtype, scale):
    """At the bounds every backend's output and gradients are finite and agree with the reference."""
    _skip(backend, "entity_attention", dtype)
    (q, k, v), mask = _ea_inputs(dtype)
    out = entity_attention(q, k, v, AXES2, mask=mask, scale=scale, backend=backend)
    gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    grads = torch.autograd.grad(out, (q, k, v), gout)

    def ref(dt):
        ins = [t.detach().to(dt).requires_grad_() for t in (q, k, v)]
        o = reference.entity_attention(*ins, AXES2, mask, scale)
        return (o, *torch.autograd.grad(o, ins, gout.to(dt)))

    for name, got, r64, rdt in zip(("out", "dq", "dk", "dv"), (out, *grads), ref(torch.float64), ref(dtype)):
        assert torch.isfinite(got).all(), f"{backend} {name}: non-finite at scale={scale}"
        assert_matches_reference(got, r64, rdt, dtype, f"{backend} {name} at scale={scale}")


@pytest.mark.parametrize("tau", [MIN_TAU, 1e30], ids=["min_tau", "huge_tau"])
@pytest.mark.parametrize("backend", _BACKENDS_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_every_backend_finite_and_same_at_the_tau_bounds(backend, dtype, tau):
    _skip(backend, "routed_merge", dtype)
    ins, mask = _rm_inputs(dtype)
    ins[2:] = [t.detach().float().requires_grad_() for t in ins[2:]]  # the router in float32, as the model's
    y, alpha = routed_merge(*ins, tau=tau, mask=mask, backend=backend)
    g = torch.Generator().manual_seed(2)
    gy, ga = torch.randn(y.shape, generator=g).to(dtype), torch.randn(alpha.shape, generator=g)
    grads = torch.autograd.grad((y, alpha), ins, (gy, ga))

    def ref(in64):
        r = [t.detach().to(torch.float64 if in64 else t.dtype).requires_grad_() for t in ins]
        yy, aa = reference.routed_merge(*r, tau, mask)
        return (yy, aa, *torch.autograd.grad((yy, aa), r, (gy.to(yy.dtype), ga.to(aa.dtype))))

    names = ("y", "alpha", "dx_st", "dx_ts", "dweight", "dbias")
    for name, got, r64, rdt in zip(names, (y, alpha, *grads), ref(True), ref(False)):
        assert torch.isfinite(got).all(), f"{backend} {name}: non-finite at tau={tau}"
        assert_matches_reference(got, r64, rdt, dtype, f"{backend} {name} at tau={tau}")


# ------------------------------------------------------------------------------------------ item 10
@pytest.mark.parametrize("value", [np.float32(0.5), np.float64(0.5), np.float16(0.5), np.int64(1), 1, 0.5],
                         ids=lambda v: f"{type(v).__name__}")
def test_scale_and_tau_take_any_real_number(value):
    """np.float32 was refused while np.float64 (a float subclass) was taken: every real number is."""
    (q, k, v), mask = _ea_inputs(torch.float32, requires_grad=False)
    (x_st, x_ts, w, b), _ = _rm_inputs(torch.float32, requires_grad=False)
    for backend in ("reference", "cpp"):
        if backend == "cpp":
            _skip(backend, "entity_attention", torch.float32)
        got = entity_attention(q, k, v, AXES2, mask=mask, scale=value, backend=backend)
        assert torch.equal(got, entity_attention(q, k, v, AXES2, mask=mask, scale=float(value), backend=backend))
        got = routed_merge(x_st, x_ts, w, b, tau=value, mask=mask, backend=backend)
        want = routed_merge(x_st, x_ts, w, b, tau=float(value), mask=mask, backend=backend)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert DualPathBlock(16, 2, tau=value, num_entities=4).tau == float(value)
    assert type(DualPathBlock(16, 2, tau=value, num_entities=4).tau) is float


@pytest.mark.parametrize("value", [True, False, np.bool_(True), torch.tensor(0.5), "0.5", 1j],
                         ids=["True", "False", "np.bool_", "tensor", "str", "complex"])
def test_scale_and_tau_refuse_bools_and_non_numbers_by_name(value):
    """``scale=True`` meant 1.0 without a word: a bool (and a tensor, a string, a complex) is refused,
    naming the argument."""
    (q, k, v), _ = _ea_inputs(torch.float32, requires_grad=False)
    (x_st, x_ts, w, b), _ = _rm_inputs(torch.float32, requires_grad=False)
    with pytest.raises(TypeError, match=r"^scale: expected a positive float.*got "):
        entity_attention(q, k, v, AXES2, scale=value)
    with pytest.raises(TypeError, match=r"^tau: expected a positive float.*got "):
        routed_merge(x_st, x_ts, w, b, tau=value)
    with pytest.raises(TypeError, match=r"^tau: expected"):
        MicroDualNet(num_classes=5, modality="pose", num_frames=4, dim=16, heads=2, tau=value)


def test_readme_ops_snippet_gives_every_shape():
    """The README's "ops on their own" snippet names the shapes of mask, weight and bias."""
    text = (REPO / "README.md").read_text()
    snippet = text.split("The ops on their own", 1)[1].split("```", 2)[1]
    for shape in ("mask [B, T, K] bool", "weight [K, 2, 2D]", "bias [K, 2]", "x_st, x_ts [B, T, K, D]"):
        assert shape in snippet, f"README ops snippet lacks {shape!r}"
