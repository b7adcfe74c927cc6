"""The whole model captured (design.md §4.1): ``torch.compile(fullgraph=True)`` trains it (forward,
``model.loss`` with MAC, backward) on every backend with eager's loss and gradients, and ``torch.export``
of the eval model holds the fused ops and gives eager's outputs, also on inputs it was not traced with.

On the CPU, ``fullgraph=True`` succeeding is the proof that the forward and the loss hold no host sync
and no data-dependent Python branch (either would be a graph break, which fullgraph turns into an
error). On a GPU, ``torch.cuda.set_sync_debug_mode("error")`` checks the eager step as well.
"""
import pytest
import torch

from mdn_fast.skeleton.layouts import ENTITIES
from mdn_fast.nn.micro_dualnet import MicroDualNet, MicroDualNetOutput
from mdn_fast.ops import BACKENDS, unsupported_reason

from tests._model_helpers import body25_keypoints, frames

B, T, S, D, H = 3, 4, 48, 32, 4
K = len(ENTITIES)
MODALITIES = ("pose", "rgb+pose")
# Fused ops in an exported graph, per backend: (namespace.name, count per block).
FUSED_OPS = {"cpp": (("mdn_fast.entity_attention_fwd", 2), ("mdn_fast.routed_merge_fwd", 1)),
             "triton": (("mdn_fast_triton.entity_attention_fwd", 2), ("mdn_fast_triton.routed_merge_fwd", 1)),
             "reference": ()}


def _model(modality, backend, depth=1, seed=0):
    torch.manual_seed(seed)
    return MicroDualNet(num_classes=7, num_body_classes=3, modality=modality, num_frames=T, dim=D, heads=H,
                        depth=depth, backbone="resnet18", feature_stride=16, roi_size=2, backend=backend)


def _inputs(modality, seed=0, device="cpu"):
    """Keypoints with the awkward cases in them: dropped joints, non-finite joints (missing, by contract),
    and a right arm absent from clips 0 and 1, so right_hand is present in one clip only (MAC skips it
    by mask) and gets the default ROI region there."""
    g = torch.Generator().manual_seed(seed)
    kp = body25_keypoints(B, T, S, g, drop=0.2)
    kp[:2, :, 2:5] = 0.0
    kp[2, 1, 7, 0] = float("nan")
    kp[1, 3, 0, 2] = float("inf")
    kw = {"keypoints": kp.to(device)}
    if modality != "pose":
        kw["frames"] = frames(B, T, S, g).to(device)
    labels = torch.tensor([0, 3, 6], device=device), torch.tensor([2, 0, 1], device=device)
    return kw, labels


def _skip_unless_runs(backend, device="cpu"):
    sizes = dict(P=2, B=B, T=T, K=K, H=H, Dh=D // H, D=D)
    why = (unsupported_reason(backend, "entity_attention", device, torch.float32, sizes)
           or unsupported_reason(backend, "routed_merge", device, torch.float32, sizes))
    if why:
        pytest.skip(why)


def _train_step(model, kw, labels):
    out = model(**kw)
    return model.loss(out, *labels), out.logits


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_compiled_trains_like_eager(model, kw, labels, compiled_step):
    loss_e, logits_e = _train_step(model, kw, labels)
    grads_e = _grads(model, loss_e)
    loss_c, logits_c = compiled_step(model, kw, labels)
    grads_c = _grads(model, loss_c)
    assert torch.isfinite(loss_c)
    torch.testing.assert_close(logits_c, logits_e, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-5)
    assert grads_c.keys() == grads_e.keys() and "blocks.0.router_weight" in grads_c
    for name, g in grads_e.items():
        torch.testing.assert_close(grads_c[name], g, rtol=1e-3, atol=1e-5, msg=lambda m: f"{name}: {m}")


# Triton on the CPU runs through the interpreter, inside dynamo's trace too: ~20 s for "pose" on 2 cores,
# twice that with the ResNet. "pose" covers the Triton ops here (the fused ops see the same shapes in
# both modalities); "rgb+pose" with Triton runs where kernels compile, on a GPU (test below).
_COMPILE_CASES = [pytest.param(b, m, id=f"{b}-{m}",
                               marks=[pytest.mark.gpu] if (b, m) == ("triton", "rgb+pose") else [])
                  for b in BACKENDS for m in MODALITIES]


@pytest.mark.parametrize("backend,modality", _COMPILE_CASES)
def test_compile_fullgraph_trains_like_eager(backend, modality):
    device = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
    _skip_unless_runs(backend, device)
    model = _model(modality, backend).to(device).train()
    kw, labels = _inputs(modality, device=device)
    # aot_eager: dynamo + AOTAutograd (the capture this test is about) without inductor's C++ build.
    step = torch.compile(_train_step, fullgraph=True, backend="aot_eager")
    _assert_compiled_trains_like_eager(model, kw, labels, step)


# The default inductor backend (generated C++ or Triton code around the fused ops). On the CPU one case:
# inductor's C++ build of the model takes ~25 s of CPU time.
@pytest.mark.parametrize("device,modality", [pytest.param("cpu", "pose", marks=pytest.mark.slow, id="cpu-pose")]
                         + [pytest.param("cuda", m, marks=pytest.mark.gpu, id=f"cuda-{m}") for m in MODALITIES])
def test_inductor_compile_trains_like_eager(device, modality):
    backend = "cpp" if device == "cpu" else "auto"
    _skip_unless_runs(backend, device)
    model = _model(modality, backend).to(device).train()
    kw, labels = _inputs(modality, device=device)
    step = torch.compile(_train_step, fullgraph=True)
    _assert_compiled_trains_like_eager(model, kw, labels, step)


@pytest.mark.gpu
@pytest.mark.parametrize("modality", MODALITIES)
def test_training_step_never_syncs_the_host_cuda(modality):
    """Eager forward + loss + backward under ``set_sync_debug_mode("error")``: any host sync raises."""
    model = _model(modality, "auto").cuda().train()
    kw, labels = _inputs(modality, device="cuda")
    _grads(model, _train_step(model, kw, labels)[0])   # warm-up: kernel compiles and library handles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, _ = _train_step(model, kw, labels)
        model.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


def _fused_op_counts(ep) -> dict:
    counts: dict = {}
    for node in ep.graph.nodes:
        if node.op == "call_function":
            name = str(node.target).rsplit(".", 1)[0] if str(node.target).endswith(".default") else str(node.target)
            counts[name] = counts.get(name, 0) + 1
    return counts


# Both modalities on cpp (the CPU's fused backend); Triton (its ops run through the interpreter when the
# program is checked) and the reference on "pose": the graph around the ops is the cpp case's.
@pytest.mark.parametrize("backend,modality", [("cpp", "pose"), ("cpp", "rgb+pose"), ("triton", "pose"),
                                              ("reference", "pose")])
def test_export_eval_model_holds_fused_ops_and_equals_eager(backend, modality):
    _skip_unless_runs(backend)
    depth = 2 if backend == "cpp" else 1
    model = _model(modality, backend, depth=depth).eval()
    kw, _ = _inputs(modality)
    ep = torch.export.export(model, (), kw)
    counts = _fused_op_counts(ep)
    for op, per_block in FUSED_OPS[backend]:
        assert counts.get(op, 0) == per_block * depth, f"{op}: {counts.get(op, 0)} in the graph, {counts}"
    if backend == "reference":
        assert not any(name.startswith("mdn_fast") for name in counts), counts
    exported = ep.module()
    for seed in (0, 1):   # the traced inputs, then fresh ones (nothing about the values is baked in)
        kw, _ = _inputs(modality, seed=seed)
        with torch.no_grad():
            got, want = exported(**kw), model(**kw)
        assert isinstance(got, MicroDualNetOutput)
        for field in ("logits", "body_logits", "alpha", "x_st", "x_ts", "entity_mask", "f_cnn"):
            a, b = getattr(got, field), getattr(want, field)
            if b is None:
                assert a is None, field
            else:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"{field}: {m}")
        assert torch.isfinite(got.logits).all()
