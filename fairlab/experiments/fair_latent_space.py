"""Chapter 5's experiments: the chapter's data, the x / z / w_Y comparison, the independent judges, the
counterfactual report, traversals, and Adult counterfactuals as readable records."""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import torch
from torch import nn

from fairlab import metrics
from fairlab.data.base import BiasedDataset
from fairlab.methods import METHODS
from fairlab.methods.fair_latent_space import (
    FairLatentSpace, counterfactuals, fit_classifier, fit_module, label_part, transform,
)
from fairlab.pretrained import Generator, encode, pretrained_generator, tabular_layout
from fairlab.protocols import protocol
from fairlab.train import model_device, predict


def chapter_settings(dataset: str, profile: str | None = None) -> dict:
    """Chapter 5's settings for ``dataset`` (``fairlab.protocols``): data, generator, module, classifier, judge."""
    return protocol("fair_latent_space", profile, dataset=dataset)


def load_data(dataset: str, split: str, *, seed: int = 0,
              settings: dict | None = None) -> BiasedDataset:
    """The chapter's ``train`` or ``test`` split of ``dataset``.

    ``cmnist-binary``: binary Coloured MNIST, P(s = y) =
    ``data.correlation`` in the training split and
    ``data.test_correlation`` (the training one when absent) in the
    test split. ``adult``: the official UCI split, y income, s sex.
    ``celeba``: the official partition at 64x64 (the CelebA reader of
    the null-sampling chapter), rescaled to [0, 1].
    """
    settings = settings or chapter_settings(dataset)
    size = settings["data"][f"{split}_size"]
    if dataset == "cmnist-binary":
        from fairlab.data import binary_coloured_mnist

        correlation = settings["data"].get(f"{split}_correlation",
                                           settings["data"]["correlation"])
        return binary_coloured_mnist(
            split, correlation=correlation, seed=seed, subsample=size)
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
               generator: nn.Module | None = None, device=None,
               progress: bool | None = None) -> dict:
    """{"y": judge of the label, "s": judge of the sensitive
    attribute}, both reading x (an image or a record). With
    ``generator``, the judges learn from the generator's reconstructions
    decode(encode(x)) of ``data``, the kind of image they will judge."""
    if generator is not None:
        data = reconstructions(generator, data)
    return {t: fit_classifier(data, settings, target=t, seed=seed,
                              device=device, progress=progress)
            for t in ("y", "s")}


@torch.no_grad()
def reconstructions(generator: nn.Module, data: BiasedDataset,
                    batch_size: int = 2048) -> BiasedDataset:
    """The data set with x replaced by decode(encode(x)), on the
    generator's device."""
    on = data.to(model_device(generator))
    x = torch.cat([generator.decode(generator.encode(b.x)[0])
                   for b in on.batches(batch_size)])
    return replace(on, x=x)


def fit_erm(train: BiasedDataset, settings: dict, *, seed: int = 0,
            device=None, progress: bool | None = None) -> nn.Module:
    """Plain ERM on the same training set: the course's baseline
    (``METHODS["erm"]``, the baseline network of the data set) with the
    chapter's ``settings`` (epochs, batch size)."""
    model, _ = METHODS["erm"].fit(train, seed=seed, device=device,
                                  progress=progress, **settings)
    return model.eval()


def representation_table(test_sets: dict, classifiers: dict,
                         ) -> pd.DataFrame:
    """One row per classifier ("ERM", "x", "z", "w_Y": what it reads):
    accuracy, DP, EO, worst-group accuracy on its test set."""
    rows = {}
    for name, data in test_sets.items():
        pred = predict(classifiers[name], data)
        result = metrics.summary(data.y, pred,
                                 sensitive_features=data.group)
        rows[name] = {k: result[k] for k in (
            "accuracy", "dp", "eo", "worst_group_accuracy")}
    return pd.DataFrame(rows).T.rename_axis("classifier on")


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
    """Encoded Adult rows (N, F) back to records as a person reads
    them: one column per field, the category with the largest value,
    the continuous columns un-standardised with ``stats`` (rows mean,
    std, min, max; ``adult_stats``), then put back in the data's domain:
    clipped to the range seen in training and rounded to whole numbers
    (every continuous field of Adult is a count: years, dollars,
    hours). A decoder's Gaussian mean can fall outside that domain (a
    negative capital gain); the record a person reads cannot."""
    frame = pd.DataFrame(features.detach().cpu().numpy(),
                         columns=list(feature_names))
    out = {}
    continuous, _ = tabular_layout(feature_names)
    for name in feature_names[:continuous]:
        value = frame[name].astype(float)
        if stats is not None:
            value = value * stats.loc["std", name] + stats.loc["mean",
                                                               name]
            value = value.clip(stats.loc["min", name],
                               stats.loc["max", name])
            out[name] = value.round().astype(int)
        else:
            out[name] = value.round(2)
    fields = dict.fromkeys(n.split("_", 1)[0]
                           for n in feature_names[continuous:])
    for field in fields:
        cols = [n for n in feature_names if n.startswith(field + "_")]
        best = frame[cols].to_numpy().argmax(1)
        out[field] = [cols[i].split("_", 1)[1] for i in best]
    return pd.DataFrame(out)


def adult_stats() -> pd.DataFrame:
    """Mean and std of Adult's continuous columns on the UCI training
    rows (what ``fairlab.data.adult`` standardises with), and their
    smallest and largest values there (the domain of a record)."""
    from fairlab.data.adult import CONTINUOUS, load_adult_frame

    train = load_adult_frame()[0][CONTINUOUS]
    return pd.DataFrame({"mean": train.mean(), "std": train.std(),
                         "min": train.min(), "max": train.max()}).T


def in_domain(table: pd.DataFrame, stats: pd.DataFrame,
              feature_names) -> pd.Series:
    """For each field of a records table: is every value in the data's
    domain (a whole number within the training range; one of the
    field's categories)?"""
    categories: dict = {}
    for name in feature_names:
        if "_" in name:
            field, value = name.split("_", 1)
            categories.setdefault(field, []).append(value)
    ok = {}
    for col in table.columns:
        if col in stats.columns:
            values = table[col]
            ok[col] = bool(pd.api.types.is_integer_dtype(values)
                           and values.between(stats.loc["min", col],
                                              stats.loc["max", col]).all())
        else:
            ok[col] = bool(table[col].isin(categories[col]).all())
    return pd.Series(ok, name="in the data's domain")


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
    classifiers: dict  # "ERM", "x", "z", "w_Y" -> MLP
    table: pd.DataFrame  # representation_table


def run_experiment(dataset: str, *, seed: int = 0,
                   settings: dict | None = None, train=None, test=None,
                   device=None, progress: bool | None = None,
                   ) -> Experiment:
    """Load (or train) the frozen generator, encode, train the module,
    train plain ERM on x and the x / z / w_Y classifiers, measure them
    on the test set.

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
    module, history, seconds = fit_module(
        train_z, seed=seed, device=device, progress=progress,
        decoder=generator.model, **settings["module"])
    sets = {"x": (train, test), "z": (train_z, test_z),
            "w_Y": (label_part(module, train_z),
                    label_part(module, test_z))}
    classifiers = {"ERM": fit_erm(train, settings["erm"], seed=seed,
                                  device=device, progress=progress)}
    classifiers.update({
        name: fit_classifier(tr, settings["classifier"], seed=seed,
                             device=device, progress=progress)
        for name, (tr, _) in sets.items()})
    table = representation_table(
        {"ERM": test, **{name: te for name, (_, te) in sets.items()}},
        classifiers)
    return Experiment(dataset, settings, generator, module, history,
                      seconds, train, test, train_z, test_z,
                      classifiers, table)
