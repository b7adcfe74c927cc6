"""The pieces of one training step: seeding, model inputs, autocast, forward + loss, the LR schedule."""
from __future__ import annotations

import math
import random
from contextlib import nullcontext

import numpy as np
import torch

from . import distributed as dist_util


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns the data-order generator of the training loader."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def model_inputs(batch: dict, modality: str, device=None) -> dict:
    """The model's keyword inputs of a batch (``keypoints`` when present, ``frames`` unless pose-only)."""
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


def forward_loss(model, batch: dict, device=None, amp: bool = False, *, with_loss: bool = True):
    """One forward pass and the loss of ``batch`` -> ``(loss, output)``. ``model`` may be DDP-wrapped;
    the body term is used when the model has a body head. ``with_loss=False``: ``(None, output)``, for
    clips whose labels are hidden (-1)."""
    net = dist_util.unwrap(model)
    device = device if device is not None else next(net.parameters()).device
    inputs = model_inputs(batch, net.modality, device)
    with autocast(device, amp):
        out = model(**inputs)
        if not with_loss:
            return None, out
        return batch_loss(net, out, batch, device), out


def batch_loss(net, out, batch: dict, device):
    """The loss of the model output ``out`` against ``batch``'s labels (the body term when the model has
    a body head)."""
    labels = batch["label"].to(device)
    body = batch["body_label"].to(device) if net.body_head is not None else None
    return net.loss(out, labels, body)


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
