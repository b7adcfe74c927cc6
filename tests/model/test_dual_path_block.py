"""EntityLayer and DualPathBlock: against PyTorch's own transformer layer, the layer-by-layer equations,
and across backends. Layout: tokens ``[B, T, K, D]``, mask ``[B, T, K]``."""
import pytest
import torch
from torch import nn

from mdn_fast.nn import DualPathBlock, EntityLayer

from tests._helpers import BACKENDS, assert_matches_reference, device_params, holey_mask, skip_unless_supported


def _perturb(module, scale=0.1):
    """Move every parameter off its initial value (LayerNorm's 1/0 init would hide affine bugs)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module


def _torch_layer_like(layer: EntityLayer) -> nn.TransformerEncoderLayer:
    D = layer.dim
    ref = nn.TransformerEncoderLayer(D, layer.heads, 4 * D, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=True).double()
    ref.load_state_dict({
        "self_attn.in_proj_weight": layer.qkv.weight, "self_attn.in_proj_bias": layer.qkv.bias,
        "self_attn.out_proj.weight": layer.proj.weight, "self_attn.out_proj.bias": layer.proj.bias,
        "linear1.weight": layer.ffn[0].weight, "linear1.bias": layer.ffn[0].bias,
        "linear2.weight": layer.ffn[2].weight, "linear2.bias": layer.ffn[2].bias,
        "norm1.weight": layer.norm1.weight, "norm1.bias": layer.norm1.bias,
        "norm2.weight": layer.norm2.weight, "norm2.bias": layer.norm2.bias})
    return ref.train()  # train mode with dropout 0: the plain math path, not the fused inference kernel


@pytest.mark.parametrize("axis", ["spatial", "temporal"])
def test_entity_layer_equals_transformer_encoder_layer(axis):
    B, T, K, D, H = 2, 7, 5, 24, 3
    layer = _perturb(EntityLayer(D, H, axis, backend="reference").double())
    x = torch.randn(B, T, K, D, dtype=torch.float64)
    mask = torch.rand(B, T, K) > 0.3
    mask[:, 0, :] = True
    mask[:, :, 0] = True  # every group keeps a key: PyTorch's layer gives NaN for empty groups
    out = layer(x, mask)
    ref = _torch_layer_like(layer)
    if axis == "spatial":
        r = ref(x.reshape(B * T, K, D), src_key_padding_mask=~mask.reshape(B * T, K)).reshape(B, T, K, D)
    else:
        xt = x.transpose(1, 2).reshape(B * K, T, D)
        r = ref(xt, src_key_padding_mask=~mask.transpose(1, 2).reshape(B * K, T)).reshape(B, K, T, D).transpose(1, 2)
    torch.testing.assert_close(out, r, rtol=1e-10, atol=1e-10)


def test_block_fused_stages_equal_layer_by_layer_equations():
    B, T, K, D, H = 2, 7, 5, 24, 3
    block = _perturb(DualPathBlock(D, H, tau=0.7, backend="reference", num_entities=K).double())
    x = torch.randn(B, T, K, D, dtype=torch.float64)
    mask = holey_mask(B, T, K, "cpu")
    fused, plain = block(x, mask), block.forward_unfused(x, mask)
    for name in fused._fields:
        torch.testing.assert_close(getattr(fused, name), getattr(plain, name), rtol=1e-10, atol=1e-10)
    assert fused.alpha.shape == (B, K, 2)
    torch.testing.assert_close(fused.alpha.sum(-1), torch.ones(B, K, dtype=torch.float64))


def test_block_gradcheck_float64():
    B, T, K, D, H = 1, 3, 2, 4, 2
    block = _perturb(DualPathBlock(D, H, backend="reference", num_entities=K).double())
    x = torch.randn(B, T, K, D, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[[True, False], [True, True], [False, False]]])
    assert torch.autograd.gradcheck(lambda x: block(x, mask).y, (x,))


def _run_block(block, x, mask, ga, dtype, device):
    """y, alpha and the gradients of x and of every parameter, from a loss on both y and alpha (alpha
    weighted by random numbers: its rows sum to 1, so an unweighted sum would have zero gradient)."""
    x = x.detach().to(device).requires_grad_()
    with torch.autocast(device, dtype=dtype, enabled=dtype not in (torch.float32, torch.float64)):
        out = block(x, mask.to(device))
    loss = out.y.double().square().mean() + (out.alpha.double() * ga.to(device)).sum()
    grads = torch.autograd.grad(loss, [x, *block.parameters()])
    return out.y, out.alpha, grads


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_block_same_function_on_every_backend(backend, dtype, device):
    """The block on ``backend`` (under autocast for fp16) against the same block on the reference backend
    in float64, y, alpha and every gradient, held to the reference's own error in that precision (the
    reference backend run the same way)."""
    B, T, K, D, H = 2, 5, 3, 32, 2
    skip_unless_supported(backend, {"entity_attention": dict(P=2, B=B, T=T, K=K, H=H, Dh=D // H),
                                    "routed_merge": dict(B=B, T=T, K=K, D=D)}, device, dtype)
    torch.manual_seed(0)
    block = _perturb(DualPathBlock(D, H, backend=backend, num_entities=K)).to(device)
    ref_dt = DualPathBlock(D, H, backend="reference", num_entities=K).to(device)
    ref_dt.load_state_dict(block.state_dict())
    ref64 = DualPathBlock(D, H, backend="reference", num_entities=K).double()
    ref64.load_state_dict(block.state_dict())
    x = torch.randn(B, T, K, D)
    mask = holey_mask(B, T, K, "cpu")
    ga = torch.randn(B, K, 2, dtype=torch.float64)
    y, alpha, grads = _run_block(block, x, mask, ga, dtype, device)
    y_dt, alpha_dt, grads_dt = _run_block(ref_dt, x, mask, ga, dtype, device)
    y64, alpha64, grads64 = _run_block(ref64, x.double(), mask, ga, torch.float64, "cpu")
    assert_matches_reference(y, y64, y_dt, dtype, "y")
    assert_matches_reference(alpha, alpha64, alpha_dt, dtype, "alpha")
    names = ["x"] + [n for n, _ in block.named_parameters()]
    for name, g, g64, gdt in zip(names, grads, grads64, grads_dt):
        assert g is not None, f"d{name}: no gradient"
        assert_matches_reference(g, g64, gdt, dtype, f"d{name}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_block_compiles_fullgraph(backend):
    B, T, K, D, H = 2, 4, 3, 16, 2
    skip_unless_supported(backend, {"entity_attention": dict(P=2, B=B, T=T, K=K, H=H, Dh=D // H),
                                    "routed_merge": dict(B=B, T=T, K=K, D=D)}, "cpu", torch.float32)
    block = DualPathBlock(D, H, backend=backend, num_entities=K)
    x, mask = torch.randn(B, T, K, D, requires_grad=True), holey_mask(B, T, K, "cpu")
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    out = compiled(x, mask)
    torch.testing.assert_close(out.y, block(x, mask).y)
    (gx,) = torch.autograd.grad(out.y.square().sum(), x)
    (ex,) = torch.autograd.grad(block(x, mask).y.square().sum(), x)
    torch.testing.assert_close(gx, ex)


def test_block_rejects_wrong_entity_count():
    block = DualPathBlock(16, 2, num_entities=6)
    with pytest.raises(ValueError, match=r"x: expected \[B, T, K=6, D=16\], got shape \(1, 4, 5, 16\)"):
        block(torch.randn(1, 4, 5, 16))
