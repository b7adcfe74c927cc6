#!/usr/bin/env bash
# Run the CPU test suite on the *oldest* stack we support, the lent GPU machine's: Python 3.12,
# torch 2.11.0, torchvision 0.26.0, triton 3.6.0, numpy 2.5, and no PyAV. The dev/CI venv has the newest
# (Python 3.11, torch 2.14, triton 3.8, numpy 2.4); together the two bound the tested range.
#
#   1. venv   .compat-venv/ (git-ignored) with the pinned stack + the test tools (not av), from PyPI;
#             reused when it exists and holds the same pins (a stamp file records them).
#   2. build  mdn_fast._C for that torch (CPU kernels; writes a cpython-312 .so beside any other one),
#             project editable-installed into the venv (--no-deps, so no av).
#   3. tests  pytest on CPU (Triton through its interpreter), GPU tests skip, av-needing tests skip.
#
# Usage: scripts/compat_check.sh [--quick] [--rebuild] [--no-tests] [-- extra pytest args]
#   --quick     only the stack-sensitive files: Triton kernels (interpreter, AOT GPU compile,
#               torch.compile, opcheck), C++ extension, build info
#   --rebuild   delete the venv first
#   --no-tests  stop after the build
# Environment: COMPAT_VENV (default .compat-venv), COMPAT_PYTHON (a python3.12; default: found via
#   PATH or pyenv), COMPAT_PINS (override the package pins, space-separated).
# Exit status: pytest's (0 green), or 1 when the venv or the build failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${COMPAT_VENV:-$ROOT/.compat-venv}
PINS=${COMPAT_PINS:-"torch==2.11.0 torchvision==0.26.0 triton==3.6.0 numpy==2.5.2"}
# The runtime dependencies not in PINS (tqdm, safetensors), the test tools from pyproject's `test` extra minus av
# (the GPU machine has no PyAV), plus build tools.
TOOLS="tqdm safetensors pytest pytest-benchmark hypothesis scikit-learn matplotlib setuptools wheel ninja"
QUICK_TESTS="tests/ops/test_triton_kernels.py tests/ops/test_cpp_ext.py tests/test_info.py"

quick=0 rebuild=0 run_tests=1 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --rebuild) rebuild=1 ;;
    --no-tests) run_tests=0 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "compat_check: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

now() { date +%s; }
step() { printf '\n==== %s\n' "$*"; }

find_python312() {
  if [ -n "${COMPAT_PYTHON:-}" ]; then echo "$COMPAT_PYTHON"; return; fi
  # A pyenv shim named python3.12 exists even when 3.12 is not the selected version: test it runs.
  if python3.12 -c '' >/dev/null 2>&1; then command -v python3.12; return; fi
  local root; root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  local p; for p in "$root"/versions/3.12*/bin/python3.12; do
    if [ -x "$p" ]; then echo "$p"; return; fi
  done
  echo "compat_check: no Python 3.12 found (set COMPAT_PYTHON=/path/to/python3.12)" >&2; return 1
}

stamp="$VENV/.compat-pins"
want_stamp="$PINS | $TOOLS"
t0=$(now)
if [ "$rebuild" = 1 ]; then rm -rf "$VENV"; fi
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ]; then
  step "venv: reusing $VENV"
else
  step "venv: creating $VENV ($PINS)"
  rm -rf "$VENV"
  PY312=$(find_python312)
  "$PY312" -m venv "$VENV"
  # shellcheck disable=SC2086  # the pin lists are word lists on purpose
  if ! "$VENV/bin/python" -m pip install $PINS $TOOLS; then
    echo "compat_check: FAILED to install the pinned stack" >&2; exit 1
  fi
  echo "$want_stamp" > "$stamp"
fi
PY="$VENV/bin/python"
# The venv first on PATH, as if activated: tests start `python`, `torchrun` and scripts/*.sh subprocesses.
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
# No PyAV, like the GPU machine: a venv built by hand may have pulled it in.
if "$PY" -c 'import av' >/dev/null 2>&1; then
  echo "compat_check: av is installed in $VENV, the GPU machine has none; removing it"
  "$PY" -m pip uninstall -y av
fi
t_venv=$(( $(now) - t0 ))

step "build: mdn_fast._C for this torch, editable install"
t1=$(now)
# Metadata-only editable install (no deps: they are pinned above, and the test extra holds av), then the
# extension in place, so it lands beside the package sources the editable install points at.
if ! MDN_FAST_BUILD_EXT=0 "$PY" -m pip install --no-build-isolation --no-deps -q -e . \
   || ! MDN_FAST_CUDA=0 "$PY" setup.py -q build_ext --inplace; then
  echo "compat_check: BUILD FAILED" >&2; exit 1
fi
t_build=$(( $(now) - t1 ))

# The worktree first on the path, so this checkout is what gets imported whatever else is installed.
export PYTHONPATH="$ROOT"
"$PY" - <<'PYEOF'
import os, sys, torch
if not torch.cuda.is_available():  # as tests/conftest.py does, before anything imports triton
    os.environ.setdefault("TRITON_INTERPRET", "1")
import numpy, torchvision, triton, mdn_fast
print("python", sys.version.split()[0], "| torch", torch.__version__, "| torchvision", torchvision.__version__,
      "| triton", triton.__version__, "| numpy", numpy.__version__)
try:
    import av  # noqa: F401
    print("av: installed (unexpected)")
except ImportError:
    print("av: not installed (as on the GPU machine)")
print("mdn_fast from", mdn_fast.__file__, "| backends", mdn_fast.available_backends())
PYEOF

status=0
t_tests=0
if [ "$run_tests" = 1 ]; then
  if [ "$quick" = 1 ]; then
    step "tests (quick subset)"
    # shellcheck disable=SC2086
    set -- $QUICK_TESTS
  else
    step "tests (full suite)"
    set -- tests/
  fi
  t2=$(now)
  "$PY" -m pytest "$@" -q -p no:cacheprovider "${extra[@]}" || status=$?
  t_tests=$(( $(now) - t2 ))
fi

step "compat_check: exit $status | venv ${t_venv}s, build ${t_build}s, tests ${t_tests}s"
exit $status
