"""Chapter 2's experiments: the audits of a trained model and the sweep over Kim's Coloured MNIST."""
from __future__ import annotations

import dataclasses
import time

import pandas as pd

from fairlab import metrics
from fairlab.data import coloured_mnist
from fairlab.data.base import BiasedDataset
from fairlab.methods.mi_backprop import (
    METHOD, MIBackpropModel, features, fit_mi_backprop, fresh_mi_estimate, mi_estimate, prediction_information,
)
from fairlab.train import model_device, predict

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
                model = reused[0] if reused else fit_mi_backprop(train, hp, seed=seed, **others)[0]
                mi_weight = hp.mi_weight
                row = {"colour_variance": variance, "arm": arm, "lambda": mi_weight, "seed": seed,
                       **evaluate(model, train, test)}
                row["seconds"] = float(reused[1]["seconds"].sum()) if reused else time.perf_counter() - start
                rows.append(row)
    return pd.DataFrame(rows)
