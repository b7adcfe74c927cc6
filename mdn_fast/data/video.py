"""Video decoding (PyAV), TSN-style frame sampling and the geometric transforms shared by frames and
keypoints.

Pipeline (MANet / TSN, as used for MA-52):
1. ``tsn_sample_indices``: split the clip into ``num_segments`` equal segments and take one frame per
   segment — a random offset inside the segment when training, the segment centre in evaluation.
2. ``decode_frames`` / ``decode_sampled``: decode only those frames -> uint8 ``[T, H, W, 3]`` (RGB).
   Only what they need reaches the H.264 decoder (GOPs without a sampled frame and unsampled
   non-reference pictures are skipped), and only the sampled frames are converted to RGB.
3. A ``CropPlan`` (short side -> 256, then a crop, then resize to 224x224):
   training: multi-scale crop (TSN/TSM ``GroupMultiScaleCrop``: side lengths ``base * s`` for
   s in (1, .875, .75, .66) with base = the short side, width/height scale indices at most one step
   apart, the crop placed at one of 13 fixed positions), then resized to 224;
   evaluation: centre 224 crop.
4. ``apply_to_frames``: the crop taken in the frames' own pixels (``CropPlan.source_box``), one
   antialiased resize of it to 224 on uint8, then one float conversion and the ImageNet mean/std
   (``apply_to_frames_float`` keeps the previous whole-frame float pipeline as a reference).
   ``apply_to_keypoints``: the same geometric map applied to ``[T, J, 3]`` keypoints.
   Frames of a prepared (smaller) twin of the video: ``plan.for_frames(h, w)``; keypoints stay in the
   original video's pixels (``mdn_fast.data.prepare_videos``).

Coordinate convention (frames and keypoints agree on it): a keypoint ``(x, y)`` is in pixel-index
units of its frame, pixel ``i`` covering ``[i - .5, i + .5)``. A resize by factor ``s`` (the
``align_corners=False`` convention of ``torch.nn.functional.interpolate``) maps ``x -> (x + .5) s - .5``;
a crop at ``x0`` maps ``x -> x - x0``. Joints with confidence 0 (missing) stay ``(0, 0, 0)``. Joints that
fall outside the crop keep their confidence; their coordinates may lie outside ``[0, 224)``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)


class VideoReadError(RuntimeError):
    """A video file could not be opened or decoded; the message names the file."""


class ClipReadError(VideoReadError, ValueError):
    """A dataset clip whose video cannot be read (raised by a dataset's ``__getitem__``): one line naming
    the clip and the file. A ``ValueError``, so ``mdn-fast`` reports it as a user error, in one line.

    Raised inside a DataLoader worker, torch re-raises it in the main process as
    ``ClipReadError("Caught ClipReadError in DataLoader worker process 0.\nOriginal Traceback ...")``;
    the constructor keeps only the original message (and the worker), so it stays one line."""

    def __init__(self, message=""):
        message = str(message)
        if message.startswith("Caught ") and "\nOriginal Traceback" in message:
            head = message.split("\n", 1)[0]                       # "Caught ClipReadError in DataLoader worker process 0."
            where = head[len(f"Caught {type(self).__name__} "):].rstrip(".") if head.startswith(
                f"Caught {type(self).__name__} ") else ""
            prefix = f"{type(self).__module__}.{type(self).__qualname__}: "
            lines = message.rstrip("\n").split("\n")
            starts = [k for k, ln in enumerate(lines) if ln.startswith(prefix)]
            if starts:
                original = " ".join(lines[starts[-1]:])[len(prefix):]
                message = original + (f" ({where})" if where else "")
        super().__init__(message)


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


def _video_stream(container, path):
    if not container.streams.video:
        raise VideoReadError(f"video file {str(path)!r}: no video stream")
    return container.streams.video[0]


def count_frames(path) -> int:
    """Number of video frames: the container's count when it has one, else counted from the packets."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        # No count in the header (e.g. some avi/webm): count packets that carry data (no decoding).
        return sum(1 for p in container.demux(stream) if p.size > 0)


def video_frame_size(path) -> tuple[int, int]:
    """``(height, width)`` of the frames, from the stream header (nothing decoded)."""
    with _open(path) as container:
        ctx = _video_stream(container, path).codec_context
        if ctx.height > 0 and ctx.width > 0:
            return int(ctx.height), int(ctx.width)
    return tuple(decode_frames(path, [0]).shape[1:3])


def _decode_threads(stream, threads: int | None) -> None:
    """``threads=None``: one decoding thread inside a DataLoader worker (the workers are the parallelism;
    a frame-threaded decoder per worker only oversubscribes the cores), FFmpeg's automatic threading
    otherwise. An int forces that many (1 = single-threaded, what per-core throughput measures)."""
    if threads is None:
        import torch.utils.data
        threads = 1 if torch.utils.data.get_worker_info() is not None else 0
    if threads == 1:
        stream.codec_context.thread_count = 1
    else:
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = int(threads)


# H.264 NAL inspection. A packet whose picture has nal_ref_idc == 0 is never used to predict another
# picture, so not sending it to the decoder changes no other frame (FFmpeg's skip_frame=NONREF does the
# same, for every frame). An IDR picture (nal_unit_type 5) empties the reference buffer, so the packets
# of a closed GOP that holds no requested frame can be skipped as a whole.
def _h264_nal_format(stream) -> int | None:
    """Length-prefix size of the NAL units in ``stream``'s packets (avcC, as in mp4/mkv), 0 for Annex B
    start codes, None when the stream is not H.264."""
    ctx = stream.codec_context
    if ctx.name not in ("h264",):
        return None
    extra = bytes(ctx.extradata or b"")
    if len(extra) >= 5 and extra[0] == 1:
        return (extra[4] & 3) + 1
    return 0


def _h264_picture_kind(data: memoryview, nal_len: int) -> tuple[bool, bool]:
    """``(is_reference, is_idr)`` of the first slice NAL of one access unit; an access unit without a
    slice reads as a reference non-IDR (the safe answer: it is decoded, and it splits no GOP)."""
    n, i = len(data), 0
    while i < n:
        if nal_len:
            if i + nal_len >= n:
                break
            size = int.from_bytes(data[i:i + nal_len], "big")
            hdr = data[i + nal_len]
            i += nal_len + size
        else:  # Annex B: find the next start code
            j = bytes(data[i:min(n, i + 4096)]).find(b"\x00\x00\x01") if i < n else -1
            if j < 0:
                break
            i += j + 3
            if i >= n:
                break
            hdr = data[i]
        nal_type = hdr & 0x1F
        if nal_type in (1, 5):
            return bool(hdr & 0x60), nal_type == 5
    return True, False


def _pts_to_index(stream, pts_values):
    """``(display index of each pts, first pts, index per pts unit)`` for a constant frame rate, or None
    when the stream has no usable timestamps."""
    rate = stream.average_rate or stream.guessed_rate
    tb = stream.time_base
    if not rate or not tb or any(p is None for p in pts_values):
        return None
    p0, per = min(pts_values), float(tb * rate)
    return [int(round((p - p0) * per)) for p in pts_values], p0, per


def _packets_to_send(kinds: list[tuple[bool, bool]], disp: list[int], wanted: set[int]) -> list[int]:
    """Decode-order positions of the packets the frames ``wanted`` (display indices) need, given each
    packet's ``(is_reference, is_idr)`` and display index: inside every GOP (from one IDR to the next)
    that holds a wanted frame, the reference pictures up to the last wanted one plus the wanted ones."""
    gop, gop_of = 0, []
    for pos, (_, idr) in enumerate(kinds):
        if idr and pos > 0:
            gop = pos
        gop_of.append(gop)
    last_wanted: dict[int, int] = {}
    for pos, d in enumerate(disp):
        if d in wanted:
            last_wanted[gop_of[pos]] = pos
    return [pos for pos in range(len(kinds))
            if gop_of[pos] in last_wanted and pos <= last_wanted[gop_of[pos]]
            and (disp[pos] in wanted or kinds[pos][0])]


def _decode_selected(container, stream, choose):
    """Decode only what the requested frames need. ``choose(n) -> indices`` is called once the frame
    count ``n`` is known (from the packets). Returns ``({display index: frame}, n, indices)``, or None when
    the stream does not allow it (not H.264, no timestamps, variable frame rate, a requested frame not
    produced) and the caller should decode sequentially."""
    nal_len = _h264_nal_format(stream)
    if nal_len is None:
        return None
    packets = [p for p in container.demux(stream) if p.size > 0]
    n = len(packets)
    if n == 0 or any(getattr(p, "is_discard", False) for p in packets):
        return None       # an edit list that drops frames: the decoder's count is not the packets'
    mapped = _pts_to_index(stream, [p.pts for p in packets])
    if mapped is None:
        return None
    disp, p0, per = mapped
    if sorted(disp) != list(range(n)):
        return None
    idx = _check_indices(choose(n))
    wanted = {min(int(i), n - 1) for i in idx}            # past the end: the last frame
    kinds = [_h264_picture_kind(memoryview(p), nal_len) for p in packets]
    send = [packets[pos] for pos in _packets_to_send(kinds, disp, wanted)]
    got: dict[int, object] = {}
    ctx = stream.codec_context

    def keep(frames):
        for f in frames:
            if f.pts is not None:
                i = int(round((f.pts - p0) * per))
                if i in wanted:
                    got[i] = f

    for p in send:
        keep(ctx.decode(p))
    keep(ctx.decode(None))                                # flush the reorder buffer
    if not wanted.issubset(got):
        return None
    for i in idx:                                         # past the end -> the last frame
        if int(i) >= n:
            got[int(i)] = got[n - 1]
    return got, n, idx


def _decode_sequential(container, stream, wanted: set[int]) -> tuple[dict[int, object], int, bool]:
    """The plain decoder loop: every frame in order up to the last requested one. Returns the frames,
    how many were decoded and whether the stream ended before the last requested index (those indices
    then get its last frame)."""
    last_needed = max(wanted)
    got: dict[int, object] = {}
    last_frame, last_i = None, -1
    for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
            got[i] = frame
        last_frame, last_i = frame, i
        if i >= last_needed:
            break
    if last_frame is None:
        return {}, 0, True
    for i in wanted:
        if i > last_i:
            got[i] = last_frame
    return got, last_i + 1, last_i < last_needed


def _decode(path, choose, threads, sequential: bool):
    """Shared body of ``decode_frames`` and ``decode_sampled``: ``(frames uint8 [T, H, W, 3], indices,
    frame count)``. ``choose(n) -> indices`` picks the indices once the frame count is known."""
    res = None
    try:
        if not sequential:
            with _open(path) as container:
                stream = _video_stream(container, path)
                _decode_threads(stream, threads)
                res = _decode_selected(container, stream, choose)
        if res is None:   # not H.264 / no timestamps: decode in order (a fresh open: not every input seeks)
            with _open(path) as container:
                stream = _video_stream(container, path)
                n = int(stream.frames or 0)
            if n <= 0:
                n = count_frames(path)
            idx = _check_indices(choose(max(n, 1)))
            with _open(path) as container:
                stream = _video_stream(container, path)
                _decode_threads(stream, threads)
                got, decoded, ended = _decode_sequential(container, stream, set(int(i) for i in idx))
            res = got, (decoded if ended else n), idx
    except (VideoReadError, ValueError):
        raise
    except Exception as e:
        raise VideoReadError(f"video file {str(path)!r}: decoding failed ({type(e).__name__}: {e})") from e
    got, n, idx = res
    if not got:
        raise VideoReadError(f"video file {str(path)!r}: no frame could be decoded")
    # only the kept frames are converted to RGB (the conversion of a 1080p frame costs about a decode)
    arrays = {i: f.to_ndarray(format="rgb24") for i, f in got.items()}
    return np.stack([arrays[int(i)] for i in idx]), idx, n


def _check_indices(indices) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("decode_frames: indices is empty")
    if idx.min() < 0:
        raise ValueError(f"decode_frames: negative frame index {int(idx.min())}")
    return idx


def decode_frames(path, indices, *, threads: int | None = None, sequential: bool = False) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) -> uint8 ``[len(indices), H, W, 3]`` RGB.

    Decodes only what those frames need (H.264 with timestamps): packets of closed GOPs that hold no
    requested frame and non-reference pictures that are not requested are never sent to the decoder,
    so a short keyframe interval (``prepare_videos``) turns into proportionally less decoding, and only
    the requested frames are converted to RGB. Other streams, or when that fails, are decoded in order
    up to the last requested frame (``sequential=True`` forces it). An index past the end of the stream
    (container frame counts can overstate) gets the last frame. ``threads``: see ``_decode_threads``.
    """
    idx = _check_indices(indices)
    return _decode(path, lambda n: idx, threads, sequential)[0]


def decode_sampled(path, num_segments: int, train: bool, rng: np.random.Generator | None = None, *,
                   threads: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """``count_frames`` + ``tsn_sample_indices`` + ``decode_frames`` with one open of the file:
    ``(frames uint8 [num_segments, H, W, 3], indices, frame count)``."""
    return _decode(path, lambda n: tsn_sample_indices(n, num_segments, train, rng), threads, False)


# ----------------------------------------------------------------------------------------------- crop plans
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

    def nominal_affine(self) -> tuple[float, float, float, float]:
        """The two-resize geometry (resize to ``resized``, crop ``box``, resize to ``out``) of
        ``apply_to_frames_float``, in ``src`` pixels."""
        (h0, w0), (h1, w1) = self.src, self.resized
        x0, y0, cw, ch = self.box
        sx1, sy1 = w1 / w0, h1 / h0
        sx2, sy2 = self.out / cw, self.out / ch
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
def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


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
    the crop by at most half a source pixel from the two-resize geometry of ``apply_to_frames_float``).
    The values differ from ``apply_to_frames_float`` by interpolation rounding and that sub-pixel shift
    (bounds in ``tests/test_video_fast.py`` and the benchmark's report)."""
    x = crop_resize_uint8(frames, plan).contiguous()
    x = x.float().div_(255.0)
    if normalize:
        x = x.sub_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)).div_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
    return x


def apply_to_frames_float(frames: np.ndarray, plan: CropPlan, *, normalize: bool = True) -> torch.Tensor:
    """The previous pipeline, kept as the baseline of the benchmark and the reference of the tests:
    whole frames to float, antialiased resize to ``plan.resized``, crop ``plan.box``, antialiased resize
    to ``out``. Geometry: ``plan.nominal_affine()``. Only for frames of the plan's source size."""
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
        x = _normalize(x)
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

