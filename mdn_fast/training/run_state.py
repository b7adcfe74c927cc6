"""What a run carries from epoch to epoch (model, optimizer, schedule, history, best epoch) and the
files that hold it: ``OUT/last.pt`` every epoch, ``OUT/best.pt`` when val Top-1 improves (both
resumable), ``OUT/checkpoint.pt`` (model only) when the run returns; ``OUT/last.pt`` also when Ctrl-C
stops a run mid-epoch (``save_partial``: the epoch's steps so far, its sample order, its running loss).
File format, safe loading and the compatibility checks: ``mdn_fast.checkpoint``; the folder's checks
and lock: ``mdn_fast.training.outdir``.

Resume (``resume``): model, optimizer, schedule, history and RNG states come from the checkpoint; the
options that shape the optimizer and the schedule are applied from the new command line (what is
recorded is what ran): ``--lr`` and ``--weight-decay`` replace the optimizer's, and the LR schedule is
the one of the new ``--lr`` / ``--warmup-epochs`` / ``--epochs`` / steps per epoch (``--batch-size``,
``--num-clips``), continued at the epochs already done. A different ``--seed`` is refused (the run's
random streams continue from the checkpoint), and so is any change of the steps per epoch when the
checkpoint was saved mid-epoch.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import torch

from .. import checkpoint as ckpt_io
from . import distributed as dist_util
from .outdir import OutLock, check_writable

# Options that may change between a run and its resumption without a remark in the log.
_RESUME_MAY_CHANGE = ("resume", "stop_after", "progress", "out", "epochs", "workers", "device", "root", "lists",
                      "videos", "pose", "prepared_videos")


@dataclass
class RunState:
    model: torch.nn.Module           # the MicroDualNet
    net: torch.nn.Module             # what the steps call: the model, DDP-wrapped under torchrun
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    model_config: dict
    history: list = field(default_factory=list)
    best: dict | None = None         # {"epoch", "top1"} of the best epoch so far
    start: int = 1                   # first epoch this invocation runs
    steps_per_epoch: int = 0
    train_clips: int = 0             # clips in the training set
    partial: dict | None = None      # resuming mid-epoch: the checkpoint's "partial" entry (see save_partial)

    def record(self, m: dict) -> bool:
        """Append an epoch's metrics; True when its Top-1 is the best so far."""
        self.history.append(m)
        is_best = self.best is None or m["top1"] > self.best["top1"]
        if is_best:
            self.best = {"epoch": m["epoch"], "top1": m["top1"]}
        return is_best


def out_paths(cfg) -> tuple[str, str, str]:
    """``(last.pt, best.pt, checkpoint.pt)`` under ``cfg.out``."""
    return tuple(os.path.join(cfg.out, name) for name in ("last.pt", "best.pt", "checkpoint.pt"))


def checkpoint_dict(kind: str, cfg, run: RunState, spec, epoch: int) -> dict:
    """The part every checkpoint holds (``kind`` ``"train_state"`` or ``"model"``)."""
    mcfg, history = run.model_config, run.history
    return {"format": ckpt_io.FORMAT, "kind": kind, "model_config": dict(mcfg, entities=list(mcfg["entities"])),
            "train_config": asdict(cfg), "dataset": spec.as_dict(), "entities": list(run.model.entities),
            "class_names": list(spec.class_names) if spec.class_names else None,
            "state_dict": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
            "metrics": history[-1] if history else None, "history": history, "epoch": epoch}


def prepare_out(cfg, ctx, log) -> OutLock | None:
    """Before any work: create ``cfg.out``, check that files can be written there, take its lock (a
    second run on the folder is refused, a stale lock taken over), remove the temporary files that killed
    runs left in it. Rank 0 does it and every rank raises its refusal. Returns the lock (rank 0; release
    it when the run ends, however it ends) or None."""
    lock, err = None, None
    if ctx.is_main:
        try:
            os.makedirs(cfg.out, exist_ok=True)
        except OSError as e:
            err = OSError(e.errno, f"--out {cfg.out}: cannot create the folder ({e.strerror or e}); choose "
                                   f"another --out")
        try:
            if err is None:
                check_writable(cfg.out)
                lock = OutLock(cfg.out).acquire(log)
                removed = ckpt_io.clean_stale_temps(cfg.out)
                if removed:
                    log(f"removed {len(removed)} temporary file(s) of an interrupted run: "
                        + ", ".join(os.path.basename(p) for p in removed))
        except OSError as e:
            err = e
            if lock is not None:
                lock.release()
                lock = None
    msg = dist_util.broadcast_object(ctx, None if err is None else str(err))
    if err is not None:
        raise err
    if msg is not None:
        raise OSError(msg)
    return lock


def _write(path: str, fn):
    """``fn()`` writing ``path``; an OSError not naming ``path`` yet is re-raised naming it (errno kept)."""
    try:
        return fn()
    except OSError as e:
        if path in str(e):
            raise
        raise ckpt_io.write_error(e, path) from None


def on_rank0(ctx, fn) -> None:
    """``fn()`` on rank 0 (a write, a check of --out); its OSError is raised on every rank (the others would
    wait for rank 0 forever)."""
    err = None
    if ctx.is_main:
        try:
            fn()
        except OSError as e:
            err = e
    msg = dist_util.broadcast_object(ctx, None if err is None else str(err))
    if err is not None:
        raise err
    if msg is not None:
        raise OSError(msg)


def _train_state(cfg, ctx, run: RunState, spec, epoch: int, rngs: list) -> dict:
    state = checkpoint_dict("train_state", cfg, run, spec, epoch)
    # "scaler" stays in the format (None): bf16 autocast needs no loss scaling
    state.update(optimizer=run.opt.state_dict(), scheduler=run.sched.state_dict(), scaler=None, best=run.best,
                 world_size=ctx.world_size, rng=rngs, steps_per_epoch=run.steps_per_epoch)
    return state


def write_epoch(cfg, ctx, run: RunState, spec, epoch: int, is_best: bool, rngs: list) -> None:
    """``last.pt`` (and ``best.pt`` when ``is_best``) of a finished epoch ``epoch``; the caller is rank 0."""
    last, best, _ = out_paths(cfg)
    state = _train_state(cfg, ctx, run, spec, epoch, rngs)
    _write(last, lambda: ckpt_io.save(state, last))
    if is_best:          # atomic too: a run killed mid-copy leaves the previous best.pt intact
        _write(best, lambda: ckpt_io.atomic_copy(last, best))


def save_epoch(cfg, ctx, run: RunState, spec, gen: torch.Generator, epoch: int, is_best: bool) -> None:
    """``last.pt`` (and ``best.pt`` when ``is_best``) with every rank's RNG states; rank 0 writes."""
    rngs = dist_util.all_gather_object(ctx, ckpt_io.rng_state(gen, ctx.device))
    on_rank0(ctx, lambda: write_epoch(cfg, ctx, run, spec, epoch, is_best, rngs))


def save_partial(cfg, ctx, run: RunState, spec, gen: torch.Generator, partial: dict) -> str:
    """``last.pt`` of a run stopped mid-epoch (Ctrl-C), without collectives (the other ranks may be gone):
    the model, optimizer and schedule after ``partial["steps"]`` steps of epoch ``partial["epoch"]``, this
    rank's RNG states, and ``partial`` (``epoch``, ``steps``, ``steps_per_epoch``, ``batch_size``,
    ``num_clips``, ``world_size``, ``order``: the epoch's sample order (single process; None under
    torchrun, where ``DistributedSampler`` gives it again), ``loss_sum`` / ``seen``: the running training
    loss). The checkpoint's ``epoch`` is the last finished one. Rank 0 writes; returns the path."""
    last = out_paths(cfg)[0]
    if ctx.is_main:
        state = _train_state(cfg, ctx, run, spec, partial["epoch"] - 1, [ckpt_io.rng_state(gen, ctx.device)])
        state["partial"] = partial
        _write(last, lambda: ckpt_io.save(state, last))
    return last


def save_model(cfg, ctx, run: RunState, spec) -> str:
    """``checkpoint.pt``: model and history, no optimizer state; rank 0 writes."""
    path = out_paths(cfg)[2]
    on_rank0(ctx, lambda: _write(path, lambda: ckpt_io.save(
        checkpoint_dict("model", cfg, run, spec, len(run.history)), path)))
    return path


def resume_path(cfg) -> str | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        p = out_paths(cfg)[0]
        return p if os.path.isfile(p) else None
    return cfg.resume


def resume(cfg, ctx, run: RunState, gen: torch.Generator, log) -> None:
    """Restore model, optimizer, schedule, history, best epoch and this rank's RNG states from
    ``cfg.resume`` (rank 0's choice for every rank); nothing when there is nothing to resume. Changed
    options are used from here on and logged; those the optimizer and scheduler states would override
    (``--lr``, ``--weight-decay``, the schedule's length and position) are applied to them
    (``apply_schedule_options``). A changed ``--seed`` is refused, and so is a checkpoint saved
    mid-epoch with other steps per epoch, batch, clips or processes."""
    path = dist_util.broadcast_object(ctx, resume_path(cfg))
    if not path:
        return
    state = ckpt_io.load(path, need_train_state=True)
    ckpt_io.check_model_config(state["model_config"], run.model_config,
                               f"--dataset {cfg.dataset} with the given options")
    ckpt_io.check_state_dict(run.model, state["state_dict"], path)
    saved_cfg = state.get("train_config", {})
    if "seed" in saved_cfg and saved_cfg["seed"] != cfg.seed:
        raise ValueError(f"--seed {cfg.seed}: {path} was trained with --seed {saved_cfg['seed']}, and a resumed run "
                         f"continues that run's random streams (restored from the checkpoint), so another seed "
                         f"would be recorded but not used; resume with --seed {saved_cfg['seed']}, or start a new "
                         f"run (another --out) for another seed")
    partial = state.get("partial")
    saved_world = int(state.get("world_size", len(state["rng"])))
    if partial is not None:
        _check_partial(path, partial, cfg, ctx, run)
    run.model.load_state_dict(state["state_dict"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.history, run.best = list(state["history"]), state.get("best")
    run.start = int(state["epoch"]) + 1
    run.partial = partial
    apply_schedule_options(cfg, run, int(state["epoch"]) * run.steps_per_epoch
                           + (int(partial["steps"]) if partial else 0))
    changed = {k: (v, getattr(cfg, k)) for k, v in saved_cfg.items()
               if hasattr(cfg, k) and k not in _RESUME_MAY_CHANGE and v != getattr(cfg, k)}
    rngs = state["rng"]
    if ctx.rank < len(rngs):
        ckpt_io.set_rng_state(rngs[ctx.rank], gen, ctx.device)
    n = run.steps_per_epoch
    where = (f"mid-epoch: epoch {partial['epoch']}/{cfg.epochs}, step {partial['steps']}/{n} (the epoch's remaining "
             f"{n - int(partial['steps'])} batches follow)" if partial else f"at epoch {run.start - 1}/{cfg.epochs}")
    log(f"resumed from {path} {where}"
        + (f" (saved by {saved_world} processes, now {ctx.world_size}: the data order differs from an "
           f"uninterrupted run)" if saved_world != ctx.world_size else "")
        + (f"; options changed since, applied from here on: {_changes(changed)}" if changed else ""))


def _changes(changed: dict) -> str:
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())


def _check_partial(path: str, partial: dict, cfg, ctx, run: RunState) -> None:
    """A mid-epoch checkpoint continues its epoch's batches: the same steps per epoch, batch and processes."""
    now = {"steps_per_epoch": run.steps_per_epoch, "batch_size": cfg.batch_size, "num_clips": run.train_clips,
           "world_size": ctx.world_size}
    if cfg.epochs < int(partial["epoch"]):
        raise ValueError(f"--epochs {cfg.epochs}: {path} was saved in the middle of epoch {partial['epoch']} "
                         f"(Ctrl-C); resume it with --epochs {partial['epoch']} or more")
    diff = {k: (partial.get(k), v) for k, v in now.items() if partial.get(k) != v}
    if not diff:
        return
    what = "; ".join(f"{k}: checkpoint {a} vs now {b}" for k, (a, b) in diff.items())
    raise ValueError(f"--resume {path}: it was saved mid-epoch (Ctrl-C at epoch {partial['epoch']}, step "
                     f"{partial['steps']}/{partial['steps_per_epoch']}), and a mid-epoch resume runs that epoch's "
                     f"remaining batches, which needs the options it ran with ({what}); resume with "
                     f"--batch-size {partial['batch_size']} --num-clips {partial.get('num_clips')} and "
                     f"{partial['world_size']} process(es)")


def apply_schedule_options(cfg, run: RunState, steps_done: int) -> None:
    """After loading the optimizer and scheduler states: ``cfg.lr`` / ``cfg.weight_decay`` replace the
    saved ones, and the schedule (this run's ``run.sched``, made for ``cfg``'s warm-up, epochs and steps
    per epoch) continues at ``steps_done`` steps, its LR set for the next step. With unchanged options it
    changes nothing (the same values, bit for bit)."""
    for g in run.opt.param_groups:
        g["initial_lr"] = cfg.lr
        g["weight_decay"] = cfg.weight_decay
    sched = run.sched
    sched.base_lrs = [cfg.lr for _ in run.opt.param_groups]
    sched.last_epoch = steps_done
    lrs = [base * fn(sched.last_epoch) for fn, base in zip(sched.lr_lambdas, sched.base_lrs)]
    for g, lr in zip(run.opt.param_groups, lrs):
        g["lr"] = lr
    sched._last_lr = lrs
