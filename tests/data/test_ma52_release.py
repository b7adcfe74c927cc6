"""MA-52 as downloaded (issue 11.3/11.4): the release layout found without options, the lists=/videos=/
pose= overrides, clip names across split prefixes and extensions, clips without detections, 3-D (C = 3)
keypoints refused, and bad clips refused or skipped. Fixtures in the real formats (tests/_ma52_release)."""
import logging
import pickle
import shutil

import numpy as np
import pytest
import torch

from mdn_fast.skeleton.boxes import entity_boxes
from mdn_fast.skeleton.layouts import get_layout
from mdn_fast.data.ma52 import AnnotationError, MA52Dataset, PosePickle, clip_key

from tests._ma52_release import CLIPS, N_FRAMES, annotation, make_release, person, write_list, write_pose_pickle


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("ma52_release"))


def test_clip_key():
    for n in ("train/0003_01_0001", "0003_01_0001.mp4", "0003_01_0001", "raw_videos\\train\\0003_01_0001.MP4",
              "val/0003_01_0001.avi"):
        assert clip_key(n) == "0003_01_0001", n
    assert clip_key("a.b_c") == "a.b_c"             # a dot that is no video extension stays


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_pose_release_found_as_downloaded(release, split):
    ds = MA52Dataset(release, split, "pose")
    assert ds.list_file == release / "annotations" / f"{split}_list_videos.txt"
    assert ds.pose.path == release / "MA-52_openpose_28kp" / f"MA52_{split}.pkl"
    assert [n for n, _ in ds.items] == [n for n, _ in CLIPS[split]]
    assert ds.lines == list(range(1, len(CLIPS[split]) + 1))
    assert ds.class_names[51] == "action 51"
    assert ds.swap_hands is False                    # the data follow the layout's (public) hand order
    item = ds[0]
    assert item["keypoints"].shape == (8, 28, 3) and torch.isfinite(item["keypoints"]).all()
    assert item["label"] == (-1 if split == "test" else CLIPS[split][0][1])


def test_hand_order_as_is_and_auto_agree_on_public_order(release, tmp_path):
    a = MA52Dataset(release, "val", "pose", hand_order="as_is")[1]["keypoints"]
    b = MA52Dataset(release, "val", "pose", hand_order="auto")[1]["keypoints"]
    torch.testing.assert_close(a, b)
    # the fingertips 18-22 sit next to the left wrist (joint 7) in the output
    d_left = (a[:, 18:23, :2] - a[:, 7:8, :2]).norm(dim=-1).mean()
    d_right = (a[:, 18:23, :2] - a[:, 4:5, :2]).norm(dim=-1).mean()
    assert d_left < d_right
    crossed = make_release(tmp_path / "crossed", swap_hands=True)
    ds = MA52Dataset(crossed, "val", "pose")
    assert ds.swap_hands is True
    c = ds[1]["keypoints"]
    assert (c[:, 18:23, :2] - c[:, 7:8, :2]).norm(dim=-1).mean() < (c[:, 18:23, :2] - c[:, 4:5, :2]).norm(dim=-1).mean()


def test_release_with_videos(tmp_path):
    pytest.importorskip("av")
    for flat in (False, True):
        root = make_release(tmp_path / f"flat{flat}", videos=True, flat_videos=flat,
                            clips={"val": CLIPS["val"]})
        ds = MA52Dataset(root, "val", "rgb+pose")
        assert ds.video_dir == root / "raw_videos" / ("" if flat else "val")
        item = ds[1]
        assert item["frames"].shape == (8, 3, 224, 224) and item["keypoints"].shape == (8, 28, 3)


def test_overrides_lists_videos_pose(release, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "my_lists").mkdir(parents=True)
    shutil.copy(release / "annotations" / "val_list_videos.txt", elsewhere / "my_lists" / "val_list_videos.txt")
    shutil.copy(release / "MA-52_openpose_28kp" / "MA52_val.pkl", elsewhere / "poses.pkl")
    empty_root = tmp_path / "empty"
    empty_root.mkdir()
    with pytest.raises(FileNotFoundError, match="MA-52 list file for split 'val'"):
        MA52Dataset(empty_root, "val", "pose")
    ds = MA52Dataset(empty_root, "val", "pose", lists=elsewhere / "my_lists", pose=elsewhere / "poses.pkl")
    assert len(ds) == 2 and ds.pose.path == elsewhere / "poses.pkl"
    ds = MA52Dataset(empty_root, "val", "pose", lists=elsewhere / "my_lists" / "val_list_videos.txt",
                     pose=release / "MA-52_openpose_28kp")            # a folder holding the release pickles
    assert ds.pose.path == release / "MA-52_openpose_28kp" / "MA52_val.pkl"
    with pytest.raises(FileNotFoundError, match=r"video folder for split 'val'.*none of these exist"):
        MA52Dataset(empty_root, "val", "rgb", lists=elsewhere / "my_lists", videos=tmp_path / "novideos")
    with pytest.raises(ValueError, match="lists/list_file: give one of them"):
        MA52Dataset(empty_root, "val", "pose", lists=elsewhere, list_file=elsewhere)


@pytest.mark.parametrize("list_names,frame_dirs", [
    (["a.mp4", "b.mp4"], ["val/a", "val/b"]),             # release: prefix and no extension in the pickle
    (["val/a.mp4", "val/b.mp4"], ["a", "b"]),             # prefix in the list only
    (["a", "b"], ["a.mp4", "b.mp4"]),                     # extensions the other way round
    (["a.mp4", "b.mp4"], ["a", "b"]),
])
def test_names_match_with_or_without_prefix_and_extension(tmp_path, list_names, frame_dirs):
    rng = np.random.default_rng(1)
    write_list(tmp_path / "val_list_videos.txt", [(n, 5) for n in list_names])
    anns = [annotation(fd, 5, person(rng)) for fd in frame_dirs]
    write_pose_pickle(tmp_path / "MA52_val.pkl", {}, anns)
    ds = MA52Dataset(tmp_path, "val", "pose")
    assert len(ds) == 2
    seq = ds.pose.clip(list_names[1])[0]
    np.testing.assert_array_equal(seq[..., :2], anns[1]["keypoint"][0])
    np.testing.assert_array_equal(seq[..., 2], anns[1]["keypoint_score"][0])
    assert ds.pose.find(list_names[0]) == frame_dirs[0]


def test_same_name_under_two_prefixes_resolved_by_split_or_refused(tmp_path):
    rng = np.random.default_rng(2)
    anns = [annotation("train/a", 1, person(rng)), annotation("val/a", 2, person(rng))]
    write_pose_pickle(tmp_path / "all.pkl", {}, anns)
    pp = PosePickle(tmp_path / "all.pkl", "coco18_hands28")
    assert pp.find("a.mp4", "val") == "val/a" and pp.find("train/a.mp4") == "train/a"
    with pytest.raises(AnnotationError, match=r"clip 'a\.mp4' matches several frame_dirs"):
        pp.find("a.mp4")


def test_none_listed_in_pose_file_says_so(release, tmp_path):
    write_list(tmp_path / "val_list_videos.txt", [("zzz1.mp4", 1), ("zzz2.mp4", 2)])
    with pytest.raises(AnnotationError, match=r"2 of 2 listed clips cannot be used.*no listed clip is in .*MA52_train"
                                              r"\.pkl: list names look like 'zzz1\.mp4', frame_dirs like "
                                              r"'train/0003_01_0001'; wrong split or file\?"):
        MA52Dataset(tmp_path, "val", "pose", pose=release / "MA-52_openpose_28kp" / "MA52_train.pkl",
                    skip_bad_clips=True)


# ------------------------------------------------------------------------------------------ pose pickles (11.4)
def _release_with(tmp_path, bad_ann):
    """val split: two good clips and ``bad_ann`` as the third (list line 3)."""
    rng = np.random.default_rng(3)
    items = [("g1.mp4", 4), ("g2.mp4", 9), ("bad.mp4", 30)]
    write_list(tmp_path / "annotations" / "val_list_videos.txt", items)
    anns = [annotation("val/g1", 4, person(rng)), annotation("val/g2", 9, person(rng)), bad_ann]
    write_pose_pickle(tmp_path / "MA-52_openpose_28kp" / "MA52_val.pkl", {"val": []}, anns)
    return tmp_path


@pytest.mark.parametrize("T", [N_FRAMES, 0])
def test_clip_without_detections_loads_as_missing_joints(tmp_path, T):
    empty = dict(frame_dir="val/bad", label=30, img_shape=(48, 64), total_frames=N_FRAMES,
                 keypoint=np.zeros((0, T, 28, 2), np.float32), keypoint_score=np.zeros((0, T, 28), np.float32))
    ds = MA52Dataset(_release_with(tmp_path, empty), "val", "pose")
    assert len(ds) == 3 and not ds.bad_clips
    seq, shape = ds.pose.clip("bad.mp4")
    assert seq.shape == (N_FRAMES, 28, 3) and (seq == 0).all() and shape == (48, 64)
    item = ds[2]
    assert item["keypoints"].shape == (8, 28, 3) and (item["keypoints"] == 0).all()
    lay = get_layout("coco18_hands28")
    _, present = entity_boxes(item["keypoints"][None], lay, lay.entities)
    assert not present.any()                          # every entity absent, nothing crashes
    assert ds[0]["keypoints"][..., 2].gt(0).any()     # the good clips are untouched


@pytest.mark.parametrize("with_score", [False, True])
def test_three_d_keypoints_refused_naming_file_and_clip(tmp_path, with_score):
    kp3 = np.random.default_rng(4).normal(size=(1, N_FRAMES, 28, 3)).astype(np.float32)
    bad = dict(frame_dir="val/bad", label=30, img_shape=(48, 64), total_frames=N_FRAMES, keypoint=kp3)
    if with_score:
        bad["keypoint_score"] = np.ones((1, N_FRAMES, 28), np.float32)
    root = _release_with(tmp_path, bad)
    with pytest.raises(AnnotationError, match=r"val_list_videos\.txt: 1 of 3 listed clips cannot be used; first: line 3, "
                                              r"clip 'bad\.mp4': .*MA52_val\.pkl: annotation 2 \(frame_dir 'val/bad'\): "
                                              r"'keypoint' has shape \(1, 12, 28, 3\): 3 coordinates per joint.*"
                                              r"\(x, y, z\).*skip_bad_clips=True"):
        MA52Dataset(root, "val", "pose")


def test_skip_bad_clips_logs_and_leaves_them_out(tmp_path, caplog):
    kp3 = np.zeros((1, N_FRAMES, 28, 3), np.float32)
    root = _release_with(tmp_path, dict(frame_dir="val/bad", keypoint=kp3))
    with caplog.at_level(logging.WARNING, logger="mdn_fast.data.ma52"):
        ds = MA52Dataset(root, "val", "pose", skip_bad_clips=True)
    assert ds.names() == ["g1.mp4", "g2.mp4"] and ds.lines == [1, 2]
    assert len(ds.bad_clips) == 1 and ds.bad_clips[0][:2] == ("bad.mp4", 3) and "(x, y, z)" in ds.bad_clips[0][2]
    assert "1 of 3 listed clips cannot be used" in caplog.text and "skip_bad_clips" in caplog.text
    assert ds[1]["label"] == 9
    # exclude= leaves named clips out without complaint (e.g. the bad clips of a check report)
    ds = MA52Dataset(root, "val", "pose", exclude=["bad.mp4"])
    assert ds.names() == ["g1.mp4", "g2.mp4"] and not ds.bad_clips


def test_missing_pose_entry_refused_or_skipped(tmp_path):
    rng = np.random.default_rng(5)
    write_list(tmp_path / "val_list_videos.txt", [("a.mp4", 1), ("b.mp4", 2)])
    write_pose_pickle(tmp_path / "MA52_val.pkl", {}, [annotation("val/a", 1, person(rng))])
    with pytest.raises(AnnotationError, match=r"line 2, clip 'b\.mp4': no annotation with frame_dir 'b'"):
        MA52Dataset(tmp_path, "val", "pose")
    assert MA52Dataset(tmp_path, "val", "pose", skip_bad_clips=True).names() == ["a.mp4"]


def test_whole_file_errors_still_refused(tmp_path):
    p = tmp_path / "x.pkl"
    with open(p, "wb") as f:
        pickle.dump({"annotations": "nope"}, f)
    with pytest.raises(AnnotationError, match=r"x\.pkl: expected a list of annotation dicts"):
        PosePickle(p, "coco18_hands28")
    with open(p, "wb") as f:
        pickle.dump([{"keypoint": np.zeros((1, 2, 28, 2))}], f)
    with pytest.raises(AnnotationError, match=r"x\.pkl: annotation 0: expected a dict with 'frame_dir'"):
        PosePickle(p, "coco18_hands28")
