"""Chapter 2's experiments: the audits of a trained model, the sweep over Kim's Coloured MNIST, Kim et al.'s
published table, their own baseline (their network and SGD schedule), and the long CPU runs the chapter reads back
from ``benchmarks/results/``."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F

from fairlab import config, metrics
from fairlab.data import coloured_mnist
from fairlab.data.base import Batch, BiasedDataset
from fairlab.methods.mi_backprop import (
    METHOD, MIBackpropModel, features, fit_mi_backprop, fresh_mi_estimate, mi_estimate, prediction_information,
)
from fairlab.models import KimBaselineNet
from fairlab.train import fit, make_step, model_device, predict

HPARAMS = {f.name for f in dataclasses.fields(METHOD.hparams)}


def evaluate(model: MIBackpropModel, train: BiasedDataset, test: BiasedDataset, *, fresh_statistics_steps: int = 0
             ) -> dict:
    """Test metrics (``fairlab.metrics.summary``), the final MI estimate on the training set, and two audits.

    ``mi_floor`` is ``prediction_information`` on the training set, what the MI estimate cannot honestly fall
    below. ``bias_probe_accuracy`` (with ``bias_probe_chance`` beside it) is ``metrics.probe_accuracy``: a fresh
    linear classifier trained to read the bias group from the *test* features. It answers what the training-time
    adversary cannot: is the bias still in z? On Kim's test set the colour is drawn independently of the digit, so
    whatever the probe finds above chance is colour information, not the label leaking through.
    With ``fresh_statistics_steps`` > 0, ``mi_fresh_estimate`` is ``fresh_mi_estimate`` on the training set: the
    estimate of a statistics network trained afresh on the final, frozen features.
    """
    test = test.to(model_device(model))
    result = metrics.summary(test.y, predict(model, test), sensitive_features=test.group, aligned=test.aligned)
    result["mi_estimate"] = mi_estimate(model, train)
    result["mi_floor"] = prediction_information(model, train)
    probe = metrics.probe_accuracy(features(model, test), test.group)
    result.update(bias_probe_accuracy=probe["accuracy"], bias_probe_chance=probe["chance"])
    if fresh_statistics_steps:
        result["mi_fresh_estimate"] = fresh_mi_estimate(model, train, steps=fresh_statistics_steps)
    return result


def kim_sweep(variances, arms, seeds, *, subsample=None, test_subsample=None, trained=None, **fit_kwargs
              ) -> pd.DataFrame:
    """Train on Kim's Coloured MNIST for every (sigma^2, arm, seed); one row of test metrics (``evaluate``) per run.

    Every run records its test accuracy after each epoch: ``accuracy`` (and the other metrics) are the *last*
    epoch's model; ``best_epoch_accuracy`` is the highest of the per-epoch test accuracies and ``best_epoch`` (from 1)
    where it was reached. The best epoch is read off the test set, so it is an upper envelope to look at, not a
    result: nothing in the biased training data could have chosen it.

    ``arms``: a list of lambdas, or ``{name: options}`` where options are ``fit_mi_backprop`` arguments for that
    arm (e.g. ``{"baseline": {"mi_weight": 0}, "MI": {"mi_weight": 1}}``); ``fit_kwargs`` are shared by all arms.
    ``trained``: ``{(sigma^2, arm, seed): (model, history)}`` for runs already made with the same options (they are
    evaluated, not trained again; their seconds are the history's). Rows carry ``arm`` (the name, or the lambda as
    text) and ``lambda``.
    """
    trained = trained or {}
    if not isinstance(arms, dict):
        arms = {f"{weight:g}": {"mi_weight": weight} for weight in arms}
    rows = []
    for variance in variances:
        for seed in seeds:
            train = coloured_mnist("kim", "train", colour_variance=variance, seed=seed, subsample=subsample)
            test = coloured_mnist("kim", "test", colour_variance=variance, seed=seed, subsample=test_subsample)
            for arm, options in arms.items():
                start = time.perf_counter()
                run_options = {**fit_kwargs, **options}
                reused = trained.get((variance, arm, seed))
                hp = METHOD.hp(**{k: v for k, v in run_options.items() if k in HPARAMS})
                others = {k: v for k, v in run_options.items() if k not in HPARAMS}  # device, progress, test
                model, history = reused if reused else fit_mi_backprop(train, hp, seed=seed,
                                                                       **{"test": test, **others})
                mi_weight = hp.mi_weight
                row = {"colour_variance": variance, "arm": arm, "lambda": mi_weight, "seed": seed,
                       **evaluate(model, train, test)}
                if "test_accuracy" in history:
                    row.update(best_epoch_accuracy=float(history["test_accuracy"].max()),
                               best_epoch=int(history["test_accuracy"].to_numpy().argmax()) + 1)
                row["seconds"] = float(reused[1]["seconds"].sum()) if reused else time.perf_counter() - start
                rows.append(row)
    return pd.DataFrame(rows)


# Kim et al.'s published test accuracies on randomly coloured digits, per colour variance: the table in the README
# of their repository (github.com/feidfoe/learning-not-to-learn, "an alternative of Fig. 4"), trained on their
# released files. Baseline: the network of ``KimBaselineNet``; BlindEye: a reverse-gradient method they compare with;
# "Kim et al. (LNL)": their own method.
KIM_PUBLISHED = pd.DataFrame({
    "Baseline": [0.4055, 0.4813, 0.5996, 0.6626, 0.7333, 0.7973, 0.8450],
    "BlindEye": [0.6741, 0.7123, 0.7883, 0.8203, 0.8638, 0.8927, 0.9159],
    "Kim et al. (LNL)": [0.8185, 0.8854, 0.9137, 0.9306, 0.9406, 0.9555, 0.9618],
}, index=pd.Index([0.020, 0.025, 0.030, 0.035, 0.040, 0.045, 0.050], name="colour_variance")).T
KIM_PUBLISHED_BASELINE = KIM_PUBLISHED.loc["Baseline"].to_dict()

# the long CPU runs chapter 2 reads back (benchmarks/kim_baseline_cpu.py and benchmarks/mi_released_cpu.py)
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
KIM_BASELINE_RUNS = RESULTS / "kim_baseline_cpu_2026-12-03.jsonl"
MI_RELEASED_RUNS = RESULTS / "mi_released_cpu_2026-12-03.jsonl"


def read_curves(path: Path | str, **where) -> pd.DataFrame:
    """The per-reading lines of a long run's results file (its ``"final"`` summary lines left out), keeping only the
    lines whose fields equal ``where`` (e.g. ``reconstruction="estimated"``), as a DataFrame in file order."""
    rows = pd.read_json(path, lines=True, precise_float=True)
    if "final" in rows:
        rows = rows[rows["final"].isna() | (rows["final"] == False)]  # noqa: E712  (NaN on the per-epoch lines)
    for key, value in where.items():
        rows = rows[rows[key] == value] if key in rows else rows.iloc[:0]
    return rows.drop(columns=[c for c in ("final",) if c in rows]).reset_index(drop=True)


@dataclass
class KimSchedule:
    """Kim et al.'s training of their baseline (their released options): SGD, lr 0.01, momentum 0.9, weight decay
    5e-4, the rate x0.1 every 40 epochs, 100 epochs, batches of 128, no augmentation. A shorter run shortens the
    decay period in proportion (e.g. 30 epochs, decay every 12), so it still ends at the same small rate."""

    epochs: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_every: int = 40
    decay_rate: float = 0.1
    batch_size: int = 128

    def lr_at(self, epoch: int) -> float:
        """The learning rate epoch ``epoch`` (from 0) trains with: a step every ``decay_every`` epochs."""
        return self.lr * self.decay_rate ** (epoch // self.decay_every)


def kim_sgd(model: torch.nn.Module, schedule: KimSchedule) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser and its step schedule; call the scheduler's ``step()`` once at the end of every epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=schedule.momentum,
                                weight_decay=schedule.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: schedule.lr_at(epoch) / schedule.lr)
    return optimizer, scheduler


def fit_kim_baseline(train: BiasedDataset, schedule: KimSchedule | None = None, *, test: BiasedDataset | None = None,
                     seed: int = 0, device=None, progress: bool | None = None,
                     on_epoch_end: Callable[[int, dict], None] | None = None, **overrides):
    """Kim et al.'s baseline: ``KimBaselineNet`` trained on cross-entropy with ``KimSchedule`` (``overrides``
    replace its fields). Returns ``(model, history)``; with ``test``, the history has its accuracy after every
    epoch (``test_accuracy``: Kim et al. report the last epoch's) and ``lr``, the rate the epoch trained with.
    ``on_epoch_end(epoch, row)`` sees each row as it is made (a long run can report as it goes)."""
    schedule = dataclasses.replace(schedule or KimSchedule(), **overrides)
    config.seed_everything(seed)
    device = torch.device(device) if device is not None else config.device()
    model = KimBaselineNet(train.x.shape[1], train.num_classes).to(device)
    optimizer, scheduler = kim_sgd(model, schedule)

    def cross_entropy(model: torch.nn.Module, batch: Batch) -> dict:
        logits = model(batch.x)
        return {"loss": F.cross_entropy(logits, batch.y), "accuracy": (logits.argmax(1) == batch.y).float().mean()}

    validate = None
    if test is not None:
        test = test.to(device)
        validate = lambda: {"test_accuracy": metrics.accuracy(test.y, predict(model, test))}  # noqa: E731

    def next_rate(epoch: int, row: dict) -> None:  # the step schedule moves once per epoch, after it
        row["lr"] = optimizer.param_groups[0]["lr"]
        scheduler.step()
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    history = fit(model, train, make_step(model, cross_entropy, optimizer), epochs=schedule.epochs,
                  batch_size=schedule.batch_size, validate=validate, on_epoch_end=next_rate, device=device,
                  progress=progress, desc="kim baseline")
    return model, history


LONG_RUN_NAMES = {"kim": "Kim's baseline network (SGD)", "baseline": "encoder alone (λ = 0, Adam)",
                  "mi": "MI penalty (λ = 1, released schedule)"}


def long_runs(kim_path: Path | str = KIM_BASELINE_RUNS, mi_path: Path | str = MI_RELEASED_RUNS
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long CPU runs on all 60,000 images, as ``(curves, summary)``.

    ``curves``: one row per test reading (``run``, ``colour_variance``, ``seed``, ``epoch`` = epochs trained, which
    the MI runs also read at quarter epochs, ``test_accuracy``). ``summary``: one row per run with ``last`` (the
    test accuracy of the last reading, the number a run reports), ``best`` and ``best_epoch`` (the highest reading
    and where: read off the test set, so not a number anyone could have selected) and ``epochs`` trained.
    """
    kim = read_curves(kim_path).assign(run=LONG_RUN_NAMES["kim"])
    kim["epoch"] = kim["epoch"] + 1  # benchmarks/kim_baseline_cpu.py counts epochs from 0
    released = read_curves(mi_path)
    released = released.assign(run=released["arm"].map(LONG_RUN_NAMES))
    columns = ["run", "colour_variance", "seed", "epoch", "test_accuracy"]
    curves = pd.concat([kim[columns], released[columns]], ignore_index=True)
    runs = curves.groupby(["run", "colour_variance", "seed"], sort=False)
    summary = runs.agg(epochs=("epoch", "max"), last=("test_accuracy", "last"), best=("test_accuracy", "max"))
    summary["best_epoch"] = runs.apply(lambda run: run["epoch"].iloc[run["test_accuracy"].to_numpy().argmax()],
                                       include_groups=False)
    return curves, summary.reset_index()
