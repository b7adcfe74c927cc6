"""The FlexAttention baseline of the entity_attention benchmark (benchmarks/_flex.py) computes the op:
against the reference on a small odd size, forward (a mask with absent groups: flex's empty rows must be
the op's zeros) and gradients (the benchmark's mask, whose groups are never empty). Not a timing.

Flex is compiled here (it is only a fast path compiled), ~5 s per path on 2 CPU cores; torch 2.14 has no
flex backward on CPU, so the test with gradients runs on CUDA only and skips on CPU with flex's reason."""
from __future__ import annotations

import pytest
import torch

from benchmarks import _flex
from benchmarks._inputs import entity_mask
from mdn_fast import reference

from tests._helpers import assert_matches_reference, device_params, holey_mask, packed_qkv

P, B, T, K, H, Dh = 2, 2, 5, 3, 2, 16
DTYPE = torch.float32


def _skip_unless_flex_runs(device: str, needs_grad: bool) -> None:
    why = _flex.skip_reason(device, DTYPE, needs_grad)
    if why:
        pytest.skip(why)


def _reference(q, k, v, axes, mask, scale, gout=None):
    """Reference output (and gradients into q, k, v given ``gout``) in float64 on CPU and in fp32 on the
    inputs' device, for ``assert_matches_reference``."""
    runs = []
    for dt, dev in ((torch.float64, "cpu"), (DTYPE, q.device)):
        ins = [t.detach().to(device=dev, dtype=dt).requires_grad_(gout is not None) for t in (q, k, v)]
        ref = reference.entity_attention(*ins, axes, None if mask is None else mask.to(dev), scale)
        grads = torch.autograd.grad(ref, ins, gout.to(device=dev, dtype=dt)) if gout is not None else None
        runs.append((ref, grads))
    return runs


@pytest.mark.parametrize("axes", [("spatial", "temporal"), ("temporal", "spatial")], ids="-".join)
def test_flex_forward_matches_reference_on_cpu(axes):
    _check_forward("cpu", axes, needs_grad=False)


@pytest.mark.parametrize("device", device_params())
def test_flex_matches_reference_with_gradients(device):
    """Forward with absent groups, then gradients with the benchmark's mask. Both use inputs that require
    grad, so on CUDA one compile per path serves both (the GPU check's test stage is timed)."""
    _skip_unless_flex_runs(device, needs_grad=True)
    axes = ("spatial", "temporal")
    _check_forward(device, axes, needs_grad=True)
    gen = torch.Generator().manual_seed(4)
    q, k, v = (t.requires_grad_() for t in packed_qkv(P, B, T, K, H, Dh, DTYPE, device, gen))
    mask = entity_mask(B, T, K, device)               # the benchmark's: no empty group
    scale = Dh ** -0.5
    out = _flex.flex_entity_attention(q, k, v, axes, mask, scale)
    gout = torch.randn(out.shape, generator=gen).to(device=device, dtype=DTYPE)
    grads = torch.autograd.grad(out, (q, k, v), gout)
    (ref64, g64), (ref32, g32) = _reference(q, k, v, axes, mask, scale, gout)
    assert_matches_reference(out, ref64, ref32, DTYPE, "flex out")
    for name, g, a, b in zip(("dq", "dk", "dv"), grads, g64, g32):
        assert_matches_reference(g, a, b, DTYPE, f"flex {name}")


def _check_forward(device, axes, needs_grad: bool):
    """flex forward against the reference with a mask with absent groups on both axes (flex's rows with
    no key must be the op's zeros) and a non-default scale."""
    _skip_unless_flex_runs(device, needs_grad)
    gen = torch.Generator().manual_seed(3)
    q, k, v = (t.requires_grad_(needs_grad) for t in packed_qkv(P, B, T, K, H, Dh, DTYPE, device, gen))
    mask = holey_mask(B, T, K, device, gen)
    scale = 0.7 * Dh ** -0.5                          # not the default: the scale must reach flex
    out = _flex.flex_entity_attention(q, k, v, axes, mask, scale)
    assert out.shape == q.shape and out.dtype == DTYPE and out.is_contiguous()
    (ref64, _), (ref32, _) = _reference(q, k, v, axes, mask, scale)
    assert_matches_reference(out, ref64, ref32, DTYPE, f"flex {axes} out")


def test_flex_skip_reason_names_the_cause():
    """Where flex cannot run, the benchmark case is a reason string, not a crash: with this torch, a CPU
    backward (refused by flex's own checks) must come back as a string that says so."""
    why = _flex.skip_reason("cpu", DTYPE, True)
    if why is None:
        pytest.skip(f"flex runs with gradients on CPU in torch {torch.__version__}: nothing to refuse")
    assert "flex_attention" in why and "cpu" in why and "gradients" in why
