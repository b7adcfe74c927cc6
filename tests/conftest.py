"""Test-session set-up. Triton kernels run on the CPU through the interpreter when no GPU is present;
the variable must be set before triton compiles anything, so it is set here, before any test module."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The interpreter's bf16 tl.dot multiplies bit patterns (upstream bug): fixed for the tests only, which lets
# the Triton backend run bf16 entity_attention here (tests/ops/_triton_interp_bf16.py; a no-op, saying why in
# the header, where Triton is missing or its interpreter differs).
if os.environ.get("TRITON_INTERPRET") == "1":
    from tests.ops import _triton_interp_bf16
    _triton_interp_bf16.install()


def pytest_report_header(config):
    if os.environ.get("TRITON_INTERPRET") == "1":
        return f"Triton interpreter bf16: {_triton_interp_bf16.STATUS}"
    return None


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    """``MDN_FAST_TEST_LOG`` (paths separated by ``os.pathsep``): one JSON line per test outcome, written
    as each test ends, so a run killed at a time limit (the GPU check) still says what passed."""
    paths = os.environ.get("MDN_FAST_TEST_LOG")
    if not paths or (report.when != "call" and report.outcome == "passed"):
        return
    import json
    detail = ""
    if report.failed:
        detail = str(report.longrepr)[-3000:]
    elif report.skipped and isinstance(report.longrepr, tuple):
        detail = str(report.longrepr[2])
    line = json.dumps({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                       "duration_s": round(report.duration, 4), "detail": detail}) + "\n"
    for path in paths.split(os.pathsep):
        with open(path, "a") as f:
            f.write(line)
