"""A fair latent space on a frozen generative model (FLS, Joo et al.,
AAAI 2025): train only a small invertible module on the latent space of
a pretrained generator, decide from the label part, explain by moving
either part and decoding.

No code was released and the paper's method section was not available
to us: what follows is the course's reconstruction. Verified from the
paper: a module on a *frozen* pretrained generator; an invertible
network that separates label from sensitive information and gives the
latent a diagonal, evenly scaled covariance; batches hold (x, y, s);
counterfactuals by moving each part. Everything else (sizes, the exact
losses and their weights, the frozen generator being a VAE we train
ourselves) is ours.

    z = E(x)                       frozen VAE encoder (mean), cached
    w = f(z) = [w_Y, w_S, w_R]     affine couplings, fixed permutations

Losses per batch (``fls_loss``), each a function below:

    nll   = -(log N(w; 0, I) + log|det df/dz|) / D          flow_nll
    heads = CE(h_Y(w_Y), y) + CE(h_S(w_S), s)               head_losses
    indep = CE(a_Y([GRL(w_Y), y]), s) + CE(a_R(GRL(w_R)), (y, s))
                                                   independence_loss
    redis = mean over cells (y, s) of
            |mean(w_Y | y, s) - m_Y(y)|^2 + |mean(w_S | y, s) - m_S(s)|^2
                                                 redistribution_loss
    loss  = nll + heads + indep + redistribution_weight * redis

GRL is a gradient reversal: the adversaries a_Y and a_R learn to read s
(given y) from w_Y and (y, s) from w_R; the flow learns to stop them.
m_Y(y) = +-(d/2) u and m_S(s) = +-(d/2) u (u the unit diagonal): the
class means of w_Y, and the group means of w_S, placed symmetrically,
the same in every cell, so no group sits closer to a decision.

The fair decision reads w_Y only. ``flip_sensitive`` moves w_S from its
group's mean to the other group's; ``move_label`` does the same to w_Y;
``f^-1`` and the frozen decoder turn either into an image or a record.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fairlab import config, metrics
from fairlab.data.base import BiasedDataset
from fairlab.models.adversary import AdversaryEnsemble, grad_reverse
from fairlab.models.flow import VectorFlow, standard_normal_log_prob
from fairlab.models.generator import ConvVAE, TabularVAE
from fairlab.models.mlp import MLP
from fairlab.train import (
    fit, load_checkpoint, make_step, model_device, predict,
    save_checkpoint,
)

DATASETS = ("cmnist-binary", "adult", "celeba")


# -------------------------------------------------------------------
# Settings: the one place both profiles are chosen (CLI and notebook)
# -------------------------------------------------------------------
def chapter_settings(dataset: str, profile: str | None = None) -> dict:
    """Every size, epoch count and weight of the chapter for
    ``dataset``, in the active profile (``profile`` overrides it).

    Keys: ``data`` (split sizes, the training correlation),
    ``generator``, ``module``, ``classifier`` (the x / z / w_Y
    comparison) and ``judge`` (the independent attribute classifiers).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, "
                         f"got {dataset!r}.")

    def pick(quick, full):
        return config.by_profile(quick=quick, full=full, name=profile)

    classifier = {"hidden": [64], "epochs": pick(6, 20), "lr": 1e-3,
                  "batch_size": 256}
    judge = {"hidden": [128], "epochs": pick(3, 10), "lr": 1e-3,
             "batch_size": 256}
    module = {"label_dims": 2, "sensitive_dims": 2,
              "blocks": pick(4, 8), "width": 128, "depth": 2,
              "adversary_width": 64, "adversaries": 2,
              "mean_distance": 4.0, "independence_weight": 1.0,
              "redistribution_weight": 1.0,
              "epochs": pick(12, 40), "batch_size": pick(256, 2048),
              "lr": 3e-3}
    if dataset == "cmnist-binary":
        return {
            "data": {"correlation": 0.9,
                     "train_size": pick(8_000, None),
                     "test_size": pick(4_000, None)},
            "generator": {"latent_dim": 16, "channels": [16, 32],
                          "hidden": 128, "beta": 1.0,
                          "epochs": pick(5, 40),
                          "batch_size": pick(64, 256),
                          "lr": pick(2e-3, 5e-3)},
            "module": module, "classifier": classifier, "judge": judge,
        }
    if dataset == "adult":
        return {
            "data": {"train_size": None, "test_size": pick(8_000, None)},
            "generator": {"latent_dim": 10, "hidden": [128, 128],
                          "beta": 1.0, "epochs": pick(5, 40),
                          "batch_size": 256, "lr": 1e-3},
            "module": {**module, "epochs": pick(10, 60)},
            "classifier": classifier, "judge": judge,
        }
    return {  # celeba, 64x64
        "data": {"train_size": pick(2_000, None),
                 "test_size": pick(1_000, 10_000)},
        "generator": {"latent_dim": 64, "channels": [32, 64, 128, 256],
                      "hidden": 512, "beta": 1.0, "epochs": pick(2, 20),
                      "batch_size": 256, "lr": 1e-3},
        "module": {**module, "label_dims": 4, "sensitive_dims": 4},
        "classifier": classifier, "judge": judge,
    }


def load_data(dataset: str, split: str, *, seed: int = 0,
              settings: dict | None = None) -> BiasedDataset:
    """The chapter's ``train`` or ``test`` split of ``dataset``.

    ``cmnist-binary``: binary Coloured MNIST, the same correlation in
    both splits (the test set is the population the decisions are
    made on). ``adult``: the official UCI split, y income, s sex.
    ``celeba``: the official partition at 64x64 (the CelebA reader of
    the null-sampling chapter), rescaled to [0, 1].
    """
    settings = settings or chapter_settings(dataset)
    size = settings["data"][f"{split}_size"]
    if dataset == "cmnist-binary":
        from fairlab.data import binary_coloured_mnist

        return binary_coloured_mnist(
            split, correlation=settings["data"]["correlation"],
            seed=seed, subsample=size)
    if dataset == "adult":
        from fairlab.data import adult

        data = adult(split, seed=seed)
    else:
        from fairlab.data.celeba import celeba

        data = celeba(split, protocol="official", seed=seed,
                      subsample=size)
        return replace(data, x=(data.x + 1) / 2)  # [-1, 1] -> [0, 1]
    if size is not None and size < len(data):
        gen = torch.Generator().manual_seed(seed)
        data = data.subset(torch.randperm(len(data), generator=gen)[:size])
    return data


# -------------------------------------------------------------------
# The frozen generator: trained once, then loaded
# -------------------------------------------------------------------
class CheckpointMismatchError(ValueError):
    """A checkpoint was written with other settings than requested."""


def tabular_layout(feature_names) -> tuple[int, list[int]]:
    """(number of continuous columns, size of each one-hot field) of
    an encoding like Adult's: continuous names first, then one block
    ``field_value`` per categorical field."""
    fields: list[str] = []
    for name in feature_names:
        if "_" in name:
            fields.append(name.split("_", 1)[0])
        elif fields:
            raise ValueError(f"continuous column {name!r} after a "
                             "one-hot field: expected them first.")
    continuous = len(feature_names) - len(fields)
    sizes = [fields.count(f) for f in dict.fromkeys(fields)]
    return continuous, sizes


def build_generator(data: BiasedDataset, settings: dict) -> nn.Module:
    """A ConvVAE for images (x of shape (N, C, H, W)), a TabularVAE for
    records (x of shape (N, F) with ``info["feature_names"]``)."""
    if data.x.ndim == 4:
        return ConvVAE(tuple(data.x.shape[1:]), settings["latent_dim"],
                       settings["channels"], settings["hidden"],
                       settings["beta"])
    continuous, categories = tabular_layout(data.info["feature_names"])
    return TabularVAE(continuous, categories, settings["latent_dim"],
                      settings["hidden"], settings["beta"])


def generator_key(data: BiasedDataset, settings: dict,
                  seed: int = 0) -> dict:
    """What a generator checkpoint is keyed by: the training data (its
    name, size and protocol settings), the generator's settings, the
    seed. Plain JSON values, so the checkpoint loads weights-only."""
    info = {k: v for k, v in data.info.items()
            if isinstance(v, (str, int, float, bool, type(None)))}
    key = {"data": {"name": data.name, "n": len(data), **info},
           "generator": settings, "seed": seed}
    return json.loads(json.dumps(key, sort_keys=True))


def checkpoint_name(key: dict) -> str:
    """``generator-<data set>-<hash of the key>.pt``."""
    digest = hashlib.sha1(
        json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    data = key["data"]["name"].replace("/", "-")
    return f"generator-{data}-{digest}.pt"


def save_generator(model: nn.Module, key: dict, path, *,
                   seconds: float, device: str) -> None:
    """The weights, the key they were trained with, and the training
    time, written atomically."""
    state = {"key": key, "model": model.state_dict(),
             "seconds": float(seconds), "device": device}
    save_checkpoint(state, path)


def load_generator(model: nn.Module, key: dict, path) -> dict:
    """Load a checkpoint into ``model`` (``weights_only=True``); refuse
    it, with the difference, when it was trained with another key."""
    state = load_checkpoint(path)
    if state.get("key") != key:
        stored = state.get("key") or {}
        diff = {part: (stored.get(part), key[part]) for part in key
                if stored.get(part) != key[part]}
        raise CheckpointMismatchError(
            f"{path} was trained with other settings (stored, "
            f"requested): {diff}. Delete it or change the settings.")
    model.load_state_dict(state["model"])
    return state


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode and no gradients: the generator stays as it is."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass
class Generator:
    """A frozen generator and where it came from."""

    model: nn.Module
    path: Path
    loaded: bool  # True: read from a checkpoint; False: trained now
    seconds: float  # what training it took (now or when saved)
    device: str  # where it was trained


def pretrained_generator(
    data: BiasedDataset, settings: dict, *, seed: int = 0,
    device=None, progress: bool | None = None,
) -> Generator:
    """Load the generator for ``data`` and ``settings`` from the first
    checkpoint folder that has it (``config.checkpoint_folders()``);
    train it and save it to ``config.checkpoint_root()`` when none
    has. Returned frozen, on ``device``."""
    device = torch.device(device) if device else config.device()
    key = generator_key(data, settings, seed)
    name = checkpoint_name(key)
    config.seed_everything(seed)
    model = build_generator(data, settings)
    for folder in config.checkpoint_folders():
        if (folder / name).is_file():
            state = load_generator(model, key, folder / name)
            return Generator(freeze(model.to(device)), folder / name,
                             True, state["seconds"], state["device"])
    path = config.checkpoint_root() / name  # fails early if unwritable
    seconds = train_generator(model, data, settings, device=device,
                              progress=progress)
    save_generator(model, key, path, seconds=seconds,
                   device=device_name(device))
    return Generator(freeze(model), path, False, seconds,
                     device_name(device))


def train_generator(model: nn.Module, data: BiasedDataset,
                    settings: dict, *, device=None,
                    progress: bool | None = None) -> float:
    """Maximise the ELBO with Adam; return the wall-clock seconds."""
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    step = make_step(model, lambda m, b: m.loss(b.x), optimizer)
    start = time.perf_counter()
    fit(model, data, step, epochs=settings["epochs"],
        batch_size=settings["batch_size"], device=device,
        progress=progress, desc="generator")
    _sync(model_device(model))
    return time.perf_counter() - start


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def encode(generator: nn.Module, data: BiasedDataset,
           batch_size: int = 2048) -> BiasedDataset:
    """The data set with x replaced by the encoder's mean z: (N, D),
    on the generator's device. Labels and groups are kept."""
    device = model_device(generator)
    on = data.to(device)
    z = torch.cat([generator.encode(b.x)[0]
                   for b in on.batches(batch_size)])
    return replace(on, x=z, name=f"{data.name} (z)")


# -------------------------------------------------------------------
# The module
# -------------------------------------------------------------------
class FairLatentSpace(nn.Module):
    """w = f(z) = [w_Y, w_S, w_R], an invertible coupling flow on z,
    with a classifier head on w_Y (the fair decision), one on w_S, and
    two adversaries for the independence term.

    ``label_means`` and ``sensitive_means`` (2, k) are the class means
    of w_Y and the group means of w_S on the training set, set by
    ``fit_fls``; the counterfactual moves go from one to the other.
    """

    def __init__(self, latent_dim: int, label_dims: int = 2,
                 sensitive_dims: int = 2, *, blocks: int = 6,
                 width: int = 128, depth: int = 2,
                 adversary_width: int = 64, adversaries: int = 2,
                 seed: int = 0):
        super().__init__()
        rest = latent_dim - label_dims - sensitive_dims
        if rest < 1 or min(label_dims, sensitive_dims) < 1:
            raise ValueError(
                f"need label_dims, sensitive_dims >= 1 and at least one"
                f" dimension left for w_R; got {label_dims} + "
                f"{sensitive_dims} of {latent_dim}.")
        self.sizes = (label_dims, sensitive_dims, rest)
        self.flow = VectorFlow(latent_dim, blocks=blocks, width=width,
                               depth=depth, seed=seed)
        self.label_head = nn.Linear(label_dims, 2)
        self.sensitive_head = nn.Linear(sensitive_dims, 2)
        options = {"members": adversaries, "width": adversary_width,
                   "seed": seed}
        # s from (w_Y, y): what w_Y knows of s beyond the label
        self.label_adversary = AdversaryEnsemble(
            label_dims + 2, 2, **options)
        # the cell (y, s) from w_R: w_R should know neither
        self.rest_adversary = AdversaryEnsemble(rest, 4, **options)
        self.register_buffer("label_means", torch.zeros(2, label_dims))
        self.register_buffer(
            "sensitive_means", torch.zeros(2, sensitive_dims))

    def transform(self, z: torch.Tensor):
        """z (B, D) -> (w (B, D), log|det df/dz| (B,))."""
        return self.flow(z)

    def inverse(self, w: torch.Tensor) -> torch.Tensor:
        return self.flow.inverse(w)

    def split(self, w: torch.Tensor):
        """w -> (w_Y, w_S, w_R)."""
        return w.split(self.sizes, 1)

    def decide(self, w: torch.Tensor) -> torch.Tensor:
        """The fair decision's logits (B, 2): a function of w_Y only."""
        return self.label_head(w[:, : self.sizes[0]])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decide(self.transform(z)[0])

    def flip_sensitive(self, w: torch.Tensor,
                       s: torch.Tensor) -> torch.Tensor:
        """w with w_S moved from the mean of group s to the mean of the
        other group; w_Y and w_R untouched."""
        k, j, _ = self.sizes
        shift = self.sensitive_means[1 - s] - self.sensitive_means[s]
        return torch.cat([w[:, :k], w[:, k:k + j] + shift,
                          w[:, k + j:]], 1)

    def move_label(self, w: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
        """w with w_Y moved from the mean of class y to the other's."""
        k = self.sizes[0]
        shift = self.label_means[1 - y] - self.label_means[y]
        return torch.cat([w[:, :k] + shift, w[:, k:]], 1)


# -------------------------------------------------------------------
# The losses (our reconstruction; see the module docstring)
# -------------------------------------------------------------------
def flow_nll(w: torch.Tensor, logdet: torch.Tensor) -> torch.Tensor:
    """-log p(z) per dimension when f(z) ~ N(0, I): the change of
    variables, -(log N(w; 0, I) + log|det df/dz|) / D, batch mean.
    A diagonal, evenly scaled covariance is what N(0, I) asks for."""
    log_p = standard_normal_log_prob(w) + logdet
    return -log_p.mean() / w.shape[1]


def head_losses(model: FairLatentSpace, w_y, w_s, y, s) -> tuple:
    """CE(h_Y(w_Y), y) and CE(h_S(w_S), s): w_Y must carry the label,
    w_S the sensitive attribute."""
    label = F.cross_entropy(model.label_head(w_y), y)
    sensitive = F.cross_entropy(model.sensitive_head(w_s), s)
    return label, sensitive


def independence_loss(model: FairLatentSpace, w_y, w_r, y, s,
                      weight: float = 1.0) -> torch.Tensor:
    """Adversaries behind gradient reversal: one reads s from w_Y *and
    y* (so w_Y may keep the label, not what s adds to it), one reads
    the cell (y, s) from w_R. The adversaries minimise this loss; the
    flow, through the reversal, maximises it (times ``weight``)."""
    y_hot = F.one_hot(y, 2).to(w_y.dtype)
    label_in = torch.cat([grad_reverse(w_y, weight), y_hot], 1)
    from_label = model.label_adversary.loss(label_in, s)
    from_rest = model.rest_adversary.loss(
        grad_reverse(w_r, weight), 2 * y + s)
    return from_label + from_rest


def redistribution_targets(k: int, distance: float, device=None):
    """(2, k) targets for the two class (or group) means: -+(d/2) u,
    u = (1, ..., 1) / sqrt(k), so the two means are d apart."""
    u = torch.ones(k, device=device) / math.sqrt(k)
    return torch.stack([-u, u]) * distance / 2


def redistribution_loss(w_y, w_s, y, s,
                        distance: float) -> torch.Tensor:
    """Place the class means of w_Y and the group means of w_S at
    symmetric targets, *in every cell (y, s)*: the mean of w_Y over the
    samples with (y, s) should be m_Y(y) whatever s is, that of w_S
    m_S(s) whatever y is. Every occupied cell counts the same, however
    rare, which is what balances the groups. No host sync."""
    cell = 2 * y + s  # (B,) in 0..3
    hot = F.one_hot(cell, 4).to(w_y.dtype)  # (B, 4)
    count = hot.sum(0)  # (4,)
    occupied = (count > 0).to(w_y.dtype)
    mean_y = hot.T @ w_y / count.clamp(min=1)[:, None]  # (4, k_Y)
    mean_s = hot.T @ w_s / count.clamp(min=1)[:, None]  # (4, k_S)
    cells = torch.arange(4, device=y.device)
    target_y = redistribution_targets(
        w_y.shape[1], distance, y.device)[cells // 2]
    target_s = redistribution_targets(
        w_s.shape[1], distance, y.device)[cells % 2]
    error = ((mean_y - target_y).pow(2).sum(1)
             + (mean_s - target_s).pow(2).sum(1))
    return (error * occupied).sum() / occupied.sum()


def fls_loss(model: FairLatentSpace, z, y, s, *,
             mean_distance: float = 4.0,
             independence_weight: float = 1.0,
             redistribution_weight: float = 1.0) -> dict:
    """The whole objective on a batch of latents z (B, D)."""
    w, logdet = model.transform(z)
    w_y, w_s, w_r = model.split(w)
    nll = flow_nll(w, logdet)
    label, sensitive = head_losses(model, w_y, w_s, y, s)
    independence = independence_loss(
        model, w_y, w_r, y, s, independence_weight)
    redistribution = redistribution_loss(
        w_y, w_s, y, s, mean_distance)
    loss = (nll + label + sensitive + independence
            + redistribution_weight * redistribution)
    return {"loss": loss, "nll": nll, "label_ce": label,
            "sensitive_ce": sensitive, "adversary_ce": independence,
            "redistribution": redistribution}


def build_module(latent_dim: int, settings: dict,
                 seed: int = 0) -> FairLatentSpace:
    return FairLatentSpace(
        latent_dim, settings["label_dims"], settings["sensitive_dims"],
        blocks=settings["blocks"], width=settings["width"],
        depth=settings["depth"],
        adversary_width=settings["adversary_width"],
        adversaries=settings["adversaries"], seed=seed)


def fit_fls(latents: BiasedDataset, settings: dict, *, seed: int = 0,
            device=None, progress: bool | None = None):
    """Train the module on cached latents (x = z); only the module
    learns. Returns (module, history, seconds)."""
    config.seed_everything(seed)
    model = build_module(latents.x.shape[1], settings, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    weights = {k: settings[k] for k in (
        "mean_distance", "independence_weight", "redistribution_weight")}

    def loss_fn(model, batch):
        return fls_loss(model, batch.x, batch.y, batch.s, **weights)

    start = time.perf_counter()
    history = fit(model, latents, make_step(model, loss_fn, optimizer),
                  epochs=settings["epochs"],
                  batch_size=settings["batch_size"], device=device,
                  progress=progress, desc="fair latent module")
    set_group_means(model, latents)
    _sync(model_device(model))
    return model, history, time.perf_counter() - start


@torch.no_grad()
def transform(model: FairLatentSpace, latents: BiasedDataset,
              batch_size: int = 4096) -> torch.Tensor:
    """w = f(z) for a whole latent data set: (N, D), on the model's
    device."""
    model.eval()
    on = latents.to(model_device(model))
    return torch.cat([model.transform(b.x)[0]
                      for b in on.batches(batch_size)])


@torch.no_grad()
def set_group_means(model: FairLatentSpace,
                    latents: BiasedDataset) -> None:
    """Class means of w_Y and group means of w_S on ``latents``."""
    w = transform(model, latents)
    w_y, w_s, _ = model.split(w)
    y, s = latents.y.to(w.device), latents.s.to(w.device)
    for value in (0, 1):
        model.label_means[value] = w_y[y == value].mean(0)
        model.sensitive_means[value] = w_s[s == value].mean(0)


def label_part(model: FairLatentSpace,
               latents: BiasedDataset) -> BiasedDataset:
    """The data set with x = w_Y: what the fair classifier reads."""
    w_y = model.split(transform(model, latents))[0]
    return replace(latents.to(w_y.device), x=w_y,
                   name=latents.name.replace("(z)", "(w_Y)"))


# -------------------------------------------------------------------
# Classifiers on x, z and w_Y; the independent judges
# -------------------------------------------------------------------
def fit_classifier(data: BiasedDataset, settings: dict, *,
                   target: str = "y", seed: int = 0, device=None,
                   progress: bool | None = None) -> nn.Module:
    """An MLP predicting ``target`` ("y" or "s") from data.x, trained
    with cross-entropy on the shared loop (the same recipe for x, z
    and w_Y, so the comparison is between representations)."""
    config.seed_everything(seed)
    n_in = math.prod(data.x.shape[1:])
    model = MLP(n_in, settings["hidden"], 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])

    def loss_fn(model, batch):
        labels = batch.y if target == "y" else batch.s
        return F.cross_entropy(model(batch.x), labels)

    fit(model, data, make_step(model, loss_fn, optimizer),
        epochs=settings["epochs"], batch_size=settings["batch_size"],
        device=device, progress=progress, desc=f"classifier ({target})")
    return model.eval()


def judge_data(dataset: str, *, seed: int = 0,
               settings: dict | None = None) -> BiasedDataset:
    """What the independent attribute classifiers learn from. Binary
    Coloured MNIST: a fresh draw in which colour and label are
    independent (correlation 0.5), so the digit judge cannot use the
    colour nor the colour judge the digit. Adult and CelebA: the
    training split."""
    settings = settings or chapter_settings(dataset)
    if dataset == "cmnist-binary":
        from fairlab.data import binary_coloured_mnist

        return binary_coloured_mnist(
            "train", correlation=0.5, seed=seed + 7919,
            subsample=settings["data"]["train_size"])
    return load_data(dataset, "train", seed=seed, settings=settings)


def fit_judges(data: BiasedDataset, settings: dict, *, seed: int = 0,
               device=None, progress: bool | None = None) -> dict:
    """{"y": judge of the label, "s": judge of the sensitive
    attribute}, both reading x (an image or a record)."""
    return {t: fit_classifier(data, settings, target=t, seed=seed,
                              device=device, progress=progress)
            for t in ("y", "s")}


def representation_table(test_sets: dict, classifiers: dict,
                         ) -> pd.DataFrame:
    """One row per representation ("x", "z", "w_Y"): accuracy, DP, EO,
    worst-group accuracy of its classifier on its test set."""
    rows = {}
    for name, data in test_sets.items():
        pred = predict(classifiers[name], data)
        result = metrics.summary(data.y, pred,
                                 sensitive_features=data.group)
        rows[name] = {k: result[k] for k in (
            "accuracy", "dp", "eo", "worst_group_accuracy")}
    return pd.DataFrame(rows).T.rename_axis("classifier on")


# -------------------------------------------------------------------
# Counterfactuals and traversals
# -------------------------------------------------------------------
@torch.no_grad()
def counterfactuals(generator: nn.Module, model: FairLatentSpace,
                    z: torch.Tensor, s: torch.Tensor) -> dict:
    """Decoded x for latents z (B, D) and sensitive attributes s (B,):
    ``reconstruction`` (decode z), ``flip_s`` (w_S to the other
    group), ``move_y`` (w_Y to the other class of the fair decision);
    also ``decision`` (B,), the fair decision on z."""
    model.eval()
    w = model.transform(z)[0]
    decision = model.decide(w).argmax(1)
    flip_s = model.inverse(model.flip_sensitive(w, s))
    move_y = model.inverse(model.move_label(w, decision))
    return {"reconstruction": generator.decode(z),
            "flip_s": generator.decode(flip_s),
            "move_y": generator.decode(move_y), "decision": decision}


@torch.no_grad()
def counterfactual_report(generator, model, latents: BiasedDataset,
                          judges: dict, n: int = 1000) -> pd.DataFrame:
    """For ``n`` test latents: how often each counterfactual changes
    the judged sensitive attribute, the judged label, and the fair
    decision read back from the decoded x (x -> E -> f -> h_Y). The
    judges compare the counterfactual with the reconstruction, so the
    generator's own errors cancel."""
    device = model_device(model)
    z, s = latents.x[:n].to(device), latents.s[:n].to(device)
    out = counterfactuals(generator, model, z, s)

    def judged(x, who):
        return judges[who].to(device)(x).argmax(1)

    def decided(x):
        return model(generator.encode(x)[0]).argmax(1)

    base = {who: judged(out["reconstruction"], who) for who in "ys"}
    rows = {}
    for kind, label in (("flip_s", "move w_S to the other group"),
                        ("move_y", "move w_Y to the other class")):
        x = out[kind]
        rows[label] = {
            "s changes (judge)": _rate(judged(x, "s") != base["s"]),
            "y changes (judge)": _rate(judged(x, "y") != base["y"]),
            "fair decision changes": _rate(
                decided(x) != out["decision"]),
        }
    return pd.DataFrame(rows).T


@torch.no_grad()
def reconstruction_error(generator: nn.Module,
                         data: BiasedDataset) -> torch.Tensor:
    """Per-sample mean squared error of decode(encode(x)) against x:
    (N,), what every counterfactual inherits from the generator."""
    device = model_device(generator)
    errors = []
    for batch in data.to(device).batches(2048):
        x_hat = generator.decode(generator.encode(batch.x)[0])
        errors.append((x_hat - batch.x).pow(2).flatten(1).mean(1))
    return torch.cat(errors)


@torch.no_grad()
def inversion_error(model: FairLatentSpace,
                    latents: BiasedDataset) -> float:
    """max |f^-1(f(z)) - z| over a latent data set."""
    w = transform(model, latents)
    z = latents.x.to(w.device)
    return float((model.inverse(w) - z).abs().max())


@torch.no_grad()
def counterfactual_grid(generator, model: FairLatentSpace,
                        data: BiasedDataset, latents: BiasedDataset,
                        n: int = 8) -> tuple[torch.Tensor, list]:
    """Images for a grid of ``n`` columns and four rows: x, its
    reconstruction, w_S moved to the other group, w_Y moved to the
    other class; and a title per image (the reconstruction's squared
    error on the second row). Returns (images (4n, C, H, W), titles)."""
    device = model_device(model)
    z, s = latents.x[:n].to(device), latents.s[:n].to(device)
    out = counterfactuals(generator, model, z, s)
    x = data.x[:n].to(device)
    error = (out["reconstruction"] - x).pow(2).flatten(1).mean(1)
    images = torch.cat([x, out["reconstruction"], out["flip_s"],
                        out["move_y"]]).cpu()
    titles = ([f"s={v} y={u}" for v, u in zip(s.tolist(),
                                              latents.y[:n].tolist())]
              + [f"err {e:.3f}" for e in error.tolist()]
              + [f"s->{1 - v}" for v in s.tolist()]
              + [f"d->{1 - d}" for d in out["decision"].tolist()])
    return images, titles


def _rate(mask: torch.Tensor) -> float:
    return float(mask.float().mean())


STEPS = (-2, -1, 0, 1, 2)


@torch.no_grad()
def traverse_original(generator, train_latents: BiasedDataset,
                      z: torch.Tensor, steps=STEPS) -> torch.Tensor:
    """Decode z + t * v for each step t: v the label direction of the
    original latent, from the class-0 to the class-1 mean of the
    (biased) training latents; t in units of the training latents'
    spread along v. (T, B, ...) images or records."""
    device = model_device(generator)
    z, train_z = z.to(device), train_latents.x.to(device)
    y = train_latents.y.to(device)
    v = train_z[y == 1].mean(0) - train_z[y == 0].mean(0)
    v = v / v.norm()
    spread = (train_z @ v).std()
    return torch.stack([generator.decode(z + t * spread * v)
                        for t in steps])


@torch.no_grad()
def traverse_fair(generator, model: FairLatentSpace,
                  train_latents: BiasedDataset, z: torch.Tensor,
                  steps=STEPS) -> torch.Tensor:
    """Decode f^-1(w + t * e): e the unit direction from the class-0
    to the class-1 mean of w_Y (zero on w_S and w_R), the same units
    as ``traverse_original``. (T, B, ...)."""
    device = model_device(model)
    w = model.transform(z.to(device))[0]
    e = torch.zeros(w.shape[1], device=device)
    k = model.sizes[0]
    e[:k] = model.label_means[1] - model.label_means[0]
    e = e / e.norm()
    spread = (transform(model, train_latents) @ e).std()
    return torch.stack([generator.decode(model.inverse(w + t * spread * e))
                        for t in steps])


def traversals(generator, model: FairLatentSpace,
               train_latents: BiasedDataset, z: torch.Tensor,
               steps=STEPS) -> dict:
    """Both traversals of latents z (B, D): {"original": (T, B, ...),
    "fair": (T, B, ...), "steps": steps}."""
    return {"original": traverse_original(generator, train_latents, z,
                                          steps),
            "fair": traverse_fair(generator, model, train_latents, z,
                                  steps),
            "steps": list(steps)}


def traversal_grid(paths: dict, n: int = 2):
    """Images for a grid with one column per step and, for each of the
    first ``n`` samples, a row in the original latent and one in the
    fair latent. Returns (images, row labels)."""
    rows, labels = [], []
    for i in range(n):
        for latent in ("original", "fair"):
            rows.append(paths[latent][:, i])
            labels.append(f"{latent} latent")
    return torch.cat(rows).cpu(), labels


@torch.no_grad()
def traversal_curves(paths: dict, judges: dict) -> pd.DataFrame:
    """Share of the traversed samples each judge calls 1, per step and
    latent: columns step, latent, attribute, share."""
    rows = []
    for latent in ("original", "fair"):
        for t, x in zip(paths["steps"], paths[latent]):
            for who, name in (("y", "label y"), ("s", "sensitive s")):
                judge = judges[who].to(x.device)
                share = _rate(judge(x).argmax(1) == 1)
                rows.append({"step": t, "latent": latent,
                             "attribute": name, "share": share})
    return pd.DataFrame(rows)


# -------------------------------------------------------------------
# Adult records
# -------------------------------------------------------------------
def records(features: torch.Tensor, feature_names,
            stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """Encoded Adult rows (N, F) back to readable records: one column
    per field, the category with the largest value, the continuous
    columns un-standardised with ``stats`` (rows mean, std) if given."""
    frame = pd.DataFrame(features.detach().cpu().numpy(),
                         columns=list(feature_names))
    out = {}
    continuous, _ = tabular_layout(feature_names)
    for name in feature_names[:continuous]:
        value = frame[name]
        if stats is not None:
            value = value * stats.loc["std", name] + stats.loc["mean",
                                                               name]
        out[name] = value.round(1)
    fields = dict.fromkeys(n.split("_", 1)[0]
                           for n in feature_names[continuous:])
    for field in fields:
        cols = [n for n in feature_names if n.startswith(field + "_")]
        best = frame[cols].to_numpy().argmax(1)
        out[field] = [cols[i].split("_", 1)[1] for i in best]
    return pd.DataFrame(out)


def adult_stats() -> pd.DataFrame:
    """Mean and std of Adult's continuous columns on the UCI training
    rows (what ``fairlab.data.adult`` standardises with)."""
    from fairlab.data.adult import CONTINUOUS, load_adult_frame

    train = load_adult_frame()[0]
    return pd.DataFrame({"mean": train[CONTINUOUS].mean(),
                         "std": train[CONTINUOUS].std()}).T


def changed_fields(before: pd.DataFrame,
                   after: pd.DataFrame) -> pd.Series:
    """Share of records in which each field changes (continuous: by
    more than a tenth of its spread)."""
    shares = {}
    for col in before.columns:
        if pd.api.types.is_numeric_dtype(before[col]):
            spread = before[col].std() or 1.0
            moved = (after[col] - before[col]).abs() > 0.1 * spread
        else:
            moved = after[col] != before[col]
        shares[col] = float(moved.mean())
    return pd.Series(shares, name="share changed")


@torch.no_grad()
def counterfactual_records(generator, model: FairLatentSpace,
                           latents: BiasedDataset, feature_names,
                           stats: pd.DataFrame | None = None,
                           n: int = 1000) -> dict:
    """Adult counterfactuals as readable records for ``n`` test rows:
    {"reconstruction", "flip_s", "move_y"} -> DataFrame."""
    device = model_device(model)
    z, s = latents.x[:n].to(device), latents.s[:n].to(device)
    out = counterfactuals(generator, model, z, s)
    return {kind: records(out[kind], feature_names, stats)
            for kind in ("reconstruction", "flip_s", "move_y")}


def field_changes(tables: dict) -> pd.DataFrame:
    """Share of records in which each field changes, for the move of
    w_S and the move of w_Y (against the reconstruction)."""
    base = tables["reconstruction"]
    return pd.DataFrame({
        "move w_S": changed_fields(base, tables["flip_s"]),
        "move w_Y": changed_fields(base, tables["move_y"]),
    })


def side_by_side(tables: dict, index: int) -> pd.DataFrame:
    """One record: reconstruction, w_S moved, w_Y moved, as columns."""
    names = {"reconstruction": "reconstruction",
             "flip_s": "w_S moved", "move_y": "w_Y moved"}
    return pd.DataFrame({names[k]: tables[k].iloc[index]
                         for k in names})


# -------------------------------------------------------------------
# The whole experiment (CLI and notebook)
# -------------------------------------------------------------------
@dataclass
class Experiment:
    """Everything one run of the chapter trains and measures."""

    dataset: str
    settings: dict
    generator: Generator
    module: FairLatentSpace
    history: pd.DataFrame
    module_seconds: float
    train: BiasedDataset  # x
    test: BiasedDataset
    train_z: BiasedDataset  # x = z
    test_z: BiasedDataset
    classifiers: dict  # "x", "z", "w_Y" -> MLP
    table: pd.DataFrame  # representation_table


def run_experiment(dataset: str, *, seed: int = 0,
                   settings: dict | None = None, train=None, test=None,
                   device=None, progress: bool | None = None,
                   ) -> Experiment:
    """Load (or train) the frozen generator, encode, train the module,
    train the x / z / w_Y classifiers, measure them on the test set.

    ``settings`` default to ``chapter_settings(dataset)``. The
    generator is trained once per training set, with seed 0;
    ``seed`` seeds the data draw, the module and the classifiers."""
    settings = settings or chapter_settings(dataset)
    if train is None:
        train = load_data(dataset, "train", seed=seed, settings=settings)
    if test is None:
        test = load_data(dataset, "test", seed=seed, settings=settings)
    generator = pretrained_generator(train, settings["generator"],
                                     device=device, progress=progress)
    train_z, test_z = (encode(generator.model, d) for d in (train, test))
    module, history, seconds = fit_fls(
        train_z, settings["module"], seed=seed, device=device,
        progress=progress)
    sets = {"x": (train, test), "z": (train_z, test_z),
            "w_Y": (label_part(module, train_z),
                    label_part(module, test_z))}
    classifiers = {
        name: fit_classifier(tr, settings["classifier"], seed=seed,
                             device=device, progress=progress)
        for name, (tr, _) in sets.items()}
    table = representation_table(
        {name: te for name, (_, te) in sets.items()}, classifiers)
    return Experiment(dataset, settings, generator, module, history,
                      seconds, train, test, train_z, test_z,
                      classifiers, table)


# -------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------
def add_cli_arguments(parser) -> None:
    parser.add_argument(
        "--fls-epochs", type=int, default=None,
        help="module epochs (default: the profile's)")


def cli_run(args, train: BiasedDataset, test: BiasedDataset):
    """The w_Y classifier's test predictions; the z and x classifiers'
    numbers and the two training times as extras."""
    dataset = args.dataset
    if dataset not in DATASETS:
        raise SystemExit(f"fls runs on {DATASETS}, not {dataset!r}.")
    settings = chapter_settings(dataset, args.profile)
    if getattr(args, "correlation", None) is not None:
        settings["data"]["correlation"] = args.correlation
    size = settings["data"]["train_size"]
    if args.subsample is None and size is not None:
        # the profile's training set: the notebook's, and its generator
        train = load_data(dataset, "train", seed=args.seed,
                          settings=settings)
    if args.fls_epochs is not None:
        settings["module"]["epochs"] = args.fls_epochs
    run = run_experiment(dataset, seed=args.seed, settings=settings,
                         train=train, test=test)
    extras = {"generator_seconds": round(run.generator.seconds, 3),
              "generator_loaded": run.generator.loaded,
              "module_seconds": round(run.module_seconds, 3)}
    for name in ("z", "x"):
        for key, value in run.table.loc[name].items():
            extras[f"{name}_{key}"] = round(float(value), 6)
    w_y = label_part(run.module, run.test_z)
    return predict(run.classifiers["w_Y"], w_y), extras
