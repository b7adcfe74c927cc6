"""Quick CPU probe of the ``cpp`` backend's kernels against the baselines, for kernel tuning (not part of
the benchmark suite: no pytest, no report files).

Sizes (issue 4): fp32, B=256, T=8, K=6, H=8, Dh=32, P=2 paths ("spatial", "temporal"), entity mask with
~10% absent tokens; q, k, v are strided views of one fused QKV projection ``[B, T, K, 3, P, H, Dh]``
(what a block feeds the op). routed_merge: ``x_st, x_ts [B, T, K, D=256]``.

Prints per case, for 1 and 2 intra-op threads: the wall-clock median (ms) and the process CPU time per
call (ms, ``time.process_time``: all threads of this process, so less sensitive to other processes on a
shared machine than wall time). Cases are interleaved round-robin so they see the same load.

    python -m tools.cpu_kernel_probe [--B 256] [--rounds 7] [--threads 1,2] [--only ea|rm]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import mdn_fast
from mdn_fast import reference

try:  # the baseline and the mask as the benchmark suite builds them
    from benchmarks._inputs import entity_mask, sdpa_entity_attention
except ImportError:  # run as a script from the repository root
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks._inputs import entity_mask, sdpa_entity_attention

AXES = ("spatial", "temporal")


def _ea_inputs(B, T, K, H, Dh, grad):
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn((B, T, K, 3, len(AXES), H, Dh), generator=g)
    qkv.requires_grad_(grad)
    q, k, v = (x.permute(3, 0, 1, 2, 4, 5) for x in qkv.unbind(3))
    return qkv, q, k, v, entity_mask(B, T, K, "cpu")


def _runner(fwd, leaf, bwd: bool):
    """A zero-argument callable running fwd (and a backward from a fixed random grad when bwd)."""
    if not bwd:
        def run():
            with torch.no_grad():
                fwd()
        return run
    gout = {}

    def run():
        out = fwd()
        if "g" not in gout:
            gout["g"] = torch.randn_like(out)
        out.backward(gout["g"])
        leaf.grad = None
    return run


def ea_cases(B, T, K, H, Dh, compile_ref: bool):
    scale = Dh ** -0.5
    cases = {}
    for bwd in (False, True):
        tag = "fwd+bwd" if bwd else "fwd"
        qkv, q, k, v, m = _ea_inputs(B, T, K, H, Dh, bwd)
        cases[f"ea {tag:7s} sdpa"] = _runner(lambda q=q, k=k, v=v, m=m: sdpa_entity_attention(q, k, v, AXES, m, scale),
                                             qkv, bwd)
        cases[f"ea {tag:7s} reference"] = _runner(
            lambda q=q, k=k, v=v, m=m: reference.entity_attention(q, k, v, AXES, m, scale), qkv, bwd)
        if compile_ref:
            comp = torch.compile(reference.entity_attention)
            cases[f"ea {tag:7s} compile(ref)"] = _runner(
                lambda q=q, k=k, v=v, m=m, c=comp: c(q, k, v, AXES, m, scale), qkv, bwd)
        cases[f"ea {tag:7s} cpp"] = _runner(
            lambda q=q, k=k, v=v, m=m: mdn_fast.ops.entity_attention(q, k, v, AXES, mask=m, scale=scale,
                                                                     backend="cpp"), qkv, bwd)
    return cases


def rm_cases(B, T, K, D):
    g = torch.Generator().manual_seed(10)
    cases = {}
    for bwd in (False, True):
        tag = "fwd+bwd" if bwd else "fwd"
        xs = torch.randn((B, T, K, D), generator=g).requires_grad_(bwd)
        xt = torch.randn((B, T, K, D), generator=g).requires_grad_(bwd)
        w = (torch.randn((K, 2, 2 * D), generator=g) * 0.05).requires_grad_(bwd)
        b = torch.randn((K, 2), generator=g).requires_grad_(bwd)
        m = entity_mask(B, T, K, "cpu")
        for name in ("reference", "cpp"):
            def fwd(xs=xs, xt=xt, w=w, b=b, m=m, name=name):
                return mdn_fast.ops.routed_merge(xs, xt, w, b, tau=1.0, mask=m, backend=name)[0]
            cases[f"rm {tag:7s} {name}"] = _runner(fwd, xs, bwd)
    return cases


def measure(cases, rounds, min_s=0.1):
    """Round-robin over cases; per case the median wall ms and the median CPU ms per call."""
    iters = {}
    for name, fn in cases.items():  # warm-up and calibration
        fn()
        fn()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        iters[name] = max(1, int(min_s / max(dt, 1e-6)))
    wall = {n: [] for n in cases}
    cpu = {n: [] for n in cases}
    names = list(cases)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            fn, it = cases[n], iters[n]
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(it):
                fn()
            t1, c1 = time.perf_counter(), time.process_time()
            wall[n].append((t1 - t0) / it * 1e3)
            cpu[n].append((c1 - c0) / it * 1e3)
    return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in names}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=256)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--K", type=int, default=6)
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--Dh", type=int, default=32)
    ap.add_argument("--D", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", choices=("ea", "rm"), default=None)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the reference")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    for nt in (int(x) for x in args.threads.split(",")):
        torch.set_num_threads(nt)
        cases = {}
        if args.only in (None, "ea"):
            cases.update(ea_cases(args.B, args.T, args.K, args.H, args.Dh, args.compile))
        if args.only in (None, "rm"):
            cases.update(rm_cases(args.B, args.T, args.K, args.D))
        res = measure(cases, args.rounds)
        print(f"\n== threads={nt}  (B={args.B} T={args.T} K={args.K} H={args.H} Dh={args.Dh} D={args.D}, fp32)"
              f"  load={os.getloadavg()[0]:.2f}")
        print(f"{'case':28s} {'wall ms':>9s} {'cpu ms':>9s}")
        for n, (w, c) in res.items():
            print(f"{n:28s} {w:9.2f} {c:9.2f}")
        # speedups of cpp vs the baselines of the same mode
        for prefix in sorted({n.rsplit(' ', 1)[0] for n in res}):
            if f"{prefix} cpp" not in res:
                continue
            cw, cc = res[f"{prefix} cpp"]
            for base in ("sdpa", "reference", "compile(ref)"):
                if f"{prefix} {base}" in res:
                    bw, bc = res[f"{prefix} {base}"]
                    print(f"  {prefix} cpp vs {base:12s}: wall x{bw / cw:5.2f}  cpu x{bc / cc:5.2f}")


if __name__ == "__main__":
    main()
