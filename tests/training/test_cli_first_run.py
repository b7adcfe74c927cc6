"""First-run friction through the CLI: a missing extra (matplotlib for ``report``, PyAV for RGB on a video
dataset) is refused before any long work with the ``pip install "mdn-fast[...]"`` line; ``--val-split`` on
the synthetic set is refused, not ignored; a text file given as a checkpoint is one clear line; and the
checkpoint files of a run: ``best.pt`` copied atomically, temporary files of killed runs removed."""
import os
import subprocess
import sys

import pytest
import torch

from mdn_fast import checkpoint as ckpt_io
from mdn_fast.cli import main
from mdn_fast.training import TrainConfig
from mdn_fast.training.extras import MissingExtraError, require_data_extras

from tests._ma52_release import make_release
from tests._paths import REPO

TINY = ["--num-clips", "32", "--val-clips", "16", "--epochs", "1", "--batch-size", "16", "--dim", "16",
        "--heads", "2", "--no-progress"]


def _error(capsys, args, command, code=1) -> str:
    assert main(args) == code
    cap = capsys.readouterr()
    assert cap.err.startswith(f"mdn-fast {command}: error: ") and cap.err.count("\n") == 1, cap.err
    assert "Traceback" not in cap.err
    return cap.err, cap.out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_report_without_matplotlib_refused_before_evaluating(tiny_run, tmp_path, monkeypatch, capsys):
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # `import matplotlib` raises ImportError
    err, out = _error(capsys, ["report", str(tiny_run / "checkpoint.pt"), "--out", str(tmp_path / "rep")], "report")
    assert "matplotlib (module 'matplotlib') is not installed" in err and 'pip install "mdn-fast[plots]"' in err
    assert out == "" and not (tmp_path / "rep").exists()          # nothing evaluated, nothing written


def test_rgb_on_video_dataset_without_pyav_refused_at_start(tmp_path, monkeypatch, capsys):
    root = make_release(tmp_path / "ma52")
    monkeypatch.setitem(sys.modules, "av", None)
    out = tmp_path / "run"
    err, log = _error(capsys, ["train", "--dataset", "ma52", "--root", str(root), "--modality", "rgb+pose",
                               "--out", str(out), "--no-progress"], "train")
    assert "PyAV (module 'av') is not installed" in err and "--dataset ma52 --modality rgb+pose decodes its videos" in err
    assert 'pip install "mdn-fast[video]"' in err and log == "" and not out.exists()
    # pose on MA-52, and rgb on the synthetic set (rendered frames), need no PyAV
    require_data_extras(TrainConfig.for_dataset("ma52", root=str(root), modality="pose"))
    require_data_extras(TrainConfig(modality="rgb+pose"))
    with pytest.raises(MissingExtraError, match=r"mdn-fast\[video\]"):
        require_data_extras(TrainConfig.for_dataset("ma52", root=str(root), modality="rgb"))


def test_extras_named_in_pyproject_and_readme():
    here = str(REPO)
    with open(os.path.join(here, "pyproject.toml")) as f:
        toml = f.read()
    assert 'video = ["av"]' in toml and 'plots = ["matplotlib"]' in toml
    with open(os.path.join(here, "README.md")) as f:
        readme = f.read()
    assert "[video]" in readme and "[plots]" in readme


def test_val_split_refused_on_synthetic(tiny_run, tmp_path, capsys):
    for args, flag in ((["train", "--val-split", "test", "--out", str(tmp_path)], "--val-split"),
                       (["eval", str(tiny_run / "checkpoint.pt"), "--split", "test"], "--split")):
        with pytest.raises(SystemExit) as e:
            main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"{flag}: --dataset synthetic has no split 'test' to evaluate on; expected " \
                                      f"'val'" in err, err
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="val_split: --dataset synthetic has no split 'train'"):
        TrainConfig(val_split="train")


def test_text_file_as_checkpoint_is_one_clear_line(tmp_path, capsys):
    """The issue: "a text file given as a checkpoint raises KeyError: 101"."""
    notes = tmp_path / "notes.txt"
    notes.write_text("epoch 3: top-1 41.2\n")
    for args, command in ((["eval", str(notes)], "eval"), (["report", str(notes)], "report"),
                          (["train", *TINY, "--resume", str(notes), "--out", str(tmp_path / "r")], "train")):
        err, _ = _error(capsys, args, command)
        assert f"checkpoint: {str(notes)!r} is not a checkpoint written by torch.save" in err and "looks like text" in err
        assert "KeyError" not in err


def test_best_copied_atomically_and_stale_temps_removed(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                                      # a pid no longer running
    stale = [out / f".last.pt.tmp-{dead.pid}-0a1b2c3d", out / f"best.pt.tmp{dead.pid}"]
    live = out / f".best.pt.tmp-{os.getppid()}-00ff00ff"            # a running writer's: kept
    for p in (*stale, live):
        p.write_bytes(b"partial")
    copies = []
    real = ckpt_io.atomic_copy
    monkeypatch.setattr(ckpt_io, "atomic_copy", lambda src, dst: copies.append((src, dst)) or real(src, dst))
    assert main(["train", *TINY, "--epochs", "3", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert f"removed 2 temporary file(s) of an interrupted run: {stale[0].name}, {stale[1].name}" in log
    assert not any(p.exists() for p in stale) and live.exists()
    # one atomic copy last.pt -> best.pt per epoch that improved Top-1 (the first one always does)
    top1 = [m["top1"] for m in torch.load(out / "last.pt", weights_only=True)["history"]]
    improved = [e for e in range(3) if all(top1[e] > t for t in top1[:e])]
    assert copies == [(str(out / "last.pt"), str(out / "best.pt"))] * len(improved)
    assert ckpt_io.load(str(out / "best.pt"))["epoch"] == improved[-1] + 1
    assert sorted(os.listdir(out)) == sorted(["best.pt", "checkpoint.pt", "last.pt", live.name])
