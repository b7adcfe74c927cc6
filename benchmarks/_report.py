"""The run's report: JSON (everything, samples included), a markdown table and a PNG plot.

Files: ``<dir>/<device>-<YYYYmmdd-HHMMSS>.{json,md,png}`` where ``<dir>`` is ``benchmarks/results/``,
or ``MDN_FAST_BENCH_RESULTS`` / ``--bench-results`` when given; quick mode writes to a temporary
directory so CI never dirties the tree. Columns of the table:
- ``median``: median time per call over the interleaved rounds (``±`` half the inter-quartile range);
- ``vs best baseline``: best baseline median / this median (> 1: faster than anything a user had);
- ``floor``: (floor bytes / median) / copy bandwidth of the device measured in this run (DRAM copy
  bandwidth: a working set that stays in the caches, e.g. routed_merge at B=16 on CPU, can exceed 100%);
- ``peak MB``: peak extra memory of one call (see ``_harness.peak_memory`` for how, per device);
- ``extra``: achieved TFLOP/s (block) or clips/s (model).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except Exception:
        return None


def environment(devices) -> dict:
    """Machine and software the numbers came from. Queries CUDA only when a CUDA case ran."""
    try:
        import triton
        triton_version = triton.__version__
    except Exception as e:
        triton_version = f"not importable ({type(e).__name__})"
    import mdn_fast
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    env = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git_commit": commit, "git_dirty": bool(dirty) if dirty is not None else None,
        "python": sys.version.split()[0], "torch": torch.__version__, "triton": triton_version,
        "torch_cuda": torch.version.cuda, "mdn_fast": mdn_fast.__version__,
        "available_backends": mdn_fast.available_backends(),
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_avg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if "cuda" in devices and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "memory_bytes": p.total_memory, "capability": f"{p.major}.{p.minor}",
                      "cudnn": torch.backends.cudnn.version()}
    return env


def device_label(devices, env) -> str:
    if "cuda" in devices and "gpu" in env:
        return env["gpu"]["name"]
    return env["cpu_model"]


def _fmt_time(s):
    if s is None:
        return "-"
    for unit, f in (("s", 1.0), ("ms", 1e3), ("us", 1e6)):
        if s * f >= 1.0 or unit == "us":
            return f"{s * f:.3g} {unit}"


def markdown(results, env, copy_bw, quick: bool) -> str:
    """The table of every case, grouped per configuration, best-baseline ratio and floor fraction."""
    lines = []
    bw = ", ".join(f"{d} {v['bytes_per_s'] / 1e9:.1f} GB/s (measured "
                   f"{', '.join(f'{m / 1e9:.1f}' for m in v['measurements'])})" for d, v in copy_bw.items())
    lines.append(f"mdn_fast benchmarks: {env['date']}, commit {env['git_commit'] or '?'}"
                 f"{' (dirty)' if env.get('git_dirty') else ''}")
    dev = env.get("gpu", {}).get("name", "")
    lines.append(f"CPU {env['cpu_model']} ({env['cpu_count']} cores, torch threads {env['torch_threads']})"
                 f"{', GPU ' + dev if dev else ''}; torch {env['torch']}, triton {env['triton']}, "
                 f"python {env['python']}; copy bandwidth {bw or 'not measured'}; "
                 f"load avg start {env.get('load_avg_start')}, end {env.get('load_avg_end')}")
    if quick:
        lines.append("QUICK MODE: tiny sizes, each case called once, untimed (no ratios).")
    lines.append("")
    lines.append("floor = (bytes that must move / median) / copy bandwidth; > 100% means the working set "
                 "stayed in the caches. vs best baseline = best baseline median / median.")
    lines.append("")
    lines.append(table([r.as_dict() for r in results]))
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    """The markdown table of case results (``CaseResult.as_dict()`` rows, e.g. read back from a log)."""
    lines = ["| subject | config | case | median | vs best baseline | floor | peak MB | extra |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] == "ok":
            med = f"{_fmt_time(r['median_s'])} ±{_fmt_time(r['iqr_s'] / 2)}"
            sp = r["speedup_vs_best_baseline"]
            ratio = (f"{sp:.2f}x" + (" (best)" if r["case"] == r["best_baseline"] else "")) if sp is not None else "-"
            floor = f"{r['floor_fraction']:.1%}" if r["floor_fraction"] is not None else "-"
            peak = f"{r['peak_bytes'] / 2**20:.1f}" if r["peak_bytes"] is not None else "-"
            extra = []
            if r["achieved_flops_per_s"]:
                extra.append(f"{r['achieved_flops_per_s'] / 1e12:.3g} TFLOP/s")
            if r["items_per_s"]:
                extra.append(f"{r['items_per_s']:.4g} clips/s")
            row = [r["subject"], r["group"], f"{r['case']} ({r['kind']})", med, ratio, floor, peak, ", ".join(extra)]
        else:
            why = r["reason"].splitlines()[0][:110] if r["reason"] else ""
            row = [r["subject"], r["group"], f"{r['case']} ({r['kind']})", r["status"], "-", "-", "-",
                   why.replace("|", "/")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def markdown_rows(rows: list[dict], short: str = "") -> str:
    """Header line (device, versions, commit of the first row), ``short`` (a summary table), and the
    table of every case, for a JSON-lines log."""
    env = rows[0].get("environment", {}) if rows else {}
    head = (f"mdn_fast benchmarks (log): {env.get('device', '?')}; torch {env.get('torch', '?')}, "
            f"triton {env.get('triton', '?')}; commit {str(env.get('git_commit'))[:10]}; {len(rows)} cases")
    return head + "\n\n" + (short + "\n\n" if short else "") + table(rows)


def plot(results, path: Path, title: str) -> bool:
    """Horizontal bars: speed-up over the best baseline per case (log scale), one row per case.
    ``results``: ``CaseResult`` objects or their dicts."""
    rows = [r if isinstance(r, dict) else r.as_dict() for r in results]
    rows = [SimpleNamespace(**r) for r in rows if r["status"] == "ok" and r["speedup_vs_best_baseline"]]
    if not rows:
        return False
    try:
        import matplotlib
    except ImportError:  # the JSON and markdown still say everything
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"eager": "#9e9e9e", "compile": "#5c6bc0", "sdpa": "#26a69a", "flex": "#8d6e63",
              "compile-ro": "#7e57c2"}
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.22 * len(rows) + 1.2)))
    labels = [f"{r.subject} {r.group} {r.case}" for r in rows]
    vals = [r.speedup_vs_best_baseline for r in rows]
    ax.barh(range(len(rows)), vals, color=[colors.get(r.case, "#ef6c00") for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    lo, hi = min(vals + [1.0]) / 1.5, max(vals + [1.0]) * 1.5
    ticks = [2.0 ** e for e in range(-10, 11) if lo <= 2.0 ** e <= hi]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.set_xticks([], minor=True)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("speed-up vs best baseline of the same configuration (median time ratio, log)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results, run_info, copy_bw, out_dir: Path, quick: bool) -> dict:
    """Write JSON, markdown and PNG; return ``{"json": path, "md": path, "png": path|None, "markdown": text}``."""
    devices = sorted({r.config["device"] for r in results})
    env = environment(devices)
    env["load_avg_start"] = run_info.get("load_avg_start")
    label = "-".join(devices) or "none"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"{label}-{stamp}"
    text = markdown(results, env, copy_bw, quick)
    payload = {"environment": env, "device": device_label(devices, env), "quick": quick,
               "copy_bandwidth": copy_bw, "results": [r.as_dict() for r in results]}
    base.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
    base.with_suffix(".md").write_text(text)
    png = base.with_suffix(".png")
    has_png = plot(results, png, f"{device_label(devices, env)}, {env['date']}")
    return {"json": base.with_suffix(".json"), "md": base.with_suffix(".md"),
            "png": png if has_png else None, "markdown": text}
