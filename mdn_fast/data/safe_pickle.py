"""Restricted unpickling for dataset files (MA-52 pose pickles, the iMiGUE ``{split}_label.pkl``).

``pickle.load`` runs whatever callable a file names (``os.system`` included), so a downloaded dataset
file could execute code. Every dataset pickle goes through ``load`` instead: it resolves only builtin
containers and scalars, ``collections.OrderedDict``/``defaultdict`` and the numpy callables that rebuild
arrays, scalars and dtypes. Any other global (a function, a class, a module attribute) is refused before
anything is called, with an ``UnsafePickleError`` naming the file and the global.

Checkpoints are a separate matter: they load with ``torch.load(weights_only=True)`` (``mdn_fast.checkpoint``).
"""
from __future__ import annotations

import _codecs
import builtins
import collections
import io
import pickle
from pathlib import Path

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A dataset pickle names a global outside the allow-list (nothing from it was run)."""


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (``encode(str, "latin1")``); only that."""
    if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(obj, str):
        raise UnsafePickleError(f"_codecs.encode called with encoding {encoding!r}; only 'latin1' (the way "
                                f"protocol-2 pickles store bytes) is allowed")
    return _codecs.encode(obj, encoding, errors)


def _numpy_callables() -> dict:
    # keys use numpy 2's module names (``_canonical_module`` maps numpy 1's numpy.core.* onto them)
    try:
        from numpy._core import multiarray, numeric
    except ImportError:       # numpy 1.x
        from numpy.core import multiarray, numeric
    out = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
           ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
           ("numpy._core.multiarray", "scalar"): multiarray.scalar}
    if hasattr(numeric, "_frombuffer"):                       # protocol-5 array pickles
        out[("numpy._core.numeric", "_frombuffer")] = numeric._frombuffer
    return out


_BUILTINS = ("list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float",
             "complex", "bool")
#: (module, name) -> object: the whole allow-list.
ALLOWED: dict[tuple[str, str], object] = {("builtins", n): getattr(builtins, n) for n in _BUILTINS}
ALLOWED.update({("collections", "OrderedDict"): collections.OrderedDict,
                ("collections", "defaultdict"): collections.defaultdict,
                ("_codecs", "encode"): _latin1_encode})
ALLOWED.update(_numpy_callables())


def _canonical_module(module: str) -> str:
    # numpy 1.x wrote numpy.core.*; numpy 2 moved it to numpy._core.*; Python 2 pickles say __builtin__
    if module == "numpy.core" or module.startswith("numpy.core."):
        return "numpy._core" + module[len("numpy.core"):]
    return {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        super().__init__(file, encoding="latin1")        # latin1: Python-2 numpy pickles load too
        self.where = where

    def find_class(self, module, name):
        key = (_canonical_module(module), name)
        if key not in ALLOWED:
            raise UnsafePickleError(
                f"{self.where}: refused to unpickle: the file references {module}.{name}, which is not a "
                f"builtin container or scalar or a numpy array/dtype. Dataset pickles are read with a "
                f"restricted unpickler so that a crafted file cannot run code (nothing from this file was "
                f"executed); re-save it holding only dicts, lists, numbers, strings and numpy arrays")
        return ALLOWED[key]

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.where}: refused to unpickle: persistent id {pid!r} (not a plain data pickle)")


def load(path_or_file, what: str | None = None):
    """Unpickle a dataset file with the allow-list above. ``path_or_file``: a path or a binary file
    object; ``what`` names it in errors (default: the path). Raises ``UnsafePickleError`` for a
    forbidden global; other malformed input raises what ``pickle`` raises."""
    if isinstance(path_or_file, (str, Path)):
        where = what or str(path_or_file)
        with open(path_or_file, "rb") as f:
            return _RestrictedUnpickler(f, where).load()
    return _RestrictedUnpickler(path_or_file, what or getattr(path_or_file, "name", "<pickle>")).load()


def loads(data: bytes, what: str = "<bytes>"):
    """``load`` for bytes in memory."""
    return _RestrictedUnpickler(io.BytesIO(data), what).load()
