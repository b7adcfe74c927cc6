"""In-process A/B of two versions of the host ``routed_merge`` kernel (csrc/cpu/routed_merge_cpu.cpp), for
"did this kernel change make it slower?" on a shared, noisy CPU (not part of the benchmark suite).

Separate processes cannot settle a few-percent question on this machine: per-process page faults of the
large outputs (glibc trimming its heap or not) and the other workers' load move a call by 10-600 %.
Here both versions are compiled from their own source trees (the extension's flags, each under its own
namespace) into one program, run on the same buffers on one thread, alternating every round, so only
the code differs. Each pair is built twice, with the slots swapped, because the place a build lands in
the program can move it by a few percent (see the loop-alignment note in routed_merge_cpu.cpp); the
ratio reported is version B / version A from both orders. Instruction counts: run the op under
``valgrind --tool=callgrind`` instead (deterministic, but blind to such layout effects).

    python -m tools.cpu_kernel_ab HEAD~1 HEAD             # git revisions of this repository
    python -m tools.cpu_kernel_ab /path/to/checkout_a .     # or source trees (with csrc/)
    options: --ops fwd,bwd --repeats 3 --rounds 31 --calls 20 --B 256 --T 8 --K 6 --D 256 --cxx g++

The one driver fills version A's argument blocks for both versions, so the two trees must have the same
csrc/common/op_args.h; where they differ (the blocks' fields moved, as when the backward blocks were
built on the forward ones) the tool refuses rather than hand one version misread pointers.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "tools", "cpu_kernel_ab_main.cpp")
# The extension's compile flags (setup.py: -O3 plus Python's -fwrapv, position-independent code), serial.
FLAGS = ["-O3", "-fwrapv", "-fPIC", "-std=c++20", "-DNDEBUG"]

WRAPPER = """#include "cpu/routed_merge_cpu.cpp"
extern "C" int {slot}_fwd(const void* a) {{
  return {ns}::routed_merge_fwd_cpu(*static_cast<const {ns}::RoutedMergeFwdArgs*>(a), {ns}::serial_for);
}}
extern "C" int {slot}_bwd(const void* a) {{
  return {ns}::routed_merge_bwd_cpu(*static_cast<const {ns}::RoutedMergeBwdArgs*>(a), {ns}::serial_for);
}}
"""


def source_tree(spec: str, tmp: str, tag: str) -> str:
    """The csrc/ parent of a checkout path, or of git revision `spec` extracted into tmp."""
    if os.path.isdir(os.path.join(spec, "csrc")):
        return os.path.abspath(spec)
    dest = os.path.join(tmp, tag)
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", ROOT, "archive", spec, "csrc"], capture_output=True, check=False)
    if archive.returncode != 0:
        sys.exit(f"{spec!r}: expected a checkout with csrc/ or a git revision of {ROOT}; "
                 f"git archive said: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", dest], input=archive.stdout, check=True)
    return dest


ARG_BLOCKS = os.path.join("csrc", "common", "op_args.h")


def check_same_arg_blocks(trees: dict, specs: dict) -> None:
    """Exit naming both versions unless their argument blocks (``ARG_BLOCKS``) are the same text."""
    texts = {}
    for v, tree in trees.items():
        with open(os.path.join(tree, ARG_BLOCKS)) as f:
            texts[v] = f.read()
    if texts["A"] != texts["B"]:
        sys.exit(f"{specs['A']} and {specs['B']} lay out the kernels' argument blocks differently ({ARG_BLOCKS} "
                 f"differs): the driver fills A's layout for both, so B would read wrong pointers. Compare two "
                 f"versions with the same {ARG_BLOCKS}.")


def compile_slot(cxx: str, tree: str, slot: str, tmp: str, tag: str) -> str:
    """Object file of tree's kernel with entry points slot_fwd / slot_bwd and namespace mdn_<tag>."""
    ns = f"mdn_{tag}"
    src = os.path.join(tmp, f"{tag}.cpp")
    with open(src, "w") as f:
        f.write(WRAPPER.format(slot=slot, ns=ns))
    obj = os.path.join(tmp, f"{tag}.o")
    subprocess.run([cxx, *FLAGS, f"-Dmdn={ns}", "-I", os.path.join(tree, "csrc"), "-c", src, "-o", obj], check=True)
    return obj


def run_ab(exe: str, op: str, args) -> float:
    out = subprocess.run([exe, op, str(args.rounds), str(args.calls), str(args.B), str(args.T), str(args.K),
                          str(args.D)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"slot1/slot0: p10 ([\d.]+)", out)
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="version A: git revision or checkout path")
    ap.add_argument("b", help="version B: git revision or checkout path")
    ap.add_argument("--ops", default="fwd,bwd")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each program (both slot orders)")
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--B", type=int, default=256)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--K", type=int, default=6)
    ap.add_argument("--D", type=int, default=256)
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cpu_kernel_ab_") as tmp:
        trees = {"A": source_tree(args.a, tmp, "tree_a"), "B": source_tree(args.b, tmp, "tree_b")}
        check_same_arg_blocks(trees, {"A": args.a, "B": args.b})
        # slot order AB (A in slot0) and BA (B in slot0)
        jobs = [(v, s, f"{v}{s}") for v, s in (("A", "slot0"), ("B", "slot1"), ("B", "slot0"), ("A", "slot1"))]
        with ThreadPoolExecutor(max_workers=2) as pool:
            objs = dict(zip([j[2] for j in jobs],
                            pool.map(lambda j: compile_slot(args.cxx, trees[j[0]], j[1], tmp, j[2]), jobs)))
        exes = {}
        for order, (o0, o1) in {"AB": ("Aslot0", "Bslot1"), "BA": ("Bslot0", "Aslot1")}.items():
            exe = os.path.join(tmp, f"ab_{order}")
            # The argument structs are read with version A's headers (check_same_arg_blocks).
            subprocess.run([args.cxx, *FLAGS, "-I", os.path.join(trees["A"], "csrc"), MAIN, objs[o0], objs[o1],
                            "-o", exe], check=True)
            exes[order] = exe
        print(f"A = {args.a}, B = {args.b}; fp32 B={args.B} T={args.T} K={args.K} D={args.D}, 1 thread; "
              f"load average {os.getloadavg()[0]:.2f}")
        for op in args.ops.split(","):
            ratios = []
            for _ in range(args.repeats):
                ratios.append(run_ab(exes["AB"], op, args))        # slot1 / slot0 = B / A
                ratios.append(1.0 / run_ab(exes["BA"], op, args))  # slot1 / slot0 = A / B
            print(f"{op}: time B / A (p10 of per-call times) per run: " + " ".join(f"{r:.3f}" for r in ratios)
                  + f"   median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
