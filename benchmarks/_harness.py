"""The one place where benchmarks are timed.

How a subject is measured (``GroupRunner``):
- A *group* is one configuration of one subject (e.g. entity_attention, fwd, cpu, fp32, B=256, T=8);
  its *cases* are every backend of ``mdn_fast.ops.BACKENDS`` that can run here plus the
  baselines a user would otherwise pick (eager reference, ``torch.compile`` of the reference, SDPA on
  reshaped axes for the attention). The first test of a group measures all its cases together, so the
  ratios compare cases timed under the same machine load; the other tests of the group read the result.
- Per case, outside the measurement: build (``torch.compile`` compiles here, once per case), warm-up
  calls, one calibration call that sets the iterations per sample.
- Measurement: rounds of round-robin over the cases, rotating the starting case every round; a sample
  is the mean time per call of ``iters`` back-to-back calls, fenced by ``torch.cuda.synchronize`` and
  timed with CUDA events on GPU, ``time.perf_counter`` on CPU; Python GC off while timing. The
  reported time is the median over rounds.
- Peak memory, one extra untimed call per case: on CUDA ``torch.cuda.max_memory_allocated`` minus the
  memory allocated before the call; on CPU the peak of the live bytes of torch's CPU allocator over
  the call, rebuilt from ``torch.profiler`` memory events (``profile_memory=True``) ordered by the end
  of their op (intra-op peaks are approximate). Both count outputs and autograd buffers created by
  the call, not the inputs that already existed.
- The device's copy bandwidth (``dst.copy_(src)`` of a large tensor, read + write bytes / median time)
  is measured once per device and run; the report divides each case's floor bytes / time by it.

Quick mode (``MDN_FAST_BENCH_QUICK=1`` or ``--quick``): tiny sizes, every case built and called once,
untimed (pytest-benchmark runs disabled), so CI keeps the suites from rotting in well under a minute.
Everything here is lazy about CUDA: nothing queries a GPU at import or collection time.
"""
from __future__ import annotations

import gc
import math
import os
import statistics
import time
import traceback
import warnings
from dataclasses import dataclass, field, asdict
from typing import Callable

import pytest
import torch

from mdn_fast.ops import BACKENDS, available_backends, unsupported_reason

from . import _progress, _summary

# ---------------------------------------------------------------------------------------------------
# Run modes


def quick() -> bool:
    """Quick (CI) mode: tiny sizes, each case executed once, untimed."""
    return os.environ.get("MDN_FAST_BENCH_QUICK", "0") == "1"


def full_cpu() -> bool:
    """Run the full (GPU-sized) matrix on CPU too instead of the CPU subset."""
    return os.environ.get("MDN_FAST_BENCH_FULL", "0") == "1"


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BASELINE_KINDS = _summary.BASELINE_ORDER

# Timing budgets per device: (seconds a sample lasts at least, min rounds, max rounds, seconds of
# measurement per group). MDN_FAST_BENCH_BUDGET_S overrides the last.
_BUDGET = {"cpu": (0.05, 5, 25, 4.0), "cuda": (0.005, 15, 100, 2.0)}


def _budget(device: str):
    sample_s, rmin, rmax, group_s = _BUDGET[device]
    group_s = float(os.environ.get("MDN_FAST_BENCH_BUDGET_S", group_s))
    return sample_s, rmin, rmax, group_s


# torch.compile baselines compile once per case; the matrix has more shapes than dynamo's default
# recompile limit per function, and each must stay a static-shape compile.
for _name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
    try:
        import torch._dynamo.config as _dc
        if hasattr(_dc, _name):
            setattr(_dc, _name, max(getattr(_dc, _name), 1024))
    except Exception:  # an old torch without these knobs still runs the suite
        pass


def compile_fn(fn):
    """``torch.compile`` as a user would call it (inductor, static shapes). In quick mode the
    ``aot_eager`` backend checks that the graph traces (dynamo + AOT autograd) without paying inductor's
    C++ build, which would take most of the quick run."""
    return torch.compile(fn, dynamic=False, backend="aot_eager" if quick() else "inductor")


# torch.compile(mode="reduce-overhead"): inductor's kernels replayed as CUDA graphs (cudagraph trees). A
# case name ending in RO_SUFFIX is the case it names, compiled so ("compile-ro": the compiled reference;
# "triton-ro": the block on backend "triton", compiled so).
RO_SUFFIX = "-ro"


def compile_ro_fn(fn):
    """``torch.compile(fn, mode="reduce-overhead")`` as a user would call it (static shapes). In quick mode
    the ``cudagraphs`` backend (dynamo + AOT autograd + the same cudagraph trees, no inductor) checks that
    the callable records and replays as CUDA graphs without paying inductor's build."""
    if quick():
        return torch.compile(fn, dynamic=False, backend="cudagraphs")
    return torch.compile(fn, dynamic=False, mode="reduce-overhead")


def ro_skip_reason(cfg: "Config") -> str | None:
    """Why a reduce-overhead (CUDA graphs) case cannot run at ``cfg`` (None when it can)."""
    if cfg.device != "cuda":
        return ("CUDA graphs need a CUDA device (torch.compile mode='reduce-overhead' records CUDA graphs; "
                "on CPU it would be the plain 'compile' case again)")
    if cfg.mode == "bwd":
        return ("mode 'bwd' replays one recorded forward's backward many times, which is not a CUDA-graph "
                "step: cudagraph trees pair each backward replay with the forward of its step (a new step per "
                "torch.compiler.cudagraph_mark_step_begin); under CUDA graphs see 'fwd' and 'fwd+bwd'")
    return None


def cudagraph_skips() -> int:
    """How many times inductor has declined CUDA graphs for a graph so far in this process."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["inductor"]["cudagraph_skips"])
    except Exception:  # a torch without the counter: the check below cannot see skips
        return 0


def cudagraph_steps(run: Callable, skips_before: int) -> Callable:
    """``run`` (a ``mode_runner`` callable of a reduce-overhead case) with each call a new CUDA-graph step:
    ``torch.compiler.cudagraph_mark_step_begin()`` first, as the torch docs ask of a training loop. Without
    it the tree cannot tell a new step from the untimed forward ``mode_runner`` left without a backward;
    each replay's outputs (overwritten by the next replay) are never read after the call.

    ``skips_before``: ``cudagraph_skips()`` when the case's factory started. Inductor compiles this case's
    graphs in ``mode_runner`` and in the first call (the backward); if it declined CUDA graphs for any
    (a CPU tensor, an incompatible op, a mutated input), the first call raises, so the case is reported as
    an error saying so instead of a plain ``compile`` time under a CUDA-graph name."""
    mark = torch.compiler.cudagraph_mark_step_begin
    first = [True]

    def run_step():
        mark()
        out = run()
        if first[0]:
            first[0] = False
            n = cudagraph_skips() - skips_before
            if n > 0:
                raise RuntimeError(f"torch.compile(mode='reduce-overhead') declined CUDA graphs for {n} graph(s) "
                                   "of this case, so it would not time CUDA graphs (TORCH_LOGS=cudagraphs says why)")
        return out
    return run_step


# ---------------------------------------------------------------------------------------------------
# Configurations


@dataclass(frozen=True)
class Config:
    """One configuration of a subject. ``mode``: fwd | bwd | fwd+bwd (ops, block) or train_step |
    inference (model). ``variant``: free-form extra axis (the model's modality)."""
    mode: str
    device: str
    dtype: str
    B: int
    T: int
    K: int = 6
    D: int = 256
    H: int = 8
    masked: bool = True
    variant: str = ""

    @property
    def Dh(self) -> int:
        return self.D // self.H

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def id(self) -> str:
        parts = [self.variant] if self.variant else []
        parts += [self.mode, self.device, self.dtype, f"B{self.B}", f"T{self.T}"]
        if (self.K, self.D, self.H) != (6, 256, 8):
            parts += [f"K{self.K}", f"D{self.D}", f"H{self.H}"]
        if not self.masked:
            parts.append("nomask")
        return "-".join(parts)


PAPER = dict(K=6, D=256, H=8)      # Dh = 32
QUICK = dict(K=3, D=32, H=2)       # Dh = 16


def matrix(modes, *, cpu_keep: Callable[[Config], bool], batches=(16, 256), frames=(8, 32),
           dtypes=("fp32", "bf16"), variants=("",), unmasked: Callable[[Config], bool] = lambda c: False,
           gpu_keep: Callable[[Config], bool] = lambda c: True) -> list[Config]:
    """Configurations of one subject. GPU: the full matrix (``gpu_keep`` may drop impossible ones);
    CPU: only those ``cpu_keep`` accepts (plus the GPU matrix under ``MDN_FAST_BENCH_FULL=1``); quick mode: one tiny
    fp32 configuration per mode and variant. ``unmasked(c)`` adds a mask-free twin of ``c``."""
    if quick():
        return [Config(mode, dev, "fp32", 2, 4, variant=var, **QUICK)
                for dev in ("cpu", "cuda") for var in variants for mode in modes]
    out = []
    for dev in ("cpu", "cuda"):
        for var in variants:
            for dtype in dtypes:
                for B in batches:
                    for T in frames:
                        for mode in modes:
                            for masked in (True, False):
                                c = Config(mode, dev, dtype, B, T, variant=var, masked=masked, **PAPER)
                                if not masked and not unmasked(c):
                                    continue
                                keep = (gpu_keep(c) if dev == "cuda"
                                        else cpu_keep(c) or (full_cpu() and gpu_keep(c)))
                                if keep:
                                    out.append(c)
    return out


@dataclass(frozen=True)
class Subject:
    """What a benchmark file measures. ``build(cfg)`` returns ``{case: factory or skip reason}`` for
    every case name of ``cases()``; a factory builds the case (compiling if needed) and returns the
    zero-argument callable that one measured call runs. ``floor(cfg)`` returns ``{"bytes": int|None,
    "flops": int|None, "items": int|None}`` (items: clips per call, for clips/s)."""
    name: str
    baselines: tuple
    build: Callable
    floor: Callable
    #: name suffixes of the backend cases: ``("", RO_SUFFIX)`` adds ``<backend>-ro`` beside each backend
    backend_variants: tuple = ("",)

    def cases(self) -> tuple:
        return tuple(self.baselines) + tuple(b + v for b in BACKENDS if b != "reference"
                                             for v in self.backend_variants)

    def kind(self, case: str) -> str:
        return "baseline" if case in self.baselines else "backend"


def params(subject: Subject, configs) -> list:
    """pytest params ``(cfg, case)``, cases innermost so a group's tests run back to back; CUDA ones
    carry the ``gpu`` marker (select with ``-m gpu``)."""
    out = []
    for cfg in configs:
        marks = [pytest.mark.gpu] if cfg.device == "cuda" else []
        for case in subject.cases():
            out.append(pytest.param(cfg, case, id=f"{cfg.id}-{case}", marks=marks))
    return out


# ---------------------------------------------------------------------------------------------------
# Backends and modes


def backend_skip_reason(name: str, ops: tuple, cfg: Config, sizes: dict) -> str | None:
    """Why backend ``name`` cannot run ``ops`` for this configuration (None when it can), asked of the
    registry at run time so new backends join the benchmarks by themselves."""
    why = available_backends().get(name)
    if why:
        return f"backend {name!r} unavailable: {why}"
    if name == "triton" and cfg.device == "cpu":
        return ("backend 'triton' on CPU runs only through the Triton interpreter (TRITON_INTERPRET=1), "
                "a correctness tool, not a performance path")
    for op in ops:
        why = unsupported_reason(name, op, cfg.device, cfg.torch_dtype, sizes)
        if why:
            return f"backend {name!r} does not run {op} for {cfg.id}: {why}"
    return None


def module_backend_cases(names, cfg: Config, case, out: dict) -> dict:
    """For a module that runs both ops (the block, the model): each backend in ``names`` not already in
    ``out`` gets ``case(name)``, or the reason it cannot run one of the ops at this configuration; a name
    ``<backend>-ro`` gets ``case(backend, ro=True)`` (the module compiled with mode="reduce-overhead") or
    the reason CUDA graphs or the backend cannot run here."""
    sizes = {"entity_attention": {"P": 2, "B": cfg.B, "T": cfg.T, "K": cfg.K, "H": cfg.H, "Dh": cfg.Dh},
             "routed_merge": {"B": cfg.B, "T": cfg.T, "K": cfg.K, "D": cfg.D}}
    for name in names:
        if name in out:
            continue
        ro = name.endswith(RO_SUFFIX)
        backend = name[:-len(RO_SUFFIX)] if ro else name
        why = (ro_skip_reason(cfg) if ro else None) or next(
            (w for op, sz in sizes.items() if (w := backend_skip_reason(backend, (op,), cfg, sz))), None)
        out[name] = why or (case(backend, ro=True) if ro else case(backend))
    return out


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def seeded_randn(shape, dtype, device, seed: int) -> torch.Tensor:
    """Fresh normal values (never zeros), the same for every case of a group."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(device=device, dtype=dtype)


def mode_runner(mode: str, forward: Callable, grad_wrt) -> Callable:
    """The callable one measured call runs, for ``forward()`` returning the tensor to differentiate (or a
    tuple whose first item is):
    - ``fwd``: forward under ``torch.no_grad`` (inference);
    - ``fwd+bwd``: forward, then ``torch.autograd.grad`` into ``grad_wrt`` with a fixed random output
      gradient (no ``.grad`` accumulation);
    - ``bwd``: forward once here (untimed), then each call is the backward alone (``retain_graph``).
    """
    if mode == "fwd":
        def run_fwd():
            with torch.no_grad():
                return forward()
        return run_fwd
    grad_wrt = tuple(grad_wrt)
    out = _first(forward())          # with grad: sets the output gradient's shape (and compiles)
    dout = seeded_randn(out.shape, out.dtype, out.device, seed=1)
    if mode == "fwd+bwd":
        del out

        def run_fwd_bwd():
            return torch.autograd.grad(_first(forward()), grad_wrt, dout)
        return run_fwd_bwd
    if mode == "bwd":
        def run_bwd():
            return torch.autograd.grad(out, grad_wrt, dout, retain_graph=True)
        return run_bwd
    raise ValueError(f"mode: expected 'fwd', 'bwd' or 'fwd+bwd', got {mode!r}")


# ---------------------------------------------------------------------------------------------------
# Timing primitives


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_calls(fn: Callable, iters: int, device: str) -> float:
    """Seconds per call, mean of ``iters`` back-to-back calls, fenced by device synchronisation."""
    gc_was = gc.isenabled()
    gc.disable()
    try:
        _sync(device)
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / iters
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) / iters
    finally:
        if gc_was:
            gc.enable()


def peak_memory(fn: Callable, device: str) -> tuple[int | None, str]:
    """``(peak extra bytes during one call, how it was measured)``; see the module docstring."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del out
        return int(peak), "cuda max_memory_allocated"
    try:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn()
            del out
        live = peak = 0
        for e in sorted(prof.events(), key=lambda e: e.time_range.end):
            live += e.self_cpu_memory_usage
            peak = max(peak, live)
        return int(peak), "torch.profiler CPU allocator events"
    except Exception as e:  # the profiler is a diagnostic; timing stands without it
        return None, f"unavailable ({type(e).__name__}: {e})"


_COPY_BW: dict = {}


def copy_bandwidth(device: str, remeasure: bool = False) -> dict:
    """Copy bandwidth of ``device`` (bytes/s, read + write counted): ``dst.copy_(src)`` of a tensor far
    larger than the caches (CPU 256 MiB, GPU 1 GiB), median of 15. Measured at the first group of the
    run and again at its end (``remeasure``); ``bytes_per_s`` is the higher of the two, the device's
    capability when the machine's other load was lowest, and ``measurements`` keeps both."""
    if device not in _COPY_BW or remeasure:
        prev = _COPY_BW.pop(device, None)
        nbytes = (1 << 30) if device == "cuda" else (256 << 20)
        if quick():
            nbytes = 4 << 20
        src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
        dst = torch.empty_like(src)
        for _ in range(3):
            dst.copy_(src)
        times = [time_calls(lambda: dst.copy_(src), 3 if device == "cuda" else 1, device)
                 for _ in range(1 if quick() else 15)]
        t = statistics.median(times)
        runs = (prev["measurements"] if prev else []) + [2 * nbytes / t]
        _COPY_BW[device] = {"bytes_per_s": max(runs), "measurements": runs, "tensor_bytes": nbytes,
                            "method": "dst.copy_(src), median of 15, bytes counted = 2 x tensor bytes "
                                      "(read + write); the best of the measurements"}
        del src, dst
        _free(device)
    return _COPY_BW[device]


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------
# Group measurement


@dataclass
class CaseResult:
    subject: str
    config: dict
    group: str
    case: str
    kind: str                       # "baseline" | "backend"
    status: str                     # "ok" | "skipped" | "error" | "untimed" (quick mode)
    reason: str = ""
    samples_s: list = field(default_factory=list)
    median_s: float | None = None
    min_s: float | None = None
    iqr_s: float | None = None
    iters: int | None = None
    rounds: int | None = None
    peak_bytes: int | None = None
    peak_method: str = ""
    floor_bytes: int | None = None
    flops: int | None = None
    items: int | None = None
    # filled once the whole group is measured:
    best_baseline: str | None = None
    speedup_vs_best_baseline: float | None = None
    floor_fraction: float | None = None
    achieved_bytes_per_s: float | None = None
    achieved_flops_per_s: float | None = None
    items_per_s: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


#: Every case result of this run, in order; the conftest's report reads it at session finish.
RESULTS: list[CaseResult] = []
#: Per-device copy bandwidth and the load average when measuring started, for the report.
RUN_INFO: dict = {"load_avg_start": None}


def _short_error(e: BaseException) -> str:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    return f"{type(e).__name__}: {e}\n" + "".join(tb[-4:])


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


class GroupRunner:
    """Measures each group once (all cases interleaved), then serves the per-case tests."""

    def __init__(self):
        self._groups: dict = {}
        self._budget = _progress.Budget()
        self._done = _progress.done_groups()      # resuming: groups an earlier call already logged

    def _may_start(self, subject: Subject, cfg: Config) -> None:
        """Skip a group an earlier call measured (resume); end the session cleanly, between groups,
        when the next one would overrun the time budget (``_progress``)."""
        if (subject.name, cfg.id) in self._done:
            pytest.skip(f"{subject.name} {cfg.id}: already measured by an earlier call (resume)")
        fits, why = self._budget.fits(subject.name, cfg.device)
        if not fits:
            pytest.exit(f"stopping before {subject.name} {cfg.id}: {why}", returncode=2)

    def run(self, subject: Subject, cfg: Config, case: str, benchmark) -> None:
        if cfg.device == "cuda" and not torch.cuda.is_available():
            pytest.skip("CUDA not available on this machine")
        if RUN_INFO["load_avg_start"] is None and hasattr(os, "getloadavg"):
            RUN_INFO["load_avg_start"] = os.getloadavg()
        benchmark.group = f"{subject.name} {cfg.id}"
        if quick():
            return self._run_quick(subject, cfg, case, benchmark)
        key = (subject.name, cfg)
        if key not in self._groups:
            self._may_start(subject, cfg)
            t0 = time.perf_counter()
            self._groups[key] = self._measure(subject, cfg)
            self._budget.record(subject.name, time.perf_counter() - t0)
            _progress.append([r.as_dict() for r in self._groups[key].values()], _COPY_BW.get(cfg.device))
        res = self._groups[key][case]
        if res.status == "skipped":
            pytest.skip(res.reason)
        if res.status == "error":
            pytest.fail(f"{subject.name} {cfg.id} {case}: {res.reason}", pytrace=False)
        _feed_pytest_benchmark(benchmark, res)

    # -- quick mode: build and call the one case, untimed -----------------------------------------
    def _run_quick(self, subject, cfg, case, benchmark):
        floor = subject.floor(cfg)
        res = CaseResult(subject.name, asdict(cfg), cfg.id, case, subject.kind(case), "untimed",
                         floor_bytes=floor.get("bytes"), flops=floor.get("flops"), items=floor.get("items"))
        self._may_start(subject, cfg)
        factory = subject.build(cfg)[case]
        if isinstance(factory, str):
            res.status, res.reason = "skipped", factory
            RESULTS.append(res)
            _progress.append([res.as_dict()], None)
            pytest.skip(factory)
        RESULTS.append(res)
        fn = factory()
        benchmark.pedantic(fn, rounds=1, iterations=1)  # disabled in quick mode: one untimed call
        _sync(cfg.device)
        _progress.append([res.as_dict()], None)

    @staticmethod
    def _drop(res: CaseResult, fns: dict, case: str, e: BaseException, device: str) -> None:
        """Record why a case failed (out of memory: skipped; anything else: error) and free it."""
        res.status, res.reason = ("skipped", f"out of memory: {e}") if _is_oom(e) else ("error", _short_error(e))
        res.samples_s = []
        fns.pop(case, None)
        _free(device)

    # -- full mode -------------------------------------------------------------------------------
    def _measure(self, subject: Subject, cfg: Config) -> dict:
        device = cfg.device
        bw = copy_bandwidth(device)["bytes_per_s"]
        floor = subject.floor(cfg)
        sample_s, rmin, rmax, group_s = _budget(device)
        results, fns, call_s = {}, {}, {}
        torch.manual_seed(0)
        factories = subject.build(cfg)
        for case in subject.cases():
            res = CaseResult(subject.name, asdict(cfg), cfg.id, case, subject.kind(case), "ok",
                             floor_bytes=floor.get("bytes"), flops=floor.get("flops"), items=floor.get("items"))
            results[case] = res
            fac = factories[case]
            if isinstance(fac, str):
                res.status, res.reason = "skipped", fac
                continue
            try:
                fn = fac()
                fn()                                            # first call: compiles where it must
                _sync(device)
                t0 = time_calls(fn, 1, device)                  # warm-up
                heavy = t0 > 1.0                                # e.g. a model step on CPU
                for _ in range(0 if heavy else (1 if device == "cpu" else 4)):
                    fn()
                # calibration: the fastest of 3 calls, so one call slowed by the machine's load does
                # not leave the case at 1 call per sample
                t1 = max(min([t0] + [time_calls(fn, 1, device) for _ in range(0 if heavy else 2)]), 1e-7)
                res.iters = max(1, min(10_000, math.ceil(sample_s / t1)))
                fns[case], call_s[case] = fn, t1
            except Exception as e:
                self._drop(res, fns, case, e, device)
        names = list(fns)
        if names:
            per_round = sum(results[c].iters * call_s[c] for c in names)
            # heavy groups (seconds per round, e.g. a model step on CPU) settle for 3 rounds
            rounds = max(rmin if per_round < 2.0 else 3, min(rmax, int(group_s / per_round)))
            for r in range(rounds):
                live = [c for c in names if c in fns]
                for i in range(len(live)):
                    c = live[(r + i) % len(live)]
                    try:
                        results[c].samples_s.append(time_calls(fns[c], results[c].iters, device))
                    except Exception as e:  # one failing case must not take the group down
                        self._drop(results[c], fns, c, e, device)
            for c in [c for c in names if c in fns]:
                res = results[c]
                res.rounds = rounds
                res.median_s = statistics.median(res.samples_s)
                res.min_s = min(res.samples_s)
                q = statistics.quantiles(res.samples_s, n=4) if len(res.samples_s) >= 2 else [res.median_s] * 3
                res.iqr_s = q[2] - q[0]
                try:
                    res.peak_bytes, res.peak_method = peak_memory(fns[c], device)
                except Exception as e:
                    res.peak_method = f"failed ({type(e).__name__}: {e})"
        del fns
        _free(device)
        _derive(results.values(), bw)
        RESULTS.extend(results.values())
        return results


def finish_run() -> None:
    """At session end: re-measure each device's copy bandwidth and re-derive the floor fractions
    against the best measurement, so one bandwidth figure serves the whole run."""
    if quick():
        return
    for device in list(_COPY_BW):
        copy_bandwidth(device, remeasure=True)
    groups: dict = {}
    for r in RESULTS:
        groups.setdefault((r.subject, r.group), []).append(r)
    for rows in groups.values():
        bw = _COPY_BW.get(rows[0].config["device"])
        if bw is not None:
            _derive(rows, bw["bytes_per_s"])


def _derive(results, copy_bw: float) -> None:
    """Ratios against the best baseline of the group, floor fraction, throughputs."""
    base = [r for r in results if r.kind == "baseline" and r.status == "ok"]
    best = min(base, key=lambda r: r.median_s) if base else None
    for r in results:
        if r.status != "ok":
            continue
        if best is not None:
            r.best_baseline = best.case
            r.speedup_vs_best_baseline = best.median_s / r.median_s
        if r.floor_bytes:
            r.achieved_bytes_per_s = r.floor_bytes / r.median_s
            r.floor_fraction = r.achieved_bytes_per_s / copy_bw
        if r.flops:
            r.achieved_flops_per_s = r.flops / r.median_s
        if r.items:
            r.items_per_s = r.items / r.median_s


class NullBenchmark:
    """Stands in for pytest-benchmark's fixture where the plugin is not installed."""
    disabled = True

    def __init__(self):
        self.group, self.extra_info = None, {}

    def pedantic(self, target, args=(), kwargs=None, **_):
        return target(*args, **(kwargs or {}))


def _feed_pytest_benchmark(benchmark, res: CaseResult) -> None:
    """Hand the interleaved samples to pytest-benchmark so its table shows them. pytest-benchmark times
    one test at a time and has no public way to take samples measured elsewhere, so this uses its
    stats object directly (stable since pytest-benchmark 3); without it the pytest-benchmark table
    stays empty, with a warning, and the report of the conftest (built from ``RESULTS``) stands alone."""
    benchmark.extra_info.update({
        "median_ms": res.median_s * 1e3,
        "speedup_vs_best_baseline": res.speedup_vs_best_baseline,
        "best_baseline": res.best_baseline,
        "floor_fraction": res.floor_fraction,
        "peak_bytes": res.peak_bytes,
        "peak_method": res.peak_method,
        "iters_per_sample": res.iters,
        "interleaved": True,
    })
    if getattr(benchmark, "disabled", False):
        return
    if hasattr(benchmark, "_make_stats"):
        benchmark._mode = "mdn_fast interleaved harness"
        stats = benchmark._make_stats(res.iters)       # a sample is res.iters calls back to back
        for s in res.samples_s:
            stats.update(s * res.iters)
    else:  # pragma: no cover - a future pytest-benchmark
        warnings.warn("pytest-benchmark has no BenchmarkFixture._make_stats: its table cannot show the "
                      "interleaved samples; see the mdn_fast report below it")
