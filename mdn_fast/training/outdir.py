"""The output folder of a run (``--out``), checked and claimed before any work starts.

- ``check_writable(out)``: a probe file is created, written, fsynced and removed in ``out``; a folder that
  cannot be written (read-only, no permission, a full disk) is refused naming ``--out`` instead of being
  found at the first checkpoint, an epoch later.
- ``OutLock(out)``: one training run per folder. ``acquire`` creates ``OUT/.mdn-fast-train.lock``
  atomically (``O_CREAT | O_EXCL``) holding the pid, host, start time and command line of the run; a
  second run on the folder is refused naming the folder and the run that holds it. A lock whose run is
  gone is *stale* and taken over with a warning: on this host, its pid is not running (or is another
  process now: the start time of the pid differs, Linux); on another host (a shared filesystem), it was
  not refreshed for ``STALE_AFTER_S`` (the holder touches it every ``HEARTBEAT_S``). ``release`` (on
  every exit: success, error, Ctrl-C) removes it when it is still this run's. Under torchrun only rank 0
  takes it (``mdn_fast.training.loop``).
- ``check_free_space(out, nbytes)``: refuses a folder whose filesystem cannot hold one checkpoint.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time

LOCK_NAME = ".mdn-fast-train.lock"
#: How often a running training refreshes its lock's mtime, and after how long without a refresh the
#: lock of a run on another host counts as stale.
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0
#: A lock file that cannot be parsed (being written, or damaged) counts as stale after this long.
_UNREADABLE_AFTER_S = 60.0


class OutInUse(OSError):
    """``--out`` is held by another run (its lock is live)."""


def _flag(out: str) -> str:
    return f"--out {out}"


def check_writable(out: str) -> None:
    """Create, write, fsync and remove a probe file in ``out`` (OSError naming ``--out`` and the errno
    text when any step fails)."""
    probe = os.path.join(out, f".mdn-fast-probe-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"mdn-fast write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as e:
        try:
            os.unlink(probe)
        except OSError:
            pass
        raise _out_error(e, out, "cannot write files there") from None


def _out_error(e: OSError, out: str, what: str) -> OSError:
    reason = e.strerror or str(e) or type(e).__name__
    msg = f"{_flag(out)}: {what} ({reason}); the run writes its checkpoints there: choose a writable --out"
    return OSError(e.errno, msg) if e.errno is not None else OSError(msg)


def check_free_space(out: str, nbytes: int, log=print) -> None:
    """Refuse ``out`` when its filesystem has less than ``nbytes`` free (a lower bound of one checkpoint);
    warn when it may not hold the run's three files (``last.pt``, ``best.pt``, ``checkpoint.pt``) and a
    temporary copy. Quotas are not seen (``shutil.disk_usage``)."""
    try:
        free = shutil.disk_usage(out).free
    except OSError:
        return
    mb = lambda n: f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} kB"  # noqa: E731
    if free < nbytes:
        raise OSError(28, f"{_flag(out)}: {mb(free)} free on its filesystem, and one checkpoint of this model "
                          f"takes at least {mb(nbytes)} (weights + AdamW state); free space there or choose "
                          f"another --out")
    if free < 4 * nbytes:
        log(f"warning: {_flag(out)}: {mb(free)} free; last.pt, best.pt, checkpoint.pt and a temporary copy take "
            f"about {mb(4 * nbytes)}: a save may fail with 'No space left on device'")


# ------------------------------------------------------------------------------------------ the lock
def _proc_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot, ``/proc/PID/stat`` field 22) plus the boot id:
    tells a reused pid from the process that wrote a lock. None where ``/proc`` is missing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        start = stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{boot}:{start}"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True          # exists, owned by someone else
    return True


def _describe(info: dict) -> str:
    cmd = info.get("command")
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
            + (f": {cmd}" if cmd else ""))


class OutLock:
    """The lock of one training run on its ``--out`` folder (see the module docstring)."""

    def __init__(self, out: str):
        self.out = out
        self.path = os.path.join(out, LOCK_NAME)
        self.held = False
        self._token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread = None

    def _info(self) -> dict:
        pid = os.getpid()
        return {"pid": pid, "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "proc_start": _proc_start(pid), "token": self._token, "command": " ".join(sys.argv)}

    def _read(self) -> tuple[dict | None, float | None]:
        """``(the lock's content or None when unreadable, its age in seconds or None when gone)``."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return None, None
        except OSError:
            return None, 0.0
        try:
            info = json.loads(raw.decode())
            return (info if isinstance(info, dict) else None), age
        except (UnicodeDecodeError, ValueError):
            return None, age

    def _stale(self, info: dict | None, age: float) -> str | None:
        """Why the lock ``info`` (``age`` s since its last refresh) belongs to no running run, or None."""
        if info is None:
            return f"its lock file is unreadable and {age:.0f} s old" if age > _UNREADABLE_AFTER_S else None
        pid = info.get("pid")
        if info.get("host") == socket.gethostname() and isinstance(pid, int):
            if pid == os.getpid():
                return f"pid {pid} is this process, which holds no lock"
            if not _pid_running(pid):
                return f"pid {pid} is not running"
            now, then = _proc_start(pid), info.get("proc_start")
            if now is not None and then is not None and now != then:
                return f"pid {pid} is another process now"
            return None
        if age > STALE_AFTER_S:
            return (f"it runs on another host and has not refreshed its lock for {age / 60:.0f} min (a running "
                    f"training refreshes it every {HEARTBEAT_S:.0f} s)")
        return None

    def acquire(self, log=print) -> "OutLock":
        """Take the lock (see the module docstring); ``OutInUse`` when another run holds it."""
        data = json.dumps(self._info()).encode()
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info, age = self._read()
                if age is None:          # removed in the meantime: try again
                    continue
                why = self._stale(info, age)
                if why is None:
                    other = _describe(info) if info else "its lock file is being written"
                    raise OutInUse(16, f"{_flag(self.out)}: the folder is in use by another training run "
                                       f"({other}); wait for it to end or choose another --out (if that run is "
                                       f"gone, remove {self.path})") from None
                if self._take_over(info):
                    log(f"warning: {_flag(self.out)}: taking over the lock of a run that is no longer running "
                        f"({_describe(info) if info else 'unreadable lock'}; {why})")
                continue
            except OSError as e:
                raise _out_error(e, self.out, "cannot create its lock file") from None
            try:
                os.write(fd, data)
                os.fsync(fd)
            except OSError as e:
                os.close(fd)
                os.unlink(self.path)
                raise _out_error(e, self.out, "cannot write its lock file") from None
            os.close(fd)
            self.held = True
            self._thread = threading.Thread(target=self._heartbeat, name="mdn-fast-out-lock", daemon=True)
            self._thread.start()
            return self
        raise OutInUse(16, f"{_flag(self.out)}: could not take the lock {self.path} (other runs keep "
                           f"taking it); retry, or choose another --out")

    def _take_over(self, stale: dict | None) -> bool:
        """Move the stale lock aside (atomic rename), check that what moved is the lock judged stale (a
        concurrent taker may have replaced it), then drop it. False when another run got there first."""
        aside = f"{self.path}.stale-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            with open(aside, "rb") as f:
                moved = json.loads(f.read().decode())
        except (OSError, UnicodeDecodeError, ValueError):
            moved = None
        if moved != stale:             # a concurrent taker's live lock moved instead: put it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        """Remove the lock when it is still this run's (idempotent)."""
        if not self.held:
            return
        self.held = False
        self._stop.set()
        info, _ = self._read()
        if info is not None and info.get("token") == self._token:
            try:
                os.unlink(self.path)
            except OSError:
                pass
