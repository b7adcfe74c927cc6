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

import os
import threading

_local = threading.local()
_inherited: list = []               # reformatters made before a fork: never freed in the child
_takes_threads: bool | None = None  # older PyAV (14) has no ``threads`` argument; 17 and 18 have


def _reformatter():
    r = getattr(_local, "reformatter", None)
    if r is None or _local.pid != os.getpid():
        if r is not None:
            _inherited.append(r)
        from av.video.reformatter import VideoReformatter
        r = _local.reformatter = VideoReformatter()
        _local.pid = os.getpid()
    return r


def _scale_threads() -> int:
    """1 inside a DataLoader worker (the workers are the parallelism, as for decoding), else 0: FFmpeg's
    automatic choice, PyAV's default."""
    import torch.utils.data
    return 1 if torch.utils.data.get_worker_info() is not None else 0


def reformat_frame(frame, **kwargs):
    """``frame.reformat(**kwargs)`` (PyAV's arguments: width, height, format, interpolation, ...) through
    this process's own reformatter; safe after a fork."""
    global _takes_threads
    r = _reformatter()
    if _takes_threads is not False:
        try:
            out = r.reformat(frame, threads=_scale_threads(), **kwargs)
            _takes_threads = True
            return out
        except TypeError:
            if _takes_threads:          # the argument is known: the TypeError is about something else
                raise
            _takes_threads = False
    return r.reformat(frame, **kwargs)


def frame_to_rgb24(frame):
    """uint8 ``[H, W, 3]`` RGB array of a decoded PyAV frame (what ``frame.to_ndarray(format="rgb24")``
    gives), converted fork-safely."""
    return reformat_frame(frame, format="rgb24").to_ndarray()
