"""Benchmark of one ``DualPathBlock`` (design.md §1.2): forward, backward, forward+backward.

Input ``x [B, T, K, D]`` and the entity mask ``[B, T, K]``; the block and its input are cast to the
benchmark dtype (pure fp32 or pure bf16). Every case uses the same weights. Backward modes
differentiate ``y`` (with a random ``dy``) into ``x`` and every parameter.

Cases: ``eager`` (``DualPathBlock(backend="reference")``), ``compile`` (``torch.compile`` of that
module) and ``DualPathBlock(backend=name)`` for every fused backend that runs both ops here; under CUDA
graphs (``torch.compile(mode="reduce-overhead")``, GPU only, fwd and fwd+bwd): ``compile-ro`` (the
reference block) and ``<backend>-ro`` (the fused block), each call a new CUDA-graph step
(``_harness.cudagraph_steps``). Their peak memory is not comparable with the other cases': a CUDA graph's
memory pool is allocated when it is recorded, before the measured call.

CPU subset (the block is GEMM-heavy: about 7 MFLOP per token forward): fp32 B=16 T=8 in all modes,
fp32 B=256 T=8 forward only, bf16 B=16 T=8 forward, fp32 B=16 T=32 forward+backward.
"""
from __future__ import annotations

import pytest
import torch

from . import _floors
from . import _harness as H
from ._inputs import entity_mask

MODES = ("fwd", "bwd", "fwd+bwd")


def _block_module():
    try:
        from mdn_fast.nn.dual_path_block import DualPathBlock
        return DualPathBlock
    except Exception as e:  # written by another issue; the benchmark waits for it
        return f"mdn_fast.nn.dual_path_block.DualPathBlock not importable yet ({type(e).__name__}: {e})"


def _make_block(cfg: H.Config, backend: str):
    DualPathBlock = _block_module()
    torch.manual_seed(0)   # same weights in every case
    blk = DualPathBlock(cfg.D, cfg.H, tau=1.0, backend=backend, num_entities=cfg.K)
    return blk.to(device=cfg.device, dtype=cfg.torch_dtype)


def build(cfg: H.Config) -> dict:
    Block = _block_module()
    if isinstance(Block, str):
        return {name: Block for name in SUBJECT.cases()}
    grad = cfg.mode != "fwd"

    def case(backend: str, compiled: bool = False, ro: bool = False):
        def factory():
            blk = _make_block(cfg, backend)
            blk.train(grad)
            fwd_module = H.compile_ro_fn(blk) if ro else H.compile_fn(blk) if compiled else blk
            x = H.seeded_randn((cfg.B, cfg.T, cfg.K, cfg.D), cfg.torch_dtype, cfg.device, seed=20)
            x.requires_grad_(grad)
            mask = entity_mask(cfg.B, cfg.T, cfg.K, cfg.device) if cfg.masked else None
            params = [p for p in blk.parameters() if p.requires_grad]
            skips = H.cudagraph_skips()
            run = H.mode_runner(cfg.mode, lambda: fwd_module(x, mask).y, [x, *params])
            return H.cudagraph_steps(run, skips) if ro else run
        return factory

    out = {"eager": case("reference"), "compile": case("reference", compiled=True),
           "compile-ro": H.ro_skip_reason(cfg) or case("reference", ro=True)}
    return H.module_backend_cases(SUBJECT.cases(), cfg, case, out)


def _n_params(D: int, K: int) -> int:
    """Parameters of a block (design.md §1.2): 4 entity layers (2 LayerNorms, QKV, output projection,
    FFN D->4D->D), 2 MLPs D->2D->D, the routers [K, 2, 2D] + [K, 2]."""
    layer = 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D) + (4 * D * D + 4 * D) + (4 * D * D + D)
    mlp = (2 * D * D + 2 * D) + (2 * D * D + D)
    return 4 * layer + 2 * mlp + K * 2 * 2 * D + K * 2


def floor(cfg: H.Config) -> dict:
    itemsize = torch.empty((), dtype=cfg.torch_dtype).element_size()
    return {"bytes": _floors.dual_path_block_bytes(cfg.B, cfg.T, cfg.K, cfg.D, itemsize, cfg.mode, cfg.masked,
                                                   _n_params(cfg.D, cfg.K)),
            "flops": _floors.dual_path_block_flops(cfg.B, cfg.T, cfg.K, cfg.D, cfg.mode), "items": None}


SUBJECT = H.Subject("dual_path_block", ("eager", "compile", "compile-ro"), build, floor,
                    backend_variants=("", H.RO_SUFFIX))


def _cpu_keep(c: H.Config) -> bool:
    if c.dtype == "bf16":
        return c.B == 16 and c.T == 8 and c.mode == "fwd"
    if c.T == 32:
        return c.B == 16 and c.mode == "fwd+bwd"
    return c.B == 16 or c.mode == "fwd"


CONFIGS = H.matrix(MODES, cpu_keep=_cpu_keep)


@pytest.mark.parametrize("cfg, case", H.params(SUBJECT, CONFIGS))
def test_dual_path_block(cfg, case, benchmark, bench_runner):
    bench_runner.run(SUBJECT, cfg, case, benchmark)
