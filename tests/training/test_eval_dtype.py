"""``mdn-fast eval --dtype bf16`` (issue 12.5): bf16 weights on CPU (autocast only for the rgb path's
roi_align, which has no bf16 CPU kernel), metrics in fp32 from the logits. On a trained synthetic
checkpoint the bf16 top-1 predictions agree with fp32's on (measured) 98.5 % (197) of the 200 val clips after
8 epochs (800 training clips, as here)."""
import pytest
import torch

from mdn_fast.cli import main
from mdn_fast.training import evaluate_checkpoint
from mdn_fast.training.precision import float_output, for_inference


@pytest.fixture(scope="module")
def pose_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16_pose")
    assert main(["train", "--num-clips", "800", "--val-clips", "200", "--epochs", "8", "--dim", "32",
                 "--workers", "0", "--no-progress", "--out", str(out)]) == 0
    return out / "checkpoint.pt"


def test_bf16_eval_agrees_with_fp32(pose_ckpt, capsys):
    quiet = dict(return_predictions=True, log=lambda *a: None)
    m32, p32, *_ = evaluate_checkpoint(str(pose_ckpt), **quiet)
    m16, p16, _, model, _ = evaluate_checkpoint(str(pose_ckpt), dtype="bf16", **quiet)
    assert next(model.parameters()).dtype == torch.bfloat16                # bf16 weights, not autocast
    assert p16["logits"].dtype == torch.float32 and p16["alpha"].dtype == torch.float32
    assert m32["top1"] > 0.3, "the checkpoint did not learn: the comparison would say little"
    agree = (p32["logits"].argmax(1) == p16["logits"].argmax(1)).float().mean().item()
    with capsys.disabled():   # the measured agreement, for the log of a -s run
        print(f"bf16 vs fp32 top-1 agreement {agree:.3f} on {p32['num_clips']} clips; top-1 {m32['top1']:.3f} / "
              f"{m16['top1']:.3f}")
    assert agree >= 0.95
    assert abs(m16["top1"] - m32["top1"]) <= 0.03 and abs(m16["val_loss"] - m32["val_loss"]) < 0.05
    assert main(["eval", str(pose_ckpt), "--dtype", "bf16"]) == 0
    assert "dtype=bf16" in capsys.readouterr().out


def test_bf16_eval_rgb_pose(tmp_path, capsys):
    """The rgb path runs too (roi_align in fp32 under autocast over the bf16 weights)."""
    out = tmp_path / "rgb"
    assert main(["train", "--modality", "rgb+pose", "--num-clips", "8", "--val-clips", "8", "--image-size", "32",
                 "--epochs", "1", "--dim", "16", "--heads", "2", "--batch-size", "4", "--workers", "0",
                 "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    m32, p32, *_ = evaluate_checkpoint(str(out / "checkpoint.pt"), return_predictions=True, log=lambda *a: None)
    m16, p16, *_ = evaluate_checkpoint(str(out / "checkpoint.pt"), dtype="bf16", return_predictions=True,
                                       log=lambda *a: None)
    scale = p32["logits"].abs().max()
    assert torch.isfinite(p16["logits"]).all() and (p16["logits"] - p32["logits"]).abs().max() < 0.1 * scale


def test_for_inference_and_float_output():
    from mdn_fast.nn.micro_dualnet import MicroDualNet
    m = MicroDualNet(num_classes=5, modality="pose", layout="coco18_hands28", num_frames=4, dim=16, heads=2)
    assert for_inference(m, "cpu", "fp32") is False and next(m.parameters()).dtype == torch.float32
    assert for_inference(m, "cpu", "bf16") is False and next(m.parameters()).dtype == torch.bfloat16
    kp = torch.rand(2, 4, 28, 3) * 50
    with torch.no_grad():
        out = float_output(m(keypoints=kp))
    assert out.logits.dtype == out.x_st.dtype == torch.float32 and out.entity_mask.dtype == torch.bool
    with pytest.raises(ValueError, match="dtype: expected one of"):
        for_inference(m, "cpu", "fp16")
