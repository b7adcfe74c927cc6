"""The C++ unit tests of csrc/common and the host kernels (csrc/tests/test_common_math.cpp: dtype
conversions, the online softmax, the router math), compiled from the checkout and run, so `pytest tests/`
runs them too (CMake's ctest runs the same file)."""
import glob
import os
import shutil
import subprocess

import pytest
from tests._paths import REPO

ROOT = str(REPO)


def test_common_math_unit_tests(tmp_path):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        pytest.skip("no C++ compiler")
    exe = str(tmp_path / "test_common_math")
    srcs = [os.path.join(ROOT, "csrc", "tests", "test_common_math.cpp")] + sorted(
        glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))
    r = subprocess.run([cxx, "-std=c++17", "-O0", "-I", os.path.join(ROOT, "csrc"), *srcs, "-o", exe],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    run = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "all checks passed" in run.stdout
