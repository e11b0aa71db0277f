"""Empirical risk minimisation: the vanilla baseline every chapter compares against.

Plain cross-entropy, nothing about the bias. On Coloured MNIST it is the LfF/SiH MLP (2352-100-100-100-10, Adam 1e-3,
batch 256); on Adult an MLP with one hidden layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch import nn

from fairlab import config
from fairlab import ensemble as ens
from fairlab.data.base import BiasedDataset
from fairlab.losses import cross_entropy
from fairlab.methods.base import Method, epochs_trained, hparam, resolve
from fairlab.models import MLP, DownstreamCNN, baseline_network
from fairlab.train import evaluate_loss, fit, make_step, outputs, predict

# the baseline network (``fairlab.models.baseline_network``), under the name the chapters use
build_model = baseline_network


@dataclass
class ERMHParams:
    """LfF's vanilla protocol (Nam et al. 2020): Adam 1e-3, batches of 256, 100 epochs."""

    epochs: int = hparam(100, "training epochs", positive=True)
    lr: float = hparam(1e-3, "Adam's learning rate")
    batch_size: int = hparam(256, "batch size", positive=True)
    patience: int | None = hparam(None, "with a validation set: stop after this many epochs without a lower "
                                  "validation loss (default: run every epoch, restore the best)")
    bf16: bool = hparam(False, "bf16 autocast (GPU; single runs only)")
    architecture: str = hparam("baseline", "baseline: LfF's MLP (images) or one hidden layer (vectors); conv: the "
                               "CNN that null-sampling's chapter trains on raw images (DownstreamCNN, width 32)",
                               choices=("baseline", "conv"))


def network(data: BiasedDataset, architecture: str = "baseline") -> nn.Module:
    """ERM's classifier for a data set: the baseline network, or (images, ``"conv"``) ``DownstreamCNN``."""
    if architecture == "conv":
        if data.x.ndim != 4:
            raise ValueError(f"architecture='conv' needs images; {data.name} holds vectors: use 'baseline'.")
        return DownstreamCNN(data.x.shape[1], data.num_classes)
    return build_model(data)


def fit_erm(train: BiasedDataset, hp: ERMHParams | None = None, *, val: BiasedDataset | None = None, seed: int = 0,
            device=None, progress: bool | None = None, **overrides):
    """Train the baseline; returns ``(model, history)``. With ``val`` the best validation loss is restored."""
    hp = resolve(ERMHParams, hp, overrides)
    config.seed_everything(seed)
    device = torch.device(device) if device is not None else config.device()
    model = network(train, hp.architecture).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr)
    step = make_step(model, cross_entropy, optimizer, bf16=hp.bf16)
    validate = None
    if val is not None:
        val = val.to(device)

        def validate() -> dict:
            return {f"val_{k}": v for k, v in evaluate_loss(lambda b: cross_entropy(model, b), val).items()}
    history = fit(
        model, train, step, epochs=hp.epochs, batch_size=hp.batch_size, validate=validate,
        monitor="val_loss" if val is not None else None, patience=hp.patience, device=device, progress=progress,
        desc="erm",
    )
    return model, history


def fit_erm_members(
    trains: Sequence[BiasedDataset], seeds: Sequence[int], hp: ERMHParams | None = None, *,
    vals: Sequence[BiasedDataset] | None = None, device=None, progress: bool | None = None, **overrides,
) -> tuple[list[nn.Module], list[pd.DataFrame]]:
    """``fit_erm`` for several runs at once (one per (data set, seed) pair), stacked: see ``fairlab.ensemble``.

    Member k trains exactly as ``fit_erm(trains[k], hp, val=vals[k], seed=seeds[k])`` would. Returns
    ``(models, histories)``.
    """
    hp = resolve(ERMHParams, hp, overrides)
    if hp.bf16:
        raise ValueError("bf16 is for single runs: stacked runs train in float32; use fit_erm for bf16.")
    if hp.architecture == "conv":  # batch norm keeps running statistics: the CNN trains one run at a time
        runs = [fit_erm(train, hp, val=val, seed=seed, device=device, progress=progress)
                for train, val, seed in zip(trains, vals or [None] * len(trains), seeds)]
        return [model for model, _ in runs], [history for _, history in runs]
    ensemble, generators = ens.members(lambda: network(trains[0], hp.architecture), seeds, device)
    histories = ens.fit_members(
        ensemble, trains, ens.per_member(cross_entropy), epochs=hp.epochs, generators=generators, lr=hp.lr,
        batch_size=hp.batch_size, val=vals, patience=hp.patience, progress=progress, desc="erm",
    )
    return [ensemble.module(k) for k in range(len(ensemble))], histories


def representation(model: MLP | DownstreamCNN, data: BiasedDataset) -> torch.Tensor:
    """The last hidden layer's activations for every sample, in order: (N, hidden[-1]), on the data's device."""
    return outputs(model, data, model.features)


METHOD = Method(
    name="erm", hparams=ERMHParams, fit=fit_erm, fit_members=fit_erm_members, predict=predict,
    representation=representation, needs=("y",),
    datasets=("cmnist-lff", "cmnist-kim", "cmnist-nifr", "cmnist-binary", "adult", "celeba"), summary=epochs_trained,
    description="Empirical risk minimisation: the vanilla baseline every chapter compares against.",
)
