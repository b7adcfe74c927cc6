"""One MA-52 release, one clip screen (house issue 21 item 3): ``MA52Release`` finds a release's parts once
and opens each pose pickle once; the dataset and ``check-data`` decide the bad clips with the same screen
(``mdn_fast.data.ma52_screen``); a refusal is a ``BadClipsError`` carrying the records (clip, file, line),
which ``mdn-fast train`` reads instead of parsing the message."""
import logging
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mdn_fast.data import ma52, safe_pickle
from mdn_fast.data.check import check_dataset
from mdn_fast.data.ma52 import AnnotationError, BadClipsError, MA52Dataset, MA52Release, screen_split
from mdn_fast.training import TrainConfig, build_datasets

from tests._ma52_release import CLIPS, annotation, make_release, person, write_list, write_pose_pickle

VAL = [("ok.mp4", 5), ("nopose.mp4", 6), ("threed.mp4", 7), ("ok2.mp4", 8), ("nan.mp4", 9)]


@pytest.fixture
def bad_val(tmp_path):
    """A release whose val split lists 5 clips: two good, one without pose entry (line 2), one with 3-D
    keypoints (line 3), one with a NaN (usable: read as a missing joint, line 5)."""
    root = make_release(tmp_path / "rel", clips={"train": CLIPS["train"]})
    rng = np.random.default_rng(3)
    write_list(root / "annotations" / "val_list_videos.txt", VAL)
    anns = []
    for name, label in VAL:
        if name == "nopose.mp4":
            continue
        a = annotation(f"val/{name[:-4]}", label, person(rng))
        if name == "threed.mp4":
            a["keypoint"] = np.zeros((1, 12, 28, 3))
            del a["keypoint_score"]
        if name == "nan.mp4":
            a["keypoint"][0, 2, 4, 0] = np.nan
        anns.append(a)
    write_pose_pickle(root / "MA-52_openpose_28kp" / "MA52_val.pkl", {}, anns)
    return root


@pytest.fixture
def pickle_loads(monkeypatch):
    """Counts ``safe_pickle.load`` calls per file (every pose pickle is read through it)."""
    counts = Counter()
    real = safe_pickle.load

    def counting(path, *a, **k):
        counts[Path(path).name] += 1
        return real(path, *a, **k)
    monkeypatch.setattr(safe_pickle, "load", counting)
    return counts


def test_skip_bad_clips_run_reads_each_pose_pickle_once_per_split(bad_val, pickle_loads, caplog):
    """What ``mdn-fast train --skip-bad-clips`` builds (the screen, then the dataset from it) unpickles the
    train and the val pickle once each (before: twice, once for check-data and once for the dataset)."""
    cfg = TrainConfig.for_dataset("ma52", root=str(bad_val), modality="pose", progress=False, skip_bad_clips=True)
    with caplog.at_level(logging.WARNING):
        train_set, val_set, _ = build_datasets(cfg)
    assert dict(pickle_loads) == {"MA52_train.pkl": 1, "MA52_val.pkl": 1}
    assert val_set.names() == ["ok.mp4", "ok2.mp4", "nan.mp4"] and len(train_set) == 3
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("--skip-bad-clips: split 'val': leaving out 2 of 5 listed clips" in m and "line 2" in m
               and m.endswith(": nopose.mp4, threed.mp4") for m in msgs), msgs


def test_one_release_opens_a_shared_pickle_once(bad_val, pickle_loads):
    """check-data and the dataset on one ``MA52Release``: the pose source is opened once, and the dataset
    built from the screen screens nothing again."""
    rel = MA52Release(bad_val)
    rep = check_dataset("ma52", bad_val, splits=("val",), modality="pose", progress=False, release=rel)
    s = screen_split(rel, "val", modality="pose")
    ds = MA52Dataset(bad_val, "val", "pose", release=rel, screen=s, skip_bad_clips=True)
    assert dict(pickle_loads) == {"MA52_val.pkl": 1}
    assert ds.pose is rel.split("val").pose_source("coco18_hands28")
    assert [c for c, _, _ in ds.bad_clips] == rep.bad_clips("val") == s.bad_clips() == ["nopose.mp4", "threed.mp4"]


def test_check_data_and_dataset_name_the_same_bad_clips(bad_val, monkeypatch):
    """The dataset's own screen and check-data's give the same clips, lines and reasons; with a screen
    given the dataset does not screen again (its rules are not run a second time)."""
    rep = check_dataset("ma52", bad_val, splits=("val",), modality="pose", progress=False)
    ds = MA52Dataset(bad_val, "val", "pose", skip_bad_clips=True)
    errors = {p.clip: p for p in rep.errors}
    assert [(c, line) for c, line, _ in ds.bad_clips] == [("nopose.mp4", 2), ("threed.mp4", 3)]
    assert [(c, line, why) for c, line, why in ds.bad_clips] == [
        (c, errors[c].line, errors[c].message) for c, _, _ in ds.bad_clips]
    assert "nan.mp4" not in errors and any(p.clip == "nan.mp4" for p in rep.warnings)   # a warning, trained

    rel = MA52Release(bad_val)
    s = screen_split(rel, "val", modality="pose")

    def screened_again(*a, **k):
        raise AssertionError("the dataset screened the clips again")
    monkeypatch.setattr(ma52, "screen_clips", screened_again)
    ds2 = MA52Dataset(bad_val, "val", "pose", release=rel, screen=s, skip_bad_clips=True)
    assert ds2.bad_clips == ds.bad_clips and ds2.names() == ds.names()


def test_refusal_carries_the_bad_clips(bad_val):
    with pytest.raises(BadClipsError) as ei:
        MA52Dataset(bad_val, "val", "pose")
    e = ei.value
    lst = str(bad_val / "annotations" / "val_list_videos.txt")
    assert isinstance(e, AnnotationError) and e.skippable and e.listed == 5
    assert [(p.clip, p.file, p.line) for p in e.problems] == [("nopose.mp4", lst, 2), ("threed.mp4", lst, 3)]
    assert e.clips == ["nopose.mp4", "threed.mp4"] and str(e.list_file) == lst
    assert str(e) == e.summary + e.advice and "2 of 5 listed clips cannot be used; first: line 2" in e.summary
    assert "skip_bad_clips=True" in e.advice
    # as a DataLoader worker would send it: the records survive, not only the text
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is BadClipsError and back.problems == e.problems and str(back) == str(e)


def test_train_refusal_reads_the_records_not_the_text(bad_val):
    """``mdn-fast train`` (no --skip-bad-clips) re-raises the dataset's records with its own advice: the
    command and option, not the Python argument."""
    cfg = TrainConfig.for_dataset("ma52", root=str(bad_val), modality="pose", progress=False, val_split="val")
    with pytest.raises(BadClipsError) as ei:
        build_datasets(cfg)
    e = ei.value
    assert e.clips == ["nopose.mp4", "threed.mp4"] and e.problems[0].line == 2
    assert str(e) == e.summary + e.advice
    assert f"`mdn-fast check-data --dataset ma52 --root {bad_val}` lists every unusable clip" in e.advice
    assert "skip_bad_clips=True" not in str(e)


def test_no_usable_clip_is_not_skippable(bad_val, tmp_path):
    write_list(tmp_path / "val_list_videos.txt", [("zzz1.mp4", 1), ("zzz2.mp4", 2)])
    with pytest.raises(BadClipsError, match="no listed clip is in") as ei:
        MA52Dataset(tmp_path, "val", "pose", pose=bad_val / "MA-52_openpose_28kp" / "MA52_val.pkl",
                    skip_bad_clips=True)
    assert not ei.value.skippable and ei.value.clips == ["zzz1.mp4", "zzz2.mp4"]


def test_screen_of_another_split_or_modality_refused(bad_val):
    rel = MA52Release(bad_val)
    s = screen_split(rel, "val", modality="pose")
    with pytest.raises(ValueError, match="screen: made for split 'val'.*this dataset is split 'train'"):
        MA52Dataset(bad_val, "train", "pose", release=rel, screen=s)
    with pytest.raises(ValueError, match="screen: made for split 'val', modality 'pose'"):
        MA52Dataset(bad_val, "val", "rgb+pose", release=rel, screen=s)
    with pytest.raises(ValueError, match="release: .* already says where the files are"):
        MA52Dataset(bad_val, "val", "pose", release=rel, pose=bad_val)
