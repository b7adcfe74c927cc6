"""Ctrl-C during ``mdn-fast train``: stop at a step boundary, save, say how to resume (exit status 130).

``StopOnInterrupt`` is installed around the epoch loop of a single-process run (main thread): the first
SIGINT only asks the loop to stop after the current step; the loop then saves ``OUT/last.pt`` (mid-epoch:
the steps of the epoch done so far, the epoch's sample order and the running loss, so ``--resume`` runs
exactly the epoch's remaining batches) and raises ``TrainingInterrupted``. A second SIGINT raises
``KeyboardInterrupt`` at once; the loop still saves when the interrupt fell outside an optimizer update.
Under torchrun the handler is not installed (ranks would stop at different steps and block each other's
collectives): a ``KeyboardInterrupt`` there is handled the same way, rank 0 saving its state without
collectives. While the interrupted run saves, SIGINT is ignored (torchrun forwards a second one).

``TrainingInterrupted`` (a ``KeyboardInterrupt``) carries what was saved; the CLI prints it with the
command that resumes and exits 130.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

#: The exit status of a run stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C. ``message``: what was done and saved; ``saved``: the checkpoint written
    now (None when nothing needed or could be saved); ``resumable``: ``OUT/last.pt`` exists, so
    ``--resume auto --out OUT`` continues; ``out``: the output folder; ``main``: raised on rank 0 (the
    process that reports)."""

    def __init__(self, message: str, *, out: str, saved: str | None, resumable: bool, main: bool = True):
        super().__init__(message)
        self.message, self.out, self.saved, self.resumable, self.main = message, out, saved, resumable, main

    def __str__(self) -> str:
        return self.message


class StopOnInterrupt:
    """SIGINT handler for the epoch loop (see the module docstring). ``requested`` is set by the first
    SIGINT; ``enabled=False`` (torchrun, or not the main thread) leaves SIGINT as it is."""

    def __init__(self, enabled: bool = True, log=None):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._log("Ctrl-C: stopping after the current step, then saving (Ctrl-C again to stop at once)")

    def __enter__(self) -> "StopOnInterrupt":
        if self.enabled:
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
            except ValueError:         # not the main thread of the main interpreter
                self.enabled = False
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@contextmanager
def sigint_ignored():
    """Ignore SIGINT while an interrupted run saves (main thread only; elsewhere a no-op)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:
            previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def ignore_sigint_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a terminal's Ctrl-C reaches the workers too; they ignore it (and would
    otherwise exit, failing the next batch) while the main process stops the run and shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
