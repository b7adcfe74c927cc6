"""The GPU check keeps what it measured when it is cut off, respects its time budget, and resumes.

Runs the benchmark suites in quick mode (tiny sizes, untimed) in subprocesses, as ``scripts/gpu_check.sh``
does, on whatever device is here (CPU in CI: every stage has a CPU counterpart).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests._paths import REPO


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDN_FAST_BENCH")}
    env.pop("OUT", None)
    return {**env, "MDN_FAST_BENCH_QUICK": "1", "PYTHONUNBUFFERED": "1", **extra}


def _bench(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_routed_merge.py", "-q",
                           "-p", "no:cacheprovider", "-k", "cpu", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_group_is_logged_as_measured_and_resume_skips_it(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "out" / "b.jsonl"
    env = _env(MDN_FAST_BENCH_JSONL=f"{a}{os.pathsep}{b}")
    res = _bench(env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = _rows(a)
    assert rows and rows == _rows(b), "both logs hold the same rows"
    groups = {r["group"] for r in rows}
    assert len(groups) == 3, groups                                  # fwd, bwd, fwd+bwd
    assert {r["case"] for r in rows} >= {"eager", "compile", "cpp"}
    assert all(r["environment"]["torch"] for r in rows)
    md = a.with_suffix(".md").read_text()
    assert "| op | config | backend |" in md and "routed_merge" in md

    res = _bench({**env, "MDN_FAST_BENCH_RESUME": "1"})
    assert res.returncode == 0, res.stdout[-3000:]
    assert "already measured by an earlier call" in res.stdout + res.stderr or "skipped" in res.stdout
    assert len(_rows(a)) == len(rows), "a resumed run measures nothing twice"


def test_deadline_stops_cleanly_before_the_next_group(tmp_path):
    log = tmp_path / "a.jsonl"
    res = _bench(_env(MDN_FAST_BENCH_JSONL=str(log), MDN_FAST_BENCH_DEADLINE=str(time.time() - 1)))
    assert res.returncode == 2, res.stdout[-3000:]                   # pytest.exit between groups
    assert "time budget" in res.stdout
    assert not any(r["status"] == "untimed" for r in _rows(log)), "nothing ran past the deadline"


def test_gpu_check_script_runs_its_stages_on_cpu_and_prints_the_short_table_last(tmp_path):
    if not (REPO / "tools" / "gpu_check.py").exists():
        pytest.fail("tools/gpu_check.py missing")
    state, out = tmp_path / "state", tmp_path / "out"
    env = _env(MDN_FAST_GPU_CHECK_DIR=str(state), OUT=str(out), SKIP_BUILD="1")
    env.pop("MDN_FAST_BENCH_QUICK")
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--quick", "--stages", "c", "--budget-s", "200"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    tail = res.stdout[-4000:] + res.stderr[-2000:]
    assert res.returncode == 0, tail
    st = json.loads((state / "state.json").read_text())
    assert st["stages"]["a"]["status"] == "done" and st["stages"]["c"]["status"] == "done", st
    assert "b" not in st["stages"]
    for d in (state, out / "gpu_check"):
        rows = _rows(d / "bench.jsonl")
        assert {r["subject"] for r in rows} == {"entity_attention", "routed_merge"}, d
        assert (d / "log.txt").exists() and (d / "env.json").exists() and (d / "bench.md").exists()
    last = res.stdout.strip().splitlines()
    head = max(i for i, line in enumerate(last) if line.startswith("==== short table"))
    assert last[head + 1].startswith("| op | config | backend | median ms | % floor |"), last[head:]

    # a second call resumes: stage c is done, nothing is measured again
    n = len(_rows(state / "bench.jsonl"))
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--quick", "--stages", "c", "--resume"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "done by an earlier call, skipped" in res.stdout
    assert len(_rows(state / "bench.jsonl")) == n
    assert len(_rows(out / "gpu_check" / "bench.jsonl")) == n, "$OUT gets the earlier results back"


def test_gpu_check_refuses_bad_arguments():
    res = subprocess.run([sys.executable, "-m", "tools.gpu_check", "--stages", "xyz"], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--stages" in res.stderr
    res = subprocess.run([sys.executable, "-m", "tools.gpu_check", "--budget-s", "nan"], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--budget-s" in res.stderr
