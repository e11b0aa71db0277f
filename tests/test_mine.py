"""fairlab.models.mine: the Donsker-Varadhan estimator against the closed form for correlated Gaussians."""
import math

import pytest
import torch

from fairlab.models.mine import (
    MINE,
    correlated_gaussians,
    gaussian_mutual_information,
    shuffle_within,
    train_mine,
)


@pytest.fixture(autouse=True)
def one_thread():
    """The statistics network is tiny: a second thread only adds synchronisation, and on a shared 2-core CI machine
    a thread waiting for a busy core can make a 2-second run take a minute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fit_gaussian(dim: int, rho: float, *, ema_decay=None, steps: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(estimate, truth) after a short CPU training run on fresh samples (about 2 s)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    mine = MINE(dim, dim, ema_decay=ema_decay)
    history = train_mine(
        mine, lambda n: correlated_gaussians(n, dim, rho, generator), steps=steps, batch_size=1024, lr=1e-3
    )
    return float(history["estimate"].iloc[-1]), gaussian_mutual_information(dim, rho)


def test_closed_form():
    assert gaussian_mutual_information(1, 0.5) == pytest.approx(-0.5 * math.log(0.75))
    assert gaussian_mutual_information(5, 0.9) == pytest.approx(5 * gaussian_mutual_information(1, 0.9))
    with pytest.raises(ValueError, match="rho"):
        gaussian_mutual_information(1, 1.0)


@pytest.mark.parametrize("dim, rho", [(1, 0.5), (1, 0.9), (5, 0.5), (5, 0.9)])
def test_estimate_within_ten_percent_of_truth(dim, rho):
    estimate, truth = _fit_gaussian(dim, rho)
    assert abs(estimate - truth) <= 0.10 * truth, f"d={dim} rho={rho}: estimate {estimate:.3f}, truth {truth:.3f}"


def test_moving_average_correction_still_converges():
    estimate, truth = _fit_gaussian(5, 0.9, ema_decay=0.99)
    assert abs(estimate - truth) <= 0.10 * truth, f"estimate {estimate:.3f}, truth {truth:.3f}"


def test_independent_variables_give_about_zero():
    estimate, _ = _fit_gaussian(3, 0.0, steps=300)
    assert abs(estimate) < 0.02


def test_forward_returns_a_differentiable_scalar():
    mine = MINE(4, 6)
    value = mine(torch.randn(32, 4), torch.randn(32, 6))
    assert value.shape == ()
    value.backward()
    assert all(p.grad is not None for p in mine.parameters())


def test_moving_average_changes_the_gradient_not_the_value():
    x, z = correlated_gaussians(256, 2, 0.8, torch.Generator().manual_seed(0))
    plain, corrected = MINE(2, 2), MINE(2, 2, ema_decay=0.5)
    corrected.load_state_dict(plain.state_dict())
    corrected(x, z)  # one update of the moving average, so it differs from this batch's mean
    values, grads = [], []
    for mine in (plain, corrected):
        torch.manual_seed(1)  # the same shuffle for both
        value = mine(x, z)
        grads.append(torch.autograd.grad(value, mine.statistics[0].weight)[0])
        values.append(value.detach())
    assert torch.allclose(values[0], values[1])
    assert not torch.allclose(grads[0], grads[1])
    assert int(corrected.ema_updates) == 2


def test_moving_average_frozen_in_eval_mode():
    mine = MINE(2, 2, ema_decay=0.9).eval()
    mine(torch.randn(16, 2), torch.randn(16, 2))
    assert int(mine.ema_updates) == 0


@pytest.mark.parametrize(
    "x_shape, z_shape, message",
    [
        ((8, 3), (8, 6), r"x of shape \(batch, 4\), got \(8, 3\)"),
        ((8, 4), (8, 5), r"z of shape \(batch, 6\), got \(8, 5\)"),
        ((8,), (8, 6), r"x of shape \(batch, 4\), got \(8,\)"),
        ((8, 4), (7, 6), "same number of pairs, got 8 and 7"),
        ((1, 4), (1, 6), "at least 2 pairs"),
    ],
)
def test_shape_errors_name_expected_and_received(x_shape, z_shape, message):
    with pytest.raises(ValueError, match=message):
        MINE(4, 6)(torch.randn(*x_shape), torch.randn(*z_shape))


def test_bad_arguments():
    with pytest.raises(ValueError, match="ema_decay"):
        MINE(2, 2, ema_decay=1.0)
    with pytest.raises(ValueError, match="positive"):
        MINE(0, 2)


def test_shuffle_within_permutes_inside_each_group_only():
    groups = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 0, 3])
    torch.manual_seed(0)
    seen = set()
    for _ in range(50):
        permutation = shuffle_within(groups)
        assert sorted(permutation.tolist()) == list(range(len(groups)))  # a permutation
        assert torch.equal(groups[permutation], groups)  # every element lands in its own group
        seen.add(tuple(permutation.tolist()))
    assert len(seen) > 10  # and it is random: the 4-element group alone has 24 orders
    assert shuffle_within(torch.tensor([3, 3]))[0] in (0, 1)  # a single group: a plain shuffle
    with pytest.raises(ValueError, match="one label per sample"):
        shuffle_within(torch.zeros(4, 2))


def test_conditional_shuffle_sees_no_information_beyond_the_group():
    """c = one-hot(y) and z = y + noise: I(z; c) = I(z; y) > 0, but I(z; c | y) = 0. Shuffled within y, every c
    stays the same, the marginal term equals the joint one, and the DV value is <= 0 for *any* T (Jensen)."""
    torch.manual_seed(0)
    y = torch.randint(0, 4, (512,))
    c = torch.nn.functional.one_hot(y, 4).float()
    z = y[:, None].float() + 0.1 * torch.randn(512, 1)
    mine = MINE(4, 1)
    optimizer = torch.optim.Adam(mine.parameters(), lr=1e-2)
    for _ in range(200):  # T trained on the *unconditional* bound: it finds the information
        loss = -mine(c, z)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert mine(c, z) > 0.8  # log 4 = 1.39 nats at most
        assert mine(c, z, shuffle_within(y)) <= 1e-6
