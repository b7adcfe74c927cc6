"""Nothing silent, nothing lost in ``mdn-fast train`` and its CLI (issue 20, round 2: items 2, 3, 8, 10).

Tiny synthetic runs (4 steps of 8 clips per epoch, seconds on a CPU); each case gives a correct result or
one line naming the option, file or folder and the fix:

- Resume applies the options that the optimizer and scheduler states would override (``--lr``,
  ``--weight-decay``, ``--warmup-epochs``, ``--epochs``, ``--batch-size``): the LR of every resumed step
  is the new schedule's (recorded per optimizer step), and the checkpoint records what ran; a changed
  ``--seed`` is refused.
- One run per ``--out``: a live lock (another process on this host, a fresh lock of another host)
  refuses a second run naming the folder and the run; a stale one (dead pid, reused pid, another host's
  lock not refreshed) is taken over with a warning; the lock goes on every exit. A real second run
  against a training in a subprocess is refused too.
- ``--out`` that cannot be written, a filesystem without room for one checkpoint, and a ``label_name.txt``
  that does not name every class are refused before the first step; a save that fails (full disk)
  names the file being written, not a temporary file, and the previous checkpoint stays.
- Ctrl-C: exit status 130, ``OUT/last.pt`` saved wherever the interrupt lands (mid-epoch, during the
  evaluation, during the save; not a half-applied optimizer update), the printed resume command
  continues bit-identically to an uninterrupted run; a real SIGINT to a subprocess, too.
- Every size/count option of every command is refused below its smallest meaningful value, naming it;
  a folder given as a checkpoint names the checkpoints inside; ``report`` says ``report``; the docs'
  Python snippets import what they use.
"""
import ast
import errno
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from mdn_fast import checkpoint as ckpt_io
from mdn_fast.cli import _parser, main
from mdn_fast.training import ConfigError, TrainConfig, evaluate_checkpoint, loop, lr_factor, train
from mdn_fast.training import report as report_mod

from tests._compare import assert_same_nested
from tests._ma52_release import make_release
from tests._paths import REPO

LOCK_NAME = ".mdn-fast-train.lock"           # mdn_fast.training.outdir.LOCK_NAME
#: 32 clips / batch 8 = 4 steps per epoch; warm-up 2 steps
ARGS = ["--num-clips", "32", "--val-clips", "16", "--batch-size", "8", "--dim", "16", "--heads", "2", "--seed", "11",
        "--warmup-epochs", "0.5", "--no-progress"]


def _run(capsys, args, code):
    rc = main(args)
    cap = capsys.readouterr()
    assert rc == code, cap.out[-2000:] + cap.err[-2000:]
    return cap


def _one_line_error(cap, command="train"):
    assert cap.err.startswith(f"mdn-fast {command}: error: ") and cap.err.count("\n") == 1, cap.err
    assert "Traceback" not in cap.err
    return cap.err


class _Steps:
    """Counts training steps (``loop.forward_loss`` calls); ``fail_at``: raise ``exc`` at that call."""

    def __init__(self, monkeypatch, fail_at=None, exc=KeyboardInterrupt):
        self.n, self.fail_at, self.exc = 0, fail_at, exc
        real = loop.forward_loss

        def counted(*a, **k):
            self.n += 1
            if self.n == self.fail_at:
                raise self.exc()
            return real(*a, **k)
        monkeypatch.setattr(loop, "forward_loss", counted)


def _nth_call_raises(monkeypatch, owner, name, n, exc):
    real = getattr(owner, name)
    calls = [0]

    def patched(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise exc
        return real(*a, **k)
    monkeypatch.setattr(owner, name, patched)


def _assert_same_run(a_path, b_path):
    """Two ``last.pt`` of the same run: weights, optimizer, schedule, RNG states and metrics bit-identical
    (``clips_per_s``, a wall-clock rate, aside)."""
    a, b = (torch.load(p, weights_only=True) for p in (a_path, b_path))
    for key in ("state_dict", "optimizer", "scheduler", "rng", "best", "epoch"):
        assert_same_nested(a[key], b[key], key)
    strip = lambda h: [{k: v for k, v in m.items() if k != "clips_per_s"} for m in h]  # noqa: E731
    assert_same_nested(strip(a["history"]), strip(b["history"]), "history")
    assert "partial" not in b


_STRAIGHT = {}


def _straight_run(tmp_path_factory, workers=0):
    """An uninterrupted 2-epoch run: what every interrupted-and-resumed run must equal (one per
    ``--workers``: persistent workers draw the data order differently)."""
    if workers not in _STRAIGHT:
        out = tmp_path_factory.mktemp(f"straight{workers}")
        assert main(["train", *ARGS, "--epochs", "2", "--workers", str(workers), "--out", str(out)]) == 0
        _STRAIGHT[workers] = out
    return _STRAIGHT[workers]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return _straight_run(tmp_path_factory)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """The first epoch of a 2-epoch run (``--stop-after 1``): a folder to resume from."""
    out = tmp_path_factory.mktemp("one_epoch")
    assert main(["train", *ARGS, "--epochs", "2", "--stop-after", "1", "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------------------------------ item 2: resume
def _record_optimizer_steps(monkeypatch):
    seen = []
    real = torch.optim.AdamW.step

    def step(self, *a, **k):
        seen.append((self.param_groups[0]["lr"], self.param_groups[0]["weight_decay"]))
        return real(self, *a, **k)
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    return seen


@pytest.mark.parametrize("change", [["--lr", "0.1"], ["--weight-decay", "0.3"], ["--warmup-epochs", "1.5"],
                                    ["--epochs", "3"], ["--batch-size", "16"],
                                    ["--lr", "0.02", "--epochs", "3", "--warmup-epochs", "2"]],
                         ids=["lr", "weight_decay", "warmup", "epochs", "batch_size", "several"])
def test_resume_applies_changed_optimizer_and_schedule_options(one_epoch, tmp_path, monkeypatch, capsys, change):
    """The issue: a changed --lr on resume was logged and recorded but the checkpoint's optimizer and
    scheduler state won. Every step of the resumed run uses the new options' LR and weight decay."""
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    given = dict(zip(change[::2], change[1::2]))
    lr, wd = float(given.get("--lr", 3e-3)), float(given.get("--weight-decay", 0.05))
    epochs, batch = int(given.get("--epochs", 2)), int(given.get("--batch-size", 8))
    warmup_epochs = float(given.get("--warmup-epochs", 0.5))
    seen = _record_optimizer_steps(monkeypatch)
    args = ["train", *ARGS, "--epochs", "2", *change, "--out", str(out), "--resume", "auto"]
    cap = _run(capsys, args, 0)
    spe = 32 // batch
    warmup, total = max(1, round(warmup_epochs * spe)), epochs * spe
    expected = [(lr * lr_factor(spe + i, warmup, total), wd) for i in range((epochs - 1) * spe)]
    assert len(seen) == len(expected)
    for (got_lr, got_wd), (want_lr, want_wd) in zip(seen, expected):
        assert got_lr == pytest.approx(want_lr, rel=1e-12) and got_wd == want_wd, (seen, expected)
    last = torch.load(out / "last.pt", weights_only=True)
    cfg = last["train_config"]                             # what is recorded is what ran
    assert (cfg["lr"], cfg["weight_decay"], cfg["epochs"], cfg["batch_size"]) == (lr, wd, epochs, batch)
    assert last["history"][-1]["lr"] == pytest.approx(lr * lr_factor(total, warmup, total), rel=1e-12)
    assert last["optimizer"]["param_groups"][0]["initial_lr"] == lr and last["scheduler"]["base_lrs"] == [lr]
    if "--lr" in given:
        assert f"options changed since, applied from here on: lr 0.003 -> {lr!r}" in cap.out


def test_resume_refuses_changed_seed(one_epoch, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    args = ["train", *[a if a != "11" else "12" for a in ARGS], "--epochs", "2", "--out", str(out), "--resume", "auto"]
    err = _one_line_error(_run(capsys, args, 1))
    assert f"--seed 12: {out / 'last.pt'} was trained with --seed 11" in err and "resume with --seed 11" in err
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1          # untouched


# ------------------------------------------------------------------------------------------ item 3: the lock
def _proc_start(pid):
    try:
        from mdn_fast.training.outdir import _proc_start
    except ImportError:          # a version without the lock
        return None
    return _proc_start(pid)


def _write_lock(out: Path, pid: int, host=None, **extra) -> dict:
    info = {"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-01 00:00:00 +0000",
            "proc_start": _proc_start(pid), "token": "0123", "command": "mdn-fast train (the other run)",
            **extra}
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps(info))
    return info


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def sleeper():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield p
    p.kill()
    p.wait()


def test_second_run_on_a_folder_in_use_is_refused(tmp_path, monkeypatch, capsys, sleeper):
    out = tmp_path / "run"
    _write_lock(out, sleeper.pid)
    before = (out / LOCK_NAME).read_bytes()
    steps = _Steps(monkeypatch)
    err = _one_line_error(_run(capsys, ["train", *ARGS, "--epochs", "1", "--out", str(out)], 1))
    assert (f"--out {out}: the folder is in use by another training run (pid {sleeper.pid} on "
            f"{socket.gethostname()}, started 2026-01-01 00:00:00 +0000: mdn-fast train (the other run))") in err
    assert f"remove {out / LOCK_NAME}" in err
    assert steps.n == 0 and (out / LOCK_NAME).read_bytes() == before and sorted(os.listdir(out)) == [LOCK_NAME]


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    dead = _dead_pid()
    _write_lock(out, dead)
    cap = _run(capsys, ["train", *ARGS, "--epochs", "1", "--out", str(out)], 0)
    assert (f"warning: --out {out}: taking over the lock of a run that is no longer running (pid {dead} on "
            f"{socket.gethostname()}") in cap.out and f"pid {dead} is not running" in cap.out
    assert sorted(os.listdir(out)) == ["best.pt", "checkpoint.pt", "last.pt"]          # released at the end


def test_lock_released_on_error(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _Steps(monkeypatch, fail_at=2, exc=lambda: ValueError("boom"))
    err = _one_line_error(_run(capsys, ["train", *ARGS, "--epochs", "1", "--out", str(out)], 1))
    assert "boom" in err and not (out / LOCK_NAME).exists()


def test_lock_staleness_rules(tmp_path, sleeper):
    from mdn_fast.training import outdir
    from mdn_fast.training.outdir import STALE_AFTER_S, OutInUse, OutLock
    assert outdir.LOCK_NAME == LOCK_NAME
    logs = []
    # another host, refreshed recently: in use (its pid cannot be checked from here)
    _write_lock(tmp_path, sleeper.pid, host="elsewhere")
    with pytest.raises(OutInUse, match=rf"in use by another training run \(pid {sleeper.pid} on elsewhere"):
        OutLock(str(tmp_path)).acquire(logs.append)
    # ... not refreshed for longer than STALE_AFTER_S: its run is gone
    old = time.time() - STALE_AFTER_S - 60
    os.utime(tmp_path / LOCK_NAME, (old, old))
    lock = OutLock(str(tmp_path)).acquire(logs.append)
    assert "has not refreshed its lock" in logs[-1]
    mine = json.loads((tmp_path / LOCK_NAME).read_text())
    assert mine["pid"] == os.getpid() and mine["host"] == socket.gethostname()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    # this host, the pid alive but another process than the one that wrote the lock (a reused pid)
    _write_lock(tmp_path, sleeper.pid, proc_start="some-other-boot:1")
    if outdir._proc_start(sleeper.pid) is not None:
        OutLock(str(tmp_path)).acquire(logs.append).release()
        assert f"pid {sleeper.pid} is another process now" in logs[-1]
    # an unreadable lock: being written (fresh) -> in use; old -> stale
    (tmp_path / LOCK_NAME).write_text("{")
    with pytest.raises(OutInUse, match="its lock file is being written"):
        OutLock(str(tmp_path)).acquire(logs.append)
    os.utime(tmp_path / LOCK_NAME, (old, old))
    OutLock(str(tmp_path)).acquire(logs.append).release()
    assert "unreadable" in logs[-1]
    # release removes only its own lock
    lock = OutLock(str(tmp_path)).acquire(logs.append)
    _write_lock(tmp_path, sleeper.pid)
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == sleeper.pid


# ------------------------------------------------------------------------------------------ item 8
def test_unwritable_out_refused_before_the_first_step(tmp_path, monkeypatch, capsys):
    """The issue: a read-only --out was found after a whole epoch, with a temporary file's name."""
    out = tmp_path / "run"
    out.mkdir()
    real_open = os.open

    def read_only(path, flags, *a, **k):
        if str(path).startswith(str(out)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a, **k)
    monkeypatch.setattr(os, "open", read_only)
    steps = _Steps(monkeypatch)
    err = _one_line_error(_run(capsys, ["train", *ARGS, "--epochs", "1", "--out", str(out)], 1))
    assert f"--out {out}: cannot write files there (Read-only file system)" in err and "choose a writable --out" in err
    assert ".tmp" not in err and "probe" not in err and steps.n == 0 and not any(out.iterdir())


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_refused(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    try:
        steps = _Steps(monkeypatch)
        err = _one_line_error(_run(capsys, ["train", *ARGS, "--epochs", "1", "--out", str(out)], 1))
        assert f"--out {out}: cannot write files there (Permission denied)" in err and steps.n == 0
    finally:
        out.chmod(0o755)


def test_filesystem_without_room_for_a_checkpoint_refused(tmp_path, monkeypatch, capsys):
    from mdn_fast.training import outdir
    out = tmp_path / "run"
    monkeypatch.setattr(outdir.shutil, "disk_usage", lambda p: namedtuple("U", "total used free")(10**6, 10**6, 2048))
    steps = _Steps(monkeypatch)
    err = _one_line_error(_run(capsys, ["train", *ARGS, "--epochs", "1", "--out", str(out)], 1))
    assert f"--out {out}: 2 kB free on its filesystem, and one checkpoint of this model takes at least" in err
    assert steps.n == 0 and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("patch", ["torch.save", "checkpoint.save"])
def test_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch, capsys, patch):
    """The issue: a full disk said ``[Errno 28] No space left on device`` with no path. The second
    epoch's save fails, inside the atomic write (``torch.save``) or as a whole (``checkpoint.save``)."""
    out = tmp_path / "run"
    owner, name = (torch, "save") if patch == "torch.save" else (ckpt_io, "save")
    _nth_call_raises(monkeypatch, owner, name, 2, OSError(errno.ENOSPC, "No space left on device"))
    err = _one_line_error(_run(capsys, ["train", *ARGS, "--epochs", "2", "--out", str(out)], 1))
    assert err.rstrip().endswith(f"error: [Errno 28] cannot write {out / 'last.pt'}: No space left on device "
                                 f"(the previous last.pt is unchanged)"), err
    assert ".tmp" not in err and not [n for n in os.listdir(out) if ".tmp" in n]
    assert ckpt_io.load(str(out / "last.pt"))["epoch"] == 1 and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("count", [2, 53])
def test_label_names_must_name_every_class(tmp_path, monkeypatch, capsys, count):
    """The issue: a label_name.txt with 2 of 52 names was accepted and `report` died in matplotlib."""
    root = make_release(tmp_path / "ma52")
    names = root / "label_name.txt"
    names.write_text("\n".join(f"{i}\taction {i}" for i in range(count)))
    steps = _Steps(monkeypatch)
    args = ["train", "--dataset", "ma52", "--root", str(root), "--modality", "pose", "--epochs", "1", "--batch-size",
            "1", "--dim", "16", "--heads", "2", "--workers", "0", "--no-progress", "--out", str(tmp_path / "run")]
    err = _one_line_error(_run(capsys, args, 1))
    assert f"{names}: {count} class names, but --dataset ma52 has 52 classes" in err and "remove the file" in err
    assert steps.n == 0


# ------------------------------------------------------------------------------------------ item 10: Ctrl-C
def _resume_line(err: str) -> list:
    line = next(ln for ln in err.splitlines() if ln.startswith("resume with: "))
    argv = shlex.split(line[len("resume with: "):])
    assert argv[:2] == ["mdn-fast", "train"] and argv[-2:] == ["--resume", "auto"]
    return argv[2:]


@pytest.mark.parametrize("where", ["step", "step_workers", "evaluation", "save", "optimizer_update"])
def test_ctrl_c_saves_and_the_resume_command_continues_exactly(tmp_path_factory, tmp_path, monkeypatch, capsys, where):
    """Ctrl-C (KeyboardInterrupt) wherever it lands: exit status 130, what was done is saved (a
    half-applied optimizer update excepted: the previous last.pt stays), and the printed command resumes
    to the same weights, optimizer, schedule, RNG states and metrics as the uninterrupted run (also with
    DataLoader worker processes, which iterate the sampler once more per epoch)."""
    workers = 2 if where == "step_workers" else 0
    straight = _straight_run(tmp_path_factory, workers)
    out = tmp_path / "run"
    if where.startswith("step"):        # epoch 1, during the 3rd step's forward: 2 steps done
        _Steps(monkeypatch, fail_at=3)
        said = f"interrupted (Ctrl-C) at epoch 1/2, step 2/4: saved {out / 'last.pt'} (2 of the epoch's 4 steps"
    elif where == "evaluation":         # epoch 1: all 4 steps done, not evaluated
        _nth_call_raises(monkeypatch, loop, "evaluate", 1, KeyboardInterrupt())
        said = f"interrupted (Ctrl-C) at epoch 1/2, step 4/4: saved {out / 'last.pt'} (all 4 steps of the epoch"
    elif where == "save":               # epoch 1 recorded, best.pt being copied
        _nth_call_raises(monkeypatch, ckpt_io, "atomic_copy", 1, KeyboardInterrupt())
        said = f"interrupted (Ctrl-C) after epoch 1/2: saved {out / 'last.pt'}"
    else:                               # epoch 2, inside its 2nd optimizer step
        _nth_call_raises(monkeypatch, torch.optim.AdamW, "step", 6, KeyboardInterrupt())
        said = (f"interrupted (Ctrl-C) at epoch 2/2, step 1/4: during an optimizer update, so this half-applied "
                f"state is not saved; {out / 'last.pt'} is unchanged")
    cap = _run(capsys, ["train", *ARGS, "--epochs", "2", "--workers", str(workers), "--out", str(out)], 130)
    assert cap.err.startswith("mdn-fast train: " + said), cap.err
    assert "Traceback" not in cap.err and not (out / LOCK_NAME).exists()
    resume = _resume_line(cap.err)
    assert resume[resume.index("--out") + 1] == str(out)
    monkeypatch.undo()
    cap = _run(capsys, ["train", *resume, "--resume", "auto"], 0)
    assert "resumed from" in cap.out
    _assert_same_run(straight / "last.pt", out / "last.pt")


@pytest.mark.parametrize("workers", [0, 2])
def test_training_order_is_that_of_a_shuffled_loader(tmp_path, monkeypatch, workers):
    """The sampler that records each epoch's order (for a mid-epoch save) changes no run: the batches the
    loop trains on are, epoch after epoch, those of ``DataLoader(shuffle=True, generator=...)`` iterated
    through ``tqdm.auto`` as before (it calls ``iter()`` on the loader when constructed: two loader starts,
    two draws from the generator per epoch)."""
    from tqdm.auto import tqdm
    from mdn_fast.training.loader import loader_options
    from mdn_fast.training.registry import build_datasets

    cfg = TrainConfig(num_clips=24, val_clips=8, batch_size=8, dim=16, heads=2, workers=workers, epochs=2,
                      progress=False, out=str(tmp_path), seed=5)
    trained = []
    real = loop.forward_loss
    monkeypatch.setattr(loop, "forward_loss", lambda net, batch, *a, **k: (trained.append(batch["label"].tolist()),
                                                                           real(net, batch, *a, **k))[1])
    train(cfg, log=lambda *a: None)
    train_set = build_datasets(cfg)[0]
    plain = torch.utils.data.DataLoader(train_set, batch_size=8, shuffle=True, drop_last=True,
                                        generator=torch.Generator().manual_seed(5), **loader_options(workers, "cpu"))
    expected = [b["label"].tolist() for _ in range(2) for b in tqdm(plain, disable=True)]
    assert trained == expected


def test_sigint_to_a_running_training(tmp_path, capsys):
    """A real Ctrl-C (SIGINT) to `python -m mdn_fast train` in a subprocess, after its first epoch has
    started: exit status 130, the steps done saved, the resume command printed; while it runs, a second
    training on its --out is refused, naming it."""
    out = tmp_path / "run"
    child = textwrap.dedent(f"""
        import sys, time
        from mdn_fast.training import loop
        real = loop.forward_loss
        def slow(*a, **k):
            print("step", flush=True)
            time.sleep(1.0)
            return real(*a, **k)
        loop.forward_loss = slow
        from mdn_fast.cli import main
        sys.exit(main({["train", *ARGS, "--epochs", "2", "--out", str(out)]!r}))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + sys.path))
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        steps = 0
        while steps < 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            steps += line.strip() == "step"
        err = _one_line_error(_run(capsys, ["train", *ARGS, "--epochs", "1", "--out", str(out)], 1))
        assert f"--out {out}: the folder is in use by another training run (pid {proc.pid} on" in err
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Ctrl-C: stopping after the current step, then saving" in stderr and "Traceback" not in stderr
    saved = re.escape(str(out / "last.pt"))
    said = rf"interrupted \(Ctrl-C\) (at epoch 1/2, step [1-3]/4|after epoch 1/2): saved {saved}"
    assert re.search(said, stderr), stderr
    assert _resume_line(stderr)
    last = ckpt_io.load(str(out / "last.pt"), need_train_state=True)
    if "after epoch 1/2" in stderr:       # the signal came during the epoch's last step: the epoch was finished
        assert last["epoch"] == 1 and "partial" not in last
    else:
        assert last["epoch"] == 0 and 1 <= last["partial"]["steps"] <= 3
    assert not (out / LOCK_NAME).exists()


# ------------------------------------------------------------------------------------------ item 10: CLI
def _int_options():
    p = _parser()
    for cmd, sub in p.commands.items():
        for a in sub._actions:
            if a.option_strings and (a.type is int or getattr(a.type, "__name__", "").startswith("integer")):
                yield cmd, a


_POSITIONAL = {"eval": ["x.pt"], "report": ["x.pt"], "check-data": ["--dataset", "ma52"], "prepare-videos": ["a", "b"]}


def test_every_size_and_count_option_has_a_lower_bound(capsys):
    """`eval --batch-size 0` meant the default and -2 gave torch's message: every integer option of every
    command refuses values below its range, naming the option, before anything runs."""
    checked = []
    for cmd, action in _int_options():
        flag = action.option_strings[0]
        if cmd == "train":
            if action.dest == "seed":
                continue
            with pytest.raises(ConfigError) as e:           # main: exit status 2, "--flag: expected ..."
                TrainConfig.for_dataset("synthetic", **{action.dest: -5})
            assert e.value.field == action.dest and e.value.flag_message().startswith(f"{flag}: expected >=")
        else:
            with pytest.raises(SystemExit) as e:
                _parser().parse_args([cmd, *_POSITIONAL[cmd], f"{flag}=-5"])
            assert e.value.code == 2 and f"argument {flag}: expected >=" in capsys.readouterr().err
        checked.append(f"{cmd} {flag}")
    assert {"eval --batch-size", "eval --num-clips", "report --batch-size", "report --num-clips",
            "prepare-videos --workers", "check-data --max-problems", "train --batch-size"} <= set(checked)
    for cmd, args in (("eval", ["--batch-size", "0"]), ("eval", ["--num-clips", "0"]),
                      ("report", ["--batch-size", "0"]), ("prepare-videos", ["--workers", "0"]),
                      ("prepare-videos", ["--gop", "0"]), ("prepare-videos", ["--crf", "52"])):
        with pytest.raises(SystemExit) as e:
            _parser().parse_args([cmd, *_POSITIONAL[cmd], *args])
        assert e.value.code == 2 and f"argument {args[0]}: expected" in capsys.readouterr().err
    for name, value in (("lr", 0.0), ("lr", -1.0), ("weight_decay", -0.1), ("lambda_mac", -1.0)):
        with pytest.raises(ConfigError, match=rf"^{name}: expected"):
            TrainConfig(**{name: value})
    with pytest.raises(ValueError, match=r"batch_size: expected >= 1"):
        evaluate_checkpoint("unused.pt", batch_size=0)


def test_eval_batch_size_zero_refused_on_the_command_line(straight, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", str(straight / "checkpoint.pt"), "--batch-size", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "mdn-fast eval: error: argument --batch-size: expected >= 1, got 0" in err


def test_folder_given_as_checkpoint(straight, tmp_path, capsys):
    listed = ", ".join(str(straight / n) for n in ("last.pt", "best.pt", "checkpoint.pt"))
    for args, command in ((["eval", str(straight)], "eval"), (["report", str(straight)], "report"),
                          (["train", *ARGS, "--resume", str(straight), "--out", str(tmp_path / "r")], "train")):
        err = _one_line_error(_run(capsys, args, 1), command)
        assert f"checkpoint: {str(straight)!r} is a folder, not a checkpoint file; the checkpoints in it: {listed}; " \
               f"pass one of them" in err, err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _one_line_error(_run(capsys, ["eval", str(empty)], 1), "eval")
    assert "is a folder, not a checkpoint file; it holds no *.pt file" in err


def test_report_header_names_report(straight, tmp_path, monkeypatch, capsys):
    for name in ("plot_routing", "plot_confusion", "plot_curves"):      # the plots themselves: test_report.py
        monkeypatch.setattr(report_mod, name, lambda *a, n=name, **k: ["x.png"] if n == "plot_routing" else "x.png")
    cap = _run(capsys, ["report", str(straight / "checkpoint.pt"), "--out", str(tmp_path / "rep")], 0)
    assert cap.out.startswith(f"mdn-fast report {straight / 'checkpoint.pt'}: dataset=synthetic") and \
        "mdn-fast eval" not in cap.out


# ------------------------------------------------------------------------------------------ item 10: docs
def _python_blocks(path: Path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def _package_names() -> set:
    import mdn_fast
    import mdn_fast.data
    import mdn_fast.data.check
    import mdn_fast.ops
    import mdn_fast.training
    names = set()
    for mod in (mdn_fast, mdn_fast.data, mdn_fast.data.check, mdn_fast.ops, mdn_fast.training):
        names |= {n for n in getattr(mod, "__all__", dir(mod)) if not n.startswith("_") and n[:1].isupper()}
    return names


def test_doc_snippets_import_the_package_names_they_use():
    """docs/training.md's check_dataset snippet used MA52Dataset without importing it: no snippet of the
    README or docs/ may use a class of the package it does not import (placeholders such as `loader` or
    `MyDataset`, the reader's own objects, are not the package's)."""
    exported = _package_names()
    assert {"MA52Dataset", "TrainConfig", "MicroDualNet", "DatasetEntry"} <= exported
    missing = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in _python_blocks(path):
            tree = ast.parse(block)
            bound = {a.asname or a.name.split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
            bound |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            missing += [f"{path.name}: {name}" for name in sorted((used - bound) & exported)]
    assert not missing, missing


def test_check_dataset_snippet_runs(tmp_path, capsys):
    root = make_release(tmp_path / "ma52", videos=True)
    block = next(b for b in _python_blocks(REPO / "docs" / "training.md") if "check_dataset(" in b)
    exec(compile(block.replace("/data/ma52", str(root)), "docs/training.md", "exec"), {})
    assert "clips" in capsys.readouterr().out
