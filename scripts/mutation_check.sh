#!/usr/bin/env bash
# Plant known kernel bugs (CUDA C++ and Triton), one at a time in a temporary copy of the checkout, and show
# the tests fail on each: see scripts/mutation_check.py (--list, --only NAME ...). Run it with the
# environment the tests use (the package installed, e.g. the README's test set-up). ~10-20 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/mutation_check.py "$@"
