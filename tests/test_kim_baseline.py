"""Kim et al.'s baseline: their network's shapes, their SGD step schedule, and a short fit that learns."""
import pytest
import torch

from fairlab.data.base import BiasedDataset
from fairlab.experiments.mi_backprop import KimSchedule, fit_kim_baseline, kim_sgd
from fairlab.models import KimBaselineNet, RagonesiEncoder
from fairlab.train import predict


def test_kim_baseline_net_shapes():
    model = KimBaselineNet()
    x = torch.rand(5, 3, 28, 28)
    assert model(x).shape == (5, 10)
    assert model.features(x).shape == (5, 64)  # the pooled features the last layer reads
    # the maps it pools: 28 -> (pool) 14 -> (strided conv) 7, with 64 channels
    assert model.features[:-2](x).shape == (5, 64, 7, 7)
    with pytest.raises(ValueError, match=r"\(batch, 3, 28, 28\)"):
        model(torch.rand(5, 3, 32, 32))


def test_ragonesi_encoder_shapes():
    assert RagonesiEncoder()(torch.rand(4, 3, 28, 28)).shape == (4, 64)
    with pytest.raises(ValueError, match="RagonesiEncoder"):
        RagonesiEncoder()(torch.rand(4, 1, 28, 28))


def test_kims_schedule_steps_the_rate_down_every_40_epochs():
    schedule = KimSchedule()
    assert (schedule.epochs, schedule.batch_size, schedule.momentum, schedule.weight_decay) == (100, 128, 0.9, 5e-4)
    assert schedule.lr_at(0) == 0.01 and schedule.lr_at(39) == 0.01
    assert schedule.lr_at(40) == pytest.approx(0.001) and schedule.lr_at(80) == pytest.approx(1e-4)
    # the optimiser's rate after the scheduler's end-of-epoch steps
    optimizer, scheduler = kim_sgd(KimBaselineNet(), schedule)
    rates = []
    for _ in range(41):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # (no gradients: moves nothing) an epoch's steps come before the schedule's
        scheduler.step()
    assert rates[0] == 0.01 and rates[39] == 0.01 and rates[40] == pytest.approx(0.001)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9


def _colour_squares(n: int, seed: int) -> BiasedDataset:
    """An easy stand-in: the class (0..3) is the colour (red, green, blue, white) of a square on a noisy image."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=gen)
    x = 0.2 * torch.rand(n, 3, 28, 28, generator=gen)
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]])
    x[:, :, 8:20, 8:20] = colours[y][:, :, None, None]
    return BiasedDataset(x=x, y=y, s=y.clone(), num_classes=4, num_groups=4, name="squares")


def test_a_short_fit_with_kims_schedule_learns():
    train, test = _colour_squares(512, 0), _colour_squares(256, 1)
    model, history = fit_kim_baseline(train, test=test, epochs=6, decay_every=5, batch_size=32, seed=0,
                                      device="cpu", progress=False)
    assert list(history["lr"]) == pytest.approx([0.01] * 5 + [0.001])
    assert history["test_accuracy"].iloc[-1] > 0.9 and history["test_accuracy"].iloc[0] < 0.9
    torch.manual_seed(0)
    untrained = KimBaselineNet(num_classes=4)
    assert float((predict(untrained, test) == test.y).float().mean()) < 0.5  # chance is 0.25: it did learn
