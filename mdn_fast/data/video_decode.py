"""Video decoding with PyAV: only the frames asked for, as uint8 RGB.

``decode_frames`` / ``decode_sampled`` decode only what the requested frames need: for H.264 with
timestamps, GOPs without a requested frame and unrequested non-reference pictures never reach the
decoder, and only the requested frames are converted to RGB. Other streams (or when that fails) are
decoded in order up to the last requested frame (``_decode_sequential``, also what ``sequential=True``
forces). ``open_video`` / ``video_stream`` / ``video_info`` are the container helpers the data check and
the dataset share. PyAV is imported when a file is opened: importing this module needs no PyAV.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .video_reformat import frame_to_rgb24
from .video_sampling import tsn_sample_indices


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



def open_video(path):
    """The PyAV container of ``path``; ``VideoReadError`` naming the file when it is missing or unreadable."""
    import av  # imported lazily: the package must import without PyAV
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"video file {str(path)!r} does not exist")
    try:
        return av.open(str(path))
    except Exception as e:  # PyAV raises several error types (InvalidDataError, OSError, ...)
        raise VideoReadError(f"video file {str(path)!r}: cannot open with PyAV ({type(e).__name__}: {e})") from e


def video_stream(container, path):
    """The first video stream of ``container``; ``VideoReadError`` naming ``path`` when there is none."""
    if not container.streams.video:
        raise VideoReadError(f"video file {str(path)!r}: no video stream")
    return container.streams.video[0]


def count_frames(path) -> int:
    """Number of video frames: the container's count when it has one, else counted from the packets."""
    with open_video(path) as container:
        stream = video_stream(container, path)
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        # No count in the header (e.g. some avi/webm): count packets that carry data (no decoding).
        return sum(1 for p in container.demux(stream) if p.size > 0)


def video_frame_size(path) -> tuple[int, int]:
    """``(height, width)`` of the frames, from the stream header (nothing decoded)."""
    with open_video(path) as container:
        ctx = video_stream(container, path).codec_context
        if ctx.height > 0 and ctx.width > 0:
            return int(ctx.height), int(ctx.width)
    return tuple(decode_frames(path, [0]).shape[1:3])


def _resolve_threads(threads: int | None) -> int:
    """Threads for decoding and RGB conversion. ``None``: 1 inside a DataLoader worker (the workers are the
    parallelism; threaded decoding per worker only oversubscribes the cores), else 0 (FFmpeg's automatic
    threading). An int forces that many (1 = single-threaded, what per-core throughput measures)."""
    if threads is None:
        import torch.utils.data
        threads = 1 if torch.utils.data.get_worker_info() is not None else 0
    return int(threads)


def _decode_threads(stream, threads: int) -> None:
    """Set ``stream``'s decoder to ``threads`` (from ``_resolve_threads``)."""
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
    threads = _resolve_threads(threads)
    try:
        if not sequential:
            with open_video(path) as container:
                stream = video_stream(container, path)
                _decode_threads(stream, threads)
                res = _decode_selected(container, stream, choose)
        if res is None:   # not H.264 / no timestamps: decode in order (a fresh open: not every input seeks)
            with open_video(path) as container:
                stream = video_stream(container, path)
                n = int(stream.frames or 0)
            if n <= 0:
                n = count_frames(path)
            idx = _check_indices(choose(max(n, 1)))
            with open_video(path) as container:
                stream = video_stream(container, path)
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
    arrays = {i: frame_to_rgb24(f, threads) for i, f in got.items()}   # fork-safe: see video_reformat
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
    (container frame counts can overstate) gets the last frame. ``threads``: see ``_resolve_threads``.
    """
    idx = _check_indices(indices)
    return _decode(path, lambda n: idx, threads, sequential)[0]


def decode_sampled(path, num_segments: int, train: bool, rng: np.random.Generator | None = None, *,
                   threads: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """``count_frames`` + ``tsn_sample_indices`` + ``decode_frames`` with one open of the file:
    ``(frames uint8 [num_segments, H, W, 3], indices, frame count)``."""
    return _decode(path, lambda n: tsn_sample_indices(n, num_segments, train, rng), threads, False)



def video_info(path) -> tuple[int, int, int, float | None]:
    """``(frames, width, height, fps)`` of a video, read from the container, decoding one frame (so a file
    that opens but does not decode is found: what ``check-data`` opens every video for)."""
    with open_video(path) as c:
        st = video_stream(c, path)
        n = int(st.frames or 0)
        w, h = st.codec_context.width, st.codec_context.height
        fps = float(st.average_rate) if st.average_rate else None
        try:
            first = next(c.decode(st), None)
        except Exception as e:
            raise VideoReadError(f"video file {str(path)!r}: decoding failed ({type(e).__name__}: {e})") from e
        if first is None:
            raise VideoReadError(f"video file {str(path)!r}: no frame could be decoded")
    if n <= 0:   # no count in the header: count packets as the reader does
        n = count_frames(path)
    return n, w, h, fps
