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
The chapter's settings per profile are ``fairlab.protocols.protocol("null_sampling")``; its sweeps are in
``fairlab.experiments.null_sampling``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fairlab import config, metrics
from fairlab.data.base import Batch, BiasedDataset
from fairlab.methods.base import Method, hparam, resolve
from fairlab.models import MLP
from fairlab.models.adversary import AdversaryEnsemble, grad_reverse
from fairlab.models.conv import DownstreamCNN
from fairlab.models.cvae import ConditionalVAE, gated_conv_cvae, mlp_cvae
from fairlab.models.flow import (
    MultiScaleFlow, VectorFlow, compile_layers, join_latent, partition_latent, standard_normal_log_prob,
)
from fairlab.models.vae import kl_to_standard_normal, reparameterise
from fairlab.train import autocast, capture_step, fit, make_step, model_device, predict

QUANTISATION_LEVELS = 32  # the nifr Coloured MNIST is 5-bit: bits/dim counts the 32 bins of each value


@dataclass
class DownstreamHParams:
    """The fresh classifier trained on null-samples (the same one on the raw data for the baseline)."""

    downstream_architecture: str = hparam("conv", "images: conv (DownstreamCNN) or mlp (two hidden layers of 128)",
                                          choices=("conv", "mlp"))
    downstream_epochs: int = hparam(40, "the downstream classifier's epochs", positive=True)
    downstream_lr: float = hparam(1e-3, "the downstream classifier's learning rate")
    downstream_batch_size: int = hparam(256, "the downstream classifier's batch size", positive=True)
    downstream_width: int = hparam(32, "the DownstreamCNN's base width", positive=True)


@dataclass
class GenerativeHParams(DownstreamHParams):
    """What the cFlow and the cVAE share: the adversaries that keep s out of the latent, and the speed options."""

    adversaries: int = hparam(3, "adversaries reading the latent", positive=True)
    adversary_width: int = hparam(512, "the adversaries' hidden width", positive=True)
    adversary_lr: float | None = hparam(None, "the adversaries' learning rate (default: lr; ours)")
    bf16: bool = hparam(False, "bf16 autocast (GPU)")
    compile: bool = hparam(False, "torch.compile (the cFlow: each flow layer; the cVAE: the loss)")
    cuda_graph: bool = hparam(False, "capture the whole training step as one CUDA graph (GPU)")
    channels_last: bool | None = hparam(None, "NHWC activations (default: on CUDA)")
    max_seconds: float | None = hparam(None, "stop after the epoch in which this many seconds of training have "
                                             "passed (default: the whole schedule)")


@dataclass
class CFlowHParams(GenerativeHParams):
    """The published cFlow on Coloured MNIST (Kehrenberg et al. 2020): 3 levels of 24 Glow blocks of width 512,
    |z_b| = 6, about 26,000 RAdam steps of 256 at 3e-4, adversary weight 0.01, three adversaries of width 512."""

    levels: int = hparam(3, "images: multi-scale levels", positive=True)
    blocks: int = hparam(24, "coupling blocks (per level for images)", positive=True)
    width: int = hparam(512, "width of the coupling networks", positive=True)
    bias_dims: int = hparam(6, "size of z_b", positive=True)
    iterations: int = hparam(26_000, "training steps (rounded up to whole epochs)", positive=True)
    batch_size: int = hparam(256, "batch size", positive=True)
    lr: float = hparam(3e-4, "RAdam's learning rate")
    w_adv: float = hparam(0.01, "weight of the adversaries' loss (they read [z_u, 0])")


@dataclass
class CVAEHParams(GenerativeHParams):
    """The published cVAE on Coloured MNIST: gated convolutions, 4 levels of 32 channels, a latent of 64 channels,
    50 epochs of 128 at 1e-3, beta = 0.01, adversary weight 1, three adversaries of width 512."""

    architecture: str = hparam("conv", "images: gated convolutions (conv) or fully connected (mlp)",
                               choices=("conv", "mlp"))
    levels: int = hparam(4, "conv: levels of the gated-conv encoder", positive=True)
    channels: int = hparam(32, "conv: channels; mlp: the hidden width", positive=True)
    latent_channels: int = hparam(64, "conv: latent channels; mlp: the latent size", positive=True)
    epochs: int = hparam(50, "training epochs", positive=True)
    batch_size: int = hparam(128, "batch size", positive=True)
    lr: float = hparam(1e-3, "RAdam's learning rate")
    beta: float = hparam(0.01, "weight of the KL term")
    w_adv: float = hparam(1.0, "weight of the adversaries' loss (they read z)")


def downstream_options(hp=None) -> dict:
    """``fit_downstream``'s options from a method's hyperparameters (default: the published ones)."""
    hp = hp or DownstreamHParams()
    return {f.name.removeprefix("downstream_"): getattr(hp, f.name) for f in fields(DownstreamHParams)}


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


IMAGE_OUTPUTS = {(0.0, 1.0): "sigmoid", (-1.0, 1.0): "tanh"}  # the decoder's last nonlinearity, by the image range


def value_range(data: BiasedDataset) -> tuple[float, float]:
    """The range of an image data set's values: (0, 1), or what its ``info["value_range"]`` says (CelebA: (-1, 1))."""
    low, high = data.info.get("value_range", (0.0, 1.0))
    return float(low), float(high)


def build_cflow(data: BiasedDataset, hp: CFlowHParams | None = None, *, seed: int = 0, **overrides) -> CFlow:
    """The cFlow for a data set: the multi-scale image flow, or a coupling flow for feature vectors."""
    hp = resolve(CFlowHParams, hp, overrides)
    levels, blocks, width, bias_dims = hp.levels, hp.blocks, hp.width, hp.bias_dims
    adversaries, adversary_width = hp.adversaries, hp.adversary_width
    shape = tuple(data.x.shape[1:])
    if len(shape) == 3:
        flow = MultiScaleFlow(shape, levels=levels, blocks=blocks, width=width, bias_dims=bias_dims, seed=seed)
        centre = sum(value_range(data)) / 2  # 0.5 for images in [0, 1], 0 for CelebA's [-1, 1]
    else:
        flow = VectorFlow(shape[0], blocks=blocks, width=width, bias_dims=bias_dims, seed=seed)
        centre = 0.0
    adversary = AdversaryEnsemble(flow.latent_dim, data.num_groups, members=adversaries, width=adversary_width,
                                  seed=seed)
    return CFlow(flow, adversary, centre)


def build_cvae(data: BiasedDataset, hp: CVAEHParams | None = None, *, seed: int = 0, **overrides) -> CVAE:
    """The cVAE for a data set: the gated-conv cVAE for images (``architecture="conv"``), otherwise a fully
    connected one (``channels`` = the hidden width, ``latent_channels`` = the latent size)."""
    hp = resolve(CVAEHParams, hp, overrides)
    architecture, levels, channels, latent_channels = hp.architecture, hp.levels, hp.channels, hp.latent_channels
    adversaries, adversary_width = hp.adversaries, hp.adversary_width
    shape = tuple(data.x.shape[1:])
    output = IMAGE_OUTPUTS.get(value_range(data)) if len(shape) == 3 else "identity"
    if output is None:
        raise ValueError(f"the cVAE's decoder reconstructs images in [0, 1] or [-1, 1]; {data.name} says its values "
                         f"lie in {value_range(data)}: rescale them, or set info['value_range'].")
    if len(shape) == 3 and architecture == "conv":
        vae = gated_conv_cvae(shape, data.num_groups, levels=levels, channels=channels,
                              latent_channels=latent_channels, output=output)
        latent = latent_channels * (shape[1] // 2**levels) * (shape[2] // 2**levels)
    elif architecture in ("conv", "mlp"):
        vae = mlp_cvae(shape, data.num_groups, width=channels, latent_dim=latent_channels, output=output)
        latent = latent_channels
    else:
        raise ValueError(f"architecture must be 'conv' or 'mlp', got {architecture!r}.")
    adversary = AdversaryEnsemble(latent, data.num_groups, members=adversaries, width=adversary_width, seed=seed)
    return CVAE(vae, adversary)


# ---------------------------------------------------------------------------------------------------------------
# Objectives: the lines follow the equations of the module docstring
# ---------------------------------------------------------------------------------------------------------------
def cflow_loss(model: CFlow, batch: Batch, *, w_adv: float) -> dict:
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
        "adversary_accuracy": model.adversary.accuracy(z.detach().flatten(1), batch.s),
    }


def cvae_loss(model: CVAE, batch: Batch, *, beta: float, w_adv: float) -> dict:
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
                      channels_last, progress, desc, adversary_lr=None, max_seconds=None, cuda_graph=False):
    device = torch.device(device) if device is not None else config.device()
    model.to(device)
    if channels_last and representative.x.ndim == 4:
        model.to(memory_format=torch.channels_last)
        representative = replace(representative, x=representative.x.contiguous(memory_format=torch.channels_last))
    train_loss = torch.compile(loss_fn) if compile else loss_fn
    # RAdam has no fused kernel; foreach (multi-tensor) is its fast path on a GPU
    adversary = list(model.adversary.parameters())  # their own learning rate (adversary_lr), if one is given
    adversary_ids = {id(p) for p in adversary}
    others = [p for p in model.parameters() if id(p) not in adversary_ids]
    groups = [{"params": others}, {"params": adversary, "lr": adversary_lr or lr}]
    # a captured step keeps RAdam's step counts on the device (capturable), so the graph can advance them
    optimizer = torch.optim.RAdam(groups, lr=lr, foreach=device.type == "cuda" or None,
                                  **({"capturable": True} if cuda_graph else {}))
    inner = make_step(model, train_loss, optimizer, bf16=bf16, capturable=cuda_graph)
    if cuda_graph:
        representative = representative.to(device)
        inner = capture_step(inner, next(representative.batches(batch_size, drop_last=True)), model, optimizer)

    def step(batch: Batch) -> dict:
        logs = inner(batch)
        model.adversary.maybe_reset()  # a Python coin flip per adversary: no device sync
        return logs

    history = fit(model, representative, step, epochs=epochs, batch_size=batch_size, device=device,
                  progress=progress, desc=desc, max_seconds=max_seconds)
    history.attrs["adversary_resets"] = model.adversary.resets
    model.eval()
    return history


def fit_cflow(representative: BiasedDataset, hp: CFlowHParams | None = None, *, seed: int = 0, device=None,
              progress: bool | None = None, **overrides) -> tuple[CFlow, pd.DataFrame]:
    """Train the cFlow on the representative set (x and s only); returns ``(model, history)``, model in eval mode.

    ``iterations`` is rounded up to whole epochs of the shared loop (the published schedule: about 26,000 steps
    of 256). ``bf16`` autocasts the coupling networks (the flow's stream and log-determinant stay float32),
    ``channels_last`` (default: on CUDA) stores activations NHWC for the tensor cores, ``compile`` compiles each
    flow layer while it trains (``compile_layers``: the blocks share their code), ``cuda_graph`` captures the whole
    step (forward, backward, RAdam) once and replays it (``fairlab.train.capture_step``): the eager step launches
    thousands of small kernels.
    """
    hp = resolve(CFlowHParams, hp, overrides)
    config.seed_everything(seed)
    model = build_cflow(representative, hp, seed=seed)
    epochs = max(1, math.ceil(hp.iterations / representative.num_batches(hp.batch_size, drop_last=True)))
    device = torch.device(device) if device is not None else config.device()
    channels_last = device.type == "cuda" if hp.channels_last is None else hp.channels_last
    if hp.compile:
        compile_layers(model.flow)
    try:
        history = _train_generative(
            model, _without_labels(representative), lambda m, b: cflow_loss(m, b, w_adv=hp.w_adv), epochs=epochs,
            batch_size=hp.batch_size, lr=hp.lr, seed=seed, device=device, bf16=hp.bf16, compile=False,
            channels_last=channels_last, progress=progress, desc="cflow", adversary_lr=hp.adversary_lr,
            max_seconds=hp.max_seconds, cuda_graph=hp.cuda_graph,
        )
    finally:
        compile_layers(model.flow, enabled=False)  # evaluation runs eagerly
    return model, history


def fit_cvae(representative: BiasedDataset, hp: CVAEHParams | None = None, *, seed: int = 0, device=None,
             progress: bool | None = None, **overrides) -> tuple[CVAE, pd.DataFrame]:
    """Train the cVAE on the representative set (x and s only); returns ``(model, history)``, model in eval mode."""
    hp = resolve(CVAEHParams, hp, overrides)
    config.seed_everything(seed)
    model = build_cvae(representative, hp, seed=seed)
    device = torch.device(device) if device is not None else config.device()
    channels_last = device.type == "cuda" if hp.channels_last is None else hp.channels_last
    history = _train_generative(
        model, _without_labels(representative), lambda m, b: cvae_loss(m, b, beta=hp.beta, w_adv=hp.w_adv),
        epochs=hp.epochs, batch_size=hp.batch_size, lr=hp.lr, seed=seed, device=device, bf16=hp.bf16,
        compile=hp.compile, channels_last=channels_last, progress=progress, desc="cvae", adversary_lr=hp.adversary_lr,
        max_seconds=hp.max_seconds, cuda_graph=hp.cuda_graph,
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
        x = x.clamp(*value_range(data))  # an image: the flow's inverse may step a little outside the range
    return replace(data, x=x, name=f"{data.name} (null-sampled)")


# ---------------------------------------------------------------------------------------------------------------
# Evaluation with a fresh downstream classifier
# ---------------------------------------------------------------------------------------------------------------
def fit_downstream(train: BiasedDataset, *, architecture: str, epochs: int, lr: float, batch_size: int, width: int,
                   seed: int = 0, device=None, bf16: bool = False, progress: bool | None = None) -> nn.Module:
    """A fresh classifier of y, Adam, fixed epochs (no validation set: the protocol has none). The options are
    ``downstream_options(hp)``'s.

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


class NullSamplingModel(nn.Module):
    """The trained pipeline: the generative model that null-samples, and the classifier trained on null-samples."""

    def __init__(self, generative: CFlow | CVAE, classifier: nn.Module):
        super().__init__()
        self.generative, self.classifier = generative, classifier


def _fit(fit_generative, hparams_type):
    def fit_null_sampling(train: BiasedDataset, hp=None, *, representative: BiasedDataset | None = None,
                          val: BiasedDataset | None = None, seed: int = 0, device=None, progress: bool | None = None,
                          **overrides):
        """Null-sampling end to end: the generative model on ``representative`` (x and s; s independent of y),
        then a fresh downstream classifier on the null-samples of ``train`` (``val`` is not used: the protocol
        selects nothing). Returns ``(NullSamplingModel, the generative model's history)``."""
        hp = resolve(hparams_type, hp, overrides)
        if representative is None:
            raise ValueError("null-sampling trains its generative model on a representative set (x and s, with s "
                             "independent of y): pass representative=<that BiasedDataset>.")
        generative, history = fit_generative(representative, hp, seed=seed, device=device, progress=progress)
        classifier = fit_downstream(null_sample_dataset(generative, train), seed=seed, device=device, bf16=hp.bf16,
                                    progress=progress, **downstream_options(hp))
        return NullSamplingModel(generative, classifier), history

    return fit_null_sampling


fit_cflow_pipeline = _fit(fit_cflow, CFlowHParams)
fit_cvae_pipeline = _fit(fit_cvae, CVAEHParams)


def predict_null_sampled(model: NullSamplingModel, data: BiasedDataset) -> torch.Tensor:
    """The downstream classifier's predictions on the null-samples of ``data``: (N,) on the data's device."""
    return predict(model.classifier, null_sample_dataset(model.generative, data))


def representation(model: NullSamplingModel, data: BiasedDataset) -> torch.Tensor:
    """The null-samples of ``data`` (same shape as x): what an auditor sees, and what the classifier reads."""
    return null_sample_dataset(model.generative, data).x


def _summary(model, history, *, train, test, hp, predictions, **_) -> dict:
    extras = {}
    if isinstance(model.generative, CFlow):
        extras["nll"] = float(history["nll"].iloc[-1])
        if train.x.ndim == 4:
            extras["bits_per_dim"] = float(history["bits_per_dim"].iloc[-1])
    else:
        extras["reconstruction"] = float(history["reconstruction"].iloc[-1])
    extras["adversary_accuracy"] = float(history["adversary_accuracy"].iloc[-1])
    extras["tpr_difference"] = metrics.true_positive_rate_difference(test.y, predictions,
                                                                     sensitive_features=test.group)
    extras["tnr_difference"] = metrics.true_negative_rate_difference(test.y, predictions,
                                                                     sensitive_features=test.group)
    return extras


_COMMON = dict(predict=predict_null_sampled, representation=representation, needs=("y", "s_representative"),
               datasets=("cmnist-nifr", "adult", "celeba"), summary=_summary)
CFLOW = Method(name="cflow", hparams=CFlowHParams, fit=fit_cflow_pipeline, **_COMMON,
               description="Null-sampling with a flow (cFlow): remove s in the data domain.")
CVAE_METHOD = Method(name="cvae", hparams=CVAEHParams, fit=fit_cvae_pipeline, **_COMMON,
                     description="Null-sampling with a conditional VAE: remove s in the data domain.")
