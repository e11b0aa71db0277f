"""Losses shared by several methods: the classifier's cross-entropy and the generalised cross-entropy (GCE).

ERM trains on ``cross_entropy``; LfF's and SiH's bias models on ``generalized_cross_entropy``; LfF's weights and
SiH's stacked runs on ``per_sample_cross_entropy``. The baseline network they share is
``fairlab.models.baseline_network``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fairlab.data.base import Batch


def cross_entropy(model: nn.Module, batch: Batch) -> dict:
    """The plain classifier's step loss: CE(model(x), y), and the batch accuracy (logged, not optimised)."""
    logits = model(batch.x)
    # accuracy is logged on the device; the loop averages it without a sync per step
    return {"loss": F.cross_entropy(logits, batch.y), "accuracy": (logits.argmax(1) == batch.y).float().mean()}


def per_sample_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)_y over the last axis: (..., C), (...) -> (...). Any leading axes (e.g. ensemble members)."""
    return -logits.log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def generalized_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, q: float, *, scale_by_q: bool = False
) -> torch.Tensor:
    """Per-sample GCE surrogate (Zhang & Sabuncu 2018): its gradient is that of (1 - p_y^q) / q.

        GCE(x, y) = p_y^q * CE(x, y),   p_y = softmax(logits)_y treated as a constant,

    since d/dtheta (1 - p^q)/q = -p^(q-1) dp/dtheta = p^q * d/dtheta(-log p). Confident samples (large p_y) weigh
    more, so the model fits the easy cue first and keeps fitting it. ``scale_by_q=True`` multiplies by an extra q,
    as LfF's released code does (SiH's does not).
    """
    if not 0 < q <= 1:
        raise ValueError(f"GCE needs q in (0, 1], got {q}.")
    ce = per_sample_cross_entropy(logits, y)  # -log p_y
    p_y = torch.exp(-ce).detach()  # detached: the weight is a constant, only CE carries the gradient
    loss = p_y.pow(q) * ce
    return loss * q if scale_by_q else loss
