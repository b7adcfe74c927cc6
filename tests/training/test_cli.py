"""`mdn-fast train` / `mdn-fast eval` end to end on tiny synthetic runs (seconds, CPU)."""
import re
import subprocess
import sys

import pytest
import torch

from mdn_fast.cli import main
from mdn_fast.training import load_checkpoint

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
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "0", "--out", str(tmp_path)])
    assert e.value.code == 2 and "--epochs: expected >= 1" in capsys.readouterr().err
    # a user error: one line on stderr, exit status 1, no traceback ...
    assert main(["eval", str(tmp_path / "missing.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mdn-fast eval: error: checkpoint: no such file") and err.count("\n") == 1
    assert "Traceback" not in err
    # ... unless --debug asks for it (after the command, or before it)
    with pytest.raises(FileNotFoundError, match="checkpoint: no such file"):
        main(["eval", str(tmp_path / "missing.pt"), "--debug"])
    with pytest.raises(FileNotFoundError, match="checkpoint: no such file"):
        main(["--debug", "eval", str(tmp_path / "missing.pt")])


@pytest.mark.parametrize("flag", ["--grad-clip", "--warmup-epochs", "--lr", "--weight-decay", "--lambda-mac"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_refused(tmp_path, capsys, flag, value):
    """``--grad-clip nan`` used to mean "no clipping" (nan > 0 is False); every float option refuses it."""
    with pytest.raises(SystemExit) as e:
        main(["train", f"{flag}={value}", "--out", str(tmp_path)])   # "=": argparse takes "-inf" for an option
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{flag}: expected a finite number, got {float(value)!r}" in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())          # refused before anything ran


def test_switches_left_unset_take_the_preset():
    from mdn_fast.cli import _parser
    p = _parser()
    a = p.parse_args(["train"])
    assert a.amp is None and a.progress is None and a.dataset is None and a.epochs is None
    a = p.parse_args(["train", "--amp", "--no-progress", "--dataset", "imigue", "--epochs", "3"])
    assert a.amp is True and a.progress is False and a.dataset == "imigue" and a.epochs == 3


def test_python_dash_m_help():
    r = subprocess.run([sys.executable, "-m", "mdn_fast", "train", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "--modality" in r.stdout and "--backbone" in r.stdout
