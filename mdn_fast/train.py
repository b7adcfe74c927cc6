"""Training and evaluation loops of ``mdn-fast train`` / ``mdn-fast eval``.

Datasets (``TrainConfig.dataset``):
- ``"synthetic"`` (default): the seeded synthetic micro-action set (``mdn_fast.data.synthetic``), no
  downloads, CPU-friendly defaults (a ~2 min pose run on a laptop CPU).
- ``"ma52"``: MA-52 under ``root`` (``MA52Dataset``): 52 actions + 7 body classes, layout
  ``coco18_hands28``, K = 6 entities, T = 8 segments, rgb+pose by default.
- ``"imigue"``: the iMiGUE challenge release under ``root`` (``IMiGUEDataset``): 32 classes, no body
  head, layout ``miga22``, K = 5 (no lower body), pose only (the release carries no video).
Real-dataset runs start from ``PRESETS`` (the paper's architecture: D = 256, 8 heads, ResNet-101 for
RGB; the optimisation settings are ours, not the paper's), overridden by whatever the caller sets.

One epoch: AdamW steps with a per-step LR schedule (linear warm-up over ``warmup_epochs``, then cosine
decay to 1 % of ``lr``), optional bf16 autocast (``amp``), gradient-norm clipping (``grad_clip``, 0 =
off), then evaluation on the val split (Top-1, Top-5, F1_mean when the dataset has body classes, val
loss, mean routing weights) and a checkpoint: ``OUT/last.pt`` every epoch, ``OUT/best.pt`` when val
Top-1 improves (both resumable, see ``mdn_fast.checkpoint``), and ``OUT/checkpoint.pt`` (model only)
when the run returns. ``resume`` restores model, optimizer, scheduler, epoch, history and every RNG
(python, numpy, torch, the data generator; per rank), so a resumed CPU run continues bit-identically.

Multi-process: under ``torchrun`` the loop runs DistributedDataParallel (``mdn_fast.distributed``).
``batch_size`` is the *global* batch (split evenly over the ranks, so the gradient equals the
single-process gradient on the concatenated batch up to the MAC term, whose negatives are the clips of
each rank's own batch); only rank 0 logs and writes files; evaluation shards the val set without
padding and gathers the predictions, so metrics equal a single-process evaluation's.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from . import checkpoint as ckpt_io
from . import distributed as dist_util
from .metrics import f1_scores, topk_accuracy
from .nn.micro_dualnet import MicroDualNet

CHECKPOINT_FORMAT = ckpt_io.FORMAT
DATASETS = ("synthetic", "ma52", "imigue")


@dataclass
class TrainConfig:
    """Everything a run depends on (the CLI's options); defaults are the synthetic set's.

    ``num_clips`` / ``val_clips``: synthetic: clips generated (``val_clips`` 0 -> ``max(64, num_clips // 4)``);
    real datasets: 0 = every clip of the split, N > 0 = its first N clips (quick runs).
    ``threads``: torch intra-op threads; 0 = 1 for ``"pose"`` (its small GEMMs gain little from more
    threads and lose much when the cores are shared) and torch's default for the RGB modalities.
    ``image_size``: synthetic frame side; MA-52 crop side (short side resized to ``image_size·256/224``).
    ``amp``: bf16 autocast (CUDA or CPU); bf16 keeps fp32's exponent range, so no loss scaling is needed.
    ``grad_clip``: max global gradient norm (default 1.0; 0 = no clipping).
    ``stop_after``: stop after this many epochs of *this* invocation (0 = run to ``epochs``), leaving a
    resumable ``last.pt`` — for time-limited job slots. ``resume``: a ``last.pt``/``best.pt`` path, or
    ``"auto"`` (``OUT/last.pt`` if it exists, else a fresh start). A seed reproduces a run exactly for a
    given thread count, device and world size.
    """
    dataset: str = "synthetic"
    root: str = ""
    val_split: str = "val"
    modality: str = "pose"
    epochs: int = 25
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    amp: bool = False
    dim: int = 64
    heads: int = 4
    depth: int = 1
    lambda_mac: float = 0.1
    backend: str = "auto"
    backbone: str = "resnet18"
    backbone_weights: str = ""
    num_clips: int = 3000
    val_clips: int = 0
    num_frames: int = 8
    image_size: int = 64
    seed: int = 0
    threads: int = 0
    workers: int = 0
    eval_batch_size: int = 0
    device: str = "auto"
    out: str = "runs/synthetic"
    resume: str = ""
    stop_after: int = 0
    progress: bool = True

    def resolved_val_clips(self) -> int:
        if self.dataset != "synthetic":
            return self.val_clips
        return self.val_clips if self.val_clips > 0 else max(64, self.num_clips // 4)

    @classmethod
    def for_dataset(cls, dataset: str = "synthetic", **overrides) -> "TrainConfig":
        """The dataset's preset (``PRESETS``) with ``overrides`` on top (None values are ignored)."""
        if dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {DATASETS}, got {dataset!r}")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"TrainConfig: unknown field(s) {bad}")
        values = {**PRESETS[dataset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(dataset=dataset, **values)


#: Per-dataset defaults. Architecture as in the paper (T = 8, D = 256, ResNet-101); epochs, batch, lr,
#: warm-up and lambda_mac are our starting points, not values from the paper.
PRESETS = {
    "synthetic": {},
    "ma52": dict(modality="rgb+pose", epochs=40, batch_size=32, lr=5e-4, weight_decay=0.05, warmup_epochs=2.0,
                 dim=256, heads=8, lambda_mac=1.0, backbone="resnet101", image_size=224, num_clips=0,
                 workers=8, out="runs/ma52"),
    "imigue": dict(modality="pose", epochs=60, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=2.0,
                   dim=256, heads=8, lambda_mac=1.0, num_clips=0, workers=2, out="runs/imigue"),
}


@dataclass
class DatasetSpec:
    """What the model and the metrics need to know about a dataset."""
    name: str
    num_classes: int
    num_body_classes: int | None
    layout: str
    entities: tuple
    body_of_class: tuple | None      # body class of each action (F1_mean), None without body classes
    class_names: tuple | None
    body_names: tuple | None

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ datasets
def synthetic_split(split: str, num_clips: int, cfg: TrainConfig):
    """The synthetic dataset of one split (frames rendered only when the modality needs them)."""
    from .data.synthetic import SyntheticMicroActions
    return SyntheticMicroActions(num_clips, num_frames=cfg.num_frames, seed=cfg.seed, split=split,
                                 render=cfg.modality != "pose", image_size=cfg.image_size)


def dataset_spec(cfg: TrainConfig, class_names=None) -> DatasetSpec:
    """The ``DatasetSpec`` of ``cfg.dataset`` (class names: synthetic's own, MA-52's ``label_name.txt``)."""
    from .data.layouts import ENTITIES, get_layout
    if cfg.dataset == "synthetic":
        from .data.synthetic import BODY_NAMES, BODY_OF_CLASS, CLASS_NAMES
        return DatasetSpec("synthetic", len(CLASS_NAMES), len(BODY_NAMES), "body25", tuple(ENTITIES),
                           tuple(BODY_OF_CLASS), tuple(CLASS_NAMES), tuple(BODY_NAMES))
    if cfg.dataset == "ma52":
        from .data.ma52 import BODY_NAMES, BODY_OF_ACTION, NUM_BODY_CLASSES, NUM_CLASSES
        return DatasetSpec("ma52", NUM_CLASSES, NUM_BODY_CLASSES, "coco18_hands28", tuple(ENTITIES),
                           tuple(BODY_OF_ACTION), tuple(class_names) if class_names else None, tuple(BODY_NAMES))
    if cfg.dataset == "imigue":
        from .data.imigue import NUM_CLASSES
        return DatasetSpec("imigue", NUM_CLASSES, None, "miga22", tuple(get_layout("miga22").entities), None,
                           None, None)
    raise ValueError(f"dataset: expected one of {DATASETS}, got {cfg.dataset!r}")


def _open_real_split(cfg: TrainConfig, split: str, train: bool):
    root = Path(cfg.root)
    if cfg.dataset == "ma52":
        from .data.ma52 import MA52Dataset
        return MA52Dataset(root, split, cfg.modality, num_segments=cfg.num_frames, train=train,
                           short_side=round(cfg.image_size * 256 / 224), crop_size=cfg.image_size)
    from .data.imigue import IMiGUEDataset
    return IMiGUEDataset(root, split, num_frames=cfg.num_frames, train=train)


def _labels_of(ds) -> list[int]:
    if hasattr(ds, "items"):                                   # MA52Dataset
        return [-1 if ds.hide_labels else l for _, l in ds.items]
    return list(ds.labels)                                     # IMiGUEDataset


def build_datasets(cfg: TrainConfig, *, need_train: bool = True):
    """``(train_set or None, val_set, spec)``. Real datasets: FileNotFoundError naming every missing
    folder or file, ValueError for a val split whose labels are hidden."""
    if cfg.dataset == "synthetic":
        train_set = synthetic_split("train", cfg.num_clips, cfg) if need_train else None
        return train_set, synthetic_split("val", cfg.resolved_val_clips(), cfg), dataset_spec(cfg)
    if cfg.dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {cfg.dataset!r}")
    if cfg.dataset == "imigue" and cfg.modality != "pose":
        raise ValueError(f"modality: the iMiGUE skeleton release has no video; expected 'pose', got "
                         f"{cfg.modality!r}")
    if not cfg.root:
        raise ValueError(f"--root: required for --dataset {cfg.dataset} (the folder holding the data; "
                         f"see docs/training.md for the expected layout)")
    if not Path(cfg.root).is_dir():
        raise FileNotFoundError(f"--root {cfg.root!r}: no such folder (--dataset {cfg.dataset})")
    opened, errors = {}, []
    for split, train in ((("train", True),) if need_train else ()) + ((cfg.val_split, False),):
        try:
            opened[split] = _open_real_split(cfg, split, train)
        except FileNotFoundError as e:
            errors.append(f"  {split}: {e}")
    if errors:
        raise FileNotFoundError(f"--dataset {cfg.dataset} --root {cfg.root!r}: missing data for modality "
                                f"{cfg.modality!r}:\n" + "\n".join(errors)
                                + "\n(see docs/training.md for the expected layout)")
    val_set = opened[cfg.val_split]
    if any(l < 0 for l in _labels_of(val_set)):
        raise ValueError(f"--val-split {cfg.val_split!r}: its labels are hidden (-1); evaluate on a split with "
                         f"labels (MA-52: val; iMiGUE: valid/test with its label file)")
    spec = dataset_spec(cfg, getattr(val_set, "class_names", None))
    train_set = opened.get("train")
    if train_set is not None and cfg.num_clips > 0:
        train_set = Subset(train_set, range(min(cfg.num_clips, len(train_set))))
    if cfg.val_clips > 0:
        val_set = Subset(val_set, range(min(cfg.val_clips, len(val_set))))
    return train_set, val_set, spec


def model_config(cfg: TrainConfig, spec: DatasetSpec | None = None) -> dict:
    """MicroDualNet kwargs for a run. Small frames (< 128 px) use output stride 16 (layer4 without its
    downsampling) so ROIAlign sees a 4×4 map of a 64-px frame, not 2×2."""
    spec = spec or dataset_spec(cfg)
    return dict(num_classes=spec.num_classes, num_body_classes=spec.num_body_classes, modality=cfg.modality,
                layout=spec.layout, entities=tuple(spec.entities), num_frames=cfg.num_frames, dim=cfg.dim,
                heads=cfg.heads, depth=cfg.depth, tau=1.0, lambda_mac=cfg.lambda_mac, backbone=cfg.backbone,
                backbone_weights=cfg.backbone_weights or None, backend=cfg.backend,
                feature_stride=16 if cfg.image_size < 128 else 32, roi_size=3 if cfg.image_size < 128 else 7)


# ------------------------------------------------------------------------------------------ steps
def _inputs(batch: dict, modality: str, device=None) -> dict:
    dev = device if device is not None else torch.device("cpu")
    nb = dev.type == "cuda"
    x = {}
    if "keypoints" in batch:
        x["keypoints"] = batch["keypoints"].to(dev, non_blocking=nb)
    if modality != "pose":
        x["frames"] = batch["frames"].to(dev, non_blocking=nb)
    return x


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on the device's type (``"cuda"`` or ``"cpu"``), or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def forward_loss(model, batch: dict, device=None, amp: bool = False):
    """One forward pass and the loss of ``batch`` -> ``(loss, output)``. ``model`` may be DDP-wrapped;
    the body term is used when the model has a body head."""
    net = dist_util.unwrap(model)
    device = device if device is not None else next(net.parameters()).device
    inputs = _inputs(batch, net.modality, device)
    labels = batch["label"].to(device)
    body = batch["body_label"].to(device) if net.body_head is not None else None
    with autocast(device, amp):
        out = model(**inputs)
        loss = net.loss(out, labels, body)
    return loss, out


def lr_factor(step: int, warmup: int, total: int, floor: float = 0.01) -> float:
    """Linear warm-up over ``warmup`` steps to 1, then cosine decay to ``floor`` at step ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(opt, warmup_steps: int, total_steps: int):
    # A plain function (not a callable object): LambdaLR then saves no lambda state, so a resumed run
    # may extend --epochs and gets the schedule of its new length.
    def factor(step):
        return lr_factor(step, warmup_steps, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def predict(model, loader, *, device=None, amp: bool = False, ctx=None, indices=None) -> dict:
    """Run ``model`` over ``loader``: ``{"logits" [N, C], "labels" [N], "alpha" [N, depth, K, 2],
    "loss_sum", "num_clips"}`` (CPU, float32). Distributed: each rank passes its shard's ``indices``;
    the result (on every rank) is the whole set in index order."""
    net = dist_util.unwrap(model)
    device = device if device is not None else next(net.parameters()).device
    net.eval()
    logits, labels, alphas, loss_sum = [], [], [], 0.0
    for batch in loader:
        loss, out = forward_loss(net, batch, device, amp)
        b = batch["label"].shape[0]
        loss_sum += float(loss) * b
        logits.append(out.logits.float().cpu())
        labels.append(batch["label"].cpu())
        alphas.append(out.alpha.float().cpu())
    C = net.head.out_features
    K = len(net.entities)
    logits = torch.cat(logits) if logits else torch.zeros(0, C)
    labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    alphas = torch.cat(alphas) if alphas else torch.zeros(0, len(net.blocks), K, 2)
    ctx = ctx or dist_util.DistContext(device=device)
    if ctx.distributed:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if idx.numel() != labels.numel():
            raise ValueError(f"indices: {idx.numel()} given for {labels.numel()} evaluated clips")
        idx = dist_util.gather_rows(ctx, idx)
        order = torch.argsort(idx)
        logits = dist_util.gather_rows(ctx, logits)[order]
        labels = dist_util.gather_rows(ctx, labels)[order]
        alphas = dist_util.gather_rows(ctx, alphas)[order]
        (loss_sum,) = dist_util.all_reduce_sum(ctx, loss_sum)
    return {"logits": logits, "labels": labels, "alpha": alphas, "loss_sum": loss_sum,
            "num_clips": int(labels.numel())}


def summarize(pred: dict, body_of_class) -> dict:
    """Metrics of ``predict``'s output: Top-1, Top-5, F1_mean (None without body classes) and its
    parts, val loss, mean routing weights ``alpha [depth][K][2]``, clip count."""
    logits, labels, n = pred["logits"], pred["labels"], pred["num_clips"]
    if n == 0:
        raise ValueError("evaluation set: no clips")
    if (labels < 0).any():
        raise ValueError(f"evaluation set: {int((labels < 0).sum())} clips have hidden labels (-1)")
    m = {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5),
         "f1_mean": None, "f1_parts": {}, "val_loss": pred["loss_sum"] / n,
         "alpha": pred["alpha"].mean(0).tolist(), "num_clips": n}
    if body_of_class is not None:
        scores = f1_scores(logits, labels, body_of_class)
        m["f1_mean"] = scores["f1_mean"]
        m["f1_parts"] = {k: v for k, v in scores.items() if k != "f1_mean"}
    return m


def evaluate(model, loader, body_of_class, *, device=None, amp: bool = False, ctx=None, indices=None) -> dict:
    """``summarize(predict(...))``: Top-1, Top-5, F1_mean (with parts), mean loss, mean routing weights."""
    return summarize(predict(model, loader, device=device, amp=amp, ctx=ctx, indices=indices), body_of_class)


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
    f1 = f"  F1_mean {100 * m['f1_mean']:.2f}" if m.get("f1_mean") is not None else ""
    return f"Top-1 {100 * m['top1']:.2f}  Top-5 {100 * m['top5']:.2f}{f1}  val loss {m['val_loss']:.4f}"


# ------------------------------------------------------------------------------------------ training
def train(cfg: TrainConfig, log=print) -> dict:
    """Train (single process, or one rank of a torchrun job), evaluating and checkpointing each epoch.
    Returns ``{"history", "metrics", "checkpoint", "last", "best", "epoch", "wall_s"}`` (same on every rank)."""
    for name in ("epochs", "batch_size", "dim", "heads", "depth", "num_frames", "image_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}: expected >= 1, got {getattr(cfg, name)}")
    if cfg.grad_clip < 0 or cfg.warmup_epochs < 0 or cfg.stop_after < 0 or cfg.workers < 0:
        raise ValueError(f"grad_clip, warmup_epochs, stop_after, workers: expected >= 0, got {cfg.grad_clip}, "
                         f"{cfg.warmup_epochs}, {cfg.stop_after}, {cfg.workers}")
    ctx = dist_util.setup(cfg.device)
    threads = torch.get_num_threads()
    if cfg.threads > 0 or cfg.modality == "pose":
        torch.set_num_threads(cfg.threads or 1)
    try:
        return _train(cfg, ctx, log if ctx.is_main else (lambda *a, **k: None))
    finally:
        torch.set_num_threads(threads)   # leave the caller's process as it was
        dist_util.cleanup(ctx)


def _resume_path(cfg: TrainConfig) -> str | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        p = os.path.join(cfg.out, "last.pt")
        return p if os.path.isfile(p) else None
    return cfg.resume


def _loaders(cfg, ctx, train_set, val_set, gen):
    W = ctx.world_size
    if cfg.batch_size % W:
        raise ValueError(f"batch_size: the global batch {cfg.batch_size} must split evenly over {W} processes")
    per_rank = cfg.batch_size // W
    common = dict(num_workers=cfg.workers, pin_memory=ctx.device.type == "cuda")
    if ctx.distributed:
        from torch.utils.data.distributed import DistributedSampler
        sampler = DistributedSampler(train_set, num_replicas=W, rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                     drop_last=True)
        train_loader = DataLoader(train_set, batch_size=per_rank, sampler=sampler, drop_last=True,
                                  generator=gen, **common)
    else:
        sampler = None
        train_loader = DataLoader(train_set, batch_size=per_rank, shuffle=True, generator=gen, drop_last=True,
                                  **common)
    shard = dist_util.eval_shard(len(val_set), ctx)
    val_loader = DataLoader(Subset(val_set, shard) if ctx.distributed else val_set,
                            batch_size=cfg.eval_batch_size or max(per_rank, 64), shuffle=False, **common)
    return train_loader, sampler, val_loader, shard


def _train(cfg: TrainConfig, ctx, log) -> dict:
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    gen = seed_everything(cfg.seed)
    train_set, val_set, spec = build_datasets(cfg)
    train_loader, sampler, val_loader, shard = _loaders(cfg, ctx, train_set, val_set, gen)
    if len(train_loader) == 0:
        raise ValueError(f"num_clips: {len(train_set)} training clips make no full batch of batch_size="
                         f"{cfg.batch_size}" + (f" over {ctx.world_size} processes" if ctx.distributed else "")
                         + "; raise --num-clips or lower --batch-size")
    mcfg = model_config(cfg, spec)
    model = MicroDualNet(**mcfg).to(ctx.device)
    if ctx.rank:   # different augmentation draws per rank (model init above is the same on every rank)
        torch.manual_seed(cfg.seed + 1_000_003 * ctx.rank)
    net = dist_util.wrap_model(model, ctx)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(train_loader)
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch)) if cfg.warmup_epochs > 0 else 0
    sched = make_scheduler(opt, warmup, total)
    scaler = None   # bf16 autocast needs no loss scaling
    history, best, start = [], None, 1
    if ctx.is_main:
        os.makedirs(cfg.out, exist_ok=True)
    last_path, best_path = os.path.join(cfg.out, "last.pt"), os.path.join(cfg.out, "best.pt")

    resume = dist_util.broadcast_object(ctx, _resume_path(cfg))   # every rank resumes from rank 0's choice
    if resume:
        state = ckpt_io.load(resume, need_train_state=True)
        ckpt_io.check_model_config(state["model_config"], mcfg, f"--dataset {cfg.dataset} with the given options")
        ckpt_io.check_state_dict(model, state["state_dict"], resume)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, best, start = list(state["history"]), state.get("best"), int(state["epoch"]) + 1
        changed = {k: (v, getattr(cfg, k)) for k, v in state.get("train_config", {}).items()
                   if hasattr(cfg, k) and k not in ("resume", "stop_after", "progress", "out", "epochs", "workers",
                                                    "device", "root") and v != getattr(cfg, k)}
        rngs = state["rng"]
        if ctx.rank < len(rngs):
            ckpt_io.set_rng_state(rngs[ctx.rank], gen, ctx.device)
        log(f"resumed from {resume} at epoch {start - 1}/{cfg.epochs}"
            + (f" (saved by {len(rngs)} processes, now {ctx.world_size}: the data order differs from an "
               f"uninterrupted run)" if len(rngs) != ctx.world_size else "")
            + (f"; options changed since: {changed}" if changed else ""))

    chance = 1.0 / spec.num_classes
    log(f"mdn-fast train: dataset={cfg.dataset} modality={cfg.modality} dim={cfg.dim} depth={cfg.depth} "
        f"backend={cfg.backend} clips train/val={len(train_set)}/{len(val_set)} classes={spec.num_classes} "
        f"(chance Top-1 {100 * chance:.2f}%) epochs={cfg.epochs} batch={cfg.batch_size} seed={cfg.seed} "
        f"device={ctx.device}" + (f" processes={ctx.world_size}" if ctx.distributed else "")
        + (" amp=bf16" if cfg.amp else ""))
    done = 0
    for epoch in range(start, cfg.epochs + 1):
        if cfg.stop_after and done >= cfg.stop_after:
            break
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        t0, seen = time.perf_counter(), 0
        total_loss = torch.zeros((), dtype=torch.float64, device=ctx.device)
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and ctx.is_main))
        for step, batch in enumerate(bar):
            loss, _ = forward_loss(net, batch, ctx.device, cfg.amp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            b = batch["label"].shape[0]
            seen += b
            total_loss += loss.detach().double() * b
            if step % 10 == 0 or step == steps_per_epoch - 1:   # .item() syncs the device: not every step
                lv = float(total_loss) / seen
                if not math.isfinite(lv):
                    raise FloatingPointError(f"training loss is {lv} at epoch {epoch} step {step}; lower --lr, "
                                             f"keep --grad-clip > 0, or drop --amp")
                bar.set_postfix(loss=f"{lv:.3f}")
        train_s = time.perf_counter() - t0
        loss_sum, seen_all = dist_util.all_reduce_sum(ctx, float(total_loss), seen)
        dist_util.sync_buffers(model, ctx)
        m = evaluate(model, val_loader, spec.body_of_class, device=ctx.device, amp=cfg.amp, ctx=ctx, indices=shard)
        m.update(epoch=epoch, train_loss=loss_sum / seen_all, clips_per_s=seen_all / train_s,
                 lr=opt.param_groups[0]["lr"])
        history.append(m)
        is_best = best is None or m["top1"] > best["top1"]
        if is_best:
            best = {"epoch": epoch, "top1": m["top1"]}
        log(f"epoch {epoch:>2}/{cfg.epochs}  train loss {m['train_loss']:.4f}  {format_metrics(m)}  "
            f"{m['clips_per_s']:.0f} clips/s")
        rngs = dist_util.all_gather_object(ctx, ckpt_io.rng_state(gen, ctx.device))
        if ctx.is_main:
            state = _checkpoint_dict("train_state", cfg, mcfg, spec, model, history, epoch)
            state.update(optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                         scaler=scaler.state_dict() if scaler is not None else None, best=best,
                         world_size=ctx.world_size, rng=rngs)
            ckpt_io.save(state, last_path)
            if is_best:
                shutil.copyfile(last_path, best_path)
        dist_util.barrier(ctx)
        done += 1

    path = os.path.join(cfg.out, "checkpoint.pt")
    if ctx.is_main:
        ckpt_io.save(_checkpoint_dict("model", cfg, mcfg, spec, model, history, len(history)), path)
    dist_util.barrier(ctx)
    wall = time.perf_counter() - t_start
    if not history:
        raise ValueError(f"epochs: nothing trained ({cfg.epochs} epochs, resumed at {start - 1})")
    log(f"saved {path}" + (f", {last_path} and {best_path}" if done else ""))
    finished = len(history) >= cfg.epochs
    log(("final" if finished else f"stopped after epoch {len(history)}/{cfg.epochs}; resume with "
         f"--resume auto --out {cfg.out}.") + f" held-out: {format_metrics(history[-1])}  "
        f"(chance Top-1 {100 * chance:.2f}%)")
    log("learned routing weights (mean over the val set):\n" + routing_table(history[-1]["alpha"], model.entities))
    log(f"wall time {wall:.1f} s")
    return {"history": history, "metrics": history[-1], "checkpoint": path, "last": last_path,
            "best": best_path, "epoch": len(history), "wall_s": wall}


def _checkpoint_dict(kind, cfg, mcfg, spec, model, history, epoch) -> dict:
    return {"format": ckpt_io.FORMAT, "kind": kind, "model_config": dict(mcfg, entities=list(mcfg["entities"])),
            "train_config": asdict(cfg), "dataset": spec.as_dict(), "entities": list(model.entities),
            "class_names": list(spec.class_names) if spec.class_names else None,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "metrics": history[-1] if history else None, "history": history, "epoch": epoch}


# ------------------------------------------------------------------------------------------ checkpoints
def config_from_checkpoint(ckpt: dict, **overrides) -> TrainConfig:
    """The ``TrainConfig`` a checkpoint was trained with (unknown fields dropped; a format-1 checkpoint
    is a synthetic run), with ``overrides`` (None values ignored) on top."""
    known = {f.name for f in fields(TrainConfig)}
    saved = {k: v for k, v in ckpt.get("train_config", {}).items() if k in known}
    saved.update({k: v for k, v in overrides.items() if v is not None})
    saved.update(resume="", stop_after=0)
    return TrainConfig(**saved)


def load_checkpoint(path: str, spec: DatasetSpec | None = None) -> tuple[MicroDualNet, dict]:
    """Rebuild the model of a checkpoint (``weights_only`` load: no code runs). With ``spec`` (the
    dataset it is meant for), a model config that does not fit it is refused; so is a state dict with
    missing/unexpected keys or other shapes (ValueError listing them)."""
    ckpt = ckpt_io.load(path)
    mcfg = dict(ckpt["model_config"])
    if spec is not None:
        ckpt_io.check_model_config(mcfg, {"num_classes": spec.num_classes, "num_body_classes": spec.num_body_classes,
                                          "layout": spec.layout, "entities": list(spec.entities)},
                                   f"dataset {spec.name!r}", keys=("num_classes", "num_body_classes", "layout",
                                                                    "entities"))
    mcfg["entities"] = tuple(mcfg["entities"])
    mcfg["backbone_weights"] = None   # the state dict below holds the trained backbone
    try:
        model = MicroDualNet(**mcfg)
    except TypeError as e:
        raise ValueError(f"checkpoint: {path!r}: model_config does not fit MicroDualNet ({e})") from None
    ckpt_io.check_state_dict(model, ckpt["state_dict"], path)
    model.load_state_dict(ckpt["state_dict"])
    return model, ckpt


def evaluate_checkpoint(path: str, num_clips: int | None = None, batch_size: int | None = None, *,
                        dataset: str | None = None, root: str | None = None, split: str | None = None,
                        device: str = "auto", log=print, return_predictions: bool = False):
    """Evaluate a checkpoint on the val split of the dataset it was trained on (synthetic: same seed and
    size unless ``num_clips`` is given; real data: ``root``/``split`` override the saved ones). With
    ``dataset`` naming another dataset, a model that does not fit it is refused (ValueError)."""
    ckpt = ckpt_io.load(path)
    cfg = config_from_checkpoint(ckpt, root=root, val_split=split)
    if dataset is not None and dataset != cfg.dataset:
        # the other dataset read as the model would read it (modality, frames), so that a model that
        # does not fit is refused for what it is rather than for a missing file of another modality
        mc = ckpt["model_config"]
        cfg = TrainConfig.for_dataset(dataset, root=root, val_split=split, num_frames=mc.get("num_frames"),
                                      modality=mc.get("modality") if dataset != "imigue" else None)
    if num_clips:
        cfg.val_clips = num_clips
    _, val_set, spec = build_datasets(cfg, need_train=False)
    model, ckpt = load_checkpoint(path, spec)
    dev = dist_util.resolve_device(device)
    model.to(dev)
    loader = DataLoader(val_set, batch_size=batch_size or cfg.eval_batch_size or max(cfg.batch_size, 64),
                        num_workers=cfg.workers)
    pred = predict(model, loader, device=dev, amp=cfg.amp)
    m = summarize(pred, spec.body_of_class)
    log(f"mdn-fast eval {path}: dataset={cfg.dataset} modality={model.modality} val clips={m['num_clips']}")
    log(f"held-out: {format_metrics(m)}  (chance Top-1 {100 / spec.num_classes:.2f}%)")
    log("learned routing weights (mean over the val set):\n" + routing_table(m["alpha"], model.entities))
    if return_predictions:
        return m, pred, spec, model, ckpt
    return m
