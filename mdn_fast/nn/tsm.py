"""Temporal Shift Module (TSM) for torchvision ResNets (design.md §1.1, facts.md "TSM").

Frames travel through the 2-D CNN folded into the batch: ``(B·T, C, H, W)`` with frames of one clip
consecutive. Before ``conv1`` of a residual branch, ``C // fold_div`` channels of frame t are replaced by
those of frame t+1, the next ``C // fold_div`` by those of frame t−1 (zeros past either end of the clip),
the rest pass unchanged. The shift costs no parameters and no FLOPs, and gives every later conv a
receptive field across neighbouring frames.
"""
from __future__ import annotations

import torch
from torch import nn


class TemporalShift(nn.Module):
    """Shift ``1/fold_div`` of the channels one frame back in time and ``1/fold_div`` one frame forward.

    Input and output: ``[B·T, C, H, W]`` (any trailing dims) with ``T = num_frames`` frames of one clip
    consecutive. Output channel block ``[0, f)`` at frame t holds input frame t+1, block ``[f, 2f)`` holds
    input frame t−1 (``f = C // fold_div``), zero where that frame does not exist.
    """

    def __init__(self, num_frames: int, fold_div: int = 8):
        super().__init__()
        if int(num_frames) < 1:
            raise ValueError(f"num_frames: expected >= 1, got {num_frames}")
        if int(fold_div) < 2:
            raise ValueError(f"fold_div: expected >= 2 (two shifted folds must fit), got {fold_div}")
        self.num_frames = int(num_frames)
        self.fold_div = int(fold_div)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        T = self.num_frames
        if n % T:
            raise ValueError(f"TemporalShift: batch dim {n} is not a multiple of num_frames={T}; "
                             f"expected input [B*T, C, H, W] with frames of one clip consecutive")
        fold = c // self.fold_div
        v = x.reshape(n // T, T, *x.shape[1:])
        out = torch.zeros_like(v)
        out[:, :-1, :fold] = v[:, 1:, :fold]                    # frame t sees t+1
        out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]    # frame t sees t-1
        out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
        return out.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"num_frames={self.num_frames}, fold_div={self.fold_div}"


class ShiftedConv(nn.Module):
    """``conv(shift(x))``: a residual branch's ``conv1`` with a temporal shift in front of it."""

    def __init__(self, conv: nn.Module, num_frames: int, fold_div: int = 8):
        super().__init__()
        self.shift = TemporalShift(num_frames, fold_div)
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.shift(x))


_STAGES = ("layer1", "layer2", "layer3", "layer4")


def insert_tsm(resnet: nn.Module, num_frames: int, every: int | None = None, fold_div: int = 8) -> int:
    """Put a ``TemporalShift`` before ``conv1`` of the residual branch of blocks of a torchvision ResNet
    (TSM's "blockres" placement), in place. Returns the number of shifts inserted.

    ``every``: shift blocks ``0, every, 2·every, …`` of each stage. ``None`` follows the TSM reference:
    2 for deep nets (ResNet-101/152: ``layer3`` has >= 23 blocks), else 1 (every block).
    Load pretrained weights *before* calling this: the wrapped conv's parameters move to
    ``<block>.conv1.conv.*``.
    """
    if not all(hasattr(resnet, s) for s in _STAGES):
        raise TypeError(f"insert_tsm: expected a torchvision ResNet with {_STAGES}, got {type(resnet).__name__}")
    if every is None:
        every = 2 if len(resnet.layer3) >= 23 else 1
    if int(every) < 1:
        raise ValueError(f"every: expected >= 1 or None, got {every}")
    count = 0
    for stage in _STAGES:
        for i, block in enumerate(getattr(resnet, stage)):
            if i % every:
                continue
            if isinstance(block.conv1, ShiftedConv):
                raise ValueError(f"insert_tsm: {stage}[{i}].conv1 already has a temporal shift")
            block.conv1 = ShiftedConv(block.conv1, num_frames, fold_div)
            count += 1
    return count
