"""Signal is Harder: the loss terms by hand, the focal weights, no bias labels, the latent perturbation, the CLI."""
import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from fairlab.data.base import Batch
from fairlab.experiments.signal_is_harder import compare_methods, results_table
from fairlab.methods.sih import (
    SignalIsHarder,
    fit_sih,
    fit_sih_members,
    perturb_bias_latent,
    recolour,
    reconstruct,
    released_validation,
    signal_weights,
    sih_loss,
    swap_bias_latents,
)
from fairlab.models.vae import kl_to_standard_normal

from conftest import prepared


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, 3, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g),
                 torch.zeros(n, dtype=torch.long), torch.arange(n))


def test_signal_weights_are_one_minus_p_to_the_q():
    w = signal_weights(torch.tensor([0.0, 0.75, 1.0]), q=0.5)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5, 0.0]))
    # the published q = 0.7: an aligned sample the bias model is sure of (p_b = 0.99) keeps 4% of its weight
    assert signal_weights(torch.tensor(0.99), 0.7).item() == pytest.approx(0.01**0.7, rel=1e-5)


def test_kl_to_standard_normal_by_hand():
    # mean 1, var 1: 1/2 per dimension; mean 0, var 2: (2 - 1 - log 2) / 2 per dimension
    assert kl_to_standard_normal(torch.ones(1, 4), torch.zeros(1, 4)).item() == pytest.approx(2.0)
    expected = 3 * (1 - math.log(2)) / 2
    assert kl_to_standard_normal(torch.zeros(1, 3), torch.full((1, 3), math.log(2))).item() == pytest.approx(expected)


def test_sih_loss_terms_by_hand_on_a_zeroed_model():
    # All weights zero: means 0, log-variances 0 (so KL = 0), every logit 0 (so p = 1/10 and CE = log 10),
    # every pixel logit 0 (so each pixel's BCE is log 2 whatever x is). The sampled z cannot change any of this.
    model = SignalIsHarder()
    for p in model.parameters():
        nn.init.zeros_(p)
    out = sih_loss(model, _batch(), q=0.7)
    log10 = math.log(10)
    assert out["signal"].item() == pytest.approx(0.9**0.7 * log10, rel=1e-5)  # (1 - p_b)^q CE
    assert out["bias"].item() == pytest.approx(0.1**0.7 * log10, rel=1e-5)  # p_b^q CE
    assert out["reconstruction"].item() == pytest.approx(100 * math.log(2), rel=1e-5)  # 100 * 2352 log 2 / 2352
    assert out["kl"].item() == pytest.approx(0.0, abs=1e-7)
    assert out["loss"].item() == pytest.approx(((0.9**0.7 + 0.1**0.7) * log10 + 100 * math.log(2)), rel=1e-5)
    scaled = sih_loss(model, _batch(), q=0.7, gce_scale_by_q=True, reconstruction_weight=10.0)
    assert scaled["bias"].item() == pytest.approx(0.7 * 0.1**0.7 * log10, rel=1e-5)
    assert scaled["reconstruction"].item() == pytest.approx(10 * math.log(2), rel=1e-5)


def test_signal_loss_sends_no_gradient_to_the_bias_branch():
    torch.manual_seed(0)
    model = SignalIsHarder()
    sih_loss(model, _batch())["signal"].backward()
    for module in (model.bias_encoder, model.bias_classifier, model.decoder):
        assert all(p.grad is None or not p.grad.any() for p in module.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.signal_classifier.parameters())


def test_perturbation_makes_the_classifier_predict_the_target():
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.ReLU(), nn.Linear(100, 10))
    z = torch.randn(64, 100)
    start = classifier(z).argmax(1)
    target = (start + torch.randint(1, 10, (64,))) % 10  # a class other than the current prediction
    z_new, success = perturb_bias_latent(classifier, z, target)
    assert success.float().mean() >= 0.9
    assert torch.equal(classifier(z_new).argmax(1)[success], target[success])
    # without steps nothing moves and nothing flips: the success above is the attack's doing
    z_same, none = perturb_bias_latent(classifier, z, target, max_steps=0)
    assert torch.equal(z_same, z) and not none.any()
    # a sample already predicting its target is left where it is
    z_kept, ok = perturb_bias_latent(classifier, z[:4], start[:4])
    assert torch.equal(z_kept, z[:4]) and ok.all()


def test_recolour_and_swap_change_only_the_bias_latent():
    torch.manual_seed(0)
    model = SignalIsHarder().eval()
    x = _batch(6).x
    target = (model.bias_logits(x).argmax(1) + 1) % 10
    images, success = recolour(model, x, target)
    assert images.shape == x.shape and 0 <= images.min() and images.max() <= 1
    assert success.float().mean() >= 0.8
    # swapping an image's bias latent with its own is plain reconstruction
    torch.testing.assert_close(swap_bias_latents(model, x, x), reconstruct(model, x))
    assert not torch.allclose(swap_bias_latents(model, x, x.flip(0)), reconstruct(model, x))
    with pytest.raises(ValueError, match="same number"):
        swap_bias_latents(model, x, x[:2])


@pytest.fixture(scope="module")
def tiny_train():
    from fairlab.data import coloured_mnist

    return coloured_mnist("lff", "train", bias_conflicting_ratio=0.05, subsample=512)


def test_sih_uses_no_bias_labels_in_training_or_selection(tiny_train):
    perm = torch.randperm(len(tiny_train), generator=torch.Generator().manual_seed(1))
    shuffled = dataclasses.replace(tiny_train, s=tiny_train.s[perm], group=tiny_train.group[perm],
                                   aligned=tiny_train.aligned[perm])
    assert not torch.equal(shuffled.s, tiny_train.s)
    runs = [fit_sih(data, epochs=2, batch_size=128, seed=3, device="cpu", progress=False) for data in
            (tiny_train, shuffled)]
    (model_a, hist_a), (model_b, hist_b) = runs
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    assert hist_a.drop(columns="seconds").equals(hist_b.drop(columns="seconds"))
    assert hist_a.attrs["best_epoch"] == hist_b.attrs["best_epoch"]
    assert {"val_loss", "lr", "signal", "bias", "reconstruction", "kl"} <= set(hist_a.columns)


def test_results_table_labels_the_published_numbers():
    import pandas as pd

    runs = pd.DataFrame([dict(method="sih", rho=0.01, seed=s, accuracy=a, aligned_accuracy=1.0,
                              conflicting_accuracy=a) for s, a in ((0, 0.8), (1, 0.7))])
    table = results_table(runs)
    assert table.loc[("sih", 0.01), "published (Vandenhirtz et al., 10 seeds)"] == "80.03 ± 2.04"
    assert table.loc[("sih", 0.01), "unbiased acc. (ours)"] == "75.00 ± 7.07"


def test_cli_prints_the_json_metrics_line(capsys, monkeypatch):
    from fairlab.cli import main

    monkeypatch.setenv("FAIRLAB_PROGRESS", "0")
    monkeypatch.setenv("FAIRLAB_DEVICE", "cpu")  # restored afterwards (the CLI's --device writes the environment)
    assert main(["run", "sih", "--subsample", "512", "--epochs", "1", "--device", "cpu", "--batch-size", "128"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy", "seconds", "epochs",
                "best_epoch"):
        assert key in result, key
    assert result["method"] == "sih" and result["epochs"] == 1
    assert 0 <= result["accuracy"] <= 1


def test_stacked_sih_uses_no_bias_labels_either(tiny_train):
    perm = torch.randperm(len(tiny_train), generator=torch.Generator().manual_seed(1))
    shuffled = dataclasses.replace(tiny_train, s=tiny_train.s[perm], group=tiny_train.group[perm],
                                   aligned=tiny_train.aligned[perm])
    runs = []
    for data in (tiny_train, shuffled):
        train, val = data.random_split(0.25, seed=0)
        runs.append(fit_sih_members([train, train], [3, 4], vals=[val, val], epochs=2, batch_size=128, device="cpu",
                                    progress=False))
    (models_a, hists_a), (models_b, hists_b) = runs
    for a, b in zip(models_a, models_b):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    assert hists_a[1].drop(columns="seconds").equals(hists_b[1].drop(columns="seconds"))


def test_validation_loss_reads_the_encoder_means():
    # sampled latents make the training loss noisy; the validation loss must be a function of the model alone
    torch.manual_seed(0)
    model, batch = SignalIsHarder(), _batch(32)
    sampled = [sih_loss(model, batch)["loss"].item() for _ in range(2)]
    means = [sih_loss(model, batch, sample_latents=False)["loss"].item() for _ in range(2)]
    assert sampled[0] != sampled[1] and means[0] == means[1]


def _val_loss_of(model, val):
    from fairlab.train import evaluate_loss

    model.eval()
    return evaluate_loss(lambda b: sih_loss(model, b, sample_latents=False), val)["loss"]


def test_fit_sih_early_stops_on_the_deterministic_validation_loss(tiny_train):
    train, val = tiny_train.random_split(0.25, seed=0)
    model, history = fit_sih(train, val=val, epochs=1, patience=None, batch_size=64, seed=0, device="cpu",
                             progress=False)
    # the logged validation loss is exactly the means-only loss of the trained model: re-measuring it repeats it
    assert history["val_loss"].iloc[0] == pytest.approx(_val_loss_of(model, val), rel=1e-6)
    assert _val_loss_of(model, val) == _val_loss_of(model, val)
    models, histories = fit_sih_members([train], [0], vals=[val], epochs=1, patience=None, batch_size=64, device="cpu",
                                        progress=False)
    assert histories[0]["val_loss"].iloc[0] == pytest.approx(_val_loss_of(models[0], val), rel=1e-5)


def test_released_validation_drops_the_partial_batch_and_divides_by_the_whole_set():
    from fairlab.data.base import BiasedDataset

    n = 300
    data = BiasedDataset(x=torch.arange(n, dtype=torch.float32)[:, None], y=torch.zeros(n, dtype=torch.long),
                         s=torch.zeros(n, dtype=torch.long), num_classes=2)
    # per-sample loss = the sample's index; accuracy 1 everywhere
    loss = lambda b: {"loss": b.x[:, 0].mean(), "accuracy": torch.ones(())}  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    draws = [released_validation(loss, data, 100, generator) for _ in range(3)]
    for draw in draws:
        # three whole batches: all 300 images, in whatever order: the exact mean
        assert draw["loss"] == pytest.approx((n - 1) / 2) and draw["accuracy"] == 1.0
    draws = [released_validation(loss, data, 128, generator) for _ in range(20)]
    # two whole batches of 128: 256 images kept, the sum divided by 300, a different 44 dropped each time
    assert all(d["accuracy"] == 1.0 for d in draws)
    assert all(d["loss"] < (n - 1) / 2 * 256 / 300 * 1.2 for d in draws)
    assert len({round(d["loss"], 6) for d in draws}) > 10
    mean = sum(d["loss"] for d in draws) / len(draws)
    assert mean == pytest.approx((n - 1) / 2 * 256 / 300, rel=0.05)
    with pytest.raises(ValueError, match="fewer than one batch"):
        released_validation(loss, data, 512, generator)


def test_fit_sih_can_stop_on_the_released_validation_loss(tiny_train):
    train, val = tiny_train.random_split(0.25, seed=0)
    _, history = fit_sih(train, val=val, epochs=2, patience=None, batch_size=64, seed=0, device="cpu",
                         progress=False, validation="released")
    assert history["val_loss"].notna().all() and len(history) == 2
    with pytest.raises(ValueError, match="single runs"):
        fit_sih_members([train], [0], vals=[val], epochs=1, batch_size=64, device="cpu", progress=False,
                        validation="released")


def test_compare_methods_vanilla_and_lff_train_on_all_the_data():
    runs, trained = compare_methods((0.05,), (0,), subsample=600, vanilla_epochs=2, lff_epochs=1, sih_epochs=1,
                                    batch_size=128, device="cpu")
    # fixed epochs on the whole training set (600 // 128 = 4 batches), no validation columns; SiH selects on 10%
    assert "val_loss" not in trained[("vanilla", 0.05, 0)][1] and len(trained[("vanilla", 0.05, 0)][1]) == 2
    assert "val_loss" in trained[("sih", 0.05, 0)][1]


def test_compare_methods_table_and_stacking_in_groups():
    kwargs = dict(subsample=600, vanilla_epochs=2, lff_epochs=1, sih_epochs=1, batch_size=128, device="cpu")
    runs, trained = compare_methods((0.05,), (0, 1), **kwargs)
    assert len(runs) == 6 and set(runs.method) == {"vanilla", "lff", "sih"}
    assert set(trained) == {(m, 0.05, s) for m in ("vanilla", "lff", "sih") for s in (0, 1)}
    assert runs[["accuracy", "aligned_accuracy", "conflicting_accuracy"]].stack().between(0, 1).all()
    # one stacked training per method: every run of a method reports the same share of its wall-clock
    assert (runs.groupby("method").seconds.nunique() == 1).all()
    # stacking in groups of one changes nothing for the methods without sampling noise
    alone, _ = compare_methods((0.05,), (0, 1), max_stacked=1, **kwargs)
    deterministic = runs.method != "sih"
    assert runs[deterministic].accuracy.tolist() == pytest.approx(alone[deterministic].accuracy.tolist(), abs=2e-4)


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_chapter_settings_are_the_protocol_the_cli_and_margins_use(profile, monkeypatch):
    # chapter 4's settings cell reads the protocol that the CLI and quick_margins.py use
    import json as _json
    from pathlib import Path

    from fairlab.protocols import protocol

    cells = _json.loads((Path(__file__).parents[1] / "notebooks" / "04_signal_is_harder.ipynb").read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "RATIOS =" in "".join(c["source"]))
    monkeypatch.setenv("FAIRLAB_PROFILE", profile)
    scope = {"protocol": protocol}
    exec(source, scope)
    chapter = protocol("signal_is_harder", profile)
    assert scope["RATIOS"] == chapter["ratios"] and scope["SEEDS"] == chapter["seeds"]
    assert scope["SUBSAMPLE"] == chapter["subsample"] and scope["BATCH_SIZE"] == chapter["batch_size"]
    assert scope["EPOCHS"] == {k: chapter[k] for k in ("vanilla_epochs", "lff_epochs", "sih_epochs")}


@pytest.mark.parametrize("profile", ["quick", "full"])
@pytest.mark.parametrize("method, epochs_key", [("sih", "sih_epochs"), ("lff", "lff_epochs"), ("erm", "vanilla_epochs")])
def test_cli_fills_unset_options_with_chapter_4s_protocol(method, epochs_key, profile, monkeypatch):
    # `python -m fairlab run sih|lff|erm` on LfF's Coloured MNIST trains what chapter 4 trains; what the user sets wins
    from fairlab.protocols import protocol

    chapter = protocol("signal_is_harder", profile)
    args, hp = prepared(["run", method, "--profile", profile], monkeypatch)
    assert (hp.epochs, hp.batch_size, args.subsample) == (
        chapter[epochs_key], chapter["batch_size"], chapter["subsample"])
    args, hp = prepared(["run", method, "--profile", profile, "--epochs", "2", "--batch-size", "64",
                          "--subsample", "3000"], monkeypatch)
    assert (hp.epochs, hp.batch_size, args.subsample) == (2, 64, 3000)
    if method != "erm":  # ERM elsewhere keeps its own protocol (3 / 100 epochs, batches of 256)
        return
    args, hp = prepared(["run", "erm", "--dataset", "adult", "--profile", profile], monkeypatch)
    assert (hp.epochs, hp.batch_size, args.subsample) == ({"quick": 3, "full": 100}[profile], 256, None)
