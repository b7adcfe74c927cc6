"""`mdn-fast train` / `mdn-fast eval` end to end on tiny synthetic runs (seconds, CPU)."""
import re
import subprocess
import sys

import pytest
import torch

from mdn_fast.cli import main
from mdn_fast.train import load_checkpoint

TINY = ["--num-clips", "48", "--val-clips", "24", "--epochs", "1", "--batch-size", "16", "--dim", "32",
        "--no-progress"]


def _metric(text, name):
    """``name``'s value on the last "held-out:" line (train's final line, eval's result line), not the
    "(chance Top-1 ...)" remark that ends those lines."""
    return float(re.findall(rf"held-out: .*?{name} (\d+\.\d+)", text)[-1])


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--seed", "3"]) == 0
    log = capsys.readouterr().out
    assert re.search(r"epoch  1/1  train loss \d+\.\d+  Top-1 \d+\.\d+  Top-5 \d+\.\d+  F1_mean \d+\.\d+", log)
    assert "clips/s" in log and "learned routing weights" in log
    for e in ("head", "face", "left_hand", "right_hand", "torso", "lower_body"):
        assert re.search(rf"{e}\s+0\.\d{{3}}\s+0\.\d{{3}}", log), e
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["modality"] == "pose" and ckpt["model_config"]["dim"] == 32
    assert len(ckpt["history"]) == 1 and 0 <= ckpt["metrics"]["top1"] <= 1
    assert main(["eval", str(out / "checkpoint.pt")]) == 0
    ev = capsys.readouterr().out
    # eval rebuilds the model and the same val split: the same numbers as the last training epoch
    for name in ("Top-1", "Top-5", "F1_mean"):
        assert _metric(ev, name) == _metric(log, name)


def test_same_seed_same_weights(tmp_path, capsys):
    for name in ("a", "b"):
        main(["train", *TINY, "--out", str(tmp_path / name), "--seed", "5"])
    capsys.readouterr()
    a, _ = load_checkpoint(str(tmp_path / "a" / "checkpoint.pt"))
    b, _ = load_checkpoint(str(tmp_path / "b" / "checkpoint.pt"))
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def test_train_rgb_tiny(tmp_path, capsys):
    main(["train", "--modality", "rgb+pose", "--backbone", "resnet18", "--image-size", "32", "--num-clips", "16",
          "--val-clips", "8", "--epochs", "1", "--batch-size", "8", "--dim", "32", "--no-progress",
          "--out", str(tmp_path)])
    assert "Top-1" in capsys.readouterr().out
    model, ckpt = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert model.sem.uses_rgb and ckpt["model_config"]["backbone"] == "resnet18"


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "0", "--out", str(tmp_path)])
    assert "--epochs: expected >= 1" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="checkpoint: no such file"):
        main(["eval", str(tmp_path / "missing.pt")])


def test_python_dash_m_help():
    r = subprocess.run([sys.executable, "-m", "mdn_fast", "train", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "--modality" in r.stdout and "--backbone" in r.stdout
