"""Chapter 6's experiments: every method of the course on one protocol, one table, one figure.

The protocol (``fairlab.protocols.protocol("comparison")``):

- **Coloured MNIST**: LfF's colouring (ten mean colours, one per digit, a small jitter). Per seed and bias strength
  rho (the share of bias-conflicting images): a training set in which a share 1 - rho of the images wears its
  digit's colour; a *representative* set of other training images with a random colour (s independent of y), read
  only by the methods that need one (null-sampling); MNIST's test images with a random colour (unbiased). Every
  method sees the same training images; what differs is which labels it may read (``Method.needs``).
- **Adult** (s = sex, y = income > 50K): null-sampling's partition (``adult(protocol="nifr")``), so that a
  representative set exists: the biased training split at ``eta``, the representative and the test split.

Every run is scored on the unbiased test set with ``fairlab.metrics`` (accuracy, worst-group accuracy,
bias-conflicting accuracy on images, DP and EO differences, HGR between prediction and s) and with a *fresh* linear
probe that reads s from the method's ``representation`` (``metrics.probe_accuracy``): what an auditor can still
read, whatever the method's own adversary believed.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import pandas as pd
import torch

from fairlab import config, metrics
from fairlab.data import adult, coloured_mnist
from fairlab.data.base import BiasedDataset
from fairlab.methods import METHODS
from fairlab.methods.base import fit_runs
from fairlab.methods.null_sampling import (
    NullSamplingModel, downstream_options, fit_cflow, fit_cvae, fit_downstream, null_sample_dataset,
)
from fairlab.methods.sih import recolour
from fairlab.protocols import cli_defaults, protocol

DATASETS = ("cmnist", "adult")
# what an auditor can look at, besides the numbers: the method's own explanation of a decision
AUDIT = {
    "erm": "nothing",
    "lff": "nothing",
    "sih": "latent perturbation",  # move the bias latent, decode: the bias made visible
    "mi": "nothing",
    "cvae": "null-sample",  # the input with s removed, in the data domain
    "cflow": "null-sample",
    "fls": "counterfactual",  # move w_S (or w_Y) and decode
}
# the labels each kind of need stands for, in the table's words
NEEDS_WORDS = {"y": "y", "s": "s (train)", "s_representative": "s (representative set)"}
GENERATIVE = {"cvae": fit_cvae, "cflow": fit_cflow}  # null-sampling's generative models
KEYS = ("method", "dataset", "seed", "accuracy", "worst_group_accuracy", "dp", "eo", "hgr", "probe_accuracy",
        "seconds", "needs")


def settings(dataset: str, profile: str | None = None) -> dict:
    """The protocol's settings for one data set (``"cmnist"`` or ``"adult"``) and the active profile."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}.")
    where = protocol("comparison", profile)[dataset]
    for name, hp in where["hparams"].items():
        if isinstance(hp, str):  # the method's settings in the chapter named (what its command line would use)
            fields = {f.name for f in dataclasses.fields(METHODS[name].hparams)}
            where["hparams"][name] = {k: v for k, v in cli_defaults(name, dataset, profile).items() if k in fields}
    return where


def methods_for(dataset: str, profile: str | None = None) -> tuple[str, ...]:
    """The methods the protocol runs on ``dataset`` (those whose ``datasets`` allow it)."""
    return tuple(settings(dataset, profile)["methods"])


def cmnist_splits(bias_conflicting_ratio: float, seed: int = 0, *, train: int | None, representative: int,
                  test: int | None) -> dict[str, BiasedDataset]:
    """The three Coloured MNIST splits of one seed: ``train`` (biased, rho = ``bias_conflicting_ratio``),
    ``representative`` (random colours, other images than train's) and ``test`` (random colours).

    ``coloured_mnist`` draws its subset from one permutation per seed, whatever rho: the first ``train`` images of
    it are the training set, the next ``representative`` ones are coloured at random (rho = 0.9 is LfF's uniform
    colouring) and become the representative set, so no image is in both.
    """
    n_train = train if train is not None else 60_000 - representative
    biased = coloured_mnist("lff", "train", bias_conflicting_ratio=bias_conflicting_ratio, seed=seed,
                            subsample=n_train)
    uniform = coloured_mnist("lff", "train", bias_conflicting_ratio=0.9, seed=seed,
                             subsample=n_train + representative)
    rest = uniform.subset(torch.arange(n_train, n_train + representative))
    rest = BiasedDataset(**{**vars(rest), "name": "cmnist-lff/representative"})
    return {"train": biased, "representative": rest,
            "test": coloured_mnist("lff", "test", seed=seed, subsample=test)}


def adult_splits(seed: int = 0, *, eta: float, train: int | None, representative: int | None,
                 test: int | None) -> dict[str, BiasedDataset]:
    """Adult on null-sampling's partition: the biased training split at ``eta``, representative and test."""
    return {
        "train": adult("train", protocol="nifr", eta=eta, seed=seed, subsample=train),
        "representative": adult("representative", protocol="nifr", seed=seed, subsample=representative),
        "test": adult("test", protocol="nifr", seed=seed, subsample=test),
    }


def splits_for(dataset: str, seed: int, settings_: dict, bias_conflicting_ratio: float | None = None) -> dict:
    sizes = settings_["sizes"]
    if dataset == "cmnist":
        return cmnist_splits(bias_conflicting_ratio, seed, **sizes)
    return adult_splits(seed, eta=settings_["eta"], **sizes)


def random_rows(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``min(size, n)`` of ``range(n)`` drawn at random. A random draw, not the first rows: LfF's colouring
    gives colours in data-set order within each class, so the first rows of a split share few colours."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]


def group_scores(test: BiasedDataset, predictions: torch.Tensor) -> dict:
    """``metrics.summary`` of ``predictions`` on ``test``, with the protocol's worst group.

    On images (``test.aligned`` given), ten digits times ten colours make 100 cells (digit, colour) of about 100 test
    images each, and the lowest of 100 small samples is close to 0 for any model short of a very good one. The groups
    are therefore (digit, whether the image wears its digit's training colour): 20 groups, the 10 bias-conflicting
    ones of about 900 test images each. ``worst_cell_accuracy`` keeps the minimum over the 100 cells. On Adult the
    groups are the usual four (y, s).
    """
    predictions = predictions.cpu()
    aligned = test.aligned if test.x.ndim == 4 else None
    result = metrics.summary(test.y, predictions, sensitive_features=test.group, aligned=aligned)
    if aligned is not None:
        result["worst_cell_accuracy"] = result["worst_group_accuracy"]
        result["worst_group_accuracy"] = metrics.worst_group_accuracy(test.y, predictions,
                                                                      sensitive_features=aligned)
    if "eo" not in result:  # ten colours: EO's worst gap over one-vs-rest pairs, as DP's
        result["eo"] = metrics.equalized_odds_difference(test.y, predictions, sensitive_features=test.group)
    return result


def score(name: str, model, splits: dict, *, seed: int, probe_size: int | None = None) -> dict:
    """One run's row: ``group_scores`` on the test split, and the fresh probe's accuracy reading s from the
    method's representation of the test split (``probe_chance`` beside it)."""
    record, test = METHODS[name], splits["test"]
    result = group_scores(test, record.predict(model, test))
    probe_rows = test if probe_size is None else test.subset(random_rows(len(test), probe_size, seed))
    features = record.representation(model, probe_rows).flatten(1).cpu()
    probe = metrics.probe_accuracy(features, probe_rows.group, seed=seed)
    result.update(probe_accuracy=probe["accuracy"], probe_chance=probe["chance"])
    return result


def run_method(name: str, dataset: str, seeds: Sequence[int], *, profile: str | None = None,
               bias_conflicting_ratio: float | None = None, splits: dict | None = None,
               generators: dict | None = None, device=None, progress: bool | None = False,
               **overrides) -> tuple[list[dict], dict]:
    """Train ``name`` once per seed on the protocol's ``dataset`` (at ``bias_conflicting_ratio`` on Coloured
    MNIST), stacked where the method can; score every run.

    ``splits``: ``{seed: splits_for(...)}`` already built (they are shared by every method); ``generators``:
    null-sampling's generative models per seed, filled and reused (see ``_fit_null_sampling``). ``overrides``
    replace the protocol's hyperparameters of the method. Returns ``(rows, models)``: one dict per seed with the
    keys of ``KEYS`` (and ``conflicting_accuracy``, ``rho`` on images), and ``{seed: model}``.
    """
    record = METHODS[name]
    where = settings(dataset, profile)
    if name not in where["hparams"]:
        raise ValueError(f"{name} is not part of the comparison on {dataset}; it runs {', '.join(where['methods'])}.")
    if dataset == "cmnist" and bias_conflicting_ratio is None:
        bias_conflicting_ratio = where["ratios"][0]
    seeds = list(seeds)
    splits = splits or {}
    for seed in seeds:
        if seed not in splits:
            splits[seed] = splits_for(dataset, seed, where, bias_conflicting_ratio)
    hp = record.hp(**{**where["hparams"][name], **overrides})
    device = torch.device(device) if device is not None else config.device()
    start = time.perf_counter()
    if name in GENERATIVE:
        models, seconds = _fit_null_sampling(name, hp, seeds, splits, generators, device=device, progress=progress)
    elif record.can_stack and len(seeds) > 1 and len({len(splits[s]["train"]) for s in seeds}) == 1:
        # stacked: one process, one step for every seed (the training sets must be of one size)
        for seed in seeds:
            config.seed_everything(seed)
        models, _ = fit_runs(record, [splits[s]["train"].to(device) for s in seeds], seeds, hp, device=device,
                             progress=progress)
        seconds = [(time.perf_counter() - start) / len(seeds)] * len(seeds)
    else:
        models, seconds = [], []
        for seed in seeds:
            start = time.perf_counter()
            config.seed_everything(seed)
            model, _ = record.fit(splits[seed]["train"].to(device), hp, seed=seed, device=device, progress=progress)
            models.append(model)
            seconds.append(time.perf_counter() - start)
    rows = []
    for seed, model, took in zip(seeds, models, seconds):
        test_splits = {k: v.to(device) for k, v in splits[seed].items() if k == "test"}
        row = {"method": name, "dataset": dataset, "seed": seed}
        if dataset == "cmnist":
            row["rho"] = bias_conflicting_ratio
        row.update(score(name, model, test_splits, seed=seed, probe_size=where.get("probe_size")))
        row["seconds"] = round(took, 3)
        row["needs"] = list(record.needs)
        rows.append(row)
    return rows, dict(zip(seeds, models))


def _fit_null_sampling(name: str, hp, seeds, splits: dict, generators: dict | None, *, device, progress):
    """Null-sampling, one seed at a time, as ``METHODS[name].fit`` does it (the generative model on the
    representative set, then a fresh classifier on the null-samples of the training set), except that the
    generative model of a seed is taken from ``generators[seed]`` when it is there: the representative set does not
    depend on the bias strength of the training set, so one generative model serves every rho. A run's seconds
    count its generative model in full (what training it from scratch would cost)."""
    generators = {} if generators is None else generators
    models, seconds = [], []
    for seed in seeds:
        if seed not in generators:
            start = time.perf_counter()
            config.seed_everything(seed)
            generative, _ = GENERATIVE[name](splits[seed]["representative"].to(device), hp, seed=seed, device=device,
                                             progress=progress)
            generators[seed] = (generative, time.perf_counter() - start)
        generative, generative_seconds = generators[seed]
        start = time.perf_counter()
        classifier = fit_downstream(null_sample_dataset(generative, splits[seed]["train"].to(device)), seed=seed,
                                    device=device, bf16=hp.bf16, progress=progress, **downstream_options(hp))
        models.append(NullSamplingModel(generative, classifier))
        seconds.append(generative_seconds + time.perf_counter() - start)
    return models, seconds


def compare(dataset: str, seeds: Sequence[int], methods: Sequence[str] | None = None, *,
            ratios: Sequence[float] | None = None, profile: str | None = None, device=None,
            progress: bool | None = False, keep_models: bool = False, on_result=None):
    """Every method (default: the protocol's for ``dataset``) at every seed (and, on Coloured MNIST, every bias
    strength of the protocol, or ``ratios``). Returns a DataFrame with one row per run (``KEYS``, plus ``rho`` and
    ``conflicting_accuracy`` on images); with ``keep_models``, also ``{(method, rho, seed): model}``.
    ``on_result(row)`` sees each row as soon as its run is scored (the command line prints it)."""
    where = settings(dataset, profile)
    methods = list(methods or where["methods"])
    check_methods(dataset, methods, profile)
    if ratios and dataset != "cmnist":
        raise ValueError(f"ratios (bias strengths) belong to Coloured MNIST, not to {dataset}.")
    ratios = list(ratios or where["ratios"]) if dataset == "cmnist" else [None]
    rows, models = [], {}
    generators = {name: {} for name in methods if name in GENERATIVE}  # per seed, shared by every rho
    for rho in ratios:
        splits = {seed: splits_for(dataset, seed, where, rho) for seed in seeds}
        for name in methods:
            found, trained = run_method(name, dataset, seeds, profile=profile, bias_conflicting_ratio=rho,
                                        splits=splits, generators=generators.get(name), device=device,
                                        progress=progress)
            rows += found
            for row in found if on_result is not None else ():
                on_result(row)
            if keep_models:
                models.update({(name, rho, seed): model for seed, model in trained.items()})
    frame = pd.DataFrame(rows)
    return (frame, models) if keep_models else frame


def check_methods(dataset: str, methods: Sequence[str], profile: str | None = None) -> None:
    """``ValueError`` naming the problem if a method is unknown or not part of the comparison on ``dataset``."""
    allowed = methods_for(dataset, profile)
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"no method named {name!r}; the methods are {', '.join(METHODS)}.")
        if name not in allowed:
            raise ValueError(f"{name} does not run in the comparison on {dataset}; there it runs "
                             f"{', '.join(allowed)}.")


TABLE_COLUMNS = {
    "accuracy": "accuracy", "worst_group_accuracy": "worst group", "conflicting_accuracy": "conflicting",
    "dp": "DP", "eo": "EO", "hgr": "HGR", "probe_accuracy": "probe (s)", "seconds": "seconds",
}


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds per (data set, rho, method), in the order the methods were run, plus the labels each
    method needs and what an auditor can inspect."""
    keys = [k for k in ("dataset", "rho", "method") if k in runs and runs[k].notna().any()]
    runs = runs.assign(rho=runs["rho"].fillna("-")) if "rho" in keys else runs
    grouped = runs.groupby(keys, sort=False)
    table = pd.DataFrame({"seeds": grouped.size()})
    for column, label in TABLE_COLUMNS.items():
        if column in runs and runs[column].notna().any():
            digits = 1 if column == "seconds" else 3
            stats = grouped[column].agg(["mean", "std"])
            table[label] = [_mean_sd(m, s, digits) for m, s in zip(stats["mean"], stats["std"])]
    names = table.index.get_level_values("method")
    table["labels needed"] = [", ".join(NEEDS_WORDS[n] for n in METHODS[m].needs) for m in names]
    table["auditor sees"] = [AUDIT[m] for m in names]
    return table


def _mean_sd(mean: float, sd: float, digits: int) -> str:
    if mean != mean:
        return "-"
    # one seed has no sd: show the mean alone rather than "nan"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd == sd else "")


def summary_by_method(runs: pd.DataFrame, columns: Sequence[str] = ("accuracy", "worst_group_accuracy",
                                                                   "probe_accuracy")) -> pd.DataFrame:
    """Mean and sd over seeds of ``columns`` per (data set, rho, method): numbers to plot or assert on."""
    keys = [k for k in ("dataset", "rho", "method") if k in runs and runs[k].notna().any()]
    return runs.groupby(keys, sort=False)[list(columns)].agg(["mean", "std"])


def audit_views(models: dict, data: BiasedDataset, n: int = 8, seed: int = 0) -> dict[str, torch.Tensor | None]:
    """What each trained method lets an auditor *see* on ``n`` images of ``data`` (Coloured MNIST; drawn at random
    with ``seed``):
    ``{"original": x, name: images or None}``, in the order of ``models`` (``{method name: model}``).

    Null-sampling: the null-samples (the image with s removed). SiH: the reconstruction with the bias latent pushed
    until the bias classifier predicts the next class's colour (``sih.recolour``). The others: ``None``.
    """
    data = data.subset(random_rows(len(data), n, seed))
    x, y = data.x, data.y
    views = {"original": x.cpu()}
    for name, model in models.items():
        if name in GENERATIVE:
            views[name] = null_sample_dataset(model.generative, data).x.cpu()
        elif name == "sih":
            views[name] = recolour(model, x, (y + 1) % data.num_classes)[0].cpu()
        else:
            views[name] = None
    return views
