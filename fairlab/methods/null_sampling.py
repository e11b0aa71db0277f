"""Null-sampling (Kehrenberg et al., ECCV 2020): remove s in the *data domain*, with a flow (cFlow) or a cVAE.

A generative model is trained on the *representative* set, where s is independent of y; it reads x and s, never y.
It learns an encoding whose part that carries s can be switched off; decoding with that part switched off gives the
*null-sample* x_tilde, an image of the same kind as x with s removed. A downstream classifier is then trained on
null-samples of the biased training set and tested on null-samples of the test set.

cFlow (``cflow_loss``), a Glow-style flow f with z = f(x) = [z_u, z_b], base density N(0, I), D = dim(x):

    nll   = -(log N(z; 0, I) + log |det df/dx|) / D                nats per dimension
    adv   = mean_m CE(a_m(GRL([z_u, 0])), s)                        adversaries see z_u only
    loss  = nll + w_adv * adv                                       w_adv = 0.01, one backward pass
    null-sample x_u = f^-1([z_u, 0]),  bias sample x_b = f^-1([0, z_b])

cVAE (``cvae_loss``), encoder q(z | x) = N(mu, sigma^2), decoder g(z, s):

    rec   = sum_pixels (g(z, onehot(s)) - x)^2                      summed L2
    kl    = KL(q(z | x) || N(0, I))
    adv   = mean_m CE(a_m(GRL(z)), s)
    loss  = rec + beta * kl + w_adv * adv                           beta = 0.01, w_adv = 1
    null-sample x_u = g(mu, 0),  bias sample x_b = g(0, onehot(s))  (the latter: our counterpart of f^-1([0, z_b]))

The gradient-reversal layer (GRL) makes the adversaries minimise their cross-entropy while the encoder maximises it.
Every setting of both profiles is in ``settings``; the command line and the chapter read it from there.
"""
from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fairlab import config, metrics
from fairlab.data import adult, coloured_mnist
from fairlab.data.base import Batch, BiasedDataset
from fairlab.models import MLP
from fairlab.models.adversary import AdversaryEnsemble, grad_reverse
from fairlab.models.cvae import ConditionalVAE, gated_conv_cvae, mlp_cvae
from fairlab.models.flow import (
    MultiScaleFlow, VectorFlow, join_latent, partition_latent, standard_normal_log_prob,
)
from fairlab.models.vae import kl_to_standard_normal, reparameterise
from fairlab.train import autocast, fit, make_step, model_device, predict

# The authors' Coloured MNIST results (the method brief): accuracy (HGR) against the colour variance.
PUBLISHED_CMNIST = {
    0.00: {"cflow": (0.9534, 0.069), "cvae": (0.9909, 0.058), "cnn": (0.1084, 1.00)},
    0.01: {"cflow": (0.9421, 0.097), "cvae": (0.9893, 0.057), "cnn": (0.2407, 0.99)},
    0.02: {"cflow": (0.9528, 0.093), "cvae": (0.9875, 0.058), "cnn": (0.3830, 0.89)},
    0.03: {"cflow": (0.9681, 0.079), "cvae": (0.9477, 0.141), "cnn": (0.5243, 0.77)},
    0.04: {"cflow": (0.9376, 0.114), "cvae": (0.9511, 0.137), "cnn": (0.6394, 0.54)},
    0.05: {"cflow": (0.9536, 0.085), "cvae": (0.9596, 0.094), "cnn": (0.8180, 0.33)},
}
# Adult at eta = 1: accuracy and DP difference (the brief); "cnn" is the authors' MLP baseline.
PUBLISHED_ADULT = {"cflow": (0.781, 0.106), "cvae": (0.786, 0.049), "cnn": (0.751, 0.182)}

QUANTISATION_LEVELS = 32  # the nifr Coloured MNIST is 5-bit: bits/dim counts the 32 bins of each value


def settings(profile: str | None = None) -> dict:
    """Every size and schedule of both profiles, in one place (the command line and the chapter use it).

    full: the published protocol. quick: sizes chosen by measurement so the chapter runs in minutes on 2 CPU cores
    and still shows the effect (smaller networks, fewer steps, subsampled sets).
    """
    on_gpu = config.device().type == "cuda"  # bf16 autocast where it pays: on a GPU
    return config.by_profile(
        quick=dict(
            representative=6_000, train=6_000, test=3_000,  # images kept (None: all)
            # a much smaller flow and far fewer steps: on a CPU this shows the machinery, not the result
            cflow=dict(levels=3, blocks=2, width=16, bias_dims=6, iterations=150, batch_size=64, lr=1e-3,
                       w_adv=0.01, adversaries=1, adversary_width=64),
            # fully connected in place of the gated convolutions (5x cheaper on a CPU); with ~900 steps instead
            # of ~9,000 the published beta = 0.01, w_adv = 1 let the adversary lose: a stronger KL and adversary
            cvae=dict(architecture="mlp", channels=256, latent_channels=32, epochs=10, batch_size=64, lr=3e-3,
                      beta=0.1, w_adv=10.0, adversaries=1, adversary_width=64),
            downstream=dict(architecture="mlp", epochs=5, lr=1e-3, batch_size=64),
            variances=(0.02, 0.05), cflow_variances=(0.02,), seeds=(0,),
            adult=dict(etas=(0.0, 0.5, 1.0), flow_blocks=4, flow_width=64, iterations=300, epochs=5,
                       downstream_epochs=5),
        ),
        full=dict(
            representative=None, train=None, test=None,
            cflow=dict(levels=3, blocks=24, width=512, bias_dims=6, iterations=26_000, batch_size=256, lr=3e-4,
                       w_adv=0.01, adversaries=3, adversary_width=512, bf16=on_gpu),
            cvae=dict(levels=4, channels=32, latent_channels=64, epochs=50, batch_size=128, lr=1e-3, beta=0.01,
                      w_adv=1.0, adversaries=3, adversary_width=512, bf16=on_gpu),
            downstream=dict(architecture="conv", epochs=40, lr=1e-3, batch_size=256, width=32, bf16=on_gpu),
            # one seed keeps the chapter near 20 minutes on one H100 (the cFlow schedule alone is most of it)
            variances=(0.0, 0.01, 0.02, 0.03, 0.04, 0.05), cflow_variances=(0.02,), seeds=(0,),
            adult=dict(etas=(0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0), flow_blocks=8, flow_width=256, iterations=5_000,
                       epochs=50, downstream_epochs=40),
        ),
        name=profile,
    )


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------
class CFlow(nn.Module):
    """A flow with a partitioned latent z = [z_u, z_b] and the adversaries that keep s out of z_u.

    ``centre`` is subtracted before the flow (0.5 for images in [0, 1]: the base density is centred at 0).
    """

    def __init__(self, flow: nn.Module, adversary: AdversaryEnsemble, centre: float = 0.0):
        super().__init__()
        self.flow, self.adversary, self.centre = flow, adversary, centre

    @property
    def bias_dims(self) -> int:
        return self.flow.bias_dims

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (z (B, D), log |det df/dx| (B,))."""
        return self.flow(x - self.centre)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.flow.inverse(z) + self.centre


class CVAE(nn.Module):
    """A conditional VAE and the adversaries that keep s out of its latent."""

    def __init__(self, vae: ConditionalVAE, adversary: AdversaryEnsemble):
        super().__init__()
        self.vae, self.adversary = vae, adversary


def build_cflow(data: BiasedDataset, *, levels: int = 3, blocks: int = 24, width: int = 512, bias_dims: int = 6,
                adversaries: int = 3, adversary_width: int = 512, seed: int = 0, **_) -> CFlow:
    """The cFlow for a data set: the multi-scale image flow, or a coupling flow for feature vectors."""
    shape = tuple(data.x.shape[1:])
    if len(shape) == 3:
        flow = MultiScaleFlow(shape, levels=levels, blocks=blocks, width=width, bias_dims=bias_dims, seed=seed)
        centre = 0.5
    else:
        flow = VectorFlow(shape[0], blocks=blocks, width=width, bias_dims=bias_dims, seed=seed)
        centre = 0.0
    adversary = AdversaryEnsemble(flow.latent_dim, data.num_groups, members=adversaries, width=adversary_width,
                                  seed=seed)
    return CFlow(flow, adversary, centre)


def build_cvae(data: BiasedDataset, *, architecture: str = "conv", levels: int = 4, channels: int = 32,
               latent_channels: int = 64, adversaries: int = 3, adversary_width: int = 512, seed: int = 0,
               **_) -> CVAE:
    """The cVAE for a data set: the gated-conv cVAE for images (``architecture="conv"``), otherwise a fully
    connected one (``channels`` = the hidden width, ``latent_channels`` = the latent size)."""
    shape = tuple(data.x.shape[1:])
    if len(shape) == 3 and architecture == "conv":
        vae = gated_conv_cvae(shape, data.num_groups, levels=levels, channels=channels,
                              latent_channels=latent_channels)
        latent = latent_channels * (shape[1] // 2**levels) * (shape[2] // 2**levels)
    elif architecture in ("conv", "mlp"):
        output = "sigmoid" if len(shape) == 3 else "identity"
        vae = mlp_cvae(shape, data.num_groups, width=channels, latent_dim=latent_channels, output=output)
        latent = latent_channels
    else:
        raise ValueError(f"architecture must be 'conv' or 'mlp', got {architecture!r}.")
    adversary = AdversaryEnsemble(latent, data.num_groups, members=adversaries, width=adversary_width, seed=seed)
    return CVAE(vae, adversary)


class DownstreamCNN(nn.Module):
    """The downstream classifier for images (our choice; the brief says only "conv net"): two stages of two 3x3
    convolutions with max-pooling, a third 3x3 convolution, global average pooling, a linear layer."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * w, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------------------------------------------
# Objectives: the lines follow the equations of the module docstring
# ---------------------------------------------------------------------------------------------------------------
def cflow_loss(model: CFlow, batch: Batch, *, w_adv: float = 0.01) -> dict:
    z, logdet = model.encode(batch.x)  # (B, D), (B,)
    dims = z.shape[1]
    nll = -(standard_normal_log_prob(z) + logdet).mean() / dims  # nats per dimension
    z_u, z_b = partition_latent(z, model.bias_dims)
    seen = join_latent(grad_reverse(z_u), torch.zeros_like(z_b))  # the adversaries read [z_u, 0]
    adv = model.adversary.loss(seen, batch.s)
    return {
        "loss": nll + w_adv * adv,
        "nll": nll,
        "bits_per_dim": (nll + math.log(QUANTISATION_LEVELS)) / math.log(2),
        "adversary": adv,
        "adversary_accuracy": model.adversary.accuracy(seen.detach(), batch.s),
    }


def cvae_loss(model: CVAE, batch: Batch, *, beta: float = 0.01, w_adv: float = 1.0) -> dict:
    vae = model.vae
    mean, logvar = vae.encode(batch.x)
    z = reparameterise(mean, logvar)
    x_hat = vae.decode(z, vae.onehot(batch.s))
    rec = (x_hat.float() - batch.x).pow(2).flatten(1).sum(1).mean()  # summed L2
    kl = kl_to_standard_normal(mean.flatten(1).float(), logvar.flatten(1).float()).mean()
    adv = model.adversary.loss(grad_reverse(z.flatten(1)), batch.s)
    return {
        "loss": rec + beta * kl + w_adv * adv,
        "reconstruction": rec,
        "kl": kl,
        "adversary": adv,
        "adversary_accuracy": model.adversary.accuracy(z.detach().flatten(1), batch.s),
    }


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def _train_generative(model, representative, loss_fn, *, epochs, batch_size, lr, seed, device, bf16, compile,
                      channels_last, progress, desc):
    device = torch.device(device) if device is not None else config.device()
    model.to(device)
    if channels_last and representative.x.ndim == 4:
        model.to(memory_format=torch.channels_last)
        representative = replace(representative, x=representative.x.contiguous(memory_format=torch.channels_last))
    train_loss = torch.compile(loss_fn) if compile else loss_fn
    # RAdam has no fused kernel; foreach (multi-tensor) is its fast path on a GPU
    optimizer = torch.optim.RAdam(model.parameters(), lr=lr, foreach=device.type == "cuda" or None)
    inner = make_step(model, train_loss, optimizer, bf16=bf16)

    def step(batch: Batch) -> dict:
        logs = inner(batch)
        model.adversary.maybe_reset()  # a Python coin flip per adversary: no device sync
        return logs

    history = fit(model, representative, step, epochs=epochs, batch_size=batch_size, device=device,
                  progress=progress, desc=desc)
    history.attrs["adversary_resets"] = model.adversary.resets
    model.eval()
    return history


def fit_cflow(
    representative: BiasedDataset, *, levels: int = 3, blocks: int = 24, width: int = 512, bias_dims: int = 6,
    iterations: int = 26_000, batch_size: int = 256, lr: float = 3e-4, w_adv: float = 0.01, adversaries: int = 3,
    adversary_width: int = 512, seed: int = 0, device=None, bf16: bool = False, compile: bool = False,
    channels_last: bool | None = None, progress: bool | None = None,
) -> tuple[CFlow, pd.DataFrame]:
    """Train the cFlow on the representative set (x and s only); returns ``(model, history)``, model in eval mode.

    ``iterations`` is rounded up to whole epochs of the shared loop (the published schedule: about 26,000 steps
    of 256). ``bf16`` autocasts the coupling networks (the flow's stream and log-determinant stay float32),
    ``channels_last`` (default: on CUDA) stores activations NHWC for the tensor cores, ``compile`` wraps the loss
    in ``torch.compile``.
    """
    config.seed_everything(seed)
    model = build_cflow(representative, levels=levels, blocks=blocks, width=width, bias_dims=bias_dims,
                        adversaries=adversaries, adversary_width=adversary_width, seed=seed)
    epochs = max(1, math.ceil(iterations / representative.num_batches(batch_size, drop_last=True)))
    device = torch.device(device) if device is not None else config.device()
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    history = _train_generative(
        model, _without_labels(representative), lambda m, b: cflow_loss(m, b, w_adv=w_adv), epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, device=device, bf16=bf16, compile=compile,
        channels_last=channels_last, progress=progress, desc="cflow",
    )
    return model, history


def fit_cvae(
    representative: BiasedDataset, *, architecture: str = "conv", levels: int = 4, channels: int = 32,
    latent_channels: int = 64, epochs: int = 50, batch_size: int = 128, lr: float = 1e-3, beta: float = 0.01,
    w_adv: float = 1.0, adversaries: int = 3, adversary_width: int = 512, seed: int = 0, device=None,
    bf16: bool = False, compile: bool = False, channels_last: bool | None = None, progress: bool | None = None,
) -> tuple[CVAE, pd.DataFrame]:
    """Train the cVAE on the representative set (x and s only); returns ``(model, history)``, model in eval mode."""
    config.seed_everything(seed)
    model = build_cvae(representative, architecture=architecture, levels=levels, channels=channels,
                       latent_channels=latent_channels, adversaries=adversaries, adversary_width=adversary_width,
                       seed=seed)
    device = torch.device(device) if device is not None else config.device()
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    history = _train_generative(
        model, _without_labels(representative), lambda m, b: cvae_loss(m, b, beta=beta, w_adv=w_adv),
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, bf16=bf16, compile=compile,
        channels_last=channels_last, progress=progress, desc="cvae",
    )
    return model, history


def _without_labels(data: BiasedDataset) -> BiasedDataset:
    """The representative set as the generative model sees it: y replaced by zeros, so it cannot be read."""
    return replace(data, y=torch.zeros_like(data.y), num_classes=max(data.num_classes, 1))


# ---------------------------------------------------------------------------------------------------------------
# Null-samples and bias samples
# ---------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def null_sample(model: CFlow | CVAE, x: torch.Tensor) -> torch.Tensor:
    """x with s removed: cFlow f^-1([z_u, 0]); cVAE g(mu(x), 0). Same shape as x."""
    if isinstance(model, CFlow):
        z_u, z_b = partition_latent(model.encode(x)[0], model.bias_dims)
        return model.decode(join_latent(z_u, torch.zeros_like(z_b)))
    mean, _ = model.vae.encode(x)
    return model.vae.decode(mean, torch.zeros(len(x), model.vae.num_groups, device=x.device))


@torch.no_grad()
def bias_sample(model: CFlow | CVAE, x: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
    """What the model keeps of s: cFlow f^-1([0, z_b]); cVAE g(0, onehot(s)) (needs ``s``)."""
    if isinstance(model, CFlow):
        z_u, z_b = partition_latent(model.encode(x)[0], model.bias_dims)
        return model.decode(join_latent(torch.zeros_like(z_u), z_b))
    if s is None:
        raise ValueError("the cVAE's bias sample decodes the prior mean with s: pass s.")
    mean, _ = model.vae.encode(x)
    return model.vae.decode(torch.zeros_like(mean), model.vae.onehot(s))


@torch.no_grad()
def reconstruct(model: CFlow | CVAE, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """cFlow: f^-1(f(x)) (= x up to rounding, the flow is invertible); cVAE: g(mu(x), onehot(s))."""
    if isinstance(model, CFlow):
        return model.decode(model.encode(x)[0])
    return model.vae.decode(model.vae.encode(x)[0], model.vae.onehot(s))


@torch.no_grad()
def null_sample_dataset(model: CFlow | CVAE, data: BiasedDataset, batch_size: int = 500) -> BiasedDataset:
    """The data set with every x replaced by its null-sample (on the data's device)."""
    was_training = model.training
    model.eval()
    device = model_device(model, data.device)
    parts = [null_sample(model, batch.x.to(device)).float().to(data.device) for batch in data.batches(batch_size)]
    model.train(was_training)
    x = torch.cat(parts)
    if x.ndim == 4:
        x = x.clamp(0, 1)  # an image: the flow's inverse may step a little outside [0, 1]
    return replace(data, x=x, name=f"{data.name} (null-sampled)")


# ---------------------------------------------------------------------------------------------------------------
# Evaluation with a fresh downstream classifier
# ---------------------------------------------------------------------------------------------------------------
def fit_downstream(train: BiasedDataset, *, architecture: str = "conv", epochs: int = 40, lr: float = 1e-3,
                   batch_size: int = 256, width: int = 32, seed: int = 0, device=None, bf16: bool = False,
                   progress: bool | None = None) -> nn.Module:
    """A fresh classifier of y, Adam, fixed epochs (no validation set: the protocol has none).

    Images: ``DownstreamCNN`` (``architecture="conv"``) or an MLP with two hidden layers of 128 (``"mlp"``, the
    quick profile's CPU-sized stand-in); feature vectors: an MLP with one hidden layer of 64.
    """
    config.seed_everything(seed)
    if train.x.ndim == 4 and architecture == "conv":
        model = DownstreamCNN(train.x.shape[1], train.num_classes, width)
    else:
        hidden = (128, 128) if train.x.ndim == 4 else (64,)
        model = MLP(train.x[0].numel(), hidden, train.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def cross_entropy(model, batch):
        logits = model(batch.x)
        return {"loss": F.cross_entropy(logits, batch.y), "accuracy": (logits.argmax(1) == batch.y).float().mean()}

    fit(model, train, make_step(model, cross_entropy, optimizer, bf16=bf16), epochs=epochs,
        batch_size=min(batch_size, len(train)), device=device, progress=progress, desc="downstream")
    return model.eval()


def evaluate(model: CFlow | CVAE | None, train: BiasedDataset, test: BiasedDataset, *, seed: int = 0,
             progress: bool | None = None, **downstream) -> dict:
    """The published evaluation: null-sample the biased training set and the test set (``model=None``: the raw
    data, the baseline), train a fresh downstream classifier on the former, test on the latter.

    Returns ``metrics.summary`` (accuracy, dp, hgr, ...) plus TPR/TNR differences, per-group accuracy
    (``accuracy_s=<g>``) and ``predictions`` (the test predictions, a tensor).
    """
    if model is not None:
        train, test = null_sample_dataset(model, train), null_sample_dataset(model, test)
    classifier = fit_downstream(train, seed=seed, progress=progress, **downstream)
    predictions = predict(classifier, test)
    result = metrics.summary(test.y, predictions, sensitive_features=test.group, aligned=test.aligned)
    result["tpr_difference"] = metrics.true_positive_rate_difference(test.y, predictions,
                                                                     sensitive_features=test.group)
    result["tnr_difference"] = metrics.true_negative_rate_difference(test.y, predictions,
                                                                     sensitive_features=test.group)
    by_group = metrics.group_accuracies(test.y, predictions, groups=test.group)
    result.update({f"accuracy_s={g}": float(a) for g, a in by_group.items()})
    result["predictions"] = predictions
    return result


# ---------------------------------------------------------------------------------------------------------------
# Experiments: the chapter's sweeps
# ---------------------------------------------------------------------------------------------------------------
def cmnist_splits(colour_variance: float, seed: int = 0, profile: str | None = None) -> dict:
    """The three nifr Coloured MNIST splits at one colour variance, subsampled as the profile says."""
    cfg = settings(profile)
    return {
        split: coloured_mnist("nifr", split, colour_variance=colour_variance, seed=seed, subsample=cfg[key])
        for split, key in (("representative", "representative"), ("train", "train"), ("test", "test"))
    }


def run_cmnist(method: str, colour_variance: float, seed: int = 0, *, profile: str | None = None,
               splits: dict | None = None, device=None, progress: bool | None = None, **overrides):
    """One run on Coloured MNIST: ``method`` in {"cflow", "cvae", "cnn"} (cnn: the raw-data baseline).

    Returns ``(result dict, model or None, history or None)``; ``overrides`` replace the profile's settings of the
    generative model (e.g. ``iterations=1000``).
    """
    cfg = settings(profile)
    splits = splits or cmnist_splits(colour_variance, seed, profile)
    model = history = None
    if method in ("cflow", "cvae"):
        fit_fn = fit_cflow if method == "cflow" else fit_cvae
        model, history = fit_fn(splits["representative"], seed=seed, device=device, progress=progress,
                                **{**cfg[method], **overrides})
    elif method != "cnn":
        raise ValueError(f"method must be 'cflow', 'cvae' or 'cnn', got {method!r}.")
    result = evaluate(model, splits["train"], splits["test"], seed=seed, device=device, progress=progress,
                      **cfg["downstream"])
    result.update(method=method, colour_variance=colour_variance, seed=seed)
    return result, model, history


def sweep_cmnist(profile: str | None = None, device=None, progress: bool | None = None,
                 splits: dict | None = None):
    """cVAE and the raw-data CNN at every colour variance of the profile, cFlow at ``cflow_variances``; every seed.

    ``splits``: splits already built with ``cmnist_splits``, keyed by ``(colour_variance, seed)``; they are used
    instead of building them again (building the three splits takes a while on a CPU).

    Returns ``(runs, models)``: one row per run (method, colour_variance, seed, accuracy, hgr, dp, ...), and the
    trained generative models of the first seed, keyed by (method, colour_variance), for the figures.
    """
    cfg = settings(profile)
    rows, models = [], {}
    known = splits or {}
    for seed in cfg["seeds"]:
        for variance in cfg["variances"]:
            variance_splits = known.get((variance, seed)) or cmnist_splits(variance, seed, profile)
            methods = ["cnn", "cvae"] + (["cflow"] if variance in cfg["cflow_variances"] else [])
            for method in methods:
                result, model, _ = run_cmnist(method, variance, seed, profile=profile, splits=variance_splits,
                                              device=device, progress=progress)
                result.pop("predictions")
                rows.append(result)
                if model is not None and seed == cfg["seeds"][0]:
                    models[method, variance] = model
    return pd.DataFrame(rows), models


def signature_grid(model: CFlow | CVAE, data: BiasedDataset, n: int = 10) -> tuple[torch.Tensor, list[str]]:
    """The chapter's signature figure for the first ``n`` images: rows original | reconstruction | null-sample |
    bias sample, as one (4n, C, H, W) tensor on the CPU (clamped to [0, 1]) and the row labels."""
    device = model_device(model)
    x, s = data.x[:n].to(device), data.s[:n].to(device)
    rows = [x, reconstruct(model, x, s), null_sample(model, x), bias_sample(model, x, s)]
    labels = ["original", "reconstruction", "null-sample", "bias sample"]
    return torch.cat(rows).float().clamp(0, 1).cpu(), labels


def published_cmnist() -> pd.DataFrame:
    """The authors' table as rows (method, colour_variance, accuracy, hgr)."""
    return pd.DataFrame([
        {"method": method, "colour_variance": variance, "accuracy": acc, "hgr": hgr}
        for variance, row in PUBLISHED_CMNIST.items() for method, (acc, hgr) in row.items()
    ])


def sweep_adult(profile: str | None = None, seed: int = 0, device=None, progress: bool | None = None) -> pd.DataFrame:
    """cFlow (a coupling flow on the feature vector), cVAE (MLP) and the raw-data MLP on Adult at every eta.

    One representation per method, trained once on the representative set, serves every eta. One row per
    (method, eta): accuracy, dp, ...
    """
    cfg = settings(profile)
    a = cfg["adult"]
    representative = adult("representative", protocol="nifr", seed=seed)
    test = adult("test", protocol="nifr", seed=seed)
    models = {"cnn": None}
    models["cflow"], _ = fit_cflow(
        representative, blocks=a["flow_blocks"], width=a["flow_width"], bias_dims=2, iterations=a["iterations"],
        batch_size=256, lr=1e-3, adversaries=3, adversary_width=64, seed=seed, device=device, progress=progress)
    models["cvae"], _ = fit_cvae(
        representative, channels=64, latent_channels=16, epochs=a["epochs"], batch_size=128, lr=1e-3, beta=0.01,
        adversaries=3, adversary_width=64, seed=seed, device=device, progress=progress)
    rows = []
    for eta in a["etas"]:
        train = adult("train", protocol="nifr", eta=eta, seed=seed)
        for method, model in models.items():
            result = evaluate(model, train, test, seed=seed, device=device, progress=progress,
                              epochs=a["downstream_epochs"], batch_size=256)
            result.pop("predictions")
            rows.append({**result, "method": method, "eta": eta})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
def add_cli_arguments(parser) -> None:
    parser.add_argument("--iterations", type=int, default=None, help="cflow: training steps (default: profile's)")
    parser.add_argument("--downstream-epochs", type=int, default=None, help="default: the profile's")
    parser.add_argument("--bias-dims", type=int, default=None, help="cflow: size of z_b")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the loss")


def cli_run(args, train: BiasedDataset, test: BiasedDataset):
    """``--epochs`` sets the cVAE's epochs; ``--iterations`` the cFlow's steps."""
    if args.dataset not in ("cmnist-nifr", "adult") or (args.dataset == "adult" and args.eta is None):
        raise SystemExit(f"{args.method} needs a representative set: use --dataset cmnist-nifr, or --dataset adult "
                         "--eta E (the null-sampling protocol).")
    cfg = settings(args.profile)
    if args.dataset == "adult":
        representative = adult("representative", protocol="nifr", seed=args.seed)
        a = cfg["adult"]
        options = (dict(blocks=a["flow_blocks"], width=a["flow_width"], bias_dims=2, iterations=a["iterations"],
                        lr=1e-3, adversary_width=64) if args.method == "cflow"
                   else dict(channels=64, latent_channels=16, epochs=a["epochs"], adversary_width=64))
        downstream = dict(epochs=a["downstream_epochs"])
    else:
        representative = coloured_mnist("nifr", "representative", colour_variance=args.colour_variance,
                                        seed=args.seed, subsample=cfg["representative"])
        options = dict(cfg[args.method])
        downstream = dict(cfg["downstream"])
    if args.method == "cflow":
        options.update({k: v for k, v in (("iterations", args.iterations), ("bias_dims", args.bias_dims))
                        if v is not None})
        options["bf16"] = options.get("bf16", False) or args.bf16
        model, history = fit_cflow(representative, seed=args.seed, compile=args.compile, **options)
        extras = {"nll": float(history["nll"].iloc[-1])}
        if args.dataset != "adult":
            extras["bits_per_dim"] = float(history["bits_per_dim"].iloc[-1])
    else:
        if args.epochs:
            options["epochs"] = args.epochs
        options["bf16"] = options.get("bf16", False) or args.bf16
        model, history = fit_cvae(representative, seed=args.seed, compile=args.compile, **options)
        extras = {"reconstruction": float(history["reconstruction"].iloc[-1])}
    if args.downstream_epochs:
        downstream["epochs"] = args.downstream_epochs
    downstream["bf16"] = downstream.get("bf16", False) or args.bf16
    result = evaluate(model, train, test, seed=args.seed, **downstream)
    extras.update(adversary_accuracy=float(history["adversary_accuracy"].iloc[-1]),
                  tpr_difference=result["tpr_difference"], tnr_difference=result["tnr_difference"])
    return result["predictions"], extras
