"""The GPU check: what a lent GPU must bring back, most important first, never lost to a cut-off.

``python -m tools.gpu_check [--budget-s 480] [--stages abcde] [--resume] [--rebuild]``
(``scripts/gpu_check.sh`` is the same command). Stages, in priority order:

  a  environment + build of ``mdn_fast._C`` with CUDA (skipped when the built extension already has
     what this machine can use; ``--rebuild`` forces it)
  b  correctness on the device: ``pytest -m gpu tests/`` (CUDA C++ and Triton kernels against the
     reference in bf16/fp16/fp32, masks, strided views, gradients), then ``compute-sanitizer``
     memcheck and racecheck on ``tools.cuda_sanitize`` (every CUDA C++ kernel, fwd and bwd)
  c  paper-size op benchmarks: entity_attention and routed_merge, B=256 T=8 K=6 H=8 Dh=32 D=256, bf16,
     fwd / bwd / fwd+bwd, every backend against eager SDPA, compiled FlexAttention (entity_attention),
     the eager reference and torch.compile
  d  DualPathBlock (also under CUDA graphs: torch.compile mode="reduce-overhead" of the reference and of
     each fused backend) and the pose MicroDualNet training step at the paper size
  e  everything else: the rest of the benchmark matrix

Without a GPU every stage runs its CPU counterpart (fp32, the CPU subset) and skips what needs a GPU,
so the whole script is tested on a CPU machine.

Time: ``--budget-s`` (default 480) is the script's own limit. A stage is not started unless its
minimum fits in what is left; a pytest stage gets the time left (SIGINT at the end, SIGKILL 15 s later);
the benchmark stages stop cleanly between configurations (``benchmarks/_progress.py``), so the script
ends within the budget plus at most one configuration.

Nothing is lost: everything goes, as it happens, to ``.gpu_check/`` in the checkout (git-ignored, kept
between calls on a warm machine) and to ``$OUT/gpu_check/`` when ``$OUT`` is set:
  log.txt        everything printed
  state.json     per stage: status, seconds, note; the run's start and budget
  env.json       device, driver, versions, commit
  tests.jsonl    one line per test outcome (stage b)
  sanitizer.txt  compute-sanitizer's output
  bench.jsonl    one line per benchmark case, appended per configuration
  bench.md       short table + full table, rewritten after every configuration
  bench.png      speed-up plot, redrawn at the end of each benchmark stage
A second call with ``--resume`` continues: finished stages are skipped, benchmark configurations already
in bench.jsonl are not measured again, and the build is reused. The last thing printed is the short
table: each fused op, dtype, median, % of the bandwidth floor, and its ratio to each baseline.

Exit status: 0 every selected stage finished and passed; 1 something failed (build, a test, the
sanitizer, a benchmark case); 3 nothing failed but the budget cut a stage short (run again with --resume).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("MDN_FAST_GPU_CHECK_DIR", REPO / ".gpu_check")).resolve()
FILES = ("log.txt", "state.json", "env.json", "tests.jsonl", "sanitizer.txt", "bench.jsonl", "bench.md",
         "bench.png")
STAGES = "abcde"
TITLES = {"a": "environment + build", "b": "correctness on the device (+ compute-sanitizer)",
          "c": "paper-size op benchmarks", "d": "block and model training step", "e": "everything else"}
# Seconds a stage needs at least to be worth starting, per device (a benchmark stage: one configuration
# with its torch.compile baselines; a build: the measured build time, with margin).
MIN_S = {"cuda": {"build": 240, "a": 15, "b": 90, "c": 40, "d": 60, "e": 30},
         "cpu": {"build": 180, "a": 10, "b": 20, "c": 25, "d": 30, "e": 20}}
# Wall-clock caps of the correctness stage's parts, so stage b cannot eat the benchmarks' budget.
CAP_S = {"cuda": {"tests": 240, "sanitizer": 120}, "cpu": {"tests": 40, "sanitizer": 0}}
GRACE_S = 15
RESERVE_S = 8       # kept for the final report and table


def bench_selection(stage: str, device: str, quick: bool = False) -> list[list[str]]:
    """pytest argument lists of a benchmark stage. Configuration ids look like
    ``fwd-cuda-bf16-B256-T8-<case>`` (``-nomask`` before the case for the unmasked twin); quick mode
    has one tiny fp32 configuration per mode (``B2-T4``)."""
    dt = "bf16" if device == "cuda" and not quick else "fp32"
    gpu = ["-m", "gpu"] if device == "cuda" else []
    ops = ["benchmarks/test_entity_attention.py", "benchmarks/test_routed_merge.py"]
    size = "B2-T4" if quick else "B256-T8"
    if stage == "c":
        return [gpu + ops + ["-k", f"{device}-{dt}-{size}- and not nomask"]]
    if stage == "d":
        # the CPU subset has the block at B=256 forward only and the model step at B=16
        block_k = f"{device}-{dt}-{size}- and not nomask" if device == "cuda" or quick else f"fwd-cpu-{dt}-{size}-"
        model_k = f"pose-train_step-{device}-{dt}-" + (size if device == "cuda" or quick else "B16-T8") + "-"
        return [gpu + ["benchmarks/test_dual_path_block.py", "-k", block_k],
                gpu + ["benchmarks/test_micro_dualnet.py", "-k", model_k]]
    if stage == "e":
        return [gpu + ["benchmarks/"]]
    raise ValueError(stage)


class Check:
    def __init__(self, args):
        self.args = args
        self.t0 = time.time()
        self.deadline = self.t0 + args.budget_s
        self.dirs = [STATE_DIR] + ([Path(os.environ["OUT"]) / "gpu_check"] if os.environ.get("OUT") else [])
        self.py = os.environ.get("PYTHON", sys.executable)
        self.failed = False
        self.cut = False
        self.child: subprocess.Popen | None = None
        self._lock = threading.Lock()
        if not args.resume and STATE_DIR.exists():
            old = STATE_DIR.with_name(".gpu_check.prev")
            shutil.rmtree(old, ignore_errors=True)
            STATE_DIR.rename(old)               # the previous run stays readable until the next one
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        if args.resume:                         # $OUT starts empty on every call: bring it up to date
            for d in self.dirs[1:]:
                for name in FILES:
                    if (STATE_DIR / name).exists():
                        shutil.copy2(STATE_DIR / name, d / name)
        self.state = self._read_json("state.json") or {"stages": {}}
        self.state.setdefault("calls", []).append({"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                                   "budget_s": args.budget_s, "stages": args.stages})
        self.device = "cpu"

    # -- files ------------------------------------------------------------------------------------
    def _read_json(self, name):
        p = STATE_DIR / name
        try:
            return json.loads(p.read_text()) if p.exists() else None
        except json.JSONDecodeError:
            return None

    def write(self, name: str, text: str, append: bool = False) -> None:
        for d in self.dirs:
            with open(d / name, "a" if append else "w") as f:
                f.write(text)

    def save_state(self) -> None:
        self.write("state.json", json.dumps(self.state, indent=1))

    def say(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)
            self.write("log.txt", text + "\n", append=True)

    def left(self) -> float:
        return self.deadline - time.time()

    # -- child processes --------------------------------------------------------------------------
    def run(self, cmd: list[str], *, limit_s: float, env: dict | None = None, log: str | None = None) -> int:
        """Run ``cmd``, streaming its output to the console, log.txt (and ``log``); SIGINT at
        ``limit_s``, SIGKILL ``GRACE_S`` later. Returns the exit status (124 when it was stopped)."""
        self.say("+ " + shlex.join(cmd) + f"   [limit {limit_s:.0f} s]")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.child = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, errors="replace")
        # same process group as this script: a `timeout -s KILL` around the script reaches the child too

        def pump(stream):                 # a thread, so the time limit is checked while output waits
            for line in stream:
                self.say(line.rstrip("\n"))
                if log:
                    self.write(log, line, append=True)

        reader = threading.Thread(target=pump, args=(self.child.stdout,), daemon=True)
        reader.start()
        end, stopped = time.time() + max(limit_s, 1.0), False
        while True:
            try:
                self.child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.time() > end and not stopped:
                self.say(f"[gpu_check] time limit of this step reached: SIGINT, SIGKILL in {GRACE_S} s")
                self.child.send_signal(signal.SIGINT)
                stopped, end = True, time.time() + GRACE_S
            elif stopped and time.time() > end:
                self.child.kill()
        reader.join(timeout=5)
        rc = self.child.returncode
        self.child = None
        return 124 if stopped else rc

    def probe(self) -> dict:
        """Device, versions and what ``_C`` holds, asked of a fresh interpreter."""
        # mdn_fast.info.collect() is the package's own report (versions, backends, what _C holds); the
        # GPU's properties and numpy's version are what the results need beside it.
        code = r"""
import json
out = {}
try:
    from mdn_fast.info import collect
    out.update(collect())
    import numpy, torch
    out["numpy"] = numpy.__version__
    out["cuda"] = torch.cuda.is_available()
    if out["cuda"]:
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                   memory_gib=round(p.total_memory / 2**30, 1))
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"
print("PROBE" + json.dumps(out, default=str))
"""
        res = subprocess.run([self.py, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
        line = next((l for l in res.stdout.splitlines() if l.startswith("PROBE")), None)
        if line is None:
            return {"error": (res.stderr or res.stdout)[-2000:]}
        return json.loads(line[5:])

    # -- stages -----------------------------------------------------------------------------------
    def stage_a(self) -> str:
        env = self.probe()
        self.device = "cuda" if env.get("cuda") else "cpu"
        for tool, args in (("nvidia-smi", ["--query-gpu=name,driver_version,clocks.max.sm,memory.total",
                                           "--format=csv,noheader"]), ("nvcc", ["--version"])):
            exe = shutil.which(tool)
            if exe:
                try:
                    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30).stdout
                    env[tool] = out.strip().splitlines()[-1] if out.strip() else ""
                except Exception as e:
                    env[tool] = f"failed: {e}"
        env["compute_sanitizer"] = self.sanitizer_path()
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                           text=True).stdout.strip() or None
        env["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.write("env.json", json.dumps(env, indent=1))
        self.say(json.dumps(env, indent=1))
        build = env.get("cpp_build") or {}
        need = self.args.rebuild or not build or (self.device == "cuda" and build.get("cuda") != "1")
        if os.environ.get("SKIP_BUILD") == "1":
            need = False
        if not need:
            self.say(f"[gpu_check] build skipped: mdn_fast._C is there ({build or 'no _C; SKIP_BUILD=1'})")
            return "done"
        if self.left() < MIN_S[self.device]["build"]:
            self.say(f"[gpu_check] build NOT started: {self.left():.0f} s left, it needs "
                     f"~{MIN_S[self.device]['build']} s")
            return "skipped (budget)"
        cuda = "1" if self.device == "cuda" else "0"
        rc = self.run([self.py, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-e", "."],
                      limit_s=self.left() - RESERVE_S,
                      env={"MDN_FAST_CUDA": cuda, "MAX_JOBS": str(os.cpu_count() or 4)})
        if rc != 0:
            return "failed (build)" if rc != 124 else "cut (budget)"
        after = self.probe()
        self.write("env.json", json.dumps({**env, "cpp_build": after.get("cpp_build"),
                                           "backends": after.get("backends")}, indent=1))
        self.say(f"[gpu_check] built: {after.get('cpp_build')}")
        return "done"

    def sanitizer_path(self) -> str | None:
        exe = shutil.which("compute-sanitizer")
        if exe:
            return exe
        nvcc = shutil.which("nvcc")
        for d in ([Path(nvcc).parent] if nvcc else []) + [Path("/usr/local/cuda/bin")]:
            if (d / "compute-sanitizer").exists():
                return str(d / "compute-sanitizer")
        return None

    def stage_b(self) -> str:
        caps = CAP_S[self.device]
        log_env = {"MDN_FAST_TEST_LOG": os.pathsep.join(str(d / "tests.jsonl") for d in self.dirs)}
        # CPU fallback: the GPU cases skip (the point is that the stage runs); the CPU kernels have CI.
        cmd = [self.py, "-m", "pytest", "-m", "gpu", "tests/", "-q", "-p", "no:cacheprovider"]
        cmd += ["-x"] if self.args.fail_fast else []
        rc = self.run(cmd, limit_s=min(caps["tests"], self.left() - RESERVE_S), env=log_env)
        status = {0: "done", 5: "done (no tests selected)", 124: "cut (budget)"}.get(rc, f"failed (pytest exit {rc})")
        if self.device != "cuda":
            self.say("[gpu_check] compute-sanitizer skipped: no CUDA device")
            return status
        san = self.sanitizer_path()
        if san is None:
            self.say("[gpu_check] compute-sanitizer not found (PATH, next to nvcc, /usr/local/cuda/bin)")
            return status + "; sanitizer missing"
        per_tool = max(20.0, min(caps["sanitizer"], self.left() - RESERVE_S) / 2)
        for tool in ("memcheck", "racecheck"):
            if self.left() < 30:
                return status + f"; {tool} not started (budget)"
            self.write("sanitizer.txt", f"==== compute-sanitizer --tool {tool}\n", append=True)
            rc = self.run([san, "--tool", tool, "--error-exitcode", "3", "--print-limit", "30",
                           self.py, "-m", "tools.cuda_sanitize"], limit_s=per_tool,
                          env={"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}, log="sanitizer.txt")
            verdict = {0: "clean", 3: "ERRORS", 1: "wrong results", 124: "cut (budget)"}.get(rc, f"exit {rc}")
            self.say(f"[gpu_check] compute-sanitizer {tool}: {verdict}")
            if rc not in (0, 124):
                status = f"failed ({tool}: {verdict})" if status == "done" else status + f"; {tool}: {verdict}"
            elif rc == 124 and status == "done":
                status = "cut (budget)"
        return status

    def bench_stage(self, stage: str) -> str:
        env = {"MDN_FAST_BENCH_JSONL": os.pathsep.join(str(d / "bench.jsonl") for d in self.dirs),
               "MDN_FAST_BENCH_DEADLINE": str(self.deadline - RESERVE_S),
               "MDN_FAST_BENCH_RESUME": "1",     # a configuration in the log is never measured twice
               "MDN_FAST_BENCH_RESULTS": str(STATE_DIR / "reports")}
        if self.args.quick:
            env["MDN_FAST_BENCH_QUICK"] = "1"
        status = "done"
        sels = bench_selection(stage, self.device, self.args.quick)
        if self.args.bench_paths:     # the older interface: BENCH_PATHS + pytest arguments, as one stage
            if stage != "c":
                return "skipped (BENCH_PATHS given: stage c ran them)"
            sels = [(["-m", "gpu"] if self.device == "cuda" else []) + self.args.bench_paths]
        for sel in sels:
            sel = sel + self.args.pytest_args
            if self.left() < MIN_S[self.device][stage]:
                return "cut (budget)"
            # the harness stops between configurations at the deadline; the hard limit only catches a
            # configuration that overruns its estimate by more than a minute
            rc = self.run([self.py, "-m", "pytest", *sel, "-q", "-p", "no:cacheprovider"],
                          limit_s=self.left() - RESERVE_S + 60, env=env)
            # rc 2: stopped by the budget between configurations (pytest.exit); 124: stopped by us
            if rc in (2, 124):
                status = "cut (budget)"
                break
            if rc not in (0, 5):
                status = f"failed (pytest exit {rc})"
        self.report()
        return status

    # -- report -----------------------------------------------------------------------------------
    def report(self) -> None:
        """bench.md and bench.png regenerated from whatever bench.jsonl holds."""
        log = STATE_DIR / "bench.jsonl"
        if not log.exists():
            return
        try:
            from benchmarks import _progress, _report
            rows = _progress.read_log(log)
            for d in self.dirs:
                if d != STATE_DIR:
                    shutil.copy2(log, d / "bench.jsonl")
                _progress.write_markdown(d / "bench.jsonl")
                if rows:
                    env = rows[0].get("environment", {})
                    _report.plot(rows, d / "bench.png", f"{env.get('device', '?')}, {env.get('date', '')}")
        except Exception as e:   # the JSON lines are the truth; a failed plot must not hide them
            self.say(f"[gpu_check] report failed: {type(e).__name__}: {e}")

    def short_table(self) -> str:
        from benchmarks import _progress, _summary
        rows = _progress.read_log(STATE_DIR / "bench.jsonl")
        return _summary.short_table(rows) if rows else "(no benchmark results)"

    # -- the run ----------------------------------------------------------------------------------
    def main(self) -> int:
        skip = set()
        if os.environ.get("SKIP_TESTS") == "1":
            skip.add("b")
        if os.environ.get("SKIP_BENCH") == "1":
            skip |= set("cde")
        self.say(f"[gpu_check] {time.strftime('%H:%M:%S')} budget {self.args.budget_s:.0f} s, stages "
                 f"{self.args.stages}{', resume' if self.args.resume else ''}; results in "
                 + ", ".join(str(d) for d in self.dirs))
        for st in self.args.stages:
            prev = self.state["stages"].get(st, {})
            if st != "a" and self.args.resume and prev.get("status", "").startswith("done"):
                self.say(f"\n==== stage {st}: {TITLES[st]}: done by an earlier call, skipped")
                continue
            if st in skip:
                self.say(f"\n==== stage {st}: {TITLES[st]}: skipped (SKIP_* set)")
                continue
            need = MIN_S[self.device][st]
            if self.left() < need:
                self.say(f"\n==== stage {st}: {TITLES[st]}: NOT started, {self.left():.0f} s left, needs ~{need} s")
                self.state["stages"][st] = {**prev, "status": "not started (budget)"}
                self.cut = True
                self.save_state()
                continue
            self.say(f"\n==== stage {st}: {TITLES[st]} ({self.left():.0f} s left)")
            t = time.time()
            status = {"a": self.stage_a, "b": self.stage_b}.get(st, lambda: self.bench_stage(st))()
            secs = time.time() - t
            self.state["stages"][st] = {"status": status, "seconds": round(secs + prev.get("seconds", 0), 1),
                                        "device": self.device}
            self.save_state()
            self.say(f"==== stage {st}: {status} in {secs:.0f} s")
            self.failed |= status.startswith("failed") or "ERRORS" in status
            self.cut |= "budget" in status
        self.report()
        self.say("\n==== stages")
        for st in STAGES:
            s = self.state["stages"].get(st)
            took = f" ({s['seconds']} s)" if s and s.get("seconds") is not None else ""
            self.say(f"  {st} {TITLES[st]:<50} {(s['status'] + took) if s else '-'}")
        self.say(f"\n==== short table ({time.time() - self.t0:.0f} s since start)\n" + self.short_table())
        return 1 if self.failed else (3 if self.cut else 0)

    def interrupted(self, signum, _frame):
        """SIGTERM/SIGINT: stop the child, keep everything written so far, print the table."""
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
        self.say(f"[gpu_check] signal {signum}: stopping; results so far are in {', '.join(map(str, self.dirs))}")
        self.report()
        self.say(self.short_table())
        sys.exit(130)


def parse(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="the script's own time limit in seconds (default 480: one 10-minute command)")
    ap.add_argument("--stages", default=STAGES,
                    help="which stages, in order (default abcde); stage a (environment, build if needed) always runs")
    ap.add_argument("--resume", action="store_true",
                    help="continue the previous run: skip finished stages and measured configurations")
    ap.add_argument("--rebuild", action="store_true", help="build mdn_fast._C even if it is there")
    ap.add_argument("--fail-fast", action="store_true", help="stage b stops at the first failing test")
    ap.add_argument("--quick", action="store_true", help="benchmarks at tiny sizes, untimed (tests the script)")
    args, extra = ap.parse_known_args(argv)
    # The older interface still works: extra arguments (e.g. ``-k B256-T8``) go to every benchmark
    # pytest call, and ``BENCH_PATHS`` replaces the benchmark stages' selections.
    args.pytest_args = extra
    args.bench_paths = os.environ.get("BENCH_PATHS", "").split()
    bad = set(args.stages) - set(STAGES)
    if bad or not args.stages:
        ap.error(f"--stages: letters from {STAGES!r}, got {args.stages!r}")
    if not args.budget_s > 0:
        ap.error(f"--budget-s: a positive number of seconds, got {args.budget_s}")
    args.stages = "a" + args.stages.replace("a", "")   # a finds the device the other stages select for
    return args


def main(argv=None) -> int:
    args = parse(argv)
    check = Check(args)
    signal.signal(signal.SIGTERM, check.interrupted)
    signal.signal(signal.SIGINT, check.interrupted)
    return check.main()


if __name__ == "__main__":
    sys.exit(main())
