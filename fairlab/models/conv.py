"""The convolutional encoder of Kim et al.'s Coloured MNIST experiments, as MI backprop uses it."""
from __future__ import annotations

import torch
from torch import nn


class KimEncoder(nn.Module):
    """(B, 3, 28, 28) images -> (B, 64) features z.

    conv 5x5 64 (valid) -> ReLU -> maxpool 2 -> conv 5x5 64 -> ReLU -> maxpool 2 -> FC 512 -> ReLU -> FC 64 -> ReLU.
    Spatial sizes: 28 -> 24 -> 12 -> 8 -> 4, so the flattened map has 64 * 4 * 4 = 1024 features.
    """

    def __init__(self, in_channels: int = 3, z_dim: int = 64, channels: int = 64, hidden: int = 512):
        super().__init__()
        self.in_channels, self.z_dim = in_channels, z_dim
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, channels, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(channels * 4 * 4, hidden), nn.ReLU(),
            nn.Linear(hidden, z_dim), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, 28, 28):
            raise ValueError(
                f"KimEncoder expects images of shape (batch, {self.in_channels}, 28, 28), got {tuple(x.shape)}."
            )
        return self.net(x)
