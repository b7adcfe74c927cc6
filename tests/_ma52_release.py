"""Write a tiny MA-52 release as it is downloaded (facts.md): lists in ``annotations/`` (CRLF, last line
without newline), ``label_name.txt``, ``MA-52_openpose_28kp/MA52_{split}.pkl`` pyskl pickles whose
``frame_dir`` carries the split prefix and no extension, and optionally ``raw_videos/{split}/*.mp4``.

Keypoints follow the public 28-keypoint configuration: points 18-22 sit around the LEFT wrist (COCO-18
joint 7), 23-27 around the right wrist (joint 4)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

W, H, N_FRAMES = 64, 48, 12
CLIPS = {"train": [("0003_01_0001.mp4", 3), ("0003_01_0002.mp4", 40), ("0004_02_0001.mp4", 12)],
         "val": [("0005_01_0001.mp4", 51), ("0005_01_0002.mp4", 7)],
         "test": [("test0000.mp4", 0), ("test0001.mp4", 0)]}


def person(rng, n=N_FRAMES, swap_hands=False):
    """``[n, 28, 3]``: a plausible upper body, fingertips around their wrist (the other one if swap)."""
    kp = np.zeros((n, 28, 3), np.float32)
    kp[..., 0] = rng.uniform(5, W - 5, (n, 28))
    kp[..., 1] = rng.uniform(5, H - 5, (n, 28))
    kp[..., 2] = rng.uniform(0.4, 1.0, (n, 28))
    kp[:, 4, :2] = (12, 30)          # right wrist (subject's right: image left when facing the camera)
    kp[:, 7, :2] = (52, 30)          # left wrist
    left, right = (kp[:, 4:5, :2], kp[:, 7:8, :2]) if swap_hands else (kp[:, 7:8, :2], kp[:, 4:5, :2])
    kp[:, 18:23, :2] = left + rng.normal(0, 2, (n, 5, 2))
    kp[:, 23:28, :2] = right + rng.normal(0, 2, (n, 5, 2))
    return kp


def annotation(frame_dir, label, kp, img_shape=(H, W)):
    """A pyskl annotation dict from ``[T, J, 3]`` (one person) or ``[M, T, J, 3]`` keypoints."""
    kp = kp if kp.ndim == 4 else kp[None]
    return dict(frame_dir=frame_dir, label=label, img_shape=img_shape, original_shape=img_shape,
                total_frames=kp.shape[1], keypoint=np.ascontiguousarray(kp[..., :2]),
                keypoint_score=np.ascontiguousarray(kp[..., 2]))


def write_list(path: Path, items, crlf=True):
    sep = "\r\n" if crlf else "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sep.join(f"{n} {l}" for n, l in items).encode())   # no final newline


def write_pose_pickle(path: Path, split_names: dict, anns: list):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"split": split_names, "annotations": anns}, f)


def write_clip(path: Path, n=N_FRAMES):
    import av
    codec = next((c for c in ("libx264", "mpeg4") if c in av.codecs_available), None)
    if codec is None:
        import pytest
        pytest.skip("no H.264/MPEG-4 encoder in this PyAV build")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for t in range(n):
            img = np.full((H, W, 3), 10 * t, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def make_release(root, *, videos=False, flat_videos=False, prefix=True, swap_hands=False, seed=0,
                 clips=CLIPS) -> Path:
    """The release under ``root``; returns ``root``. ``prefix``: frame_dir ``"train/0003_01_0001"``
    (else ``"0003_01_0001"``); ``flat_videos``: all clips directly in ``raw_videos/``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, items in clips.items():
        write_list(root / "annotations" / f"{split}_list_videos.txt", items)
        anns = []
        for name, label in items:
            stem = name[:-4]
            anns.append(annotation(f"{split}/{stem}" if prefix else stem, label, person(rng, swap_hands=swap_hands)))
            if videos:
                write_clip(root / "raw_videos" / ("" if flat_videos else split) / name)
        write_pose_pickle(root / "MA-52_openpose_28kp" / f"MA52_{split}.pkl",
                          {split: [a["frame_dir"] for a in anns]}, anns)
    (root / "label_name.txt").write_bytes("\r\n".join(f"{i}\taction {i}" for i in range(52)).encode())
    return root
