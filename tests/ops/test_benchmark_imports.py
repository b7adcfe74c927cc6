"""No module imports a benchmark file (``benchmarks/test_*.py``).

A benchmark file is a suite pytest collects; what others need from it (inputs, baselines) lives in a
helper module (``benchmarks/_inputs.py``), so changing a suite's cases can never break a test, a tool or
another suite. Scans every ``.py`` file of the checkout (virtual environments and build output aside),
through its syntax tree: ``import``, ``from ... import`` (relative ones resolved against the file's own
package) and ``importlib.import_module`` / ``__import__`` with a literal name."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from tests._paths import REPO

# Not the checkout's own code: environments, build output, caches, run directories.
SKIP_DIRS = {"build", "dist", "runs", "venv", "__pycache__", "node_modules"}


def _is_bench_test(module: str) -> bool:
    parts = module.split(".")
    return len(parts) >= 2 and parts[0] == "benchmarks" and parts[1].startswith("test_")


def bench_test_imports(source: str, rel: Path) -> list[str]:
    """``line: module`` for every import of a ``benchmarks.test_*`` module in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=str(rel))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = list(rel.parent.parts)              # the file's own package
                base = pkg[:len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # ``from benchmarks.test_x import y`` names the module; ``from benchmarks import test_x`` a name
            modules = [prefix] if _is_bench_test(prefix) else [f"{prefix}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__"):
                modules = [node.args[0].value]
        found += [f"{node.lineno}: {m}" for m in modules if _is_bench_test(m)]
    return found


def _python_files():
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for f in files:
            if f.endswith(".py"):
                yield Path(root, f)


@pytest.mark.parametrize("rel, source", [
    ("tests/test_x.py", "from benchmarks.test_entity_attention import entity_mask"),
    ("tests/test_x.py", "import benchmarks.test_routed_merge"),
    ("tests/test_x.py", "from benchmarks import _harness, test_micro_dualnet"),
    ("tools/x.py", "import importlib\nm = importlib.import_module('benchmarks.test_routed_merge')"),
    ("benchmarks/test_routed_merge.py", "from .test_entity_attention import entity_mask"),
    ("benchmarks/test_routed_merge.py", "from . import test_entity_attention"),
    ("benchmarks/sub/x.py", "from ..test_entity_attention import entity_mask"),
])
def test_the_scan_sees_each_way_of_importing_a_benchmark_file(rel, source):
    assert bench_test_imports(source, Path(rel)), source


@pytest.mark.parametrize("rel, source", [
    ("tests/test_x.py", "from benchmarks._inputs import entity_mask"),
    ("benchmarks/test_routed_merge.py", "from ._inputs import entity_mask\nfrom . import _harness as H"),
    ("tests/test_x.py", "from tests.ops.test_entity_attention import x"),   # tests/ is not benchmarks/
    ("tools/gpu_check.py", "ops = ['benchmarks/test_entity_attention.py']"),   # a path given to pytest
])
def test_the_scan_passes_the_allowed_imports(rel, source):
    assert bench_test_imports(source, Path(rel)) == []


def test_no_module_imports_a_benchmark_file():
    files = list(_python_files())
    assert any(p.relative_to(REPO).parts[0] == "benchmarks" for p in files), "the scan found benchmarks/"
    bad = []
    for path in files:
        rel = path.relative_to(REPO)
        bad += [f"{rel}:{hit}" for hit in bench_test_imports(path.read_text(encoding="utf-8"), rel)]
    assert not bad, ("benchmark files (benchmarks/test_*.py) are imported; move what is shared into "
                     "benchmarks/_inputs.py and import it from there:\n  " + "\n  ".join(bad))
