"""runtime.metrics.compute_metrics agrees with scikit-learn."""

import numpy as np
import pytest
import sklearn.metrics as skm
import torch

from nnspec.runtime.data import Normalizer
from nnspec.runtime.metrics import compute_metrics, probabilities


def _logits(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    n, k = 60, 4
    logits = _logits(n, k, seed)
    y = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed + 10))
    got = compute_metrics("classification", logits, y)
    probs = torch.softmax(logits.double(), 1).numpy()
    pred, true = probs.argmax(1), y.numpy()
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(true, pred))
    for name, fn in (("f1", skm.f1_score), ("precision", skm.precision_score), ("recall", skm.recall_score)):
        assert got[name] == pytest.approx(fn(true, pred, average="macro", zero_division=0)), name
    assert got["log_loss"] == pytest.approx(skm.log_loss(true, probs, labels=list(range(k))), rel=1e-6)
    assert "auc" not in got


def test_macro_averages_cover_the_classes_present_in_truth_or_predictions():
    # class 3 is never the truth, class 2 never predicted, class 4 neither: sklearn averages over {0, 1, 2, 3}
    k = 5
    true = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    pred = np.array([0, 1, 1, 3, 0, 1, 0, 1])
    logits = torch.full((len(true), k), -5.0)
    logits[torch.arange(len(true)), torch.from_numpy(pred)] = 5.0
    got = compute_metrics("classification", logits, torch.from_numpy(true))
    for name, fn in (("f1", skm.f1_score), ("precision", skm.precision_score), ("recall", skm.recall_score)):
        assert got[name] == pytest.approx(fn(true, pred, average="macro", zero_division=0)), name
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(true, pred)) == 0.5


def test_binary_metrics_match_sklearn_including_auc():
    n = 80
    z = _logits(n, 1, 3)
    y = (torch.rand(n, 1, generator=torch.Generator().manual_seed(4)) < torch.sigmoid(z)).float()
    got = compute_metrics("binary", z, y)
    p = torch.sigmoid(z).view(-1).double().numpy()
    true, pred = y.view(-1).numpy().astype(int), (p > 0.5).astype(int)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(true, pred))
    for name, fn in (("f1", skm.f1_score), ("precision", skm.precision_score), ("recall", skm.recall_score)):
        assert got[name] == pytest.approx(fn(true, pred, average="macro", zero_division=0)), name
    assert got["auc"] == pytest.approx(skm.roc_auc_score(true, p))
    assert got["log_loss"] == pytest.approx(skm.log_loss(true, p), rel=1e-5)
    probs = probabilities("binary", z)
    assert probs.shape == (n, 2) and torch.allclose(probs.sum(1), torch.ones(n))


def test_binary_auc_is_nan_when_one_class_is_missing():
    z = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    got = compute_metrics("binary", z, torch.ones(5, 1))
    assert np.isnan(got["auc"]) and got["accuracy"] == pytest.approx(3 / 5)  # the positive logits are right


def test_regression_metrics_match_sklearn_in_the_targets_units():
    g = torch.Generator().manual_seed(5)
    true = torch.randn(50, 2, generator=g) * torch.tensor([3.0, 0.5]) + torch.tensor([10.0, -1.0])
    pred = true + torch.randn(50, 2, generator=g) * 0.7
    plain = compute_metrics("regression", pred, true)
    t, p = true.numpy(), pred.numpy()
    assert plain["mse"] == pytest.approx(skm.mean_squared_error(t, p), rel=1e-5)
    assert plain["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(t, p)), rel=1e-5)
    assert plain["mae"] == pytest.approx(skm.mean_absolute_error(t, p), rel=1e-5)
    assert plain["r2"] == pytest.approx(skm.r2_score(t, p), rel=1e-5)
    # trained on standardized targets: metrics are reported after undoing the standardization
    norm = Normalizer.fit("standardize", t, per_channel=False)
    scaled = compute_metrics("regression", torch.from_numpy(norm(p)), torch.from_numpy(norm(t)), norm)
    for name in ("mse", "rmse", "mae", "r2"):
        assert scaled[name] == pytest.approx(plain[name], rel=1e-4), name
