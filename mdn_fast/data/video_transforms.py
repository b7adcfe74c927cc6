"""The geometric transforms shared by frames and keypoints, and the ImageNet normalisation.

A ``CropPlan`` (short side -> 256, then a crop, then resize to 224x224):
training: multi-scale crop (TSN/TSM ``GroupMultiScaleCrop``: side lengths ``base * s`` for s in
(1, .875, .75, .66) with base = the short side, width/height scale indices at most one step apart, the
crop placed at one of 13 fixed positions), then resized to 224; evaluation: centre 224 crop.
``apply_to_frames``: the crop taken in the frames' own pixels (``CropPlan.source_box``), one antialiased
resize of it to 224 on uint8, then one float conversion and the ImageNet mean/std.
``apply_to_keypoints``: the same geometric map applied to ``[T, J, 3]`` keypoints. Frames of a prepared
(smaller) twin of the video: ``plan.for_frames(h, w)``; keypoints stay in the original video's pixels.

Coordinate convention: ``mdn_fast.data.video``'s docstring.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..inputs import IMAGENET_MEAN, IMAGENET_STD

MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)


@dataclass(frozen=True)
class CropPlan:
    """Geometry from an ``H x W`` source frame to the ``out x out`` network input.

    ``src``: the clip's original ``(h, w)`` (the pixel units of its keypoints); ``resized``: ``(h1, w1)``
    after the short-side resize; ``box``: ``(x0, y0, w, h)`` integer crop in the resized frame; ``out``:
    the final square side; ``frames``: the ``(h, w)`` of the frames the plan is applied to when they differ
    from ``src`` (the prepared, smaller twin of a video), else None.
    """
    src: tuple[int, int]
    resized: tuple[int, int]
    box: tuple[int, int, int, int]
    out: int
    frames: tuple[int, int] | None = None

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.frames if self.frames is not None else self.src

    def for_frames(self, h: int, w: int) -> "CropPlan":
        """The same crop for frames of size ``h x w`` of the same clip (e.g. its prepared video):
        ``apply_to_frames`` then takes those frames, and keypoints stay in ``src`` pixels."""
        return replace(self, frames=None if (h, w) == self.src else (int(h), int(w)))

    def source_box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, w, h)``: ``box`` in the pixels of the frames (``frame_size``), each edge rounded to
        the nearest whole pixel (at most half a frame pixel from the exact box)."""
        (h1, w1), (hf, wf) = self.resized, self.frame_size
        x0, y0, cw, ch = self.box
        fx, fy = wf / w1, hf / h1
        xa, xb = int(round(x0 * fx)), int(round((x0 + cw) * fx))
        ya, yb = int(round(y0 * fy)), int(round((y0 + ch) * fy))
        xa, ya = min(max(xa, 0), wf - 1), min(max(ya, 0), hf - 1)
        xb, yb = min(max(xb, xa + 1), wf), min(max(yb, ya + 1), hf)
        return xa, ya, xb - xa, yb - ya

    def keypoint_affine(self) -> tuple[float, float, float, float]:
        """``(ax, bx, ay, by)`` with ``x' = ax * x + bx``, ``y' = ay * y + by``: ``src`` pixels -> output
        pixels along what ``apply_to_frames`` does (pixel-index convention)."""
        (h0, w0), (hf, wf) = self.src, self.frame_size
        xs, ys, cws, chs = self.source_box()
        # x -> (x + .5) wf/w0 - .5 (to the frames' pixels) -> minus xs (crop) -> (. + .5) out/cws - .5
        fx, fy = wf / w0, hf / h0
        sx, sy = self.out / cws, self.out / chs
        return fx * sx, (0.5 * fx - xs) * sx - 0.5, fy * sy, (0.5 * fy - ys) * sy - 0.5



def short_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """``(h1, w1)`` of an ``h x w`` frame resized to short side ``short`` (the other side rounded): the
    crop plan's ``resized``, and the size of a prepared video (``mdn_fast.data.prepare_videos``)."""
    if h <= w:
        return short, max(1, int(round(w * short / h)))
    return max(1, int(round(h * short / w))), short


def _fixed_offsets(w: int, h: int, cw: int, ch: int) -> list[tuple[int, int]]:
    """The 13 crop positions of TSN's ``more_fix_crop``: corners, centre, edge middles, quarter points."""
    sw, sh = (w - cw) // 4, (h - ch) // 4
    return [(0, 0), (4 * sw, 0), (0, 4 * sh), (4 * sw, 4 * sh), (2 * sw, 2 * sh),
            (0, 2 * sh), (4 * sw, 2 * sh), (2 * sw, 4 * sh), (2 * sw, 0),
            (sw, sh), (3 * sw, sh), (sw, 3 * sh), (3 * sw, 3 * sh)]


def make_crop_plan(h: int, w: int, train: bool, rng: np.random.Generator | None = None, *,
                   short_side: int = 256, out: int = 224, scales=MULTISCALE_SCALES,
                   max_distort: int = 1) -> CropPlan:
    """Crop plan for one clip (the same for all its frames, as in TSN)."""
    if h < 1 or w < 1:
        raise ValueError(f"frame size must be positive, got {h}x{w}")
    h1, w1 = short_side_size(h, w, short_side)
    if not train:
        cw = ch = min(out, h1, w1)
        box = ((w1 - cw) // 2, (h1 - ch) // 2, cw, ch)
        return CropPlan((h, w), (h1, w1), box, out)
    rng = rng if rng is not None else np.random.default_rng()
    base = min(h1, w1)
    sizes = [int(base * s) for s in scales]
    pairs = [(sw, sh) for i, sh in enumerate(sizes) for j, sw in enumerate(sizes) if abs(i - j) <= max_distort]
    cw, ch = pairs[int(rng.integers(len(pairs)))]
    offs = _fixed_offsets(w1, h1, cw, ch)
    x0, y0 = offs[int(rng.integers(len(offs)))]
    return CropPlan((h, w), (h1, w1), (int(x0), int(y0), int(cw), int(ch)), out)



def normalize_imagenet_(x: torch.Tensor) -> torch.Tensor:
    """``[T, 3, H, W]`` float in [0, 1] -> ImageNet-normalised (``inputs.IMAGENET_MEAN`` / ``IMAGENET_STD``),
    in place; returns ``x``."""
    return x.sub_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)).div_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))


def _check_frames(frames: np.ndarray, plan: CropPlan) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {tuple(frames.shape)}")
    if tuple(frames.shape[1:3]) != plan.frame_size:
        raise ValueError(f"frames are {frames.shape[1]}x{frames.shape[2]} but the crop plan is for "
                         f"{plan.frame_size[0]}x{plan.frame_size[1]} frames; for frames of another size of "
                         f"the same clip (a prepared video) use plan.for_frames(h, w)")


def crop_resize_uint8(frames: np.ndarray, plan: CropPlan) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> uint8 ``[T, 3, out, out]`` (channels-last memory): the plan's box cropped
    in the frames' own pixels (``plan.source_box()``), then one antialiased bilinear resize on uint8
    (torch's uint8 kernel, fixed-point weights). Nothing outside the box is read or converted."""
    _check_frames(frames, plan)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)   # a channels-last view
    x0, y0, cw, ch = plan.source_box()
    x = x[:, :, y0:y0 + ch, x0:x0 + cw]
    if (ch, cw) != (plan.out, plan.out):
        x = F.interpolate(x, size=(plan.out, plan.out), mode="bilinear", align_corners=False,
                          antialias=True)
    return x


def apply_to_frames(frames: np.ndarray, plan: CropPlan, *, normalize: bool = True) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, out, out]``: ``crop_resize_uint8`` then one conversion to
    float (of ``T x 3 x out x out`` values) and the ImageNet normalisation (``normalize=False``: [0, 1]).

    Geometry: ``plan.keypoint_affine()`` exactly (the crop box rounded to whole source pixels, which moves
    the crop by at most half a source pixel from the two-resize geometry of the previous pipeline,
    ``benchmarks/_previous_pipeline.py``). The values differ from that pipeline's by interpolation
    rounding and that sub-pixel shift (bounds in ``tests/data/test_video_fast.py`` and the benchmark's report)."""
    x = crop_resize_uint8(frames, plan).contiguous()
    x = x.float().div_(255.0)
    if normalize:
        x = normalize_imagenet_(x)
    return x


def apply_to_keypoints(keypoints: np.ndarray, plan: CropPlan) -> np.ndarray:
    """``[..., J, 3]`` (x, y, confidence) in source pixels -> the same in output pixels.

    Missing joints (confidence <= 0) are written as ``(0, 0, 0)``.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape[-1] != 3:
        raise ValueError(f"keypoints must end in 3 (x, y, confidence), got shape {tuple(kp.shape)}")
    ax, bx, ay, by = plan.keypoint_affine()
    out = kp.copy()
    out[..., 0] = kp[..., 0] * ax + bx
    out[..., 1] = kp[..., 1] * ay + by
    missing = ~(kp[..., 2] > 0)
    out[missing] = 0.0
    return out

