"""Triton kernels for the fused ops, one file per op (``entity_attention``, ``routed_merge``).

Each file holds the kernels (plain ``@triton.jit``: nothing compiles, no GPU is queried until a launch)
and a host helper that picks block sizes. Triton fixes, per process, whether kernels run on its CPU
interpreter: ``triton.jit`` returns an interpreted function when ``TRITON_INTERPRET=1`` at decoration
(when ``mdn_fast`` is imported), and ``triton.language``'s own library (``tl.sum``, ``tl.max``) was made
interpreted or compiled when ``triton.language`` was first imported; compiled kernels cannot call
interpreted functions and vice versa. Both moments are the same in a process that sets the variable
before importing (tests/conftest.py does); :func:`check_flavour` refuses a process where they differ.
"""
from __future__ import annotations

import triton.language as tl
from triton.runtime.jit import JITFunction

#: Whether this process's Triton interpreter computes bf16 ``tl.dot`` right. The plain interpreter does not
#: (it multiplies bf16 bit patterns: ``ops.triton_backend`` refuses bf16 ``entity_attention`` under it);
#: only code that has fixed it sets this, i.e. the test harness (tests/ops/_triton_interp_bf16.py), after
#: checking its fix. Compiled (GPU) kernels never read it.
INTERPRETER_BF16_DOT_OK = False


def interpreting() -> bool:
    """Whether this process runs Triton kernels on the CPU interpreter: ``TRITON_INTERPRET=1`` was set
    when ``triton.language`` was imported (its standard library is then interpreted)."""
    return not isinstance(tl.standard.sum, JITFunction)


def check_flavour(*kernels) -> None:
    """Raise ImportError when ``kernels`` were not decorated in the flavour of ``triton.language``'s own
    library (``TRITON_INTERPRET`` changed between importing triton and importing mdn_fast)."""
    for k in kernels:
        if isinstance(k, JITFunction) == interpreting():
            raise ImportError(
                f"Triton kernel {k.fn.__name__} was decorated {'compiled' if interpreting() else 'interpreted'}"
                f" but triton.language was imported {'interpreted' if interpreting() else 'compiled'}: "
                "TRITON_INTERPRET changed between `import triton` and `import mdn_fast`. Set it (or unset it) "
                "before the first import of either.")


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()
