"""Resume and checkpoint safety (CPU, tiny synthetic runs of a few seconds).

- 2 epochs straight == 1 epoch, stop, resume, 1 more epoch: weights, optimizer state, scheduler state
  and every metric bit-identical (``torch.equal``); also with bf16 autocast on the CPU.
- Checkpoints load with ``weights_only=True``; another format version, a model config that does not
  fit the requested dataset or options, and state dicts with missing / unexpected keys or other shapes
  are refused with a ValueError that names what differs.
"""
import os
import pickle

import pytest
import torch

from mdn_fast import checkpoint as ckpt_io
from mdn_fast.cli import main
from mdn_fast.training import TrainConfig, evaluate_checkpoint, load_checkpoint, train
from tests._compare import assert_same_nested


def _cfg(out, **kw):
    base = dict(num_clips=32, val_clips=16, epochs=2, batch_size=8, dim=16, heads=2, seed=11, progress=False,
                out=str(out), warmup_epochs=0.5)
    base.update(kw)
    return TrainConfig(**base)


def _quiet(*a, **k):
    pass


def _assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _metrics(history):
    # clips_per_s is a wall-clock rate: the only entry allowed to differ
    return [{k: v for k, v in h.items() if k != "clips_per_s"} for h in history]


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_resume_is_bit_identical(tmp_path, amp):
    straight = train(_cfg(tmp_path / "a", amp=amp), log=_quiet)
    first = train(_cfg(tmp_path / "b", amp=amp, stop_after=1), log=_quiet)
    assert first["epoch"] == 1 and len(torch.load(tmp_path / "b" / "last.pt", weights_only=True)["history"]) == 1
    # spoil the process RNGs: resume must restore them, not rely on the process state
    torch.manual_seed(12345)
    torch.rand(100)
    resumed = train(_cfg(tmp_path / "b", amp=amp, resume="auto"), log=_quiet)
    assert resumed["epoch"] == 2
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    _assert_same_state(a["state_dict"], b["state_dict"])
    assert_same_nested(a["optimizer"], b["optimizer"], "optimizer")
    assert_same_nested(a["scheduler"], b["scheduler"], "scheduler")
    assert_same_nested(a["rng"], b["rng"], "rng")
    assert _metrics(a["history"]) == _metrics(b["history"]) == _metrics(resumed["history"])
    assert _metrics(straight["history"]) == _metrics(resumed["history"])


def test_resume_without_rng_restore_differs(tmp_path, monkeypatch):
    """The test above can fail: skipping the RNG restore changes epoch 2's batches and so the weights."""
    train(_cfg(tmp_path / "a"), log=_quiet)
    train(_cfg(tmp_path / "b", stop_after=1), log=_quiet)
    monkeypatch.setattr(ckpt_io, "set_rng_state", lambda *a, **k: None)
    train(_cfg(tmp_path / "b", resume=str(tmp_path / "b" / "last.pt")), log=_quiet)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_files_and_best(tmp_path):
    r = train(_cfg(tmp_path, epochs=2), log=_quiet)
    for name in ("last.pt", "best.pt", "checkpoint.pt"):
        c = torch.load(tmp_path / name, weights_only=True)     # no pickled code anywhere
        assert c["format"] == ckpt_io.FORMAT
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert last["kind"] == best["kind"] == "train_state" and last["epoch"] == 2
    top1 = [h["top1"] for h in r["history"]]
    assert best["epoch"] == 1 + top1.index(max(top1)) == last["best"]["epoch"]
    model = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert model["kind"] == "model" and "optimizer" not in model
    with pytest.raises(ValueError, match="holds no training state"):
        train(_cfg(tmp_path / "x", resume=str(tmp_path / "checkpoint.pt")), log=_quiet)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    train(_cfg(out, epochs=1), log=_quiet)
    return out


def _rewrite(src, dst, edit):
    """A deliberately edited checkpoint, saved with a fresh content hash (``ckpt_io.save``)."""
    c = ckpt_io.load(str(src))
    edit(c)
    ckpt_io.save(c, str(dst))
    return str(dst)


def test_refuses_other_format_version(tiny_ckpt, tmp_path):
    p = _rewrite(tiny_ckpt / "checkpoint.pt", tmp_path / "v9.pt", lambda c: c.update(format="mdn_fast.checkpoint/9"))
    with pytest.raises(ValueError, match=r"has format 'mdn_fast.checkpoint/9'; this version reads"):
        load_checkpoint(p)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match=r"has format None"):
        load_checkpoint(str(tmp_path / "foreign.pt"))


def test_reads_format_1_model_checkpoints(tiny_ckpt, tmp_path):
    """The first release's OUT/checkpoint.pt (format 1, no dataset/kind entries) still evaluates."""
    def to_v1(c):
        for k in ("kind", "dataset", "class_names", "epoch"):
            c.pop(k)
        c["format"] = "mdn_fast.checkpoint/1"
        c["train_config"] = {k: v for k, v in c["train_config"].items()
                             if k not in ("dataset", "root", "val_split", "amp", "resume", "stop_after")}
    p = _rewrite(tiny_ckpt / "checkpoint.pt", tmp_path / "v1.pt", to_v1)
    m_old = evaluate_checkpoint(p, log=_quiet)
    m_new = evaluate_checkpoint(str(tiny_ckpt / "checkpoint.pt"), log=_quiet)
    assert m_old["top1"] == m_new["top1"] and m_old["alpha"] == m_new["alpha"]
    with pytest.raises(ValueError, match="holds no training state"):
        train(_cfg(tmp_path / "r", epochs=1, resume=p), log=_quiet)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_refuses_pickled_code(tmp_path):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"format": ckpt_io.FORMAT, "x": _Evil()}, f, protocol=2)
    with pytest.raises(ValueError, match=r"cannot be loaded safely \(torch.load weights_only=True refused"):
        load_checkpoint(str(p))


def test_refuses_state_dict_mismatch(tiny_ckpt, tmp_path):
    def edit(c):
        sd = c["state_dict"]
        sd.pop("head.bias")
        sd["extra.weight"] = torch.randn(3)
        sd["head.weight"] = torch.randn(5, 7)
    p = _rewrite(tiny_ckpt / "checkpoint.pt", tmp_path / "bad.pt", edit)
    with pytest.raises(ValueError) as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert "missing keys ['head.bias']" in msg and "unexpected keys ['extra.weight']" in msg
    assert "head.weight: checkpoint (5, 7)" in msg and "vs model (12, 16)" in msg


def test_refuses_model_config_of_another_dataset(tiny_ckpt, tmp_path):
    from tests.data.test_readers_imigue import make_release
    make_release(tmp_path, "valid")
    with pytest.raises(ValueError, match=r"model config does not match dataset 'imigue': entities: .*"
                                         r"layout: checkpoint 'body25' vs requested 'miga22'; "
                                         r"num_body_classes: checkpoint 7 vs requested None; "
                                         r"num_classes: checkpoint 12 vs requested 32"):
        evaluate_checkpoint(str(tiny_ckpt / "checkpoint.pt"), dataset="imigue", root=str(tmp_path), log=_quiet)


def test_resume_refuses_other_model_options(tiny_ckpt, tmp_path):
    with pytest.raises(ValueError, match=r"model config does not match --dataset synthetic.*"
                                         r"dim: checkpoint 16 vs requested 32"):
        train(_cfg(tmp_path, dim=32, resume=str(tiny_ckpt / "last.pt")), log=_quiet)


def test_cli_resume_auto_and_stop_after(tmp_path, capsys):
    args = ["train", "--num-clips", "32", "--val-clips", "16", "--epochs", "2", "--batch-size", "8", "--dim", "16",
            "--heads", "2", "--no-progress", "--out", str(tmp_path)]
    assert main(args + ["--stop-after", "1", "--resume", "auto"]) == 0      # nothing to resume: fresh start
    log = capsys.readouterr().out
    assert "stopped after epoch 1/2" in log and "--resume auto" in log
    assert main(args + ["--resume", "auto"]) == 0
    log = capsys.readouterr().out
    assert "resumed from" in log and "epoch  2/2" in log and "epoch  1/2" not in log
