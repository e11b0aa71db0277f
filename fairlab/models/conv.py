"""The convolutional networks of the Coloured MNIST experiments of Kim et al. (2019) and Ragonesi et al. (2021).

``RagonesiEncoder`` is the encoder MI backprop trains (Ragonesi et al.'s network); ``KimBaselineNet`` is the
classifier Kim et al. report their baseline with (their Table/README: 0.4055 test accuracy at sigma^2 = 0.020).
The two are different networks: a number measured with one is not comparable with a number published for the other.
"""
from __future__ import annotations

import torch
from torch import nn


def _check_images(network: str, x: torch.Tensor, in_channels: int) -> None:
    if x.ndim != 4 or x.shape[1:] != (in_channels, 28, 28):
        raise ValueError(f"{network} expects images of shape (batch, {in_channels}, 28, 28), got {tuple(x.shape)}.")


class RagonesiEncoder(nn.Module):
    """(B, 3, 28, 28) images -> (B, 64) features z: Ragonesi et al.'s encoder for Kim's Coloured MNIST.

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
        _check_images("RagonesiEncoder", x, self.in_channels)
        return self.net(x)


class KimBaselineNet(nn.Module):
    """(B, 3, 28, 28) images -> (B, num_classes) logits: the classifier of Kim et al.'s Coloured MNIST baseline.

    BatchNorm on the 3-channel input -> conv 5x5 32 (padding 2) -> ReLU -> maxpool 3 stride 2 (padding 1)
    -> conv 3x3 32 (padding 1) -> ReLU -> conv 3x3 64 stride 2 (padding 1) -> ReLU -> conv 3x3 64 (padding 1) -> ReLU
    -> average over the 7x7 map -> FC to the classes. Spatial sizes: 28 -> 28 -> 14 -> 14 -> 7 -> 7.

    The paddings are those of the authors' released network (every conv keeps its size, so the pool and the strided
    conv halve it exactly). It has no BatchNorm after the convolutions, so neither has this one: the input BatchNorm
    is its only normalisation (it plays the role of their per-channel input standardisation, learned here).
    ``features`` is the pooled 64-dim vector the last layer reads.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("KimBaselineNet", x, self.in_channels)
        return self.classifier(self.features(x))


class DownstreamCNN(nn.Module):
    """The downstream classifier of null-sampling (our choice; the brief says only "conv net"), also ERM's network
    with ``architecture="conv"``: two stages of a 5x5 convolution, batch normalisation, ReLU and 2x2 max-pooling, the
    map average-pooled to 8x8 (a no-op at 32x32), a hidden layer of 128, a linear layer. The fully connected head keeps where the strokes are, so a digit's shape
    is learnt within a few epochs; batch normalisation lets faint null-samples train as fast as vivid originals."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(  # (B, C, H, W) -> (B, 128), the representation
            nn.Conv2d(in_channels, w, 5, padding=2), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 5, padding=2), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(2 * w * 64, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
