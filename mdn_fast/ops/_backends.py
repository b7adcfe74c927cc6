"""Backend registry and dispatch for the public ops.

A backend is a module exposing
- ``unavailable_reason() -> str | None``: why it cannot run at all here (not built, not installed);
- ``unsupported_reason(op, device, dtype, sizes) -> str | None``: why it refuses these inputs;
- one callable per op, taking arguments already validated by ``_checks``:
  ``entity_attention(q, k, v, axes, mask, scale)``, ``routed_merge(x_st, x_ts, weight, bias, tau, mask)``.
Backends add only their launch; checks, shapes and limits live in ``_checks`` and ``_limits``.

"Can backend X run this?" has one answer, ``unsupported_reason(backend, op, device, dtype, sizes)``
(``supports`` is its boolean form): dispatch, the tests and the benchmarks all ask it.
"""
from __future__ import annotations

import importlib
import os

import torch

BACKENDS = ("reference", "triton", "cpp")
VALID = BACKENDS + ("auto",)
_MODULES = {
    "reference": "mdn_fast.ops.reference_backend",
    "triton": "mdn_fast.ops.triton_backend",
    "cpp": "mdn_fast.ops.cpp_backend",
}
# Order "auto" tries, per device type; the reference closes every list so "auto" never fails where the
# reference would succeed.
_AUTO_ORDER = {"cuda": ("triton", "cpp", "reference"), "cpu": ("cpp", "reference")}
_loaded: dict = {}


def _module(name: str):
    """The backend module, or the reason it is missing (a string)."""
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(_MODULES[name])
        except Exception as e:  # a missing backend must never break the package
            _loaded[name] = f"{type(e).__name__}: {e}"
    return _loaded[name]


def load_backends() -> None:
    """Import every backend module once (a failure is recorded as that backend's reason)."""
    for name in BACKENDS:
        _module(name)


def unavailable_reason(name: str) -> str | None:
    mod = _module(name)
    if isinstance(mod, str):
        return mod
    return mod.unavailable_reason()


def available_backends() -> dict[str, str | None]:
    """``{backend: None if usable here, else why not}`` for every backend name."""
    return {name: unavailable_reason(name) for name in BACKENDS}


def check_backend_name(backend) -> None:
    if backend not in VALID:
        raise ValueError(f"backend: expected one of {VALID}, got {backend!r}")


def unsupported_reason(backend: str, op: str, device, dtype: torch.dtype, sizes: dict) -> str | None:
    """Why ``backend`` cannot run ``op`` on these inputs here (None when it can): not available at all
    (not built, not installed), or it refuses this device, dtype or sizes.

    Args:
        backend: a name of ``BACKENDS``; op: ``"entity_attention"`` or ``"routed_merge"``;
        device: a ``torch.device`` or its string; dtype: the inputs' dtype;
        sizes: ``{"P", "B", "T", "K", "H", "Dh"}`` for entity_attention, ``{"B", "T", "K", "D"}`` for
            routed_merge (extra keys are ignored).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    why = unavailable_reason(backend)
    if why:
        return why
    return _module(backend).unsupported_reason(op, torch.device(device), dtype, sizes)


def supports(backend: str, op: str, device, dtype: torch.dtype, sizes: dict) -> bool:
    """Whether ``backend`` can run ``op`` on these inputs here (``unsupported_reason`` is None)."""
    return unsupported_reason(backend, op, device, dtype, sizes) is None


def resolve(op: str, backend: str, x: torch.Tensor, sizes: dict):
    """The backend module to run ``op`` on these inputs. A named backend that cannot run them raises
    with its reason; ``"auto"`` takes the first in ``_AUTO_ORDER`` that can."""
    check_backend_name(backend)
    if backend != "auto":
        why = unsupported_reason(backend, op, x.device, x.dtype, sizes)
        if why:
            raise NotImplementedError(f"backend={backend!r} cannot run {op} here: {why}. "
                                      f"Use backend='auto' or 'reference'.")
        return _module(backend)
    forced = os.environ.get("MDN_FAST_BACKEND")  # test/benchmark hook: force "auto" to one backend
    order = (forced,) if forced in BACKENDS else _AUTO_ORDER.get(x.device.type, ("reference",))
    for name in order + ("reference",):
        if supports(name, op, x.device, x.dtype, sizes):
            return _module(name)
    raise AssertionError("unreachable: the reference backend accepts every valid input")
