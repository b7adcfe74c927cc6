"""Plant known kernel bugs, one at a time, in a temporary copy of the checkout, and show the tests catch each.

Usage: scripts/mutation_check.sh [--only NAME ...] [--list] [--keep]

For every mutation: copy the checkout (without .git and virtual environments) to a temporary folder, apply
the one textual change (it must match exactly once), run the tests that guard that kernel in the copy
(the CUDA emulation builds the mutated csrc/ itself, keyed by its hash; Triton kernels are imported from
the copy through PYTHONPATH), and record which tests failed. The unmutated copy runs the same selections
first: they must pass, so a failure is the mutation's doing. Exit 0 when every mutation is caught, 1 when
one survives (printed as SURVIVED) or the baseline fails. A table at the end names, for each mutation, the
failing tests grouped by the check or schedule that caught it.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMU = ["tests/ops/test_cuda_emulated.py", "-m", "cuda_emulated and not slow"]
TRITON_EA = ["tests/ops/test_entity_attention.py", "tests/ops/test_group_independence.py", "-k", "triton"]
TRITON_RM = ["tests/ops/test_routed_merge.py", "-k", "triton"]


@dataclass
class Mutation:
    name: str
    what: str
    path: str
    old: str
    new: str
    tests: list


MUTATIONS = [
    Mutation("warp-sum-skips-lane", "the warp sum's butterfly stops before offset 1 (each lane misses one partner)",
             "csrc/cuda/reduce.cuh", "for (int off = 16; off > 0; off >>= 1)",
             "for (int off = 16; off > 1; off >>= 1)", EMU + ["-k", "entity_attention_matches or routed_merge_matches"]),
    Mutation("no-barrier-after-mask-fill", "entity_attention reads the shared key mask before every thread filled it",
             "csrc/cuda/entity_attention_cuda.cu",
             "ok[n] = mask ? (mask[mv.base + n * mv.member] != 0) : 1;\n  __syncthreads();",
             "ok[n] = mask ? (mask[mv.base + n * mv.member] != 0) : 1;", EMU + ["-k", "entity_attention_matches"]),
    Mutation("no-barrier-between-bwd-passes", "the backward's second pass reads D_i before the first pass wrote it",
             "csrc/cuda/entity_attention_cuda.cu", "  __syncthreads();\n\n  // Pass 2", "\n  // Pass 2",
             EMU + ["-k", "entity_attention_matches"]),
    Mutation("no-barrier-in-block-sum", "block_sum overwrites its shared partials while other warps still read them",
             "csrc/cuda/reduce.cuh", "  __syncthreads();  // smem may still be read by a previous call\n", "",
             EMU + ["-k", "routed_merge_matches or emulator_runs_correct"]),
    Mutation("masked-key-attended", "the forward attends to masked keys",
             "csrc/cuda/entity_attention_cuda.cu",
             "      if (!ok[j]) continue;  // masked key: weight 0 (uniform across the warp: no divergence)\n", "",
             EMU + ["-k", "entity_attention_matches"]),
    Mutation("head-stride-swapped", "rows of head h found with the feature stride instead of the head stride",
             "csrc/cuda/entity_attention_cuda.cu", "g.base + h * s.h, g.member, s.d}", "g.base + h * s.d, g.member, s.d}",
             EMU + ["-k", "entity_attention_matches"]),
    Mutation("row-load-off-by-one", "a lane loads feature d = Dh too (one past the row)",
             "csrc/cuda/entity_attention_cuda.cu", "x[r] = d < Dh ? Scalar<Tag>::load(row[d * sd]) : A(0);",
             "x[r] = d <= Dh ? Scalar<Tag>::load(row[d * sd]) : A(0);", EMU + ["-k", "entity_attention_matches"]),
    Mutation("router-grad-skips-last-clip", "dweight / dbias sum over all clips but the last",
             "csrc/cuda/routed_merge_cuda.cu", "for (int64_t b = 0; b < a.B; ++b) {\n    const int64_t task = b * a.K + k;",
             "for (int64_t b = 0; b + 1 < a.B; ++b) {\n    const int64_t task = b * a.K + k;",
             EMU + ["-k", "routed_merge_matches"]),
    Mutation("bf16-store-rounds-toward-zero", "bf16 results are truncated instead of rounded to nearest even",
             "csrc/common/dtype.h", "__nv_bfloat16_raw>(__float2bfloat16_rn(x))", "__nv_bfloat16_raw>(__float2bfloat16_rz(x))",
             EMU + ["-k", "bfloat16"]),
    Mutation("triton-masked-key-attended", "the Triton entity_attention treats every key as present",
             "mdn_fast/kernels/triton/entity_attention.py", "key_ok = key_ok & (present != 0)",
             "key_ok = key_ok & (present >= 0)", TRITON_EA),
    Mutation("triton-pooling-counts-absent-frames", "the Triton routed_merge averages over every frame, present or not",
             "mdn_fast/kernels/triton/routed_merge.py", "wt = wt / tl.maximum(tl.sum(wt, axis=0), 1.0)",
             "wt = wt / tl.maximum(tl.sum(tmask.to(tl.float32), axis=0), 1.0)", TRITON_RM),
]


def _copy_checkout(dst: str) -> None:
    skip = {".git", ".ci-venv", ".compat-venv", ".venv", "venv", "build", "runs", ".gpu_check", "__pycache__",
            ".pytest_cache", ".benchmarks"}
    shutil.copytree(ROOT, dst, ignore=lambda d, names: [n for n in names if n in skip or n.endswith(".egg-info")],
                    symlinks=True)


def _run_tests(copy: str, tests: list, timeout: float) -> tuple[int, list[str], str]:
    env = dict(os.environ, PYTHONPATH=copy + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "--tb=line", *tests]
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, [], "timed out"
    failed = [line.split(" ", 2)[1] for line in r.stdout.splitlines() if line.startswith("FAILED ")]
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-3:])
    return r.returncode, failed, tail


def _caught_by(failed: list[str]) -> str:
    """Group failing test ids by test function and the schedule / check in their parameters."""
    groups = Counter()
    for nodeid in failed:
        fn = nodeid.split("::")[-1]
        base = fn.split("[")[0]
        params = fn[len(base):]
        sched = re.findall(r"(warp-serial-reversed|warp-serial|lockstep-reversed|lockstep-shuffled|lockstep)", params)
        groups[f"{base}{'[' + sched[0] + ']' if sched else ''}"] += 1
    return "; ".join(f"{k} x{v}" for k, v in sorted(groups.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run only these mutations (names as --list prints)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies (paths printed)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per test run (default 900)")
    args = ap.parse_args()
    muts = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list or not muts:
        for m in MUTATIONS:
            print(f"{m.name:38s} {m.path}: {m.what}")
        return 0 if args.list else 2

    work = tempfile.mkdtemp(prefix="mdn_mutation_")
    base = os.path.join(work, "baseline")
    _copy_checkout(base)
    print(f"mutation_check: {len(muts)} mutations; copies under {work}", flush=True)
    selections = []
    for m in muts:
        if m.tests not in selections:
            selections.append(m.tests)
    for sel in selections:
        t = time.time()
        rc, failed, tail = _run_tests(base, sel, args.timeout)
        print(f"  baseline {' '.join(sel)}: rc {rc} ({time.time() - t:.0f} s)", flush=True)
        if rc != 0:
            print(f"BASELINE FAILS (fix the checkout first):\n{tail}\n{failed[:5]}")
            return 1
    rows, survived = [], 0
    for m in muts:
        copy = os.path.join(work, m.name)
        _copy_checkout(copy)
        path = os.path.join(copy, m.path)
        with open(path) as f:
            src = f.read()
        n = src.count(m.old)
        if n != 1:
            print(f"  {m.name}: the pattern occurs {n} times in {m.path} (expected once): the source changed; "
                  f"update scripts/mutation_check.py")
            return 1
        with open(path, "w") as f:
            f.write(src.replace(m.old, m.new))
        t = time.time()
        rc, failed, tail = _run_tests(copy, m.tests, args.timeout)
        caught = rc != 0 and bool(failed)
        survived += not caught
        verdict = f"caught by {len(failed)} tests" if caught else f"SURVIVED (rc {rc}: {tail})"
        print(f"  {m.name}: {verdict} ({time.time() - t:.0f} s)", flush=True)
        rows.append((m, failed, caught))
        if not args.keep:
            shutil.rmtree(copy, ignore_errors=True)
    print("\n| mutation | file | what | caught by (test [schedule] x failures) |\n|---|---|---|---|")
    for m, failed, caught in rows:
        print(f"| {m.name} | {m.path} | {m.what} | {_caught_by(failed) if caught else '**SURVIVED**'} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmutation_check: {len(rows) - survived} of {len(rows)} mutations caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
