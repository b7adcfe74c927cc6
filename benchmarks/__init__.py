"""Benchmark suites of mdn_fast (``pytest benchmarks/``). A package so its test modules never clash
with the same-named ones in ``tests/``."""
