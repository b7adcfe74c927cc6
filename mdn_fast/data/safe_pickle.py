"""Restricted unpickling for dataset files (MA-52 pose pickles, the iMiGUE ``{split}_label.pkl``).

``pickle.load`` runs whatever callable a file names (``os.system`` included), so a downloaded dataset
file could execute code. Every dataset pickle goes through ``load`` instead: it resolves only builtin
containers and scalars, ``collections.OrderedDict``/``defaultdict`` and the numpy callables that rebuild
arrays, scalars and dtypes. Any other global (a function, a class, a module attribute) is refused before
anything is called, with an ``UnsafePickleError`` naming the file and the global.

Size: shared references let a few kilobytes stand for a nested structure of billions of elements
(``[[row] * 1000] * 1000``: each level pickles one memo reference per element), which costs nothing to
unpickle but everything to read (``np.asarray`` builds it in full). ``load`` counts what the result
expands to — every container, its entries and every array element, a shared object once per reference —
and refuses a file that expands to more than ``max(MIN_ELEMENTS, ELEMENTS_PER_BYTE x file size)``
elements (a genuine dataset pickle holds at most about one element per byte) with a
``PickleTooLargeError`` naming the file and the limit. Raise the limit with ``max_elements=`` or the
environment variable ``MDN_FAST_PICKLE_MAX_ELEMENTS``. A structure that contains itself is refused too.

Checkpoints are a separate matter: they load with ``torch.load(weights_only=True)`` (``mdn_fast.checkpoint``).
"""
from __future__ import annotations

import _codecs
import builtins
import collections
import io
import itertools
import os
import pickle
from pathlib import Path

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A dataset pickle names a global outside the allow-list (nothing from it was run)."""


class PickleTooLargeError(UnsafePickleError):
    """A dataset pickle expands to more elements than the limit (or contains itself)."""


#: The element budget: ``max(MIN_ELEMENTS, ELEMENTS_PER_BYTE * file size)`` unless given.
MIN_ELEMENTS = 1_000_000
ELEMENTS_PER_BYTE = 4
ENV_MAX_ELEMENTS = "MDN_FAST_PICKLE_MAX_ELEMENTS"


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


def element_limit(file_size: int, max_elements: int | None = None) -> int:
    """The element budget of a ``file_size``-byte pickle: ``max_elements``, else the environment
    variable ``MDN_FAST_PICKLE_MAX_ELEMENTS``, else ``max(MIN_ELEMENTS, ELEMENTS_PER_BYTE * file_size)``."""
    if max_elements is None:
        env = os.environ.get(ENV_MAX_ELEMENTS, "").strip()
        if env:
            try:
                max_elements = int(env.replace("_", ""))
            except ValueError:
                raise ValueError(f"{ENV_MAX_ELEMENTS}={env!r}: expected a positive integer (the most elements "
                                 f"a dataset pickle may expand to)") from None
            what = ENV_MAX_ELEMENTS
        else:
            return max(MIN_ELEMENTS, ELEMENTS_PER_BYTE * int(file_size))
    else:
        what = "max_elements"
    if isinstance(max_elements, bool) or not isinstance(max_elements, int) or max_elements < 1:
        raise ValueError(f"{what}: expected a positive integer, got {max_elements!r}")
    return max_elements


_ATOMIC = frozenset({int, float, complex, bool, str, bytes, bytearray, type(None), np.float64, np.float32,
                     np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_})
_SEQUENCES = frozenset({list, tuple})


def _flat_size(c, limit: int) -> int | None:
    """The size of a container holding scalars only, or lists/tuples of scalars only (checked in C: most
    containers of a pickle are such, e.g. the ``[[x, y], ...]`` joints of a keypoint list), else None.
    Never scans more than ``limit`` grandchildren: past that the size is over the limit anyway."""
    if isinstance(c, dict):
        if set(map(type, c)) <= _ATOMIC and set(map(type, c.values())) <= _ATOMIC:
            return 1 + 2 * len(c)
        return None
    if isinstance(c, np.ndarray):
        return 1 + c.size if set(map(type, c.flat)) <= _ATOMIC else None
    types = set(map(type, c))
    if types <= _ATOMIC:
        return 1 + len(c)
    if types <= _SEQUENCES:
        n = 1 + len(c) + sum(map(len, c))          # every grandchild counts at least 1
        if n > limit or set(map(type, itertools.chain.from_iterable(c))) <= _ATOMIC:
            return n
    return None


def expanded_size(obj, limit: int, where: str = "<pickle>") -> int:
    """Elements ``obj`` stands for when read as a tree (what ``np.asarray`` or a deep copy builds): 1 per
    scalar, 1 + the entries' for a container (dict: keys and values), ``max(size, nbytes / 8)`` for a numeric
    array; a shared object counts once per reference. Linear in the distinct objects and references (sizes
    are memoised), iterative (any depth). Raises ``PickleTooLargeError`` as soon as the count passes
    ``limit``, or when a container contains itself."""
    done: dict[int, int] = {}        # id -> size of a finished container
    active: set[int] = set()         # ids on the current path (a repeat is a cycle)

    def children(o):
        if isinstance(o, dict):
            for k, v in o.items():
                yield k
                yield v
        elif isinstance(o, np.ndarray):
            yield from o.flat       # object arrays only (numeric ones are leaves)
        else:
            yield from o

    def too_large():
        return PickleTooLargeError(
            f"{where}: refused to unpickle: it expands to more than {limit:,} elements (shared references "
            f"let a small pickle stand for a huge nested structure, which reading it as arrays builds in full). "
            f"If the file is genuine, raise the limit: set {ENV_MAX_ELEMENTS}=N (or pass max_elements=N to "
            f"mdn_fast.data.safe_pickle.load)")

    def leaf_size(o):
        """The size of a leaf, or None for a container to descend into."""
        if type(o) in _ATOMIC:
            return 1
        if isinstance(o, np.ndarray):
            return None if o.dtype.kind == "O" else max(int(o.size), int(o.nbytes) // 8, 1)
        if isinstance(o, (list, tuple, set, frozenset, dict)):
            return None
        return 1                    # any other object (a dtype, a numpy scalar, a class): itself

    first = leaf_size(obj)
    if first is not None:
        if first > limit:
            raise too_large()
        return first
    stack = [[obj, children(obj), 1]]
    active.add(id(obj))
    while stack:
        top = stack[-1]
        node, it, acc = top
        for c in it:
            t = type(c)
            if t in _ATOMIC:
                acc += 1
                continue
            n = done.get(id(c))
            if n is None:
                n = leaf_size(c)
                if n is None:
                    n = _flat_size(c, limit)
                    if n is not None and n > 64:
                        done[id(c)] = n      # a shared flat container: scanned once
            if n is None:
                if id(c) in active:
                    raise PickleTooLargeError(
                        f"{where}: refused to unpickle: a {type(c).__name__} contains itself (a self-referencing "
                        f"structure is not dataset data: reading it as arrays never ends); re-save the file "
                        f"holding plain nested data")
                top[2] = acc
                stack.append([c, children(c), 1])
                active.add(id(c))
                break
            acc += n
            if acc > limit:
                raise too_large()
        else:
            if acc > limit:
                raise too_large()
            stack.pop()
            active.discard(id(node))
            done[id(node)] = acc
            if stack:
                stack[-1][2] += acc
                if stack[-1][2] > limit:
                    raise too_large()
            else:
                return acc
            continue
        top[2] = acc
    raise AssertionError("unreachable")


def _size_of(f) -> int:
    try:
        return os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        pos = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(pos)
        return int(end)
    except (AttributeError, OSError, io.UnsupportedOperation):
        return 0


def _load_checked(f, where: str, max_elements: int | None):
    limit = element_limit(_size_of(f), max_elements)
    obj = _RestrictedUnpickler(f, where).load()
    expanded_size(obj, limit, where)
    return obj


def load(path_or_file, what: str | None = None, *, max_elements: int | None = None):
    """Unpickle a dataset file with the allow-list above. ``path_or_file``: a path or a binary file
    object; ``what`` names it in errors (default: the path). Raises ``UnsafePickleError`` for a
    forbidden global, ``PickleTooLargeError`` when the result expands to more than the element budget
    (``element_limit``: ``max_elements``, ``$MDN_FAST_PICKLE_MAX_ELEMENTS``, else
    ``max(MIN_ELEMENTS, ELEMENTS_PER_BYTE x file size)``); other malformed input raises what ``pickle``
    raises."""
    if isinstance(path_or_file, (str, Path)):
        where = what or str(path_or_file)
        with open(path_or_file, "rb") as f:
            return _load_checked(f, where, max_elements)
    return _load_checked(path_or_file, what or getattr(path_or_file, "name", "<pickle>"), max_elements)


def loads(data: bytes, what: str = "<bytes>", *, max_elements: int | None = None):
    """``load`` for bytes in memory (the budget counts ``len(data)`` as the file size)."""
    return _load_checked(io.BytesIO(data), what, max_elements)
