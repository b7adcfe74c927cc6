"""Sharing a model (issue 19.7): ``MicroDualNet.save_pretrained`` / ``from_pretrained`` round-trip a model bit
for bit through ``config.json`` + ``model.safetensors`` with no pickle; a hub repo id goes through
``huggingface_hub.snapshot_download`` (faked here); configs of a newer or unknown format are refused;
``mdn-fast export CKPT DIR`` turns a training checkpoint into such a folder."""
import json
import os
import pickle
import struct
import sys
import types

import pytest
import torch

import mdn_fast
from mdn_fast import checkpoint as ckpt_io
from mdn_fast import pretrained
from mdn_fast.cli import main
from mdn_fast.nn.micro_dualnet import MicroDualNet
from mdn_fast.training import load_checkpoint

from tests._model_helpers import body25_keypoints, frames

T, S = 4, 48


def _model(modality="pose", seed=0, **kw):
    torch.manual_seed(seed)
    kw = dict(dict(num_classes=7, num_body_classes=3, num_frames=T, dim=32, heads=4, depth=2, backbone="resnet18",
                   feature_stride=16, roi_size=2, backend="reference", lambda_mac=0.5, tau=0.7), **kw)
    m = MicroDualNet(modality=modality, **kw)
    with torch.no_grad():             # no parameter left at a constant init (LayerNorm 1/0, zero biases)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    if m.sem.uses_rgb:                # BatchNorm running stats away from 0/1: a train-mode forward
        fr, kp = _inputs()
        m.train()(frames=fr, keypoints=kp)
    return m.eval()


def _inputs(B=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return frames(B, T, S, g), body25_keypoints(B, T, S, g, drop=0.2)


def _assert_same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape, k
        assert torch.equal(sa[k], sb[k]), k


def _assert_same_outputs(a, b, **inputs):
    a.eval(), b.eval()
    with torch.no_grad():
        oa, ob = a(**inputs), b(**inputs)
    for f in ("logits", "body_logits", "alpha", "x_st", "x_ts", "entity_mask", "f_cnn"):
        x, y = getattr(oa, f), getattr(ob, f)
        assert (x is None) == (y is None), f
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), f


@pytest.fixture
def no_pickle(monkeypatch):
    """Any pickle-based load raises: torch.load, pickle.load(s)."""
    def refuse(*a, **k):
        raise AssertionError("a pickle load was attempted")
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def _safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


@pytest.mark.parametrize("modality", ["pose", "rgb+pose"])
def test_roundtrip_bit_for_bit_without_pickle(tmp_path, modality, no_pickle):
    m = _model(modality, entities=("head", "left_hand", "right_hand", "torso") if modality == "pose" else
               ("head", "face", "left_hand", "right_hand", "torso", "lower_body"))
    assert m.save_pretrained(tmp_path / "m") == str(tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["format"] == "mdn_fast.MicroDualNet" and cfg["format_version"] == 1
    assert cfg["mdn_fast_version"] == mdn_fast.__version__ and "backbone_weights" not in cfg
    assert cfg["modality"] == modality and cfg["dim"] == 32 and cfg["tau"] == 0.7 and cfg["backend"] == "reference"
    header = _safetensors_header(tmp_path / "m" / "model.safetensors")     # plain safetensors: JSON + raw bytes
    assert set(header) - {"__metadata__"} == set(m.state_dict())
    if modality == "rgb+pose":
        assert any(k.endswith("running_var") for k in header) and any(k.endswith("num_batches_tracked") for k in header)
    m2 = MicroDualNet.from_pretrained(tmp_path / "m")
    assert isinstance(m2, MicroDualNet) and m2.config == m.config and not m2.training   # eval mode
    _assert_same_model(m, m2)
    fr, kp = _inputs(B=3, seed=7)
    _assert_same_outputs(m, m2, frames=fr, keypoints=kp)
    # saved again: the same bytes (deterministic files)
    m2.save_pretrained(tmp_path / "again")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "m" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_backbone_weights_file_not_needed_to_load(tmp_path):
    """The backbone's init file seeds training only: the folder does not name it, and loads without it."""
    import torchvision
    torch.manual_seed(3)
    src = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), src)
    m = MicroDualNet(num_classes=5, num_body_classes=None, modality="rgb", num_frames=T, dim=16, heads=2,
                     backbone="resnet18", backbone_weights=str(src), feature_stride=16, roi_size=2).eval()
    m.save_pretrained(tmp_path / "m")
    os.unlink(src)
    assert str(src) not in (tmp_path / "m" / "config.json").read_text()
    m2 = MicroDualNet.from_pretrained(str(tmp_path / "m"))
    assert m2.body_head is None
    _assert_same_model(m, m2)
    fr, kp = _inputs()
    _assert_same_outputs(m, m2, frames=fr)


def test_dtypes_and_shared_tensors_survive(tmp_path, no_pickle):
    m = _model("pose").bfloat16()
    m.save_pretrained(tmp_path / "bf16")
    m2 = MicroDualNet.from_pretrained(tmp_path / "bf16")
    assert m2.head.weight.dtype == torch.bfloat16
    _assert_same_model(m, m2)
    _, kp = _inputs()
    _assert_same_outputs(m, m2, keypoints=kp)
    # two names on one storage (safetensors.torch.save_file refuses those): stored once, both restored
    t = _model("pose", depth=2)
    t.blocks[1] = t.blocks[0]
    t.save_pretrained(tmp_path / "tied")
    header = _safetensors_header(tmp_path / "tied" / "model.safetensors")
    assert not any(k.startswith("blocks.1.") for k in header)
    _assert_same_model(t, MicroDualNet.from_pretrained(tmp_path / "tied"))


def test_config_holds_every_constructor_argument():
    """A new MicroDualNet argument must be added to the config format (else it would not travel)."""
    import inspect
    params = set(inspect.signature(MicroDualNet.__init__).parameters) - {"self"}
    assert params == set(pretrained.ARCH_KEYS) | {"backend", "backbone_weights", "validate_values"}
    assert set(_model("pose").config) == set(pretrained.ARCH_KEYS) | {"backend", "backbone_weights"}


def test_wrapped_models_saved_unwrapped(tmp_path):
    m = _model("pose")
    pretrained.save_pretrained(torch.compile(m), tmp_path / "c")      # state dict keys without "_orig_mod."
    _assert_same_model(m, MicroDualNet.from_pretrained(tmp_path / "c"))
    with pytest.raises(TypeError, match=r"expected a MicroDualNet, got Linear"):
        pretrained.save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")


def test_runtime_overrides_and_refused_ones(tmp_path):
    m = _model("pose", backend="auto")
    m.save_pretrained(tmp_path / "m")
    r = MicroDualNet.from_pretrained(tmp_path / "m", backend="reference", lambda_mac=0.0, validate_values=True)
    assert r.config["backend"] == "reference" and r.blocks[0].backend == "reference"
    assert r.lambda_mac == 0.0 and r.validate_values
    _assert_same_model(m, r)
    assert MicroDualNet.from_pretrained(tmp_path / "m").config["backend"] == "auto"
    with pytest.raises(ValueError, match=r"'dim' is part of the saved architecture .*only \['backend', "):
        MicroDualNet.from_pretrained(tmp_path / "m", dim=64)
    with pytest.raises(ValueError, match=r"backbone_weights cannot be given: .*model\.safetensors"):
        MicroDualNet.from_pretrained(tmp_path / "m", backbone_weights="r.pth")
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'dropout'"):
        MicroDualNet.from_pretrained(tmp_path / "m", dropout=0.1)
    with pytest.raises(ValueError, match=r"backend: expected one of"):
        MicroDualNet.from_pretrained(tmp_path / "m", backend="cuda")


def _edit_config(folder, **changes):
    p = folder / "config.json"
    cfg = json.loads(p.read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    p.write_text(json.dumps(cfg))
    return str(p)


@pytest.mark.parametrize("changes,pattern", [
    (dict(format_version=2, mdn_fast_version="0.9.0"),
     r"config\.json: format_version 2 \(written by mdn_fast 0\.9\.0\) is newer than this mdn_fast 0\.1\.0 reads "
     r"\(format_version <= 1\); upgrade mdn_fast \(pip install -U mdn-fast\)"),
    (dict(dropout=0.1), r"config\.json: unknown key\(s\) \['dropout'\] in a format_version 1 config.*Upgrade mdn_fast"),
    (dict(heads=None), r"config\.json: missing required key\(s\) \['heads'\].*mdn-fast export"),
    (dict(format="transformers"), r"config\.json: 'format' is 'transformers', expected 'mdn_fast\.MicroDualNet'"),
    (dict(format_version="1"), r"config\.json: 'format_version' is '1', expected an integer >= 1"),
    (dict(dim=30), r"config\.json: does not describe a valid MicroDualNet: dim: expected a multiple of heads=4"),
    (dict(dim=64, heads=8), r"model\.safetensors: state_dict does not fit the model: shape/dtype mismatches"),
], ids=["newer_version", "unknown_key", "missing_key", "other_format", "bad_version", "invalid_value", "weights_misfit"])
def test_bad_config_refused_naming_file_and_fix(tmp_path, changes, pattern):
    _model("pose").save_pretrained(tmp_path / "m")
    path = _edit_config(tmp_path / "m", **changes)
    with pytest.raises(ValueError, match=pattern) as e:
        MicroDualNet.from_pretrained(tmp_path / "m")
    assert str(tmp_path / "m") in str(e.value) and (path in str(e.value) or "model.safetensors" in str(e.value))


def test_broken_or_missing_files(tmp_path):
    _model("pose").save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        MicroDualNet.from_pretrained(tmp_path / "m")
    _model("pose").save_pretrained(tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file .*truncated"):
        MicroDualNet.from_pretrained(tmp_path / "m")
    os.unlink(w)
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors: no such file"):
        MicroDualNet.from_pretrained(tmp_path / "m")
    os.unlink(tmp_path / "m" / "config.json")
    with pytest.raises(FileNotFoundError, match=r"config\.json: no such file"):
        MicroDualNet.from_pretrained(tmp_path / "m")
    with pytest.raises(NotADirectoryError, match=r"is a file, not a folder.*mdn-fast export CKPT DIR"):
        MicroDualNet.from_pretrained(_touch(tmp_path / "best.pt"))


def _touch(p):
    p.write_bytes(b"x")
    return str(p)


def test_repo_id_without_huggingface_hub(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)        # import raises ImportError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        MicroDualNet.from_pretrained("someone/mdn-ma52")
    msg = str(e.value)
    assert msg == ("from_pretrained: 'someone/mdn-ma52': no such folder; loading a hub repo id needs huggingface_hub: "
                   "pip install huggingface_hub (or \"mdn-fast[hub]\")")
    with pytest.raises(FileNotFoundError, match=r"no such folder \(and not a hub repo id"):
        MicroDualNet.from_pretrained(str(tmp_path / "no" / "such" / "folder"))


def test_repo_id_through_snapshot_download(tmp_path, monkeypatch):
    m = _model("pose")
    m.save_pretrained(tmp_path / "snapshot")
    calls = []

    def snapshot_download(repo_id, **kw):
        calls.append((repo_id, kw))
        if repo_id == "someone/missing":
            raise RuntimeError("404 Client Error: Repository Not Found for url: https://huggingface.co/...\nmore")
        return str(tmp_path / "snapshot")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    monkeypatch.chdir(tmp_path)
    m2 = MicroDualNet.from_pretrained("someone/mdn-ma52", revision="v1", local_files_only=True)
    _assert_same_model(m, m2)
    repo, kw = calls[0]
    assert repo == "someone/mdn-ma52" and kw["revision"] == "v1" and kw["local_files_only"] is True
    assert set(kw["allow_patterns"]) == {"config.json", "model.safetensors", "README.md"}
    with pytest.raises(OSError, match=r"'someone/missing' is no local folder, and fetching it as a hub repo id "
                                      r"failed \(RuntimeError: 404 Client Error: Repository Not Found"):
        MicroDualNet.from_pretrained("someone/missing")
    # an existing local folder wins over the hub, even when its name looks like a repo id
    calls.clear()
    os.makedirs(tmp_path / "someone")
    m.save_pretrained(tmp_path / "someone" / "local")
    _assert_same_model(m, MicroDualNet.from_pretrained("someone/local"))
    assert calls == []


# ------------------------------------------------------------------------------------------ export
TINY = ["--num-clips", "32", "--val-clips", "16", "--epochs", "1", "--batch-size", "16", "--dim", "32",
        "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("export_run")
    assert main(["train", *TINY, "--out", str(out), "--seed", "2"]) == 0
    return out


@pytest.mark.parametrize("name", ["checkpoint.pt", "best.pt"])
def test_export_cli_bit_for_bit(trained, tmp_path, capsys, name, monkeypatch):
    ckpt = str(trained / name)
    dst = tmp_path / "shared"
    assert main(["export", ckpt, str(dst)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {dst}" in out and "MicroDualNet.from_pretrained" in out
    assert sorted(os.listdir(dst)) == ["README.md", "config.json", "model.safetensors"]
    card = (dst / "README.md").read_text()
    assert f"from `{name}` (epoch 1)" in card and "Trained on: synthetic" in card and "0: shrugging" in card
    assert str(trained) not in card and str(trained) not in (dst / "config.json").read_text()   # no local paths
    ref, raw = load_checkpoint(ckpt)
    with monkeypatch.context() as mp:
        mp.setattr(torch, "load", lambda *a, **k: 1 / 0)
        got = MicroDualNet.from_pretrained(dst)
    _assert_same_model(ref, got)
    for k, v in raw["state_dict"].items():
        assert torch.equal(got.state_dict()[k], v), k
    cfg = {k: v for k, v in ref.config.items() if k != "backbone_weights"}
    assert {k: v for k, v in got.config.items() if k != "backbone_weights"} == cfg
    kp = body25_keypoints(4, 8, 64, torch.Generator().manual_seed(0))
    _assert_same_outputs(ref, got, keypoints=kp)


def test_export_cli_errors(trained, tmp_path, capsys):
    ckpt = str(trained / "checkpoint.pt")
    missing = str(tmp_path / "nope.pt")
    assert main(["export", missing, str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err == f"mdn-fast export: error: CKPT {missing!r}: no such file (mdn-fast train writes " \
                  f"OUT/checkpoint.pt, OUT/best.pt and OUT/last.pt)\n"
    assert not (tmp_path / "d").exists()
    assert main(["export", str(trained), str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert f"CKPT {str(trained)!r} is a folder, not a checkpoint file" in err
    assert repr(os.path.join(str(trained), "checkpoint.pt")) in err and err.count("\n") == 1
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert main(["export", ckpt, str(full)]) == 1
    err = capsys.readouterr().err
    assert f"DIR {str(full)!r} exists and is not empty (holds notes.txt)" in err and "--overwrite" in err
    assert os.listdir(full) == ["notes.txt"]
    assert main(["export", ckpt, str(full), "--overwrite"]) == 0
    capsys.readouterr()
    assert sorted(os.listdir(full)) == ["README.md", "config.json", "model.safetensors", "notes.txt"]
    assert (full / "notes.txt").read_text() == "mine"
    _assert_same_model(load_checkpoint(ckpt)[0], MicroDualNet.from_pretrained(full))
    # an empty folder is fine without --overwrite; a text file given as CKPT is refused by the checkpoint reader
    (tmp_path / "empty").mkdir()
    assert main(["export", ckpt, str(tmp_path / "empty")]) == 0
    capsys.readouterr()
    txt = tmp_path / "notes.pt"
    txt.write_text("epoch 3\n")
    assert main(["export", str(txt), str(tmp_path / "t")]) == 1
    assert "is not a checkpoint written by torch.save" in capsys.readouterr().err


def test_export_api_and_hand_made_checkpoint(tmp_path):
    """A checkpoint written the way the training loop writes one (``checkpoint.save``), exported in Python."""
    m = _model("rgb+pose", depth=1)
    mc = dict(m.config, entities=list(m.config["entities"]))
    ckpt_io.save({"format": ckpt_io.FORMAT, "kind": "model", "model_config": mc,
                  "state_dict": {k: v.detach().clone() for k, v in m.state_dict().items()},
                  "class_names": None, "metrics": None, "history": [], "epoch": 0}, str(tmp_path / "c.pt"))
    folder, model = pretrained.export_checkpoint(str(tmp_path / "c.pt"), str(tmp_path / "out"))
    got = MicroDualNet.from_pretrained(folder)
    _assert_same_model(m, got)
    fr, kp = _inputs()
    _assert_same_outputs(m, got, frames=fr, keypoints=kp)
