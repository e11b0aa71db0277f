"""Empirical risk minimisation: the vanilla baseline every chapter compares against.

Plain cross-entropy, nothing about the bias. On Coloured MNIST it is the LfF/SiH MLP (2352-100-100-100-10, Adam 1e-3,
batch 256); on Adult an MLP with one hidden layer.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fairlab import config, metrics
from fairlab import ensemble as ens
from fairlab.data import coloured_mnist
from fairlab.data.base import Batch, BiasedDataset
from fairlab.models import MLP
from fairlab.train import evaluate_loss, fit, make_step, predict


def build_model(data: BiasedDataset) -> nn.Module:
    """The baseline network for a data set: image -> LfF's MLP, tabular -> a one-hidden-layer MLP."""
    in_features = data.x[0].numel()
    hidden = (100, 100, 100) if data.x.ndim == 4 else (64,)
    return MLP(in_features, hidden, data.num_classes)


def cross_entropy(model: nn.Module, batch: Batch) -> dict:
    logits = model(batch.x)
    # accuracy is logged on the device; the loop averages it without a sync per step
    return {"loss": F.cross_entropy(logits, batch.y), "accuracy": (logits.argmax(1) == batch.y).float().mean()}


def fit_erm(
    train: BiasedDataset,
    *,
    epochs: int,
    val: BiasedDataset | None = None,
    lr: float = 1e-3,
    batch_size: int = 256,
    patience: int | None = None,
    seed: int = 0,
    device=None,
    bf16: bool = False,
    progress: bool | None = None,
):
    """Train the baseline; returns ``(model, history)``. With ``val`` the best validation loss is restored."""
    config.seed_everything(seed)
    device = torch.device(device) if device is not None else config.device()
    model = build_model(train).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    step = make_step(model, cross_entropy, optimizer, bf16=bf16)
    validate = None
    if val is not None:
        val = val.to(device)

        def validate() -> dict:
            return {f"val_{k}": v for k, v in evaluate_loss(lambda b: cross_entropy(model, b), val).items()}
    history = fit(
        model, train, step, epochs=epochs, batch_size=batch_size, validate=validate,
        monitor="val_loss" if val is not None else None, patience=patience, device=device, progress=progress,
        desc="erm",
    )
    return model, history


def fit_erm_members(
    train: Sequence[BiasedDataset],
    seeds: Sequence[int],
    *,
    epochs: int,
    val: Sequence[BiasedDataset] | None = None,
    lr: float = 1e-3,
    batch_size: int = 256,
    patience: int | None = None,
    device=None,
    progress: bool | None = None,
) -> tuple[list[nn.Module], list[pd.DataFrame]]:
    """``fit_erm`` for several runs at once (one per (data set, seed) pair), stacked: see ``fairlab.ensemble``.

    Member k trains exactly as ``fit_erm(train[k], val=val[k], seed=seeds[k])`` would. Returns ``(models, histories)``.
    """
    ensemble, generators = ens.members(lambda: build_model(train[0]), seeds, device)
    histories = ens.fit_members(
        ensemble, train, ens.per_member(cross_entropy), epochs=epochs, generators=generators, lr=lr,
        batch_size=batch_size, val=val, patience=patience, progress=progress, desc="erm",
    )
    return [ensemble.module(k) for k in range(len(ensemble))], histories


def add_cli_arguments(parser) -> None:
    parser.add_argument("--lr", type=float, default=1e-3)


def cli_defaults(args) -> None:
    """On LfF's Coloured MNIST, chapter 4's vanilla protocol fills the unset options; elsewhere 3 / 100 epochs."""
    if args.dataset == "cmnist-lff":
        from fairlab.methods.sih import protocol_cli_defaults  # sih imports this module

        protocol_cli_defaults(args, "vanilla_epochs")


def cli_run(args, train: BiasedDataset, test: BiasedDataset):
    epochs = args.epochs or config.by_profile(quick=3, full=100, name=args.profile)
    model, history = fit_erm(train, epochs=epochs, lr=args.lr, seed=args.seed, batch_size=args.batch_size)
    return predict(model, test), {"epochs": len(history)}


def sweep_bias_conflicting_ratio(
    ratios, *, epochs: int, subsample: int | None = None, seed: int = 0, device=None,
    return_predictions: bool = False,
):
    """Train the baseline on Coloured MNIST (lff) at each rho; one row of test metrics per rho (index "rho").

    With ``return_predictions=True`` also returns ``{rho: predicted labels on the lff test set}`` (CPU tensors), to
    see *what* each model reads, e.g. with ``viz.reads_digit_or_colour``.
    """
    device = torch.device(device) if device is not None else config.device()
    test = coloured_mnist("lff", "test").to(device)
    rows, predictions = {}, {}
    for rho in ratios:
        train = coloured_mnist("lff", "train", bias_conflicting_ratio=rho, subsample=subsample, seed=seed)
        model, _ = fit_erm(train, epochs=epochs, seed=seed, device=device, progress=False)
        pred = predict(model, test)  # on the test set's device, like test.y
        rows[rho] = metrics.summary(test.y, pred, sensitive_features=test.group, aligned=test.aligned)
        predictions[rho] = pred.cpu()
    frame = pd.DataFrame(rows).T.rename_axis("rho")
    return (frame, predictions) if return_predictions else frame
