"""Nothing lost (issue 11.7): atomic checkpoint writes and copies (a kill mid-write leaves the previous
file), stale temporary files removed, a content hash verified on load (bit flips refused as corrupted,
cut files as truncated, a text file as not a checkpoint), and the files still load with plain
``torch.load(weights_only=True)``."""
import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch

from mdn_fast import checkpoint as ckpt_io


def _state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"format": ckpt_io.FORMAT, "kind": "train_state", "model_config": {"dim": 16, "entities": ["head"]},
            "state_dict": {"w": torch.randn(64, 33, generator=g), "b": torch.randn(5, generator=g).bfloat16(),
                           "mask": torch.rand(7, generator=g) > 0.5},
            "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"betas": (0.9, 0.99),
                                                                                        "params": [0]}]},
            "history": [{"top1": 0.25, "loss": float("nan")}], "epoch": 1, "rng": [{"x": None}],
            "scheduler": {}, "best": {"epoch": 1, "top1": 0.25}}


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def _temps(d):
    return [n for n in os.listdir(d) if ".tmp" in n]


def test_roundtrip_and_plain_torch_load(tmp_path):
    p = ckpt_io.save(_state(), str(tmp_path / "last.pt"))
    assert _temps(tmp_path) == []
    got = ckpt_io.load(p, need_train_state=True)
    assert _same(got, _state())
    raw = torch.load(p, weights_only=True)                     # no code, as before
    assert raw[ckpt_io.INTEGRITY_KEY]["sha256"] == ckpt_io.content_digest(_state())
    # re-saving what was loaded gives the same hash (stable across save/load)
    ckpt_io.save(got, str(tmp_path / "again.pt"))
    assert torch.load(tmp_path / "again.pt", weights_only=True)[ckpt_io.INTEGRITY_KEY] == raw[ckpt_io.INTEGRITY_KEY]


def _data_offset(path, member_suffix):
    """File offset of the stored bytes of the zip member ending in ``member_suffix``."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member_suffix))
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        n, m = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
    return info.header_offset + 30 + n + m, info.file_size


def _flip(path, offset, bit=4):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ (1 << bit)]))


def _largest_tensor_member(path):
    with zipfile.ZipFile(path) as z:
        return max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size).filename


@pytest.mark.parametrize("where", ["tensor_start", "tensor_middle", "tensor_end"])
def test_bit_flip_in_weights_refused_as_corrupted(tmp_path, where):
    p = ckpt_io.save(_state(), str(tmp_path / "best.pt"))
    off, size = _data_offset(p, _largest_tensor_member(p))
    _flip(p, off + {"tensor_start": 0, "tensor_middle": size // 2, "tensor_end": size - 1}[where])
    # plain torch.load would hand back the flipped weights without a word
    assert not torch.equal(torch.load(p, weights_only=True)["state_dict"]["w"], _state()["state_dict"]["w"])
    with pytest.raises(ValueError, match=r"best\.pt' is corrupted"):
        ckpt_io.load(p)


@pytest.mark.filterwarnings("ignore::UserWarning")       # a flipped protocol byte makes torch warn first
def test_bit_flip_in_pickle_refused_as_corrupted(tmp_path):
    p = ckpt_io.save(_state(), str(tmp_path / "last.pt"))
    off, size = _data_offset(p, "data.pkl")
    refused = 0
    for k in range(1, size - 1, max(1, size // 23)):
        q = tmp_path / f"flip{k}.pt"
        q.write_bytes(open(p, "rb").read())
        _flip(q, off + k, bit=0)
        try:
            ckpt_io.load(str(q))
        except ValueError as e:
            assert "corrupted" in str(e) or "cannot be loaded safely" in str(e), str(e)
            refused += 1
    assert refused >= 15                    # every flip that changes the content is caught


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5, -30])
def test_truncated_file_refused(tmp_path, keep):
    p = ckpt_io.save(_state(), str(tmp_path / "best.pt"))
    data = open(p, "rb").read()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    with open(p, "wb") as f:
        f.write(data[:n])
    with pytest.raises(ValueError, match=r"best\.pt' is truncated"):
        ckpt_io.load(p)


@pytest.mark.parametrize("text", ["epoch 3: top1 0.61\n", "{\"format\": \"mdn_fast.checkpoint/2\"}", "e"])
def test_text_file_refused_clearly(tmp_path, text):
    p = tmp_path / "notes.pt"
    p.write_text(text)
    with pytest.raises(ValueError, match=r"notes\.pt' is not a checkpoint written by torch\.save .*looks like text"):
        ckpt_io.load(str(p))


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    p = ckpt_io.save(_state(0), str(tmp_path / "last.pt"))
    real_save = torch.save

    def dies_midway(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        f.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="No space left"):
        ckpt_io.save(_state(1), p)
    monkeypatch.undo()
    assert _same(ckpt_io.load(p), _state(0)) and _temps(tmp_path) == []
    # atomic_copy: the same for last -> best
    best = ckpt_io.save(_state(2), str(tmp_path / "best.pt"))
    monkeypatch.setattr(ckpt_io.shutil, "copyfileobj", lambda fin, fout, n: (fout.write(fin.read(50)), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        ckpt_io.atomic_copy(p, best)
    monkeypatch.undo()
    assert _same(ckpt_io.load(best), _state(2)) and _temps(tmp_path) == []
    ckpt_io.atomic_copy(p, best)
    assert open(best, "rb").read() == open(p, "rb").read() and _temps(tmp_path) == []


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_kill_during_save_then_clean_stale_temps(tmp_path):
    """A process SIGKILLed while writing best.pt leaves the old best.pt loadable and a temp file that
    clean_stale_temps removes (and nothing else)."""
    best = ckpt_io.save(_state(0), str(tmp_path / "best.pt"))
    child = textwrap.dedent(f"""
        import os, sys, time, torch
        from mdn_fast import checkpoint as c
        def stuck(src, dst):                      # the temp is complete: stop right before the rename
            print("ready", flush=True)
            time.sleep(60)
        os.replace = stuck
        s = torch.load({best!r}, weights_only=True)
        s["epoch"] = 99
        c.save(s, {best!r})
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    temps = _temps(tmp_path)
    assert len(temps) == 1 and temps[0].startswith(".best.pt.tmp-")
    assert ckpt_io.load(best)["epoch"] == 1                  # the previous best.pt, intact
    # other leftovers: an earlier version's temp (dead pid), a live process's temp, an unrelated file
    dead = _dead_pid()
    (tmp_path / f"last.pt.tmp{dead}").write_bytes(b"PK\x03\x04partial")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".last.pt.tmp-{sleeper.pid}-abcd1234"
        live.write_bytes(b"being written")
        (tmp_path / "notes.tmp").write_text("mine")
        removed = ckpt_io.clean_stale_temps(str(tmp_path))
        assert sorted(os.path.basename(r) for r in removed) == sorted([temps[0], f"last.pt.tmp{dead}"])
        assert live.exists() and (tmp_path / "notes.tmp").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert ckpt_io.clean_stale_temps(str(tmp_path / "absent")) == []
