"""Registers, spills, shared memory and theoretical occupancy of every shipped GPU kernel, without a GPU.

    python -m tools.kernel_resources [--jobs N] [--json PATH]

Triton kernels (``mdn_fast/kernels/triton``): each op of the ``triton`` backend is called on meta tensors
(no data, no device) with the launcher recorded instead of run, so the kernel, its arguments and its
``launch_config`` are exactly what a real launch passes; each recorded launch is specialised with
Triton's own binder (ints equal to 1 become constants, alignment / divisibility-by-16 attributes, as a
launch computes them) and compiled ahead of time for sm_80 and sm_90. Sizes: every block configuration
``entity_attention.launch_config`` chooses over the whole supported range (T <= MAX_T, K <= MAX_K,
Dh <= MAX_DH, one or two paths; each at the largest size that picks it, with an odd Dh and with Dh a
multiple of 16: rows Triton loads element by element, and as vectors), plus the named sizes of
``SIZES`` (the paper's, both axes orders, T = 32, the limits, tiny groups) for both ops; fp32, fp16,
bf16; with and without a mask; q, k, v as views of a packed QKV projection (what a block passes).
CUDA C++ kernels (``csrc/cuda/*.cu``, torch-free): compiled with nvcc to cubins for sm_80 and sm_90a.
Both read back with ``cuobjdump --dump-resource-usage`` (the one carried by Triton's wheel).

Occupancy is the theoretical one (the CUDA occupancy calculator's limits: warps, blocks, registers with
their 256-per-warp allocation unit, shared memory with 1 KiB reserved per block), in resident warps per
SM out of 64. CUDA kernels are counted at 256 threads per block, the block each launcher uses for the
paper's sizes (entity_attention: 32 * min(largest group, 8) threads; routed_merge: kThreads = 256).

Exit status: 0 when nothing spills, 1 when any kernel uses stack or local memory, 2 when a tool is missing.
Compiles run in parallel (``--jobs``, default the CPU count) and Triton caches them (``~/.triton/cache``),
so a second run takes seconds.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Named sizes compiled for both ops: (T, K, H, Dh, axes codes; 0 spatial, 1 temporal). routed_merge
#: takes D = H * Dh. The launch_config sweep adds every other entity_attention block configuration.
SIZES = {
    "paper-st": (8, 6, 8, 32, (0, 1)),
    "paper-ts": (8, 6, 8, 32, (1, 0)),
    "T32": (32, 6, 8, 32, (0, 1)),
    "maxT-maxK": (64, 16, 8, 32, (0, 1)),
    "maxDh": (8, 6, 8, 128, (0, 1)),
    "all-limits": (64, 16, 8, 128, (1, 0)),
    "D2048": (8, 6, 16, 128, (0, 1)),
    "tiny": (2, 3, 1, 8, (0, 1)),
}
TRITON_CAPS = (80, 90)
CUDA_ARCHS = ("sm_80", "sm_90a")
DTYPES = ("fp32", "fp16", "bf16")
B = 256  # clips: only enters strides and grids, not the compiled code's resources
CUDA_THREADS = 256

#: Per-SM limits of the architectures (CUDA occupancy calculator; sm_80 = A100, sm_90 = H100).
ARCH_LIMITS = {
    80: dict(max_warps=64, max_blocks=32, regs=65536, reg_unit=256, smem=164 * 1024, smem_reserved=1024,
             smem_unit=128),
    90: dict(max_warps=64, max_blocks=32, regs=65536, reg_unit=256, smem=228 * 1024, smem_reserved=1024,
             smem_unit=128),
}


@dataclass
class Row:
    kernel: str      # Triton kernel (_ea_fwd...) or CUDA "file::kernel"
    arch: str        # sm_80, sm_90, sm_90a
    dtype: str
    config: str      # Triton: block sizes, warps, mask, sizes that launch it; CUDA: ""
    regs: int
    spill: int       # stack + local bytes per thread
    smem: int        # static + dynamic shared memory bytes per block
    threads: int
    warps_per_sm: int
    limiter: str     # what bounds the occupancy
    mma: bool | None = None  # Triton: tl.dot lowered to tensor-core MMA


def occupancy(cap: int, regs: int, smem: int, threads: int) -> tuple[int, str]:
    """Resident warps per SM and the resource that bounds them."""
    lim = ARCH_LIMITS[cap]
    warps = -(-threads // 32)
    bounds = {"warps": lim["max_warps"] // warps, "blocks": lim["max_blocks"]}
    if regs:
        per_warp = -(-regs * 32 // lim["reg_unit"]) * lim["reg_unit"]
        bounds["regs"] = (lim["regs"] // per_warp) // warps
    per_block = -(-(smem + lim["smem_reserved"]) // lim["smem_unit"]) * lim["smem_unit"]
    bounds["smem"] = lim["smem"] // per_block
    limiter = min(bounds, key=bounds.get)
    return bounds[limiter] * warps, limiter


# ------------------------------------------------------------------------------------------ cuobjdump
def cuobjdump() -> str | None:
    """Triton's bundled cuobjdump, else one on PATH."""
    try:
        from triton.backends.nvidia import __file__ as nv
        bundled = Path(nv).parent / "bin" / "cuobjdump"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("cuobjdump")


_FUNC = re.compile(r"Function (\S+):\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


def resource_usage(cubin: Path, tool: str) -> dict[str, tuple[int, int, int]]:
    """{function: (registers, stack + local bytes, static shared bytes)} of a cubin."""
    out = subprocess.run([tool, "--dump-resource-usage", str(cubin)], capture_output=True, text=True, check=True)
    return {m[1]: (int(m[2]), int(m[3]) + int(m[5]), int(m[4])) for m in _FUNC.finditer(out.stdout)}


# ------------------------------------------------------------------------------------------ Triton
_TORCH_DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _ea_sweep() -> dict[str, tuple]:
    """Every (BLOCK_R, BLOCK_D, WHOLE, CHUNK_D, forward and backward num_warps) entity_attention.launch_config picks over the supported
    sizes, for 16-bit and for fp32 inputs, each at the largest size that picks it, twice: with an odd Dh
    (``-oddDh``: no stride divisible by 16, scalar loads, the most registers) and with Dh a multiple of
    16 (``-vec``: vectorised loads, what packed projections of the usual head sizes give)."""
    from mdn_fast._limits import MAX_DH, MAX_K, MAX_T
    from mdn_fast.kernels.triton import entity_attention as kea
    found = {}
    for fp32 in (False, True):
        for axes in ((0,), (1,), (0, 1)):
            for T in range(1, MAX_T + 1):
                for K in range(1, MAX_K + 1):
                    for Dh in [*range(1, MAX_DH + 1, 2), *range(16, MAX_DH + 1, 16)]:
                        vec = Dh % 16 == 0
                        f, b = (kea.launch_config(T, K, Dh, list(axes), fp32, vec)[k] for k in ("fwd", "bwd"))
                        name = (f"R{f['BLOCK_R']}-D{f['BLOCK_D']}-{'W' if f['WHOLE'] else 'C'}{f['CHUNK_D']}-"
                                f"w{f['num_warps']}-{b['num_warps']}-"
                                f"{'vec' if vec else 'oddDh'}")
                        found[name + ("-fp32" if fp32 else "")] = (T, K, 1, Dh, axes)
    return found


def _record(fn):
    """The launches ``fn()`` makes through the triton backend: [(kernel, args, kwargs)], nothing run."""
    from mdn_fast.ops import triton_backend as tb
    launches = []
    real = tb._launch
    tb._launch = lambda kernel, grid, *args, **kwargs: launches.append((kernel, args, kwargs))
    try:
        fn()
    finally:
        tb._launch = real
    return launches


def _op_launches(T, K, H, Dh, axes, dtype_name, has_mask, with_merge):
    """Record the forward and backward launches of entity_attention (and routed_merge) at these sizes."""
    import torch
    dtype = getattr(torch, _TORCH_DTYPE_NAMES[dtype_name])
    ops = torch.ops.mdn_fast_triton
    P = len(axes)
    meta = dict(device="meta", dtype=dtype)
    packed = torch.empty(B, T, K, P, 3, H, Dh, **meta)               # fused QKV projection
    q, k, v = (packed[:, :, :, :, i].permute(3, 0, 1, 2, 4, 5) for i in range(3))
    mask = torch.empty(B, T, K, device="meta", dtype=torch.bool) if has_mask else None

    def run():
        o, lse = ops.entity_attention_fwd(q, k, v, list(axes), mask, Dh ** -0.5)
        ops.entity_attention_bwd(o, q, k, v, lse, list(axes), mask, Dh ** -0.5)
        if with_merge:
            D = H * Dh
            x = torch.empty(B, T, K, D, **meta)
            w = torch.empty(K, 2, 2 * D, device="meta")
            bias = torch.empty(K, 2, device="meta")
            y, alpha = ops.routed_merge_fwd(x, x, w, bias, 1.0, mask)
            ops.routed_merge_bwd(y, alpha, x, x, w, alpha, 1.0, mask)
    return _record(run)


@functools.lru_cache(maxsize=None)
def _binder(kernel, cap):
    """Triton's launch-time argument binder for ``kernel`` on ``cuda:cap`` (what a launch specialises on)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature
    target = GPUTarget("cuda", cap, 32)
    backend = make_backend(target)
    return target, backend, create_function_from_signature(kernel.signature, kernel.params, backend)


def _specialise(kernel, args, kwargs, cap):
    """What Triton's launcher compiles for this call on ``cuda:cap``: (source, target, options, key).
    Uses Triton's binder and ``_pack_args`` (internals of ``JITFunction.run``: the public ``warmup``
    needs a GPU driver to name its target)."""
    from triton.compiler import ASTSource
    target, backend, binder = _binder(kernel, cap)
    bound, specialization, opts = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, opts)
    key = (kernel.fn.__name__, cap, repr(specialization), repr(sorted(opts.items())))
    return ASTSource(kernel, signature, constexprs, attrs), target, options, key


#: The Triton jobs of this run, built before the worker pool forks (workers index into it).
_JOBS: list = []


def _triton_jobs(only: list[str] | None = None) -> list:
    """[(labels, dtype, has_mask, kernel, args, kwargs, cap)], one per distinct compiled specialisation.
    Every size runs with a mask (the kernels' heavier variant); the paper's size without one too."""
    sizes = {**SIZES, **{n: s for n, s in sorted(_ea_sweep().items()) if s not in SIZES.values()}}
    if only:
        unknown = set(only) - set(sizes)
        if unknown:
            raise SystemExit(f"--sizes: unknown {sorted(unknown)}; expected some of {sorted(sizes)}")
        sizes = {n: s for n, s in sizes.items() if n in only}
    jobs, seen = [], {}
    for name, (T, K, H, Dh, axes) in sizes.items():
        for dtype in DTYPES:
            for has_mask in ((True, False) if name == "paper-st" else (True,)):
                for kernel, args, kwargs in _op_launches(T, K, H, Dh, axes, dtype, has_mask, name in SIZES):
                    for cap in TRITON_CAPS:
                        key = _specialise(kernel, args, kwargs, cap)[3]
                        if key in seen:
                            seen[key][0].append(name)
                            continue
                        seen[key] = ([name], dtype, has_mask, kernel, args, kwargs, cap)
                        jobs.append(seen[key])
    return jobs


def _compile_job(i: int) -> Row:
    import triton
    names, dtype, has_mask, kernel, args, kwargs, cap = _JOBS[i]
    src, target, options, _ = _specialise(kernel, args, kwargs, cap)
    compiled = triton.compile(src, target=target, options=options.__dict__)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = resource_usage(cubin, cuobjdump())
    regs, spill, static_smem = usage[kernel.fn.__name__]
    smem = static_smem + compiled.metadata.shared
    threads = compiled.metadata.num_warps * 32
    warps, limiter = occupancy(cap, regs, smem, threads)
    blocks = {k: v for k, v in kwargs.items() if k.startswith(("BLOCK_", "CHUNK_", "WHOLE", "SINGLE"))}
    config = " ".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in blocks.items())
    config += f" w{compiled.metadata.num_warps} {'mask' if has_mask else 'nomask'} [{','.join(names)}]"
    return Row(kernel.fn.__name__, f"sm_{cap}", dtype, config, regs, spill, smem, threads, warps, limiter,
               mma="mma" in compiled.asm["ptx"])


def triton_rows(jobs: int, only: list[str] | None = None) -> list[Row]:
    """Compile every shipped Triton kernel configuration, or those of the ``only`` sizes (needs a
    non-interpreting process)."""
    from mdn_fast.kernels import triton as kt
    if kt.interpreting():
        raise RuntimeError("Triton was imported with TRITON_INTERPRET=1: the resource table needs the compiler; "
                           "run `TRITON_INTERPRET=0 python -m tools.kernel_resources`")
    _JOBS[:] = _triton_jobs(only)
    for names, *_ in _JOBS:  # labels are complete only once every size has been seen
        names.sort(key=lambda n: (n not in SIZES, n))
    if jobs <= 1:
        return [_compile_job(i) for i in range(len(_JOBS))]
    import multiprocessing
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_compile_job, range(len(_JOBS))))


# ------------------------------------------------------------------------------------------ CUDA C++
def nvcc() -> str | None:
    found = os.environ.get("NVCC") or shutil.which("nvcc")
    home = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc"
    return found or (str(home) if home.exists() else None)


# Kernels are templates on a csrc/common/dtype.h scalar tag (float, double, mdn::Half16, mdn::BFloat16; the
# router gradient on its accumulation type): the tag's mangling names the dtype.
_CUDA_DTYPE = {"f": "fp32", "d": "fp64", "NS_6Half16E": "fp16", "NS_8BFloat16E": "bf16"}
_CUDA_NAME = re.compile(r"([A-Za-z_]+_kernel)I(f|d|NS_6Half16E|NS_8BFloat16E)E")  # after its length prefix


def _cuda_file_rows(src: Path, arch: str) -> list[Row]:
    cap = int(re.sub(r"\D", "", arch))
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        subprocess.run([nvcc(), "-std=c++17", "-O3", "-cubin", f"-arch={arch}", str(src), "-o", str(cubin)],
                       check=True, capture_output=True, text=True)
        usage = resource_usage(cubin, cuobjdump())
    rows = []
    for mangled, (regs, spill, smem) in sorted(usage.items()):
        m = _CUDA_NAME.search(mangled)
        name, dtype = (m[1], _CUDA_DTYPE[m[2]]) if m else (mangled, "-")
        warps, limiter = occupancy(cap, regs, smem, CUDA_THREADS)
        rows.append(Row(f"{src.stem}::{name}", arch, dtype, "", regs, spill, smem, CUDA_THREADS, warps, limiter))
    return rows


def cuda_rows(jobs: int) -> list[Row]:
    sources = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        parts = pool.map(lambda sa: _cuda_file_rows(*sa), [(s, a) for s in sources for a in CUDA_ARCHS])
        return [r for part in parts for r in part]


# ------------------------------------------------------------------------------------------ report
def print_table(rows: list[Row]) -> None:
    head = ("kernel", "arch", "dtype", "regs", "spill", "smem", "thr", "warps/SM", "config")
    lines = [(r.kernel, r.arch, r.dtype, str(r.regs), str(r.spill), str(r.smem), str(r.threads),
              f"{r.warps_per_sm} ({r.limiter})", r.config) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    for line in (head, *lines):
        print("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--only", choices=("triton", "cuda"), help="one family of kernels")
    ap.add_argument("--sizes", help="comma-separated size names (SIZES, R..-D..-W|C..-w..-..-oddDh|vec): a subset, to iterate")
    opts = ap.parse_args(argv)
    missing = [name for name, path in (("cuobjdump", cuobjdump()), ("nvcc", nvcc())) if path is None]
    if missing and opts.only != "triton" or "cuobjdump" in missing:
        print(f"kernel_resources: SKIPPED: {', '.join(missing)} not found (nvcc: add it to PATH, set NVCC or "
              "CUDA_HOME; cuobjdump: comes with Triton's NVIDIA backend)")
        return 2
    rows = []
    if opts.only != "cuda":
        rows += triton_rows(opts.jobs, opts.sizes.split(",") if opts.sizes else None)
    if opts.only != "triton":
        rows += cuda_rows(opts.jobs)
    print_table(rows)
    if opts.json:
        opts.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    spilling = [r for r in rows if r.spill]
    for r in spilling:
        print(f"SPILL: {r.kernel} {r.arch} {r.dtype} {r.config}: {r.spill} bytes of stack/local per thread")
    return 1 if spilling else 0


if __name__ == "__main__":
    # The flavour of Triton's kernels is fixed when triton is first imported: compile, never interpret.
    if "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "0"
    sys.exit(main())
