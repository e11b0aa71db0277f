"""The training loop: learning, early stopping with best-state restore, NaN detection, checkpoints."""
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fairlab import by_profile, seed_everything
from fairlab.data import BiasedDataset
from fairlab.train import (NonFiniteLossError, capture_step, fit, load_checkpoint, make_step, predict,
                           save_checkpoint)


def toy_data(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return BiasedDataset(x=x, y=y, s=(x[:, 1] > 0).long(), num_classes=2)


def ce(model, batch):
    return {"loss": F.cross_entropy(model(batch.x), batch.y)}


def test_fit_learns_a_linear_problem_and_reports_history():
    seed_everything(0)
    data = toy_data()
    model = nn.Linear(2, 2)
    step = make_step(model, ce, torch.optim.SGD(model.parameters(), lr=0.5))
    history = fit(model, data, step, epochs=5, batch_size=64, device="cpu", progress=False)
    assert isinstance(history, pd.DataFrame) and list(history.index) == [0, 1, 2, 3, 4]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert (predict(model, data) == data.y).float().mean() > 0.95


def test_early_stopping_restores_the_best_state():
    seed_everything(0)
    data = toy_data()
    model = nn.Linear(2, 2)
    step = make_step(model, ce, torch.optim.SGD(model.parameters(), lr=0.1))
    # a scripted validation score: best at epoch 1, then worse -> stop after `patience` bad epochs
    scores = iter([0.5, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8])
    snapshots = []

    def validate():
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_loss": next(scores)}

    history = fit(model, data, step, epochs=7, batch_size=64, validate=validate, monitor="val_loss", patience=2,
                  device="cpu", progress=False)
    assert len(history) == 4  # epochs 0..3: two epochs without improvement after the best (epoch 1)
    assert history.attrs["best_epoch"] == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[1][key])


def test_nan_loss_raises_naming_the_step():
    data = toy_data(n=256)
    model = nn.Linear(2, 2)
    calls = {"n": 0}

    def step(batch):
        calls["n"] += 1
        loss = torch.tensor(float("nan")) if calls["n"] == 3 else torch.tensor(1.0)
        return {"loss": loss}

    with pytest.raises(NonFiniteLossError, match=r"epoch 0, step 2"):
        fit(model, data, step, epochs=2, batch_size=64, device="cpu", progress=False)


def test_checkpoint_round_trip_is_atomic_and_weights_only(tmp_path):
    model = nn.Linear(3, 2)
    path = tmp_path / "ckpt" / "best.pt"
    save_checkpoint({"model": model.state_dict(), "epoch": 4}, path)
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temp file left behind
    state = load_checkpoint(path)
    assert state["epoch"] == 4 and torch.equal(state["model"]["weight"], model.weight.detach())


def test_fit_writes_the_best_checkpoint(tmp_path):
    data = toy_data(n=256)
    model = nn.Linear(2, 2)
    step = make_step(model, ce, torch.optim.SGD(model.parameters(), lr=0.1))
    scores = iter([0.3, 0.1, 0.2])
    fit(model, data, step, epochs=3, batch_size=64, validate=lambda: {"val": next(scores)}, monitor="val",
        checkpoint=tmp_path / "best.pt", device="cpu", progress=False)
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1


def test_bad_arguments():
    data = toy_data(n=100)
    model = nn.Linear(2, 2)
    step = make_step(model, ce, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(model, data, step, epochs=1, batch_size=256, device="cpu", progress=False)
    with pytest.raises(ValueError, match="monitor"):
        fit(model, data, step, epochs=1, batch_size=10, patience=1, device="cpu", progress=False)


def test_max_seconds_stops_after_the_epoch_it_runs_out_in():
    data = toy_data(n=128)
    model = nn.Linear(2, 2)
    step = make_step(model, ce, torch.optim.SGD(model.parameters(), lr=0.1))
    history = fit(model, data, step, epochs=4, batch_size=32, device="cpu", progress=False, max_seconds=1e-9)
    assert list(history.index) == [0] and history.attrs["out_of_time"]
    history = fit(model, data, step, epochs=3, batch_size=32, device="cpu", progress=False, max_seconds=3600)
    assert list(history.index) == [0, 1, 2] and not history.attrs["out_of_time"]
    # the last epoch ends the run anyway: running out of time in it is not an early stop
    history = fit(model, data, step, epochs=1, batch_size=32, device="cpu", progress=False, max_seconds=1e-9)
    assert list(history.index) == [0] and not history.attrs["out_of_time"]
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        fit(model, data, step, epochs=1, batch_size=32, device="cpu", progress=False, max_seconds=0)


def test_capture_step_refuses_what_it_cannot_capture():
    data = toy_data(n=64)
    batch = next(data.batches(32))
    model = nn.Linear(2, 2)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="capturable=True"):
        capture_step(make_step(model, ce, sgd), batch, model, sgd)
    adam = torch.optim.Adam(model.parameters(), capturable=True)
    with pytest.raises(ValueError, match="CUDA device, not cpu"):
        capture_step(make_step(model, ce, adam, capturable=True), batch, model, adam)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_captured_step_trains_as_the_eager_step_does():
    """Replaying the captured graph takes the same steps as the eager loop: warm-up leaves no trace."""
    data = toy_data(n=256).to("cuda")
    states = []
    for captured in (False, True):
        seed_everything(0)
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2)).cuda()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, capturable=True)
        step = make_step(model, ce, optimizer, capturable=captured)
        if captured:
            step = capture_step(step, next(data.batches(32)), model, optimizer)
        torch.manual_seed(1)  # the same batch order
        history = fit(model, data, step, epochs=3, batch_size=32, device="cuda", progress=False)
        states.append((model.state_dict(), history["loss"]))
    (eager, eager_loss), (graphed, graphed_loss) = states
    for name, value in eager.items():
        assert torch.allclose(value, graphed[name], rtol=1e-4, atol=1e-6), name
    assert torch.allclose(torch.tensor(eager_loss.values), torch.tensor(graphed_loss.values), rtol=1e-4)


def test_profiles(monkeypatch):
    monkeypatch.setenv("FAIRLAB_PROFILE", "quick")
    assert by_profile(quick=1, full=2) == 1
    monkeypatch.setenv("FAIRLAB_PROFILE", "full")
    assert by_profile(quick=1, full=2) == 2
    monkeypatch.setenv("FAIRLAB_PROFILE", "fast")
    with pytest.raises(ValueError, match="quick"):
        by_profile(quick=1, full=2)


def test_cuda_request_on_a_cpu_machine_is_explained(monkeypatch):
    from fairlab import config

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("FAIRLAB_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        config.device()
