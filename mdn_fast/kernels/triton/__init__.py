"""Triton kernels for the fused ops, one file per op (``entity_attention``, ``routed_merge``).

Each file holds the kernels' Python source and a host helper that picks block sizes; kernels are built
with :func:`jit` (a plain ``JITFunction``: nothing compiles, no GPU is queried until a launch) and
launched through :func:`kernel`, which swaps in an interpreted twin when the process runs Triton's CPU
interpreter. Whether it does is fixed by Triton itself when ``triton.language`` is first imported
(``TRITON_INTERPRET=1`` at that moment makes its standard library — ``tl.sum``, ``tl.max`` — interpreted
functions, which compiled kernels cannot call, and vice versa), so :func:`interpreting` reads that, not
the variable's current value.
"""
from __future__ import annotations

import triton.language as tl
from triton.runtime.jit import JITFunction

_cache: dict = {}


def interpreting() -> bool:
    """Whether this process runs Triton kernels on the CPU interpreter: ``TRITON_INTERPRET=1`` was set
    when ``triton.language`` was imported (its standard library is then interpreted)."""
    return not isinstance(tl.standard.sum, JITFunction)


def jit(fn) -> JITFunction:
    """The compiled-kernel flavour of ``fn`` (a plain JITFunction: no compilation happens until launch)."""
    return JITFunction(fn)


def kernel(jitted: JITFunction):
    """The flavour of a kernel to launch: ``jitted`` itself, or its interpreted twin when the process
    interprets (built once per kernel)."""
    if not interpreting():
        return jitted
    # Keyed by the Python function: hashing a JITFunction computes its compile cache key, which rejects
    # the interpreted helpers (device_fn) its source calls.
    if jitted.fn not in _cache:
        from triton.runtime.interpreter import InterpretedFunction
        _cache[jitted.fn] = InterpretedFunction(jitted.fn)
    return _cache[jitted.fn]


def device_fn(fn):
    """A helper called from inside kernels, in the flavour this process launches: a ``JITFunction`` for
    compiled kernels, an ``InterpretedFunction`` under the interpreter (a kernel may call only its own
    flavour, like Triton's standard library)."""
    if interpreting():
        from triton.runtime.interpreter import InterpretedFunction
        return InterpretedFunction(fn)
    return JITFunction(fn)


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()
