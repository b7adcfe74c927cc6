"""``train(cfg)``: the training loop of ``mdn-fast train``.

One epoch: AdamW steps with a per-step LR schedule (linear warm-up over ``warmup_epochs``, then cosine
decay to 1 % of ``lr``), optional bf16 autocast (``amp``), gradient-norm clipping (``grad_clip``, 0 =
off), then evaluation on the val split (Top-1, Top-5, F1_mean when the dataset has body classes, val
loss, mean routing weights) and a checkpoint (``run_state``). ``resume`` restores model, optimizer,
scheduler, epoch, history and every RNG (python, numpy, torch, the data generator; per rank), so a
resumed CPU run continues bit-identically.

Before any work, ``--out`` is created, checked for writing and locked (``run_state.prepare_out``,
``outdir``): a second run on the same folder is refused. Ctrl-C stops the run at a step boundary and saves
``OUT/last.pt``, mid-epoch included (``interrupt``); ``--resume`` then runs the epoch's remaining batches.

Multi-process: under ``torchrun`` the loop runs DistributedDataParallel (``mdn_fast.training.distributed``).
``batch_size`` is the *global* batch, split evenly over the ranks; the MAC loss all-gathers every rank's
pooled features (with gradients), so its negatives are the clips of the global batch and the gradient
equals the single-process gradient on the concatenated batch (BatchNorm statistics aside, which are per
rank). Only rank 0 logs and writes files; evaluation shards the val set without padding and gathers the
predictions, so metrics equal a single-process evaluation's.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, Subset

from .. import checkpoint as ckpt_io
from . import distributed as dist_util
from ..nn.micro_dualnet import MicroDualNet
from .config import TrainConfig
from .data_wait import DataWait, DataWaitLog
from .evaluation import evaluate, format_metrics, routing_table
from .extras import require_data_extras
from .loader import available_cores, loader_options
from .model import model_config
from .registry import DatasetSpec, build_datasets, get_dataset, unwrap_subset
from .interrupt import StopOnInterrupt, TrainingInterrupted, ignore_sigint_in_worker, sigint_ignored
from .outdir import check_free_space
from .run_state import (RunState, on_rank0, out_paths, prepare_out, resume, save_epoch, save_model, save_partial,
                        write_epoch)
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
    created = ctx.is_main and not os.path.exists(cfg.out)
    lock, ok = None, False
    try:
        log_ = log if ctx.is_main else (lambda *a, **k: None)
        lock = prepare_out(cfg, ctx, log_)       # before any work: --out writable and not in use
        result = _train(cfg, ctx, log_)
        ok = True
        return result
    finally:
        if lock is not None:
            lock.release()
        if created and not ok and os.path.isdir(cfg.out) and not os.listdir(cfg.out):
            os.rmdir(cfg.out)            # a folder this run made and left empty
        torch.set_num_threads(threads)   # leave the caller's process as it was
        dist_util.cleanup(ctx)


class _StopRequested(KeyboardInterrupt):
    """The first Ctrl-C (``StopOnInterrupt``), acted on at a step or epoch boundary."""


@dataclass
class Position:
    """Where the epoch loop is, for saving on Ctrl-C: ``phase`` ``"setup"`` (before the first step of this
    invocation), ``"training"`` (``steps`` of ``steps_per_epoch`` done in ``epoch``; ``in_update`` while an
    optimizer + scheduler step is half-applied), ``"evaluating"``, ``"recorded"`` (the epoch is in the
    history, its ``last.pt`` not written yet) or ``"saved"``; ``loss_sum`` / ``seen``: the epoch's running
    training loss (this rank), ``new_steps``: steps run in this invocation's epoch."""
    phase: str = "setup"
    epoch: int = 0
    steps: int = 0
    new_steps: int = 0
    in_update: bool = False
    loss_sum: object = 0.0
    seen: int = 0
    is_best: bool = False


def _train(cfg: TrainConfig, ctx, log) -> dict:
    """Data, model, resume; then per epoch: train, evaluate, log, save. Ctrl-C: ``_interrupted``."""
    t_start = time.perf_counter()
    pos, data, run, gen = Position(), None, None, None
    try:
        gen = seed_everything(cfg.seed)
        data = build_data(cfg, ctx, gen)
        run = build_run(cfg, ctx, data)
        on_rank0(ctx, lambda: check_free_space(cfg.out, checkpoint_bytes(run), log))
        resume(cfg, ctx, run, gen, log)
        log(header(cfg, ctx, data))
        log_wait, done = data_wait_log(cfg, data, log), 0
        with StopOnInterrupt(enabled=not ctx.distributed) as stop:
            for epoch in range(run.start, cfg.epochs + 1):
                if cfg.stop_after and done >= cfg.stop_after:
                    break
                result = train_one_epoch(cfg, ctx, run, data, epoch, pos=pos, stop=stop)
                if result is None:
                    raise _StopRequested
                train_loss, clips_per_s, wait = result
                pos.phase = "evaluating"
                m = evaluate(run.model, data.val_loader, data.spec.body_of_class, device=ctx.device, amp=cfg.amp,
                             ctx=ctx, indices=data.shard)
                m.update(epoch=epoch, train_loss=train_loss, clips_per_s=clips_per_s, lr=run.opt.param_groups[0]["lr"])
                pos.is_best = run.record(m)
                pos.phase = "recorded"
                log(f"epoch {epoch:>2}/{cfg.epochs}  train loss {train_loss:.4f}  {format_metrics(m)}  "
                    f"{clips_per_s:.0f} clips/s")
                log_wait(wait)
                save_epoch(cfg, ctx, run, data.spec, gen, epoch, pos.is_best)
                pos.phase = "saved"
                done += 1
                if stop.requested:
                    raise _StopRequested
        pos.phase = "finishing"
        return finish(cfg, ctx, run, data, done, t_start, log)
    except KeyboardInterrupt:
        raise _interrupted(cfg, ctx, run, data, gen, pos) from None


def _interrupted(cfg: TrainConfig, ctx, run: RunState | None, data: "Data | None", gen,
                 pos: Position) -> TrainingInterrupted:
    """Ctrl-C at ``pos``: save what is not saved yet (SIGINT ignored meanwhile; no collectives) and say so."""
    last, _, model_file = out_paths(cfg)
    E, S = pos.epoch, pos.steps
    n = run.steps_per_epoch if run is not None else 0
    saved, where = None, f"at epoch {E}/{cfg.epochs}, step {S}/{n}"
    with sigint_ignored():
        if pos.phase in ("training", "evaluating") and not pos.in_update and pos.new_steps > 0:
            partial = {"epoch": E, "steps": S, "steps_per_epoch": n, "batch_size": cfg.batch_size,
                       "num_clips": len(data.train_set), "world_size": ctx.world_size,
                       "order": (torch.tensor(data.order.order, dtype=torch.int64)
                                 if data.order.order is not None and not ctx.distributed else None),
                       "loss_sum": float(pos.loss_sum), "seen": int(pos.seen)}
            saved = save_partial(cfg, ctx, run, data.spec, gen, partial)
            what = (f"saved {saved} ({S} of the epoch's {n} steps; --resume runs the other {n - S})" if S < n else
                    f"saved {saved} (all {n} steps of the epoch; --resume evaluates it)")
        elif pos.phase == "recorded":
            if ctx.is_main:
                write_epoch(cfg, ctx, run, data.spec, E, pos.is_best, [ckpt_rng(gen, ctx)])
            saved, where, what = last, f"after epoch {E}/{cfg.epochs}", f"saved {last}"
        elif pos.phase == "saved":          # the epoch's own save has just written it
            saved, where, what = last, f"after epoch {E}/{cfg.epochs}", f"saved {last}"
        else:
            if pos.phase == "finishing":
                where = f"while writing {model_file}"
            elif pos.phase == "setup":
                where = "before the first training step"
            why = ("during an optimizer update, so this half-applied state is not saved; " if pos.in_update
                   else "nothing new to save; ")
            what = why + (f"{last} is unchanged" if os.path.isfile(last) else "no checkpoint was written yet")
    return TrainingInterrupted(f"interrupted (Ctrl-C) {where}: {what}", out=cfg.out, saved=saved,
                               resumable=os.path.isfile(last), main=ctx.is_main)


def ckpt_rng(gen, ctx) -> dict:
    return ckpt_io.rng_state(gen, ctx.device)


def checkpoint_bytes(run: RunState) -> int:
    """A lower bound of the size of ``last.pt``: the weights and buffers, and AdamW's two moments."""
    params = sum(p.numel() * p.element_size() for p in run.model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in run.model.buffers())
    return 3 * params + buffers


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
    order: "EpochOrder" = None       # the training loader's sampler: each epoch's order, recorded


class EpochOrder(Sampler):
    """The training loader's sampler: ``base``'s order (``RandomSampler`` on the loader's generator, or
    ``DistributedSampler``), materialised at each iteration and kept in ``order`` so that a run stopped
    mid-epoch can save the order it was training on. Between ``resume_at(order, skip)`` and ``resumed()``
    every iteration yields ``order[skip:]`` (``order`` None: the base's order, which
    ``DistributedSampler.set_epoch`` fixes) without drawing from the generator. (The loader may be
    iterated twice per epoch: ``tqdm.auto`` calls ``iter()`` on it when constructed.)"""

    def __init__(self, base):
        self.base = base
        self.order = None
        self._resume = None

    def resume_at(self, order, skip: int) -> None:
        if order is not None:
            order = order.tolist() if hasattr(order, "tolist") else [int(i) for i in order]
        self._resume = (order, int(skip))

    def resumed(self) -> None:
        self._resume = None

    def __len__(self) -> int:
        return len(self.base) - (self._resume[1] if self._resume is not None else 0)

    def __iter__(self):
        if self._resume is None:
            self.order = list(self.base)
            return iter(self.order)
        order, skip = self._resume
        self.order = order if order is not None else list(self.base)
        return iter(self.order[skip:])


def too_few_clips(cfg: TrainConfig, n: int, world_size: int = 1) -> str:
    """Why ``n`` training clips give no full batch, and the fix that applies: ``--num-clips`` only helps
    where it made the set that small (synthetic data is generated to it; real data is cut to its first
    N clips); a real split used whole can only take a smaller batch."""
    over = f" over {world_size} processes" if world_size > 1 else ""
    head = f"{n} training clips make no full batch of batch_size={cfg.batch_size}{over}"
    if not get_dataset(cfg.dataset).first_clips:
        return f"num_clips: {head}; raise --num-clips or lower --batch-size"
    if cfg.num_clips > 0:
        return f"num_clips: {head} (--num-clips {cfg.num_clips} kept only the first clips); raise --num-clips " \
               f"(0 = all) or lower --batch-size"
    most = n - n % world_size
    if n == 0:
        return f"batch_size: {head}: the training split has no clip"
    fix = f"use --batch-size {most} or less" if most > 0 else f"it has fewer clips than the {world_size} processes"
    return f"batch_size: {head}: the whole training split has only {n}; {fix}"


def build_data(cfg: TrainConfig, ctx, gen: torch.Generator) -> Data:
    """The datasets and their loaders (per-rank batch = ``batch_size / world_size``)."""
    train_set, val_set, spec = build_datasets(cfg)
    W = ctx.world_size
    if cfg.batch_size % W:
        raise ValueError(f"batch_size: the global batch {cfg.batch_size} must split evenly over {W} processes")
    per_rank = cfg.batch_size // W
    common = loader_options(cfg.workers, ctx.device)      # measured settings: training/loader.py
    train_opts = dict(common, worker_init_fn=ignore_sigint_in_worker) if common["num_workers"] else common
    if ctx.distributed:
        from torch.utils.data.distributed import DistributedSampler
        sampler = DistributedSampler(train_set, num_replicas=W, rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                     drop_last=True)
        order = EpochOrder(sampler)
    else:
        sampler = None
        order = EpochOrder(RandomSampler(train_set, generator=gen))    # = DataLoader(shuffle=True, generator=gen)
    train_loader = DataLoader(train_set, batch_size=per_rank, sampler=order, drop_last=True, generator=gen,
                              **train_opts)
    if len(train_loader) == 0:
        raise ValueError(too_few_clips(cfg, len(train_set), W if ctx.distributed else 1))
    shard = dist_util.eval_shard(len(val_set), ctx)
    val_loader = DataLoader(Subset(val_set, shard) if ctx.distributed else val_set,
                            batch_size=cfg.eval_batch_size or max(per_rank, 64), shuffle=False, **common)
    return Data(train_set, val_set, spec, train_loader, sampler, val_loader, shard, order)


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
    return RunState(model, net, opt, sched, mcfg, steps_per_epoch=steps_per_epoch, train_clips=len(data.train_set))


# ------------------------------------------------------------------------------------------ one epoch
def train_one_epoch(cfg: TrainConfig, ctx, run: RunState, data: Data, epoch: int, *, pos: Position | None = None,
                    stop: StopOnInterrupt | None = None) -> tuple[float, float, DataWait] | None:
    """One pass over the training set -> ``(mean training loss, clips/s)`` over every rank and this
    rank's ``DataWait`` (time blocked waiting for batches); the BatchNorm buffers are then rank 0's on
    every rank. A run resumed mid-epoch (``run.partial`` for this epoch) runs the epoch's remaining
    batches of its saved order, its loss counting the saved running sum. ``pos`` is kept up to date after
    every step; ``stop.requested`` (Ctrl-C) ends the epoch after the current step: returns None."""
    from tqdm.auto import tqdm

    pos = pos if pos is not None else Position()
    if data.sampler is not None:
        data.sampler.set_epoch(epoch)
    run.net.train()
    steps = run.steps_per_epoch or len(data.train_loader)
    per_rank = cfg.batch_size // ctx.world_size
    total_loss = torch.zeros((), dtype=torch.float64, device=ctx.device)
    first, seen_before = 0, 0
    partial = run.partial if run.partial is not None and int(run.partial["epoch"]) == epoch else None
    loader_gen = data.train_loader.generator
    if partial is not None:
        run.partial = None
        first = int(partial["steps"])
        data.order.resume_at(partial.get("order"), first * per_rank)
        # The resumed epoch runs the saved order and draws nothing: the generator already holds the state the
        # interrupted run had after starting this epoch (restored with the checkpoint's RNG states).
        data.train_loader.generator = torch.Generator()
        if ctx.is_main:        # the saved running loss is the saving rank's (rank 0) alone
            seen_before = int(partial["seen"])
            total_loss += float(partial["loss_sum"])
    pos.phase, pos.epoch, pos.steps, pos.new_steps, pos.in_update = "training", epoch, first, 0, False
    pos.loss_sum, pos.seen = total_loss, seen_before
    t0, seen = time.perf_counter(), 0
    bar = tqdm(data.train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
               disable=not (cfg.progress and ctx.is_main))
    wait = DataWait(ctx.device)
    try:
        for step, batch in enumerate(wait.timed(bar), start=first):
            if _train_step(cfg, ctx, run, batch, epoch, step, steps, pos, bar, total_loss, stop):
                return None
            seen += batch["label"].shape[0]
    finally:
        if partial is not None:
            data.order.resumed()
            data.train_loader.generator = loader_gen
    wait.stop()                                   # one device sync, at the end of the epoch
    train_s = time.perf_counter() - t0
    loss_sum, seen_all, seen_now = dist_util.all_reduce_sum(ctx, float(total_loss), seen_before + seen, seen)
    dist_util.sync_buffers(run.model, ctx)
    return loss_sum / seen_all, seen_now / max(train_s, 1e-9), wait


def _train_step(cfg, ctx, run: RunState, batch, epoch: int, step: int, steps: int, pos: Position, bar, total_loss,
                stop) -> bool:
    """One optimizer step (``pos`` updated once the step is whole); True when Ctrl-C asks to stop."""
    loss, _ = forward_loss(run.net, batch, ctx.device, cfg.amp)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    pos.in_update = True           # until the step's counters agree with the weights again
    run.opt.step()
    run.sched.step()
    b = batch["label"].shape[0]
    total_loss += loss.detach().double() * b
    pos.steps, pos.new_steps, pos.seen = step + 1, pos.new_steps + 1, pos.seen + b
    pos.in_update = False
    if step % 10 == 0 or step == steps - 1:   # .item() syncs the device: not every step
        lv = float(total_loss) / pos.seen
        if not math.isfinite(lv):
            raise FloatingPointError(f"training loss is {lv} at epoch {epoch} step {step}; lower --lr, "
                                     f"keep --grad-clip > 0, or drop --amp")
        bar.set_postfix(loss=f"{lv:.3f}")
    if stop is not None and stop.requested and step + 1 < steps:
        bar.close()
        return True
    return False


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
