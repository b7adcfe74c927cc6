"""One source of truth for the shapes, limits and tolerances every backend and test shares.

The C++ kernels read the same limits from csrc/common/limits.h, which is generated from this file
(``cpp_limits_header()``; setup.py rewrites it at every build, tests/ops/test_cpp_ext.py checks the committed
copy and the built extension's ``build_info()`` against this table)."""
from __future__ import annotations

import torch

#: Axis names accepted by ``entity_attention`` (per path).
AXES = ("spatial", "temporal")

#: Largest group sizes of the fused attention kernels (design.md §2.1; per backend and op in
#: ``mdn_fast.ops._capabilities.CAPABILITIES``).
MAX_K = 16   # entities per frame (spatial groups)
MAX_T = 64   # frames per clip (temporal groups)
MAX_DH = 128  # head dimension
MAX_PATHS = 64  # paths per entity_attention call: their axes travel to the kernels as a 64-bit mask

#: Bounds of the ops' float arguments (``mdn_fast.ops._checks`` refuses values outside them, naming the
#: argument, its value and the bound). ``entity_attention``'s ``scale`` multiplies the scores q·k: beyond
#: ``MAX_SCALE`` unit-sized inputs already reach the float32 range in some backends and not others (NaN from
#: inf - inf in the softmax, in different elements per backend); with ``scale <= MAX_SCALE``, float16 inputs
#: cannot overflow the float32 scores at all (|q·k| <= 65504² · Dh). ``routed_merge``'s ``tau`` divides the
#: router logits: ``1 / tau`` beyond ``1 / MIN_TAU`` plays the same role (tau = 1e-45 is 0 in float32 and
#: its inverse inf). Both must be finite and > 0. The defaults (``Dh ** -0.5``, ``tau = 1``) lie well inside.
MAX_SCALE = 1e4
MIN_TAU = 1e-4

#: Floating dtypes the ops accept. float64 runs on the reference (and wherever a backend says so).
OP_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

#: Relative-error tolerances ‖out − ref‖/‖ref‖ against a float64 reference, per input dtype
#: (design.md §4). Tests import this table; no test carries its own numbers.
REL_TOL = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 1e-2,
}

#: Fast path against the reference (flash-attention's criterion): with ``ref64`` the reference on the same
#: inputs in float64 and ``ref_dt`` the reference run in the input dtype itself,
#:     max|out − ref64| <= REF_ERR_FACTOR * max|ref_dt − ref64| + REF_ERR_FLOOR[dtype] * max|ref64|,
#: i.e. a fast path may be at most a few times less accurate than the reference is in that dtype. The
#: bound follows the conditioning of the inputs (a saturated router, a tiny problem), so tests use plain
#: random inputs instead of inputs scaled to suit one fixed tolerance. The floor covers outputs the
#: reference happens to get (nearly) exact: in 16-bit dtypes one unit in the last place (eps) at the
#: reference's largest magnitude, since two correct results may round a value to neighbouring numbers.
REF_ERR_FACTOR = 3.0
REF_ERR_FLOOR = {
    torch.float64: 1e-12,
    torch.float32: 1e-6,
    torch.float16: torch.finfo(torch.float16).eps,
    torch.bfloat16: torch.finfo(torch.bfloat16).eps,
}


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp32 for 16-bit and 32-bit inputs, fp64 for fp64 inputs."""
    return torch.float64 if dtype == torch.float64 else torch.float32


#: The limits the C++ kernels are built with: (C++ name, value, what it bounds).
CPP_LIMITS = (
    ("kMaxK", MAX_K, "entities per frame K (spatial group size)"),
    ("kMaxT", MAX_T, "frames per clip T (temporal group size)"),
    ("kMaxDh", MAX_DH, "head dimension Dh"),
    ("kMaxPaths", MAX_PATHS, "paths P per entity_attention call (the axes travel as a uint64_t mask)"),
)


def cpp_limits_header() -> str:
    """The text of csrc/common/limits.h (host and device code alike include it)."""
    lines = ["// Generated from mdn_fast/_limits.py by setup.py (cpp_limits_header); do not edit: change the",
             "// Python table and rebuild. tests/ops/test_cpp_ext.py checks that this file and the built extension",
             "// agree with the table.",
             "#pragma once", "", "namespace mdn {", ""]
    lines += [f"constexpr int {name} = {value};  // {what}" for name, value, what in CPP_LIMITS]
    lines += ["// Members of one attention group: a spatial group has K, a temporal one T.",
              "constexpr int kMaxMembers = kMaxK > kMaxT ? kMaxK : kMaxT;", "", "}  // namespace mdn", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # python mdn_fast/_limits.py > csrc/common/limits.h
    print(cpp_limits_header(), end="")
