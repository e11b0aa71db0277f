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
from typing import NamedTuple, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fairlab import config
from fairlab import ensemble as ens
from fairlab.data.base import Batch, BiasedDataset
from fairlab.methods.lff import generalized_cross_entropy
from fairlab.models.vae import Decoder, GaussianEncoder, kl_to_standard_normal, reparameterise
from fairlab.train import evaluate_loss, fit, make_step, model_device, predict

# Unbiased test accuracy (%) on Coloured MNIST, mean and sd over 10 seeds, recomputed from the authors' per-seed
# result files (the method brief). Keys: bias-conflicting ratio rho.
PUBLISHED = {
    "vanilla": {0.005: (43.70, 0.83), 0.01: (59.41, 0.39), 0.02: (73.28, 0.56), 0.05: (85.48, 0.50)},
    "lff": {0.005: (60.42, 2.72), 0.01: (68.91, 5.01), 0.02: (76.97, 2.49), 0.05: (81.18, 2.94)},
    "disent": {0.005: (63.98, 4.78), 0.01: (76.33, 3.41), 0.02: (82.39, 1.68), 0.05: (85.54, 2.49)},
    "sih": {0.005: (71.62, 2.49), 0.01: (80.03, 2.04), 0.02: (83.80, 1.28), 0.05: (86.14, 1.78)},
}


def chapter_protocol(profile: str | None = None) -> dict:
    """Chapter 4's settings per profile, shared by the chapter, the command line and ``benchmarks/quick_margins.py``.

    full: the published protocol (all 60,000 images, rho 0.5-5%, 3 seeds, batches of 256; SiH to early stopping, at
    most 500 epochs; vanilla and LfF 100 epochs). quick: 10,000 images, rho 1% and 2%, batches of 128 for every
    method, vanilla 5 / LfF 10 / SiH 15 epochs, chosen by measurement so that both debiasing methods beat vanilla on
    the conflicting images for each of seeds 0-4 within minutes on a CPU
    (``benchmarks/results/quick_margins_sih_cpu_2026-11-24.txt``).
    """
    return config.by_profile(
        quick=dict(ratios=(0.01, 0.02), seeds=(0,), subsample=10_000, batch_size=128, vanilla_epochs=5, lff_epochs=10,
                   sih_epochs=15),
        full=dict(ratios=(0.005, 0.01, 0.02, 0.05), seeds=(0, 1, 2), subsample=None, batch_size=256,
                  vanilla_epochs=100, lff_epochs=100, sih_epochs=500),
        name=profile,
    )


def protocol_cli_defaults(args, epochs_key: str) -> None:
    """Fill the command-line options left unset with chapter 4's protocol for the profile (before the data is
    loaded): the method's epochs (``epochs_key``: "sih_epochs", "lff_epochs" or "vanilla_epochs") and the batch size,
    and on LfF's Coloured MNIST the training subset."""
    from fairlab.cli import fill_unset

    protocol = chapter_protocol(args.profile)
    fill_unset(args, epochs=protocol[epochs_key], batch_size=protocol["batch_size"])
    if args.dataset == "cmnist-lff":
        fill_unset(args, subsample=protocol["subsample"])


def cli_defaults(args) -> None:
    protocol_cli_defaults(args, "sih_epochs")


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


def signal_weights(p_bias: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Focal-style weight of each sample in the signal loss, (1 - p_b)^q, p_b = the bias model's p(y | x).

    Focal loss (Lin et al. 2017) uses (1 - p)^gamma with the model's *own* confidence; SiH uses the bias model's.
    """
    if not 0 < q:
        raise ValueError(f"the focal exponent q must be positive, got {q}.")
    return (1 - p_bias).pow(q)


def sih_loss(
    model: SignalIsHarder, batch: Batch, *, q: float = 0.7, gce_scale_by_q: bool = False,
    reconstruction_weight: float = 100.0, sample_latents: bool = True,
) -> dict:
    """The SiH objective on one batch (the module docstring has the equations; the lines below follow them).

    ``sample_latents=False`` uses the encoder means instead of samples: the released code measures the validation
    loss that way (early stopping and the plateau schedule then see no sampling noise), and so does ``fit_sih``.
    """
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


def fit_sih(
    train: BiasedDataset,
    *,
    val: BiasedDataset | None = None,
    val_fraction: float = 0.1,
    epochs: int = 500,
    q: float = 0.7,
    gce_scale_by_q: bool = False,
    reconstruction_weight: float = 100.0,
    patience: int | None = 2,
    lr: float = 1e-3,
    lr_factor: float = 0.1,
    batch_size: int = 256,
    seed: int = 0,
    device=None,
    compile: bool = False,
    progress: bool | None = None,
):
    """Train SiH; returns ``(model, history)`` with the best validation state restored.

    Args:
        val: the validation set; by default a random ``val_fraction`` of ``train`` (biased, like the training set:
            selecting on it needs no bias label).
        epochs: the maximum (published: 500; early stopping ends CMNIST runs after about 30).
        q, gce_scale_by_q, reconstruction_weight: the loss's knobs, published defaults.
        patience: stop after this many epochs without a lower validation loss (None: run all ``epochs``). The
            learning rate is multiplied by ``lr_factor`` after every epoch without improvement (the published
            scheduler's patience is patience / 2 - 1 = 0), so a run stops after its second decay in a row.
        compile: wrap the loss in ``torch.compile(mode="reduce-overhead")`` (CUDA graphs; meant for a GPU, where
            drop_last keeps every batch the same shape). Unmeasured in this repository so far; off by default.
    """
    config.seed_everything(seed)
    device = torch.device(device) if device is not None else config.device()
    if val is None:
        train, val = train.random_split(val_fraction, seed=seed)
    val = val.to(device)
    model = SignalIsHarder(train.x.shape[1:], train.num_classes).to(device)

    def loss_fn(model, batch, sample_latents=True):
        return sih_loss(model, batch, q=q, gce_scale_by_q=gce_scale_by_q, reconstruction_weight=reconstruction_weight,
                        sample_latents=sample_latents)

    train_loss = torch.compile(loss_fn, mode="reduce-overhead") if compile else loss_fn
    # fused Adam: one kernel for the whole update on a GPU (not available on every CPU build)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=lr_factor, patience=_plateau_patience(patience), threshold=1e-5
    )
    step = make_step(model, train_loss, optimizer)

    def validate() -> dict:
        # the encoder means, not samples: a noisy validation loss would decay the rate and stop runs by chance
        return {f"val_{k}": v for k, v in evaluate_loss(lambda b: loss_fn(model, b, sample_latents=False), val).items()}

    def on_epoch_end(epoch: int, row: dict) -> None:
        row["lr"] = optimizer.param_groups[0]["lr"]  # the rate this epoch was trained with
        scheduler.step(row["val_loss"])

    history = fit(
        model, train, step, epochs=epochs, batch_size=batch_size, validate=validate, monitor="val_loss",
        patience=patience, on_epoch_end=on_epoch_end, device=device, progress=progress, desc="sih",
    )
    return model, history


def fit_sih_members(
    train: Sequence[BiasedDataset],
    val: Sequence[BiasedDataset],
    seeds: Sequence[int],
    *,
    epochs: int = 500,
    q: float = 0.7,
    gce_scale_by_q: bool = False,
    reconstruction_weight: float = 100.0,
    patience: int | None = 2,
    lr: float = 1e-3,
    lr_factor: float = 0.1,
    batch_size: int = 256,
    device=None,
    progress: bool | None = None,
) -> tuple[list[SignalIsHarder], list[pd.DataFrame]]:
    """``fit_sih`` for several runs at once (one per (data set, seed) pair), stacked: see ``fairlab.ensemble``.

    Each member has its own early stopping and plateau schedule on its own validation set, as ``fit_sih(train[k],
    val=val[k], seed=seeds[k])``; members that stop are frozen while the others go on. (The sampling noise of the
    latents is drawn differently from a single run, so a member matches it in distribution, not bit for bit.)
    Returns ``(models, histories)``.
    """
    def loss_fn(model, batch, sample_latents=True):
        return sih_loss(model, batch, q=q, gce_scale_by_q=gce_scale_by_q, reconstruction_weight=reconstruction_weight,
                        sample_latents=sample_latents)

    ensemble, generators = ens.members(lambda: SignalIsHarder(train[0].x.shape[1:], train[0].num_classes), seeds,
                                       device)
    histories = ens.fit_members(
        ensemble, train, ens.per_member(loss_fn), epochs=epochs, generators=generators, lr=lr, batch_size=batch_size,
        val=val, val_loss_fn=ens.per_member(lambda m, b: loss_fn(m, b, sample_latents=False)), patience=patience,
        lr_factor=lr_factor, lr_patience=_plateau_patience(patience), progress=progress,
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



def bias_made_visible(model: SignalIsHarder, data: BiasedDataset, n: int = 100, *, seed: int = 0) -> dict:
    """The chapter's signature figure, as tensors: ``n`` images both classifiers get right (a proxy for
    bias-aligned, found without bias labels), their reconstructions, their reconstructions recoloured towards the
    next class (target = (y + 1) mod C, via the perturbed bias latent), and their digits with the bias latent of the
    next image swapped in. Also ``target`` and ``success`` (C_b predicts the target after the perturbation).
    """
    model.eval()
    data = data.to(model_device(model))
    with torch.no_grad():
        both_right = (model(data.x).argmax(1) == data.y) & (model.bias_logits(data.x).argmax(1) == data.y)
    candidates = torch.nonzero(both_right).flatten()
    if len(candidates) < n:
        raise ValueError(f"only {len(candidates)} images are classified right by both classifiers; lower n={n}.")
    gen = torch.Generator().manual_seed(seed)
    pick = candidates[torch.randperm(len(candidates), generator=gen)[:n].to(candidates.device)]
    x, y = data.x[pick], data.y[pick]
    target = (y + 1) % data.num_classes
    recoloured, success = recolour(model, x, target)
    return {
        "original": x, "reconstruction": reconstruct(model, x), "recoloured": recoloured,
        "swapped": swap_bias_latents(model, x, x.roll(1, 0)), "target": target, "success": success,
    }


# ---------------------------------------------------------------------------------------------------------------
# Chapter helpers: how fast the bias is learnt, the results table
# ---------------------------------------------------------------------------------------------------------------
def first_epoch_curves(
    train: BiasedDataset, probe: BiasedDataset, *, steps: int = 60, eval_every: int = 5, batch_size: int = 256,
    lr: float = 1e-3, seed: int = 0, device=None,
) -> pd.DataFrame:
    """Train the vanilla MLP for ``steps`` batches and, every ``eval_every`` steps, measure on ``probe`` (bias labels
    are used here only to *report*): accuracy on aligned and on conflicting samples, and how often the prediction is
    the colour's class rather than the digit's. A diagnostic probe, not a training routine: it syncs at each probe.

    Returns a long frame (step, quantity, value) for ``viz.metric_against``.
    """
    from fairlab.methods.erm import build_model, cross_entropy

    config.seed_everything(seed)
    device = torch.device(device) if device is not None else config.device()
    data, probe = train.to(device), probe.to(device)
    model = build_model(data).to(device)
    step = make_step(model, cross_entropy, torch.optim.Adam(model.parameters(), lr=lr))
    rows = []

    def measure(n: int) -> None:
        pred = predict(model, probe)
        correct, aligned = pred == probe.y, probe.aligned
        rows.extend([
            (n, "accuracy, bias-aligned", float(correct[aligned].float().mean())),
            (n, "accuracy, bias-conflicting", float(correct[~aligned].float().mean())),
            (n, "predicts the colour's class (conflicting)", float((pred == probe.group)[~aligned].float().mean())),
        ])

    measure(0)
    n = 0
    while n < steps:
        for batch in data.batches(batch_size, shuffle=True, drop_last=True):
            step(batch)
            n += 1
            if n % eval_every == 0:
                measure(n)
            if n >= steps:
                break
    return pd.DataFrame(rows, columns=["step", "quantity", "value"])


def published_table() -> pd.DataFrame:
    """The brief's published numbers as rows (method, rho, mean, sd), accuracy in %."""
    return pd.DataFrame(
        [(m, rho, mean, sd) for m, by_rho in PUBLISHED.items() for rho, (mean, sd) in by_rho.items()],
        columns=["method", "rho", "published_mean", "published_sd"],
    )


def compare_methods(
    ratios: Sequence[float], seeds: Sequence[int], *, vanilla_epochs: int, lff_epochs: int, sih_epochs: int,
    subsample: int | None = None, batch_size: int = 256, max_stacked: int | None = None, device=None,
    progress: bool | None = False,
) -> tuple[pd.DataFrame, dict]:
    """Train vanilla, LfF and SiH at every (rho, seed) on the LfF Coloured MNIST protocol.

    As in the released code: vanilla and LfF train a fixed number of epochs on the whole training set; SiH trains on
    90% of it and early-stops on the other 10% (biased, like the rest: no bias label is needed to select). The runs
    of one method are trained together, stacked (``fairlab.ensemble``: each run as its single-run ``fit_*`` would,
    in one process and one step), at most
    ``max_stacked`` at a time (default: all; lower it when the stacked training sets do not fit in memory).

    Returns ``(runs, trained)``: ``runs`` has one row per run with columns method, rho, seed, accuracy,
    aligned_accuracy, conflicting_accuracy (test, in [0, 1]), epochs, seconds (the wall-clock of the stacked training
    divided by the number of runs in it); ``trained[(method, rho, seed)]`` is that run's ``(model, history)``.
    """
    import time

    from fairlab import metrics
    from fairlab.data import coloured_mnist
    from fairlab.methods.erm import fit_erm_members
    from fairlab.methods.lff import fit_lff_members

    device = torch.device(device) if device is not None else config.device()
    test = coloured_mnist("lff", "test").to(device)
    keys = [(rho, seed) for rho in ratios for seed in seeds]
    full = {
        (rho, seed): coloured_mnist("lff", "train", bias_conflicting_ratio=rho, seed=seed, subsample=subsample)
        .to(device)
        for rho, seed in keys
    }
    splits = {key: data.random_split(0.1, seed=key[1]) for key, data in full.items()}  # SiH's (train, val)
    common = dict(batch_size=batch_size, device=device, progress=progress)
    methods = {
        "vanilla": lambda keys, sd: fit_erm_members([full[k] for k in keys], sd, epochs=vanilla_epochs, **common),
        "lff": lambda keys, sd: fit_lff_members([full[k] for k in keys], sd, epochs=lff_epochs, **common),
        "sih": lambda keys, sd: fit_sih_members([splits[k][0] for k in keys], [splits[k][1] for k in keys], sd,
                                                epochs=sih_epochs, **common),
    }
    size = max_stacked or len(keys)
    rows, trained = [], {}
    for method, fit_stacked in methods.items():
        for first in range(0, len(keys), size):
            group = keys[first : first + size]
            start = time.perf_counter()
            models, histories = fit_stacked(group, [seed for _, seed in group])
            seconds = (time.perf_counter() - start) / len(group)
            for (rho, seed), model, history in zip(group, models, histories):
                trained[(method, rho, seed)] = (model, history)
                pred = predict(model, test)
                scores = metrics.aligned_conflicting_accuracy(test.y, pred, aligned=test.aligned)
                rows.append(dict(method=method, rho=rho, seed=seed, accuracy=metrics.accuracy(test.y, pred),
                                 **scores, epochs=len(history), seconds=seconds))
    return pd.DataFrame(rows), trained


def results_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds (in %) per method and rho, next to the published numbers of the brief."""
    grouped = runs.groupby(["method", "rho"])
    stats = grouped[["accuracy", "aligned_accuracy", "conflicting_accuracy"]].agg(["mean", "std"]) * 100
    table = pd.DataFrame({
        "seeds": grouped.size(),
        "unbiased acc. (ours)": _mean_sd(stats["accuracy"]),
        "aligned acc. (ours)": _mean_sd(stats["aligned_accuracy"]),
        "conflicting acc. (ours)": _mean_sd(stats["conflicting_accuracy"]),
    })
    published = published_table().set_index(["method", "rho"])
    label = "published (Vandenhirtz et al., 10 seeds)"
    table[label] = [
        f"{published.loc[key, 'published_mean']:.2f} ± {published.loc[key, 'published_sd']:.2f}"
        if key in published.index else "-" for key in table.index
    ]
    return table


def _mean_sd(frame: pd.DataFrame) -> pd.Series:
    # one seed has no sd: show the mean alone rather than "nan"
    return frame.apply(lambda r: f"{r['mean']:.2f}" + (f" ± {r['std']:.2f}" if r["std"] == r["std"] else ""), axis=1)


def add_cli_arguments(parser) -> None:
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--q", type=float, default=0.7, help="GCE / focal exponent")
    parser.add_argument("--gce-scale-by-q", action="store_true", help="LfF's extra factor q in the GCE")
    parser.add_argument("--reconstruction-weight", type=float, default=100.0)
    parser.add_argument("--patience", type=int, default=2, help="early stopping on the biased validation loss")
    parser.add_argument("--compile", action="store_true", help="torch.compile(mode='reduce-overhead') the step")


def cli_run(args, train: BiasedDataset, test: BiasedDataset):
    model, history = fit_sih(
        train, epochs=args.epochs, q=args.q, gce_scale_by_q=args.gce_scale_by_q,
        reconstruction_weight=args.reconstruction_weight, patience=args.patience, lr=args.lr, seed=args.seed,
        batch_size=args.batch_size, compile=args.compile,
    )
    return predict(model, test), {"epochs": len(history), "best_epoch": int(history.attrs["best_epoch"])}
