"""Learning from Failure: the GCE loss, the relative-difficulty weight, the per-sample EMA, no bias labels, CLI."""
import dataclasses
import json
import math

import pytest
import torch

from fairlab.methods.lff import PerSampleEMA, fit_lff, generalized_cross_entropy, relative_difficulty


def test_gce_matches_hand_computed_value():
    logits = torch.log(torch.tensor([[1.0, 3.0]]))  # softmax = (0.25, 0.75)
    y = torch.tensor([1])
    # p_y = 0.75: GCE = 0.75^0.7 * (-log 0.75) = 0.817619 * 0.287682
    assert generalized_cross_entropy(logits, y, 0.7).item() == pytest.approx(0.235214, abs=1e-5)
    assert generalized_cross_entropy(logits, y, 0.7, scale_by_q=True).item() == pytest.approx(0.7 * 0.235214, abs=1e-5)


def test_gce_gradient_is_that_of_one_minus_p_to_the_q_over_q():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    (grad_gce,) = torch.autograd.grad(generalized_cross_entropy(logits, y, 0.7).sum(), logits)
    p = torch.softmax(logits, 1).gather(1, y[:, None]).squeeze(1)
    (grad_ref,) = torch.autograd.grad(((1 - p.pow(0.7)) / 0.7).sum(), logits)
    torch.testing.assert_close(grad_gce, grad_ref)


def test_gce_rejects_bad_q():
    with pytest.raises(ValueError, match="q in"):
        generalized_cross_entropy(torch.zeros(1, 2), torch.tensor([0]), 0.0)


def test_relative_difficulty():
    w = relative_difficulty(torch.tensor([0.2, 1.0, 0.0]), torch.tensor([0.6, 0.0, 0.0]))
    torch.testing.assert_close(w, torch.tensor([0.25, 1.0, 0.0]), atol=1e-6, rtol=0)


def test_ema_first_value_then_smoothing_then_class_normalisation():
    ema = PerSampleEMA(torch.tensor([0, 0, 1]), num_classes=2, alpha=0.7)
    ema.update(torch.tensor([0, 2]), torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(ema.values, torch.tensor([1.0, 0.0, 4.0]))  # first value taken as is
    ema.update(torch.tensor([0]), torch.tensor([2.0]))
    torch.testing.assert_close(ema.values, torch.tensor([1.3, 0.0, 4.0]))  # 0.7 * 1 + 0.3 * 2
    torch.testing.assert_close(ema.class_max(), torch.tensor([1.3, 4.0]))
    # divided by the class maximum: class 0 by 1.3, class 1 by 4
    torch.testing.assert_close(ema.normalised(torch.tensor([0, 1, 2])), torch.tensor([1.0, 0.0, 1.0]))


@pytest.fixture(scope="module")
def tiny_train():
    from fairlab.data import coloured_mnist

    return coloured_mnist("lff", "train", bias_conflicting_ratio=0.05, subsample=512)


def _shuffled_bias(data):
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
    return dataclasses.replace(data, s=data.s[perm], group=data.group[perm], aligned=data.aligned[perm])


def test_lff_uses_no_bias_labels(tiny_train):
    shuffled = _shuffled_bias(tiny_train)
    assert not torch.equal(shuffled.s, tiny_train.s)
    runs = [fit_lff(data, epochs=2, batch_size=64, seed=3, device="cpu", progress=False) for data in
            (tiny_train, shuffled)]
    (model_a, hist_a), (model_b, hist_b) = runs
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    assert hist_a.drop(columns="seconds").equals(hist_b.drop(columns="seconds"))
    assert math.isfinite(hist_a["loss"].iloc[-1])


def test_cli_prints_the_json_metrics_line(capsys, monkeypatch):
    from fairlab.cli import main

    monkeypatch.setenv("FAIRLAB_PROGRESS", "0")
    monkeypatch.setenv("FAIRLAB_DEVICE", "cpu")  # restored afterwards (the CLI's --device writes the environment)
    assert main(["run", "lff", "--subsample", "512", "--epochs", "1", "--device", "cpu", "--batch-size", "128"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy", "seconds", "epochs"):
        assert key in result, key
    assert result["method"] == "lff" and result["epochs"] == 1
    assert 0 <= result["accuracy"] <= 1
