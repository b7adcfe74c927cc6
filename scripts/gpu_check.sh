#!/usr/bin/env bash
# The GPU check, for a lent GPU (offline is fine). Stages in priority order, a time budget the script
# itself keeps, results written as they are made (cut-off-proof) to .gpu_check/ and $OUT/gpu_check/:
#   a environment + CUDA build   b GPU correctness + compute-sanitizer   c paper-size op benchmarks
#   d block + model train step   e everything else
# Usage: scripts/gpu_check.sh [--budget-s 480] [--stages abcde] [--resume] [--rebuild] [--quick]
# First call on a lent GPU:   scripts/gpu_check.sh 2>&1            (within one 10-minute command)
# Second call, same machine:  scripts/gpu_check.sh --resume 2>&1   (continues with what is not done)
# Without a GPU every stage runs its CPU counterpart. Details: python -m tools.gpu_check --help.
# Environment: PYTHON (default python), SKIP_BUILD=1, SKIP_TESTS=1, SKIP_BENCH=1.
# Exit status: 0 all done and passed, 1 something failed, 3 cut short by the budget (run with --resume).
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m tools.gpu_check "$@"
