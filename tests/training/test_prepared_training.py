"""Issue 12 wiring: MA52Dataset on ``decode_sampled`` (the same draws and samples as the previous
count + sample + decode), prepared videos read transparently with keypoints mapped through the ORIGINAL
size (pose pickles whose ``img_shape`` differs from the video included), ``mdn-fast prepare-videos``,
``--prepared-videos`` for train / eval / check-data, and the data-wait line of a training run.

The clips show a white square moving over a dark background, and every keypoint of a frame sits on the
square (given in the pixels of a pose estimate made on a 2x larger copy of the video, as a resized release
would be): the keypoints of a sample must land on the square in the frames of the sample."""
import json
import re

import numpy as np
import pytest
import torch

from mdn_fast.cli import main
from mdn_fast.skeleton.boxes import entity_boxes
from mdn_fast.skeleton.layouts_extra import swap_hand_groups
from mdn_fast.data.ma52 import MA52Dataset, rescale_keypoints
from mdn_fast.data.prepare_videos import MANIFEST, prepare_videos
from mdn_fast.data.video_fixtures import write_square_clip
from mdn_fast.data.video import (IMAGENET_MEAN, IMAGENET_STD, apply_to_frames, apply_to_keypoints, count_frames,
                                 decode_frames, frame_map, make_crop_plan, tsn_sample_indices)
from tests._ma52_release import annotation, write_list, write_pose_pickle

av = pytest.importorskip("av")
if "libx264" not in av.codecs_available:
    pytest.skip("PyAV without libx264", allow_module_level=True)

H, W, N = 96, 128, 12          # original clips; prepared at short side 48 -> 48 x 64
CLIPS = {"train": [("c0001.mp4", 3), ("c0002.mp4", 40), ("c0003.mp4", 12)],
         "val": [("v0001.mp4", 51), ("v0002.mp4", 7)]}
TINY = ["--epochs", "1", "--dim", "16", "--heads", "2", "--backbone", "resnet18", "--image-size", "64",
        "--batch-size", "2", "--no-progress"]


def _square_clip(path, x0, y0):
    """A dark clip with a white 12x12 square moving (2, 1) px per frame; its centre per frame."""
    return write_square_clip(path, N, H, W, x0=x0, y0=y0, crf=10)


def make_square_release(root):
    """MA-52 layout (lists under annotations/, raw_videos/{split}/, pose pickles) whose keypoints sit on
    the square, stored for a 2x larger frame (img_shape = (2H, 2W))."""
    rng = np.random.default_rng(0)
    for split, items in CLIPS.items():
        write_list(root / "annotations" / f"{split}_list_videos.txt", items)
        anns = []
        for k, (name, label) in enumerate(items):
            c = _square_clip(root / "raw_videos" / split / name, 30 + 9 * k, 30 + 5 * k)
            kp = np.zeros((N, 28, 3), np.float32)
            kp[..., :2] = c[:, None, :] + rng.uniform(-2.5, 2.5, (N, 28, 2))   # inside the square
            kp[..., 2] = 0.9
            big = rescale_keypoints(kp, (H, W), (2 * H, 2 * W))               # pose made on a 2x copy
            anns.append(annotation(f"{split}/{name[:-4]}", label, big, img_shape=(2 * H, 2 * W)))
        write_pose_pickle(root / "MA-52_openpose_28kp" / f"MA52_{split}.pkl",
                          {split: [a["frame_dir"] for a in anns]}, anns)
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_square_release(tmp_path_factory.mktemp("square_ma52"))


@pytest.fixture(scope="module")
def prepared(release, tmp_path_factory):
    dst = tmp_path_factory.mktemp("prepared") / "raw_videos"
    rep = prepare_videos(release / "raw_videos", dst, short_side=48, workers=1, progress=False)
    assert rep.failed == {} and rep.encoded == 5
    return dst


def _dataset(release, split="train", train=True, **kw):
    return MA52Dataset(release, split, "rgb+pose", num_segments=4, train=train, short_side=73, crop_size=64, **kw)


def _previous_getitem(ds, i):
    """``MA52Dataset.__getitem__`` as it was before decode_sampled (count, sample, decode; plan for the
    decoded size), for rgb+pose with a pose pickle."""
    name, _ = ds.items[i]
    rng = ds._rng() if ds.train else None
    vpath = ds.video_path(name)
    n = count_frames(vpath)
    idx = tsn_sample_indices(n, ds.num_segments, ds.train, rng)
    frames = decode_frames(vpath, idx)
    h, w = frames.shape[1:3]
    seq, shape = ds.pose.clip(name, ds.split)
    kp = seq[frame_map(seq.shape[0], n, idx)]
    if tuple(shape) != (h, w):
        kp = rescale_keypoints(kp, shape, (h, w))
    if ds.swap_hands:
        kp = swap_hand_groups(kp, ds._layout)
    plan = make_crop_plan(h, w, ds.train, rng, short_side=ds.short_side, out=ds.crop_size)
    return apply_to_frames(frames, plan), apply_to_keypoints(kp, plan)


@pytest.mark.parametrize("train", [True, False])
def test_same_samples_as_before_for_original_videos(release, train):
    ds = _dataset(release, train=train)
    assert ds.prepared is None
    for i in range(len(ds)):
        for seed in (0, 1, 7):
            torch.manual_seed(seed)
            new = ds[i]
            torch.manual_seed(seed)
            frames, kp = _previous_getitem(ds, i)
            assert torch.equal(new["frames"], frames)
            assert np.array_equal(new["keypoints"].numpy(), kp)


def _on_square(sample) -> float:
    """Fraction of the keypoints inside the crop that land on a bright (square) pixel of their frame."""
    img = sample["frames"] * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    kp = sample["keypoints"].numpy()
    hits = total = 0
    S = img.shape[-1]
    for t in range(kp.shape[0]):
        for x, y, c in kp[t]:
            xi, yi = int(round(float(x))), int(round(float(y)))
            if c > 0 and 0 <= xi < S and 0 <= yi < S:
                total += 1
                hits += bool(img[t, :, yi, xi].mean() > 0.6)
    assert total > 0, "no keypoint inside the crop"
    return hits / total


@pytest.mark.parametrize("train", [True, False])
def test_prepared_samples_match_original_ones(release, prepared, train):
    orig = _dataset(release, train=train)
    prep = _dataset(release, train=train, prepared=prepared)
    assert prep.prepared is not None and prep.video_dir == prepared / "train"
    assert prep.original_size("c0001.mp4") == (H, W) and orig.original_size("c0001.mp4") == (H, W)
    for i in range(len(orig)):
        for seed in (0, 3):
            torch.manual_seed(seed)
            a = orig[i]
            torch.manual_seed(seed)
            b = prep[i]
            ka, kb = a["keypoints"].numpy(), b["keypoints"].numpy()
            # the same draws and crop: keypoints within the half source pixel of the crop rounding
            # (prepared frames are 2x smaller: up to 1 px at 64 / (0.66 * 73) output px per original px)
            assert np.abs(ka - kb).max() < 1.5
            ba, _ = entity_boxes(a["keypoints"], "coco18_hands28")
            bb, _ = entity_boxes(b["keypoints"], "coco18_hands28")
            assert (ba - bb).abs().max() < 1.5
            # keypoints on the square, in both
            assert _on_square(a) > 0.9 and _on_square(b) > 0.9
            # frames alike (the prepared ones are re-encoded at half size)
            assert (a["frames"] - b["frames"]).abs().mean() < 0.15


def test_the_square_check_catches_a_wrong_mapping(release, prepared, monkeypatch):
    """Keypoints left in the pose pickle's img_shape pixels (2x the video) land off the square: the check
    of the tests above has teeth."""
    import mdn_fast.data.ma52 as ma52
    ds = _dataset(release, train=False, prepared=prepared)
    good = _on_square(ds[0])
    monkeypatch.setattr(ma52, "rescale_keypoints", lambda kp, src, dst: kp)
    assert good > 0.9 and _on_square(ds[0]) < 0.5


def test_prepared_manifest_missing_entry_is_a_bad_clip(release, prepared, tmp_path):
    import shutil
    copy = tmp_path / "prep"
    shutil.copytree(prepared, copy)
    man = json.loads((copy / MANIFEST).read_text())
    del man["videos"]["train/c0002.mp4"]
    (copy / MANIFEST).write_text(json.dumps(man))
    with pytest.raises(Exception, match="c0002.mp4.*is not in"):
        _dataset(release, prepared=copy)
    ds = _dataset(release, prepared=copy, skip_bad_clips=True)
    assert ds.names() == ["c0001.mp4", "c0003.mp4"]
    # check-data names it too (exit 1)
    assert main(["check-data", "--dataset", "ma52", "--root", str(release), "--prepared-videos", str(copy),
                 "--split", "train", "--no-progress"]) == 1
    assert main(["check-data", "--dataset", "ma52", "--root", str(release), "--prepared-videos", str(prepared),
                 "--split", "train", "--no-progress"]) == 0


def test_a_video_folder_with_a_manifest_is_read_as_prepared(release, prepared):
    ds = MA52Dataset(release, "train", "rgb+pose", num_segments=4, videos=prepared, short_side=73, crop_size=64)
    assert ds.prepared is not None and ds.original_size("c0003.mp4") == (H, W)


_DATA_LINE = re.compile(r"data time \d+\.\d\d s  step time \d+\.\d\d s  \d+% waiting for data  \(\d+ steps?: "
                        r"\d+ ms data \+ \d+ ms step each; first batch \d+\.\d\d s\)")


def test_train_rgb_pose_prints_the_data_wait_line(release, tmp_path, capsys):
    """The issue's 'done when': a training run on a generated MA-52-format folder (RGB+pose)."""
    assert main(["train", "--dataset", "ma52", "--root", str(release), "--modality", "rgb+pose", *TINY,
                 "--workers", "0", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    line = next((ln for ln in out.splitlines() if "data time" in ln), None)
    print(line)
    assert line is not None and _DATA_LINE.search(line), out


def test_train_and_eval_from_prepared_videos(release, prepared, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "ma52", "--root", str(release), "--modality", "rgb+pose", *TINY,
                 "--workers", "1", "--prepared-videos", str(prepared.parent), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert _DATA_LINE.search(out) and "prepare-videos" not in out   # already prepared: not named as a fix
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["train_config"]["prepared_videos"] == str(prepared.parent)
    assert main(["eval", str(run / "checkpoint.pt")]) == 0
    assert "held-out: Top-1" in capsys.readouterr().out


def test_prepared_videos_refused_for_other_datasets(prepared):
    from mdn_fast.training import ConfigError, TrainConfig
    with pytest.raises(ConfigError, match="prepared_videos: --dataset synthetic does not read it"):
        TrainConfig(prepared_videos=str(prepared))


def test_prepare_videos_command(release, tmp_path, capsys):
    src = tmp_path / "src"
    import shutil
    shutil.copytree(release / "raw_videos" / "val", src)
    dst = tmp_path / "dst"
    assert main(["prepare-videos", str(src), str(dst), "--short-side", "48", "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 encoded, 0 already done, 0 failed" in out and f"--prepared-videos {dst}" in out
    assert main(["prepare-videos", str(src), str(dst), "--short-side", "48", "--workers", "1", "--no-progress"]) == 0
    assert "0 encoded, 2 already done" in capsys.readouterr().out
    (src / "broken.mp4").write_bytes(b"\0" * 300)
    assert main(["prepare-videos", str(src), str(dst), "--short-side", "48", "--workers", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "failed: broken.mp4:" in out
    assert main(["prepare-videos", str(tmp_path / "nope"), str(dst), "--no-progress"]) == 1
    assert "mdn-fast prepare-videos: error:" in capsys.readouterr().err


def test_prepared_dataset_pickles(release, prepared):
    """DataLoader workers started by spawn receive the dataset pickled: the manifest travels with it."""
    import pickle
    ds = _dataset(release, train=False, prepared=prepared)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.original_size("c0002.mp4") == (H, W)
    assert torch.equal(copy[1]["frames"], ds[1]["frames"])
