"""pytest configuration of the benchmark suites (``pytest benchmarks/``).

- ``--quick`` (or ``MDN_FAST_BENCH_QUICK=1``): tiny sizes, each case built and called once, untimed
  (pytest-benchmark is switched to ``--benchmark-disable``); the report goes to a temporary directory.
- ``--bench-full`` (or ``MDN_FAST_BENCH_FULL=1``): the full GPU matrix on CPU too.
- ``--bench-results DIR`` (or ``MDN_FAST_BENCH_RESULTS``): where the report goes (default
  ``benchmarks/results/``).
- The benchmark files are collected only when ``benchmarks/`` (or a file in it) is named on the
  command line, so ``pytest``, ``pytest .`` and ``pytest tests/`` never run them; ``pytest benchmarks/``
  names only this directory, so it never collects ``tests/``. ``benchmarks`` is a package, so its
  ``test_entity_attention`` never clashes with the one in ``tests/`` when both run.
- glibc's malloc is told to keep freed memory (no trimming, no per-allocation mmap): otherwise a
  process can fall into fresh page-mapping of every 12 MB output and every case, baselines included,
  pays page faults (seen here: eager routed_merge 2.8 ms -> 9.7 ms between two runs).
- At session finish: the report (JSON, markdown, PNG; see ``_report``), its table printed last.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from . import _harness, _report

_HERE = Path(__file__).resolve().parent
_REPORT: dict = {}


def pytest_addoption(parser):
    g = parser.getgroup("mdn_fast benchmarks")
    g.addoption("--quick", action="store_true", default=False,
                help="mdn_fast benchmarks: tiny sizes, one untimed call per case (CI). Same as MDN_FAST_BENCH_QUICK=1.")
    g.addoption("--bench-full", action="store_true", default=False,
                help="mdn_fast benchmarks: the full matrix on CPU too. Same as MDN_FAST_BENCH_FULL=1.")
    g.addoption("--bench-results", default=None, metavar="DIR",
                help="mdn_fast benchmarks: report directory (default benchmarks/results/, quick: a temp dir).")


def _steady_allocator() -> None:
    """``mallopt`` so large CPU tensors reuse memory instead of mapping fresh pages on each call
    (same effect as ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` set before start). glibc only."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)   # glibc's largest accepted value on 64-bit
        libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):
        pass


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    _steady_allocator()
    # Before the test modules are imported: their parameter matrices read these switches.
    if config.getoption("--quick"):
        os.environ["MDN_FAST_BENCH_QUICK"] = "1"
    if config.getoption("--bench-full"):
        os.environ["MDN_FAST_BENCH_FULL"] = "1"
    if _harness.quick():
        config.option.benchmark_disable = True


def _named_on_command_line(config) -> bool:
    for arg in config.args:
        p = (Path(config.invocation_params.dir) / arg.split("::")[0]).resolve()
        if p == _HERE or _HERE in p.parents:
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    if collection_path.parent == _HERE and collection_path.name.startswith("test_") \
            and not _named_on_command_line(config):
        return True
    return None


try:
    import pytest_benchmark  # noqa: F401  (its plugin provides the ``benchmark`` fixture)
except ImportError:  # a bare GPU box: time with the harness alone, the report stands without the table
    @pytest.fixture
    def benchmark():
        return _harness.NullBenchmark()


@pytest.fixture(scope="session")
def bench_runner():
    return _harness.GroupRunner()


def _results_dir(config) -> Path:
    if _harness.quick():
        return Path(tempfile.gettempdir()) / "mdn_fast_bench_quick"
    d = config.getoption("--bench-results") or os.environ.get("MDN_FAST_BENCH_RESULTS")
    return Path(d) if d else _HERE / "results"


def pytest_sessionfinish(session, exitstatus):
    if not _harness.RESULTS:
        return
    try:
        _harness.finish_run()
        _REPORT.update(_report.write(_harness.RESULTS, _harness.RUN_INFO, _harness._COPY_BW,
                                     _results_dir(session.config), _harness.quick()))
    except Exception as e:  # the report must never hide the test outcome
        _REPORT["error"] = f"{type(e).__name__}: {e}"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if not _REPORT:
        return
    tr = terminalreporter
    tr.section("mdn_fast benchmark report")
    if "error" in _REPORT:
        tr.write_line(f"report failed: {_REPORT['error']}")
        return
    tr.write_line(f"written: {_REPORT['json']}, {_REPORT['md']}" + (f", {_REPORT['png']}" if _REPORT['png'] else ""))
    tr.write(_REPORT["markdown"])
