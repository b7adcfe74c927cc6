"""The compiled ``cpp`` backend (``mdn_fast._C``): what it was built with (limits included, against the
Python table), its torch registration (opcheck, fake tensors), the refusals of the ops themselves, and
the package without ``_C``. Its kernels against the reference: the backend-parametrised tests of
tests/ops/test_entity_attention.py and tests/ops/test_routed_merge.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from mdn_fast import _limits
from mdn_fast.ops import cpp_backend

from tests import _helpers as _h
from tests._paths import REPO

WHY = cpp_backend.unavailable_reason()
needs_c = pytest.mark.skipif(WHY is not None, reason=f"cpp backend unavailable: {WHY}")
ROOT = REPO


def packed_qkv(B, T, K, P, H, Dh, dtype, device="cpu", seed=0):
    """q, k, v ``[P, B, T, K, H, Dh]`` as strided views of one ``[B, T, K, P, 3, H, Dh]`` tensor."""
    return _h.packed_qkv(P, B, T, K, H, Dh, dtype, device, torch.Generator().manual_seed(seed))


def ragged_mask(B, T, K, device="cpu", seed=1):
    """Random presence with one track absent in every frame and one frame with no entity at all."""
    return _h.holey_mask(B, T, K, device, torch.Generator().manual_seed(seed))


@needs_c
def test_extension_loads_and_reports_build():
    info = cpp_backend.build_info()
    assert info.get("cpu") == "1"
    assert info.get("cuda") in ("0", "1")
    assert hasattr(torch.ops.mdn_fast, "entity_attention_fwd")


def test_limits_header_is_generated_from_the_python_table():
    """csrc/common/limits.h is the text ``_limits.cpp_limits_header()`` gives (setup.py writes it at
    every build): the C++ kernels take exactly the limits the Python layer checks."""
    header = (ROOT / "csrc" / "common" / "limits.h").read_text()
    assert header == _limits.cpp_limits_header(), ("csrc/common/limits.h differs from mdn_fast/_limits.py: "
                                                   "run `python mdn_fast/_limits.py > csrc/common/limits.h`")
    values = dict(re.findall(r"constexpr int (\w+) = (\d+);", header))
    assert values == {name: str(v) for name, v, _ in _limits.CPP_LIMITS}
    assert [n for n, *_ in _limits.CPP_LIMITS] == ["kMaxK", "kMaxT", "kMaxDh", "kMaxPaths"]


@needs_c
def test_built_extension_has_the_python_limits():
    """The limits compiled into the loaded ``_C`` (a stale build would differ)."""
    info = cpp_backend.build_info()
    assert {k: int(info[k]) for k in ("max_k", "max_t", "max_dh", "max_paths")} == {
        "max_k": _limits.MAX_K, "max_t": _limits.MAX_T, "max_dh": _limits.MAX_DH, "max_paths": _limits.MAX_PATHS}


@needs_c
@pytest.mark.parametrize("shape, what", [
    ((1, 1, 2, _limits.MAX_K + 1, 1, 8), f"K = {_limits.MAX_K + 1} entities exceeds the kernels' limit K <= "),
    ((1, 1, 2, 32, 1, 8), "K = 32 entities exceeds the kernels' limit K <= "),
    ((1, 1, _limits.MAX_T + 1, 2, 1, 8), f"T = {_limits.MAX_T + 1} frames exceeds the kernels' limit T <= "),
    ((1, 1, 2, 2, 1, _limits.MAX_DH + 1), f"Dh = {_limits.MAX_DH + 1} exceeds the kernels' limit Dh <= "),
    ((_limits.MAX_PATHS + 1, 1, 2, 2, 1, 8), f"P = {_limits.MAX_PATHS + 1} paths exceeds the kernels' limit P <= "),
], ids=["K17", "K32", "T", "Dh", "P"])
def test_direct_op_calls_beyond_the_limits_are_refused(shape, what):
    """``torch.ops.mdn_fast`` called directly (past the Python checks) refuses sizes beyond the limits,
    naming the limit, in the forward and the backward."""
    limit = {"K": _limits.MAX_K, "T": _limits.MAX_T, "D": _limits.MAX_DH, "P": _limits.MAX_PATHS}[what[0]]
    what += str(limit)
    q = torch.randn(*shape)
    axes = [0] * shape[0]
    with pytest.raises(RuntimeError, match=re.escape(what)):
        torch.ops.mdn_fast.entity_attention_fwd(q, q, q, axes, None, 1.0)
    lse = torch.zeros(shape[:-1])
    with pytest.raises(RuntimeError, match=re.escape(what)):
        torch.ops.mdn_fast.entity_attention_bwd(q, q, q, q, lse, axes, None, 1.0)


@needs_c
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_opcheck(masked):
    from torch.library import opcheck

    ops = torch.ops.mdn_fast
    B, T, K, H, Dh, D = 2, 3, 4, 2, 8, 6
    mask = ragged_mask(B, T, K) if masked else None
    q, k, v = (x.detach().requires_grad_() for x in packed_qkv(B, T, K, 2, H, Dh, torch.float32))
    axes = [0, 1]
    opcheck(ops.entity_attention_fwd.default, (q, k, v, axes, mask, 0.3))
    out, lse = ops.entity_attention_fwd(q, k, v, axes, mask, 0.3)
    opcheck(ops.entity_attention_bwd.default, (torch.randn_like(out), q.detach(), k.detach(), v.detach(), lse, axes,
                                               mask, 0.3))
    x_st, x_ts = (torch.randn(B, T, K, D, requires_grad=True) for _ in range(2))
    w = torch.randn(K, 2, 2 * D, requires_grad=True)
    b = torch.randn(K, 2, requires_grad=True)
    opcheck(ops.routed_merge_fwd.default, (x_st, x_ts, w, b, 0.7, mask))
    y, alpha = ops.routed_merge_fwd(x_st, x_ts, w, b, 0.7, mask)
    opcheck(ops.routed_merge_bwd.default, (torch.randn_like(y), torch.randn_like(alpha), x_st.detach(),
                                           x_ts.detach(), w.detach(), alpha.detach(), 0.7, mask))


@needs_c
def test_bad_calls_are_refused_with_clear_errors():
    q, k, v = packed_qkv(1, 2, 3, 1, 1, 4, torch.float32)
    with pytest.raises(RuntimeError, match="axes"):
        torch.ops.mdn_fast.entity_attention_fwd(q, k, v, [2], None, 1.0)
    with pytest.raises(RuntimeError, match="mask"):
        torch.ops.mdn_fast.entity_attention_fwd(q, k, v, [0], torch.ones(1, 2, 3), 1.0)  # not bool
    x = torch.randn(1, 2, 3, 4)
    with pytest.raises(RuntimeError, match="weight"):
        torch.ops.mdn_fast.routed_merge_fwd(x, x, torch.randn(3, 2, 7), torch.randn(3, 2), 1.0, None)


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


_WITHOUT_C = """
import torch, mdn_fast
why = mdn_fast.available_backends()["cpp"]
assert why, "cpp backend should be unavailable"
print("REASON:", why)
q = torch.randn(1, 2, 3, 4, 2, 8)
o = mdn_fast.ops.entity_attention(q, q, q, ("spatial",))          # auto -> reference
y, a = mdn_fast.ops.routed_merge(torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5),
                                 torch.randn(4, 2, 10), torch.randn(4, 2))
try:
    mdn_fast.ops.entity_attention(q, q, q, ("spatial",), backend="cpp")
except NotImplementedError as e:
    print("REFUSED:", e)
else:
    raise AssertionError("backend='cpp' should refuse without _C")
"""


def test_package_works_without_extension_disabled():
    r = _run_python(_WITHOUT_C, MDN_FAST_DISABLE_C="1")
    assert r.returncode == 0, r.stderr
    assert "MDN_FAST_DISABLE_C" in r.stdout and "REFUSED:" in r.stdout


def test_package_works_when_extension_fails_to_load():
    """Simulates a broken _C (e.g. built against another torch): importing it raises."""
    code = "import sys; sys.modules['mdn_fast._C'] = None\n" + _WITHOUT_C
    r = _run_python(code)
    assert r.returncode == 0, r.stderr
    assert "REASON: mdn_fast._C" in r.stdout
