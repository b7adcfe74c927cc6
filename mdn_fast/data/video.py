"""Video decoding (PyAV), TSN-style frame sampling and the geometric transforms shared by frames and
keypoints.

Pipeline (MANet / TSN, as used for MA-52):
1. ``tsn_sample_indices``: split the clip into ``num_segments`` equal segments and take one frame per
   segment — a random offset inside the segment when training, the segment centre in evaluation.
2. ``decode_frames``: decode only those frames -> uint8 ``[T, H, W, 3]`` (RGB).
3. A ``CropPlan`` (short side -> 256, then a crop, then resize to 224x224):
   training: multi-scale crop (TSN/TSM ``GroupMultiScaleCrop``: side lengths ``base * s`` for
   s in (1, .875, .75, .66) with base = the short side, width/height scale indices at most one step
   apart, the crop placed at one of 13 fixed positions), then resized to 224;
   evaluation: centre 224 crop.
4. ``apply_to_frames``: float ``[T, 3, 224, 224]`` normalised by the ImageNet mean/std.
   ``apply_to_keypoints``: the same geometric map applied to ``[T, J, 3]`` keypoints.

Coordinate convention (frames and keypoints agree on it): a keypoint ``(x, y)`` is in pixel-index
units of its frame, pixel ``i`` covering ``[i - .5, i + .5)``. A resize by factor ``s`` (the
``align_corners=False`` convention of ``torch.nn.functional.interpolate``) maps ``x -> (x + .5) s - .5``;
a crop at ``x0`` maps ``x -> x - x0``. Joints with confidence 0 (missing) stay ``(0, 0, 0)``. Joints that
fall outside the crop keep their confidence; their coordinates may lie outside ``[0, 224)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)


class VideoReadError(RuntimeError):
    """A video file could not be opened or decoded; the message names the file."""


# ----------------------------------------------------------------------------------------------- sampling
def tsn_sample_indices(num_frames: int, num_segments: int, train: bool,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN segment sampling: one frame index per segment, ``int64 [num_segments]`` in ``[0, num_frames)``.

    The clip is cut into ``num_segments`` segments of length ``num_frames / num_segments`` (fractional);
    training takes a uniform random offset inside each segment, evaluation the segment centre. Clips
    shorter than ``num_segments`` repeat frames (indices stay sorted).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    seg = num_frames / num_segments
    base = np.arange(num_segments, dtype=np.float64) * seg
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        pos = base + rng.random(num_segments) * seg
    else:
        pos = base + seg / 2.0
    return np.clip(np.floor(pos).astype(np.int64), 0, num_frames - 1)


# ----------------------------------------------------------------------------------------------- decoding
def _open(path):
    import av  # imported lazily: the package must import without PyAV
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"video file {str(path)!r} does not exist")
    try:
        return av.open(str(path))
    except Exception as e:  # PyAV raises several error types (InvalidDataError, OSError, ...)
        raise VideoReadError(f"video file {str(path)!r}: cannot open with PyAV ({type(e).__name__}: {e})") from e


def count_frames(path) -> int:
    """Number of video frames: the container's count when it has one, else counted from the packets."""
    with _open(path) as container:
        if not container.streams.video:
            raise VideoReadError(f"video file {str(path)!r}: no video stream")
        stream = container.streams.video[0]
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        # No count in the header (e.g. some avi/webm): count packets that carry data (no decoding).
        return sum(1 for p in container.demux(stream) if p.size > 0)


def decode_frames(path, indices) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) -> uint8 ``[len(indices), H, W, 3]`` RGB.

    Decodes sequentially once and keeps only the requested frames (clips are short; seeking in long-GOP
    H.264 would decode the same frames again). If the stream ends before an index (container frame counts
    can overstate), that index gets the last decoded frame.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("decode_frames: indices is empty")
    if idx.min() < 0:
        raise ValueError(f"decode_frames: negative frame index {int(idx.min())}")
    wanted = set(int(i) for i in idx)
    last_needed = int(idx.max())
    got: dict[int, np.ndarray] = {}
    last_frame, last_i = None, -1
    with _open(path) as container:
        if not container.streams.video:
            raise VideoReadError(f"video file {str(path)!r}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                last_frame, last_i = frame, i
                if i >= last_needed:
                    break
        except Exception as e:
            raise VideoReadError(f"video file {str(path)!r}: decoding failed ({type(e).__name__}: {e})") from e
    if last_frame is None:
        raise VideoReadError(f"video file {str(path)!r}: no frame could be decoded")
    # indices past the end of the stream get its last frame
    fill = got[last_i] if last_i in got else last_frame.to_ndarray(format="rgb24")
    return np.stack([got.get(int(i), fill) for i in idx])


# ----------------------------------------------------------------------------------------------- crop plans
@dataclass(frozen=True)
class CropPlan:
    """Geometry from an ``H x W`` source frame to the ``out x out`` network input.

    ``resized``: ``(h1, w1)`` after the short-side resize; ``box``: ``(x0, y0, w, h)`` integer crop in the
    resized frame; ``out``: the final square side.
    """
    src: tuple[int, int]
    resized: tuple[int, int]
    box: tuple[int, int, int, int]
    out: int

    def keypoint_affine(self) -> tuple[float, float, float, float]:
        """``(ax, bx, ay, by)`` with ``x' = ax * x + bx``, ``y' = ay * y + by`` (pixel-index convention)."""
        (h0, w0), (h1, w1) = self.src, self.resized
        x0, y0, cw, ch = self.box
        sx1, sy1 = w1 / w0, h1 / h0
        sx2, sy2 = self.out / cw, self.out / ch
        # x -> (x + .5) sx1 - .5 (resize) -> minus x0 (crop) -> (. + .5) sx2 - .5 (resize)
        ax, ay = sx1 * sx2, sy1 * sy2
        bx = (0.5 * sx1 - x0) * sx2 - 0.5
        by = (0.5 * sy1 - y0) * sy2 - 0.5
        return ax, bx, ay, by


def _short_side_size(h: int, w: int, short: int) -> tuple[int, int]:
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
    h1, w1 = _short_side_size(h, w, short_side)
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


# ----------------------------------------------------------------------------------------------- apply
def apply_to_frames(frames: np.ndarray, plan: CropPlan, *, normalize: bool = True) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, out, out]`` (resize, crop, resize, ImageNet-normalise)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {tuple(frames.shape)}")
    if tuple(frames.shape[1:3]) != plan.src:
        raise ValueError(f"frames are {frames.shape[1]}x{frames.shape[2]} but the crop plan was made for "
                         f"{plan.src[0]}x{plan.src[1]}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    if tuple(x.shape[-2:]) != plan.resized:
        x = F.interpolate(x, size=plan.resized, mode="bilinear", align_corners=False, antialias=True)
    x0, y0, cw, ch = plan.box
    x = x[:, :, y0:y0 + ch, x0:x0 + cw]
    if (ch, cw) != (plan.out, plan.out):
        x = F.interpolate(x, size=(plan.out, plan.out), mode="bilinear", align_corners=False,
                          antialias=True)
    x = x.clamp_(0.0, 1.0)
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.contiguous()


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


def frame_map(num_src: int, num_dst: int, indices: np.ndarray) -> np.ndarray:
    """Map frame indices of a ``num_dst``-frame stream onto a ``num_src``-frame stream of the same clip
    (e.g. video frames onto pose frames when the two counts differ): proportional, clamped."""
    idx = np.asarray(indices, dtype=np.int64)
    if num_src == num_dst:
        return idx
    mapped = np.floor((idx + 0.5) * num_src / num_dst).astype(np.int64)
    return np.clip(mapped, 0, num_src - 1)

