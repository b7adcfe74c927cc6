"""Fork-safe frame conversion (pixel format, size) for every PyAV frame mdn_fast converts.

PyAV 18 converts frames with one ``VideoReformatter`` per thread: a cached FFmpeg ``SwsContext`` that
scales with FFmpeg's automatic slice threads. A fork (DataLoader workers, ``ProcessPoolExecutor`` on
Linux) copies that context but not its threads, and the child's next conversion waits forever for them
(av 18.1.1: a DataLoader worker hung in ``avpriv_slicethread_free`` whenever the main process had
converted one frame before the loader started). So mdn_fast never uses PyAV's shared reformatter: it
converts with its own, made again in each process, and keeps the one a fork inherited alive (freeing it
would wait on the same missing threads). PyAV is imported on first use.
"""
from __future__ import annotations

import functools
import os
import threading

_local = threading.local()
_inherited: list = []               # reformatters made before a fork: never freed in the child


def _reformatter():
    r = getattr(_local, "reformatter", None)
    if r is None or _local.pid != os.getpid():
        if r is not None:
            _inherited.append(r)
        from av.video.reformatter import VideoReformatter
        r = _local.reformatter = VideoReformatter()
        _local.pid = os.getpid()
    return r


@functools.cache
def _takes_threads(cls) -> bool:
    """Whether ``cls.reformat`` has a ``threads`` argument (PyAV 17 and 18 do; 14.0 to 16.1 do not), read from the
    signature line Cython writes first in its docstring; without one, PyAV's default is kept."""
    return "threads=" in (cls.reformat.__doc__ or "").split("\n", 1)[0]


def reformat_frame(frame, *, threads: int | None = None, **kwargs):
    """``frame.reformat(**kwargs)`` (PyAV's arguments: width, height, format, interpolation, ...) through
    this process's own reformatter; safe after a fork. ``threads``: scaling threads (0 = FFmpeg's choice);
    None, or a PyAV without the argument, keeps PyAV's default."""
    r = _reformatter()
    if threads is not None and _takes_threads(type(r)):
        kwargs["threads"] = threads
    return r.reformat(frame, **kwargs)


def frame_to_rgb24(frame, threads: int | None = None):
    """uint8 ``[H, W, 3]`` RGB array of a decoded PyAV frame (what ``frame.to_ndarray(format="rgb24")``
    gives), converted fork-safely; ``threads`` as in ``reformat_frame``."""
    return reformat_frame(frame, format="rgb24", threads=threads).to_ndarray()
