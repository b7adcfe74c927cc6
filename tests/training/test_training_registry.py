"""The dataset registry and the config as the one source of the ``train`` options: a dataset registered
once (one ``DatasetEntry``) is trained, evaluated and listed by the CLI with no other edit; option
checks live in ``TrainConfig`` and apply to the Python API and the CLI alike."""
import math

import pytest

from mdn_fast.cli import main
from mdn_fast.skeleton.layouts import ENTITIES
from mdn_fast.data.synthetic import SyntheticMicroActions
from mdn_fast.training import (ConfigError, DatasetEntry, DatasetSpec, TrainConfig, build_datasets, dataset_names,
                               get_dataset, load_checkpoint, register_dataset, unregister_dataset)


def _toy_split(cfg, split, train):
    # 40 synthetic clips per split, read as a "real" dataset: num_clips N keeps the first N
    return SyntheticMicroActions(40, num_frames=cfg.num_frames, seed=100 + cfg.seed, split="train" if train else "val")


TOY = DatasetEntry(
    name="toy", open_split=_toy_split, labels=lambda ds: ds.labels.tolist(),
    spec=lambda class_names: DatasetSpec("toy", 12, None, "body25", tuple(ENTITIES), None, None, None),
    preset=dict(epochs=1, batch_size=8, dim=16, heads=2, num_clips=24, val_clips=16, out="runs/toy"),
    needs_root=False, modalities=("pose",), modality_note="the toy set has no frames")


@pytest.fixture
def toy():
    register_dataset(TOY)
    yield TOY
    unregister_dataset("toy")


def test_registered_dataset_trains_and_evaluates_from_the_cli(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "toy", "--no-progress", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    # the preset applied (1 epoch, first 24 / 16 clips, dim 16), and no F1_mean: the toy spec has no body classes
    assert "dataset=toy" in log and "clips train/val=24/16" in log and "dim=16" in log and "epochs=1" in log
    assert "epoch  1/1" in log and "F1_mean" not in log
    model, ckpt = load_checkpoint(str(out / "checkpoint.pt"))
    assert ckpt["train_config"]["dataset"] == "toy" and ckpt["dataset"]["num_body_classes"] is None
    assert model.body_head is None and ckpt["model_config"]["num_classes"] == 12
    assert main(["eval", str(out / "checkpoint.pt")]) == 0
    assert "dataset=toy" in capsys.readouterr().out


def test_registered_dataset_in_help_and_checks(toy, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_ = " ".join(capsys.readouterr().out.split())
    assert "{synthetic,ma52,imigue,toy}" in help_ and "1 (toy)" in help_       # --epochs: the toy preset shown
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "toy", "--modality", "rgb", "--out", str(tmp_path)])
    assert "--modality: the toy set has no frames; expected 'pose', got 'rgb'" in capsys.readouterr().err
    assert dataset_names()[-1] == "toy" and get_dataset("toy") is TOY


def test_register_refuses_duplicates_and_unknown_modalities(toy):
    with pytest.raises(ValueError, match="'toy' is already registered"):
        register_dataset(TOY)
    with pytest.raises(ValueError, match="modalities: expected a non-empty subset"):
        register_dataset(DatasetEntry("toy2", TOY.spec, TOY.open_split, TOY.labels, modalities=("depth",)))
    assert "toy2" not in dataset_names()
    with pytest.raises(ValueError, match=r"dataset: expected one of \('synthetic', 'ma52', 'imigue', 'toy'\), "
                                         r"got 'nope'"):
        TrainConfig.for_dataset("nope")


def test_hidden_val_labels_refused(tmp_path):
    hidden = DatasetEntry("hidden", TOY.spec, TOY.open_split, labels=lambda ds: [-1] * len(ds), needs_root=False)
    register_dataset(hidden)
    try:
        with pytest.raises(ValueError, match="--val-split 'val': its labels are hidden"):
            build_datasets(TrainConfig(dataset="hidden"))
    finally:
        unregister_dataset("hidden")


def test_builtin_entries():
    assert dataset_names()[:3] == ("synthetic", "ma52", "imigue")
    spec = get_dataset("ma52").spec(("a",) * 52)
    assert (spec.num_classes, spec.num_body_classes, spec.layout, len(spec.entities)) == (52, 7, "coco18_hands28", 6)
    assert spec.class_names == ("a",) * 52
    spec = get_dataset("imigue").spec(None)
    assert (spec.num_classes, spec.body_of_class, len(spec.entities)) == (32, None, 5)
    cfg = TrainConfig.for_dataset("ma52", root="/data", epochs=3)
    assert (cfg.epochs, cfg.dim, cfg.modality, cfg.backbone) == (3, 256, "rgb+pose", "resnet101")
    assert TrainConfig().resolved_val_clips() == 750 and cfg.resolved_val_clips() == 0


@pytest.mark.parametrize("kw, message", [
    (dict(epochs=0), "epochs: expected >= 1, got 0"),
    (dict(workers=-2), "workers: expected >= -1, got -2"),
    (dict(grad_clip=math.nan), "grad_clip: expected a finite number, got nan"),
    (dict(warmup_epochs=math.inf), "warmup_epochs: expected a finite number, got inf"),
    (dict(lr=math.nan), "lr: expected a finite number, got nan"),
    (dict(num_clips=0), "num_clips: expected >= 1 for the synthetic set, got 0"),
    (dict(modality="depth"), "modality: expected one of ('pose', 'rgb', 'rgb+pose'), got 'depth'"),
    (dict(backend="cuda"), "backend: expected one of"),
    (dict(dataset="imigue", root="/x", modality="rgb"), "modality: the iMiGUE skeleton release has no video"),
    (dict(dataset="ma52"), "root: required for --dataset ma52"),
])
def test_config_checks(kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        TrainConfig(**kw)


def test_train_checks_a_config_changed_after_construction(tmp_path):
    cfg = TrainConfig(out=str(tmp_path))
    cfg.grad_clip = float("nan")
    from mdn_fast.training import train
    with pytest.raises(ConfigError, match="grad_clip: expected a finite number"):
        train(cfg, log=lambda *a: None)
    assert not any(tmp_path.iterdir())
