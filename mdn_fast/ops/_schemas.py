"""The fused ops' schemas, the one naming both compiled backends share (design.md §2.4).

The C++ library declares these in csrc/torch/library.cpp (``STABLE_TORCH_LIBRARY(mdn_fast, ...)``); the
Triton backend registers its ops in ``mdn_fast_triton`` with exactly these strings, so both namespaces
take the same arguments by the same names and return the same things. Written twice (C++ cannot import
Python and the Triton backend must work without the compiled part); tests/ops/test_triton_kernels.py
``test_schemas_match_the_cpp_ops`` fails if the two copies drift. (torch 2.11's ``triton_op`` drops
``schema=`` and infers one from the type hints: there ``axes`` reads ``SymInt[]``, the only difference.)

``lse`` is the softmax statistic saved for the backward: the natural-log log-sum-exp of each query's
scaled scores, ``-inf`` for a query whose group has no present key (unspecified for a poisoned group: each
backward poisons that group's gradients from its inputs). A missing ``grad_alpha`` counts as
zeros.
"""
from __future__ import annotations

SCHEMAS = {
    "entity_attention_fwd":
        "(Tensor q, Tensor k, Tensor v, int[] axes, Tensor? mask, float scale) -> (Tensor, Tensor)",
    "entity_attention_bwd":
        "(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor lse, int[] axes, Tensor? mask, float scale) "
        "-> (Tensor, Tensor, Tensor)",
    "routed_merge_fwd":
        "(Tensor x_st, Tensor x_ts, Tensor weight, Tensor bias, float tau, Tensor? mask) -> (Tensor, Tensor)",
    "routed_merge_bwd":
        "(Tensor grad_y, Tensor? grad_alpha, Tensor x_st, Tensor x_ts, Tensor weight, Tensor alpha, float tau, "
        "Tensor? mask) -> (Tensor, Tensor, Tensor, Tensor)",
}
