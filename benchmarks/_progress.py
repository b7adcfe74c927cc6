"""Results that survive a cut-off run, and a time budget the benchmarks respect.

A lent GPU comes for minutes and a command is killed at its limit (SIGKILL: no ``finally`` runs), so a
run must never keep its results in memory until the end:
- every measured group is appended to a JSON-lines log as soon as it is measured (one line per case,
  flushed and fsynced), and the markdown report beside it is rewritten from the whole log;
- a deadline (``MDN_FAST_BENCH_DEADLINE``, seconds since the epoch) is checked before each group: a
  group whose estimated duration does not fit is not started, and the pytest session stops cleanly
  (``pytest.exit``), so the conftest still writes its report;
- ``MDN_FAST_BENCH_RESUME=1`` skips the groups already in the log, so a second call continues.

Environment (all optional; without them nothing here does anything):
- ``MDN_FAST_BENCH_JSONL``: the log, or several paths separated by ``os.pathsep`` (e.g. a persistent one
  in the checkout and a copy under ``$OUT``); the report ``<log>.md`` is written beside each.
- ``MDN_FAST_BENCH_DEADLINE``: epoch seconds after which no new group starts.
- ``MDN_FAST_BENCH_RESUME``: ``1`` to skip the groups already logged.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

#: A subject's first group on this run is assumed to take this long (seconds, its ``torch.compile``
#: baselines included) when deciding whether it still fits the budget; later groups use the longest
#: group of the subject measured so far.
FIRST_GROUP_GUESS_S = {"cuda": 25.0, "cpu": 20.0}
# Per (subject, device) where it differs. entity_attention on a GPU: + the flex baseline's compiles (two
# graphs, one per path, with their backward); on CPU flex runs forward only (torch has no CPU flex
# backward): ~20 s measured for the first B=256 group at load 2. dual_path_block on a GPU: + three
# reduce-overhead compiles (compile-ro and each fused backend's -ro).
FIRST_GROUP_GUESS_S_SUBJECT = {("entity_attention", "cuda"): 40.0, ("dual_path_block", "cuda"): 60.0,
                               ("dual_path_block", "cpu"): 40.0, ("micro_dualnet", "cuda"): 60.0,
                               ("micro_dualnet", "cpu"): 60.0}


def log_paths() -> list[Path]:
    raw = os.environ.get("MDN_FAST_BENCH_JSONL", "")
    return [Path(p) for p in raw.split(os.pathsep) if p]


def deadline() -> float | None:
    raw = os.environ.get("MDN_FAST_BENCH_DEADLINE")
    return float(raw) if raw else None


def read_log(path: Path) -> list[dict]:
    """Every row of a log; a line cut short by a kill (the last one) is ignored."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def done_groups() -> set[tuple[str, str]]:
    """``(subject, group id)`` of every group already logged, when resuming; else empty."""
    if os.environ.get("MDN_FAST_BENCH_RESUME", "0") != "1":
        return set()
    paths = log_paths()
    return {(r["subject"], r["group"]) for r in read_log(paths[0])} if paths else set()


class Budget:
    """Decides whether the next group still fits before the deadline, from the groups timed so far."""

    def __init__(self):
        self._seen: dict[str, float] = {}       # subject -> longest group seen (seconds)

    def fits(self, subject: str, device: str) -> tuple[bool, str]:
        end = deadline()
        if end is None:
            return True, ""
        left = end - time.time()
        first = FIRST_GROUP_GUESS_S_SUBJECT.get((subject, device), FIRST_GROUP_GUESS_S.get(device, 20.0))
        guess = self._seen.get(subject, first)
        if left >= guess:
            return True, ""
        return False, (f"time budget: {left:.0f} s left before the deadline, a {subject} group takes "
                       f"~{guess:.0f} s here")

    def record(self, subject: str, seconds: float) -> None:
        self._seen[subject] = max(self._seen.get(subject, 0.0), seconds)


_ENV: dict = {}


def _environment(device: str) -> dict:
    """Where a row was measured (device name, versions, commit), asked once per device and run."""
    if device not in _ENV:
        from . import _report
        env = _report.environment([device])
        _ENV[device] = {"device": _report.device_label([device], env),
                        **{k: env.get(k) for k in ("torch", "triton", "torch_cuda", "python", "git_commit",
                                                   "git_dirty", "date")}}
    return _ENV[device]


def append(rows: list[dict], copy_bw: dict | None) -> None:
    """Append one measured group to every log and rewrite the markdown report beside it."""
    paths = log_paths()
    if not paths or not rows:
        return
    env, now = _environment(rows[0]["config"]["device"]), time.time()
    text = "".join(json.dumps({**r, "logged_at": now, "copy_bandwidth": copy_bw, "environment": env},
                              default=str) + "\n" for r in rows)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        write_markdown(path)


def write_markdown(path: Path) -> Path:
    """``<log>.md``: the short table (fused ops against each baseline) and the full table of the log."""
    from . import _report, _summary
    rows = read_log(path)
    md = path.with_suffix(".md")
    text = _report.markdown_rows(rows, short=_summary.short_table(rows)) if rows else "no results yet\n"
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, md)
    return md
