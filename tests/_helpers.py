"""Helpers shared by the op tests: fresh random inputs, masks with holes, the accuracy criterion, and the
one backend-against-reference check per op that every backend's tests run (tests/ops/test_entity_attention.py
and tests/ops/test_routed_merge.py parametrise it over backends, devices and dtypes)."""
from __future__ import annotations

import pytest
import torch

from mdn_fast import reference
from mdn_fast._limits import REF_ERR_FACTOR, REF_ERR_FLOOR, REL_TOL
from mdn_fast.ops import BACKENDS, entity_attention, routed_merge, unsupported_reason

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64; NaN anywhere gives inf (NaN never passes)."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def assert_close(out, ref, dtype, what=""):
    """Fixed relative tolerance ``REL_TOL[dtype]`` (for results with no low-precision reference run)."""
    err = rel_err(out, ref)
    tol = REL_TOL[dtype]
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e} ({dtype})"


def assert_matches_reference(out, ref64, ref_dt, dtype, what=""):
    """Flash-attention's criterion (``mdn_fast._limits.REF_ERR_FACTOR``): ``out`` may be at most a few
    times further from the float64 reference ``ref64`` than the reference run in ``dtype`` (``ref_dt``)
    is, plus a small floor. NaN or inf in ``out`` always fails."""
    assert out.shape == ref64.shape, f"{what}: shape {tuple(out.shape)} != reference {tuple(ref64.shape)}"
    out, ref64, ref_dt = (t.detach().double().cpu() for t in (out, ref64, ref_dt))
    assert torch.isfinite(out).all(), f"{what}: non-finite values (a NaN-poisoned element never written?)"
    err = (out - ref64).abs().max().item()
    own = (ref_dt - ref64).abs().max().item()
    floor = REF_ERR_FLOOR[dtype] * ref64.abs().max().item()
    bound = REF_ERR_FACTOR * own + floor
    assert err <= bound, (f"{what}: max |out - ref64| = {err:.3e} > {REF_ERR_FACTOR} * {own:.3e} "
                          f"(the {dtype} reference's own error) + {floor:.1e} ({dtype})")


def packed_qkv(P, B, T, K, H, Dh, dtype, device, generator=None):
    """Non-contiguous q, k, v ``[P, B, T, K, H, Dh]``: views of one packed ``[B, T, K, P, 3, H, Dh]``
    tensor, as a fused QKV projection produces them."""
    packed = torch.randn(B, T, K, P, 3, H, Dh, generator=generator).to(device=device, dtype=dtype)
    q, k, v = (packed[:, :, :, :, i].permute(3, 0, 1, 2, 4, 5) for i in range(3))
    assert not q.is_contiguous()
    return q, k, v


def strided_feature_qkv(P, B, T, K, H, Dh, dtype, device, generator=None):
    """q, k, v ``[P, B, T, K, H, Dh]`` whose feature dim is not the innermost one (stride(-1) != 1)."""
    base = torch.randn(3, P, B, T, K, Dh, H, generator=generator).to(device=device, dtype=dtype)
    q, k, v = (base[i].transpose(-1, -2) for i in range(3))
    assert q.stride(-1) != 1
    return q, k, v


def holey_mask(B, T, K, device, generator=None):
    """Random key mask with an entity absent from every frame of clip 0 and an empty frame in the last
    clip (whole groups with no present key, for both axes)."""
    mask = torch.rand(B, T, K, generator=generator) > 0.3
    mask[0, :, K // 2] = False          # an absent entity track: temporal group with no key
    mask[-1, T // 2, :] = False          # an empty frame: spatial group with no key
    return mask.to(device)


def skip_unless_supported(backend: str, ops_sizes: dict, device, dtype: torch.dtype) -> None:
    """Skip the test when ``backend`` cannot run one of ``{op: sizes}`` here."""
    for op, sizes in ops_sizes.items():
        why = unsupported_reason(backend, op, device, dtype, sizes)
        if why:
            pytest.skip(f"{backend} cannot run {op}: {why}")


def device_params():
    return [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


# ------------------------------------------------------------------------------------------ the checks
def check_entity_attention(backend, P, B, T, K, H, Dh, axes, dtype, device, *, with_mask=True,
                           layout="packed", seed=0):
    """``entity_attention`` on ``backend`` against the reference: output and dq, dk, dv, on fresh random
    non-contiguous inputs (``layout``: ``"packed"`` QKV views or ``"strided_features"``), with a mask with
    absent groups. Also: dtype / shape / contiguity of the output, and two runs are bit-identical.
    Run with ``MDN_FAST_POISON=1`` so an element a kernel never writes is NaN and fails.
    Returns ``(out, (dq, dk, dv), mask)``."""
    skip_unless_supported(backend, {"entity_attention": dict(P=P, B=B, T=T, K=K, H=H, Dh=Dh)}, device, dtype)
    gen = torch.Generator().manual_seed(seed)
    make = {"packed": packed_qkv, "strided_features": strided_feature_qkv}[layout]
    q, k, v = (t.requires_grad_() for t in make(P, B, T, K, H, Dh, dtype, device, gen))
    mask = holey_mask(B, T, K, device, gen) if with_mask else None
    out = entity_attention(q, k, v, axes, mask=mask, backend=backend)
    assert out.dtype == dtype and out.shape == q.shape and out.is_contiguous()
    gout = torch.randn(out.shape, generator=gen).to(device=device, dtype=dtype)
    grads = torch.autograd.grad(out, (q, k, v), gout)

    def run_reference(dt, dev):
        ins = [t.detach().to(device=dev, dtype=dt).requires_grad_() for t in (q, k, v)]
        m = None if mask is None else mask.to(dev)
        ref = reference.entity_attention(*ins, axes, m)
        return ref, torch.autograd.grad(ref, ins, gout.to(device=dev, dtype=dt))

    ref64, grads64 = run_reference(torch.float64, "cpu")
    ref_dt, grads_dt = run_reference(dtype, device)
    assert_matches_reference(out, ref64, ref_dt, dtype, f"{backend} out")
    for name, g, g64, gdt in zip(("dq", "dk", "dv"), grads, grads64, grads_dt):
        assert g.dtype == dtype, f"{name}: dtype {g.dtype}, expected {dtype}"
        assert_matches_reference(g, g64, gdt, dtype, f"{backend} {name}")

    again = entity_attention(q, k, v, axes, mask=mask, backend=backend)
    assert torch.equal(out, again), "two runs on the same inputs differ"
    return out, grads, mask


def routed_merge_inputs(B, T, K, D, dtype, device, *, layout="packed", w_dtype=torch.float32, generator=None):
    """Fresh random ``(x_st, x_ts, weight, bias)``, leaves requiring grad. ``layout``: ``"packed"``: both
    paths are views of one ``[B, T, K, 2, D]`` buffer (a fused producer); ``"strided"``: x_st a strided
    slice along D, x_ts a transposed view. The router is plain ``randn`` (no scaling to suit a tolerance:
    the accuracy criterion follows the conditioning)."""
    g = generator
    if layout == "packed":
        both = torch.randn(B, T, K, 2, D, generator=g).to(device=device, dtype=dtype)
        x_st, x_ts = both[..., 0, :], both[..., 1, :]
    else:
        x_st = torch.randn(B, T, K, 2 * D, generator=g).to(device=device, dtype=dtype)[..., ::2]
        x_ts = torch.randn(B, K, T, D, generator=g).to(device=device, dtype=dtype).transpose(1, 2)
    assert not x_st.is_contiguous() and not x_ts.is_contiguous()
    weight = torch.randn(K, 2, 2 * D, generator=g).to(device=device, dtype=w_dtype)
    bias = torch.randn(K, 2, generator=g).to(device=device, dtype=w_dtype)
    return [t.requires_grad_() for t in (x_st, x_ts, weight, bias)]


def check_routed_merge(backend, B, T, K, D, dtype, device, *, with_mask=True, layout="packed",
                       w_dtype=torch.float32, tau=0.7, seed=0, grad_of=("y", "alpha")):
    """``routed_merge`` on ``backend`` against the reference: y, alpha and the gradients of x_st, x_ts,
    weight, bias from a random loss on ``grad_of`` (y, alpha or both), on fresh random non-contiguous
    inputs with a mask with absent groups. Also: dtypes, shapes, contiguity, two runs bit-identical.
    Returns ``(y, alpha, grads)``."""
    skip_unless_supported(backend, {"routed_merge": dict(B=B, T=T, K=K, D=D)}, device, dtype)
    gen = torch.Generator().manual_seed(seed)
    ins = routed_merge_inputs(B, T, K, D, dtype, device, layout=layout, w_dtype=w_dtype, generator=gen)
    mask = holey_mask(B, T, K, device, gen) if with_mask else None
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    y, alpha = routed_merge(*ins, tau=tau, mask=mask, backend=backend)
    assert y.dtype == dtype and y.shape == (B, T, K, D) and y.is_contiguous()
    assert alpha.dtype == acc and alpha.shape == (B, K, 2)
    gy = torch.randn(y.shape, generator=gen).to(device=device, dtype=dtype)
    ga = torch.randn(alpha.shape, generator=gen).to(device=device, dtype=acc)

    def seeds(outs, g_y, g_a, inputs):  # torch.autograd.grad's (outputs, inputs, grad_outputs)
        pairs = {"y": (outs[0], g_y), "alpha": (outs[1], g_a)}
        return [pairs[n][0] for n in grad_of], inputs, [pairs[n][1] for n in grad_of]

    grads = torch.autograd.grad(*seeds((y, alpha), gy, ga, ins))

    def run_reference(in_float64, dev):
        """The reference with every input in float64, or in the inputs' own dtypes."""
        r_ins = [t.detach().to(device=dev, dtype=torch.float64 if in_float64 else t.dtype).requires_grad_()
                 for t in ins]
        m = None if mask is None else mask.to(dev)
        outs = reference.routed_merge(*r_ins, tau, m)
        return outs, torch.autograd.grad(*seeds(outs, gy.to(dev, outs[0].dtype), ga.to(dev, outs[1].dtype), r_ins))

    (y64, a64), grads64 = run_reference(True, "cpu")
    (y_dt, a_dt), grads_dt = run_reference(False, device)
    assert_matches_reference(y, y64, y_dt, dtype, f"{backend} y")
    assert_matches_reference(alpha, a64, a_dt, dtype, f"{backend} alpha")
    for name, g, t, g64, gdt in zip(("dx_st", "dx_ts", "dweight", "dbias"), grads, ins, grads64, grads_dt):
        assert g.dtype == t.dtype, f"{name}: dtype {g.dtype}, expected that of its input {t.dtype}"
        assert_matches_reference(g, g64, gdt, dtype, f"{backend} {name}")

    y2, alpha2 = routed_merge(*ins, tau=tau, mask=mask, backend=backend)
    assert torch.equal(y, y2) and torch.equal(alpha, alpha2), "two runs on the same inputs differ"
    return y, alpha, grads


__all__ = ["BACKENDS", "DTYPES", "rel_err", "assert_close", "assert_matches_reference", "packed_qkv",
           "strided_feature_qkv", "holey_mask", "skip_unless_supported", "device_params",
           "check_entity_attention", "routed_merge_inputs", "check_routed_merge"]
