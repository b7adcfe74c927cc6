"""``python -m mdn_fast.info`` runs anywhere (no GPU needed) and names every backend."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mdn_fast.ops._backends import BACKENDS


def _info(**env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mdn_fast.info"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_info_runs_and_names_each_backend():
    r = _info()
    assert r.returncode == 0, r.stderr
    for name in BACKENDS:
        assert any(line.split()[:1] == [name] for line in r.stdout.splitlines()), f"{name} missing:\n{r.stdout}"
    for key in ("torch", "python", "triton", "nvcc", "torch_cuda"):
        assert key in r.stdout


def test_info_reports_extension_build_or_why_missing():
    from mdn_fast.ops import cpp_backend

    r = _info()
    assert r.returncode == 0, r.stderr
    if cpp_backend.unavailable_reason() is None:
        assert "mdn_fast._C" in r.stdout and "cuda" in r.stdout
    else:
        assert "cpp" in r.stdout and "unavailable" in r.stdout


@pytest.mark.parametrize("env", [{"MDN_FAST_DISABLE_C": "1"}], ids=["no_C"])
def test_info_without_extension(env):
    r = _info(**env)
    assert r.returncode == 0, r.stderr
    line = next(line for line in r.stdout.splitlines() if line.split()[:1] == ["cpp"])
    assert "unavailable" in line and "MDN_FAST_DISABLE_C" in line
