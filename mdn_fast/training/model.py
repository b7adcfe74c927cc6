"""The model of a run: its ``MicroDualNet`` kwargs from a config, or rebuilt from a checkpoint."""
from __future__ import annotations

from .. import checkpoint as ckpt_io
from ..nn.micro_dualnet import MicroDualNet
from .registry import DatasetSpec, get_dataset


def model_config(cfg, spec: DatasetSpec | None = None) -> dict:
    """MicroDualNet kwargs for a run. Small frames (< 128 px) use output stride 16 (layer4 without its
    downsampling) so ROIAlign sees a 4×4 map of a 64-px frame, not 2×2."""
    spec = spec or get_dataset(cfg.dataset).spec(None)
    return dict(num_classes=spec.num_classes, num_body_classes=spec.num_body_classes, modality=cfg.modality,
                layout=spec.layout, entities=tuple(spec.entities), num_frames=cfg.num_frames, dim=cfg.dim,
                heads=cfg.heads, depth=cfg.depth, tau=1.0, lambda_mac=cfg.lambda_mac, backbone=cfg.backbone,
                backbone_weights=cfg.backbone_weights or None, backend=cfg.backend,
                feature_stride=16 if cfg.image_size < 128 else 32, roi_size=3 if cfg.image_size < 128 else 7)


def load_checkpoint(path: str, spec: DatasetSpec | None = None) -> tuple[MicroDualNet, dict]:
    """Rebuild the model of a checkpoint (``weights_only`` load: no code runs). With ``spec`` (the
    dataset it is meant for), a model config that does not fit it is refused; so is a state dict with
    missing/unexpected keys or other shapes (ValueError listing them)."""
    ckpt = ckpt_io.load(path)
    mcfg = dict(ckpt["model_config"])
    if spec is not None:
        ckpt_io.check_model_config(mcfg, {"num_classes": spec.num_classes, "num_body_classes": spec.num_body_classes,
                                          "layout": spec.layout, "entities": list(spec.entities)},
                                   f"dataset {spec.name!r}", keys=("num_classes", "num_body_classes", "layout",
                                                                    "entities"))
    mcfg["entities"] = tuple(mcfg["entities"])
    mcfg["backbone_weights"] = None   # the state dict below holds the trained backbone
    try:
        model = MicroDualNet(**mcfg)
    except TypeError as e:
        raise ValueError(f"checkpoint: {path!r}: model_config does not fit MicroDualNet ({e})") from None
    ckpt_io.check_state_dict(model, ckpt["state_dict"], path)
    model.load_state_dict(ckpt["state_dict"])
    return model, ckpt
