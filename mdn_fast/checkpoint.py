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
"""
from __future__ import annotations

import os
import pickle
import random

import numpy as np
import torch

FORMAT = "mdn_fast.checkpoint/2"
#: Formats whose model part this version reads (evaluation, report). Resume needs FORMAT.
READABLE = ("mdn_fast.checkpoint/1", FORMAT)
#: Model-config keys that may differ between a checkpoint and a request without changing the weights'
#: meaning: the op backend computes the same function everywhere, and backbone_weights only seeds init.
_IGNORED_MODEL_KEYS = ("backend", "backbone_weights")


def save(obj: dict, path: str) -> str:
    """``torch.save`` through a temporary file and an atomic rename: a run killed mid-write leaves the
    previous checkpoint intact."""
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load(path: str, *, need_train_state: bool = False) -> dict:
    """Load a checkpoint with ``weights_only=True`` and check its format (ValueError naming what was
    found and what is readable); ``need_train_state`` asks for a resumable ``last.pt``/``best.pt``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint: no such file {path!r} (mdn-fast train writes OUT/last.pt, "
                                f"OUT/best.pt and OUT/checkpoint.pt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint: {path!r} cannot be loaded safely (torch.load weights_only=True refused "
                         f"it: {first}); only checkpoints written by mdn-fast train are accepted") from None
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
