"""MicroDualNet: every modality forward + backward, entity subsets, heads, alpha, input validation."""
import pytest
import torch

import mdn_fast
from mdn_fast.skeleton.layouts import ENTITIES
from mdn_fast.nn.micro_dualnet import MicroDualNet

from tests._helpers import assert_matches_reference, skip_unless_supported
from tests._model_helpers import body25_keypoints, frames

T, S, D, H = 4, 48, 32, 4


def _model(modality="pose", **kw):
    kw.setdefault("num_classes", 7)
    kw.setdefault("num_body_classes", 3)
    kw.setdefault("backbone", "resnet18")
    kw.setdefault("feature_stride", 16)
    kw.setdefault("roi_size", 2)
    kw.setdefault("heads", H)
    return MicroDualNet(modality=modality, num_frames=T, dim=D, **kw)


def _inputs(B=3, seed=0, drop=0.2):
    g = torch.Generator().manual_seed(seed)
    return frames(B, T, S, g), body25_keypoints(B, T, S, g, drop=drop)


@pytest.mark.parametrize("modality", ["pose", "rgb", "rgb+pose"])
def test_forward_backward_every_modality(modality):
    torch.manual_seed(0)
    model = _model(modality, depth=2)
    fr, kp = _inputs()
    out = model(frames=fr, keypoints=kp)
    K = len(ENTITIES)
    assert out.logits.shape == (3, 7) and out.body_logits.shape == (3, 3)
    assert out.alpha.shape == (3, 2, K, 2)
    torch.testing.assert_close(out.alpha.sum(-1), torch.ones(3, 2, K))
    assert out.x_st.shape == out.x_ts.shape == (3, T, K, D)
    assert out.entity_mask.shape == (3, T, K) and out.entity_mask.dtype == torch.bool
    assert (out.f_cnn is None) == (modality == "pose")
    loss = model.loss(out, torch.tensor([0, 3, 6]), torch.tensor([0, 1, 2]))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for n, gr in grads.items():
        assert gr is not None, f"{n} got no gradient"
        assert torch.isfinite(gr).all(), f"{n} has a non-finite gradient"
    assert grads["head.weight"].abs().sum() > 0 and grads["blocks.0.router_weight"].abs().sum() > 0


def test_top_level_export():
    assert mdn_fast.MicroDualNet is MicroDualNet


@pytest.mark.parametrize("entities,modality", [(("head",), "pose"), (("left_hand", "right_hand", "torso"), "pose"),
                                               (("lower_body", "face"), "rgb+pose")])
def test_entity_subsets(entities, modality):
    model = _model(modality, entities=entities)
    fr, kp = _inputs(seed=1)
    out = model(frames=fr, keypoints=kp)
    assert out.alpha.shape == (3, 1, len(entities), 2) and out.x_st.shape[2] == len(entities)
    model.loss(out, torch.tensor([1, 2, 3])).backward()


def test_optional_body_head():
    model = _model(num_body_classes=None)
    _, kp = _inputs()
    out = model(keypoints=kp)
    assert out.body_logits is None and model.body_head is None
    model.loss(out, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="body_labels: given, but the model has no body head"):
        model.loss(out, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))


def test_loss_is_ce_plus_body_plus_mac():
    model = _model(lambda_mac=0.5)
    _, kp = _inputs()
    out = model(keypoints=kp)
    y, yb = torch.tensor([0, 1, 2]), torch.tensor([2, 1, 0])
    want = (torch.nn.functional.cross_entropy(out.logits, y) + torch.nn.functional.cross_entropy(out.body_logits, yb)
            + 0.5 * mdn_fast.reference.mac_loss(out.x_st, out.x_ts, out.entity_mask, 0.1))
    torch.testing.assert_close(model.loss(out, y, yb), want)


def test_clip_feature_is_masked_mean_of_y():
    torch.manual_seed(1)
    model = _model("rgb+pose").eval()
    fr, kp = _inputs(seed=2, drop=0.4)
    mask = torch.rand(3, T, len(ENTITIES)) > 0.5
    mask[2] = False                                            # a clip with no present token -> feature 0
    with torch.no_grad():
        out = model(frames=fr, keypoints=kp, entity_mask=mask)
        x, f_cnn, m = model.sem(fr, kp, mask)
        y = model.blocks[0](x, m).y
        want = []
        for b in range(3):
            sel = y[b][m[b]]                                    # [n_present, D]
            want.append(sel.mean(0) if len(sel) else torch.zeros(D))
        clip = torch.cat([torch.stack(want), f_cnn], dim=-1)
    torch.testing.assert_close(out.logits, model.head(clip))
    assert torch.equal(out.entity_mask, mask)


def _run_model(model, kp, labels):
    """logits, alpha and every parameter's gradient (None where a parameter gets none) of the model's loss."""
    out = model(keypoints=kp)
    params = list(model.parameters())
    grads = torch.autograd.grad(model.loss(out, labels), params, allow_unused=True)
    return out.logits, out.alpha, grads


@pytest.mark.parametrize("backend", ["auto", "triton", "cpp"])
def test_every_backend_same_function_with_gradients(backend):
    """The whole model on a fused backend (Triton through the interpreter on CPU; ``auto``: what dispatch
    picks) against the reference backend in float64 with the same parameters, forward and every parameter
    gradient, held to the reference backend's own float32 error (the shared criterion of tests/_helpers)."""
    if backend != "auto":
        sizes = dict(P=2, B=3, T=T, K=len(ENTITIES), H=H, Dh=D // H, D=D)
        skip_unless_supported(backend, {"entity_attention": sizes, "routed_merge": sizes}, "cpu", torch.float32)
    torch.manual_seed(4)
    fast = _model("pose", depth=2, backend=backend)
    ref32 = _model("pose", depth=2, backend="reference")
    ref32.load_state_dict(fast.state_dict())
    ref64 = _model("pose", depth=2, backend="reference").double()
    ref64.load_state_dict(fast.state_dict())
    _, kp = _inputs(seed=5)
    labels = torch.tensor([0, 3, 6])
    logits, alpha, grads = _run_model(fast, kp, labels)
    logits32, alpha32, grads32 = _run_model(ref32, kp, labels)
    logits64, alpha64, grads64 = _run_model(ref64, kp.double(), labels)
    assert_matches_reference(logits, logits64, logits32, torch.float32, "logits")
    assert_matches_reference(alpha, alpha64, alpha32, torch.float32, "alpha")
    checked = 0
    for (name, _), g, g32, g64 in zip(fast.named_parameters(), grads, grads32, grads64):
        assert (g is None) == (g64 is None), f"{name}: gradient on one backend only"
        if g is not None:
            assert_matches_reference(g, g64, g32, torch.float32, f"d{name}")
            checked += 1
    assert checked > 0


def test_nonfinite_values_are_not_checked_in_forward_unless_asked():
    """design.md §4.1: the forward never reads values (no host sync). A NaN/Inf joint is a missing joint;
    ``validate_values=True`` / ``check_values`` raise, naming where."""
    torch.manual_seed(6)
    model = _model("rgb+pose").eval()
    fr, kp = _inputs()
    bad, missing = kp.clone(), kp.clone()
    bad[1, 2, 7, 0] = float("nan")
    bad[0, 3, 1, 2] = float("inf")
    missing[1, 2, 7] = 0.0
    missing[0, 3, 1] = 0.0
    with torch.no_grad():
        got, want = model(frames=fr, keypoints=bad), model(frames=fr, keypoints=missing)
    assert torch.isfinite(got.logits).all()
    assert torch.equal(got.logits, want.logits) and torch.equal(got.entity_mask, want.entity_mask)
    with pytest.raises(ValueError, match=r"keypoints: non-finite value .*clip 0, frame 3, joint 1 \(Neck\)"):
        model.check_values(keypoints=bad)
    nan_fr = fr.clone()
    nan_fr[2, 1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"frames: contains NaN or Inf \(1 values; first in clip 2, frame 1\)"):
        model.check_values(frames=nan_fr, keypoints=kp)
    checked = _model("rgb+pose", validate_values=True)
    checked.load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match=r"keypoints: non-finite value .*clip 0, frame 3, joint 1"):
        checked(frames=fr, keypoints=bad)
    with pytest.raises(ValueError, match="frames: contains NaN"):
        checked(frames=nan_fr, keypoints=kp)
    assert "validate_values" not in checked.config       # a debugging switch, not part of the model


def _bad_input_cases():
    fr, kp = _inputs()
    K = len(ENTITIES)
    return [
        ("rgb", dict(keypoints=kp), "frames: required for modality='rgb'"),
        ("pose", dict(frames=fr), "keypoints: required for modality='pose'"),
        ("rgb", dict(frames=fr[:, :, :2]), r"frames: expected shape \[B, T, 3, H, W\]"),
        ("rgb", dict(frames=fr[0]), "add the batch dim"),
        ("rgb", dict(frames=fr[:, :3]), "frames: expected T = num_frames = 4 frames, got 3"),
        ("rgb", dict(frames=(fr * 255).to(torch.uint8)), r"frames: expected a floating dtype .* frames.float\(\)"),
        ("rgb", dict(frames=fr.numpy()), "frames: expected a torch.Tensor"),
        ("pose", dict(keypoints=kp[:, :, :18]), r"keypoints: expected shape \[B, T, 25, 3\]"),
        ("pose", dict(keypoints=kp[0]), "keypoints: expected shape .*add the batch dim"),
        ("pose", dict(keypoints=kp[:, :2]), "keypoints: expected T = num_frames = 4 frames, got 2"),
        ("pose", dict(keypoints=kp.long()), "keypoints: expected a floating dtype"),
        ("rgb+pose", dict(frames=fr, keypoints=kp[:2]), "keypoints: batch size 2 differs from frames' 3"),
        ("pose", dict(keypoints=kp, entity_mask=torch.ones(3, T, K)), "entity_mask: expected a bool tensor"),
        ("pose", dict(keypoints=kp, entity_mask=torch.ones(3, T, K - 1, dtype=torch.bool)),
         r"entity_mask: expected shape \[B, T, K\] = \[3, 4, 6\]"),
    ]


@pytest.mark.parametrize("case", range(14))
def test_bad_inputs_raise_helpful_errors(case):
    modality, kwargs, msg = _bad_input_cases()[case]
    model = _model(modality)
    with pytest.raises((ValueError, TypeError), match=msg):
        model(**kwargs)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(num_classes=1), "num_classes: expected an integer >= 2"),
    (dict(num_body_classes=1), "num_body_classes: expected None"),
    (dict(modality="video"), r"modality: expected one of \('rgb\+pose', 'rgb', 'pose'\)"),
    (dict(entities=("head", "tail")), r"entities: layout 'body25' cannot provide \['tail'\]"),
    (dict(layout="body99"), r"layout: expected one of the registered keypoint layouts \[.*'body25'"),
    (dict(modality="rgb", backbone="vit_b_16"), r"backbone: expected one of \('resnet18'"),
    (dict(backend="cuda"), r"backend: expected one of \('reference', 'triton', 'cpp', 'auto'\)"),
    (dict(heads=5), "dim: expected a multiple of heads=5"),
    (dict(depth=0), "depth: expected an integer >= 1"),
])
def test_bad_constructor_args(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        _model(**{"modality": "pose", **kwargs})


def test_loss_label_checks():
    model = _model()
    out = model(keypoints=_inputs()[1])
    with pytest.raises(ValueError, match=r"labels: expected a torch.long tensor \[B\] = \[3\]"):
        model.loss(out, torch.tensor([0.0, 1.0, 2.0]))
