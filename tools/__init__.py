"""Developer tools of mdn_fast, run from a checkout as ``python -m tools.<name>`` (never shipped: the wheel
holds ``mdn_fast`` alone). What drives or probes the benchmarks and kernels, as opposed to the benchmark
suites themselves (``benchmarks/``, whose shared harness and inputs the tools import):

- ``gpu_check``: the GPU check's orchestrator (``scripts/gpu_check.sh``);
- ``cuda_sanitize``: the program compute-sanitizer runs (stage b of the GPU check);
- ``kernel_resources``: registers, spills and occupancy of every shipped GPU kernel, without a GPU (the
  spill gate of tests/ops/test_kernel_resources.py);
- ``auto_table``: the generator of ``mdn_fast/ops/_auto_table.py`` from a benchmark results file;
- ``cpu_kernel_probe``, ``cpu_kernel_ab`` (+ ``cpu_kernel_ab_main.cpp``), ``op_overhead_ab``: CPU probes
  and A/B comparisons for kernel and call-cost tuning.
"""
