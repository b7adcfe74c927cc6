"""MA-52 submission file ``prediction.csv``: ``vid, action_pred_1..5, body_pred_1..5``.

One row per clip, the header first, comma-separated, LF line endings. ``vid`` is the clip name as in
the list file (e.g. ``test0000.mp4``); ``action_pred_k`` is the k-th most likely action id (descending
logits; ties broken by the lower id).

``body_pred_k``: without body logits, ``body_pred_k = BODY_OF_ACTION[action_pred_k]`` for k = 1..5, the
rule of the official MA-52 evaluation script (2025), so body ids repeat (e.g.
``test0000.mp4,9,8,7,10,5,1,1,1,1,1``). ``body_pred_1`` is the body of the top-1 action, the only body
column the F1_mean metric reads. With body logits (a body head), ``body_pred_k`` is the k-th most likely
body class of that head (distinct). The reader accepts both: body ids in 0..6, repeats allowed.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from .ma52 import BODY_OF_ACTION, NUM_BODY_CLASSES, NUM_CLASSES

TOPK = 5
HEADER = (["vid"] + [f"action_pred_{k}" for k in range(1, TOPK + 1)]
          + [f"body_pred_{k}" for k in range(1, TOPK + 1)])


def _as_2d(x, name, width):
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"{name}: expected shape [N, {width}], got {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: holds non-finite values")
    return x.astype(np.float64)


def rank(logits: np.ndarray) -> np.ndarray:
    """Class ids by descending score, ties to the lower id: ``[N, C]`` int64."""
    return np.argsort(-logits, axis=1, kind="stable")


def body_from_actions(action_top: np.ndarray, body_of_action=BODY_OF_ACTION) -> np.ndarray:
    """``body_pred_k = body_of(action_pred_k)`` for each column of ``action_top [N, k]`` (the official
    evaluation script's rule; ids may repeat): ``[N, k]`` int64."""
    return np.asarray(body_of_action, dtype=np.int64)[np.asarray(action_top, dtype=np.int64)]


def predictions(action_logits, body_logits=None) -> tuple[np.ndarray, np.ndarray]:
    """``(action_top5 [N, 5], body_top5 [N, 5])`` from logits."""
    a = _as_2d(action_logits, "action_logits", NUM_CLASSES)
    arank = rank(a)
    if body_logits is None:
        brank = body_from_actions(arank[:, :TOPK])
    else:
        b = _as_2d(body_logits, "body_logits", NUM_BODY_CLASSES)
        if b.shape[0] != a.shape[0]:
            raise ValueError(f"body_logits: {b.shape[0]} rows but action_logits has {a.shape[0]}")
        brank = rank(b)[:, :TOPK]
    return arank[:, :TOPK], brank


def write_prediction_csv(path, vids, action_logits, body_logits=None) -> Path:
    """Write ``prediction.csv``; returns the path."""
    vids = [str(v) for v in vids]
    act, body = predictions(action_logits, body_logits)
    if len(vids) != act.shape[0]:
        raise ValueError(f"vids: {len(vids)} names but {act.shape[0]} rows of logits")
    if len(set(vids)) != len(vids):
        raise ValueError("vids: clip names must be unique")
    bad = [v for v in vids if not v or "," in v or "\n" in v or "\r" in v]
    if bad:
        raise ValueError(f"vids: names must be non-empty without commas or newlines, got {bad[0]!r}")
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for v, a, b in zip(vids, act, body):
            w.writerow([v, *map(int, a), *map(int, b)])
    return path


def read_prediction_csv(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read a ``prediction.csv`` back: ``(vids, action_top5 [N, 5], body_top5 [N, 5])``, validated."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: prediction file does not exist")
    vids, acts, bodies = [], [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if n == 1:
                if [c.strip() for c in row] != HEADER:
                    raise ValueError(f"{path}, line 1: expected header {','.join(HEADER)}, found {','.join(row)}")
                continue
            if not row:
                continue
            if len(row) != len(HEADER):
                raise ValueError(f"{path}, line {n}: expected {len(HEADER)} columns, found {len(row)}")
            try:
                vals = [int(c) for c in row[1:]]
            except ValueError:
                raise ValueError(f"{path}, line {n}: expected integer class ids, found {row[1:]}") from None
            a, b = vals[:TOPK], vals[TOPK:]
            if not all(0 <= x < NUM_CLASSES for x in a) or len(set(a)) != TOPK:
                raise ValueError(f"{path}, line {n}: expected 5 distinct action ids in 0..{NUM_CLASSES - 1}, found {a}")
            if not all(0 <= x < NUM_BODY_CLASSES for x in b):   # repeats allowed: body_of(action_pred_k)
                raise ValueError(f"{path}, line {n}: expected 5 body ids in 0..{NUM_BODY_CLASSES - 1}, found {b}")
            vids.append(row[0])
            acts.append(a)
            bodies.append(b)
    if not vids:
        raise ValueError(f"{path}: no prediction rows after the header")
    return vids, np.asarray(acts, np.int64), np.asarray(bodies, np.int64)
