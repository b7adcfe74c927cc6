"""Plots of a trained model (matplotlib, Agg backend: no display needed), the files of ``mdn-fast report``.

- ``routing_per_class.png``: heatmap of ``a_ST`` per class (rows) × entity (columns), one panel per
  dual-path block (``a_TS = 1 - a_ST``); red = leans ST (spatial configuration first), blue = leans TS
  (motion first). Classes absent from the evaluated split are blank.
- ``routing_mean.png``: mean ``a_ST`` and ``a_TS`` per entity over the evaluated clips (bars).
- ``confusion_actions.png`` (and ``confusion_body.png`` when the dataset has body classes; the body
  prediction is the body class of the top-1 action, as MA-52's F1_mean uses it): row-normalised
  confusion matrices (rows = truth).
- ``curves.png``: train / val loss, Top-1 / Top-5 and F1_mean per epoch from the checkpoint's history.
They take tensors and lists only; ``mdn_fast.training.report`` evaluates a checkpoint and calls them.
"""
from __future__ import annotations

import torch

__all__ = ["alpha_per_class", "confusion_matrix", "plot_routing", "plot_confusion", "plot_curves"]


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)   # files only; never open a window
    import matplotlib.pyplot as plt
    return plt


def alpha_per_class(alpha: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean routing weights per class: ``alpha [N, depth, K, 2]``, ``labels [N]`` -> ``[C, depth, K, 2]``
    (NaN rows for classes with no clip)."""
    alpha = torch.as_tensor(alpha, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if alpha.dim() != 4 or alpha.shape[0] != labels.shape[0] or alpha.shape[-1] != 2:
        raise ValueError(f"alpha: expected [N, depth, K, 2] with N = len(labels) = {labels.shape[0]}, "
                         f"got {tuple(alpha.shape)}")
    sums = torch.zeros((num_classes,) + tuple(alpha.shape[1:]), dtype=torch.float64)
    sums.index_add_(0, labels, alpha)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    out = sums / counts.view(-1, 1, 1, 1)
    out[counts == 0] = float("nan")
    return out


def confusion_matrix(pred, labels, num_classes: int) -> torch.Tensor:
    """``[C, C]`` int64 counts, rows = true class, columns = predicted class."""
    pred = torch.as_tensor(pred, dtype=torch.long)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if pred.shape != labels.shape:
        raise ValueError(f"pred: expected shape {tuple(labels.shape)} like labels, got {tuple(pred.shape)}")
    return torch.bincount(labels * num_classes + pred, minlength=num_classes * num_classes).view(num_classes,
                                                                                               num_classes)


def _class_labels(names, C, width=24):
    if not names:
        return [str(c) for c in range(C)]
    return [f"{c} {n}"[:width] for c, n in enumerate(names)]


def plot_routing(per_class: torch.Tensor, entities, path_heatmap: str, path_bars: str, class_names=None,
                 mean: torch.Tensor | None = None) -> tuple[str, str]:
    """Routing plots from ``per_class [C, depth, K, 2]`` (and the overall ``mean [depth, K, 2]``; default:
    the mean over the classes present)."""
    plt = _plt()
    C, depth, K, _ = per_class.shape
    labels = _class_labels(class_names, C)
    fig, axes = plt.subplots(1, depth, figsize=(1.6 + 0.75 * K * depth + 1.5, max(3.5, 0.2 * C + 1.8)),
                             squeeze=False)
    im = None
    for d in range(depth):
        ax = axes[0, d]
        a_st = per_class[:, d, :, 0].numpy()
        im = ax.imshow(a_st, cmap="coolwarm", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(K))
        ax.set_xticklabels(entities, rotation=45, ha="right")
        ax.set_yticks(range(C))
        ax.set_yticklabels(labels if d == 0 else [], fontsize=7 if C > 20 else 9)
        ax.set_title(f"a_ST per class, block {d}" if depth > 1 else "a_ST per class and entity")
        if C <= 16 and K <= 8:
            for i in range(C):
                for k in range(K):
                    if a_st[i, k] == a_st[i, k]:   # not NaN
                        ax.text(k, i, f"{a_st[i, k]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=axes[0, :].tolist(), label="a_ST  (1 = spatial first, 0 = motion first)", shrink=0.8)
    fig.savefig(path_heatmap, dpi=110, bbox_inches="tight")
    plt.close(fig)

    if mean is None:
        present = ~torch.isnan(per_class[:, 0, 0, 0])
        mean = per_class[present].mean(0)
    fig, axes = plt.subplots(1, depth, figsize=(1.5 + 0.9 * K * depth, 3.8), squeeze=False)
    x = torch.arange(K).numpy()
    for d in range(depth):
        ax = axes[0, d]
        ax.bar(x - 0.2, mean[d, :, 0].numpy(), 0.4, label="a_ST (spatial first)", color="#d6604d")
        ax.bar(x + 0.2, mean[d, :, 1].numpy(), 0.4, label="a_TS (motion first)", color="#4393c3")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(x)
        ax.set_xticklabels(entities, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("routing weight")
        ax.set_title(f"mean routing weights, block {d}" if depth > 1 else "mean routing weights per entity")
        if d == 0:
            ax.legend(fontsize=8, loc="upper right")
    fig.savefig(path_bars, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path_heatmap, path_bars


def plot_confusion(cm: torch.Tensor, path: str, names=None, title: str = "confusion") -> str:
    """Row-normalised confusion matrix (rows = truth); counts written in the cells when C <= 15."""
    plt = _plt()
    C = cm.shape[0]
    rows = cm.sum(1, keepdim=True).clamp_min(1)
    norm = (cm.double() / rows).numpy()
    size = max(4.0, 0.18 * C + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    labels = _class_labels(names, C, width=18)
    fs = 6 if C > 30 else 8
    ax.set_xticks(range(C))
    # many classes: ids only under the columns (the row labels carry the names)
    ax.set_xticklabels(labels if C <= 20 else [str(c) for c in range(C)], rotation=90, fontsize=fs)
    ax.set_yticks(range(C))
    ax.set_yticklabels(labels, fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = float(cm.diag().sum()) / max(1, int(cm.sum()))
    ax.set_title(f"{title}  (accuracy {100 * acc:.1f}%, {int(cm.sum())} clips)")
    if C <= 15:
        for i in range(C):
            for j in range(C):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="fraction of the true class", shrink=0.8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(history: list, path: str) -> str:
    """Loss (train, val), Top-1/Top-5 and F1_mean (when present) per epoch."""
    if not history:
        raise ValueError("history: empty; the checkpoint holds no trained epoch")
    plt = _plt()
    ep = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    has_f1 = any(h.get("f1_mean") is not None for h in history)
    n = 3 if has_f1 else 2
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4))
    ax = axes[0]
    if all("train_loss" in h for h in history):
        ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax.plot(ep, [h["val_loss"] for h in history], "s-", label="val")
    ax.set_title("loss")
    ax.set_xlabel("epoch")
    ax.legend()
    ax = axes[1]
    ax.plot(ep, [100 * h["top1"] for h in history], "o-", label="Top-1")
    ax.plot(ep, [100 * h["top5"] for h in history], "s--", label="Top-5")
    ax.set_title("val accuracy (%)")
    ax.set_xlabel("epoch")
    ax.legend()
    if has_f1:
        ax = axes[2]
        ax.plot(ep, [100 * h["f1_mean"] if h.get("f1_mean") is not None else float("nan") for h in history],
                "o-", color="C2")
        ax.set_title("val F1_mean (%)")
        ax.set_xlabel("epoch")
    for a in axes:
        a.grid(alpha=0.3)
        if len(ep) < 15:
            a.set_xticks(ep)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
