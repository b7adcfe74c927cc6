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
manifest lost it); a missing, truncated or unreadable one is redone. Outputs are written under a short
unique temporary name in a hidden folder of ``dst`` (``TMP_DIR``; never a name a video could have, and
never too long) and renamed, so an interrupted run never leaves a half-written file under the final name.

Every video under ``src`` is converted or named as failed: the scan follows symlinked folders (a link
back into a folder it is inside of, a loop, is reported and not followed), takes every name (hidden
files and names like ``x.partial.mp4`` too), and leaves out ``dst`` when it lies inside ``src`` (its
outputs are not sources). The options are checked before any work, each with its range; so is PyAV
(the ``[video]`` extra), once.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .video_reformat import reformat_frame

MANIFEST = "prepared_manifest.json"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
DEFAULT_GOP = 8          # sampled frames of a 50-75-frame clip are 6-9 frames apart (8 TSN segments)
DEFAULT_CRF = 18         # visually lossless at this size; the files stay small (~3-6 KB per frame)
# 4:2:0 by default: on the benchmark fixtures 4:4:4 decodes 40% slower (26 vs 18.6 ms for 8 frames of a
# 75-frame clip) for +2.6 dB PSNR against the previous pipeline's output (36.3 vs 33.7 dB; without the
# codec 43.8 vs 35.5 dB: 4:2:0 at 256 px halves the chroma the previous pipeline kept). "yuv444p" also
# allows odd sizes, so its twins are exactly the size the crop plan resizes to.
DEFAULT_PIX_FMT = "yuv420p"
#: x264's presets (``preset``) and its 8-bit quality scale (``crf``: 0 = lossless .. 51 = worst).
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
           "placebo")
CRF_RANGE = (0, 51)
#: Hidden folder of ``dst`` holding the outputs being written (renamed into place when complete).
TMP_DIR = ".prepare-videos-tmp"
log = logging.getLogger(__name__)


def prepared_size(h: int, w: int, short_side: int, pix_fmt: str = DEFAULT_PIX_FMT) -> tuple[int, int]:
    """``(h, w)`` of the prepared twin of an ``h x w`` video: short side ``short_side``, the other side in
    proportion (rounded as ``make_crop_plan`` rounds it, so the twin has the size the crop plan resizes
    to; rounded to even for ``yuv420p``, which needs it); never larger than the source."""
    if min(h, w) <= short_side:
        return h, w
    if pix_fmt == "yuv420p":
        s = short_side / min(h, w)
        return max(2, int(round(h * s / 2.0)) * 2), max(2, int(round(w * s / 2.0)) * 2)
    from .video_transforms import short_side_size
    return short_side_size(h, w, short_side)


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _list_videos(src: Path, dst: Path | None = None) -> tuple[list[str], list[str]]:
    """``(relative paths of the videos under src, notes)``, sorted. Symlinked folders are followed (the
    relative path is the one through the link, as a dataset looks the clip up); a folder that is one of
    its own ancestors (a symlink loop) is not entered again and noted; ``dst`` and everything in it (its
    real path, however reached) is left out. A symlink to a missing file with a video extension is
    listed (it then fails, named)."""
    dst_real = os.path.realpath(dst) if dst is not None else None
    out, notes = [], []
    st = os.stat(src)
    stack = [(str(src), "", frozenset({(st.st_dev, st.st_ino)}))]
    while stack:
        folder, rel, ancestors = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            notes.append(f"{rel or '.'}: folder not readable ({type(e).__name__}: {e}); its videos were not converted")
            continue
        subdirs = []
        for e in entries:
            r = rel + e.name
            try:
                is_dir = e.is_dir()                          # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                real = os.path.realpath(e.path)
                if dst_real is not None and _is_within(real, dst_real):
                    if e.is_symlink() or real != dst_real:
                        notes.append(f"{r}: leads into dst ({real}); left out (outputs are not sources)")
                    continue
                try:
                    s = os.stat(e.path)
                except OSError:
                    continue
                key = (s.st_dev, s.st_ino)
                if key in ancestors:
                    notes.append(f"{r}: symlink loop (leads back to {real}, a folder it is inside of); not followed "
                                 f"again")
                    continue
                subdirs.append((e.path, r + "/", ancestors | {key}))
            elif os.path.splitext(e.name)[1].lower() in VIDEO_EXTENSIONS:
                try:
                    ok = e.is_file() or e.is_symlink()               # a dangling link: listed, fails named
                except OSError:
                    ok = False
                if ok:
                    out.append(r)
        stack.extend(reversed(subdirs))
    return sorted(out), notes


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


def _temp_file(tmp_dir: Path, suffix: str = ".mp4") -> Path:
    """A new empty file with a short unique name in ``tmp_dir`` (created if needed)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=suffix, dir=tmp_dir)
    os.close(fd)
    return Path(name)


def _encode_one(src: Path, out: Path, short_side: int, gop: int, crf: int, preset: str, pix_fmt: str,
                tmp_dir: Path) -> dict:
    """Re-encode one video (written in ``tmp_dir``, renamed to ``out`` when complete); returns its
    manifest entry."""
    n_src, h0, w0 = _probe(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(tmp_dir)
    try:
        entry = _encode_to(src, tmp, n_src, h0, w0, short_side, gop, crf, preset, pix_fmt)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return entry


def _encode_to(src: Path, tmp: Path, n_src: int, h0: int, w0: int, short_side: int, gop: int, crf: int,
               preset: str, pix_fmt: str) -> dict:
    import av
    h1, w1 = prepared_size(h0, w0, short_side, pix_fmt)
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
                small = reformat_frame(frame, width=w1, height=h1, format=pix_fmt, interpolation="AREA")
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
            raise RuntimeError(f"{src}: decoded {written} frames but the stream has {n_src} packets")
    return {"frames": written, "orig_h": h0, "orig_w": w0, "h": h1, "w": w1, "fps": float(rate)}


def _work(args) -> tuple[str, dict | None, str | None, bool]:
    """One video in a worker: ``(relative path, entry, error, skipped)``."""
    rel, src_root, dst_root, short_side, gop, crf, preset, pix_fmt, known, tmp_dir = args
    src, out = Path(src_root) / rel, Path(dst_root) / rel
    try:
        n_src, h0, w0 = _probe(src)
        if _output_ok(out, n_src):
            entry = dict(known) if known else None
            if not entry or entry.get("frames") != n_src:
                h1, w1 = _probe(out)[1:]
                entry = {"frames": n_src, "orig_h": h0, "orig_w": w0, "h": h1, "w": w1}
            return rel, entry, None, True
        return rel, _encode_one(src, out, short_side, gop, crf, preset, pix_fmt, Path(tmp_dir)), None, False
    except Exception as e:  # one bad file must not stop the dataset; reported at the end
        return rel, None, f"{type(e).__name__}: {e}", False


def _write_manifest(dst: Path, meta: dict, videos: dict, tmp_dir: Path) -> None:
    tmp = _temp_file(tmp_dir, ".json")
    try:
        tmp.write_text(json.dumps({**meta, "videos": dict(sorted(videos.items()))}, indent=1))
        os.replace(tmp, dst / MANIFEST)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class PrepareReport:
    encoded: int
    skipped: int
    failed: dict          # relative path -> error
    seconds: float
    manifest: Path
    notes: list = field(default_factory=list)   # folders not scanned (symlink loops, links into dst), logged


def _int_option(name: str, flag: str, value, lo: int, hi: int | None = None, even: bool = False) -> int:
    """``value`` checked to be an integer in ``lo..hi`` (even if asked), else a one-line ValueError naming
    the argument and its command-line flag."""
    rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if not ok or value < lo or (hi is not None and value > hi) or (even and value % 2):
        raise ValueError(f"prepare_videos: {name} ({flag}) must be {'an even' if even else 'an'} integer {rng}, "
                         f"got {value!r}")
    return int(value)


def _check_options(short_side, gop, crf, preset, pix_fmt, workers) -> tuple:
    """Every option checked before any work (each message names the option and its range)."""
    short_side = _int_option("short_side", "--short-side", short_side, 16, even=True)
    gop = _int_option("gop", "--gop", gop, 1)
    lo, hi = CRF_RANGE
    if isinstance(crf, bool) or not isinstance(crf, (int, float, np.integer, np.floating)) or not lo <= crf <= hi:
        raise ValueError(f"prepare_videos: crf (--crf) must be a number in {lo}..{hi} (x264's quality scale: "
                         f"0 lossless, {DEFAULT_CRF} default, {hi} worst), got {crf!r}")
    if preset not in PRESETS:
        raise ValueError(f"prepare_videos: preset must be one of x264's presets {PRESETS}, got {preset!r}")
    if pix_fmt not in ("yuv444p", "yuv420p"):
        raise ValueError(f"prepare_videos: pix_fmt (--pix-fmt) must be 'yuv444p' or 'yuv420p', got {pix_fmt!r}")
    workers = (os.cpu_count() or 1) if workers is None else _int_option("workers", "--workers", workers, 1)
    return short_side, gop, crf, workers


def _require_encoder() -> None:
    """PyAV with libx264, checked once before any file (not one failure per video)."""
    try:
        import av
    except ImportError:
        from ..training.extras import require_extra
        require_extra("video", "prepare-videos decodes and re-encodes the videos with it")
        raise
    if "libx264" not in av.codecs_available:
        from ..training.extras import MissingExtraError
        raise MissingExtraError("prepare_videos: this PyAV build has no libx264 encoder; install a PyAV wheel "
                                "that bundles it (pip install --force-reinstall av: the PyPI wheels do)")


def _tmp_dir_name(rels) -> str:
    """``TMP_DIR``, or a variant no source path starts with (its outputs must not land in it)."""
    tops = {r.split("/", 1)[0] for r in rels if "/" in r}
    name, k = TMP_DIR, 0
    while name in tops:
        k += 1
        name = f"{TMP_DIR}-{k}"
    return name


def prepare_videos(src, dst, short_side: int = 256, *, workers: int | None = None, progress: bool = True,
                   gop: int = DEFAULT_GOP, crf: int = DEFAULT_CRF, preset: str = "veryfast",
                   pix_fmt: str = DEFAULT_PIX_FMT) -> PrepareReport:
    """Re-encode every video under ``src`` into ``dst`` (same relative paths) at ``short_side``; see the
    module docstring. ``workers``: processes (default: all cores; 1 runs in this process). Returns counts
    and the failures (relative path -> error); raises only for bad arguments (each named, with its range),
    a missing PyAV / libx264, or a ``dst`` that would mix outputs with sources."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"prepare_videos: src {str(src)!r} is not a directory; pass the folder "
                                f"that holds the videos (e.g. MA-52's raw_videos/)")
    if src.resolve() == dst.resolve():
        raise ValueError(f"prepare_videos: dst must differ from src (both {str(src)!r}); the originals "
                         f"are kept")
    if _is_within(str(src.resolve()), str(dst.resolve())):
        raise ValueError(f"prepare_videos: dst {str(dst)!r} holds src {str(src)!r}: the outputs would mix with "
                         f"the sources; choose a dst outside src's tree (e.g. a sibling folder)")
    short_side, gop, crf, workers = _check_options(short_side, gop, crf, preset, pix_fmt, workers)
    _require_encoder()
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
    rels, notes = _list_videos(src, dst)       # dst inside src: left out (its outputs are not sources)
    for n in notes:
        log.warning("prepare-videos: %s", n)
    tmp_dir = dst / _tmp_dir_name(rels)
    if tmp_dir.is_dir():                       # what an interrupted run was writing: never an output
        shutil.rmtree(tmp_dir, ignore_errors=True)
    jobs = [(r, str(src), str(dst), short_side, gop, crf, preset, pix_fmt, old.get(r), str(tmp_dir)) for r in rels]
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
            _write_manifest(dst, meta, videos, tmp_dir)
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
        _write_manifest(dst, meta, videos, tmp_dir)
        try:
            tmp_dir.rmdir()
        except OSError:
            pass
    return PrepareReport(encoded, skipped, failed, time.perf_counter() - t0, dst / MANIFEST, notes)


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
