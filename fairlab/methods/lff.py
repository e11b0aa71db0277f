"""Learning from Failure (LfF, Nam et al. 2020): a biased model trained to be biased, a debiased model trained on its
failures.

Two identical classifiers see the same batches. The *biased* one is trained with the generalised cross-entropy (GCE),
which up-weights the samples it already finds easy, so it latches onto the easy cue (the colour). The *debiased* one
is trained with cross-entropy weighted per sample by the relative difficulty

    W(x) = L_b(x) / (L_b(x) + L_d(x)),

where L_b, L_d are exponential moving averages of each model's per-sample cross-entropy, divided by the largest such
average of the sample's class. Samples the biased model fails on (bias-conflicting ones) get W close to 1; samples it
gets right get W close to 0. No bias label is used anywhere: only x, y and the sample's index (for its EMA).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from fairlab import config
from fairlab import ensemble as ens
from fairlab.data.base import Batch, BiasedDataset
from fairlab.losses import generalized_cross_entropy, per_sample_cross_entropy
from fairlab.methods.base import Method, epochs_trained, hparam, resolve
from fairlab.models import baseline_network
from fairlab.train import fit, make_step, outputs, predict


@dataclass
class LfFHParams:
    """The published protocol on Coloured MNIST (Nam et al. 2020): q = 0.7 with the released code's extra factor q,
    EMA alpha = 0.7, Adam 1e-3, batches of 256, 100 epochs, no model selection."""

    epochs: int = hparam(100, "training epochs", positive=True)
    q: float = hparam(0.7, "GCE exponent of the biased model")
    ema_alpha: float = hparam(0.7, "per-sample loss EMA")
    gce_scale_by_q: bool = hparam(True, "the released code's extra factor q in the GCE")
    lr: float = hparam(1e-3, "Adam's learning rate")
    batch_size: int = hparam(256, "batch size", positive=True)
    compile: bool = hparam(False, "torch.compile the loss (meant for a GPU; single runs only)")


def relative_difficulty(loss_biased: torch.Tensor, loss_debiased: torch.Tensor) -> torch.Tensor:
    """LfF's weight W = L_b / (L_b + L_d) (the 1e-8 keeps 0 / 0 at 0 when both models are perfect)."""
    return loss_biased / (loss_biased + loss_debiased + 1e-8)


class PerSampleEMA:
    """An exponential moving average of a per-sample loss, kept on the device and indexed by ``batch.index``.

    ``update(index, loss)``: ema[i] <- alpha * ema[i] + (1 - alpha) * loss_i (a sample's first value is taken as is).
    ``normalised(index)``: ema[i] / max over the samples j of i's class of ema[j] (so W compares models per class).

    ``labels`` is (N,) for one model, or (K, N) for K stacked models (``fairlab.ensemble``), each with its own data
    set; ``index`` and ``loss`` then carry the same leading axis, (K, B).
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, alpha: float):
        if not 0 <= alpha < 1:
            raise ValueError(f"EMA alpha must lie in [0, 1), got {alpha}.")
        self.labels = labels  # (..., N) class of every training sample
        self.num_classes = num_classes
        self.alpha = alpha
        self.values = torch.zeros(labels.shape, device=labels.device)
        self.seen = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)

    def update(self, index: torch.Tensor, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        smoothed = self.alpha * self.values.gather(-1, index) + (1 - self.alpha) * loss
        self.values.scatter_(-1, index, torch.where(self.seen.gather(-1, index), smoothed, loss))
        self.seen.scatter_(-1, index, True)

    def class_max(self) -> torch.Tensor:
        """(..., num_classes) largest EMA value of each class (0 for a class not seen yet)."""
        out = torch.zeros(*self.labels.shape[:-1], self.num_classes, device=self.values.device)
        return out.scatter_reduce(-1, self.labels, self.values, reduce="amax", include_self=True)

    def normalised(self, index: torch.Tensor) -> torch.Tensor:
        # clamp: a class whose every loss underflowed to 0 would otherwise give 0 / 0
        class_max = self.class_max().gather(-1, self.labels.gather(-1, index))
        return self.values.gather(-1, index) / class_max.clamp_min(1e-12)


class LfFModel(nn.Module):
    """The biased and the debiased classifier; calling it gives the debiased model's logits (what is evaluated)."""

    def __init__(self, biased: nn.Module, debiased: nn.Module):
        super().__init__()
        self.biased = biased
        self.debiased = debiased

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.debiased(x)


def lff_loss(
    model: LfFModel, batch: Batch, ema_biased: PerSampleEMA, ema_debiased: PerSampleEMA, *, q: float,
    gce_scale_by_q: bool,
) -> dict:
    """One LfF step's loss; updates both EMAs at ``batch.index`` (so call it once per training batch).

        loss = mean_i GCE(f_b(x_i), y_i) + mean_i W(x_i) * CE(f_d(x_i), y_i)
    """
    return lff_objective(model.biased(batch.x), model.debiased(batch.x), batch, ema_biased, ema_debiased, q=q,
                         gce_scale_by_q=gce_scale_by_q)


def lff_objective(
    logits_b: torch.Tensor, logits_d: torch.Tensor, batch: Batch, ema_biased: PerSampleEMA,
    ema_debiased: PerSampleEMA, *, q: float, gce_scale_by_q: bool,
) -> dict:
    """``lff_loss`` from the two models' logits, (..., B, C): a leading axis of stacked models is kept (each entry of
    the returned dict is then one value per model)."""
    ce_b = per_sample_cross_entropy(logits_b, batch.y)
    ce_d = per_sample_cross_entropy(logits_d, batch.y)
    ema_biased.update(batch.index, ce_b)
    ema_debiased.update(batch.index, ce_d)
    # the weight is a target, not a path for gradients: EMA values are stored detached
    weight = relative_difficulty(ema_biased.normalised(batch.index), ema_debiased.normalised(batch.index))
    bias_loss = generalized_cross_entropy(logits_b, batch.y, q, scale_by_q=gce_scale_by_q).mean(-1)
    debiased_loss = (weight * ce_d).mean(-1)
    return {
        "loss": bias_loss + debiased_loss,
        "bias_loss": bias_loss,
        "debiased_loss": debiased_loss,
        "mean_weight": weight.mean(-1),
        "accuracy": (logits_d.argmax(-1) == batch.y).float().mean(-1),
        "bias_accuracy": (logits_b.argmax(-1) == batch.y).float().mean(-1),
    }


def fit_lff(train: BiasedDataset, hp: LfFHParams | None = None, *, val: BiasedDataset | None = None, seed: int = 0,
            device=None, progress: bool | None = None, **overrides):
    """Train LfF for a fixed number of epochs (no model selection: that would need bias labels or an unbiased set,
    so ``val`` is not used). Returns ``(model, history)``; ``model(x)`` gives the debiased logits.
    ``compile=True`` wraps the loss in ``torch.compile`` (meant for a GPU; unmeasured, off by default).
    """
    hp = resolve(LfFHParams, hp, overrides)
    config.seed_everything(seed)
    device = torch.device(device) if device is not None else config.device()
    model = LfFModel(baseline_network(train), baseline_network(train)).to(device)
    labels = train.y.to(device)
    ema_b = PerSampleEMA(labels, train.num_classes, hp.ema_alpha)
    ema_d = PerSampleEMA(labels, train.num_classes, hp.ema_alpha)

    def loss_fn(model, batch):
        return lff_loss(model, batch, ema_b, ema_d, q=hp.q, gce_scale_by_q=hp.gce_scale_by_q)

    if hp.compile:
        loss_fn = torch.compile(loss_fn)
    # one Adam over both models = two Adams (Adam's state is per parameter)
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr)
    step = make_step(model, loss_fn, optimizer)
    history = fit(model, train, step, epochs=hp.epochs, batch_size=hp.batch_size, device=device, progress=progress,
                  desc="lff")
    return model, history


def fit_lff_members(
    trains: Sequence[BiasedDataset], seeds: Sequence[int], hp: LfFHParams | None = None, *,
    vals: Sequence[BiasedDataset] | None = None, device=None, progress: bool | None = None, **overrides,
) -> tuple[list[LfFModel], list]:
    """``fit_lff`` for several runs at once (one per (data set, seed) pair), stacked: see ``fairlab.ensemble``.

    Member k trains exactly as ``fit_lff(trains[k], hp, seed=seeds[k])`` would (``vals`` is not used, as there).
    Returns ``(models, histories)``.
    """
    hp = resolve(LfFHParams, hp, overrides)
    if hp.compile:
        raise ValueError("compile is for single runs: use fit_lff to compile the loss.")
    device = torch.device(device) if device is not None else config.device()
    num_classes = trains[0].num_classes
    ensemble, generators = ens.members(
        lambda: LfFModel(baseline_network(trains[0]), baseline_network(trains[0])), seeds, device)
    labels = torch.stack([d.y.to(device) for d in trains])  # (K, N): each member keeps its own EMAs
    ema_b = PerSampleEMA(labels, num_classes, hp.ema_alpha)
    ema_d = PerSampleEMA(labels, num_classes, hp.ema_alpha)

    def loss_fn(members: ens.Members, batch: Batch) -> dict:
        logits_b, logits_d = members.map(lambda model, x: (model.biased(x), model.debiased(x)), batch.x)
        return lff_objective(logits_b, logits_d, batch, ema_b, ema_d, q=hp.q, gce_scale_by_q=hp.gce_scale_by_q)

    histories = ens.fit_members(ensemble, trains, loss_fn, epochs=hp.epochs, generators=generators, lr=hp.lr,
                                batch_size=hp.batch_size, progress=progress, desc="lff")
    return [ensemble.module(k) for k in range(len(ensemble))], histories


def representation(model: LfFModel, data: BiasedDataset) -> torch.Tensor:
    """The debiased classifier's last hidden layer for every sample: (N, hidden[-1])."""
    return outputs(model, data, model.debiased.features)


METHOD = Method(
    name="lff", hparams=LfFHParams, fit=fit_lff, fit_members=fit_lff_members, predict=predict,
    representation=representation, needs=("y",),
    datasets=("cmnist-lff", "cmnist-kim", "cmnist-nifr", "cmnist-binary", "adult"), summary=epochs_trained,
    description="Learning from Failure: a GCE-trained biased model reweights a debiased one (no bias labels).",
)
