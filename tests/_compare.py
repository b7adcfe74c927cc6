"""Exact comparison of nested training state (checkpoints, optimizer and RNG states), shared by the tests
that resume or reload runs."""
from __future__ import annotations

import torch


def assert_same_nested(x, y, where="state"):
    """Recursive equality naming the first difference: tensors by dtype and ``torch.equal``, dict keys and
    sequence lengths exactly, everything else with ``==`` (NaN equals NaN: a saved NaN must come back)."""
    if isinstance(x, torch.Tensor):
        assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y), where
    elif isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), (where, sorted(map(str, x)), sorted(map(str, y)))
        for k in x:
            assert_same_nested(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            assert_same_nested(u, v, f"{where}[{i}]")
    else:
        assert x == y or (x != x and y != y), (where, x, y)
