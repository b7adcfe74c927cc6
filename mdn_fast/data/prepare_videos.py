"""Re-encode a dataset's videos once at a small short side, so that training decodes ~17x fewer pixels.

``prepare_videos(src, dst, short_side=256)`` writes, for every video under ``src`` (recursively), a twin
at the same relative path under ``dst``: H.264 (libx264, 4:2:0 or 4:4:4) whose short side is ``short_side``
(the long side scaled alike; rounded to even for 4:2:0), the same frame count and frame
rate, and a short keyframe interval (``gop``, closed GOPs) so that ``decode_frames`` only decodes the
GOPs that hold the sampled frames. Scaling is FFmpeg's area-averaging scaler on the decoded YUV frames.

``dst/prepared_manifest.json`` records each clip's original size and frame count. Keypoints stay in
original pixels: a dataset reading prepared videos makes its crop plan for the original size and applies
it to the smaller frames with ``CropPlan.for_frames`` (``PreparedVideos.plan_for`` does both), so frames
and keypoints keep the geometry of the original videos.

Resumable: an output whose frame count equals its source's is kept (and its manifest entry rebuilt if the
manifest lost it); a missing, truncated or unreadable one is redone. Outputs are written to a temporary
name and renamed, so an interrupted run never leaves a half-written file under the final name.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

MANIFEST = "prepared_manifest.json"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
DEFAULT_GOP = 8          # sampled frames of a 50-75-frame clip are 6-9 frames apart (8 TSN segments)
DEFAULT_CRF = 18         # visually lossless at this size; the files stay small (~3-6 KB per frame)
# 4:2:0 by default: on the benchmark fixtures 4:4:4 decodes 40% slower (26 vs 18.6 ms for 8 frames of a
# 75-frame clip) for +2.6 dB PSNR against the previous pipeline's output (36.3 vs 33.7 dB; without the
# codec 43.8 vs 35.5 dB: 4:2:0 at 256 px halves the chroma the previous pipeline kept). "yuv444p" also
# allows odd sizes, so its twins are exactly the size the crop plan resizes to.
DEFAULT_PIX_FMT = "yuv420p"


def prepared_size(h: int, w: int, short_side: int, pix_fmt: str = DEFAULT_PIX_FMT) -> tuple[int, int]:
    """``(h, w)`` of the prepared twin of an ``h x w`` video: short side ``short_side``, the other side in
    proportion (rounded as ``make_crop_plan`` rounds it, so the twin has the size the crop plan resizes
    to; rounded to even for ``yuv420p``, which needs it); never larger than the source."""
    if min(h, w) <= short_side:
        return h, w
    if pix_fmt == "yuv420p":
        s = short_side / min(h, w)
        return max(2, int(round(h * s / 2.0)) * 2), max(2, int(round(w * s / 2.0)) * 2)
    from .video import _short_side_size
    return _short_side_size(h, w, short_side)


def _list_videos(src: Path) -> list[Path]:
    return sorted(p.relative_to(src) for p in src.rglob("*")
                  if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and ".partial" not in p.name)


def _probe(path: Path) -> tuple[int, int, int]:
    """``(frames, h, w)`` of a video from its header (frames counted from packets when the header has no
    count); raises on an unreadable file."""
    import av
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        h, w = s.codec_context.height, s.codec_context.width
        n = int(s.frames or 0)
        if n <= 0:
            n = sum(1 for p in c.demux(s) if p.size > 0)
    return n, int(h), int(w)


def _count_packets(path: Path) -> int:
    import av
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sum(1 for p in c.demux(s) if p.size > 0)


def _output_ok(out: Path, frames: int) -> bool:
    """An existing output is kept when it opens and holds ``frames`` frames (packets counted, not the
    header's figure: a truncated mp4 loses its index and fails to open, a cut stream has fewer packets)."""
    if not out.is_file():
        return False
    try:
        return _count_packets(out) == frames
    except Exception:
        return False


def _encode_one(src: Path, out: Path, short_side: int, gop: int, crf: int, preset: str, pix_fmt: str) -> dict:
    """Re-encode one video; returns its manifest entry."""
    import av
    n_src, h0, w0 = _probe(src)
    h1, w1 = prepared_size(h0, w0, short_side, pix_fmt)
    tmp = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with av.open(str(src)) as ic:
        ist = ic.streams.video[0]
        ist.codec_context.thread_count = 1       # the workers are the parallelism
        rate = Fraction(ist.average_rate or ist.guessed_rate or 30)
        tb = 1 / rate
        with av.open(str(tmp), "w", format="mp4") as oc:
            ost = oc.add_stream("libx264", rate=rate)
            ost.width, ost.height, ost.pix_fmt = w1, h1, pix_fmt
            # closed GOPs of `gop` frames (no scene-cut keyframes in between, so the interval is fixed)
            ost.options = {"crf": str(crf), "preset": preset, "g": str(gop), "keyint_min": str(gop),
                           "sc_threshold": "0", "x264-params": "open-gop=0:threads=1"}
            ost.codec_context.thread_count = 1
            ost.codec_context.time_base = tb
            for i, frame in enumerate(ic.decode(ist)):
                small = frame.reformat(width=w1, height=h1, format=pix_fmt, interpolation="AREA")
                small.pts = i
                small.time_base = tb
                for p in ost.encode(small):
                    oc.mux(p)
                written += 1
            for p in ost.encode():
                oc.mux(p)
    if written != n_src:
        # the header's count can overstate; what was decoded is the truth, and the source must agree
        n_src = _count_packets(src)
        if written != n_src:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"{src}: decoded {written} frames but the stream has {n_src} packets")
    os.replace(tmp, out)
    return {"frames": written, "orig_h": h0, "orig_w": w0, "h": h1, "w": w1, "fps": float(rate)}


def _work(args) -> tuple[str, dict | None, str | None, bool]:
    """One video in a worker: ``(relative path, entry, error, skipped)``."""
    rel, src_root, dst_root, short_side, gop, crf, preset, pix_fmt, known = args
    src, out = Path(src_root) / rel, Path(dst_root) / rel
    try:
        n_src, h0, w0 = _probe(src)
        if _output_ok(out, n_src):
            entry = dict(known) if known else None
            if not entry or entry.get("frames") != n_src:
                h1, w1 = _probe(out)[1:]
                entry = {"frames": n_src, "orig_h": h0, "orig_w": w0, "h": h1, "w": w1}
            return rel, entry, None, True
        return rel, _encode_one(src, out, short_side, gop, crf, preset, pix_fmt), None, False
    except Exception as e:  # one bad file must not stop the dataset; reported at the end
        return rel, None, f"{type(e).__name__}: {e}", False


def _write_manifest(dst: Path, meta: dict, videos: dict) -> None:
    tmp = dst / (MANIFEST + ".partial")
    tmp.write_text(json.dumps({**meta, "videos": dict(sorted(videos.items()))}, indent=1))
    os.replace(tmp, dst / MANIFEST)


@dataclass
class PrepareReport:
    encoded: int
    skipped: int
    failed: dict          # relative path -> error
    seconds: float
    manifest: Path


def prepare_videos(src, dst, short_side: int = 256, *, workers: int | None = None, progress: bool = True,
                   gop: int = DEFAULT_GOP, crf: int = DEFAULT_CRF, preset: str = "veryfast",
                   pix_fmt: str = DEFAULT_PIX_FMT) -> PrepareReport:
    """Re-encode every video under ``src`` into ``dst`` (same relative paths) at ``short_side``; see the
    module docstring. ``workers``: processes (default: all cores; 1 runs in this process). Returns counts
    and the failures (relative path -> error); raises only for bad arguments."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"prepare_videos: src {str(src)!r} is not a directory; pass the folder "
                                f"that holds the videos (e.g. MA-52's raw_videos/)")
    if src.resolve() == dst.resolve():
        raise ValueError(f"prepare_videos: dst must differ from src (both {str(src)!r}); the originals "
                         f"are kept")
    if short_side < 16 or short_side % 2:
        raise ValueError(f"prepare_videos: short_side must be an even number >= 16, got {short_side}")
    if pix_fmt not in ("yuv444p", "yuv420p"):
        raise ValueError(f"prepare_videos: pix_fmt must be 'yuv444p' or 'yuv420p', got {pix_fmt!r}")
    if gop < 1:
        raise ValueError(f"prepare_videos: gop must be >= 1, got {gop}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"prepare_videos: workers must be >= 1, got {workers}")
    dst.mkdir(parents=True, exist_ok=True)
    meta = {"version": 1, "short_side": short_side, "gop": gop, "crf": crf, "codec": "libx264", "pix_fmt": pix_fmt,
            "keypoints": "stay in original pixels: map with orig_h/orig_w (PreparedVideos.plan_for)"}
    old = {}
    if (dst / MANIFEST).is_file():
        try:
            prev = json.loads((dst / MANIFEST).read_text())
            was = (prev.get("short_side"), prev.get("pix_fmt", "yuv420p"))
            if was == (short_side, pix_fmt):
                old = prev.get("videos", {})
            elif prev.get("videos"):
                raise ValueError(f"prepare_videos: {dst / MANIFEST} was written for short_side {was[0]}, "
                                 f"pix_fmt {was[1]}, not {short_side}, {pix_fmt}; use another dst")
        except json.JSONDecodeError:
            old = {}
    rels = [str(r) for r in _list_videos(src)]
    jobs = [(r, str(src), str(dst), short_side, gop, crf, preset, pix_fmt, old.get(r)) for r in rels]
    videos = {r: old[r] for r in rels if r in old}
    failed: dict = {}
    encoded = skipped = 0
    t0 = time.perf_counter()
    bar = _progress_bar(len(jobs), progress)
    last_write = time.monotonic()

    def done(res):
        nonlocal encoded, skipped, last_write
        rel, entry, err, was_skipped = res
        if err:
            failed[rel] = err
            videos.pop(rel, None)
        else:
            videos[rel] = entry
            skipped += was_skipped
            encoded += not was_skipped
        bar.update(1)
        if time.monotonic() - last_write > 10:       # an interrupted run keeps most of its entries
            _write_manifest(dst, meta, videos)
            last_write = time.monotonic()

    try:
        if workers == 1 or len(jobs) <= 1:
            for j in jobs:
                done(_work(j))
        else:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as ex:
                for res in ex.map(_work, jobs, chunksize=1):
                    done(res)
    finally:
        bar.close()
        _write_manifest(dst, meta, videos)
    return PrepareReport(encoded, skipped, failed, time.perf_counter() - t0, dst / MANIFEST)


def _progress_bar(total: int, enabled: bool):
    try:
        from tqdm import tqdm
        return tqdm(total=total, disable=not enabled, unit="video", desc="prepare-videos", file=sys.stderr)
    except ImportError:  # tqdm is optional
        class _Null:
            def update(self, k):
                pass

            def close(self):
                pass
        return _Null()


# ----------------------------------------------------------------------------------------------- reading
class PreparedVideos:
    """The manifest of a prepared folder, for datasets: ``PreparedVideos.find(video_dir)`` is None for an
    ordinary folder, so a dataset can call it unconditionally and read prepared videos transparently.

    - ``num_frames(name)``: the frame count (no need to open the file to count);
    - ``original_size(name)``: ``(h, w)`` of the original video, the pixel units of the keypoints;
    - ``plan_for(name, frames, make_plan)``: the crop plan made for the original size and applied to the
      prepared frames (``make_plan(h, w) -> CropPlan``).
    """

    def __init__(self, root):
        self.root = Path(root)
        path = self.root / MANIFEST
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise FileNotFoundError(f"prepared videos: cannot read {path} ({type(e).__name__}: {e}); run "
                                    f"prepare_videos(SRC, {str(self.root)!r}) (mdn-fast prepare-videos) "
                                    f"again") from e
        self.short_side = data.get("short_side")
        self.videos: dict = data.get("videos", {})

    @classmethod
    def find(cls, video_dir) -> "PreparedVideos | None":
        """The manifest of ``video_dir`` or of a parent up to three levels up (a prepared copy of a whole
        dataset root holds one manifest for all its split folders), else None."""
        d = Path(video_dir)
        for root in [d, *list(d.parents)[:3]]:
            if (root / MANIFEST).is_file():
                return _Scoped(cls(root), d.resolve().relative_to(root.resolve()))
        return None

    def entry(self, name: str) -> dict:
        try:
            return self.videos[name]
        except KeyError:
            raise KeyError(f"prepared videos: {name!r} is not in {self.root / MANIFEST} ("
                           f"{len(self.videos)} videos); prepare_videos did not finish or failed on it — "
                           f"run it again (it resumes)") from None

    def num_frames(self, name: str) -> int:
        return int(self.entry(name)["frames"])

    def original_size(self, name: str) -> tuple[int, int]:
        e = self.entry(name)
        return int(e["orig_h"]), int(e["orig_w"])

    def plan_for(self, name: str, frames: np.ndarray, make_plan):
        """``make_plan(orig_h, orig_w).for_frames(frame_h, frame_w)``."""
        h, w = self.original_size(name)
        return make_plan(h, w).for_frames(*frames.shape[1:3])


class _Scoped:
    """A ``PreparedVideos`` seen from a sub-folder (names relative to that folder)."""

    def __init__(self, pv: PreparedVideos, sub: Path):
        self._pv, self._prefix = pv, "" if str(sub) in ("", ".") else sub.as_posix() + "/"
        self.root, self.short_side = pv.root, pv.short_side

    def entry(self, name: str) -> dict:
        return self._pv.entry(self._prefix + str(name))

    num_frames = PreparedVideos.num_frames
    original_size = PreparedVideos.original_size
    plan_for = PreparedVideos.plan_for

    def __repr__(self):
        return f"PreparedVideos({str(self.root)!r}, prefix={self._prefix!r})"


def resolve_prepared(video_dir, prepared=None, root=None) -> tuple[Path, "PreparedVideos | _Scoped | None"]:
    """Where a dataset reads its videos from, and their manifest (None for original videos).

    - ``prepared=None``: ``video_dir`` itself may be a prepared folder (a manifest in it or up to three
      levels above) — so passing a prepared folder as the video folder just works;
    - ``prepared=DIR``: the prepared copy of the dataset: ``DIR / video_dir.relative_to(root)`` (a copy of
      the whole root), ``DIR / video_dir.name`` (a copy of the split folder's parent) or ``DIR`` (a copy of
      the video folder itself), the first that exists and has a manifest.
    """
    video_dir = Path(video_dir)
    if prepared is None:
        return video_dir, PreparedVideos.find(video_dir)
    prepared = Path(prepared)
    cands = []
    if root is not None:
        try:
            cands.append(prepared / video_dir.resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    cands += [prepared / video_dir.name, prepared]
    for c in cands:
        if c.is_dir():
            pv = PreparedVideos.find(c)
            if pv is not None:
                return c, pv
    raise FileNotFoundError(f"prepared videos: none of {[str(c) for c in cands]} is a prepared folder (no "
                            f"{MANIFEST}); make one with prepare_videos({str(video_dir)!r}, {str(prepared)!r}) "
                            f"(mdn-fast prepare-videos)")
