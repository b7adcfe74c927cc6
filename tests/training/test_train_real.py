"""``mdn-fast train --dataset ma52|imigue`` end to end on tiny real-format fixtures (the writers of
tests/data/test_readers_ma52.py and tests/data/test_readers_imigue.py): the right model for each dataset, the
metrics it has (no F1_mean without body classes), eval of the result, and the errors for a missing or
incomplete ``--root``."""
import importlib.util
import re

import pytest

from mdn_fast.cli import main
from mdn_fast.training import load_checkpoint
from tests.data.test_readers_imigue import make_release

try:   # the MA-52 fixture writes mp4 clips with PyAV; without it only the MA-52 tests skip
    from tests.data.test_readers_ma52 import ma52_root  # noqa: F401  (a pytest fixture)
except pytest.skip.Exception:
    ma52_root = None
needs_ma52 = pytest.mark.skipif(ma52_root is None, reason="PyAV missing: no MA-52 video fixture")

TINY = ["--epochs", "1", "--dim", "16", "--heads", "2", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def imigue_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imigue")
    make_release(root, "train")
    make_release(root, "valid")          # the challenge's name; found as --val-split val
    return root


def test_train_imigue(imigue_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "imigue", "--root", str(imigue_root), "--batch-size", "3", *TINY,
                 "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "dataset=imigue modality=pose" in log and "classes=32" in log and "clips train/val=6/6" in log
    assert "Top-1" in log and "Top-5" in log and "F1_mean" not in log     # no body classes on iMiGUE
    model, ckpt = load_checkpoint(str(out / "checkpoint.pt"))
    cfg = ckpt["model_config"]
    assert (cfg["num_classes"], cfg["num_body_classes"], cfg["layout"], cfg["modality"]) == (32, None, "miga22", "pose")
    assert model.entities == ("head", "face", "left_hand", "right_hand", "torso") and model.num_frames == 8
    assert ckpt["history"][0]["f1_mean"] is None and ckpt["history"][0]["num_clips"] == 6
    assert main(["eval", str(out / "checkpoint.pt")]) == 0
    assert "held-out: Top-1" in capsys.readouterr().out


@needs_ma52
def test_train_ma52_pose(ma52_root, tmp_path, capsys):
    out = tmp_path / "pose"
    assert main(["train", "--dataset", "ma52", "--root", str(ma52_root), "--modality", "pose", "--batch-size", "2",
                 *TINY, "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "dataset=ma52 modality=pose" in log and "classes=52" in log and "F1_mean" in log
    model, ckpt = load_checkpoint(str(out / "checkpoint.pt"))
    cfg = ckpt["model_config"]
    assert (cfg["num_classes"], cfg["num_body_classes"], cfg["layout"]) == (52, 7, "coco18_hands28")
    assert len(model.entities) == 6 and model.num_frames == 8 and not model.sem.uses_rgb
    assert ckpt["class_names"][51] == "name 51"                    # from label_name.txt
    parts = ckpt["history"][0]["f1_parts"]
    assert set(parts) == {"action_micro_f1", "action_macro_f1", "body_micro_f1", "body_macro_f1"}


@needs_ma52
def test_train_ma52_rgb_pose_tiny_backbone(ma52_root, tmp_path, capsys):
    out = tmp_path / "rgb"
    assert main(["train", "--dataset", "ma52", "--root", str(ma52_root), "--modality", "rgb+pose", "--backbone",
                 "resnet18", "--image-size", "64", "--batch-size", "2", *TINY, "--out", str(out)]) == 0
    assert "modality=rgb+pose" in capsys.readouterr().out
    model, ckpt = load_checkpoint(str(out / "checkpoint.pt"))
    assert model.sem.uses_rgb and ckpt["model_config"]["backbone"] == "resnet18"
    assert ckpt["train_config"]["image_size"] == 64


def _user_error(capsys, args) -> str:
    """``main(args)`` fails as a user error: exit status 1 and one ``mdn-fast train: error:`` message."""
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("mdn-fast train: error: ") and "Traceback" not in err
    return err


def test_root_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "ma52"])
    assert "--root: required for --dataset ma52" in capsys.readouterr().err
    assert re.search(r"--root '.*nowhere': no such folder",
                     _user_error(capsys, ["train", "--dataset", "imigue", "--root", str(tmp_path / "nowhere"), *TINY]))
    with pytest.raises(FileNotFoundError, match=r"--root '.*nowhere': no such folder"):      # --debug: the exception
        main(["train", "--dataset", "imigue", "--root", str(tmp_path / "nowhere"), "--debug", *TINY])
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _user_error(capsys, ["train", "--dataset", "imigue", "--root", str(empty), *TINY])
    assert "train_data.npy" in err and "valid_data.npy" in err
    have_av = importlib.util.find_spec("av") is not None
    err = _user_error(capsys, ["train", "--dataset", "ma52", "--root", str(empty), *TINY])
    if not have_av:   # rgb on MA-52 needs PyAV: checked before any file (the GPU machine's stack has none)
        assert 'pip install "mdn-fast[video]"' in err, err
        err = _user_error(capsys, ["train", "--dataset", "ma52", "--modality", "pose", "--root", str(empty), *TINY])
    assert "train_list_videos.txt" in err and "val_list_videos.txt" in err
    # lists present, but neither videos (rgb) nor pose: both named
    (empty / "train_list_videos.txt").write_bytes(b"a.mp4 1")
    (empty / "val_list_videos.txt").write_bytes(b"b.mp4 2")
    if have_av:
        err = _user_error(capsys, ["train", "--dataset", "ma52", "--root", str(empty), *TINY])
        assert "videos_train" in err and "videos_val" in err
    err = _user_error(capsys, ["train", "--dataset", "ma52", "--modality", "pose", "--root", str(empty), *TINY])
    assert re.search(r"pose.train\.pkl", err)


def test_dataset_option_errors(imigue_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--dataset", "imigue", "--modality", "rgb", "--root", str(imigue_root), *TINY])
    assert e.value.code == 2
    assert "--modality: the iMiGUE skeleton release has no video; expected 'pose'" in capsys.readouterr().err
    make_release(tmp_path, "train")
    make_release(tmp_path, "test", with_labels=False)
    err = _user_error(capsys, ["train", "--dataset", "imigue", "--root", str(tmp_path), "--val-split", "test", *TINY])
    assert "--val-split 'test': its labels are hidden" in err
