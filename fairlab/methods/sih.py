"""Signal is Harder (SiH, Vandenhirtz et al. 2023): a focal loss whose focus is set by a deliberately biased model.

Two VAEs share one decoder. The *bias* VAE's classifier C_b is trained with the generalised cross-entropy (GCE), so it
learns the easy cue (the colour) and is confident exactly on the bias-aligned samples. The *signal* VAE's classifier
C_s is trained with cross-entropy weighted per sample by (1 - p_b)^q, p_b = C_b's probability of the true class: the
samples the bias explains are turned down, the bias-conflicting ones turned up. Both latents together must
reconstruct the image, which is what later lets us *see* the bias: move z_b until C_b changes its mind, decode.

Per batch (q = 0.7, D = 3 * 28 * 28 pixels):

    p_b    = softmax(C_b(z_b))_y                                   (no gradient)
    L_s    = mean_i (1 - p_b,i)^q * CE(C_s(z_s,i), y_i)             focal-style signal loss
    L_b    = mean_i p_b,i^q * CE(C_b(z_b,i), y_i)                   GCE bias loss
    L_rec  = 100 * mean_i BCE(dec([z_s,i ; z_b,i]), x_i) summed over pixels / D
    L_KL   = mean_i (KL(q(z_s | x_i) || N(0, I)) + KL(q(z_b | x_i) || N(0, I))) / D
    L      = L_s + L_b + L_rec + L_KL                               one backward pass, Adam 1e-3

Early stopping (patience 2) and ReduceLROnPlateau (factor 0.1) both watch L on a random 10% of the *biased* training
set; the best state is restored. No bias label is used in training or model selection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fairlab import config
from fairlab import ensemble as ens
from fairlab.data.base import Batch, BiasedDataset
from fairlab.losses import generalized_cross_entropy
from fairlab.methods.base import Method, hparam, resolve
from fairlab.models.vae import Decoder, GaussianEncoder, kl_to_standard_normal, reparameterise
from fairlab.train import evaluate_loss, fit, make_step, model_device, outputs, predict


@dataclass
class SiHHParams:
    """The published protocol (Vandenhirtz et al. 2023): q = 0.7 for both the GCE and the focal weight (without
    LfF's extra factor q), reconstruction weight 100, Adam 1e-3, batches of 256, at most 500 epochs with early
    stopping (patience 2) and the plateau schedule (factor 0.1) on 10% of the biased training set."""

    epochs: int = hparam(500, "the most epochs (early stopping ends Coloured MNIST runs after about 30)",
                         positive=True)
    q: float = hparam(0.7, "GCE / focal exponent")
    gce_scale_by_q: bool = hparam(False, "LfF's extra factor q in the GCE")
    reconstruction_weight: float = hparam(100.0, "weight of the reconstruction term")
    patience: int | None = hparam(2, "early stopping on the biased validation loss (None: every epoch)")
    lr: float = hparam(1e-3, "Adam's learning rate")
    lr_factor: float = hparam(0.1, "the plateau schedule's factor")
    val_fraction: float = hparam(0.1, "share of the training set held out for validation (when no val is given)")
    batch_size: int = hparam(256, "batch size", positive=True)
    compile: bool = hparam(False, "torch.compile(mode='reduce-overhead') the loss (GPU; single runs only)")
    validation: str = hparam("all", "how the validation loss is scored: all (every image, in order) or released "
                                    "(the released code's: a fresh shuffle, whole batches only; single runs only)",
                             choices=("all", "released"))

class Latents(NamedTuple):
    mean_s: torch.Tensor  # (B, D_s) signal latent mean
    logvar_s: torch.Tensor
    mean_b: torch.Tensor  # (B, D_b) bias latent mean
    logvar_b: torch.Tensor


class SignalIsHarder(nn.Module):
    """Signal and bias VAE encoders, a classifier on each latent, one decoder reading both latents.

    Coloured MNIST sizes (the defaults): encoders 2352 -> 100 -> 100 -> (mean, logvar) in R^100, classifiers
    ReLU -> Linear(100, 10), decoder 200 -> 512 -> 1024 -> 2352. ``model(x)`` is the signal classifier on the signal
    encoder's mean: the prediction used at test time.
    """

    def __init__(
        self, in_shape: Sequence[int] = (3, 28, 28), num_classes: int = 10, latent_dim: int = 100,
        encoder_hidden: Sequence[int] = (100, 100), decoder_hidden: Sequence[int] = (512, 1024),
    ):
        super().__init__()
        in_features = math.prod(in_shape)
        self.signal_encoder = GaussianEncoder(in_features, encoder_hidden, latent_dim)
        self.bias_encoder = GaussianEncoder(in_features, encoder_hidden, latent_dim)
        self.signal_classifier = nn.Sequential(nn.ReLU(), nn.Linear(latent_dim, num_classes))
        self.bias_classifier = nn.Sequential(nn.ReLU(), nn.Linear(latent_dim, num_classes))
        self.decoder = Decoder(2 * latent_dim, decoder_hidden, in_shape)
        self.in_shape = tuple(in_shape)

    def encode(self, x: torch.Tensor) -> Latents:
        return Latents(*self.signal_encoder(x), *self.bias_encoder(x))

    def decode(self, z_s: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """The reconstruction in [0, 1], (B, *in_shape), from a signal and a bias latent."""
        return torch.sigmoid(self.decoder(torch.cat([z_s, z_b], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.signal_classifier(self.signal_encoder(x)[0])

    def bias_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias_classifier(self.bias_encoder(x)[0])


def signal_weights(p_bias: torch.Tensor, q: float) -> torch.Tensor:
    """Focal-style weight of each sample in the signal loss, (1 - p_b)^q, p_b = the bias model's p(y | x).

    Focal loss (Lin et al. 2017) uses (1 - p)^gamma with the model's *own* confidence; SiH uses the bias model's.
    """
    if not 0 < q:
        raise ValueError(f"the focal exponent q must be positive, got {q}.")
    return (1 - p_bias).pow(q)


def sih_loss(
    model: SignalIsHarder, batch: Batch, hp: SiHHParams | None = None, *, sample_latents: bool = True, **overrides,
) -> dict:
    """The SiH objective on one batch (the module docstring has the equations; the lines below follow them).

    The knobs are ``hp``'s (with ``overrides``): ``q``, ``gce_scale_by_q``, ``reconstruction_weight``.

    ``sample_latents=False`` uses the encoder means instead of samples: the released code measures the validation
    loss that way (early stopping and the plateau schedule then see no sampling noise), and so does ``fit_sih``.
    """
    hp = resolve(SiHHParams, hp, overrides) if overrides or hp is None else hp
    q, gce_scale_by_q, reconstruction_weight = hp.q, hp.gce_scale_by_q, hp.reconstruction_weight
    x, y = batch.x, batch.y
    lat = model.encode(x)
    if sample_latents:
        z_s, z_b = reparameterise(lat.mean_s, lat.logvar_s), reparameterise(lat.mean_b, lat.logvar_b)
    else:
        z_s, z_b = lat.mean_s, lat.mean_b
    logits_s, logits_b = model.signal_classifier(z_s), model.bias_classifier(z_b)
    n_pixels = x[0].numel()

    # p_b is a weight, not a path: detaching keeps the signal loss from pushing the bias model around
    p_b = F.softmax(logits_b, 1).gather(1, y[:, None]).squeeze(1).detach()
    signal = (signal_weights(p_b, q) * F.cross_entropy(logits_s, y, reduction="none")).mean()
    bias = generalized_cross_entropy(logits_b, y, q, scale_by_q=gce_scale_by_q).mean()
    pixel_logits = model.decoder(torch.cat([z_s, z_b], 1))
    bce = F.binary_cross_entropy_with_logits(pixel_logits, x, reduction="none").flatten(1).sum(1)  # (B,)
    # dividing by the pixel count makes the weights (100, 1) independent of the image size
    reconstruction = reconstruction_weight * (bce / n_pixels).mean()
    kl = ((kl_to_standard_normal(lat.mean_s, lat.logvar_s) + kl_to_standard_normal(lat.mean_b, lat.logvar_b))
          / n_pixels).mean()
    return {
        "loss": signal + bias + reconstruction + kl,
        "signal": signal,
        "bias": bias,
        "reconstruction": reconstruction,
        "kl": kl,
        "accuracy": (logits_s.argmax(1) == y).float().mean(),
        "bias_accuracy": (logits_b.argmax(1) == y).float().mean(),
    }


def _loss(hp: SiHHParams):
    """The objective with ``hp``'s knobs; ``sample_latents=False`` is the validation loss (encoder means)."""
    def loss_fn(model, batch, sample_latents=True):
        return sih_loss(model, batch, hp, sample_latents=sample_latents)

    return loss_fn


def released_validation(loss_fn, val: BiasedDataset, batch_size: int, generator: torch.Generator) -> dict:
    """The validation loss as the released SiH code scores it, through its training loader: a fresh shuffle,
    batches of ``batch_size``, the last partial batch dropped, the per-sample sums divided by the whole set's size
    (accuracies: the mean over the images scored). Which images are dropped changes every call, so the value is
    noisy; ``fit_sih(validation="released")`` monitors it, to reproduce when the released runs stop."""
    kept = len(val) // batch_size * batch_size
    if kept == 0:
        raise ValueError(f"the validation set has {len(val)} images, fewer than one batch of {batch_size}: the "
                         "released scoring would see none. Use validation='all' or a larger validation set.")
    order = torch.randperm(len(val), generator=generator)[:kept].to(val.device)
    means = evaluate_loss(loss_fn, val.subset(order), batch_size)
    return {k: v if "accuracy" in k else v * kept / len(val) for k, v in means.items()}


def fit_sih(train: BiasedDataset, hp: SiHHParams | None = None, *, val: BiasedDataset | None = None, seed: int = 0,
            device=None, progress: bool | None = None, **overrides):
    """Train SiH; returns ``(model, history)`` with the best validation state restored.

    ``val``: the validation set; by default a random ``val_fraction`` of ``train`` (biased, like the training set:
    selecting on it needs no bias label). ``patience``: stop after this many epochs without a lower validation loss
    (None: run all ``epochs``). The learning rate is multiplied by ``lr_factor`` after every epoch without
    improvement (the published scheduler's patience is patience / 2 - 1 = 0), so a run stops after its second
    decay in a row. ``compile``: wrap the loss in ``torch.compile(mode="reduce-overhead")`` (CUDA graphs; meant for
    a GPU, where drop_last keeps every batch the same shape). ``validation="released"``: score the validation set
    as the released code does (``released_validation``), noise included.
    """
    hp = resolve(SiHHParams, hp, overrides)
    config.seed_everything(seed)
    device = torch.device(device) if device is not None else config.device()
    if val is None:
        train, val = train.random_split(hp.val_fraction, seed=seed)
    val = val.to(device)
    model = SignalIsHarder(train.x.shape[1:], train.num_classes).to(device)
    loss_fn = _loss(hp)
    train_loss = torch.compile(loss_fn, mode="reduce-overhead") if hp.compile else loss_fn
    # fused Adam: one kernel for the whole update on a GPU (not available on every CPU build)
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr, fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=hp.lr_factor, patience=_plateau_patience(hp.patience), threshold=1e-5
    )
    step = make_step(model, train_loss, optimizer)

    shuffle = torch.Generator().manual_seed(seed)

    def validate() -> dict:
        # the encoder means, not samples: a noisy validation loss would decay the rate and stop runs by chance
        val_loss = lambda b: loss_fn(model, b, sample_latents=False)  # noqa: E731
        scores = (released_validation(val_loss, val, hp.batch_size, shuffle) if hp.validation == "released"
                  else evaluate_loss(val_loss, val))
        return {f"val_{k}": v for k, v in scores.items()}

    def on_epoch_end(epoch: int, row: dict) -> None:
        row["lr"] = optimizer.param_groups[0]["lr"]  # the rate this epoch was trained with
        scheduler.step(row["val_loss"])

    history = fit(
        model, train, step, epochs=hp.epochs, batch_size=hp.batch_size, validate=validate, monitor="val_loss",
        patience=hp.patience, on_epoch_end=on_epoch_end, device=device, progress=progress, desc="sih",
    )
    return model, history


def fit_sih_members(
    trains: Sequence[BiasedDataset], seeds: Sequence[int], hp: SiHHParams | None = None, *,
    vals: Sequence[BiasedDataset] | None = None, device=None, progress: bool | None = None, **overrides,
) -> tuple[list[SignalIsHarder], list[pd.DataFrame]]:
    """``fit_sih`` for several runs at once (one per (data set, seed) pair), stacked: see ``fairlab.ensemble``.

    Each member has its own early stopping and plateau schedule on its own validation set, as ``fit_sih(trains[k],
    hp, val=vals[k], seed=seeds[k])`` (without ``vals``, member k holds out ``val_fraction`` of its training set
    as ``fit_sih`` does); members that stop are frozen while the others go on. (The sampling noise of the latents
    is drawn differently from a single run, so a member matches it in distribution, not bit for bit.) Returns
    ``(models, histories)``.
    """
    hp = resolve(SiHHParams, hp, overrides)
    if hp.compile:
        raise ValueError("compile is for single runs: use fit_sih to compile the loss.")
    if hp.validation != "all":
        raise ValueError("validation='released' is for single runs: use fit_sih to score the validation set as the "
                         "released code does.")
    if vals is None:
        splits = [train.random_split(hp.val_fraction, seed=seed) for train, seed in zip(trains, seeds)]
        trains, vals = [t for t, _ in splits], [v for _, v in splits]
    loss_fn = _loss(hp)
    ensemble, generators = ens.members(lambda: SignalIsHarder(trains[0].x.shape[1:], trains[0].num_classes), seeds,
                                       device)
    histories = ens.fit_members(
        ensemble, trains, ens.per_member(loss_fn), epochs=hp.epochs, generators=generators, lr=hp.lr,
        batch_size=hp.batch_size, val=vals,
        val_loss_fn=ens.per_member(lambda m, b: loss_fn(m, b, sample_latents=False)),
        patience=hp.patience, lr_factor=hp.lr_factor, lr_patience=_plateau_patience(hp.patience), progress=progress,
        desc="sih",
    )
    return [ensemble.module(k) for k in range(len(ensemble))], histories


def _plateau_patience(patience: int | None) -> int:
    # the released code's scheduler patience: patience / 2 - 1 (0 for the published 2)
    return max((patience or 2) // 2 - 1, 0)


# ---------------------------------------------------------------------------------------------------------------
# The bias, made visible: latent perturbation and latent swap
# ---------------------------------------------------------------------------------------------------------------
def perturb_bias_latent(
    classifier: nn.Module, z: torch.Tensor, target: torch.Tensor, *, max_steps: int = 20, overshoot: float = 0.02
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepFool-style targeted attack on ``classifier`` in latent space: move each z_i until it predicts target_i.

    Each step linearises the gap between the target logit and the currently winning one,
    g(z) = f_t(z) - f_max(z), and jumps to where that linearisation crosses zero, a little beyond:

        delta = |g(z)| / ||grad g(z)||^2 * grad g(z),     z <- z + (1 + overshoot) * delta.

    Samples that already predict their target stop moving. Returns ``(z_perturbed, success)`` with ``success``
    (B,) True where the classifier now predicts the target.
    """
    if z.ndim != 2 or target.shape != (len(z),):
        raise ValueError(f"z must be (B, D) and target (B,), got {tuple(z.shape)} and {tuple(target.shape)}.")
    z = z.detach().clone()
    rows = torch.arange(len(z), device=z.device)
    for _ in range(max_steps):
        z.requires_grad_(True)
        with torch.enable_grad():
            logits = classifier(z)
            winner = logits.argmax(1)
            done = winner == target
            if bool(done.all()):
                break
            gap = logits[rows, target] - logits[rows, winner]  # (B,), < 0 where not done
            # samples are independent, so the gradient of the sum gives each sample its own gradient
            (grad,) = torch.autograd.grad(gap.sum(), z)
        with torch.no_grad():
            # the small constant guards a flat region (zero gradient) against 0 / 0
            delta = gap.abs()[:, None] / (grad.pow(2).sum(1, keepdim=True) + 1e-12) * grad
            z = torch.where(done[:, None], z, z + (1 + overshoot) * delta).detach()
    with torch.no_grad():
        success = classifier(z).argmax(1) == target
    return z.detach(), success


@torch.no_grad()
def reconstruct(model: SignalIsHarder, x: torch.Tensor) -> torch.Tensor:
    """Decode the encoder means: the model's reconstruction of x."""
    lat = model.encode(x.to(model_device(model)))
    return model.decode(lat.mean_s, lat.mean_b)


def recolour(
    model: SignalIsHarder, x: torch.Tensor, target: torch.Tensor, *, max_steps: int = 20, overshoot: float = 0.02
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruct x with its *bias* latent pushed until C_b predicts ``target``; the signal latent is untouched.

    Returns ``(images, success)``. On Coloured MNIST the digit keeps its shape and takes target's colour.
    """
    x, target = x.to(model_device(model)), target.to(model_device(model))  # a model trained on a GPU, CPU images
    with torch.no_grad():
        lat = model.encode(x)
    z_b, success = perturb_bias_latent(model.bias_classifier, lat.mean_b, target, max_steps=max_steps,
                                       overshoot=overshoot)
    with torch.no_grad():
        return model.decode(lat.mean_s, z_b), success


@torch.no_grad()
def swap_bias_latents(model: SignalIsHarder, x: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """Decode [z_s of x ; z_b of donors]: x's digit with the donors' bias (colour)."""
    if len(x) != len(donors):
        raise ValueError(f"x and donors must have the same number of images, got {len(x)} and {len(donors)}.")
    device = model_device(model)
    return model.decode(model.encode(x.to(device)).mean_s, model.encode(donors.to(device)).mean_b)


def representation(model: SignalIsHarder, data: BiasedDataset) -> torch.Tensor:
    """The signal encoder's mean for every sample, (N, latent_dim): what the signal classifier reads."""
    return outputs(model, data, lambda x: model.signal_encoder(x)[0])


def _summary(model, history, *, train, test, hp, **_) -> dict:
    return {"epochs": len(history), "best_epoch": int(history.attrs["best_epoch"])}


METHOD = Method(
    name="sih", hparams=SiHHParams, fit=fit_sih, fit_members=fit_sih_members, predict=predict,
    representation=representation, needs=("y",),
    datasets=("cmnist-lff", "cmnist-kim", "cmnist-nifr", "cmnist-binary", "adult"), summary=_summary,
    description="Signal is Harder: two VAEs, a GCE bias classifier, a focal-style reweighted signal classifier.",
)
