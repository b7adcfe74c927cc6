"""What a run carries from epoch to epoch (model, optimizer, schedule, history, best epoch) and the
files that hold it: ``OUT/last.pt`` every epoch, ``OUT/best.pt`` when val Top-1 improves (both
resumable), ``OUT/checkpoint.pt`` (model only) when the run returns. File format, safe loading and
the compatibility checks: ``mdn_fast.checkpoint``."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import torch

from .. import checkpoint as ckpt_io
from .. import distributed as dist_util

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


def prepare_out(cfg, ctx, log) -> None:
    """Create ``cfg.out`` and remove the temporary files that killed runs left in it (rank 0), before
    the first save."""
    if ctx.is_main:
        os.makedirs(cfg.out, exist_ok=True)
        removed = ckpt_io.clean_stale_temps(cfg.out)
        if removed:
            log(f"removed {len(removed)} temporary file(s) of an interrupted run: "
                + ", ".join(os.path.basename(p) for p in removed))
    dist_util.barrier(ctx)


def save_epoch(cfg, ctx, run: RunState, spec, gen: torch.Generator, epoch: int, is_best: bool) -> None:
    """``last.pt`` (and ``best.pt`` when ``is_best``) with every rank's RNG states; rank 0 writes."""
    rngs = dist_util.all_gather_object(ctx, ckpt_io.rng_state(gen, ctx.device))
    if ctx.is_main:
        last, best, _ = out_paths(cfg)
        state = checkpoint_dict("train_state", cfg, run, spec, epoch)
        # "scaler" stays in the format (None): bf16 autocast needs no loss scaling
        state.update(optimizer=run.opt.state_dict(), scheduler=run.sched.state_dict(), scaler=None, best=run.best,
                     world_size=ctx.world_size, rng=rngs)
        ckpt_io.save(state, last)
        if is_best:          # atomic too: a run killed mid-copy leaves the previous best.pt intact
            ckpt_io.atomic_copy(last, best)
    dist_util.barrier(ctx)


def save_model(cfg, ctx, run: RunState, spec) -> str:
    """``checkpoint.pt``: model and history, no optimizer state; rank 0 writes."""
    path = out_paths(cfg)[2]
    if ctx.is_main:
        ckpt_io.save(checkpoint_dict("model", cfg, run, spec, len(run.history)), path)
    dist_util.barrier(ctx)
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
    ``cfg.resume`` (rank 0's choice for every rank); nothing when there is nothing to resume."""
    path = dist_util.broadcast_object(ctx, resume_path(cfg))
    if not path:
        return
    state = ckpt_io.load(path, need_train_state=True)
    ckpt_io.check_model_config(state["model_config"], run.model_config,
                               f"--dataset {cfg.dataset} with the given options")
    ckpt_io.check_state_dict(run.model, state["state_dict"], path)
    run.model.load_state_dict(state["state_dict"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.history, run.best, run.start = list(state["history"]), state.get("best"), int(state["epoch"]) + 1
    changed = {k: (v, getattr(cfg, k)) for k, v in state.get("train_config", {}).items()
               if hasattr(cfg, k) and k not in _RESUME_MAY_CHANGE and v != getattr(cfg, k)}
    rngs = state["rng"]
    if ctx.rank < len(rngs):
        ckpt_io.set_rng_state(rngs[ctx.rank], gen, ctx.device)
    log(f"resumed from {path} at epoch {run.start - 1}/{cfg.epochs}"
        + (f" (saved by {len(rngs)} processes, now {ctx.world_size}: the data order differs from an "
           f"uninterrupted run)" if len(rngs) != ctx.world_size else "")
        + (f"; options changed since: {changed}" if changed else ""))
