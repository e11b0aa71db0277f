"""Stacked training (fairlab.ensemble): each member trains exactly as the single run with its seed would."""
import dataclasses
import math

import pytest
import torch

import fairlab.methods.sih as sih_module
from fairlab import ensemble as ens
from fairlab.data.base import BiasedDataset
from fairlab.methods.erm import fit_erm, fit_erm_members
from fairlab.methods.lff import PerSampleEMA, fit_lff, fit_lff_members
from fairlab.methods.sih import fit_sih, fit_sih_members
from fairlab.models import MLP


def _data(seed, n=600, shape=(3, 28, 28)):
    """A learnable toy: the label is written into the mean brightness of the image (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (torch.rand(n, *shape, generator=g) * 0.5 + y.view(-1, *[1] * len(shape)) / 20).clamp(0, 1)
    return BiasedDataset(x, y, y.clone(), num_classes=10, num_groups=10, name=f"toy{seed}")


def _assert_same_weights(a, b, atol=2e-5):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert (p - q).abs().max() <= atol + 1e-4 * q.abs().max(), (name, (p - q).abs().max().item())


def test_member_adam_is_torch_adam_and_a_zero_rate_freezes_a_member():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 5, requires_grad=True)
    ref = w.detach().clone().requires_grad_(True)
    ours = ens.MemberAdam([w], torch.tensor([1e-2, 1e-2, 0.0]))
    theirs = torch.optim.Adam([ref], lr=1e-2)
    for step in range(5):
        target = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(step))
        for param in (w, ref):
            param.grad = None
            ((param - target) ** 2).sum().backward()
        ours.step()
        theirs.step()
    torch.testing.assert_close(w[:2], ref[:2])
    # the frozen member never moved
    torch.manual_seed(0)
    torch.testing.assert_close(w[2], torch.randn(3, 4, 5)[2])


def test_plateau_matches_reduce_lr_on_plateau():
    values = [3.0, 2.0, 2.0, 1.999999, 1.5, 1.6, 1.7, 1.0, 1.0]
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=1e-3)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=0, threshold=1e-5)
    ours, lr = ens.Plateau(0.1, patience=0), 1e-3
    for v in values:
        reference.step(v)
        lr = ours.step(v, lr)
        assert lr == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)


def test_stacked_ema_equals_one_ema_per_member():
    labels = torch.tensor([[0, 0, 1, 1], [1, 0, 1, 0]])
    stacked = PerSampleEMA(labels, num_classes=2, alpha=0.7)
    singles = [PerSampleEMA(labels[k], num_classes=2, alpha=0.7) for k in range(2)]
    for index, loss in [(torch.tensor([[0, 2], [3, 1]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])),
                        (torch.tensor([[2, 3], [3, 0]]), torch.tensor([[0.5, 1.0], [1.0, 2.0]]))]:
        stacked.update(index, loss)
        for k in range(2):
            singles[k].update(index[k], loss[k])
    for k in range(2):
        torch.testing.assert_close(stacked.values[k], singles[k].values)
        torch.testing.assert_close(stacked.normalised(torch.tensor([[0, 1, 2, 3]] * 2))[k],
                                   singles[k].normalised(torch.tensor([0, 1, 2, 3])))


def test_erm_members_equal_single_runs():
    train = [_data(0), _data(1)]
    val = [_data(10, n=200), _data(11, n=200)]
    models, histories = fit_erm_members(train, [3, 4], epochs=3, vals=val, batch_size=64, device="cpu")
    for k, seed in enumerate([3, 4]):
        single, history = fit_erm(train[k], val=val[k], epochs=3, seed=seed, batch_size=64, device="cpu")
        _assert_same_weights(models[k], single)
        assert histories[k]["val_loss"].tolist() == pytest.approx(history["val_loss"].tolist(), rel=1e-4)
        assert histories[k].attrs["best_epoch"] == history.attrs["best_epoch"]


def test_lff_members_equal_single_runs():
    train = [_data(0), _data(1)]
    models, histories = fit_lff_members(train, [0, 5], epochs=2, batch_size=64, device="cpu")
    for k, seed in enumerate([0, 5]):
        single, history = fit_lff(train[k], epochs=2, seed=seed, batch_size=64, device="cpu")
        _assert_same_weights(models[k].biased, single.biased)
        _assert_same_weights(models[k].debiased, single.debiased)
        assert histories[k]["mean_weight"].tolist() == pytest.approx(history["mean_weight"].tolist(), rel=1e-4)


def test_sih_members_equal_single_runs_without_sampling_noise(monkeypatch):
    # The latent noise is the only thing drawn differently; with z = mean the runs must agree, early stopping and the
    # plateau schedule included. float64: at this learning rate float32 rounding (bmm vs mm) grows chaotically over
    # a few hundred steps, which would hide a real difference behind a loose tolerance.
    monkeypatch.setattr(sih_module, "reparameterise", lambda mean, logvar: mean)

    def toy(seed, n=600):
        data = _data(seed, n=n, shape=(1, 6, 6))
        return dataclasses.replace(data, x=data.x.double())

    train, val = [toy(0), toy(1), toy(2)], [toy(10, 100), toy(11, 100), toy(12, 100)]
    # patience 3: the rate drops after every epoch without improvement, a member stops after three in a row
    kwargs = dict(epochs=15, patience=3, batch_size=32, device="cpu", lr=0.1)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        models, histories = fit_sih_members(train, [0, 1, 2], vals=val, **kwargs)
        singles = [fit_sih(train[k], val=val[k], seed=k, **kwargs) for k in range(3)]
    finally:
        torch.set_default_dtype(default_dtype)
    for k, (single, history) in enumerate(singles):
        _assert_same_weights(models[k], single, atol=1e-6)
        assert histories[k]["lr"].tolist() == pytest.approx(history["lr"].tolist())
        assert histories[k]["val_loss"].tolist() == pytest.approx(history["val_loss"].tolist(), rel=1e-4)  # float32 sums
    assert len({len(h) for _, h in singles}) > 1, "the members should stop at different epochs"
    assert any(h["lr"].min() < 0.1 for _, h in singles), "the plateau schedule should have acted"


def test_a_member_with_nan_inputs_is_named():
    bad = _data(1)
    bad.x[5] = math.nan
    with pytest.raises(FloatingPointError, match="member 1"):
        fit_erm_members([_data(0), bad], [0, 0], epochs=1, batch_size=64, device="cpu")


def test_members_need_one_architecture_and_one_data_size():
    with pytest.raises(ValueError, match="same architecture"):
        ens.Members([MLP(4, (3,), 2), MLP(4, (5,), 2)])
    with pytest.raises(ValueError, match="one size"):
        fit_erm_members([_data(0), _data(1, n=500)], [0, 1], epochs=1, device="cpu")
