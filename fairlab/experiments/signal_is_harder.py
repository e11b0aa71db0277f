"""Chapter 4's experiments: vanilla, LfF and SiH on LfF's Coloured MNIST, the published table, the bias made
visible, and how fast a plain model learns the bias."""
from __future__ import annotations

import time
from typing import Sequence

import pandas as pd
import torch

from fairlab import config, metrics
from fairlab.data import coloured_mnist
from fairlab.data.base import BiasedDataset
from fairlab.losses import cross_entropy
from fairlab.methods import METHODS
from fairlab.methods.base import fit_runs
from fairlab.methods.sih import SignalIsHarder, recolour, reconstruct, swap_bias_latents
from fairlab.models import baseline_network
from fairlab.train import make_step, model_device, predict

# Unbiased test accuracy (%) on Coloured MNIST, mean and sd over 10 seeds, recomputed from the authors' per-seed
# result files (the method brief). Keys: bias-conflicting ratio rho.
PUBLISHED = {
    "vanilla": {0.005: (43.70, 0.83), 0.01: (59.41, 0.39), 0.02: (73.28, 0.56), 0.05: (85.48, 0.50)},
    "lff": {0.005: (60.42, 2.72), 0.01: (68.91, 5.01), 0.02: (76.97, 2.49), 0.05: (81.18, 2.94)},
    "disent": {0.005: (63.98, 4.78), 0.01: (76.33, 3.41), 0.02: (82.39, 1.68), 0.05: (85.54, 2.49)},
    "sih": {0.005: (71.62, 2.49), 0.01: (80.03, 2.04), 0.02: (83.80, 1.28), 0.05: (86.14, 1.78)},
}



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


def first_epoch_curves(
    train: BiasedDataset, probe: BiasedDataset, *, steps: int = 60, eval_every: int = 5, batch_size: int = 256,
    lr: float = 1e-3, seed: int = 0, device=None,
) -> pd.DataFrame:
    """Train the vanilla MLP for ``steps`` batches and, every ``eval_every`` steps, measure on ``probe`` (bias labels
    are used here only to *report*): accuracy on aligned and on conflicting samples, and how often the prediction is
    the colour's class rather than the digit's. A diagnostic probe, not a training routine: it syncs at each probe.

    Returns a long frame (step, quantity, value) for ``viz.metric_against``.
    """
    config.seed_everything(seed)
    device = torch.device(device) if device is not None else config.device()
    data, probe = train.to(device), probe.to(device)
    model = baseline_network(data).to(device)
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
    device = torch.device(device) if device is not None else config.device()
    test = coloured_mnist("lff", "test").to(device)
    keys = [(rho, seed) for rho in ratios for seed in seeds]
    full = {
        (rho, seed): coloured_mnist("lff", "train", bias_conflicting_ratio=rho, seed=seed, subsample=subsample)
        .to(device)
        for rho, seed in keys
    }
    splits = {key: data.random_split(0.1, seed=key[1]) for key, data in full.items()}  # SiH's (train, val)
    # (method, hyperparameters, training sets, validation sets) per method of the chapter
    runs_of = {
        "vanilla": (METHODS["erm"], dict(epochs=vanilla_epochs), lambda k: full[k], None),
        "lff": (METHODS["lff"], dict(epochs=lff_epochs), lambda k: full[k], None),
        "sih": (METHODS["sih"], dict(epochs=sih_epochs), lambda k: splits[k][0], lambda k: splits[k][1]),
    }
    size = max_stacked or len(keys)
    rows, trained = [], {}
    for method, (record, options, train_of, val_of) in runs_of.items():
        hp = record.hp(batch_size=batch_size, **options)
        for first in range(0, len(keys), size):
            group = keys[first : first + size]
            start = time.perf_counter()
            vals = [val_of(k) for k in group] if val_of else None
            models, histories = fit_runs(record, [train_of(k) for k in group], [seed for _, seed in group], hp,
                                         vals=vals, device=device, progress=progress)
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
