"""Benchmark of ``routed_merge`` (design.md §2.2): masked time-pooling of both paths, per-entity router,
tempered softmax and weighted merge.

Inputs: ``x_st, x_ts [B, T, K, D]`` (contiguous path outputs), ``weight [K, 2, 2D]``, ``bias [K, 2]`` in
the input dtype, the entity mask ``[B, T, K]``. Gradients (bwd modes) flow into x_st, x_ts, weight and
bias from a random ``dy``.

Cases: ``eager`` (the reference, ``backend="reference"``), ``compile`` (``torch.compile`` of the
reference function) and every fused backend that can run here. No SDPA: there is no attention here.

CPU subset: fp32 at B=16 and 256 (T=8), bf16 at B=16 (T=8), the long clip T=32 at B=16 fp32.
"""
from __future__ import annotations

import pytest
import torch

import mdn_fast
from mdn_fast import reference

from . import _floors
from . import _harness as H
from ._inputs import entity_mask

MODES = ("fwd", "bwd", "fwd+bwd")
TAU = 1.0


def _inputs(cfg: H.Config, requires_grad: bool):
    shape = (cfg.B, cfg.T, cfg.K, cfg.D)
    x_st = H.seeded_randn(shape, cfg.torch_dtype, cfg.device, seed=10)
    x_ts = H.seeded_randn(shape, cfg.torch_dtype, cfg.device, seed=11)
    weight = H.seeded_randn((cfg.K, 2, 2 * cfg.D), cfg.torch_dtype, cfg.device, seed=12) * 0.05
    bias = H.seeded_randn((cfg.K, 2), cfg.torch_dtype, cfg.device, seed=13)
    leaves = (x_st, x_ts, weight, bias)
    for t in leaves:
        t.requires_grad_(requires_grad)
    mask = entity_mask(cfg.B, cfg.T, cfg.K, cfg.device) if cfg.masked else None
    return leaves, mask


def build(cfg: H.Config) -> dict:
    grad = cfg.mode != "fwd"

    def case(call):
        def factory():
            leaves, mask = _inputs(cfg, grad)
            return H.mode_runner(cfg.mode, lambda: call(*leaves, mask), leaves)
        return factory

    compiled = H.compile_fn(reference.routed_merge)
    out = {
        "eager": case(lambda xs, xt, w, b, m: mdn_fast.ops.routed_merge(xs, xt, w, b, tau=TAU, mask=m,
                                                                         backend="reference")),
        "compile": case(lambda xs, xt, w, b, m: compiled(xs, xt, w, b, TAU, m)),
    }
    sizes = {"B": cfg.B, "T": cfg.T, "K": cfg.K, "D": cfg.D}
    for name in SUBJECT.cases():
        if name in out:
            continue
        why = H.backend_skip_reason(name, ("routed_merge",), cfg, sizes)
        out[name] = why or case(lambda xs, xt, w, b, m, name=name: mdn_fast.ops.routed_merge(
            xs, xt, w, b, tau=TAU, mask=m, backend=name))
    return out


def floor(cfg: H.Config) -> dict:
    itemsize = torch.empty((), dtype=cfg.torch_dtype).element_size()
    return {"bytes": _floors.routed_merge_bytes(cfg.B, cfg.T, cfg.K, cfg.D, itemsize, cfg.mode, cfg.masked),
            "flops": None, "items": None}


SUBJECT = H.Subject("routed_merge", ("eager", "compile"), build, floor)


def _cpu_keep(c: H.Config) -> bool:
    if c.dtype == "bf16" or c.T == 32:
        return c.B == 16 and (c.dtype == "fp32" or c.T == 8)
    return True


CONFIGS = H.matrix(MODES, cpu_keep=_cpu_keep)


@pytest.mark.parametrize("cfg, case", H.params(SUBJECT, CONFIGS))
def test_routed_merge(cfg, case, benchmark, bench_runner):
    bench_runner.run(SUBJECT, cfg, case, benchmark)
