"""``mdn-fast train / eval / check-data`` on MA-52 and iMiGUE releases as downloaded (generated files in the
real formats, tests/_ma52_release.py): the layout found from ``--root`` alone, each part overridden by
``--lists`` / ``--videos`` / ``--pose``, absolute paths in the checkpoint, bad clips refused with the
check's message or left out by ``--skip-bad-clips``, and the hidden test split's ``prediction.csv``."""
import logging
import pickle
import shutil
import sys

import numpy as np
import pytest
import torch

from mdn_fast.cli import main
from mdn_fast.data.ma52 import BODY_OF_ACTION
from mdn_fast.data.prediction_csv import read_prediction_csv
from mdn_fast.training import TrainConfig, build_datasets, evaluate_checkpoint

from tests._ma52_release import CLIPS, make_release, write_pose_pickle

TINY = ["--epochs", "1", "--dim", "16", "--heads", "2", "--workers", "0", "--no-progress"]
POSE = ["--dataset", "ma52", "--modality", "pose", "--batch-size", "2", *TINY]


def _quiet(*a, **k):
    pass


def _one_line_error(capsys, args, command="train", code=1, lines=1) -> str:
    """``main(args)`` is a user error: its exit status and one ``mdn-fast COMMAND: error:`` message (of
    ``lines`` lines; None: any), no traceback."""
    assert main(args) == code
    err = capsys.readouterr().err
    assert err.startswith(f"mdn-fast {command}: error: ") and "Traceback" not in err, err
    assert lines is None or err.count("\n") == lines, err
    return err


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("ma52"))        # lists, label_name.txt, pose pickles; no videos


@pytest.fixture(scope="module")
def ma52_ckpt(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *POSE, "--root", str(release), "--out", str(out)]) == 0
    return out / "checkpoint.pt"


def test_train_finds_release_layout_and_stores_absolute_paths(release, tmp_path, monkeypatch, capsys):
    """Relative --root/--out (the issue: "--root is stored relative in the checkpoint"); PyAV is not needed
    for pose; the checkpoint evaluates from another working folder."""
    monkeypatch.setitem(sys.modules, "av", None)             # import av fails: pose never needs it
    (tmp_path / "data").symlink_to(release)
    monkeypatch.chdir(tmp_path)
    assert main(["train", *POSE, "--root", "data", "--out", "run"]) == 0
    log = capsys.readouterr().out
    assert "dataset=ma52 modality=pose" in log and "clips train/val=3/2" in log
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    tc = ckpt["train_config"]
    assert tc["root"] == str(tmp_path / "data") and tc["out"] == str(tmp_path / "run")
    assert ckpt["class_names"][51] == "action 51"           # label_name.txt at the root, CRLF
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["eval", str(tmp_path / "run" / "checkpoint.pt")]) == 0
    assert "split=val clips=2" in capsys.readouterr().out


def _scatter(release, tmp_path):
    """The release's parts in separate places, none under the (empty) root."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(release / "annotations", tmp_path / "mylists")
    shutil.copytree(release / "MA-52_openpose_28kp", tmp_path / "mypose")
    return root


def test_lists_and_pose_override_each_part(release, tmp_path, capsys):
    root = _scatter(release, tmp_path)
    err = _one_line_error(capsys, ["train", *POSE, "--root", str(root), "--out", str(tmp_path / "x")], lines=None)
    assert "train_list_videos.txt" in err and "--lists / --videos / --pose point at parts stored elsewhere" in err
    out = tmp_path / "run"
    assert main(["train", *POSE, "--root", str(root), "--lists", str(tmp_path / "mylists"),
                 "--pose", str(tmp_path / "mypose"), "--out", str(out)]) == 0
    assert "clips train/val=3/2" in capsys.readouterr().out
    tc = torch.load(out / "checkpoint.pt", weights_only=True)["train_config"]
    assert tc["lists"] == str(tmp_path / "mylists") and tc["pose"] == str(tmp_path / "mypose")
    # one pyskl pickle holding every split (its usual form), given as a file
    anns, split = [], {}
    for s in ("train", "val"):
        with open(tmp_path / "mypose" / f"MA52_{s}.pkl", "rb") as f:
            d = pickle.load(f)
        anns += d["annotations"]
        split.update(d["split"])
    write_pose_pickle(tmp_path / "all.pkl", split, anns)
    assert main(["train", *POSE, "--root", str(root), "--lists", str(tmp_path / "mylists"),
                 "--pose", str(tmp_path / "all.pkl"), "--out", str(tmp_path / "run2")]) == 0
    assert "clips train/val=3/2" in capsys.readouterr().out
    # a list FILE would serve train and val alike: refused for training
    err = _one_line_error(capsys, ["train", *POSE, "--root", str(root), "--lists",
                                   str(tmp_path / "mylists" / "train_list_videos.txt"), "--pose",
                                   str(tmp_path / "mypose"), "--out", str(tmp_path / "run3")])
    assert "a list file serves every split, so train and --val-split 'val' would be the same clips" in err


def test_videos_override(release, tmp_path, capsys):
    """--videos: the clips' folder (here: existence only, --no-videos; PyAV-free)."""
    vids = tmp_path / "clips"
    for split in ("train", "val"):
        for name, _ in CLIPS[split]:
            (vids / split).mkdir(parents=True, exist_ok=True)
            (vids / split / name).write_bytes(b"not opened")
    args = ["check-data", "--dataset", "ma52", "--root", str(release), "--modality", "rgb", "--split", "train",
            "--split", "val", "--no-videos", "--no-progress"]
    assert main(args) == 1                                     # no raw_videos/ under the root
    assert "MA-52 video folder for split 'train'" in capsys.readouterr().out
    assert main([*args, "--videos", str(vids)]) == 0
    out = capsys.readouterr().out
    assert f"videos   {vids / 'train'}" in out and "videos_found 3" in out and "OK: training can use every clip" in out
    cfg = TrainConfig.for_dataset("ma52", root=str(release), modality="rgb", videos=str(vids), num_clips=0)
    train_set, val_set, _ = build_datasets(cfg)              # the dataset finds them too (no decoding yet)
    assert len(train_set) == 3 and train_set.video_dir == vids / "train"


def test_dataset_options_refused_where_not_read(tmp_path, capsys):
    for flag in (["--lists", "x"], ["--pose", "x"], ["--videos", "x"], ["--skip-bad-clips"]):
        with pytest.raises(SystemExit) as e:
            main(["train", "--dataset", "imigue", "--root", str(tmp_path), *flag])
        assert e.value.code == 2
        assert f"{flag[0]}: --dataset imigue does not read it (only ma52)" in capsys.readouterr().err


def test_check_data_exit_status_and_report(release, tmp_path, capsys):
    base = ["check-data", "--dataset", "ma52", "--modality", "pose", "--no-progress"]
    assert main([*base, "--root", str(release)]) == 0
    out = capsys.readouterr().out
    assert "OK: training can use every clip" in out and "[train] 3 clips, 0 unusable" in out
    assert "hidden test labels" in out
    # the same release through the overrides
    root = _scatter(release, tmp_path)
    assert main([*base, "--root", str(root), "--lists", str(tmp_path / "mylists"), "--pose",
                 str(tmp_path / "mypose")]) == 0
    capsys.readouterr()
    # a listed clip without pose entry: exit 1, file, line and clip named
    bad = make_release(tmp_path / "bad", clips={"train": CLIPS["train"], "val": CLIPS["val"]})
    with open(bad / "MA-52_openpose_28kp" / "MA52_train.pkl", "rb") as f:
        d = pickle.load(f)
    write_pose_pickle(bad / "MA-52_openpose_28kp" / "MA52_train.pkl", d["split"], d["annotations"][:1] + d["annotations"][2:])
    assert main([*base, "--root", str(bad), "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert "NOT OK" in out and "train_list_videos.txt, line 2 [0003_01_0002.mp4]: no annotation" in out
    _one_line_error(capsys, [*base, "--root", str(tmp_path / "nowhere")], "check-data")
    with pytest.raises(SystemExit) as e:
        main(["check-data", "--dataset", "synthetic", "--root", str(release)])
    assert e.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["check-data", "--dataset", "ma52"])
    assert e.value.code == 2 and "--root: required for --dataset ma52" in capsys.readouterr().err


def test_check_data_imigue(tmp_path, capsys):
    from tests.data.test_readers_imigue import make_release as make_imigue
    make_imigue(tmp_path, "train")
    make_imigue(tmp_path, "valid")
    assert main(["check-data", "--dataset", "imigue", "--root", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "check-data imigue" in out and "[train]" in out and "[val]" in out and "OK" in out
    (tmp_path / "valid_label.pkl").write_bytes(pickle.dumps((["a"], [1])))      # 1 label for 6 clips
    assert main(["check-data", "--dataset", "imigue", "--root", str(tmp_path), "--no-progress"]) == 1
    assert "1 labels but" in capsys.readouterr().out


@pytest.fixture
def bad_train_clip(tmp_path):
    """A release whose 2nd training clip (line 2) has no pose entry."""
    root = make_release(tmp_path / "rel", clips={"train": CLIPS["train"], "val": CLIPS["val"]})
    p = root / "MA-52_openpose_28kp" / "MA52_train.pkl"
    with open(p, "rb") as f:
        d = pickle.load(f)
    write_pose_pickle(p, d["split"], d["annotations"][:1] + d["annotations"][2:])
    return root


def test_bad_clip_refused_with_the_checks_message(bad_train_clip, tmp_path, capsys):
    err = _one_line_error(capsys, ["train", *POSE, "--root", str(bad_train_clip), "--out", str(tmp_path / "r")])
    assert "train_list_videos.txt: 1 of 3 listed clips cannot be used; first: line 2, clip '0003_01_0002.mp4': no " \
           "annotation with frame_dir '0003_01_0002'" in err
    assert f"`mdn-fast check-data --dataset ma52 --root {bad_train_clip}` lists every unusable clip; add " \
           "--skip-bad-clips to leave them out" in err
    assert "skip_bad_clips=True" not in err                   # the CLI's option, not the Python argument


def test_skip_bad_clips_logs_and_trains_without_them(bad_train_clip, tmp_path, capsys, caplog):
    out = tmp_path / "r"
    with caplog.at_level(logging.WARNING):
        assert main(["train", *POSE, "--root", str(bad_train_clip), "--skip-bad-clips", "--out", str(out)]) == 0
    assert "clips train/val=2/2" in capsys.readouterr().out
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("--skip-bad-clips: split 'train': leaving out 1 of 3 listed clips" in m and "line 2" in m
               and m.endswith(": 0003_01_0002.mp4") for m in msgs), msgs
    assert torch.load(out / "checkpoint.pt", weights_only=True)["train_config"]["skip_bad_clips"] is True



def test_skip_bad_clips_refuses_a_split_with_no_usable_clip(bad_train_clip, tmp_path, capsys, caplog):
    """Every val clip unusable (the pickle holds none of them): --skip-bad-clips cannot leave them all out
    and train on an empty split (it did: the screen's clips were excluded before the dataset could see
    them); it refuses, naming the pickle, with the warning logged once, and writes nothing."""
    root = bad_train_clip
    write_pose_pickle(root / "MA-52_openpose_28kp" / "MA52_val.pkl", {}, [])
    out = tmp_path / "r"
    with caplog.at_level(logging.WARNING):
        err = _one_line_error(capsys, ["train", *POSE, "--root", str(root), "--skip-bad-clips", "--out", str(out)])
    assert "val_list_videos.txt: 2 of 2 listed clips cannot be used" in err, err
    assert f"no listed clip is in {root / 'MA-52_openpose_28kp' / 'MA52_val.pkl'}" in err, err
    assert not (out / "checkpoint.pt").exists()
    skipped = [r.getMessage() for r in caplog.records if "leaving" in r.getMessage()]
    assert len(skipped) == 1 and "split 'train'" in skipped[0], skipped       # train's one clip, logged once

def test_skip_bad_clips_leaves_out_undecodable_videos(tmp_path, caplog):
    """The check opens every video: a clip that exists but cannot be decoded (which the dataset alone
    would only meet mid-epoch) is left out before training starts."""
    pytest.importorskip("av")
    root = make_release(tmp_path, videos=True, clips={"train": CLIPS["train"], "val": CLIPS["val"]})
    (root / "raw_videos" / "train" / "0003_01_0002.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    cfg = TrainConfig.for_dataset("ma52", root=str(root), modality="rgb+pose", progress=False)
    train_set, _, _ = build_datasets(cfg)                     # the dataset's cheap checks pass: the file exists
    assert len(train_set) == 3
    cfg.skip_bad_clips = True
    with caplog.at_level(logging.WARNING):
        train_set, _, _ = build_datasets(cfg)
    assert train_set.names() == ["0003_01_0001.mp4", "0004_02_0001.mp4"]
    assert any("leaving out 1 of 3" in r.getMessage() for r in caplog.records)


def test_eval_test_split_writes_prediction_csv(ma52_ckpt, tmp_path, capsys):
    csv = tmp_path / "sub" / "prediction.csv"
    assert main(["eval", str(ma52_ckpt), "--split", "test", "--prediction-csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "split=test clips=2" in out and "labels of split 'test' are hidden: no Top-1 / Top-5 / F1_mean" in out
    assert "held-out" not in out and "Top-1 " not in out.replace("no Top-1 /", "")   # no metric printed
    assert f"wrote {csv}" in out
    vids, act, body = read_prediction_csv(csv)
    assert vids == ["test0000.mp4", "test0001.mp4"]
    assert (body == np.asarray(BODY_OF_ACTION)[act]).all()             # body_pred_k = body_of(action_pred_k)
    lines = csv.read_text().splitlines()
    assert lines[0] == "vid,action_pred_1,action_pred_2,action_pred_3,action_pred_4,action_pred_5," \
                       "body_pred_1,body_pred_2,body_pred_3,body_pred_4,body_pred_5"
    # the rows are the model's ranking of the logits
    m, pred, *_ = evaluate_checkpoint(str(ma52_ckpt), split="test", prediction_csv=str(tmp_path / "p2.csv"),
                                      return_predictions=True, log=_quiet)
    assert m["hidden_labels"] is True and m["num_clips"] == 2 and "top1" not in m
    assert (pred["labels"] == -1).all()
    torch.testing.assert_close(torch.as_tensor(act), pred["logits"].argsort(1, descending=True)[:, :5])


def test_eval_test_split_without_csv_refused(ma52_ckpt, capsys):
    err = _one_line_error(capsys, ["eval", str(ma52_ckpt), "--split", "test"], "eval")
    assert "--split 'test': its labels are hidden (-1), so no metrics can be computed on it" in err
    assert "--prediction-csv PATH` writes the submission file" in err


def test_eval_val_with_csv_prints_metrics_and_writes(ma52_ckpt, tmp_path, capsys):
    csv = tmp_path / "val.csv"
    assert main(["eval", str(ma52_ckpt), "--prediction-csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "held-out: Top-1" in out and "F1_mean" in out and "hidden" not in out
    assert read_prediction_csv(csv)[0] == ["0005_01_0001.mp4", "0005_01_0002.mp4"]


def test_prediction_csv_refused_without_submission_format(tmp_path, capsys):
    from tests.data.test_readers_imigue import make_release as make_imigue
    make_imigue(tmp_path, "train")
    make_imigue(tmp_path, "valid")
    assert main(["train", "--dataset", "imigue", "--root", str(tmp_path), "--batch-size", "3", *TINY,
                 "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    err = _one_line_error(capsys, ["eval", str(tmp_path / "run" / "checkpoint.pt"), "--prediction-csv",
                                   str(tmp_path / "p.csv")], "eval")
    assert "--prediction-csv: --dataset imigue has no submission format" in err


def test_eval_after_the_data_moved(release, tmp_path, capsys):
    """Parts given under the old root move with --root; parts elsewhere can be given again."""
    old = tmp_path / "old"
    shutil.copytree(release, old)
    out = tmp_path / "run"
    assert main(["train", *POSE, "--root", str(old), "--lists", str(old / "annotations"), "--pose",
                 str(old / "MA-52_openpose_28kp"), "--out", str(out)]) == 0
    capsys.readouterr()
    new = tmp_path / "new"
    old.rename(new)
    ckpt = str(out / "checkpoint.pt")
    err = _one_line_error(capsys, ["eval", ckpt], "eval")
    assert str(old) in err
    assert main(["eval", ckpt, "--root", str(new)]) == 0                   # lists/pose rebased under the new root
    assert "held-out: Top-1" in capsys.readouterr().out
    assert main(["eval", ckpt, "--root", str(new), "--pose", str(new / "MA-52_openpose_28kp" / "MA52_val.pkl")]) == 0
    assert "held-out: Top-1" in capsys.readouterr().out


@pytest.mark.parametrize("extra, named, fix", [
    ([], "batch_size", "the whole training split has only 3; use --batch-size 3 or less"),
    (["--num-clips", "2"], "num_clips", "(--num-clips 2 kept only the first clips); raise --num-clips (0 = all)"),
])
def test_too_few_clips_for_a_batch_names_the_fix_that_applies(release, tmp_path, capsys, extra, named, fix):
    """A real split used whole cannot be made bigger by --num-clips (the advice it used to get); cut by
    --num-clips, it can. Refused before any epoch, nothing written."""
    args = ["train", *POSE, "--root", str(release), "--out", str(tmp_path / "run"), *extra]
    args[args.index("--batch-size") + 1] = "4"
    err = _one_line_error(capsys, args)
    assert f"error: {named}: " in err and fix in err, err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_too_few_synthetic_clips_still_point_at_num_clips():
    from mdn_fast.training.loop import too_few_clips
    msg = too_few_clips(TrainConfig.for_dataset("synthetic", batch_size=64, num_clips=40), 40)
    assert msg.startswith("num_clips: 40 training clips make no full batch of batch_size=64")
    assert msg.endswith("raise --num-clips or lower --batch-size")
    cfg = TrainConfig.for_dataset("ma52", root="x", modality="pose", batch_size=8)
    assert too_few_clips(cfg, 7, world_size=2).endswith("only 7; use --batch-size 6 or less")
    assert too_few_clips(cfg, 0).endswith("the training split has no clip")
    assert too_few_clips(cfg, 3, world_size=4).endswith("only 3; it has fewer clips than the 4 processes")
