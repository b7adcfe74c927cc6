"""Generated H.264 clips with natural-image-like content, for tests and the input-pipeline benchmark.

Flat or purely synthetic frames (a few solid blocks) cost a decoder almost nothing, so a benchmark on them
says little about real clips. The frames written here have what makes a codec work: multi-scale texture
(smooth gradients plus band-limited noise at several scales), a slow camera pan, textured shapes that
move independently (motion vectors differ across the frame) and mild per-frame sensor noise (residuals
in every block). The default ``real_ma52`` settings follow the MA-52 clips: 1080x1296 portrait, 30 fps,
H.264 (libx264, yuv420p).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: MA-52's clips: (height, width), frame rate, frame counts of the demo clips.
MA52_SIZE = (1296, 1080)
MA52_FPS = 30
MA52_FRAME_COUNTS = (50, 75)


def h264_encoder() -> str:
    """The H.264 encoder of PyAV's bundled FFmpeg (``libx264``); raises when the build has none."""
    import av
    if "libx264" in av.codecs_available:
        return "libx264"
    raise RuntimeError("PyAV's FFmpeg has no libx264 encoder; install a PyAV wheel with libx264 "
                       "(the PyPI wheels bundle it) to generate H.264 fixtures")


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Band-limited noise in [-1, 1]: a ``cells``-wide random grid upsampled bicubically to ``h x w``."""
    import torch
    import torch.nn.functional as F
    gh = max(2, int(round(cells * h / max(h, w))))
    gw = max(2, int(round(cells * w / max(h, w))))
    g = torch.from_numpy(rng.uniform(-1, 1, (1, 3, gh, gw)).astype(np.float32))
    up = F.interpolate(g, size=(h, w), mode="bicubic", align_corners=False)
    return up[0].permute(1, 2, 0).numpy()


class NaturalClip:
    """Frames of one generated clip, ``frame(t) -> uint8 [H, W, 3]`` (cheap per frame: a base texture
    is made once, each frame is a shifted window of it plus shapes and noise)."""

    def __init__(self, height: int, width: int, seed: int = 0, pan: float = 1.5):
        rng = np.random.default_rng(seed)
        self.h, self.w, self.pan = height, width, pan
        self.margin = m = int(np.ceil(pan * 80)) + 8
        H, W = height + 2 * m, width + 2 * m
        yy, xx = np.meshgrid(np.linspace(0, 1, H, dtype=np.float32), np.linspace(0, 1, W, dtype=np.float32),
                             indexing="ij")
        base = np.stack([90 + 80 * xx, 70 + 90 * yy, 120 + 60 * (1 - xx) * yy], -1)
        for cells, amp in ((4, 40), (16, 25), (64, 14), (256, 8)):
            base += amp * _smooth_noise(rng, H, W, cells)
        self.base = np.clip(base, 0, 255).astype(np.uint8)
        # textured moving shapes: (centre, velocity, radii, texture)
        self.shapes = []
        for _ in range(3):
            ry, rx = (rng.uniform(0.08, 0.2) * min(height, width) for _ in range(2))
            ry, rx = int(ry), int(rx)
            tex = 128 + 100 * _smooth_noise(rng, 2 * ry, 2 * rx, 12) + rng.uniform(-60, 60, 3)
            yy, xx = np.mgrid[-ry:ry, -rx:rx]
            mask = ((yy + .5) / ry) ** 2 + ((xx + .5) / rx) ** 2 <= 1
            self.shapes.append(dict(c=rng.uniform([ry, rx], [height - ry, width - rx]),
                                    v=rng.uniform(-4, 4, 2), tex=np.clip(tex, 0, 255).astype(np.uint8),
                                    mask=mask))
        self.noise = rng.integers(-3, 4, (4, height, width, 3), dtype=np.int16)

    def frame(self, t: int) -> np.ndarray:
        m = self.margin
        dy = int(round(m - 8 + self.pan * 40 * np.sin(t / 23.0)))
        dx = int(round(m - 8 + self.pan * 60 * np.sin(t / 31.0 + 1)))
        img = self.base[dy:dy + self.h, dx:dx + self.w].copy()
        for s in self.shapes:
            ry, rx = s["mask"].shape[0] // 2, s["mask"].shape[1] // 2
            c = s["c"] + s["v"] * t
            # bounce inside the frame
            lo, hi = np.array([ry, rx]), np.array([self.h - ry, self.w - rx])
            span = np.maximum(hi - lo, 1)
            p = np.abs((c - lo) % (2 * span) - span)
            cy, cx = (hi - p).astype(int)
            win = img[cy - ry:cy + ry, cx - rx:cx + rx]
            win[s["mask"]] = s["tex"][s["mask"]]
        noisy = img.astype(np.int16) + self.noise[t % len(self.noise)]
        return np.clip(noisy, 0, 255).astype(np.uint8)


def write_video(path, num_frames: int, height: int, width: int, *, fps: int = 30, seed: int = 0,
                gop: int | None = None, crf: int = 23, preset: str = "veryfast", pan: float = 1.5) -> Path:
    """Encode a ``num_frames`` natural-image-like clip to ``path`` (H.264 yuv420p, libx264).

    ``gop``: keyframe interval (None: x264's default, 250, i.e. one keyframe for a short clip, as a
    camera or a default ``ffmpeg`` re-encode writes). ``height``/``width`` must be even (yuv420p).
    """
    import av
    if height % 2 or width % 2:
        raise ValueError(f"height and width must be even for yuv420p H.264, got {height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clip = NaturalClip(height, width, seed=seed, pan=pan)
    with av.open(str(path), "w") as out:
        s = out.add_stream(h264_encoder(), rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        opts = {"crf": str(crf), "preset": preset}
        if gop is not None:
            opts["g"] = str(gop)
            opts["keyint_min"] = str(min(gop, 25))
        s.options = opts
        s.codec_context.thread_count = 1
        for t in range(num_frames):
            for p in s.encode(av.VideoFrame.from_ndarray(clip.frame(t), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def write_square_clip(path, num_frames: int, height: int, width: int, *, x0: int = 40, y0: int = 60,
                      fps: int = 30, crf: int = 12) -> np.ndarray:
    """A dark H.264 clip with a white 12x12 square moving (2, 1) px per frame from centre ``(x0, y0)``;
    returns its centre per frame ``[num_frames, 2]`` in pixel-index units (the square covers pixels
    cx-6 .. cx+5), so tests can check that keypoints follow the frames through crops and resizes."""
    import av
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    centres = []
    with av.open(str(path), "w") as out:
        s = out.add_stream(h264_encoder(), rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"crf": str(crf)}
        for t in range(num_frames):
            img = np.full((height, width, 3), 30, np.uint8)
            cx, cy = x0 + 2 * t, y0 + t
            img[cy - 6:cy + 6, cx - 6:cx + 6] = 255
            centres.append((cx - 0.5, cy - 0.5))
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return np.array(centres, np.float32)
