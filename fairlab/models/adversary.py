"""Adversarial removal of an attribute: a gradient-reversal layer and an ensemble of adversaries.

The adversary learns to predict s from a representation; the encoder should make that impossible. With a
gradient-reversal layer (Ganin & Lempitsky 2015) both happen in *one* backward pass of one loss,

    loss = task_loss + w * CE(adversary(GRL(z)), s):

the adversary's parameters get +w * dCE (they minimise the cross-entropy), everything before the GRL gets -w * dCE
(it maximises it). An ensemble of adversaries, each re-initialised now and then, is harder to fool than one: an
encoder that has learnt to beat one particular adversary meets a fresh one.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdversaryEnsemble", "GradientReversal", "ResidualMLP", "grad_reverse"]


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.weight * grad, None


def grad_reverse(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """The identity forward; multiplies the incoming gradient by ``-weight`` backward."""
    return _ReverseGradient.apply(x, weight)


class GradientReversal(nn.Module):
    """``grad_reverse`` as a layer."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.weight)


class ResidualMLP(nn.Module):
    """Linear -> BN -> ReLU, one residual block (Linear -> BN -> ReLU -> Linear -> BN, plus the input), ReLU,
    Linear: the null-sampling adversary (width 512 on Coloured MNIST)."""

    def __init__(self, in_features: int, out_features: int, width: int = 512):
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU())
        self.block = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width), nn.BatchNorm1d(width)
        )
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(F.relu(h + self.block(h)))


class AdversaryEnsemble(nn.Module):
    """``members`` adversaries predicting one of ``num_classes`` values of s from the same input.

    ``loss(z, s)`` is the mean cross-entropy over the members (put ``grad_reverse`` on z before it).
    ``maybe_reset()`` re-initialises each member with probability ``reset_probability``; the draw uses a Python
    random generator, so it costs no device synchronisation inside a training step.
    """

    def __init__(self, in_features: int, num_classes: int, *, members: int = 3, width: int = 512,
                 reset_probability: float = 1 / 5000, seed: int = 0):
        super().__init__()
        self.members = nn.ModuleList(ResidualMLP(in_features, num_classes, width) for _ in range(members))
        self.reset_probability = reset_probability
        self._rng = random.Random(seed)
        self.resets = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> logits (members, B, num_classes)."""
        return torch.stack([member(z) for member in self.members])

    def loss(self, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        logits = self(z)  # (M, B, K)
        return F.cross_entropy(logits.flatten(0, 1).float(), s.repeat(len(self.members)))

    def accuracy(self, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Mean accuracy of the members (a device tensor: no sync)."""
        return (self(z).argmax(-1) == s).float().mean()

    def maybe_reset(self) -> int:
        """Re-initialise each member with probability ``reset_probability``; returns how many were reset."""
        count = 0
        for member in self.members:
            if self._rng.random() < self.reset_probability:
                for layer in member.modules():
                    if isinstance(layer, (nn.Linear, nn.BatchNorm1d)):
                        layer.reset_parameters()
                    if isinstance(layer, nn.BatchNorm1d):
                        layer.reset_running_stats()
                count += 1
        self.resets += count
        return count
