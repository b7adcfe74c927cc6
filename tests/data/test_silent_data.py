"""Nothing silent, nothing lost (issue 20, the data items): each class of bad input gives a correct result
or one refusal naming the argument, the file (and line) or the clip, and the fix — in the dataset
readers, ``check-data`` (the same rules) and training, and in ``prepare-videos``. Every input is written
here in the release formats (tests/_ma52_release.py: MA-52 lists, label_name.txt, pyskl pose pickles,
H.264 clips; the iMiGUE challenge's ``{split}_data.npy`` + ``{split}_label.pkl``).

- 4: ``prepare-videos`` converts every video under SRC or names it as failed: symlinked folders (loops
  reported), names with ``.partial``, 255-byte names, DST inside SRC (never re-encoded as a source), the
  options checked up front with their ranges, PyAV checked once.
- 5: iMiGUE labels that are not integers (1.7, True, "3") are refused, naming the file.
- 7: a train-list label of -1, pose entries with an absurd ``total_frames``, a bad ``img_shape``,
  non-numeric ``keypoint_score``: reported by check-data (file, line, clip) and refused by the dataset
  before training starts; an undecodable video stops training with one line naming the clip.
- 9: the restricted unpickler bounds what a pickle may expand to (shared references), fast, and says how
  to raise the limit; real-format pickles still load.
- 10: a list or label file with non-UTF-8 bytes is reported with its file and line, and check-data goes
  on checking the rest.
"""
import os
import pickle
import re
import sys
import time

import numpy as np
import pytest

from mdn_fast.cli import main
from mdn_fast.data import safe_pickle
from mdn_fast.data.check import ERROR, check_dataset
from mdn_fast.data.imigue import IMiGUEDataset, IMiGUEFormatError, read_labels
from mdn_fast.data.ma52 import AnnotationError, MA52Dataset, read_label_names, read_list

from tests._ma52_release import CLIPS, N_FRAMES, annotation, make_release, person, write_pose_pickle

TRAIN = CLIPS["train"]      # 0003_01_0001.mp4 3, 0003_01_0002.mp4 40, 0004_02_0001.mp4 12
TINY = ["--epochs", "1", "--dim", "16", "--heads", "2", "--no-progress", "--batch-size", "2"]


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mdn-fast {command}: error: ") and "Traceback" not in err and "\n" not in err, err
    return err


# ------------------------------------------------------------------------------ 7: labels of a train list
@pytest.mark.parametrize("line, found", [(b"0003_01_0002.mp4 -1", "found -1 (-1 means hidden"),
                                         (b"0003_01_0002.mp4", "found no label")])
def test_train_label_minus_one_refused_everywhere(tmp_path, capsys, line, found):
    root = make_release(tmp_path, clips={"train": TRAIN, "val": CLIPS["val"]})
    lst = root / "annotations" / "train_list_videos.txt"
    lst.write_bytes(b"0003_01_0001.mp4 3\r\n" + line + b"\r\n0004_02_0001.mp4 12")
    rep = check_dataset("ma52", root, splits=("train",), modality="pose", progress=False)
    assert [(p.file, p.line, p.clip) for p in rep.errors] == [(str(lst), 2, "0003_01_0002.mp4")]
    assert found in rep.errors[0].message and not rep.ok
    with pytest.raises(AnnotationError, match=rf"train_list_videos\.txt, line 2: .*{re.escape(found)}"):
        MA52Dataset(root, "train", "pose")
    # training refuses before its first step, in one line (was: IndexError: Target -1 is out of bounds)
    assert main(["train", "--dataset", "ma52", "--root", str(root), "--modality", "pose", "--workers", "0",
                 *TINY, "--out", str(tmp_path / "run")]) == 1
    err = _one_line_error(capsys, "train")
    assert "train_list_videos.txt, line 2" in err and found in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_hidden_labels_still_read_in_test_split(tmp_path):
    root = make_release(tmp_path, clips={"test": CLIPS["test"]})
    (root / "annotations" / "test_list_videos.txt").write_bytes(b"test0000.mp4 -1\r\ntest0001.mp4")
    assert check_dataset("ma52", root, splits=("test",), modality="pose", progress=False).ok
    ds = MA52Dataset(root, "test", "pose")
    assert [ds[i]["label"] for i in range(2)] == [-1, -1]
    assert read_list(root / "annotations" / "test_list_videos.txt") == [("test0000.mp4", -1), ("test0001.mp4", -1)]


# ------------------------------------------------------------------------------ 7: pose entries
def _set(**kw):
    return lambda a: a.update(kw)


def _empty(total_frames):
    def f(a):
        a["keypoint"] = np.zeros((0, 0, 28, 2), np.float32)
        a["keypoint_score"] = np.zeros((0, 0, 28), np.float32)
        a["total_frames"] = total_frames
    return f


def _score_dicts(a):
    m, t, j = a["keypoint_score"].shape
    a["keypoint_score"] = np.array([[[{"s": 1.0}] * j] * t] * m, dtype=object)


BAD_ENTRIES = {
    "total_frames 1e12, no frames": (_empty(10 ** 12), "'total_frames' is 1000000000000, expected a frame count in 1..100,000"),
    "total_frames 1e12, 12 frames": (_set(total_frames=10 ** 12), "'total_frames' is 1000000000000 but 'keypoint' holds 12 frames"),
    "total_frames 7, 12 frames": (_set(total_frames=7), "'total_frames' is 7 but 'keypoint' holds 12 frames"),
    "total_frames -3": (_set(total_frames=-3), "'total_frames' must be a non-negative integer"),
    "total_frames '12'": (_set(total_frames="12"), "'total_frames' must be a non-negative integer"),
    "img_shape (0, 0)": (_set(img_shape=(0, 0)), "'img_shape' must be (height, width), two integers in 1..65536"),
    "img_shape negative": (_set(img_shape=(-48, 64)), "found (-48, 64)"),
    "img_shape strings": (_set(img_shape=("48", "64")), "found ('48', '64')"),
    "img_shape 1.5": (_set(img_shape=(48.5, 64)), "found (48.5, 64)"),
    "img_shape one int": (_set(img_shape=48), "found 48"),
    "keypoint_score strings": (lambda a: a.update(keypoint_score=np.full(a["keypoint_score"].shape, "0.9")),
                               "'keypoint_score' holds an array of dtype <U3, expected numbers"),
    "keypoint_score dict": (_set(keypoint_score={"score": 1.0}), "'keypoint_score' holds a dict, expected numbers"),
    "keypoint_score dicts inside": (_score_dicts, "'keypoint_score' holds an array of dict values"),
    "keypoint_score list of str": (lambda a: a.update(keypoint_score=a["keypoint_score"].astype(str).tolist()),
                                   "'keypoint_score' holds a list of str_ values"),
}


def _release_with_entry(tmp_path, mutate):
    """The train split of a release whose second clip's pose entry is changed by ``mutate``."""
    root = make_release(tmp_path, clips={"train": TRAIN})
    rng = np.random.default_rng(1)
    anns = [annotation(f"train/{n[:-4]}", label, person(rng)) for n, label in TRAIN]
    mutate(anns[1])
    write_pose_pickle(root / "MA-52_openpose_28kp" / "MA52_train.pkl", {}, anns)
    return root


@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_bad_pose_entry_reported_and_refused(tmp_path, case):
    mutate, message = BAD_ENTRIES[case]
    root = _release_with_entry(tmp_path, mutate)
    rep = check_dataset("ma52", root, splits=("train",), modality="pose", progress=False)
    lst = str(root / "annotations" / "train_list_videos.txt")
    assert [(p.severity, p.file, p.line, p.clip) for p in rep.errors] == [(ERROR, lst, 2, "0003_01_0002.mp4")]
    msg = rep.errors[0].message
    assert "MA52_train.pkl: annotation 1 (frame_dir 'train/0003_01_0002')" in msg and message in msg, msg
    assert "\n" not in msg
    # the dataset applies the same rule when it is built (not at the first batch, not as a MemoryError)
    with pytest.raises(AnnotationError, match=r"1 of 3 listed clips cannot be used; first: line 2, clip "
                                              r"'0003_01_0002\.mp4': .*MA52_train\.pkl: annotation 1") as e:
        MA52Dataset(root, "train", "pose")
    assert message in str(e.value)
    ds = MA52Dataset(root, "train", "pose", skip_bad_clips=True)
    assert ds.names() == ["0003_01_0001.mp4", "0004_02_0001.mp4"]
    assert [ds[i]["keypoints"].shape for i in range(2)] == [(8, 28, 3)] * 2


def test_good_pose_entries_still_read(tmp_path):
    """What the rules accept: numpy ints in img_shape/total_frames, integral floats, int scores, a clip
    without detections with total_frames in range, no total_frames at all."""
    def mutate_all(anns):
        anns[0].update(img_shape=(np.int64(48), np.int64(64)), total_frames=np.int32(N_FRAMES))
        anns[1].update(img_shape=[48.0, 64.0], keypoint_score=np.ones(anns[1]["keypoint_score"].shape, np.uint8))
        del anns[1]["total_frames"]
        _empty(30)(anns[2])
    root = make_release(tmp_path, clips={"train": TRAIN})
    rng = np.random.default_rng(1)
    anns = [annotation(f"train/{n[:-4]}", label, person(rng)) for n, label in TRAIN]
    mutate_all(anns)
    write_pose_pickle(root / "MA-52_openpose_28kp" / "MA52_train.pkl", {}, anns)
    rep = check_dataset("ma52", root, splits=("train",), modality="pose", progress=False)
    assert rep.ok, rep.format()
    ds = MA52Dataset(root, "train", "pose", train=False)
    assert [tuple(ds[i]["keypoints"].shape) for i in range(3)] == [(8, 28, 3)] * 3
    assert float(ds[2]["keypoints"].abs().sum()) == 0.0          # no detections: every joint missing


def test_check_data_cli_reports_bad_entry(tmp_path, capsys):
    root = _release_with_entry(tmp_path, _empty(10 ** 12))
    t0 = time.perf_counter()
    assert main(["check-data", "--dataset", "ma52", "--root", str(root), "--modality", "pose", "--split", "train",
                 "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert time.perf_counter() - t0 < 30
    assert "train_list_videos.txt, line 2 [0003_01_0002.mp4]" in out and "1..100,000" in out and "NOT OK" in out


# ------------------------------------------------------------------------------ 7: undecodable video
@pytest.fixture(scope="module")
def broken_video_release(tmp_path_factory):
    pytest.importorskip("av")
    root = make_release(tmp_path_factory.mktemp("broken_video"), videos=True, clips={"train": TRAIN,
                                                                                    "val": CLIPS["val"]})
    for name, _ in TRAIN:                                      # every train clip unreadable: the first batch meets one
        p = root / "raw_videos" / "train" / name
        p.write_bytes(p.read_bytes()[:600])
    return root


def test_undecodable_video_names_the_clip(broken_video_release):
    from mdn_fast.data.video import ClipReadError, VideoReadError
    ds = MA52Dataset(broken_video_release, "train", "rgb")
    with pytest.raises(ClipReadError, match=r"train_list_videos\.txt, line 1: clip '0003_01_0001\.mp4': video file "
                                            r"'.*raw_videos/train/0003_01_0001\.mp4': .*--skip-bad-clips") as e:
        ds[0]
    assert isinstance(e.value, ValueError) and isinstance(e.value, VideoReadError)
    # out of a DataLoader worker: still the one line (torch re-raises it with the worker's traceback)
    import torch
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=1)
    with pytest.raises(ClipReadError) as e:
        next(iter(loader))
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg and msg.startswith(str(ds.list_file) + ", line 1: clip ")
    assert msg.endswith("(in DataLoader worker process 0)")


@pytest.mark.parametrize("workers", ["0", "1"])
def test_undecodable_video_stops_training_in_one_line(broken_video_release, tmp_path, capsys, workers):
    assert main(["train", "--dataset", "ma52", "--root", str(broken_video_release), "--modality", "rgb",
                 "--backbone", "resnet18", "--image-size", "32", "--workers", workers, *TINY,
                 "--out", str(tmp_path / "run")]) == 1
    err = _one_line_error(capsys, "train")
    assert "train_list_videos.txt, line " in err and "raw_videos/train/" in err and "--skip-bad-clips" in err


# ------------------------------------------------------------------------------ 5: iMiGUE labels
def _imigue(root, labels, split="train"):
    np.save(root / f"{split}_data.npy", np.ones((len(labels), 3, 90, 22, 1), np.float32))
    with open(root / f"{split}_label.pkl", "wb") as f:
        pickle.dump(([f"clip_{k}" for k in range(len(labels))], labels), f)
    return root / f"{split}_label.pkl"


@pytest.mark.parametrize("bad", [1.7, True, "3", np.float64(2.5), None, np.bool_(True), float("nan")])
def test_imigue_non_integer_labels_refused(tmp_path, bad):
    path = _imigue(tmp_path, [4, bad, 5])
    with pytest.raises(IMiGUEFormatError, match=rf"{path.name}: labels must be integers: sample 1 \('clip_1'\) "
                                                r"has label .*expected a class id 0\.\.31"):
        read_labels(path)
    with pytest.raises(IMiGUEFormatError, match="labels must be integers"):
        IMiGUEDataset(tmp_path, "train")
    rep = check_dataset("imigue", tmp_path, progress=False)
    assert not rep.ok and any(str(path) in p.message and "labels must be integers" in p.message for p in rep.errors)


def test_imigue_integer_labels_and_hidden(tmp_path):
    path = _imigue(tmp_path, [np.int64(4), 31, 2.0])            # integral values are integers
    assert read_labels(path) == (["clip_0", "clip_1", "clip_2"], [4, 31, 2])
    assert all(type(label) is int for label in read_labels(path)[1])
    path = _imigue(tmp_path, [4, -1, 5])                        # -1 is no class: refused in a training split
    with pytest.raises(IMiGUEFormatError, match=r"sample 1 \('clip_1'\) has label -1, expected 0\.\.31 \(-1 means hidden"):
        IMiGUEDataset(tmp_path, "train")
    assert not check_dataset("imigue", tmp_path, splits=("train",), progress=False).ok
    _imigue(tmp_path, [4, -1, 5], split="test")                 # ... but a hidden test split may say -1
    assert [IMiGUEDataset(tmp_path, "test")[k]["label"] for k in range(3)] == [4, -1, 5]
    with open(tmp_path / "x.pkl", "wb") as f:
        pickle.dump(("abc", [1, 2, 3]), f)                      # a str is not a list of names
    with pytest.raises(IMiGUEFormatError, match=r"x\.pkl: expected sample names as a list, found str"):
        read_labels(tmp_path / "x.pkl")


# ------------------------------------------------------------------------------ 10: non-UTF-8 text
def test_non_utf8_list_line_reported_and_rest_checked(tmp_path, capsys):
    root = make_release(tmp_path, clips={"train": TRAIN, "val": CLIPS["val"]})
    lst = root / "annotations" / "train_list_videos.txt"
    lst.write_bytes(b"0003_01_0001.mp4 3\r\n0003_01_\xff0002.mp4 40\r\n0004_02_0001.mp4 x")
    rep = check_dataset("ma52", root, splits=("train", "val"), modality="pose", progress=False)
    lines = {p.line: p.message for p in rep.errors}
    assert set(lines) == {2, 3} and all(p.file == str(lst) for p in rep.errors)
    assert lines[2] == "not UTF-8 text (byte 0xff at column 9); save the file as UTF-8"
    assert "expected an integer label, found 'x'" in lines[3]          # the lines after it are still checked
    assert rep.splits["val"].counts["pose_ok"] == 2                    # and so are the other splits
    with pytest.raises(AnnotationError, match=r"train_list_videos\.txt, line 2: not UTF-8 text \(byte 0xff"):
        MA52Dataset(root, "train", "pose")
    assert main(["check-data", "--dataset", "ma52", "--root", str(root), "--modality", "pose", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "train_list_videos.txt, line 2 [" in captured.out and "Traceback" not in captured.err


def test_non_utf8_label_names_reported_and_splits_checked(tmp_path):
    root = make_release(tmp_path, clips={"train": TRAIN})
    names = "\r\n".join(f"{i}\taction {i}" for i in range(52)).encode().replace(b"action 7", b"acci\xf3n 7")
    (root / "label_name.txt").write_bytes(names)
    with pytest.raises(AnnotationError, match=r"label_name\.txt, line 8: not UTF-8 text \(byte 0xf3 at column 7\)"):
        read_label_names(root / "label_name.txt")
    rep = check_dataset("ma52", root, splits=("train",), modality="pose", progress=False)
    assert [p.file for p in rep.errors] == [str(root / "label_name.txt")] and "line 8" in rep.errors[0].message
    assert rep.splits["train"].counts["pose_ok"] == 3
    (root / "label_name.txt").write_bytes(names.decode("latin-1").encode("utf-16"))
    with pytest.raises(AnnotationError, match=r"label_name\.txt: the file is UTF-16 text; save it as UTF-8"):
        read_label_names(root / "label_name.txt")
    (root / "label_name.txt").write_bytes(b"\xef\xbb\xbf" + names.replace(b"\xf3", b"o"))     # UTF-8 BOM: fine
    assert read_label_names(root / "label_name.txt")[7] == "accion 7"


# ------------------------------------------------------------------------------ 9: pickle expansion
def _shared_keypoints(persons: int, frames: int):
    """``keypoint [persons, frames, 28, 2]`` as nested lists in which every person and every frame is the
    same object: a few KB pickled, ``persons * frames * 56`` numbers read."""
    frame = [[0.5, 0.5] for _ in range(28)]
    return [[frame] * frames] * persons


def test_shared_references_bounded_fast(tmp_path):
    p = tmp_path / "MA52_train.pkl"
    p.write_bytes(pickle.dumps([{"frame_dir": "train/x", "keypoint": _shared_keypoints(1000, 2000),
                                 "keypoint_score": 1.0}], protocol=4))
    assert p.stat().st_size < 10_000                          # 112 million numbers
    t0 = time.perf_counter()
    with pytest.raises(safe_pickle.PickleTooLargeError, match=rf"{p.name}: refused to unpickle: it expands to more "
                                                             r"than 1,000,000 elements.*MDN_FAST_PICKLE_MAX_ELEMENTS"):
        safe_pickle.load(p)
    chain = [0.0, 0.0]
    for _ in range(100):                                     # 2**101 elements in 1.5 KB
        chain = [chain, chain]
    with pytest.raises(safe_pickle.PickleTooLargeError, match="expands to more than"):
        safe_pickle.loads(pickle.dumps(chain), "chain.pkl")
    loop = [1.0]
    loop.append(loop)
    with pytest.raises(safe_pickle.PickleTooLargeError, match=r"loop\.pkl: refused to unpickle: a list contains itself"):
        safe_pickle.loads(pickle.dumps({"x": loop}), "loop.pkl")
    assert time.perf_counter() - t0 < 1.0


def test_expansion_limit_can_be_raised(tmp_path, monkeypatch):
    data = pickle.dumps({"keypoint": _shared_keypoints(10, 2000)})        # 1.1 million elements
    with pytest.raises(safe_pickle.PickleTooLargeError):
        safe_pickle.loads(data)
    assert len(safe_pickle.loads(data, max_elements=2_000_000)["keypoint"]) == 10
    monkeypatch.setenv("MDN_FAST_PICKLE_MAX_ELEMENTS", "2_000_000")
    assert len(safe_pickle.loads(data)["keypoint"]) == 10
    with pytest.raises(safe_pickle.PickleTooLargeError, match="more than 1,000 elements"):
        safe_pickle.loads(data, max_elements=1000)
    monkeypatch.setenv("MDN_FAST_PICKLE_MAX_ELEMENTS", "lots")
    with pytest.raises(ValueError, match="MDN_FAST_PICKLE_MAX_ELEMENTS='lots': expected a positive integer"):
        safe_pickle.loads(data)


def test_expansion_refused_by_check_data_and_dataset(tmp_path):
    root = make_release(tmp_path, clips={"train": TRAIN})
    rng = np.random.default_rng(2)
    anns = [annotation(f"train/{n[:-4]}", label, person(rng)) for n, label in TRAIN]
    anns[1]["keypoint"] = _shared_keypoints(20_000, 20_000)               # 22 billion numbers, 60 KB
    pkl = root / "MA-52_openpose_28kp" / "MA52_train.pkl"
    write_pose_pickle(pkl, {}, anns)
    t0 = time.perf_counter()
    rep = check_dataset("ma52", root, splits=("train",), modality="pose", progress=False)
    assert [p.file for p in rep.errors] == [str(pkl)] and "expands to more than" in rep.errors[0].message
    with pytest.raises(AnnotationError, match=r"MA52_train\.pkl: refused to unpickle: it expands to more than"):
        MA52Dataset(root, "train", "pose")
    assert time.perf_counter() - t0 < 5.0


def test_real_format_pickles_still_load(tmp_path):
    root = make_release(tmp_path, clips={"train": TRAIN})
    pkl = root / "MA-52_openpose_28kp" / "MA52_train.pkl"
    assert len(safe_pickle.load(pkl)["annotations"]) == 3
    # keypoints stored as nested lists without sharing (one float each): every element counts once
    rng = np.random.default_rng(3)
    anns = [annotation(f"train/{n[:-4]}", label, person(rng, n=75)) for n, label in TRAIN]
    for a in anns:
        a["keypoint"], a["keypoint_score"] = a["keypoint"].tolist(), a["keypoint_score"].tolist()
    write_pose_pickle(pkl, {}, anns)
    obj = safe_pickle.load(pkl)
    assert safe_pickle.expanded_size(obj, 10 ** 9) < pkl.stat().st_size    # under 1 element per byte
    ds = MA52Dataset(root, "train", "pose")
    assert tuple(ds[0]["keypoints"].shape) == (8, 28, 3)
    # an iMiGUE label pickle of the release's size: (13,670 names, 13,670 labels)
    labels = tmp_path / "train_label.pkl"
    with open(labels, "wb") as f:
        pickle.dump(([f"v{k}" for k in range(13_670)], np.random.default_rng(0).integers(0, 32, 13_670).tolist()), f)
    assert len(read_labels(labels)[1]) == 13_670


# ------------------------------------------------------------------------------ 4: prepare-videos
@pytest.fixture
def video_tree(tmp_path):
    """``raw/``: a plain clip, a ``.partial`` name, a 255-byte name, a hidden file, a folder reached through
    a symlink (with a link back up: a loop) and a dangling link."""
    av = pytest.importorskip("av")
    if "libx264" not in av.codecs_available:
        pytest.skip("PyAV without libx264")
    from mdn_fast.data.video_fixtures import write_video
    src, other = tmp_path / "raw", tmp_path / "elsewhere"
    long_name = "x" * 251 + ".mp4"
    for rel in ("a.mp4", "clip.partial.mp4", long_name, ".hidden.mp4", "sub/c.MP4"):
        write_video(src / rel, 6, 48, 64, seed=len(rel))
    write_video(other / "b.mp4", 7, 48, 64)
    os.symlink(other, src / "linked")
    os.symlink(src, other / "loop")
    return src, long_name


def test_prepare_videos_converts_every_video(video_tree, tmp_path, caplog):
    from mdn_fast.data.prepare_videos import TMP_DIR, prepare_videos
    from mdn_fast.data.video import count_frames
    src, long_name = video_tree
    os.symlink(src / "gone.mp4", src / "dangling.mp4")
    dst = tmp_path / "out"
    rep = prepare_videos(src, dst, short_side=32, workers=1, progress=False)
    want = {"a.mp4", "clip.partial.mp4", long_name, ".hidden.mp4", "sub/c.MP4", "linked/b.mp4"}
    assert rep.encoded == 6 and set(rep.failed) == {"dangling.mp4"}            # named, not skipped
    assert "No such file" in rep.failed["dangling.mp4"] or "does not exist" in rep.failed["dangling.mp4"]
    from mdn_fast.data.prepare_videos import PreparedVideos
    assert set(PreparedVideos(dst).videos) == want
    for rel in want:
        assert count_frames(dst / rel) == (7 if rel == "linked/b.mp4" else 6)
    assert any("linked/loop: symlink loop" in n for n in rep.notes)
    assert "symlink loop" in caplog.text
    outputs = {str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()}
    assert outputs == want | {"prepared_manifest.json"}                        # no temporary left, no TMP_DIR
    assert not (dst / TMP_DIR).exists()
    rep = prepare_videos(src, dst, short_side=32, workers=1, progress=False)
    assert (rep.encoded, rep.skipped) == (0, 6)


def test_prepare_videos_dst_inside_src(video_tree):
    from mdn_fast.data.prepare_videos import PreparedVideos, prepare_videos
    src, _ = video_tree
    dst = src / "prepared"
    first = prepare_videos(src, dst, short_side=32, workers=1, progress=False)
    again = prepare_videos(src, dst, short_side=32, workers=1, progress=False)
    assert (first.encoded, first.failed) == (6, {}) and (again.encoded, again.skipped, again.failed) == (0, 6, {})
    assert not any(r.startswith("prepared/") for r in PreparedVideos(dst).videos)
    assert not (dst / "prepared").exists()
    with pytest.raises(ValueError, match=r"dst .* holds src .*choose a dst outside src's tree"):
        prepare_videos(src / "sub", src, short_side=32, workers=1, progress=False)


@pytest.mark.parametrize("kw, flag, message", [
    ({"crf": -5}, "--crf", r"crf \(--crf\) must be a number in 0\.\.51"),
    ({"crf": 52}, "--crf", r"crf \(--crf\) must be a number in 0\.\.51"),
    ({"gop": 0}, "--gop", r"gop \(--gop\) must be an integer >= 1, got 0"),
    ({"short_side": 15}, "--short-side", r"short_side \(--short-side\) must be an even integer >= 16, got 15"),
    ({"workers": 0}, "--workers", r"workers \(--workers\) must be an integer >= 1, got 0"),
    ({"preset": "quick"}, None, r"preset must be one of x264's presets"),
    ({"pix_fmt": "rgb24"}, "--pix-fmt", r"pix_fmt \(--pix-fmt\) must be 'yuv444p' or 'yuv420p'"),
])
def test_prepare_videos_options_checked_up_front(tmp_path, capsys, kw, flag, message):
    from mdn_fast.data.prepare_videos import prepare_videos
    src = tmp_path / "raw"
    src.mkdir()
    (src / "a.mp4").write_bytes(b"not even read")
    with pytest.raises(ValueError, match=message):
        prepare_videos(src, tmp_path / "out", progress=False, **kw)
    assert not (tmp_path / "out").exists()                    # refused before any work
    if flag is not None and flag != "--pix-fmt":               # argparse's choices check --pix-fmt itself
        value = str(next(iter(kw.values())))
        # Refused either by the CLI's own range check (argparse: exit 2) or by prepare_videos (exit 1); one line
        # naming the option either way, and nothing written.
        try:
            code = main(["prepare-videos", str(src), str(tmp_path / "out"), "--no-progress", f"{flag}={value}"])
        except SystemExit as e:
            code = e.code
        assert code in (1, 2)
        if code == 1:
            assert flag in _one_line_error(capsys, "prepare-videos")
        else:  # argparse: its usage, then one error line naming the option
            last = capsys.readouterr().err.strip().splitlines()[-1]
            assert last.startswith("mdn-fast prepare-videos: error: argument " + flag), last
        assert not (tmp_path / "out").exists()


def test_prepare_videos_without_pyav_fails_once(tmp_path, capsys, monkeypatch):
    from mdn_fast.data.prepare_videos import prepare_videos
    from mdn_fast.training.extras import MissingExtraError
    src = tmp_path / "raw"
    src.mkdir()
    for k in range(3):
        (src / f"{k}.mp4").write_bytes(b"\0" * 100)
    monkeypatch.setitem(sys.modules, "av", None)               # import av -> ImportError
    with pytest.raises(MissingExtraError, match=r'PyAV .*prepare-videos .*pip install "mdn-fast\[video\]"'):
        prepare_videos(src, tmp_path / "out", progress=False)
    assert main(["prepare-videos", str(src), str(tmp_path / "out"), "--no-progress"]) == 1
    err = _one_line_error(capsys, "prepare-videos")
    assert 'pip install "mdn-fast[video]"' in err and "0.mp4" not in err
    assert not (tmp_path / "out").exists()
