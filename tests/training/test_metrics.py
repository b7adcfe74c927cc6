"""Metrics vs scikit-learn (test-only dependency) on random labels, including absent classes."""
import numpy as np
import pytest
import torch

from mdn_fast.training.metrics import f1_mean, f1_scores, macro_f1, micro_f1, topk_accuracy

sk = pytest.importorskip("sklearn.metrics")

MA52_BODY = [0] * 5 + [1] * 6 + [2] * 13 + [3] * 8 + [4] * 6 + [5] * 10 + [6] * 4


@pytest.mark.parametrize("seed", range(5))
def test_macro_micro_f1_vs_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(5, 60, (1,), generator=g))
    # labels drawn from a subset of classes, predictions from another: classes absent on either side
    labels = torch.randint(0, 10, (n,), generator=g)
    pred = torch.randint(3, 14, (n,), generator=g)
    assert macro_f1(pred, labels) == pytest.approx(sk.f1_score(labels.numpy(), pred.numpy(), average="macro"))
    assert micro_f1(pred, labels) == pytest.approx(sk.f1_score(labels.numpy(), pred.numpy(), average="micro"))


@pytest.mark.parametrize("seed", range(4))
def test_f1_mean_vs_sklearn(seed):
    g = torch.Generator().manual_seed(100 + seed)
    n = 40
    logits = torch.randn(n, 52, generator=g)
    labels = torch.randint(0, 52, (n,), generator=g)
    labels[: n // 4] = logits[: n // 4].argmax(1)        # some right answers
    pred = logits.argmax(1).numpy()
    body = np.asarray(MA52_BODY)
    parts = [sk.f1_score(labels.numpy(), pred, average="micro"),
             sk.f1_score(labels.numpy(), pred, average="macro"),
             sk.f1_score(body[labels.numpy()], body[pred], average="micro"),
             sk.f1_score(body[labels.numpy()], body[pred], average="macro")]
    got = f1_scores(logits, labels, MA52_BODY)
    assert [got[k] for k in ("action_micro_f1", "action_macro_f1", "body_micro_f1", "body_macro_f1")] \
        == pytest.approx(parts)
    assert f1_mean(logits, labels, MA52_BODY) == pytest.approx(np.mean(parts))
    assert f1_mean(torch.as_tensor(pred), labels, MA52_BODY) == pytest.approx(np.mean(parts))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_topk_vs_sklearn(k):
    g = torch.Generator().manual_seed(k)
    logits = torch.randn(50, 12, generator=g)
    labels = torch.randint(0, 12, (50,), generator=g)
    want = sk.top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=np.arange(12))
    assert topk_accuracy(logits, labels, k) == pytest.approx(want)


def test_bad_inputs():
    with pytest.raises(ValueError, match="labels"):
        topk_accuracy(torch.randn(4, 3), torch.rand(4), 1)
    with pytest.raises(ValueError, match="body_of_class"):
        f1_mean(torch.tensor([0, 7]), torch.tensor([1, 2]), [0, 0, 1])
