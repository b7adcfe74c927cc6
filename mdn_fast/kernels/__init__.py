"""Kernel sources (no dispatch, no autograd: those live in ``mdn_fast.ops``). ``triton/``: Triton kernels,
one file per op. Importing this package imports nothing heavy and touches no GPU."""
