"""Interleaved A/B of the C++ ops' call cost between two builds of the extension (issue 19: "no speed lost
to the shim"), e.g. the last ATen/pybind build against the stable-ABI one. Not part of the benchmark suite.

Two builds of ``mdn_fast._C`` cannot share a process (both register ``torch.ops.mdn_fast``), so each tree
gets one long-lived worker process: it imports the package from its tree, builds every case's inputs once
(same seeds in both), warms up, then waits. The driver alternates the workers round by round (A B, then
B A, ...) and asks each for one timed batch of calls per case, so both see the same machine load over the
same minutes; the ratios reported are the median over rounds of B's median call / A's (with its IQR),
and B's fastest call over all rounds / A's (on a shared VM the least disturbed call). One thread per worker
(``torch.set_num_threads(1)``) keeps the two from fighting for cores.

Cases, at B=1 (the call is mostly overhead: argument checks, the op's dispatch, allocation) and at the
paper size (B=16, T=8, K=6, H=8, Dh=32, D=256, two paths, masked), fp32 on the CPU:
  raw   ``torch.ops.mdn_fast.<op>_fwd`` alone, and ``_fwd`` then ``_bwd`` (the shim and the kernel)
  op    ``mdn_fast.ops.<op>(..., backend="cpp")``, forward, and forward + backward through autograd

    python -m tools.op_overhead_ab OLD_TREE NEW_TREE [--rounds 31] [--calls 200] [--json PATH]

Each tree is a checkout whose extension is built in place (``mdn_fast/_C*.so`` beside its sources:
``MDN_FAST_CUDA=0 python setup.py build_ext --inplace``); the current venv's torch runs both.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = {"B1": dict(B=1, T=8, K=6, H=8, Dh=32), "paper": dict(B=16, T=8, K=6, H=8, Dh=32)}
KINDS = ("raw-fwd", "raw-fwd+bwd", "op-fwd", "op-fwd+bwd")


# ---------------------------------------------------------------------------------------- the worker
def _cases(torch, mdn_ops):
    """{name: zero-argument callable} for every op x size x kind, inputs made once (fixed seeds)."""
    out = {}
    for size_name, s in SIZES.items():
        out.update(_size_cases(torch, mdn_ops, size_name, s))
    return out


def _size_cases(torch, mdn_ops, size_name, s):
    """The cases of one size, {"op/size/kind": callable}. A function of its own so that each size's
    closures bind that size's tensors (closures made in a loop would all see the last size's)."""
    ns = torch.ops.mdn_fast
    out = {}
    B, T, K, H, Dh = s["B"], s["T"], s["K"], s["H"], s["Dh"]
    D, P = H * Dh, 2
    gen = torch.Generator().manual_seed(0)
    packed = torch.randn(B, T, K, P, 3, H, Dh, generator=gen)
    q, k, v = (packed[:, :, :, :, i].permute(3, 0, 1, 2, 4, 5) for i in range(3))
    mask = torch.rand(B, T, K, generator=gen) > 0.2
    go = torch.randn(P, B, T, K, H, Dh, generator=gen)
    qg, kg, vg = (x.detach().clone().requires_grad_() for x in (q, k, v))
    x_st, x_ts = (torch.randn(B, T, K, D, generator=gen) for _ in range(2))
    w, b = torch.randn(K, 2, 2 * D, generator=gen) * 0.05, torch.randn(K, 2, generator=gen)
    gy, ga = torch.randn(B, T, K, D, generator=gen), torch.randn(B, K, 2, generator=gen)
    xsg, xtg, wg, bg = (x.detach().clone().requires_grad_() for x in (x_st, x_ts, w, b))
    scale = Dh ** -0.5

    def ea_raw_fwd():
        return ns.entity_attention_fwd(q, k, v, [0, 1], mask, scale)

    def ea_raw_fwd_bwd():
        o, lse = ns.entity_attention_fwd(q, k, v, [0, 1], mask, scale)
        return ns.entity_attention_bwd(go, q, k, v, lse, [0, 1], mask, scale)

    def ea_op_fwd():
        return mdn_ops.entity_attention(q, k, v, ("spatial", "temporal"), mask=mask, backend="cpp")

    def ea_op_fwd_bwd():
        o = mdn_ops.entity_attention(qg, kg, vg, ("spatial", "temporal"), mask=mask, backend="cpp")
        return torch.autograd.grad(o, (qg, kg, vg), go)

    def rm_raw_fwd():
        return ns.routed_merge_fwd(x_st, x_ts, w, b, 1.0, mask)

    def rm_raw_fwd_bwd():
        y, alpha = ns.routed_merge_fwd(x_st, x_ts, w, b, 1.0, mask)
        return ns.routed_merge_bwd(gy, ga, x_st, x_ts, w, alpha, 1.0, mask)

    def rm_op_fwd():
        return mdn_ops.routed_merge(x_st, x_ts, w, b, tau=1.0, mask=mask, backend="cpp")

    def rm_op_fwd_bwd():
        y, alpha = mdn_ops.routed_merge(xsg, xtg, wg, bg, tau=1.0, mask=mask, backend="cpp")
        return torch.autograd.grad((y, alpha), (xsg, xtg, wg, bg), (gy, ga))

    fns = {"entity_attention": (ea_raw_fwd, ea_raw_fwd_bwd, ea_op_fwd, ea_op_fwd_bwd),
           "routed_merge": (rm_raw_fwd, rm_raw_fwd_bwd, rm_op_fwd, rm_op_fwd_bwd)}
    for op, callables in fns.items():
        for kind, fn in zip(KINDS, callables):
            out[f"{op}/{size_name}/{kind}"] = fn
    return out


def worker(tree: str) -> None:
    sys.path.insert(0, tree)
    import torch
    torch.set_num_threads(1)
    import mdn_fast
    from mdn_fast import ops as mdn_ops
    from mdn_fast.ops import cpp_backend
    where = os.path.realpath(mdn_fast.__file__)
    if not where.startswith(os.path.realpath(tree) + os.sep):
        raise SystemExit(f"worker for {tree}: imported mdn_fast from {where}")
    why = cpp_backend.unavailable_reason()
    if why:
        raise SystemExit(f"worker for {tree}: the C++ ops are not usable: {why}")
    cases = _cases(torch, mdn_ops)
    for fn in cases.values():  # warm up: first-call costs (dispatcher caches, allocator) out of the rounds
        for _ in range(3):
            fn()
    print(json.dumps({"ready": sorted(cases), "torch": torch.__version__,
                      "so": os.path.basename(mdn_fast._C.__file__)}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        fn, calls = cases[req["case"]], req["calls"]
        each = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            fn()
            each.append(time.perf_counter_ns() - t0)
        each.sort()
        # The batch's median call and its fastest: on a shared VM the fastest is the least disturbed.
        print(json.dumps({"ns": each[len(each) // 2], "min": each[0]}), flush=True)


# ---------------------------------------------------------------------------------------- the driver
def _start(tree: str) -> tuple[subprocess.Popen, dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.path.abspath(tree))
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", os.path.abspath(tree)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    first = p.stdout.readline()
    if not first:
        raise SystemExit(f"the worker for {tree} stopped before it was ready (its error is above)")
    return p, json.loads(first)


def _ask(p: subprocess.Popen, case: str, calls: int) -> tuple[float, float]:
    p.stdin.write(json.dumps({"case": case, "calls": calls}) + "\n")
    p.stdin.flush()
    got = json.loads(p.stdout.readline())
    return got["ns"], got["min"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="tree A (the old build)")
    ap.add_argument("b", help="tree B (the new build)")
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--calls", type=int, default=200, help="calls per timed batch at B=1 (paper size: / 20)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    (pa, ia), (pb, ib) = _start(args.a), _start(args.b)
    cases = ia["ready"]
    if cases != ib["ready"]:
        raise SystemExit("the two workers built different cases")
    print(f"A: {args.a} ({ia['so']})\nB: {args.b} ({ib['so']})\ntorch {ia['torch']}, one thread each, "
          f"{args.rounds} rounds, alternating A B / B A")
    times = {c: ([], []) for c in cases}      # per round: (median call, fastest call) of each worker
    for r in range(args.rounds):
        for c in cases:
            calls = args.calls if "/B1/" in c else max(1, args.calls // 20)
            order = ((0, pa), (1, pb)) if (r % 2 == 0) else ((1, pb), (0, pa))
            for slot, p in order:
                times[c][slot].append(_ask(p, c, calls))
        print(f"\rround {r + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for p in (pa, pb):
        p.stdin.close()
        p.wait()
    rows = []
    print(f"{'case':32s} {'A median':>10s} {'B median':>10s} {'B/A':>6s} {'IQR of B/A':>14s}   "
          f"{'A fastest':>10s} {'B fastest':>10s} {'B/A':>6s}")
    for c in cases:
        a, b = ([t[0] for t in x] for x in times[c])
        a_min, b_min = ([t[1] for t in x] for x in times[c])
        ratios = sorted(y / x for x, y in zip(a, b))
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        row = dict(case=c, a_us=statistics.median(a) / 1e3, b_us=statistics.median(b) / 1e3,
                   ratio=statistics.median(ratios), ratio_q1=q1, ratio_q3=q3,
                   a_min_us=min(a_min) / 1e3, b_min_us=min(b_min) / 1e3)
        row["min_ratio"] = row["b_min_us"] / row["a_min_us"]
        rows.append(row)
        print(f"{c:32s} {row['a_us']:8.1f}us {row['b_us']:8.1f}us {row['ratio']:6.3f} [{q1:.3f}, {q3:.3f}]   "
              f"{row['a_min_us']:8.1f}us {row['b_min_us']:8.1f}us {row['min_ratio']:6.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(a=args.a, b=args.b, a_so=ia["so"], b_so=ib["so"], torch=ia["torch"],
                           rounds=args.rounds, calls=args.calls, rows=rows), f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
