"""Coloured MNIST with a *binary* label and a *binary* colour group.

The fair-latent-space chapter needs the standard binary fairness
setting, where demographic parity, equalised odds and worst-group
accuracy have their usual meaning:

- ``y = 1`` for the digits 5-9, ``y = 0`` for 0-4;
- ``s`` is one of two stroke colours (``GROUP_COLOURS``: 0 orange,
  1 blue), jittered per image;
- ``correlation`` is P(s = y): with 0.9, nine images in ten of the
  large digits are blue. The counts are exact per class:
  round(correlation * n_y) images of class y get colour y.

``aligned`` marks s == y. Images are (3, 28, 28) float32 in [0, 1],
coloured strokes on black. Generation is deterministic for a seed.
"""
from __future__ import annotations

import torch

from fairlab.data.base import BiasedDataset, check_subsample
from fairlab.data.coloured_mnist import colourise
from fairlab.data.mnist import load_mnist

# Two colours far apart in RGB, so the group is visible at a glance.
GROUP_COLOURS = torch.tensor([[1.0, 0.55, 0.1], [0.15, 0.55, 1.0]])
SPLITS = ("train", "test")


def binary_colour_groups(
    y: torch.Tensor, correlation: float, generator: torch.Generator
) -> torch.Tensor:
    """s for each label: exactly round(correlation * n_y) of class y
    get s = y (a random choice of them), the others s = 1 - y."""
    s = 1 - y
    for label in (0, 1):
        members = torch.nonzero(y == label).flatten()
        order = members[torch.randperm(len(members), generator=generator)]
        s[order[: int(round(correlation * len(members)))]] = label
    return s


def binary_coloured_mnist(
    split: str = "train",
    *,
    correlation: float = 0.9,
    colour_std: float = 0.05,
    seed: int = 0,
    subsample: int | None = None,
    root=None,
    download: bool = True,
) -> BiasedDataset:
    """Binary Coloured MNIST (see the module docstring).

    Args:
        split: ``"train"`` or ``"test"`` (the MNIST split).
        correlation: P(s = y) in this split, in [0, 1]; 0.5 makes
            colour independent of the label.
        colour_std: sigma of the per-image RGB jitter.
        seed: seeds the subsample, the colour groups and the jitter.
        subsample: keep a random subset of this many images *before*
            colouring, so the counts above are exact in the subset.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not 0 <= correlation <= 1:
        raise ValueError(
            f"correlation is P(s = y), in [0, 1]; got {correlation}."
        )
    if not 0 <= colour_std < float("inf"):  # NaN too
        raise ValueError(f"colour_std must be a finite number >= 0, got {colour_std}.")
    check_subsample(subsample, 60_000 if split == "train" else 10_000, f"cmnist-binary/{split}")
    gen = torch.Generator().manual_seed(seed * 1000 + 17 + SPLITS.index(split))
    images, digits = load_mnist(split, root=root, download=download)
    if subsample is not None and subsample < len(digits):
        keep = torch.randperm(len(digits), generator=gen)[:subsample]
        images, digits = images[keep], digits[keep]
    y = (digits >= 5).long()
    s = binary_colour_groups(y, correlation, gen)
    jitter = colour_std * torch.randn(len(y), 3, generator=gen)
    colours = (GROUP_COLOURS[s] + jitter).clamp(0, 1)
    x = colourise(images.float() / 255.0, colours)
    info = {"protocol": "binary", "split": split, "seed": seed,
            "correlation": correlation, "colour_std": colour_std,
            "subsample": subsample}
    return BiasedDataset(
        x=x, y=y, s=s, aligned=s == y, num_classes=2, num_groups=2,
        name=f"cmnist-binary/{split}", info=info,
    )
