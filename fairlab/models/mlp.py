"""A plain multi-layer perceptron (flattens its input): LfF's and SiH's Coloured MNIST classifier, Adult's MLP."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """``in_features -> hidden[0] -> ... -> out_features`` with ReLU between layers.

    ``MLP(3 * 28 * 28, (100, 100, 100), 10)`` is the LfF/SiH Coloured MNIST classifier.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int):
        super().__init__()
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], out_features))
        self.net = nn.Sequential(*layers)
        self.in_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x[0].numel() != self.in_features:
            raise ValueError(
                f"MLP expects inputs with {self.in_features} features per sample, got shape {tuple(x.shape)}."
            )
        return self.net(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (what the output layer reads): (B, hidden[-1])."""
        return self.net[:-1](x)


def baseline_network(data) -> MLP:
    """The baseline network for a data set (a ``BiasedDataset``): images -> LfF's MLP 2352-100-100-100-10, vectors
    -> one hidden layer of 64. ERM, LfF and the SiH chapter's probes use it."""
    in_features = data.x[0].numel()
    hidden = (100, 100, 100) if data.x.ndim == 4 else (64,)
    return MLP(in_features, hidden, data.num_classes)
