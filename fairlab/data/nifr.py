"""What the null-sampling protocol (Kehrenberg et al.) shares between its data sets: the three splits, the eta
mixing of the biased training set, and 5-bit quantisation with dequantisation noise.

Splits (Adult and CelebA; Coloured MNIST draws its own, see ``coloured_mnist``):

- ``"representative"``: 2/3 of an unbiased 60% of the data. s is independent of y here; the generative model
  learns from x and s of this split only (y is never read).
- ``"train"``: the *biased* training set of the downstream classifier, drawn from the other 40% with ``eta``.
- ``"test"``: the other 1/3 of the unbiased 60%.

eta mixing of the biased pool: eta = 0 keeps only the samples with s == y, eta = 1 only those with s != y;
eta < 0.5 keeps every s == y sample plus a random fraction 2 * eta of the s != y ones, eta >= 0.5 every s != y
sample plus a fraction 2 * (1 - eta) of the s == y ones. So eta = 0.5 is the unmixed pool.
"""
from __future__ import annotations

import torch

SPLITS = ("representative", "train", "test")
UNBIASED_FRACTION = 0.6  # of all samples; the rest is the pool of the biased training set
REPRESENTATIVE_FRACTION = 2 / 3  # of the unbiased part; the rest is the test set


def check_eta(eta: float) -> float:
    """``eta`` as a float in [0, 1], or a ValueError saying what is allowed (NaN included)."""
    if not 0 <= eta <= 1:  # also False for NaN
        raise ValueError(f"eta must lie in [0, 1] (0: only s == y in the biased training set, 1: only s != y), "
                         f"got {eta}.")
    return float(eta)


def partition(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Split ``range(n)`` at random into the protocol's parts: {"representative", "test", "pool"} -> indices.

    ``"pool"`` is the 40% from which ``eta_mix`` draws the biased training set.
    """
    order = torch.randperm(n, generator=generator)
    n_unbiased = int(UNBIASED_FRACTION * n)
    n_representative = int(round(n_unbiased * REPRESENTATIVE_FRACTION))
    return {
        "representative": order[:n_representative],
        "test": order[n_representative:n_unbiased],
        "pool": order[n_unbiased:],
    }


def eta_mix(y: torch.Tensor, s: torch.Tensor, eta: float, generator: torch.Generator) -> torch.Tensor:
    """Positions (sorted) of the biased subset of a pool with labels ``y`` and binary ``s`` for mixing factor eta."""
    check_eta(eta)
    same = torch.nonzero(s == y).flatten()
    differ = torch.nonzero(s != y).flatten()
    if eta < 0.5:
        keep, partial, fraction = same, differ, 2 * eta
    else:
        keep, partial, fraction = differ, same, 2 * (1 - eta)
    n_partial = int(round(fraction * len(partial)))
    chosen = partial[torch.randperm(len(partial), generator=generator)[:n_partial]]
    return torch.sort(torch.cat([keep, chosen])).values


def quantise(x: torch.Tensor, generator: torch.Generator, bits: int = 5) -> torch.Tensor:
    """Quantise values in [0, 1] to ``2**bits`` levels, floor(x * 2^bits) / 2^bits, then add uniform dequantisation
    noise U(0, 1 / 2^bits): the continuous density a flow's likelihood needs. The result stays in [0, 1].

    x == 1 exactly would be a level of its own (2^bits); it is folded into the top level so no value exceeds 1.
    """
    levels = 2**bits
    level = torch.floor(x * levels).clamp_(0, levels - 1)
    x = (level + torch.rand(x.shape, generator=generator)) / levels
    # in float32, level + a draw just below 1 can round up to the next level: keep every value inside its own bin,
    # so that floor(x * 2^bits) gives the level back exactly
    return torch.minimum(x, torch.nextafter((level + 1) / levels, torch.zeros(())))
