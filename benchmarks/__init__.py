"""Benchmark suites of mdn_fast (``pytest benchmarks/``). A package so its test modules never clash
with the same-named ones in ``tests/``. The tools that drive or probe them (the GPU check, the spill
gate, the auto table's generator, CPU A/B probes) are in ``tools/``."""
