"""fairlab.metrics.probe_accuracy: the independent linear audit of a representation, against scikit-learn."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from fairlab.metrics import probe_accuracy


def _mixture(n=2000, dim=8, classes=3, separation=1.0, seed=0):
    """Gaussian blobs: class k has mean separation * e_k (e_k a coordinate axis)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=gen)
    means = separation * torch.eye(classes, dim)
    return means[labels] + torch.randn(n, dim, generator=gen), labels


def test_matches_scikit_learn_logistic_regression():
    features, labels = _mixture(separation=1.2)
    weight_decay = 1e-3
    ours = probe_accuracy(features, labels, weight_decay=weight_decay, seed=3)
    # the same split and standardisation; sklearn's C multiplies the summed loss: C = 1 / (weight_decay * n_fit)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(3)).numpy()
    test_rows, fit_rows = order[:1000], order[1000:]
    x = features.numpy()
    mean, std = x[fit_rows].mean(0), x[fit_rows].std(0, ddof=1)
    x = (x - mean) / std
    reference = LogisticRegression(C=1 / (weight_decay * len(fit_rows)), tol=1e-8, max_iter=5000)
    reference.fit(x[fit_rows], labels.numpy()[fit_rows])
    expected = float(np.mean(reference.predict(x[test_rows]) == labels.numpy()[test_rows]))
    assert ours["accuracy"] == pytest.approx(expected, abs=0.005)
    assert 0.55 < ours["accuracy"] < 0.95  # neither trivial nor chance: the comparison means something


def test_separable_features_are_read_perfectly_and_noise_at_chance():
    features, labels = _mixture(separation=12.0)
    assert probe_accuracy(features, labels)["accuracy"] > 0.99
    noise = torch.randn(2000, 8, generator=torch.Generator().manual_seed(1))
    result = probe_accuracy(noise, labels)
    assert abs(result["accuracy"] - result["chance"]) < 0.05
    assert 0.30 < result["chance"] < 0.40  # three balanced classes


def test_labels_need_not_be_contiguous_and_inputs_may_be_numpy():
    features, labels = _mixture(separation=12.0, classes=2)
    assert probe_accuracy(features.numpy(), (labels * 7 + 3).numpy())["accuracy"] > 0.99


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"\(samples, dimensions\)"):
        probe_accuracy(torch.zeros(10), torch.zeros(10))
    with pytest.raises(ValueError, match="one value per row"):
        probe_accuracy(torch.zeros(10, 2), torch.zeros(9))
    with pytest.raises(ValueError, match="test_fraction"):
        probe_accuracy(torch.zeros(10, 2), torch.zeros(10), test_fraction=1.0)
