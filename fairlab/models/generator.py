"""Generators to freeze: a convolutional VAE for images, a mixed
continuous/categorical VAE for tables.

Both have the same interface, which is all the fair-latent-space
module needs from a "pretrained generative model":

    encode(x) -> (mean, logvar)   q(z | x), z of size ``latent_dim``
    decode(z) -> x                the decoder's mean in data space
    loss(x)   -> dict             the negative ELBO and its two parts

The loss is per sample, averaged over the batch:

    reconstruction = -log p(x | z),  z ~ q(z | x)  (reparameterised)
    kl             = KL(q(z | x) || N(0, I))
    loss           = reconstruction + beta * kl
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fairlab.models.vae import kl_to_standard_normal, reparameterise

__all__ = ["ConvVAE", "TabularVAE"]


class ConvVAE(nn.Module):
    """Images (C, H, W) in [0, 1] <-> z in R^latent_dim.

    Encoder: one stride-2 4x4 convolution per entry of ``channels``
    (each halves H and W), a hidden linear layer, then the mean and
    log-variance heads. The decoder mirrors it with transposed
    convolutions and returns pixel logits; the likelihood is a
    Bernoulli per pixel (binary cross-entropy against x in [0, 1]).

    ``ConvVAE((3, 28, 28), 16, (32, 64))``: Coloured MNIST, 28 -> 14 -> 7.
    ``ConvVAE((3, 64, 64), 64, (32, 64, 128, 256))``: CelebA 64x64.
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (3, 28, 28),
        latent_dim: int = 16,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        beta: float = 1.0,
    ):
        super().__init__()
        c, h, w = in_shape
        scale = 2 ** len(channels)
        if h % scale or w % scale:
            raise ValueError(
                f"{len(channels)} stride-2 layers need H and W divisible"
                f" by {scale}, got {h}x{w}."
            )
        self.in_shape = (c, h, w)
        self.latent_dim, self.beta = latent_dim, beta
        self.inner_shape = (channels[-1], h // scale, w // scale)
        flat = math.prod(self.inner_shape)
        down: list[nn.Module] = []
        for a, b in zip([c, *channels[:-1]], channels):
            down += [nn.Conv2d(a, b, 4, 2, 1), nn.ReLU()]
        self.encoder = nn.Sequential(
            *down, nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU()
        )
        self.mean = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)
        up: list[nn.Module] = []
        rev = list(channels[::-1])
        for a, b in zip(rev, rev[1:]):
            up += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU()]
        up.append(nn.ConvTranspose2d(rev[-1], c, 4, 2, 1))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, flat), nn.ReLU(),
            nn.Unflatten(1, self.inner_shape), *up,
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mean(h), self.logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits, (B, C, H, W)."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The image the decoder means, in [0, 1]: (B, C, H, W)."""
        return torch.sigmoid(self.decode_logits(z))

    def loss(self, x: torch.Tensor) -> dict:
        mean, logvar = self.encode(x)
        logits = self.decode_logits(reparameterise(mean, logvar))
        # logits, not sigmoid outputs: no log(0) when a pixel saturates
        bce = F.binary_cross_entropy_with_logits(
            logits.float(), x, reduction="none"
        )
        reconstruction = bce.flatten(1).sum(1).mean()
        kl = kl_to_standard_normal(mean.float(), logvar.float()).mean()
        return {"loss": reconstruction + self.beta * kl,
                "reconstruction": reconstruction, "kl": kl}


class TabularVAE(nn.Module):
    """Records with ``continuous`` standardised columns first, then one
    one-hot block per categorical field (sizes ``categories``), as
    ``fairlab.data.adult`` encodes them.

    The likelihood is mixed: a unit-variance Gaussian per continuous
    column (0.5 * squared error) and a categorical distribution per
    field (cross-entropy of the block's logits). ``decode`` returns a
    record in the same encoding: the continuous means and, per field,
    the one-hot of the most likely category.
    """

    def __init__(
        self,
        continuous: int,
        categories: Sequence[int],
        latent_dim: int = 8,
        hidden: Sequence[int] = (128, 128),
        beta: float = 1.0,
    ):
        super().__init__()
        self.continuous, self.categories = continuous, tuple(categories)
        self.in_features = continuous + sum(self.categories)
        self.latent_dim, self.beta = latent_dim, beta
        self.encoder = _mlp(self.in_features, hidden)
        self.mean = nn.Linear(hidden[-1], latent_dim)
        self.logvar = nn.Linear(hidden[-1], latent_dim)
        self.decoder = nn.Sequential(
            _mlp(latent_dim, hidden[::-1]),
            nn.Linear(hidden[0], self.in_features),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mean(h), self.logvar(h)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Continuous means, then the logits of every field: (B, F)."""
        return self.decoder(z)

    def _split(self, out: torch.Tensor):
        parts = out.split([self.continuous, *self.categories], 1)
        return parts[0], parts[1:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """A record in the input encoding (one-hot fields): (B, F)."""
        means, logits = self._split(self.decode_raw(z))
        hot = [F.one_hot(block.argmax(1), block.shape[1]).to(means.dtype)
               for block in logits]
        return torch.cat([means, *hot], 1)

    def loss(self, x: torch.Tensor) -> dict:
        mean, logvar = self.encode(x)
        out = self.decode_raw(reparameterise(mean, logvar)).float()
        means, logits = self._split(out)
        target_means, target_hot = self._split(x)
        gauss = 0.5 * (means - target_means).pow(2).sum(1)
        ce = sum(F.cross_entropy(block, hot.argmax(1), reduction="none")
                 for block, hot in zip(logits, target_hot))
        reconstruction = (gauss + ce).mean()
        kl = kl_to_standard_normal(mean.float(), logvar.float()).mean()
        return {"loss": reconstruction + self.beta * kl,
                "reconstruction": reconstruction, "kl": kl}


def _mlp(in_features: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip([in_features, *hidden[:-1]], hidden):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)
