"""``check_dataset`` (library side of ``mdn-fast check-data``) on generated releases in the real formats:
a clean MA-52 release passes; each kind of damage is reported with its file, line, clip and what
training does; the report's bad clips are exactly what ``MA52Dataset(exclude=...)`` needs; iMiGUE too."""
import pickle
import sys

import numpy as np
import pytest

from mdn_fast.data.check import ERROR, INFO, WARNING, check_dataset
from mdn_fast.data.ma52 import MA52Dataset

from tests._ma52_release import CLIPS, N_FRAMES, annotation, make_release, person, write_list, write_pose_pickle

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("clean"), videos=True)


def test_clean_release_is_ok(clean, capsys):
    rep = check_dataset("ma52", clean, progress=True)
    assert rep.ok, rep.format()
    # the fixture's val classes 51 and 7 have no train clip: the only warning
    assert [(p.severity, p.split, p.message) for p in rep.problems if p.severity != INFO] == [
        (WARNING, "val", "classes [7, 51] have no training clip")]
    for split, items in CLIPS.items():
        sr = rep.splits[split]
        assert sr.clips == len(items) and sr.bad == 0
        assert sr.counts["videos_ok"] == sr.counts["pose_ok"] == len(items)
        assert sr.frames == [N_FRAMES] * len(items) and dict(sr.sizes) == {(64, 48): len(items)}
        assert sr.hand_order == "as the layout"
        assert sr.files["pose"].endswith(f"MA-52_openpose_28kp/MA52_{split}.pkl")
    assert any("hidden test labels" in p.message for p in rep.problems if p.split == "test")
    text = rep.format()
    assert "OK: training can use every clip" in text and "[train] 3 clips, 0 unusable" in text


def _damaged(tmp_path):
    """val split of 7 clips: good, missing video, broken video, no detections, 3-D keypoints, no pose
    entry, pose frame size other than the video's."""
    root = make_release(tmp_path, videos=True, clips={"train": CLIPS["train"]})
    rng = np.random.default_rng(9)
    names = ["ok", "novideo", "broken", "empty", "threed", "nopose", "othersize"]
    items = [(f"{n}.mp4", 5) for n in names]
    write_list(root / "annotations" / "val_list_videos.txt", items)
    anns = []
    from tests._ma52_release import write_clip
    for n in names:
        if n != "novideo":
            write_clip(root / "raw_videos" / "val" / f"{n}.mp4")
        if n == "nopose":
            continue
        a = annotation(f"val/{n}", 5, person(rng), img_shape=(96, 128) if n == "othersize" else (48, 64))
        if n == "empty":
            a["keypoint"], a["keypoint_score"] = np.zeros((0, N_FRAMES, 28, 2)), np.zeros((0, N_FRAMES, 28))
        if n == "threed":
            a["keypoint"] = np.zeros((1, N_FRAMES, 28, 3))
            del a["keypoint_score"]
        anns.append(a)
    (root / "raw_videos" / "val" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    write_pose_pickle(root / "MA-52_openpose_28kp" / "MA52_val.pkl", {}, anns)
    return root


def test_damaged_release_reports_file_line_and_action(tmp_path):
    root = _damaged(tmp_path)
    rep = check_dataset("ma52", root, splits=("train", "val"), progress=False)
    assert not rep.ok
    lst = str(root / "annotations" / "val_list_videos.txt")
    errs = {(p.clip, p.line): p for p in rep.errors}
    assert set(errs) == {("novideo.mp4", 2), ("broken.mp4", 3), ("threed.mp4", 5), ("nopose.mp4", 6)}
    assert all(p.file == lst and p.split == "val" for p in errs.values())
    assert "does not exist" in errs["novideo.mp4", 2].message and "skip" in errs["novideo.mp4", 2].action
    assert "broken.mp4" in errs["broken.mp4", 3].message and "VideoReadError" in errs["broken.mp4", 3].action
    assert "(x, y, z)" in errs["threed.mp4", 5].message
    assert "no annotation with frame_dir 'nopose'" in errs["nopose.mp4", 6].message
    warns = {p.clip: p for p in rep.warnings}
    assert "no detections" in warns["empty.mp4"].message and "all entities absent" in warns["empty.mp4"].action
    assert "othersize.mp4" not in warns                  # a resized video: same aspect ratio, keypoints rescaled
    info = next(p for p in rep.problems if p.clip == "othersize.mp4")
    assert info.severity == INFO and "img_shape (96, 128)" in info.message and info.line == 7
    assert "scaled from img_shape" in info.action
    assert not any("pose entries are not in the list" in p.message for p in rep.problems if p.split == "val")
    assert rep.splits["val"].bad == 4 and rep.bad_clips("val") == ["broken.mp4", "nopose.mp4", "novideo.mp4",
                                                                   "threed.mp4"]
    text = rep.format()
    assert f"{lst}, line 3 [broken.mp4]" in text and "NOT OK: 4 errors" in text
    # the dataset refuses by default, and with the report's bad clips left out every clip reads
    with pytest.raises(ValueError, match="3 of 7 listed clips cannot be used"):
        MA52Dataset(root, "val", "rgb+pose")
    ds = MA52Dataset(root, "val", "rgb+pose", exclude=rep.bad_clips("val"))
    assert ds.names() == ["ok.mp4", "empty.mp4", "othersize.mp4"]
    for i in range(len(ds)):
        assert ds[i]["frames"].shape == (8, 3, 224, 224)
    # pose only: video problems do not count
    rep = check_dataset("ma52", root, splits=("val",), modality="pose", progress=False)
    assert {p.clip for p in rep.errors} == {"threed.mp4", "nopose.mp4"}


def test_bad_list_lines_each_reported(tmp_path):
    root = make_release(tmp_path, clips={"train": CLIPS["train"]})
    (root / "annotations" / "train_list_videos.txt").write_bytes(
        b"0003_01_0001.mp4 3\r\n0003_01_0002.mp4 x\r\n0004_02_0001.mp4 99\r\n0003_01_0001.mp4 3")
    rep = check_dataset("ma52", root, splits=("train",), modality="pose", progress=False)
    lines = {p.line: p.message for p in rep.errors}
    assert set(lines) == {2, 3, 4}
    assert "expected an integer label, found 'x'" in lines[2] and "found 99" in lines[3]
    assert "already listed on line 1" in lines[4]


def test_without_pyav_videos_checked_for_existence_only(clean, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)       # import av -> ImportError
    rep = check_dataset("ma52", clean, splits=("val",), progress=False)
    assert rep.ok and any("PyAV is not installed" in n for n in rep.notes)
    assert rep.splits["val"].counts["videos_found"] == 2 and not rep.splits["val"].frames


def test_crossed_hands_reported(tmp_path):
    root = make_release(tmp_path, swap_hands=True, clips={"val": CLIPS["val"]})
    rep = check_dataset("ma52", root, splits=("val",), modality="pose", progress=False)
    assert rep.ok and rep.splits["val"].hand_order == "swapped relative to the layout"
    assert any("hand_order='auto'" in p.action for p in rep.warnings)


def test_missing_parts(tmp_path):
    rep = check_dataset("ma52", tmp_path, progress=False)
    assert {(p.split, p.severity) for p in rep.problems} >= {("train", ERROR), ("val", ERROR), ("test", INFO)}
    with pytest.raises(ValueError, match="name: expected 'ma52' or 'imigue'"):
        check_dataset("ntu", tmp_path)


def test_imigue(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.uniform(1, 100, (5, 3, 90, 22, 1)).astype(np.float32)
    data[2] = 0                                         # no detections
    data[3, 0, 4, 7, 0] = np.nan
    np.save(tmp_path / "train_data.npy", data)
    with open(tmp_path / "train_label.pkl", "wb") as f:
        pickle.dump(([f"v{i}" for i in range(5)], [0, 1, 2, 3, 31]), f)
    np.save(tmp_path / "valid_data.npy", data[:2])
    with open(tmp_path / "valid_label.pkl", "wb") as f:
        pickle.dump((["a", "b", "c"], [0, 1, 2]), f)
    rep = check_dataset("imigue", tmp_path, progress=False)
    assert set(rep.splits) == {"train", "val"}
    assert rep.splits["train"].counts == {"ok": 4, "no_detections": 1, "nan": 1}
    assert {p.clip for p in rep.warnings} == {"v2 (#2)", "v3 (#3)"}
    assert [p.split for p in rep.errors] == ["val"] and "3 labels but" in rep.errors[0].message
    assert "valid_label.pkl" in rep.format()


def test_prepared_videos_that_are_not_prepared(clean, tmp_path):
    """``prepared=`` naming a folder without a manifest: an error per split naming the folder, never a
    crash, and no video counted as checked from the raw folder left behind."""
    not_prepared = tmp_path / "not_prepared"
    not_prepared.mkdir()
    rep = check_dataset("ma52", clean, progress=False, prepared=not_prepared)
    assert not rep.ok
    for split in ("train", "val"):
        errs = [p for p in rep.problems if p.split == split and p.severity == ERROR]
        assert any("prepared" in p.message and "not_prepared" in p.message for p in errs), rep.format()
        assert rep.splits[split].counts["videos_ok"] == 0
