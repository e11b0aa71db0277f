"""Chapter 3's experiments: the published evaluation (a fresh classifier on null-samples), the sweeps over the
colour variance and over Adult's eta, the signature figure, the authors' tables."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from fairlab import config, metrics
from fairlab.data import adult, celeba, coloured_mnist
from fairlab.data.base import BiasedDataset
from fairlab.methods.null_sampling import (
    CFlow, CVAE, bias_sample, build_cflow, downstream_options, fit_cflow, fit_cvae, fit_downstream, null_sample,
    null_sample_dataset, reconstruct,
)
from fairlab.pretrained import SHIPPED, checkpoint_name
from fairlab.protocols import protocol
from fairlab.train import load_checkpoint, model_device, predict, save_checkpoint

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
# CelebA 64x64, s = Male, y = Smiling (the brief): accuracy and DP difference at eta = 1; at eta = 0 only the
# accuracy is given ("cnn": the same classifier on the raw images).
PUBLISHED_CELEBA = {
    1.0: {"cflow": (0.82, 0.33), "cvae": (0.81, 0.16), "cnn": (0.67, 0.75)},
    0.0: {"cflow": (0.83, None), "cvae": (0.82, None), "cnn": (0.61, None)},
}


def colour_features(x: torch.Tensor) -> torch.Tensor:
    """What a colour probe reads from images (N, 3, H, W): the brightness-weighted mean colour of each image (its
    stroke's colour, the background weighing almost nothing), the mean and the maximum of each channel: (N, 9)."""
    flat = x.float().flatten(2)  # (N, 3, H * W)
    weight = flat.amax(1, keepdim=True)  # each pixel's brightness
    stroke = (flat * weight).sum(2) / weight.sum(2).clamp_min(1e-6)
    return torch.cat([stroke, flat.mean(2), flat.amax(2)], 1)


def colour_probe(data: BiasedDataset) -> float:
    """How well a fresh linear probe reads s from the colour of ``data``'s images (``metrics.probe_accuracy`` on
    ``colour_features``): about 0.93 on Coloured MNIST's originals at colour variance 0.02, chance (0.1) for images
    whose colour says nothing about s."""
    return metrics.probe_accuracy(colour_features(data.x), data.s)["accuracy"]


def evaluate(model: CFlow | CVAE | None, train: BiasedDataset, test: BiasedDataset, *, seed: int = 0,
             progress: bool | None = None, **downstream) -> dict:
    """The published evaluation: null-sample the biased training set and the test set (``model=None``: the raw
    data, the baseline), train a fresh downstream classifier on the former, test on the latter.

    Returns ``metrics.summary`` (accuracy, dp, hgr, ...) plus, for colour images, ``colour_probe`` (on the test
    images the classifier reads), TPR/TNR differences, per-group accuracy
    (``accuracy_s=<g>``) and ``predictions`` (the test predictions, a tensor).
    """
    if model is not None:
        train, test = null_sample_dataset(model, train), null_sample_dataset(model, test)
    colour = {"colour_probe": colour_probe(test)} if test.x.ndim == 4 and test.x.shape[1] == 3 else {}
    classifier = fit_downstream(train, seed=seed, progress=progress, **{**downstream_options(), **downstream})
    predictions = predict(classifier, test)
    result = metrics.summary(test.y, predictions, sensitive_features=test.group, aligned=test.aligned)
    result.update(colour)
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
    cfg = protocol("null_sampling", profile)
    return {
        split: coloured_mnist("nifr", split, colour_variance=colour_variance, seed=seed, subsample=cfg[key])
        for split, key in (("representative", "representative"), ("train", "train"), ("test", "test"))
    }


# ---------------------------------------------------------------------------------------------------------------
# The shipped cFlow: trained once for about an hour on a CPU, loaded by the quick profile
# ---------------------------------------------------------------------------------------------------------------
def shipped_cflow_key(profile: str | None = None) -> dict:
    """What the shipped cFlow is keyed by: the representative split it learnt from (nifr Coloured MNIST at the
    colour variance and data seed of ``protocol("null_sampling")["cflow_shipped"]``, the profile's size), its
    settings (the profile's ``cflow``) and its seed. Plain JSON values."""
    cfg = protocol("null_sampling", profile)
    where = cfg["cflow_shipped"]
    key = {"data": {"name": "coloured_mnist-nifr-representative", "colour_variance": where["colour_variance"],
                    "seed": where["seed"], "n": cfg["representative"]},
           "cflow": cfg["cflow"], "seed": where["seed"]}
    return json.loads(json.dumps(key, sort_keys=True))


def shipped_cflow_path(profile: str | None = None) -> Path:
    """Where the package keeps the shipped cFlow (``fairlab/checkpoints/cflow-...pt``)."""
    return SHIPPED / checkpoint_name(shipped_cflow_key(profile), kind="cflow")


def save_shipped_cflow(model: CFlow, seconds: float, profile: str | None = None, path: Path | None = None) -> Path:
    """Write the flow's weights (not the adversaries': null-sampling does not need them) with their key."""
    path = Path(path) if path else shipped_cflow_path(profile)
    save_checkpoint({"key": shipped_cflow_key(profile), "flow": model.flow.state_dict(), "seconds": float(seconds),
                     "centre": float(model.centre)}, path)
    return path


def load_shipped_cflow(data: BiasedDataset, profile: str | None = None, device=None) -> CFlow | None:
    """The shipped cFlow for the profile's settings, in eval mode, or ``None`` when the package has none for them
    (settings changed, or the file was removed). ``data``: any split of the same images (for the shape)."""
    path = shipped_cflow_path(profile)
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    if state.get("key") != shipped_cflow_key(profile):
        return None
    cfg = protocol("null_sampling", profile)
    model = build_cflow(data, seed=cfg["cflow_shipped"]["seed"], **cfg["cflow"])
    model.flow.load_state_dict(state["flow"])
    return model.to(device or config.device()).eval()


def run_cmnist(method: str, colour_variance: float, seed: int = 0, *, profile: str | None = None,
               splits: dict | None = None, device=None, progress: bool | None = None, **overrides):
    """One run on Coloured MNIST: ``method`` in {"cflow", "cvae", "cnn"} (cnn: the raw-data baseline).

    Returns ``(result dict, model or None, history or None)``; ``overrides`` replace the profile's settings of the
    generative model (e.g. ``iterations=1000``).
    """
    cfg = protocol("null_sampling", profile)
    splits = splits or cmnist_splits(colour_variance, seed, profile)
    if method not in ("cflow", "cvae", "cnn"):
        raise ValueError(f"method must be 'cflow', 'cvae' or 'cnn', got {method!r}.")
    model = history = None
    shipped = cfg.get("cflow_shipped") if method == "cflow" and not overrides else None
    if shipped:
        model = load_shipped_cflow(splits["representative"], profile, device)
        if model is None:  # no shipped weights for these settings: the same flow, trained for a few minutes only
            overrides = {"iterations": shipped["fallback_iterations"]}
    if method != "cnn" and model is None:
        fit_fn = fit_cflow if method == "cflow" else fit_cvae
        model, history = fit_fn(splits["representative"], seed=seed, device=device, progress=progress,
                                **{**cfg[method], **overrides})
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
    cfg = protocol("null_sampling", profile)
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
    cfg = protocol("null_sampling", profile)
    a = cfg["adult"]
    representative = adult("representative", protocol="nifr", seed=seed)
    test = adult("test", protocol="nifr", seed=seed)
    models = {"cnn": None}
    models["cflow"], _ = fit_cflow(representative, seed=seed, device=device, progress=progress, **a["cflow"])
    models["cvae"], _ = fit_cvae(representative, seed=seed, device=device, progress=progress, **a["cvae"])
    rows = []
    for eta in a["etas"]:
        train = adult("train", protocol="nifr", eta=eta, seed=seed)
        for method, model in models.items():
            result = evaluate(model, train, test, seed=seed, device=device, progress=progress, **a["downstream"])
            result.pop("predictions")
            rows.append({**result, "method": method, "eta": eta})
    return pd.DataFrame(rows)


def published_celeba() -> pd.DataFrame:
    """The authors' CelebA table: one row per (eta, method) with accuracy and DP difference (None where not given)."""
    return pd.DataFrame([
        {"eta": eta, "method": method, "accuracy": acc, "dp": dp}
        for eta, row in PUBLISHED_CELEBA.items() for method, (acc, dp) in row.items()
    ])


def celeba_commands(profile: str | None = None) -> list[str]:
    """The command lines that run chapter 3's CelebA protocol (one per method) for a profile."""
    cfg = protocol("null_sampling", profile)["celeba"]
    name = profile or config.profile()
    return [f"FAIRLAB_PROFILE={name} python -m fairlab run {method} --dataset celeba --eta {cfg['eta']:g}"
            for method in ("erm", "cvae", "cflow")]


def run_celeba(profile: str | None = None, seed: int = 0, device=None, progress: bool | None = None
               ) -> pd.DataFrame:
    """Chapter 3's CelebA protocol (s = Male, y = Smiling, the profile's eta): the raw-data CNN, the cVAE and the
    cFlow, each followed by the same downstream CNN; one row per method (accuracy, dp, hgr, ...). Needs CelebA
    under the data root (``fairlab.data.celeba_available()``)."""
    cfg = protocol("null_sampling", profile)["celeba"]
    splits = {
        "representative": celeba("representative", seed=seed, subsample=cfg["representative"]),
        "train": celeba("train", eta=cfg["eta"], seed=seed, subsample=cfg["train"]),
        "test": celeba("test", seed=seed, subsample=cfg["test"]),
    }
    rows = []
    for method in ("cnn", "cvae", "cflow"):
        model = None
        if method != "cnn":
            fit_fn = fit_cflow if method == "cflow" else fit_cvae
            model, _ = fit_fn(splits["representative"], seed=seed, device=device, progress=progress, **cfg[method])
        result = evaluate(model, splits["train"], splits["test"], seed=seed, device=device, progress=progress,
                          **cfg["downstream"])
        result.pop("predictions")
        rows.append({"method": method, "eta": cfg["eta"], **result})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
