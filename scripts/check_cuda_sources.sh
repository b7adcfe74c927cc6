#!/usr/bin/env bash
# Compile every csrc/**/*.cu but csrc/emu's for sm_80 and sm_90a with nvcc (no GPU, no torch needed): the CUDA kernel
# sources hold no torch headers, so this checks them anywhere a CUDA toolkit is installed.
# Usage: scripts/check_cuda_sources.sh   (NVCC=/path/to/nvcc to choose the compiler)
# Exit 0 when every file compiles, or when nvcc is absent (skipped, with a message); 1 on a failure.
set -u
cd "$(dirname "$0")/.."

NVCC="${NVCC:-}"
if [ -z "$NVCC" ]; then
  if command -v nvcc >/dev/null 2>&1; then NVCC=nvcc
  elif [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  fi
fi
if [ -z "$NVCC" ]; then
  echo "check_cuda_sources: SKIPPED: nvcc not found (set NVCC or CUDA_HOME, or add nvcc to PATH)"
  exit 0
fi

# csrc/emu holds the emulation's own self-test kernels (planted bugs, some not valid for a GPU).
mapfile -t files < <(find csrc -path csrc/emu -prune -o -name '*.cu' -print | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "check_cuda_sources: no .cu files under csrc/"; exit 1
fi
echo "check_cuda_sources: $("$NVCC" --version | tail -1)"
status=0
for f in "${files[@]}"; do
  for target in "arch=compute_80,code=sm_80" "arch=compute_90a,code=sm_90a"; do
    if "$NVCC" -std=c++17 -O3 -Xcompiler -Wall -Werror all-warnings -gencode "$target" -c "$f" -o /dev/null; then
      echo "  ok    $f  ($target)"
    else
      echo "  FAIL  $f  ($target)"; status=1
    fi
  done
done
exit $status
