"""Benchmark of ``entity_attention`` (design.md §2.1), stage 1 of a block: axes ``("spatial", "temporal")``.

Inputs are what a block feeds the op: ``q, k, v [P=2, B, T, K, H, Dh]`` as strided views of one fused QKV
projection ``[B, T, K, 3, P, H, Dh]``, and an entity mask ``[B, T, K]`` (``_inputs.entity_mask``: about 10%
absent tokens; every group keeps at least one present key so the SDPA baseline needs no fix-up for empty
groups).

Cases (all compute the same function):
- ``eager``: the reference (``backend="reference"``), what the package runs without fused kernels;
- ``compile``: ``torch.compile`` of the reference function (inductor, static shapes);
- ``sdpa`` (``_inputs.sdpa_entity_attention``): what a user writes with PyTorch alone: each path
  permuted to ``[B·G, H, N, Dh]`` (copies included), ``F.scaled_dot_product_attention`` with a boolean
  ``attn_mask``, permuted back and stacked to the op's contiguous ``[P, B, T, K, H, Dh]`` output;
- ``flex``: ``torch.compile``d FlexAttention over the ``T·K`` tokens of each clip, one block mask per path
  (same frame / same entity, and the key present) built once per configuration outside the timed calls,
  layout copies included (``benchmarks/_flex.py``); skipped with flex's own reason where it cannot run
  (torch 2.14 has no flex backward on CPU);
- every fused backend of ``mdn_fast.ops`` that can run here (skipped with the reason otherwise).

CPU subset (the full matrix runs on GPU, or with ``MDN_FAST_BENCH_FULL=1``): fp32 at B=16 and 256
(T=8, masked; B=256 also unmasked), bf16 at B=16 (T=8), and the long clip T=32 at B=16 fp32.
"""
from __future__ import annotations

import pytest
import torch

import mdn_fast
from mdn_fast import reference

from . import _flex, _floors
from . import _harness as H
from ._inputs import entity_mask, sdpa_entity_attention

AXES = ("spatial", "temporal")
MODES = ("fwd", "bwd", "fwd+bwd")


def _inputs(cfg: H.Config, requires_grad: bool):
    P = len(AXES)
    qkv = H.seeded_randn((cfg.B, cfg.T, cfg.K, 3, P, cfg.H, cfg.Dh), cfg.torch_dtype, cfg.device, seed=0)
    qkv.requires_grad_(requires_grad)
    q, k, v = (x.permute(3, 0, 1, 2, 4, 5) for x in qkv.unbind(3))   # [P, B, T, K, H, Dh] views
    mask = entity_mask(cfg.B, cfg.T, cfg.K, cfg.device) if cfg.masked else None
    return q, k, v, mask


def _sizes(cfg):
    return {"P": len(AXES), "B": cfg.B, "T": cfg.T, "K": cfg.K, "H": cfg.H, "Dh": cfg.Dh}


def build(cfg: H.Config) -> dict:
    scale = cfg.Dh ** -0.5
    grad = cfg.mode != "fwd"

    def case(forward_of):
        def factory():
            q, k, v, mask = _inputs(cfg, grad)
            fwd = forward_of(q, k, v, mask)
            return H.mode_runner(cfg.mode, fwd, (q, k, v))
        return factory

    compiled = H.compile_fn(reference.entity_attention)

    def flex_case():
        def factory():
            q, k, v, mask = _inputs(cfg, grad)
            # the block masks depend on the mask and sizes only: built here, once, like a user caches them
            flex = _flex.FlexEntityAttention(AXES, mask, cfg.B, cfg.T, cfg.K, cfg.device, H.compile_fn)
            return H.mode_runner(cfg.mode, lambda: flex(q, k, v, scale), (q, k, v))
        return _flex.skip_reason(cfg.device, cfg.torch_dtype, grad) or factory

    out = {
        "eager": case(lambda q, k, v, m: lambda: mdn_fast.ops.entity_attention(
            q, k, v, AXES, mask=m, scale=scale, backend="reference")),
        "compile": case(lambda q, k, v, m: lambda: compiled(q, k, v, AXES, m, scale)),
        "sdpa": case(lambda q, k, v, m: lambda: sdpa_entity_attention(q, k, v, AXES, m, scale)),
        "flex": flex_case(),
    }
    for name in SUBJECT.cases():
        if name in out:
            continue
        why = H.backend_skip_reason(name, ("entity_attention",), cfg, _sizes(cfg))
        out[name] = why or case(lambda q, k, v, m, name=name: lambda: mdn_fast.ops.entity_attention(
            q, k, v, AXES, mask=m, scale=scale, backend=name))
    return out


def floor(cfg: H.Config) -> dict:
    itemsize = torch.empty((), dtype=cfg.torch_dtype).element_size()
    return {"bytes": _floors.entity_attention_bytes(len(AXES), cfg.B, cfg.T, cfg.K, cfg.H, cfg.Dh, itemsize,
                                                    cfg.mode, cfg.masked),
            "flops": None, "items": None}


SUBJECT = H.Subject("entity_attention", ("eager", "compile", "sdpa", "flex"), build, floor)


def _cpu_keep(c: H.Config) -> bool:
    if c.dtype == "bf16":
        return c.B == 16 and c.T == 8 and c.masked
    if c.T == 32:
        return c.B == 16 and c.masked
    return c.masked or c.B == 256


CONFIGS = H.matrix(MODES, cpu_keep=_cpu_keep, unmasked=lambda c: c.B == 256 and c.T == 8)


@pytest.mark.parametrize("cfg, case", H.params(SUBJECT, CONFIGS))
def test_entity_attention(cfg, case, benchmark, bench_runner):
    bench_runner.run(SUBJECT, cfg, case, benchmark)
