"""MAC loss against the definition (design.md §1.3) written with loops."""
import pytest
import torch
import torch.nn.functional as F

from mdn_fast.nn import MACLoss


def _loop_mac(x_st, x_ts, mask, tau):
    B, T, K, D = x_st.shape
    losses = []
    for k in range(K):
        clips = [b for b in range(B) if mask is None or mask[b, :, k].any()]
        if len(clips) < 2:
            continue

        def pooled(x, b):
            frames = [t for t in range(T) if mask is None or mask[b, t, k]]
            return F.normalize(torch.stack([x[b, t, k] for t in frames]).mean(0), dim=0)
        zs = torch.stack([pooled(x_st, b) for b in clips])
        zt = torch.stack([pooled(x_ts, b) for b in clips])
        logits = zs @ zt.T / tau
        target = torch.arange(len(clips))
        losses.append((F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2)
    return torch.stack(losses).mean() if losses else torch.zeros((), dtype=x_st.dtype)


@pytest.mark.parametrize("with_mask", [False, True])
def test_mac_matches_loop_definition(with_mask):
    B, T, K, D = 5, 4, 4, 8
    x_st, x_ts = torch.randn(B, T, K, D, dtype=torch.float64), torch.randn(B, T, K, D, dtype=torch.float64)
    mask = None
    if with_mask:
        mask = torch.rand(B, T, K) > 0.3
        mask[0, :, 1] = False             # entity 1 absent from clip 0: not an anchor, not a negative
        mask[1:, :, 2] = False            # entity 2 present in one clip only: skipped
    got = MACLoss(tau_mac=0.1)(x_st, x_ts, mask)
    torch.testing.assert_close(got, _loop_mac(x_st, x_ts, mask, 0.1))


def test_mac_aligned_paths_give_lower_loss_and_finite_grads():
    B, T, K, D = 6, 3, 2, 16
    x = torch.randn(B, T, K, D, dtype=torch.float64)
    aligned = MACLoss()(x, x + 0.01 * torch.randn_like(x))
    shuffled = MACLoss()(x, x[torch.randperm(B)])
    assert aligned < shuffled
    x_st = torch.randn(B, T, K, D, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(B, T, K, dtype=torch.bool)
    mask[:, 0, 0] = True                 # entity 1 never present: contributes nothing, no NaN
    loss = MACLoss()(x_st, torch.randn(B, T, K, D, dtype=torch.float64), mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x_st.grad).all()
    assert torch.autograd.gradcheck(lambda a: MACLoss()(a, x, mask), (x_st,))


def test_mac_rejects_bad_arguments():
    with pytest.raises(ValueError, match="tau_mac"):
        MACLoss(tau_mac=0)
    with pytest.raises(ValueError, match=r"x_st, x_ts: expected equal shapes"):
        MACLoss()(torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 6))
