"""Training and evaluation loops of ``mdn-fast train`` / ``mdn-fast eval`` on the synthetic micro-action
set (``mdn_fast.data.synthetic``): no downloads, CPU-friendly defaults.

Checkpoint (``OUT/checkpoint.pt``, loadable with ``torch.load(..., weights_only=True)``): a dict
``{"format": "mdn_fast.checkpoint/1", "model_config": MicroDualNet kwargs, "train_config": TrainConfig
fields, "state_dict": ..., "metrics": last epoch's metrics, "history": per-epoch metrics,
"entities": K names}``.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch.utils.data import DataLoader

from .metrics import f1_scores, topk_accuracy
from .nn.micro_dualnet import MicroDualNet

CHECKPOINT_FORMAT = "mdn_fast.checkpoint/1"


@dataclass
class TrainConfig:
    """Everything a run depends on (the CLI's options). ``val_clips`` 0 -> ``max(64, num_clips // 4)``.
    ``threads``: torch intra-op threads; 0 (default) = 1 for ``"pose"`` (its small GEMMs gain little from
    more threads and lose much when the cores are shared) and torch's default for the RGB modalities
    (the ResNet does scale). A seed reproduces a run exactly for a given thread count."""
    modality: str = "pose"
    epochs: int = 25
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    dim: int = 64
    heads: int = 4
    depth: int = 1
    lambda_mac: float = 0.1
    backend: str = "auto"
    backbone: str = "resnet18"
    num_clips: int = 3000
    val_clips: int = 0
    num_frames: int = 8
    image_size: int = 64
    seed: int = 0
    threads: int = 0
    out: str = "runs/synthetic"
    progress: bool = True

    def resolved_val_clips(self) -> int:
        return self.val_clips if self.val_clips > 0 else max(64, self.num_clips // 4)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def synthetic_split(split: str, num_clips: int, cfg: TrainConfig):
    """The synthetic dataset of one split (frames rendered only when the modality needs them)."""
    from .data.synthetic import SyntheticMicroActions
    return SyntheticMicroActions(num_clips, num_frames=cfg.num_frames, seed=cfg.seed, split=split,
                                 render=cfg.modality != "pose", image_size=cfg.image_size)


def model_config(cfg: TrainConfig) -> dict:
    """MicroDualNet kwargs for a synthetic run. Small synthetic frames (< 128 px) use output stride 16
    (layer4 without its downsampling) so ROIAlign sees a 4×4 map of a 64-px frame, not 2×2."""
    from .data.layouts import ENTITIES
    from .data.synthetic import BODY_NAMES, CLASS_NAMES
    return dict(num_classes=len(CLASS_NAMES), num_body_classes=len(BODY_NAMES), modality=cfg.modality,
                layout="body25", entities=tuple(ENTITIES), num_frames=cfg.num_frames, dim=cfg.dim,
                heads=cfg.heads, depth=cfg.depth, tau=1.0, lambda_mac=cfg.lambda_mac, backbone=cfg.backbone,
                backbone_weights=None, backend=cfg.backend,
                feature_stride=16 if cfg.image_size < 128 else 32, roi_size=3 if cfg.image_size < 128 else 7)


def _inputs(batch: dict, modality: str) -> dict:
    x = {"keypoints": batch["keypoints"]}
    if modality != "pose":
        x["frames"] = batch["frames"]
    return x


@torch.no_grad()
def evaluate(model: MicroDualNet, loader, body_of_class) -> dict:
    """Top-1, Top-5, F1_mean (with parts), mean loss, and mean routing weights ``alpha [depth][K][2]``."""
    model.eval()
    logits, labels, alphas, losses, n = [], [], [], 0.0, 0
    for batch in loader:
        out = model(**_inputs(batch, model.modality))
        b = batch["label"].shape[0]
        body = batch.get("body_label") if model.body_head is not None else None
        losses += model.loss(out, batch["label"], body).item() * b
        n += b
        logits.append(out.logits.float())
        labels.append(batch["label"])
        alphas.append(out.alpha.float().sum(0))
    logits, labels = torch.cat(logits), torch.cat(labels)
    scores = f1_scores(logits, labels, body_of_class)
    return {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5),
            "f1_mean": scores["f1_mean"], "f1_parts": {k: v for k, v in scores.items() if k != "f1_mean"},
            "val_loss": losses / n, "alpha": (torch.stack(alphas).sum(0) / n).tolist(), "num_clips": n}


def routing_table(alpha, entities) -> str:
    """Routing weights per entity and block as text: ``entity  a_ST  a_TS``."""
    lines = []
    for d, blk in enumerate(alpha):
        lines.append(f"block {d}:  entity        a_ST   a_TS")
        for name, (a_st, a_ts) in zip(entities, blk):
            lean = "ST" if a_st > a_ts else "TS"
            lines.append(f"          {name:<12}  {a_st:.3f}  {a_ts:.3f}   (leans {lean})")
    return "\n".join(lines)


def format_metrics(m: dict) -> str:
    return (f"Top-1 {100 * m['top1']:.2f}  Top-5 {100 * m['top5']:.2f}  F1_mean {100 * m['f1_mean']:.2f}  "
            f"val loss {m['val_loss']:.4f}")


def train(cfg: TrainConfig, log=print) -> dict:
    """Train on the synthetic set, evaluate on its val split each epoch, save ``cfg.out/checkpoint.pt``.
    Returns ``{"history": [...], "metrics": last, "checkpoint": path, "wall_s": ...}``."""
    threads = torch.get_num_threads()
    if cfg.threads > 0 or cfg.modality == "pose":
        torch.set_num_threads(cfg.threads or 1)
    try:
        return _train(cfg, log)
    finally:
        torch.set_num_threads(threads)   # leave the caller's process as it was


def _train(cfg: TrainConfig, log) -> dict:
    from tqdm.auto import tqdm
    from .data.synthetic import BODY_OF_CLASS, CLASS_NAMES

    t_start = time.perf_counter()
    gen = seed_everything(cfg.seed)
    train_set = synthetic_split("train", cfg.num_clips, cfg)
    val_set = synthetic_split("val", cfg.resolved_val_clips(), cfg)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=max(cfg.batch_size, 64), shuffle=False)
    if len(train_loader) == 0:
        raise ValueError(f"num_clips: {cfg.num_clips} clips make no full batch of batch_size={cfg.batch_size}; "
                         f"raise --num-clips or lower --batch-size")
    mcfg = model_config(cfg)
    model = MicroDualNet(**mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * len(train_loader)
    warmup = max(1, min(steps // 10, 100))
    # Linear warm-up, then cosine decay to 1% of lr.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else
        0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))
    chance = 1.0 / len(CLASS_NAMES)
    log(f"mdn-fast train: modality={cfg.modality} dim={cfg.dim} depth={cfg.depth} backend={cfg.backend} "
        f"clips train/val={len(train_set)}/{len(val_set)} classes={len(CLASS_NAMES)} "
        f"(chance Top-1 {100 * chance:.2f}%) epochs={cfg.epochs} batch={cfg.batch_size} seed={cfg.seed}")
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0, seen, total = time.perf_counter(), 0, 0.0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress)
        for batch in bar:
            out = model(**_inputs(batch, cfg.modality))
            loss = model.loss(out, batch["label"], batch["body_label"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            b = batch["label"].shape[0]
            seen += b
            total += loss.item() * b
            bar.set_postfix(loss=f"{total / seen:.3f}")
        train_s = time.perf_counter() - t0
        m = evaluate(model, val_loader, BODY_OF_CLASS)
        m.update(epoch=epoch, train_loss=total / seen, clips_per_s=seen / train_s)
        history.append(m)
        log(f"epoch {epoch:>2}/{cfg.epochs}  train loss {m['train_loss']:.4f}  {format_metrics(m)}  "
            f"{m['clips_per_s']:.0f} clips/s")
    os.makedirs(cfg.out, exist_ok=True)
    path = os.path.join(cfg.out, "checkpoint.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": mcfg, "train_config": asdict(cfg),
                "state_dict": model.state_dict(), "metrics": history[-1], "history": history,
                "entities": list(model.entities)}, path)
    wall = time.perf_counter() - t_start
    log(f"saved {path}")
    log(f"final held-out: {format_metrics(history[-1])}  (chance Top-1 {100 * chance:.2f}%)")
    log("learned routing weights (mean over the val set):\n" + routing_table(history[-1]["alpha"], model.entities))
    log(f"wall time {wall:.1f} s")
    return {"history": history, "metrics": history[-1], "checkpoint": path, "wall_s": wall}


def load_checkpoint(path: str) -> tuple[MicroDualNet, dict]:
    """Rebuild the model of a checkpoint written by ``train`` (``weights_only`` load: no code runs)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint: no such file {path!r} (mdn-fast train writes OUT/checkpoint.pt)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: {path!r} is not a {CHECKPOINT_FORMAT} checkpoint written by mdn-fast train")
    mcfg = dict(ckpt["model_config"])
    mcfg["entities"] = tuple(mcfg["entities"])
    mcfg["backbone_weights"] = None   # the state dict below holds the trained backbone
    model = MicroDualNet(**mcfg)
    model.load_state_dict(ckpt["state_dict"])
    return model, ckpt


def evaluate_checkpoint(path: str, num_clips: int | None = None, batch_size: int | None = None,
                        log=print) -> dict:
    """Evaluate a checkpoint on the synthetic val split it was trained against (same seed and size unless
    ``num_clips`` is given)."""
    from .data.synthetic import BODY_OF_CLASS, CLASS_NAMES
    model, ckpt = load_checkpoint(path)
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in ckpt["train_config"].items() if k in known})
    n = num_clips or cfg.resolved_val_clips()
    loader = DataLoader(synthetic_split("val", n, cfg), batch_size=batch_size or max(cfg.batch_size, 64))
    m = evaluate(model, loader, BODY_OF_CLASS)
    log(f"mdn-fast eval {path}: modality={cfg.modality} val clips={m['num_clips']}")
    log(f"held-out: {format_metrics(m)}  (chance Top-1 {100 / len(CLASS_NAMES):.2f}%)")
    log("learned routing weights (mean over the val set):\n" + routing_table(m["alpha"], model.entities))
    return m
