"""Sharing a trained ``MicroDualNet`` the way the ecosystem does: a folder (or a Hugging Face hub repo)
holding ``config.json`` and ``model.safetensors``; no pickle anywhere, so loading runs no code.

- ``MicroDualNet.save_pretrained(dir)`` / ``save_pretrained(model, dir)``: writes
  ``config.json`` (every constructor argument that fixes the architecture, plus the op ``backend``,
  ``"format": "mdn_fast.MicroDualNet"``, ``"format_version"`` and the writing ``mdn_fast_version``),
  ``model.safetensors`` (``model.state_dict()``: parameters and buffers, each in its own dtype; tensors
  sharing storage are stored once, as ``safetensors.torch.save_model`` does) and a ``README.md`` model
  card when the folder has none. Each file is written atomically (temporary file, fsync, rename).
- ``MicroDualNet.from_pretrained(dir_or_repo_id, **overrides)``: rebuilds the same model (bit for bit:
  same parameters, buffers and dtypes). A local folder needs nothing extra; anything else is taken for a
  hub repo id and fetched with ``huggingface_hub.snapshot_download`` when that package is installed
  (``pip install "mdn-fast[hub]"``); it is never required.
- ``export_checkpoint(CKPT, DIR)`` (``mdn-fast export CKPT DIR``): a training checkpoint as that folder.

Compatibility: a ``config.json`` is refused, naming the file and what to do, when its ``format`` is not
``FORMAT``, its ``format_version`` is newer than ``FORMAT_VERSION`` (written by a newer mdn_fast:
upgrade), a required key is missing, or a key is unknown. Overrides at load time: only the runtime
options in ``RUNTIME_OPTIONS`` (``backend``, ``validate_values``, ``lambda_mac``: none changes what the
weights compute); the architecture keys are fixed by the weights and refused.
"""
from __future__ import annotations

import json
import os
import re

import torch

from . import checkpoint as ckpt_io

FORMAT = "mdn_fast.MicroDualNet"
#: The newest config format this version reads and the one it writes.
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
#: Constructor arguments that fix the architecture: all required in a format_version-1 config.
ARCH_KEYS = ("num_classes", "num_body_classes", "modality", "layout", "entities", "num_frames", "dim", "heads",
             "depth", "tau", "lambda_mac", "backbone", "feature_stride", "roi_size")
#: Keys of the format itself (required), and optional keys (with their default when absent).
FORMAT_KEYS = ("format", "format_version")
OPTIONAL_KEYS = {"backend": "auto", "mdn_fast_version": None}
#: from_pretrained(..., **overrides) may set these: runtime choices that leave the forward's function
#: unchanged (backend: every backend computes the same function; validate_values: eager NaN/Inf checks;
#: lambda_mac: the MAC loss weight, training only).
RUNTIME_OPTIONS = ("backend", "validate_values", "lambda_mac")
_HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError:
        raise ImportError("safetensors is not installed (a dependency of mdn-fast): pip install safetensors") from None
    return st


def _version() -> str:
    import mdn_fast
    return mdn_fast.__version__


# ------------------------------------------------------------------------------------------ config
def model_to_config(model) -> dict:
    """The ``config.json`` content of ``model`` (a ``MicroDualNet``): its architecture from
    ``model.config``, the backend, the format tags. ``backbone_weights`` (a local path that only seeded
    the initialisation) is left out: the weights are in ``model.safetensors``."""
    mc = model.config
    extra = sorted(set(mc) - set(ARCH_KEYS) - {"backend", "backbone_weights"})
    if extra:   # a constructor argument this format does not know: it would be lost on the way
        raise RuntimeError(f"save_pretrained: model.config has {extra}, which config.json format_version "
                           f"{FORMAT_VERSION} does not hold; add them to mdn_fast.pretrained (ARCH_KEYS or "
                           f"OPTIONAL_KEYS) and raise FORMAT_VERSION if older readers cannot ignore them")
    cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, "mdn_fast_version": _version()}
    for k in ARCH_KEYS:
        v = mc[k]
        cfg[k] = list(v) if isinstance(v, tuple) else v
    cfg["backend"] = mc.get("backend", "auto")
    return cfg


def check_config(cfg, path: str = CONFIG_NAME) -> dict:
    """Validate a loaded ``config.json`` (format, version, keys) and return the ``MicroDualNet`` kwargs
    it describes. ValueError naming ``path``, the key or the versions, and the fix."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a JSON object, got a JSON {type(cfg).__name__}; not a folder written "
                         f"by MicroDualNet.save_pretrained")
    fmt = cfg.get("format")
    if fmt != FORMAT:
        raise ValueError(f"{path}: 'format' is {fmt!r}, expected {FORMAT!r}: not a MicroDualNet config (written by "
                         f"MicroDualNet.save_pretrained or mdn-fast export)")
    ver = cfg.get("format_version")
    writer = cfg.get("mdn_fast_version")
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 1:
        raise ValueError(f"{path}: 'format_version' is {ver!r}, expected an integer >= 1")
    if ver > FORMAT_VERSION:
        by = f"mdn_fast {writer}" if isinstance(writer, str) else "a newer mdn_fast"
        raise ValueError(f"{path}: format_version {ver} (written by {by}) is newer than this mdn_fast "
                         f"{_version()} reads (format_version <= {FORMAT_VERSION}); upgrade mdn_fast "
                         f"(pip install -U mdn-fast) to load it")
    known = set(FORMAT_KEYS) | set(ARCH_KEYS) | set(OPTIONAL_KEYS)
    unknown = sorted(k for k in cfg if k not in known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} in a format_version {ver} config; this mdn_fast "
                         f"{_version()} knows {sorted(known)}. Written by a newer mdn_fast"
                         + (f" ({writer})" if isinstance(writer, str) else "")
                         + "? Upgrade mdn_fast (pip install -U mdn-fast)")
    missing = [k for k in ARCH_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"{path}: missing required key(s) {missing}; the file was edited or not written by "
                         f"MicroDualNet.save_pretrained: export the model again (mdn-fast export CKPT DIR)")
    kwargs = {k: cfg[k] for k in ARCH_KEYS}
    if not isinstance(kwargs["entities"], list) or not all(isinstance(e, str) for e in kwargs["entities"]):
        raise ValueError(f"{path}: 'entities' is {kwargs['entities']!r}, expected a list of entity names")
    kwargs["entities"] = tuple(kwargs["entities"])
    kwargs["backend"] = cfg.get("backend", OPTIONAL_KEYS["backend"])
    return kwargs


def read_config(path: str) -> dict:
    """Load and check ``path`` (a ``config.json``); returns the MicroDualNet kwargs."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; a folder written by MicroDualNet.save_pretrained holds "
                                f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return check_config(cfg, path)


# ------------------------------------------------------------------------------------------- files
def _replace_atomically(path: str, write_tmp) -> None:
    """``write_tmp(tmp_path)`` writes a temporary beside ``path``, renamed over it once fsynced (the
    checkpoints' own ``replace_atomically``)."""
    ckpt_io.replace_atomically(path, write_tmp)


def _write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    _replace_atomically(path, write)


def model_card(cfg: dict, extra: str = "") -> str:
    """A short ``README.md`` for the folder (hub model card front matter, the architecture, how to load)."""
    arch = ", ".join(f"{k}={cfg[k]!r}" for k in ARCH_KEYS)
    return ("---\nlibrary_name: mdn-fast\ntags:\n- mdn_fast\n- micro-dualnet\n- micro-action-recognition\n"
            "- pytorch\n---\n\n"
            "# Micro-DualNet (mdn_fast)\n\n"
            f"A `mdn_fast.MicroDualNet` saved by mdn_fast {cfg.get('mdn_fast_version')} "
            f"(format {cfg['format']} v{cfg['format_version']}): `{CONFIG_NAME}` holds the architecture, "
            f"`{WEIGHTS_NAME}` the weights (safetensors: no pickle).\n\n"
            "```python\nimport mdn_fast\nmodel = mdn_fast.MicroDualNet.from_pretrained(\"PATH_OR_REPO_ID\").eval()\n```\n\n"
            f"Architecture: {arch}.\n" + (f"\n{extra.strip()}\n" if extra.strip() else ""))


def save_pretrained(model, save_directory, *, model_card_text: str | None = None) -> str:
    """Write ``model`` (a ``MicroDualNet``) to ``save_directory`` (created if needed): ``model.safetensors``,
    ``config.json`` and, unless the folder already has one, a ``README.md`` model card
    (``model_card_text`` replaces it: written even over an existing one). Other files are left alone.
    Returns the folder."""
    st = _safetensors()
    from .nn.micro_dualnet import MicroDualNet
    for wrapper_attr in ("_orig_mod", "module"):   # torch.compile's OptimizedModule, DDP / DataParallel
        if not isinstance(model, MicroDualNet) and isinstance(getattr(model, wrapper_attr, None), torch.nn.Module):
            model = getattr(model, wrapper_attr)
    if not isinstance(model, MicroDualNet):
        raise TypeError(f"save_pretrained: expected a MicroDualNet, got {type(model).__name__}")
    d = os.fspath(save_directory)
    if os.path.exists(d) and not os.path.isdir(d):
        raise NotADirectoryError(f"save_pretrained: {d!r} exists and is not a folder")
    os.makedirs(d, exist_ok=True)
    cfg = model_to_config(model)
    # save_model stores tensors that share storage once (metadata: dropped name -> kept name) and writes
    # non-contiguous ones contiguous; values and dtypes are unchanged
    _replace_atomically(os.path.join(d, WEIGHTS_NAME),
                        lambda tmp: st.save_model(model, tmp, metadata={"format": "pt"}, force_contiguous=True))
    _write_text(os.path.join(d, CONFIG_NAME), json.dumps(cfg, indent=2) + "\n")
    card = os.path.join(d, CARD_NAME)
    if model_card_text is not None:
        _write_text(card, model_card_text)
    elif not os.path.exists(card):
        _write_text(card, model_card(cfg))
    return d


# ------------------------------------------------------------------------------------------- load
def _looks_like_repo_id(name: str) -> bool:
    return bool(_REPO_ID_RE.match(name)) and ".." not in name and not name.endswith((".json", ".safetensors", ".pt"))


def resolve(name_or_path, *, revision=None, cache_dir=None, local_files_only=False, token=None) -> str:
    """The local folder for ``name_or_path``: itself when it is a folder, else a hub snapshot through
    ``huggingface_hub.snapshot_download`` (imported here: optional)."""
    p = os.fspath(name_or_path)
    if os.path.isdir(p):
        return p
    if os.path.exists(p):
        raise NotADirectoryError(f"from_pretrained: {p!r} is a file, not a folder; pass the folder written by "
                                 f"save_pretrained (holding {CONFIG_NAME} and {WEIGHTS_NAME})"
                                 + ("; a training checkpoint becomes one with: mdn-fast export CKPT DIR"
                                    if p.endswith(".pt") else ""))
    if not _looks_like_repo_id(p):
        raise FileNotFoundError(f"from_pretrained: {p!r}: no such folder (and not a hub repo id 'owner/name')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"from_pretrained: {p!r}: no such folder; loading a hub repo id needs "
                                f"huggingface_hub: pip install huggingface_hub (or \"mdn-fast[hub]\")") from None
    try:
        return snapshot_download(repo_id=p, revision=revision, cache_dir=cache_dir,
                                 local_files_only=local_files_only, token=token, allow_patterns=_HUB_FILES)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise OSError(f"from_pretrained: {p!r} is no local folder, and fetching it as a hub repo id failed "
                      f"({type(e).__name__}: {first})") from e


def _read_weights(path: str, model) -> dict:
    """``model.safetensors`` as a state dict for ``model``: names dropped as shared storage restored from
    the file's metadata."""
    st = _safetensors()
    from safetensors import safe_open
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; a folder written by MicroDualNet.save_pretrained holds "
                                f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        state = st.load_file(path)
    except Exception as e:   # safetensors' own error type: a header or size that does not parse
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {first}); it is "
                         f"corrupted or truncated: save or download it again") from None
    for name in model.state_dict():
        kept = meta.get(name)
        if name not in state and kept in state:
            state[name] = state[kept]
    return state


def _match_dtypes(model, state: dict) -> None:
    """Give each floating parameter/buffer the dtype it was saved in (a bf16 model comes back bf16)."""
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    for name, t in tensors.items():
        s = state.get(name)
        if isinstance(s, torch.Tensor) and s.dtype != t.dtype and s.dtype.is_floating_point and t.dtype.is_floating_point:
            t.data = t.data.to(s.dtype)


def from_pretrained(cls, name_or_path, *, device=None, revision=None, cache_dir=None, local_files_only=False,
                    token=None, **overrides):
    """Rebuild the model saved in ``name_or_path`` (folder or hub repo id); see the module docstring.
    ``overrides``: the runtime options ``RUNTIME_OPTIONS``; ``device``: where the model goes (default CPU).
    The model comes back in eval mode (``.train()`` to fine-tune).
    The hub arguments (``revision``, ``cache_dir``, ``local_files_only``, ``token``) go to
    ``snapshot_download``."""
    bad = [k for k in overrides if k not in RUNTIME_OPTIONS]
    if bad:
        k = bad[0]
        if k in ARCH_KEYS:
            raise ValueError(f"from_pretrained: {k!r} is part of the saved architecture (fixed by the weights) and "
                             f"cannot be overridden; only {list(RUNTIME_OPTIONS)} can")
        if k == "backbone_weights":
            raise ValueError("from_pretrained: backbone_weights cannot be given: the weights, backbone included, "
                             f"come from {WEIGHTS_NAME}")
        raise TypeError(f"from_pretrained: unexpected keyword argument {k!r}; overridable options are "
                        f"{list(RUNTIME_OPTIONS)}")
    folder = resolve(name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                     token=token)
    cfg_path = os.path.join(folder, CONFIG_NAME)
    kwargs = read_config(cfg_path)
    kwargs.update(overrides)
    try:
        model = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: does not describe a valid MicroDualNet: {e}") from None
    w_path = os.path.join(folder, WEIGHTS_NAME)
    state = _read_weights(w_path, model)
    _match_dtypes(model, state)
    ckpt_io.check_state_dict(model, state, w_path)
    model.load_state_dict(state, strict=True)
    model.eval()                      # as transformers / huggingface_hub hand models back: .train() to fine-tune
    return model.to(device) if device is not None else model


# ------------------------------------------------------------------------------------------- export
def export_checkpoint(checkpoint: str, out_dir: str, *, overwrite: bool = False) -> tuple[str, object]:
    """Write the model of a training checkpoint (``OUT/checkpoint.pt``, ``best.pt``, ``last.pt``) as a
    ``save_pretrained`` folder. ``out_dir`` must be absent or empty unless ``overwrite`` (then
    ``config.json``, ``model.safetensors`` and ``README.md`` are replaced, other files kept). Returns
    ``(out_dir, model)``."""
    checkpoint, out_dir = os.fspath(checkpoint), os.fspath(out_dir)
    if os.path.isdir(checkpoint):
        found = [n for n in ("checkpoint.pt", "best.pt", "last.pt") if os.path.isfile(os.path.join(checkpoint, n))]
        raise IsADirectoryError(f"CKPT {checkpoint!r} is a folder, not a checkpoint file; pass a file written by "
                                f"mdn-fast train" + (f", e.g. {os.path.join(checkpoint, found[0])!r}" if found else
                                                     " (OUT/checkpoint.pt, OUT/best.pt or OUT/last.pt)"))
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"CKPT {checkpoint!r}: no such file (mdn-fast train writes OUT/checkpoint.pt, "
                                f"OUT/best.pt and OUT/last.pt)")
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise NotADirectoryError(f"DIR {out_dir!r} exists and is a file; choose a folder")
        held = sorted(os.listdir(out_dir))
        if held and not overwrite:
            shown = ", ".join(held[:5]) + (f" (+{len(held) - 5} more)" if len(held) > 5 else "")
            raise FileExistsError(f"DIR {out_dir!r} exists and is not empty (holds {shown}); choose a new folder, "
                                  f"or pass --overwrite to replace its {CONFIG_NAME}, {WEIGHTS_NAME} and {CARD_NAME}")
    from .training.model import load_checkpoint
    model, ckpt = load_checkpoint(checkpoint)
    cfg = model_to_config(model)
    lines = [f"Exported with `mdn-fast export` from `{os.path.basename(checkpoint)}`"
             + (f" (epoch {ckpt['epoch']})" if isinstance(ckpt.get("epoch"), int) else "") + "."]
    ds = ckpt.get("dataset")
    if isinstance(ds, dict) and ds.get("name"):
        lines.append(f"Trained on: {ds['name']}.")
    m = ckpt.get("metrics")
    if isinstance(m, dict):
        shown = [f"{n} {100 * m[k]:.2f}" for k, n in (("top1", "Top-1"), ("top5", "Top-5"), ("f1_mean", "F1_mean"))
                 if isinstance(m.get(k), (int, float))]
        if shown:
            lines.append("Held-out metrics of the last epoch: " + ", ".join(shown) + ".")
    names = ckpt.get("class_names")
    if isinstance(names, (list, tuple)) and names:
        lines.append("Class ids (logits index: name): " + ", ".join(f"{i}: {n}" for i, n in enumerate(names)) + ".")
    save_pretrained(model, out_dir, model_card_text=model_card(cfg, "\n\n".join(lines)))
    return out_dir, model
