"""Checkpoints of ``mdn-fast train``: safe loading, compatibility checks, RNG state capture.

Every file holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)`` (no code runs). Format ``mdn_fast.checkpoint/2``:

```
{"format": "mdn_fast.checkpoint/2", "kind": "train_state" | "model",
 "model_config": MicroDualNet kwargs, "train_config": TrainConfig fields, "entities": [K names],
 "class_names": [C names] or None, "state_dict": model weights,
 "metrics": last epoch's metrics, "history": [per-epoch metrics], "epoch": epochs done,
 # kind "train_state" only (OUT/last.pt, OUT/best.pt):
 "optimizer": ..., "scheduler": ..., "scaler": ... or None, "best": {"epoch", "top1"},
 "world_size": W, "rng": [one rng_state() per rank]}
```
``OUT/checkpoint.pt`` (kind ``"model"``, written when training ends) has no optimizer state.
Format ``mdn_fast.checkpoint/1`` (the first release: model-only, synthetic set) still loads for
evaluation; anything else is refused.

Nothing lost:
- every file is written atomically (``save``, ``atomic_copy``): a temporary file beside the target
  (``.NAME.tmp-PID-TOKEN``), flushed and fsynced, renamed over the target, the folder fsynced. A run
  killed mid-write leaves the previous file intact and at most a temporary file, which
  ``clean_stale_temps(OUT)`` removes when the next run starts. A write that fails (a full disk, a
  read-only folder) raises the OSError naming the file being written, not the temporary file
  (``write_error``).
- ``save`` stores a SHA-256 over the content (every tensor's dtype, shape and bytes, every other value's
  repr) under ``"integrity"``; ``load`` recomputes it and refuses a mismatch as *corrupted*. A file cut
  short is refused as *truncated*, a file that is no ``torch.save`` output (a text file) as such.
  Checkpoints written before the hash existed load unverified.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import random
import re
import secrets
import shutil

import numpy as np
import torch

FORMAT = "mdn_fast.checkpoint/2"
#: Formats whose model part this version reads (evaluation, report). Resume needs FORMAT.
READABLE = ("mdn_fast.checkpoint/1", FORMAT)
#: Model-config keys that may differ between a checkpoint and a request without changing the weights'
#: meaning: the op backend computes the same function everywhere, and backbone_weights only seeds init.
_IGNORED_MODEL_KEYS = ("backend", "backbone_weights")


#: Key of the content hash in a checkpoint dict, and the hashing scheme's name (stored with it).
INTEGRITY_KEY = "integrity"
HASH_SCHEME = "sha256/mdn_fast-content/1"
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")     # ours: .last.pt.tmp-<pid>-<token>
_OLD_TEMP_RE = re.compile(r"^.+\.pt\.tmp(\d+)$")          # earlier versions: last.pt.tmp<pid>


def content_digest(obj) -> str:
    """SHA-256 over a checkpoint's content: tensors by dtype, shape and bytes; dicts (in order), lists
    and tuples by structure; other values by type and repr. Stable across ``torch.save``/``torch.load``."""
    h = hashlib.sha256()

    def walk(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(x, dict):
            h.update(f"D{len(x)}|".encode())
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, (list, tuple)):
            h.update(f"{'L' if isinstance(x, list) else 'U'}{len(x)}|".encode())
            for v in x:
                walk(v)
        else:
            h.update(f"S{type(x).__name__}:{x!r}|".encode())

    walk(obj)
    return h.hexdigest()


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:       # e.g. Windows: folders cannot be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(e: OSError, path: str) -> OSError:
    """``e`` (raised while writing ``path``, e.g. ENOSPC, EACCES, EROFS) as one line naming ``path`` -- the
    file being written, not the temporary file beside it -- and the errno text, with the same errno:
    ``[Errno 28] cannot write /runs/x/last.pt: No space left on device (the previous last.pt is unchanged)``."""
    path = os.fspath(path)
    reason = e.strerror if e.errno is not None and e.strerror else (str(e) or type(e).__name__)
    kept = f" (the previous {os.path.basename(path)} is unchanged)" if os.path.isfile(path) else ""
    msg = f"cannot write {path}: {reason}{kept}"
    if e.errno is None:
        return OSError(msg)
    try:
        return type(e)(e.errno, msg)
    except TypeError:          # an OSError subclass with another signature
        return OSError(e.errno, msg)


def replace_atomically(path: str, write_tmp) -> str:
    """``write_tmp(tmp)`` writes a temporary file beside ``path`` (named ``.<name>.tmp-<pid>-<hex>``, which
    ``clean_stale_temps`` knows); it is fsynced and renamed over ``path``, so a reader never sees a partial
    file. The temporary is removed on any error; an OSError (full disk, read-only folder, ...) is re-raised
    by ``write_error``, naming ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        write_tmp(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise write_error(e, path) from None
        raise
    _fsync_dir(directory)
    return path


def _atomic_write(path: str, write) -> str:
    """Write through ``write(binary file)`` into a temp file beside ``path``, fsync, rename over ``path``."""
    def write_tmp(tmp):
        with open(tmp, "xb") as f:
            write(f)
    return replace_atomically(path, write_tmp)


def save(obj: dict, path: str) -> str:
    """``torch.save`` atomically (temp file, fsync, rename): a run killed mid-write leaves the previous
    checkpoint intact. Adds the content hash (``INTEGRITY_KEY``) that ``load`` verifies."""
    body = {k: v for k, v in obj.items() if k != INTEGRITY_KEY}
    body[INTEGRITY_KEY] = {"scheme": HASH_SCHEME, "sha256": content_digest(body)}
    return _atomic_write(path, lambda f: torch.save(body, f))


def atomic_copy(src: str, dst: str) -> str:
    """Copy ``src`` to ``dst`` atomically (e.g. ``OUT/last.pt`` -> ``OUT/best.pt``): ``dst`` is the old
    file or the complete copy, never a partial one."""
    with open(src, "rb") as fin:
        return _atomic_write(dst, lambda f: shutil.copyfileobj(fin, f, 1 << 20))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False            # our own leftovers: this process is not writing them now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temps(directory: str) -> list[str]:
    """Remove the temporary files that killed runs left in ``directory`` (``save``/``atomic_copy``
    temps, and ``*.pt.tmp<pid>`` of earlier versions) unless their process is still alive on this
    machine; returns the removed paths. Call it once when a run starts, before the first save."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        m = _TEMP_RE.match(name) or _OLD_TEMP_RE.match(name)
        p = os.path.join(directory, name)
        if m is None or not os.path.isfile(p) or _pid_alive(int(m.group(1))):
            continue
        try:
            os.unlink(p)
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def _precheck(path: str) -> bool:
    """Refuse empty, truncated and non-``torch.save`` files before unpickling; True for a zip archive
    (torch's format since 1.6), False for the legacy pickle format."""
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"checkpoint: {path!r} is truncated: the file is empty (0 bytes), a write was cut short "
                         f"(killed run, full disk); use another checkpoint (OUT/last.pt, OUT/best.pt)")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 4 and b"PK\x03\x04".startswith(head):
            raise ValueError(f"checkpoint: {path!r} is truncated: {size} bytes, the start of an archive; a write "
                             f"was cut short (killed run, full disk); use another checkpoint (OUT/last.pt, OUT/best.pt)")
        if head.startswith(b"PK\x03\x04"):
            f.seek(max(0, size - (22 + 65535)))
            tail = f.read()
            if b"PK\x05\x06" not in tail:
                raise ValueError(f"checkpoint: {path!r} is truncated: the archive ends before its directory "
                                 f"({size} bytes; a write was cut short by a killed run or a full disk); use "
                                 f"another checkpoint (OUT/last.pt, OUT/best.pt)")
            return True
    if head[:1] != b"\x80":
        looks = "text" if all(32 <= c < 127 or c in (9, 10, 13) for c in head) else "other data"
        raise ValueError(f"checkpoint: {path!r} is not a checkpoint written by torch.save (it starts with {head!r}, "
                         f"which looks like {looks}); mdn-fast train writes OUT/last.pt, OUT/best.pt and "
                         f"OUT/checkpoint.pt")
    return False


#: The files ``mdn-fast train`` writes in OUT, in the order a folder's checkpoints are suggested.
RUN_FILES = ("last.pt", "best.pt", "checkpoint.pt")


def _checkpoints_in(folder: str) -> str:
    """What to pass instead of ``folder``: the files in it that look like checkpoints (``RUN_FILES`` first,
    then other ``*.pt`` / ``*.pth``), or that it holds none."""
    try:
        names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))
                       and n.endswith((".pt", ".pth")) and not n.startswith("."))
    except OSError as e:
        return f"it cannot be listed ({e.strerror or e}); pass OUT/last.pt, OUT/best.pt or OUT/checkpoint.pt"
    names = [n for n in RUN_FILES if n in names] + [n for n in names if n not in RUN_FILES]
    if not names:
        return ("it holds no *.pt file; pass a file mdn-fast train wrote (OUT/last.pt, OUT/best.pt or "
                "OUT/checkpoint.pt)")
    shown = ", ".join(os.path.join(folder, n) for n in names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6
                                                                      else "")
    return f"the checkpoints in it: {shown}; pass one of them"


def load(path: str, *, need_train_state: bool = False) -> dict:
    """Load a checkpoint with ``weights_only=True``, verify its content hash and check its format
    (ValueError naming what was found: truncated, corrupted, not a checkpoint, another format);
    ``need_train_state`` asks for a resumable ``last.pt``/``best.pt``."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint: {path!r} is a folder, not a checkpoint file; "
                                + _checkpoints_in(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint: no such file {path!r} (mdn-fast train writes OUT/last.pt, "
                                f"OUT/best.pt and OUT/checkpoint.pt)")
    is_zip = _precheck(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if is_zip and "Weights only load failed" not in str(e):
            raise ValueError(f"checkpoint: {path!r} is corrupted: torch.load cannot read it ({type(e).__name__}: "
                             f"{first}); use another checkpoint (OUT/last.pt, OUT/best.pt)") from None
        raise ValueError(f"checkpoint: {path!r} cannot be loaded safely (torch.load weights_only=True refused "
                         f"it: {first}); only checkpoints written by mdn-fast train are accepted (or it is "
                         f"corrupted)") from None
    if isinstance(ckpt, dict) and INTEGRITY_KEY in ckpt:
        stored = ckpt.pop(INTEGRITY_KEY)
        ok = isinstance(stored, dict) and stored.get("scheme") == HASH_SCHEME
        if not ok or stored.get("sha256") != content_digest(ckpt):
            raise ValueError(f"checkpoint: {path!r} is corrupted: its content does not match the SHA-256 stored "
                             f"when it was written (a bit flip on disk or in transfer); use another checkpoint "
                             f"(OUT/last.pt, OUT/best.pt) or copy it again")
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if fmt not in READABLE:
        found = repr(fmt) if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}, not a dict"
        raise ValueError(f"checkpoint: {path!r} has format {found}; this version reads {list(READABLE)}")
    missing = [k for k in ("model_config", "state_dict") if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint: {path!r} lacks {missing}")
    if need_train_state:
        if fmt != FORMAT or ckpt.get("kind") != "train_state":
            raise ValueError(f"checkpoint: {path!r} (format {fmt!r}, kind {ckpt.get('kind')!r}) holds no training "
                             f"state; resume from OUT/last.pt or OUT/best.pt (format {FORMAT!r}, kind 'train_state')")
        missing = [k for k in ("optimizer", "scheduler", "epoch", "rng", "history") if k not in ckpt]
        if missing:
            raise ValueError(f"checkpoint: {path!r} lacks training-state entries {missing}")
    return ckpt


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def config_differences(saved: dict, requested: dict, ignore=_IGNORED_MODEL_KEYS) -> dict:
    """``{key: (saved, requested)}`` for every model-config key whose values differ (tuples compare
    as lists; keys in ``ignore`` are skipped)."""
    out = {}
    for k in sorted(set(saved) | set(requested)):
        if k in ignore:
            continue
        a, b = _norm(saved.get(k, "<absent>")), _norm(requested.get(k, "<absent>"))
        if a != b:
            out[k] = (a, b)
    return out


def check_model_config(saved: dict, requested: dict, what: str, keys=None) -> None:
    """Raise ValueError listing the model-config keys (restricted to ``keys`` when given) where the
    checkpoint ``saved`` differs from ``requested``."""
    diff = config_differences(saved, requested)
    if keys is not None:
        diff = {k: v for k, v in diff.items() if k in keys}
    if diff:
        lines = "; ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"checkpoint: model config does not match {what}: {lines}")


def check_state_dict(model: torch.nn.Module, state: dict, path: str = "checkpoint") -> None:
    """Raise ValueError listing the keys missing from ``state``, the unexpected keys and the shape
    (or dtype) mismatches against ``model.state_dict()``; return when they agree exactly."""
    if not isinstance(state, dict):
        raise ValueError(f"{path}: 'state_dict' is a {type(state).__name__}, expected a dict of tensors")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} {state[k].dtype} vs model {tuple(v.shape)} {v.dtype}"
              for k, v in own.items() if k in state and (not isinstance(state[k], torch.Tensor)
                                                         or state[k].shape != v.shape or state[k].dtype != v.dtype)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:10]}" + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""))
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:10]}"
                         + (f" (+{len(unexpected) - 10} more)" if len(unexpected) > 10 else ""))
        if shapes:
            parts.append(f"shape/dtype mismatches [{'; '.join(shapes[:10])}]"
                         + (f" (+{len(shapes) - 10} more)" if len(shapes) > 10 else ""))
        raise ValueError(f"{path}: state_dict does not fit the model: " + "; ".join(parts))


# ------------------------------------------------------------------------------------------ RNG state
def rng_state(generator: torch.Generator | None, device: torch.device | None = None) -> dict:
    """Python, NumPy (global), torch CPU (+ this device's CUDA) and the data generator's states, as
    tensors and numbers (``weights_only``-loadable)."""
    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out = {
        "python_version": int(py[0]), "python": torch.tensor(py[1], dtype=torch.int64),
        "python_gauss": py[2],
        "numpy_name": str(name), "numpy_keys": torch.from_numpy(np.asarray(keys, np.int64)),
        "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss), "numpy_cached_gaussian": float(cached),
        "torch": torch.get_rng_state(),
        "generator": generator.get_state() if generator is not None else None,
        "cuda": None,
    }
    if device is not None and device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_state(state: dict, generator: torch.Generator | None, device: torch.device | None = None) -> None:
    """Restore what ``rng_state`` captured."""
    random.setstate((state["python_version"], tuple(int(x) for x in state["python"].tolist()),
                     state["python_gauss"]))
    np.random.set_state((state["numpy_name"], state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])
    if device is not None and device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
