"""``train(cfg)``: the training loop of ``mdn-fast train``.

One epoch: AdamW steps with a per-step LR schedule (linear warm-up over ``warmup_epochs``, then cosine
decay to 1 % of ``lr``), optional bf16 autocast (``amp``), gradient-norm clipping (``grad_clip``, 0 =
off), then evaluation on the val split (Top-1, Top-5, F1_mean when the dataset has body classes, val
loss, mean routing weights) and a checkpoint (``run_state``). ``resume`` restores model, optimizer,
scheduler, epoch, history and every RNG (python, numpy, torch, the data generator; per rank), so a
resumed CPU run continues bit-identically.

Multi-process: under ``torchrun`` the loop runs DistributedDataParallel (``mdn_fast.distributed``).
``batch_size`` is the *global* batch, split evenly over the ranks; the MAC loss all-gathers every rank's
pooled features (with gradients), so its negatives are the clips of the global batch and the gradient
equals the single-process gradient on the concatenated batch (BatchNorm statistics aside, which are per
rank). Only rank 0 logs and writes files; evaluation shards the val set without padding and gathers the
predictions, so metrics equal a single-process evaluation's.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Subset

from .. import distributed as dist_util
from ..nn.micro_dualnet import MicroDualNet
from .config import TrainConfig
from .data_wait import DataWait, DataWaitLog
from .evaluation import evaluate, format_metrics, routing_table
from .extras import require_data_extras
from .loader import available_cores, loader_options
from .model import model_config
from .registry import DatasetSpec, build_datasets, get_dataset, unwrap_subset
from .run_state import RunState, out_paths, prepare_out, resume, save_epoch, save_model
from .steps import forward_loss, make_scheduler, seed_everything


def train(cfg: TrainConfig, log=print) -> dict:
    """Train (single process, or one rank of a torchrun job), evaluating and checkpointing each epoch.
    Returns ``{"history", "metrics", "checkpoint", "last", "best", "epoch", "wall_s"}`` (same on every rank).
    File and folder options are made absolute first (the checkpoint's config finds the data from anywhere)."""
    cfg = cfg.validate().absolute_paths()
    require_data_extras(cfg)          # a missing PyAV is reported now, not when the first batch is read
    ctx = dist_util.setup(cfg.device)
    threads = torch.get_num_threads()
    if cfg.threads > 0 or cfg.modality == "pose":
        torch.set_num_threads(cfg.threads or 1)
    try:
        return _train(cfg, ctx, log if ctx.is_main else (lambda *a, **k: None))
    finally:
        torch.set_num_threads(threads)   # leave the caller's process as it was
        dist_util.cleanup(ctx)


def _train(cfg: TrainConfig, ctx, log) -> dict:
    """Data, model, resume; then per epoch: train, evaluate, log, save."""
    t_start = time.perf_counter()
    gen = seed_everything(cfg.seed)
    data = build_data(cfg, ctx, gen)
    run = build_run(cfg, ctx, data)
    prepare_out(cfg, ctx, log)
    resume(cfg, ctx, run, gen, log)
    log(header(cfg, ctx, data))
    log_wait, done = data_wait_log(cfg, data, log), 0
    for epoch in range(run.start, cfg.epochs + 1):
        if cfg.stop_after and done >= cfg.stop_after:
            break
        train_loss, clips_per_s, wait = train_one_epoch(cfg, ctx, run, data, epoch)
        m = evaluate(run.model, data.val_loader, data.spec.body_of_class, device=ctx.device, amp=cfg.amp, ctx=ctx,
                     indices=data.shard)
        m.update(epoch=epoch, train_loss=train_loss, clips_per_s=clips_per_s, lr=run.opt.param_groups[0]["lr"])
        is_best = run.record(m)
        log(f"epoch {epoch:>2}/{cfg.epochs}  train loss {train_loss:.4f}  {format_metrics(m)}  "
            f"{clips_per_s:.0f} clips/s")
        log_wait(wait)
        save_epoch(cfg, ctx, run, data.spec, gen, epoch, is_best)
        done += 1
    return finish(cfg, ctx, run, data, done, t_start, log)


# ------------------------------------------------------------------------------------------ set-up
@dataclass
class Data:
    train_set: object
    val_set: object
    spec: DatasetSpec
    train_loader: DataLoader
    sampler: object                  # DistributedSampler under torchrun (set_epoch each epoch), else None
    val_loader: DataLoader           # this rank's shard of the val set
    shard: list                      # indices of that shard


def build_data(cfg: TrainConfig, ctx, gen: torch.Generator) -> Data:
    """The datasets and their loaders (per-rank batch = ``batch_size / world_size``)."""
    train_set, val_set, spec = build_datasets(cfg)
    W = ctx.world_size
    if cfg.batch_size % W:
        raise ValueError(f"batch_size: the global batch {cfg.batch_size} must split evenly over {W} processes")
    per_rank = cfg.batch_size // W
    common = loader_options(cfg.workers, ctx.device)      # measured settings: training/loader.py
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
    if len(train_loader) == 0:
        raise ValueError(f"num_clips: {len(train_set)} training clips make no full batch of batch_size="
                         f"{cfg.batch_size}" + (f" over {W} processes" if ctx.distributed else "")
                         + "; raise --num-clips or lower --batch-size")
    shard = dist_util.eval_shard(len(val_set), ctx)
    val_loader = DataLoader(Subset(val_set, shard) if ctx.distributed else val_set,
                            batch_size=cfg.eval_batch_size or max(per_rank, 64), shuffle=False, **common)
    return Data(train_set, val_set, spec, train_loader, sampler, val_loader, shard)


def build_run(cfg: TrainConfig, ctx, data: Data) -> RunState:
    """Model (the same initial weights on every rank), its DDP wrapper, AdamW and the per-step LR
    schedule."""
    mcfg = model_config(cfg, data.spec)
    model = MicroDualNet(**mcfg).to(ctx.device)
    if ctx.rank:   # different augmentation draws per rank (model init above is the same on every rank)
        torch.manual_seed(cfg.seed + 1_000_003 * ctx.rank)
    net = dist_util.wrap_model(model, ctx)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(data.train_loader)
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch)) if cfg.warmup_epochs > 0 else 0
    sched = make_scheduler(opt, warmup, cfg.epochs * steps_per_epoch)
    return RunState(model, net, opt, sched, mcfg)


# ------------------------------------------------------------------------------------------ one epoch
def train_one_epoch(cfg: TrainConfig, ctx, run: RunState, data: Data, epoch: int) -> tuple[float, float, DataWait]:
    """One pass over the training set -> ``(mean training loss, clips/s)`` over every rank and this
    rank's ``DataWait`` (time blocked waiting for batches); the BatchNorm buffers are then rank 0's on
    every rank."""
    from tqdm.auto import tqdm

    if data.sampler is not None:
        data.sampler.set_epoch(epoch)
    run.net.train()
    t0, seen = time.perf_counter(), 0
    total_loss = torch.zeros((), dtype=torch.float64, device=ctx.device)
    steps = len(data.train_loader)
    bar = tqdm(data.train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
               disable=not (cfg.progress and ctx.is_main))
    wait = DataWait(ctx.device)
    for step, batch in enumerate(wait.timed(bar)):
        loss, _ = forward_loss(run.net, batch, ctx.device, cfg.amp)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
        run.opt.step()
        run.sched.step()
        b = batch["label"].shape[0]
        seen += b
        total_loss += loss.detach().double() * b
        if step % 10 == 0 or step == steps - 1:   # .item() syncs the device: not every step
            lv = float(total_loss) / seen
            if not math.isfinite(lv):
                raise FloatingPointError(f"training loss is {lv} at epoch {epoch} step {step}; lower --lr, "
                                         f"keep --grad-clip > 0, or drop --amp")
            bar.set_postfix(loss=f"{lv:.3f}")
    wait.stop()                                   # one device sync, at the end of the epoch
    train_s = time.perf_counter() - t0
    loss_sum, seen_all = dist_util.all_reduce_sum(ctx, float(total_loss), seen)
    dist_util.sync_buffers(run.model, ctx)
    return loss_sum / seen_all, seen_all / train_s, wait


def data_wait_log(cfg: TrainConfig, data: Data, log) -> DataWaitLog:
    """The per-epoch data-wait line and its one-time bottleneck warning; ``prepare-videos`` is named as
    a fix only where the run decodes original video files."""
    videos = get_dataset(cfg.dataset).video_files and cfg.modality != "pose"
    prepared = getattr(unwrap_subset(data.train_set)[0], "prepared", None) is not None
    return DataWaitLog(log, data.train_loader.num_workers, available_cores(), videos and not prepared)


# ------------------------------------------------------------------------------------------ log lines
def header(cfg: TrainConfig, ctx, data: Data) -> str:
    spec = data.spec
    return (f"mdn-fast train: dataset={cfg.dataset} modality={cfg.modality} dim={cfg.dim} depth={cfg.depth} "
            f"backend={cfg.backend} clips train/val={len(data.train_set)}/{len(data.val_set)} "
            f"classes={spec.num_classes} (chance Top-1 {100 * (1.0 / spec.num_classes):.2f}%) epochs={cfg.epochs} "
            f"batch={cfg.batch_size} seed={cfg.seed} device={ctx.device}"
            + (f" processes={ctx.world_size}" if ctx.distributed else "") + (" amp=bf16" if cfg.amp else ""))


def finish(cfg: TrainConfig, ctx, run: RunState, data: Data, done: int, t_start: float, log) -> dict:
    """Write ``checkpoint.pt``, log the final metrics and routing weights; the result of ``train``."""
    path = save_model(cfg, ctx, run, data.spec)
    wall = time.perf_counter() - t_start
    history = run.history
    if not history:
        raise ValueError(f"epochs: nothing trained ({cfg.epochs} epochs, resumed at {run.start - 1})")
    last_path, best_path, _ = out_paths(cfg)
    log(f"saved {path}" + (f", {last_path} and {best_path}" if done else ""))
    chance = 100 * (1.0 / data.spec.num_classes)
    log(("final" if len(history) >= cfg.epochs else f"stopped after epoch {len(history)}/{cfg.epochs}; resume "
         f"with --resume auto --out {cfg.out}.") + f" held-out: {format_metrics(history[-1])}  "
        f"(chance Top-1 {chance:.2f}%)")
    log("learned routing weights (mean over the val set):\n" + routing_table(history[-1]["alpha"], run.model.entities))
    log(f"wall time {wall:.1f} s")
    return {"history": history, "metrics": history[-1], "checkpoint": path, "last": last_path,
            "best": best_path, "epoch": len(history), "wall_s": wall}
