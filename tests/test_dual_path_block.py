"""EntityLayer and DualPathBlock: against PyTorch's own transformer layer, the layer-by-layer equations,
and across backends. Layout: tokens ``[B, T, K, D]``, mask ``[B, T, K]``."""
import pytest
import torch
from torch import nn

from mdn_fast.nn import DualPathBlock, EntityLayer

from ._helpers import BACKENDS, assert_close, backend_reason, device_params, holey_mask


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


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_block_same_function_on_every_backend(backend, dtype, device):
    B, T, K, D, H = 2, 5, 3, 32, 2
    sizes = dict(P=2, B=B, T=T, K=K, H=H, Dh=D // H, D=D)
    why = (backend_reason(backend, "entity_attention", device, dtype, sizes)
           or backend_reason(backend, "routed_merge", device, dtype, sizes))
    if why:
        pytest.skip(why)
    block = _perturb(DualPathBlock(D, H, backend=backend, num_entities=K)).to(device)
    ref_block = DualPathBlock(D, H, backend="reference", num_entities=K).double()
    ref_block.load_state_dict(block.state_dict())
    x = torch.randn(B, T, K, D, device=device)
    mask = holey_mask(B, T, K, device)
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        out = block(x.requires_grad_(), mask)
    ref = ref_block(x.detach().double().cpu(), mask.cpu())
    assert_close(out.y.float(), ref.y, dtype, "y")
    assert_close(out.alpha, ref.alpha, dtype, "alpha")
    out.y.float().square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for p in block.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_block_compiles_fullgraph(backend):
    B, T, K, D, H = 2, 4, 3, 16, 2
    why = backend_reason(backend, "entity_attention", "cpu", torch.float32, dict(P=2, B=B, T=T, K=K, H=H, Dh=D // H))
    if why:
        pytest.skip(why)
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
