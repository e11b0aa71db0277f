"""MINE: a neural estimate of mutual information through the Donsker-Varadhan bound (Belghazi et al., ICML 2018).

For any function T (the *statistics network*),

    I(X; Z) >= E_{p(x,z)}[T(x, z)] - log E_{p(x)p(z)}[exp T(x, z)]        (Donsker-Varadhan)

with equality at T = log p(x, z) / (p(x) p(z)) + const. MINE maximises the right-hand side over a neural T and
reads the maximum as the estimate. On a batch of pairs (x_i, z_i), the joint expectation is the batch mean and the
product of marginals is sampled by shuffling x across the batch (x_perm(i) with z_i).

The module also holds what a reader needs to check the estimator: samples of correlated Gaussians and their mutual
information in closed form, I = -d/2 log(1 - rho^2), and a small training loop (``train_mine``).
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

__all__ = [
    "MINE", "correlated_gaussians", "estimate_mutual_information", "gaussian_mutual_information", "shuffle_within",
    "train_mine",
]


class MINE(nn.Module):
    """Statistics network T(x, z) and the Donsker-Varadhan estimate of I(X; Z).

    ``forward(x, z)`` takes a batch of pairs, x (B, x_dim) and z (B, z_dim), and returns the estimate, a scalar
    tensor to *maximise* over T's parameters. T is ``concat[x, z] -> layers x (Linear(hidden), LeakyReLU) -> 1``
    (MI backprop's network: 3 layers of 64).

    ``ema_decay``: MINE's bias correction. The gradient of log mean_i exp T_i has the batch mean of exp T in its
    denominator, a noisy and biased stand-in for the expectation; with ``ema_decay`` (e.g. 0.99) the gradient uses
    a moving average of that mean instead. The value returned is the plain estimate either way.
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 64, layers: int = 3, ema_decay: float | None = None):
        super().__init__()
        if x_dim < 1 or z_dim < 1:
            raise ValueError(f"x_dim and z_dim must be positive, got x_dim={x_dim}, z_dim={z_dim}.")
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1) (e.g. 0.99), or be None; got {ema_decay}.")
        self.x_dim, self.z_dim, self.ema_decay = x_dim, z_dim, ema_decay
        sizes = [x_dim + z_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        blocks.append(nn.Linear(sizes[-1], 1))
        self.statistics = nn.Sequential(*blocks)
        # log of the moving average of mean exp T on marginal samples, and the number of updates (for Adam-style
        # bias correction of an average that starts at zero). Kept as tensors: updating them needs no host sync.
        self.register_buffer("running_log_mean", torch.full((), -math.inf))
        self.register_buffer("ema_updates", torch.zeros(()))

    def _check(self, x: torch.Tensor, z: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.x_dim:
            raise ValueError(f"MINE expects x of shape (batch, {self.x_dim}), got {tuple(x.shape)}.")
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"MINE expects z of shape (batch, {self.z_dim}), got {tuple(z.shape)}.")
        if len(x) != len(z):
            raise ValueError(f"x and z must hold the same number of pairs, got {len(x)} and {len(z)}.")
        if len(x) < 2:
            raise ValueError("MINE needs a batch of at least 2 pairs: marginal samples come from shuffling it.")

    def scores(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """T(x_i, z_i) for each pair: (B,)."""
        return self.statistics(torch.cat([x, z], dim=1)).squeeze(1)

    def forward(self, x: torch.Tensor, z: torch.Tensor, permutation: torch.Tensor | None = None) -> torch.Tensor:
        """The DV estimate on the batch. ``permutation`` (B,) pairs x[permutation[i]] with z_i for the marginal
        term; by default a uniform shuffle. A shuffle *within* groups of a third variable y (``shuffle_within``)
        samples sum_y p(y) p(x | y) p(z | y) instead, and the value bounds the conditional information I(X; Z | Y)
        from below (T does not see y; dropping y can only lose information).
        """
        self._check(x, z)
        n = len(x)
        joint = self.scores(x, z)  # (B,) T on samples of p(x, z)
        # Shuffling x breaks the pairing but keeps both marginals: (x_perm(i), z_i) is a sample of p(x) p(z).
        if permutation is None:
            permutation = torch.randperm(n, device=x.device)
        marginal = self.scores(x[permutation], z)  # (B,)
        log_mean_exp = torch.logsumexp(marginal, 0) - math.log(n)  # log mean exp, without overflow
        if self.ema_decay is None or not torch.is_grad_enabled():
            return joint.mean() - log_mean_exp
        return joint.mean() - self._corrected_log_mean_exp(log_mean_exp)

    def _corrected_log_mean_exp(self, log_mean_exp: torch.Tensor) -> torch.Tensor:
        """Same value as ``log_mean_exp``, gradient grad(mean exp T) / (moving average of mean exp T)."""
        if self.training:
            with torch.no_grad():
                decay = self.ema_decay
                self.running_log_mean.copy_(
                    torch.logaddexp(self.running_log_mean + math.log(decay), log_mean_exp.detach() + math.log(1 - decay))
                )
                self.ema_updates.add_(1)
        # bias correction: an average started at 0 has weight 1 - decay^t on the data seen so far
        average = self.running_log_mean - torch.log1p(-(self.ema_decay**self.ema_updates))
        # exp(l - a) has value mean/average and gradient grad(mean exp T)/average; subtracting its detached self
        # leaves the value of log_mean_exp unchanged and swaps the gradient for the corrected one.
        ratio = torch.exp(log_mean_exp - average.detach())
        return log_mean_exp.detach() + ratio - ratio.detach()


def shuffle_within(groups: torch.Tensor) -> torch.Tensor:
    """A random permutation that maps every position to a position of the same group: (B,) labels -> (B,) indices.

    Sorting by ``group + uniform noise`` lists each group contiguously in random order; two such sorts, matched
    position by position, pair every element with a random member of its own group. All on the device, no sync.
    """
    if groups.ndim != 1:
        raise ValueError(f"groups must be one label per sample, shape (batch,), got {tuple(groups.shape)}.")
    noisy = lambda: groups.double() + torch.rand(groups.shape, device=groups.device, dtype=torch.float64)  # noqa: E731
    source, target = torch.argsort(noisy()), torch.argsort(noisy())
    permutation = torch.empty_like(source)
    permutation[source] = target
    return permutation


def gaussian_mutual_information(dim: int, rho: float) -> float:
    """I(X; Z) in nats for X ~ N(0, I_d), Z = rho X + sqrt(1 - rho^2) noise: -d/2 log(1 - rho^2)."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1), got {rho}.")
    return -0.5 * dim * math.log(1 - rho**2)


def correlated_gaussians(
    n: int, dim: int, rho: float, generator: torch.Generator | None = None, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs (x, z), each (n, dim): standard normal, coordinate j of z correlated with coordinate j of x by rho."""
    x = torch.randn(n, dim, generator=generator, device=device)
    noise = torch.randn(n, dim, generator=generator, device=device)
    return x, rho * x + math.sqrt(1 - rho**2) * noise


@torch.no_grad()
def estimate_mutual_information(mine: MINE, sample, n: int, chunk: int = 100_000) -> torch.Tensor:
    """The DV estimate of a trained ``mine`` on ``n`` fresh pairs, drawn ``chunk`` at a time (bounded memory).

    Both terms are averaged over all n pairs before the log: exp T has a heavy tail under the marginals when the
    mutual information is high, so the log-mean-exp needs far more samples than one training batch.
    """
    joint_sum, log_sum_exp = 0.0, torch.tensor(-math.inf)
    for start in range(0, n, chunk):
        x, z = sample(min(chunk, n - start))
        joint_sum = joint_sum + mine.scores(x, z).sum()
        marginal = mine.scores(x[torch.randperm(len(x), device=x.device)], z)
        log_sum_exp = torch.logaddexp(log_sum_exp.to(marginal.device), torch.logsumexp(marginal, 0))
    return joint_sum / n - (log_sum_exp - math.log(n))


def train_mine(
    mine: MINE,
    sample,
    *,
    steps: int,
    batch_size: int = 512,
    lr: float = 1e-3,
    eval_every: int = 0,
    eval_size: int = 20_000,
    final_eval_size: int = 500_000,
) -> pd.DataFrame:
    """Maximise the DV bound on fresh batches ``sample(batch_size) -> (x, z)``; return the estimate over training.

    Every ``eval_every`` steps (and at the end) the estimate is also taken on one large batch of ``eval_size`` fresh
    pairs: the batch value during training is noisy, and with few pairs log-mean-exp underestimates the mean. The
    last evaluation uses ``final_eval_size`` pairs. The learning rate follows a cosine schedule down to 0: the last
    steps average out the noise of the stochastic gradient instead of jumping around the optimum.
    Returns a DataFrame indexed by step with columns ``train_estimate`` and ``estimate`` (NaN between evaluations).
    """
    optimizer = torch.optim.Adam(mine.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    train_values, rows = [], {}
    mine.train()
    for step in range(1, steps + 1):
        x, z = sample(batch_size)
        estimate = mine(x, z)
        optimizer.zero_grad(set_to_none=True)
        (-estimate).backward()  # gradient *ascent* on the bound
        optimizer.step()
        schedule.step()
        train_values.append(estimate.detach())
        if step == steps:
            rows[step] = estimate_mutual_information(mine, sample, final_eval_size)
        elif eval_every and step % eval_every == 0:
            rows[step] = estimate_mutual_information(mine, sample, eval_size)
    frame = pd.DataFrame({"train_estimate": torch.stack(train_values).cpu().numpy()}, index=range(1, steps + 1))
    frame["estimate"] = pd.Series({k: float(v) for k, v in rows.items()})
    frame.index.name = "step"
    return frame
