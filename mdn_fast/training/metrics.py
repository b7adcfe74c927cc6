"""Evaluation metrics of MA-52 (facts.md "MA-52 / Metrics"), in torch, without scikit-learn.

- ``topk_accuracy(logits [N, C], labels [N], k)``: fraction of clips whose label is among the k highest
  logits.
- ``f1_mean(logits_or_preds, labels, body_of_class)`` (``f1_scores`` gives the parts too): mean of
  action micro-F1, action macro-F1, body micro-F1 and body macro-F1; the body prediction is
  ``body_of_class[top-1 action]``. Micro-F1 of single-label data equals accuracy; macro-F1 averages the
  per-class F1 over the classes that occur in the truth or in the prediction (scikit-learn's ``f1_score(average="macro")`` with default labels; a
  class predicted but never true, or true but never predicted, counts with F1 = 0).
"""
from __future__ import annotations

from typing import Sequence

import torch


def _as_labels(labels, name: str) -> torch.Tensor:
    t = torch.as_tensor(labels)
    if t.dim() != 1 or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected a 1-D integer tensor [N], got shape {tuple(t.shape)} dtype {t.dtype}")
    return t.long().cpu()


def topk_accuracy(logits: torch.Tensor, labels, k: int = 1) -> float:
    """Top-k accuracy in [0, 1]. ``logits [N, C]``, ``labels [N]``; k is clipped to C."""
    logits = torch.as_tensor(logits)
    labels = _as_labels(labels, "labels")
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits: expected [N, C] with N = len(labels) = {labels.shape[0]}, "
                         f"got {tuple(logits.shape)}")
    if labels.numel() == 0:
        raise ValueError("labels: empty; accuracy of zero clips is undefined")
    k = min(int(k), logits.shape[1])
    top = logits.detach().float().cpu().topk(k, dim=1).indices       # [N, k]
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def micro_f1(pred, labels) -> float:
    """Micro-F1 of single-label predictions: every clip is one TP or one (FP, FN) pair -> accuracy."""
    pred, labels = _as_labels(pred, "pred"), _as_labels(labels, "labels")
    return (pred == labels).float().mean().item()


def macro_f1(pred, labels) -> float:
    """Unweighted mean over classes in ``labels ∪ pred`` of ``2·TP / (2·TP + FP + FN)``."""
    pred, labels = _as_labels(pred, "pred"), _as_labels(labels, "labels")
    if pred.shape != labels.shape:
        raise ValueError(f"pred: expected shape {tuple(labels.shape)} like labels, got {tuple(pred.shape)}")
    classes = torch.unique(torch.cat([pred, labels]))                 # sorted union
    p = pred[:, None] == classes[None, :]                             # [N, C] one-hot over the union
    t = labels[:, None] == classes[None, :]
    tp = (p & t).sum(0).double()
    fp = (p & ~t).sum(0).double()
    fn = (~p & t).sum(0).double()
    # Each class in the union has 2TP+FP+FN >= 1, so no division by zero.
    return (2 * tp / (2 * tp + fp + fn)).mean().item()


def f1_scores(logits_or_preds: torch.Tensor, labels, body_of_class: Sequence[int]) -> dict:
    """MA-52's F1_mean and its four parts, as a dict with keys ``action_micro_f1``, ``action_macro_f1``,
    ``body_micro_f1``, ``body_macro_f1``, ``f1_mean``.

    ``logits_or_preds``: action logits ``[N, C]`` (top-1 taken) or predicted action ids ``[N]``.
    ``labels [N]``: true action ids. ``body_of_class[c]``: body class of action c (true body labels are
    derived from the action labels the same way).
    """
    x = torch.as_tensor(logits_or_preds)
    pred = x.detach().argmax(dim=1) if x.dim() == 2 else x
    pred, labels = _as_labels(pred, "predictions"), _as_labels(labels, "labels")
    if pred.shape != labels.shape:
        raise ValueError(f"logits_or_preds: expected {labels.shape[0]} clips like labels, got {tuple(x.shape)}")
    table = torch.as_tensor(list(body_of_class), dtype=torch.long)
    hi = int(max(pred.max(), labels.max())) if labels.numel() else -1
    if hi >= table.numel() or (labels.numel() and int(min(pred.min(), labels.min())) < 0):
        raise ValueError(f"body_of_class: has {table.numel()} entries but action ids range over "
                         f"[{int(min(pred.min(), labels.min()))}, {hi}]")
    bp, bt = table[pred], table[labels]
    parts = {
        "action_micro_f1": micro_f1(pred, labels),
        "action_macro_f1": macro_f1(pred, labels),
        "body_micro_f1": micro_f1(bp, bt),
        "body_macro_f1": macro_f1(bp, bt),
    }
    parts["f1_mean"] = sum(parts.values()) / 4.0
    return parts


def f1_mean(logits_or_preds: torch.Tensor, labels, body_of_class: Sequence[int]) -> float:
    """MA-52's F1_mean (a float in [0, 1]); see ``f1_scores`` for the arguments and the four parts."""
    return f1_scores(logits_or_preds, labels, body_of_class)["f1_mean"]
