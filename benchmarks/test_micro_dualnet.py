"""Benchmark of the whole ``MicroDualNet`` (design.md §1.4): a training step and inference clips/s.

- ``train_step``: ``zero_grad`` (set to None), forward, ``model.loss(out, labels, body_labels)`` (CE +
  body CE + MAC), ``backward``, ``AdamW.step``. bf16 runs under ``torch.autocast`` with fp32 weights,
  as a user trains in mixed precision.
- ``inference``: ``model.eval()`` forward under ``torch.inference_mode`` (+ autocast for bf16); the
  report shows clips/s = B / median.
Variants (the ``variant`` part of the id): ``pose`` (no CNN) and ``rgb+pose``, whose backbone and frame
size depend on the device: GPU ResNet-101 at 224 px (the paper's), CPU ResNet-18 at 112 px (a
ResNet-101 step on 2 CPU cores takes minutes), quick mode ResNet-18 at 32 px. Inputs: random frames,
random BODY_25 keypoints (pixel coordinates, ~10% of joints below the confidence threshold), random
labels; the entity mask is derived by the model.

Cases: ``eager`` (``backend="reference"``), ``compile`` (``torch.compile`` of the reference model; the
loss and optimizer stay eager) and ``backend=name`` for every fused backend that runs both ops.

CPU subset: pose B=16 T=8 fp32 (train step, inference), pose B=256 T=8 fp32 inference, pose B=16 T=32
fp32 train step, rgb+pose B=4 T=8 fp32 inference and train step without the compile baseline (inductor
needs minutes for the ResNet on 2 cores; ``--bench-full`` adds it). GPU: everything except rgb+pose
training at B=256 (2,048 ResNet-101 images per step do not fit) and rgb+pose at T=32.
"""
from __future__ import annotations

import contextlib

import pytest
import torch

from . import _harness as H

MODES = ("train_step", "inference")
VARIANTS = ("pose", "rgb+pose")
NUM_CLASSES, NUM_BODY = 52, 7


def _rgb_setup(cfg: H.Config) -> tuple[str, int, int]:
    """(backbone, frame side in pixels, feature stride) for the rgb variant on this device."""
    if H.quick():
        return "resnet18", 32, 16
    return ("resnet101", 224, 32) if cfg.device == "cuda" else ("resnet18", 112, 32)


def _model_class():
    try:
        from mdn_fast.nn.micro_dualnet import MicroDualNet
        return MicroDualNet
    except Exception as e:  # written by another issue; the benchmark waits for it
        return f"mdn_fast.nn.micro_dualnet.MicroDualNet not importable yet ({type(e).__name__}: {e})"


def _inputs(cfg: H.Config, num_joints: int, side: int | None):
    g = torch.Generator().manual_seed(30)
    B, T = cfg.B, cfg.T
    s = side or 224
    xy = (0.15 + 0.7 * torch.rand(B, T, num_joints, 2, generator=g)) * s
    conf = 0.3 + 0.7 * torch.rand(B, T, num_joints, 1, generator=g)
    conf[torch.rand(B, T, num_joints, 1, generator=g) < 0.1] = 0.05   # undetected joints
    keypoints = torch.cat([xy, conf], dim=-1).to(cfg.device)
    frames = (torch.randn(B, T, 3, side, side, generator=g).to(cfg.device) if side else None)
    labels = torch.randint(0, NUM_CLASSES, (B,), generator=g).to(cfg.device)
    body = torch.randint(0, NUM_BODY, (B,), generator=g).to(cfg.device)
    return frames, keypoints, labels, body


def build(cfg: H.Config) -> dict:
    Model = _model_class()
    if isinstance(Model, str):
        return {name: Model for name in SUBJECT.cases()}
    rgb = cfg.variant != "pose"
    backbone, side, stride = _rgb_setup(cfg)

    def autocast():
        if cfg.dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(cfg.device, dtype=cfg.torch_dtype)

    def case(backend: str, compiled: bool = False):
        def factory():
            torch.manual_seed(0)  # same weights in every case
            model = Model(num_classes=NUM_CLASSES, num_body_classes=NUM_BODY, modality=cfg.variant,
                          layout="body25", num_frames=cfg.T, dim=cfg.D, heads=cfg.H, backbone=backbone,
                          backend=backend, feature_stride=stride).to(cfg.device)
            forward = H.compile_fn(model) if compiled else model
            frames, keypoints, labels, body = _inputs(cfg, model.layout.num_joints, side if rgb else None)
            if cfg.mode == "inference":
                model.eval()

                def infer():
                    with torch.inference_mode(), autocast():
                        return forward(frames=frames, keypoints=keypoints).logits
                return infer
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def train_step():
                opt.zero_grad(set_to_none=True)
                with autocast():
                    out = forward(frames=frames, keypoints=keypoints)
                    loss = model.loss(out, labels, body)
                loss.backward()
                opt.step()
                return loss.detach()
            return train_step
        return factory

    out = {"eager": case("reference"), "compile": case("reference", compiled=True)}
    if H.quick() and rgb:
        out["compile"] = ("quick mode: tracing the ResNet trunk takes ~30 s on 2 CPU cores; the pose "
                          "variant checks the compile path, the full run measures this one")
    elif rgb and cfg.device == "cpu" and not H.full_cpu():
        out["compile"] = ("CPU subset: inductor takes minutes to compile the ResNet trunk on 2 cores and "
                          "the CNN dominates the step anyway; run with --bench-full to include it")
    return H.module_backend_cases(SUBJECT.cases(), cfg, case, out)


def floor(cfg: H.Config) -> dict:
    # A whole model has no meaningful bandwidth floor (it is GEMM- and conv-bound); report clips/s.
    return {"bytes": None, "flops": None, "items": cfg.B}


SUBJECT = H.Subject("micro_dualnet", ("eager", "compile"), build, floor)


def _cpu_keep(c: H.Config) -> bool:
    if c.dtype != "fp32":
        return False
    if c.variant == "pose":
        return (c.B == 16 and c.T == 8) or (c.B == 256 and c.T == 8 and c.mode == "inference") \
            or (c.B == 16 and c.T == 32 and c.mode == "train_step")
    return c.B == 4 and c.T == 8


def _gpu_keep(c: H.Config) -> bool:
    if c.B == 4:
        return False
    if c.variant == "pose":
        return True
    return c.T == 8 and (c.mode == "inference" or c.B == 16)


# B=4 exists for the CPU rgb+pose step only (a ResNet step over 16 x 8 frames takes tens of seconds there).
CONFIGS = H.matrix(MODES, cpu_keep=_cpu_keep, gpu_keep=_gpu_keep, variants=VARIANTS, batches=(4, 16, 256))


@pytest.mark.parametrize("cfg, case", H.params(SUBJECT, CONFIGS))
def test_micro_dualnet(cfg, case, benchmark, bench_runner):
    bench_runner.run(SUBJECT, cfg, case, benchmark)
