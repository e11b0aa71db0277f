"""VAE parts: a Gaussian MLP encoder, an MLP decoder, the reparameterisation trick and the KL to N(0, I).

Signal is Harder uses two encoders (signal and bias) and one decoder fed with both latents; the pieces live here so
that any method can reuse them.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class GaussianEncoder(nn.Module):
    """``x -> (mean, logvar)`` of a diagonal Gaussian q(z | x).

    ``GaussianEncoder(3 * 28 * 28, (100, 100), 100)`` is SiH's Coloured MNIST encoder: flatten, two ReLU layers of
    100, then one linear head for the mean and one for the log-variance.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], latent_dim: int):
        super().__init__()
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(sizes[-1], latent_dim)
        self.logvar = nn.Linear(sizes[-1], latent_dim)
        self.in_features = in_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x[0].numel() != self.in_features:
            raise ValueError(
                f"encoder expects {self.in_features} features per sample, got inputs of shape {tuple(x.shape)}."
            )
        h = self.body(x)
        return self.mean(h), self.logvar(h)


class Decoder(nn.Module):
    """``z -> logits of the pixels`` (B, *out_shape); ``torch.sigmoid`` of them is the reconstruction.

    Returning logits rather than sigmoid outputs lets the loss use ``binary_cross_entropy_with_logits``: the same
    value as BCE on the sigmoid, without its log(0) when a pixel saturates (and it is allowed under autocast).
    """

    def __init__(self, latent_dim: int, hidden: Sequence[int], out_shape: Sequence[int]):
        super().__init__()
        sizes = [latent_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], math.prod(out_shape)))
        self.net = nn.Sequential(*layers)
        self.out_shape = tuple(out_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(len(z), *self.out_shape)


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample z = mean + sigma * eps, eps ~ N(0, I), differentiable in mean and logvar."""
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample, summed over the latent dimensions: (B, D) -> (B,).

    KL = -1/2 * sum_j (1 + logvar_j - mean_j^2 - exp(logvar_j)).
    """
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(1)
