"""The conditional VAE of null-sampling: gated convolutions, a small spatial latent, a decoder that is told s.

    q(z | x) = N(mean(x), diag exp(logvar(x)))          encoder: never sees s
    x_hat   = decoder([z, onehot(s) broadcast])         decoder: gets s for free

Because the decoder is handed s, the cheapest way to reconstruct is to leave s out of z (the adversary of the method
pushes the same way). Decoding with an all-zero s vector then gives the *null-sample*: the image with nothing said
about s. On Coloured MNIST (3x32x32): 4 levels of [gated 3x3 conv, gated 4x4 stride-2 conv], channels 32, 64, 128, 256,
latent 64 x 2 x 2 (256 values), and a mirrored decoder with transposed convolutions.

A *gated* convolution (Dauphin et al. 2017) computes twice the channels and multiplies one half by the sigmoid of the
other (GLU): each unit learns when to let its feature through.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConditionalVAE", "GatedConv", "gated_conv_cvae", "mlp_cvae"]

# the decoder's last nonlinearity, by the range of the data it reconstructs
OUTPUTS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "identity": lambda out: out}


class GatedConv(nn.Module):
    """conv (or transposed conv) to 2 * out_channels, then GLU over the channels: a * sigmoid(b)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 transpose: bool = False):
        super().__init__()
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.conv = conv(in_channels, 2 * out_channels, kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.conv(x), dim=1)


class ConditionalVAE(nn.Module):
    """An encoder ``x -> [mean, logvar]`` (stacked along dim 1) and a decoder ``[z, s] -> x``.

    Image latents are (B, C, h, w) and one-hot s is broadcast over the h x w positions; vector latents (B, d) get it
    concatenated. ``output="sigmoid"`` for images in [0, 1], ``"tanh"`` for images in [-1, 1] (CelebA),
    ``"identity"`` for standardised tabular features.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, num_groups: int, output: str = "sigmoid"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}.")
        self.encoder, self.decoder, self.num_groups, self.output = encoder, decoder, num_groups, output

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, 1)
        return mean, logvar

    def decode(self, z: torch.Tensor, s_onehot: torch.Tensor) -> torch.Tensor:
        """z (B, C, h, w) or (B, d), s_onehot (B, num_groups) float (all zeros: the null-sample) -> x_hat."""
        if z.ndim == 4:
            s_onehot = s_onehot[:, :, None, None].expand(-1, -1, *z.shape[2:])
        out = self.decoder(torch.cat([z, s_onehot.to(z.dtype)], 1))
        return OUTPUTS[self.output](out)

    def onehot(self, s: torch.Tensor) -> torch.Tensor:
        return F.one_hot(s, self.num_groups).float()


def gated_conv_cvae(in_shape: Sequence[int] = (3, 32, 32), num_groups: int = 10, *, levels: int = 4,
                    channels: int = 32, latent_channels: int = 64, output: str = "sigmoid") -> ConditionalVAE:
    """The published Coloured MNIST cVAE (the defaults): 32x32 -> 2x2 after 4 stride-2 levels. ``output``: "sigmoid"
    for images in [0, 1], "tanh" for images in [-1, 1]."""
    in_channels, height, width = in_shape
    if height % 2**levels or width % 2**levels:
        raise ValueError(f"{levels} stride-2 levels need height and width divisible by {2**levels}, got {in_shape}.")
    widths = [channels * 2**level for level in range(levels)]  # 32, 64, 128, 256
    encoder: list[nn.Module] = []
    previous = in_channels
    for c in widths:
        encoder += [GatedConv(previous, c, 3, padding=1), GatedConv(c, c, 4, stride=2, padding=1)]
        previous = c
    encoder.append(nn.Conv2d(previous, 2 * latent_channels, 1))  # mean and log-variance
    decoder: list[nn.Module] = [GatedConv(latent_channels + num_groups, previous, 3, padding=1)]
    for c in reversed(widths):
        decoder += [GatedConv(previous, c, 4, stride=2, padding=1, transpose=True), GatedConv(c, c, 3, padding=1)]
        previous = c
    decoder.append(nn.Conv2d(previous, in_channels, 1))
    return ConditionalVAE(nn.Sequential(*encoder), nn.Sequential(*decoder), num_groups, output)


def mlp_cvae(in_shape: Sequence[int], num_groups: int = 2, *, width: int = 128, latent_dim: int = 16,
             output: str = "identity") -> ConditionalVAE:
    """A fully connected cVAE (our choice of sizes): two ReLU layers of ``width`` each way.

    For tabular data (``output="identity"``), and as the CPU-sized stand-in for the gated-conv cVAE on images
    (``output="sigmoid"``; the decoder's output is reshaped to ``in_shape``).
    """
    in_features = math.prod(in_shape)
    encoder = nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, 2 * latent_dim),
    )
    decoder = nn.Sequential(
        nn.Linear(latent_dim + num_groups, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, in_features), nn.Unflatten(1, tuple(in_shape)),
    )
    return ConditionalVAE(encoder, decoder, num_groups, output)


def latent_size(model: ConditionalVAE, in_shape: Sequence[int]) -> int:
    """How many numbers z has for inputs of ``in_shape`` (256 for the published Coloured MNIST cVAE)."""
    with torch.no_grad():
        mean, _ = model.encode(torch.zeros(1, *in_shape, device=next(model.parameters()).device))
    return math.prod(mean.shape[1:])
