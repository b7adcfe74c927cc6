#!/usr/bin/env bash
# One command for a machine with a CUDA GPU (offline is fine):
#   1. build mdn_fast._C with its CUDA kernels   (MDN_FAST_CUDA=1 pip install --no-build-isolation --no-deps -e .)
#   2. the GPU test suite                        (pytest -m gpu tests/)
#   3. the benchmarks on cuda                    (pytest -m gpu benchmarks/ -> benchmarks/results/)
#   4. copy the results into $OUT when it is set, and print a short table last.
#
# Usage: scripts/gpu_check.sh [extra pytest args for the benchmarks, e.g. -k "B256-T8"]
# Environment: PYTHON (default python), SKIP_BUILD=1, SKIP_TESTS=1, SKIP_BENCH=1,
#   BENCH_PATHS (default benchmarks/; e.g. benchmarks/test_routed_merge.py),
#   MDN_FAST_BENCH_BUDGET_S (seconds of measurement per configuration, default 2 on GPU).
# Exit status: 0 when every step passed, 1 otherwise (every step still runs).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
RESULTS=benchmarks/results
status=0
step() { printf '\n==== %s\n' "$*"; }

step "environment"
"$PY" - <<'PYEOF'
import sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda)
try:
    import triton; print("triton", triton.__version__)
except Exception as e:
    print("triton not importable:", e)
print("GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE (this script needs one)")
PYEOF
command -v nvcc >/dev/null && nvcc --version | tail -1 || echo "nvcc not on PATH (try export PATH=/usr/local/cuda/bin:\$PATH)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  step "build mdn_fast._C with CUDA"
  if ! MDN_FAST_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -e .; then
    echo "BUILD FAILED"; status=1
  fi
fi
"$PY" -m mdn_fast.info 2>/dev/null || "$PY" -c "import mdn_fast; print(mdn_fast.available_backends())"

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  step "GPU tests: pytest -m gpu tests/"
  "$PY" -m pytest -m gpu tests/ -q -p no:cacheprovider || status=1
fi

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  step "benchmarks on cuda: pytest -m gpu benchmarks/"
  before=$(ls "$RESULTS"/*.json 2>/dev/null | wc -l)
  # shellcheck disable=SC2086
  "$PY" -m pytest -m gpu ${BENCH_PATHS:-benchmarks/} -q -p no:cacheprovider --bench-results "$RESULTS" "$@" || status=1
  new=$(ls -t "$RESULTS"/*.json 2>/dev/null | head -1)
  if [ -n "$new" ] && [ "$(ls "$RESULTS"/*.json | wc -l)" -gt "$before" ]; then
    stem=${new%.json}
    if [ -n "${OUT:-}" ]; then
      mkdir -p "$OUT/benchmarks_results"
      cp "$stem".* "$OUT/benchmarks_results/" && echo "copied $stem.* to $OUT/benchmarks_results/"
    fi
    step "short table ($new)"
    "$PY" -m benchmarks._summary "$new"
  else
    echo "no new results written"; status=1
  fi
fi
exit $status
