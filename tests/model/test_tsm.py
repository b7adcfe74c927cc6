"""TemporalShift against its definition written out frame by frame, and TSM placement in ResNets."""
import pytest
import torch
import torchvision

from mdn_fast.nn.tsm import ShiftedConv, TemporalShift, insert_tsm


def _shift_by_loops(x, T, fold_div):
    """facts.md: 1/8 of channels from t+1, 1/8 from t-1, zero at the ends; input (B*T, C, H, W)."""
    n, c = x.shape[:2]
    fold = c // fold_div
    out = torch.empty_like(x)
    for b in range(n // T):
        for t in range(T):
            i = b * T + t
            for ch in range(c):
                if ch < fold:
                    out[i, ch] = x[i + 1, ch] if t + 1 < T else 0.0
                elif ch < 2 * fold:
                    out[i, ch] = x[i - 1, ch] if t >= 1 else 0.0
                else:
                    out[i, ch] = x[i, ch]
    return out


@pytest.mark.parametrize("B,T,C,fold_div", [(2, 8, 16, 8), (3, 5, 13, 8), (1, 1, 8, 4), (2, 3, 7, 2)])
def test_shift_matches_definition(B, T, C, fold_div):
    x = torch.randn(B * T, C, 3, 5)
    got = TemporalShift(T, fold_div)(x)
    torch.testing.assert_close(got, _shift_by_loops(x, T, fold_div), rtol=0, atol=0)


def test_shift_gradient_is_the_reverse_shift():
    T, C = 4, 16
    x = torch.randn(2 * T, C, 2, 2, requires_grad=True)
    g = torch.randn(2 * T, C, 2, 2)
    (TemporalShift(T)(x) * g).sum().backward()
    # <shift(x), g> = <x, shift^T(g)>; check against the loop definition through autograd on a copy
    x2 = x.detach().clone().requires_grad_(True)
    (_shift_by_loops(x2, T, 8) * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_shift_rejects_batch_not_multiple_of_frames():
    with pytest.raises(ValueError, match="multiple of num_frames=8"):
        TemporalShift(8)(torch.randn(12, 16, 2, 2))


def _shifted_blocks(net):
    return [f"{s}.{i}" for s in ("layer1", "layer2", "layer3", "layer4")
            for i, b in enumerate(getattr(net, s)) if isinstance(b.conv1, ShiftedConv)]


def test_placement_resnet18_every_block():
    net = torchvision.models.resnet18(weights=None)
    assert insert_tsm(net, num_frames=4) == 8
    assert len(_shifted_blocks(net)) == 8
    assert sum(isinstance(m, TemporalShift) for m in net.modules()) == 8


def test_placement_resnet101_every_second_block():
    net = torchvision.models.resnet101(weights=None)      # blocks per stage: 3, 4, 23, 3
    n = insert_tsm(net, num_frames=8)
    assert n == 2 + 2 + 12 + 2
    blocks = _shifted_blocks(net)
    assert "layer3.0" in blocks and "layer3.1" not in blocks and "layer3.22" in blocks
    assert "layer1.1" not in blocks and "layer4.2" in blocks


def test_insert_twice_and_bad_every_raise():
    net = torchvision.models.resnet18(weights=None)
    with pytest.raises(ValueError, match="every"):
        insert_tsm(net, 4, every=0)
    insert_tsm(net, 4)
    with pytest.raises(ValueError, match="already"):
        insert_tsm(net, 4)


def test_tsm_resnet_mixes_frames_only_through_shift():
    """In a TSM ResNet-18, changing frame 0 of clip 0 changes frame 1 of the same clip (the shift carries
    it across frames) and never touches the other clip folded into the same batch."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    insert_tsm(net, num_frames=4)
    x = torch.randn(8, 3, 32, 32)
    y = net(x)
    x2 = x.clone()
    x2[0] += torch.randn_like(x2[0])                    # clip 0, frame 0
    y2 = net(x2)
    assert not torch.allclose(y[1], y2[1])              # same clip, next frame: sees the change
    torch.testing.assert_close(y[4:], y2[4:])           # clip 1 untouched
