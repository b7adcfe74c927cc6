"""Group independence of ``entity_attention`` on every backend (design.md §4).

A group is the set of tokens one query attends over: the K entities of a frame on a "spatial" path,
the T frames of an entity on a "temporal" path, per path, clip and head. Non-finite values planted in
one token's q, k or v may change the outputs and gradients of that token's groups only, and not at all
when the token is a masked key (its k and v). Each case plants NaN or inf in one token of every path
and compares everything outside those groups bit for bit (``torch.equal``) with a run on the same
inputs without the planted value: forward output and the gradients of q, k and v.

Layouts: q, k, v ``[P, B, T, K, H, Dh]``; mask ``[B, T, K]``.
"""
from __future__ import annotations

import math

import pytest
import torch

from mdn_fast.ops import entity_attention

# The Triton interpreter computes the poisoned groups with numpy, which warns on inf - inf: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

P, B, T, K, H, Dh = 2, 2, 5, 4, 2, 8
B0, T0, K0, H0 = 1, 2, 1, 1     # the planted token (b, t, k) and head

PLANTS = [  # (tensor, value, the token is a masked key)
    ("q", math.nan, False), ("q", math.inf, False),
    ("k", math.nan, False), ("k", math.inf, False),
    ("v", math.nan, False), ("v", -math.inf, False),
    ("k", math.nan, True), ("k", -math.inf, True),
    ("v", math.nan, True), ("v", math.inf, True),
]


def _inputs(dtype, device, dh=Dh):
    gen = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(P, B, T, K, H, dh, generator=gen).to(device=device, dtype=dtype) for _ in range(3))
    mask = torch.rand(B, T, K, generator=gen) > 0.25
    mask[B0, T0] = True          # the planted token's frame and track keep present keys besides it
    mask[B0, :, K0] = True
    mask[0, 1, :] = False        # an empty frame elsewhere (spatial group with no key)
    grad_out = torch.randn(P, B, T, K, H, dh, generator=gen).to(device=device, dtype=dtype)
    return q, k, v, mask.to(device), grad_out


def _run(backend, q, k, v, axes, mask, grad_out):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    try:
        out = entity_attention(q, k, v, axes, mask=mask, backend=backend)
    except NotImplementedError as e:
        pytest.skip(str(e))
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    return (out.detach(), *grads)


def _planted_groups(axes) -> torch.Tensor:
    """[P, B, T, K, H] True on the planted token's group in each path (at the planted head)."""
    region = torch.zeros(P, B, T, K, H, dtype=torch.bool)
    for p, axis in enumerate(axes):
        if axis == "spatial":
            region[p, B0, T0, :, H0] = True
        else:
            region[p, B0, :, K0, H0] = True
    return region


@pytest.mark.parametrize("tensor,value,masked", PLANTS,
                         ids=[f"{t}-{v}-{'masked' if m else 'present'}" for t, v, m in PLANTS])
@pytest.mark.parametrize("axes", [("spatial", "temporal"), ("temporal", "spatial")], ids=["st", "ts"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_non_finite_values_stay_in_their_group(backend, device, dtype, axes, tensor, value, masked):
    _check_planted(backend, device, dtype, axes, tensor, value, masked, Dh, 0)


@pytest.mark.parametrize("tensor,value,masked", PLANTS[::2],
                         ids=[f"{t}-{v}-{'masked' if m else 'present'}" for t, v, m in PLANTS[::2]])
@pytest.mark.parametrize("axes", [("spatial", "temporal"), ("temporal", "spatial")], ids=["st", "ts"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("feature", [20, 37], ids=["middle", "last"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_non_finite_values_in_head_chunks(device, feature, dtype, axes, tensor, value, masked):
    """Dh = 40: the Triton kernels walk the head dim in chunks (16 columns in fp32, 32 in fp16). The planted
    feature is in a chunk before others (its flag must survive the later chunks) or in the last, partly
    filled one."""
    _check_planted("triton", device, dtype, axes, tensor, value, masked, 40, feature)


@pytest.mark.parametrize("tensor,value,masked", PLANTS[1::2],
                         ids=[f"{t}-{v}-{'masked' if m else 'present'}" for t, v, m in PLANTS[1::2]])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_non_finite_values_stay_in_their_group_bf16(device, tensor, value, masked):
    """The Triton kernels in bf16 (its non-finite flags read bf16 bits), with the infinities (a NaN fails
    every comparison in any dtype). On the CPU through the interpreter with the test harness's bf16 fix
    (tests/ops/_triton_interp_bf16.py), skipped with the backend's reason where that is not active."""
    _check_planted("triton", device, torch.bfloat16, ("spatial", "temporal"), tensor, value, masked, Dh, 0)


def _check_planted(backend, device, dtype, axes, tensor, value, masked, dh, feature):
    q, k, v, mask, grad_out = _inputs(dtype, device, dh)
    mask[B0, T0, K0] = not masked
    clean = _run(backend, q, k, v, axes, mask, grad_out)
    planted = {"q": q, "k": k, "v": v}
    planted[tensor] = planted[tensor].clone()
    planted[tensor][:, B0, T0, K0, H0, feature] = value    # one feature of the token, every path
    dirty = _run(backend, planted["q"], planted["k"], planted["v"], axes, mask, grad_out)

    region = _planted_groups(axes).to(device)
    keep = torch.ones_like(region) if masked else ~region  # a masked key changes nothing at all
    for name, a, b in zip(("o", "dq", "dk", "dv"), clean, dirty):
        assert torch.equal(a[keep], b[keep]), (
            f"{backend}: {name} changed outside the planted groups "
            f"({int((a[keep] != b[keep]).any(-1).sum())} of {int(keep.sum())} rows differ)")
    if not masked:  # the planted value reached its own groups (the test is not vacuous)
        assert not torch.isfinite(dirty[0][region]).all(), f"{backend}: planted {value} in {tensor} had no effect"
