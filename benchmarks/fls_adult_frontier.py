"""How far can any classifier on Adult go towards chapter 5's Adult bounds? A reference frontier from fairlearn.

Chapter 5 asks the classifier on w_Y, on Adult, for all of: DP at most 0.6 of plain ERM's, no more than 5 points of
accuracy lost, and a lower EO and a higher worst-group accuracy than ERM. This script fits, on the same features and
split, plain logistic regression, Kamiran-Calders reweighing, and fairlearn's exponentiated-gradient reductions under
an equalized-odds and a demographic-parity constraint, and prints each one's accuracy, DP, EO and worst-group
accuracy (fairlab.metrics, cells (y, s)) and which of the bounds it meets against the logistic ERM.

    OMP_NUM_THREADS=1 python benchmarks/fls_adult_frontier.py [--eps 0.02] [--seed 0]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
from sklearn.linear_model import LogisticRegression

from fairlab import metrics
from fairlab.data import adult


def evaluate(test, prediction) -> dict:
    result = metrics.summary(test.y, torch.as_tensor(np.asarray(prediction)), sensitive_features=test.group)
    return {k: round(float(result[k]), 4) for k in ("accuracy", "dp", "eo", "worst_group_accuracy")}


def reweighing(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Kamiran and Calders' weights P(y) P(s) / P(y, s): y and s independent in the weighted training set."""
    joint = np.array([[((y == a) & (s == b)).mean() for b in (0, 1)] for a in (0, 1)])
    return joint.sum(1)[y] * joint.sum(0)[s] / joint[y, s]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eps", type=float, default=0.02, help="the reductions' constraint slack")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, test = adult("train"), adult("test")
    x, y, s, x_test = train.x.numpy(), train.y.numpy(), train.s.numpy(), test.x.numpy()
    rows = {"logistic ERM": evaluate(test, LogisticRegression(max_iter=2000).fit(x, y).predict(x_test)),
            "reweighing": evaluate(test, LogisticRegression(max_iter=2000).fit(
                x, y, sample_weight=reweighing(y, s)).predict(x_test))}
    for constraint in (EqualizedOdds(), DemographicParity()):
        reduction = ExponentiatedGradient(LogisticRegression(max_iter=1000), constraint, eps=args.eps)
        reduction.fit(x, y, sensitive_features=s)
        rows[f"fairlearn {type(constraint).__name__}"] = evaluate(test, reduction.predict(x_test, random_state=args.seed))
    erm = rows["logistic ERM"]
    for name, row in rows.items():
        row["bounds met"] = {
            "dp <= 0.6 ERM": row["dp"] <= 0.6 * erm["dp"], "accuracy lost <= 0.05": erm["accuracy"] - row["accuracy"] <= 0.05,
            "eo < ERM": row["eo"] < erm["eo"], "worst group > ERM": row["worst_group_accuracy"] > erm["worst_group_accuracy"]}
        print(json.dumps({"classifier": name, **row}), flush=True)


if __name__ == "__main__":
    main()
