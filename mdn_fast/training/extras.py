"""Optional dependencies (the package's extras), checked before any long work starts: a run that needs
PyAV or matplotlib is refused at once with the ``pip install`` line, not after an hour of training or a
whole evaluation.

- ``[video]`` (PyAV, module ``av``): decoding video files (``--modality rgb`` / ``rgb+pose`` on a dataset
  read from videos, e.g. MA-52; the synthetic set renders its frames and needs none).
- ``[plots]`` (matplotlib): ``mdn-fast report``.
"""
from __future__ import annotations

import importlib

#: extra -> (module, what it is)
EXTRAS = {"video": ("av", "PyAV"), "plots": ("matplotlib", "matplotlib")}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require_extra(extra: str, why: str) -> None:
    """Import the extra's module, or raise ``MissingExtraError`` saying ``why`` it is needed and how to
    install it."""
    module, name = EXTRAS[extra]
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"{name} (module {module!r}) is not installed ({type(e).__name__}: {e}); {why}; "
                                f"install it with: pip install \"mdn-fast[{extra}]\" (or pip install {module})") from None


def require_data_extras(cfg) -> None:
    """What reading ``cfg``'s dataset in ``cfg.modality`` needs (PyAV for video files)."""
    from .registry import get_dataset
    if cfg.modality != "pose" and get_dataset(cfg.dataset).video_files:
        require_extra("video", f"--dataset {cfg.dataset} --modality {cfg.modality} decodes its videos with it")
