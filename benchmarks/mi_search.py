"""Try MI-backprop settings on Kim's Coloured MNIST and audit each run: one JSON line per setting.

    FAIRLAB_DATA=... python benchmarks/mi_search.py --subsample 10000 --epochs 5 \
        '{"mi_weight": 0}' '{"mi_weight": 1}' '{"mi_weight": 1, "conditional": true, "statistics_steps": 20}'

Each argument is a dict of ``fit_mi_backprop`` options. A line holds the options, the test accuracy per epoch, and
``mi_backprop.evaluate``'s numbers: the final MINE estimate, the counted floor I(yhat; c) and the accuracy of a
fresh linear probe reading the colour from the test features (chance about 0.1). A setting removes the colour only
if the probe falls; a setting debiases only if the test accuracy also rises above the ``{"mi_weight": 0}`` line.
"""
from __future__ import annotations

import argparse
import json
import time

from fairlab.data import coloured_mnist
from fairlab.methods import mi_backprop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="+", type=json.loads, help='JSON dicts, e.g. \'{"mi_weight": 1}\'')
    parser.add_argument("--subsample", type=int, default=10_000)
    parser.add_argument("--test-subsample", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--colour-variance", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    train = coloured_mnist("kim", "train", colour_variance=args.colour_variance, seed=args.seed,
                           subsample=args.subsample)
    test = coloured_mnist("kim", "test", colour_variance=args.colour_variance, seed=args.seed,
                          subsample=args.test_subsample)
    for options in args.settings:
        start = time.perf_counter()
        model, history = mi_backprop.fit_mi_backprop(
            train, **{"epochs": args.epochs, **options}, test=test, seed=args.seed, device=args.device,
            progress=False,
        )
        audit = mi_backprop.evaluate(model, train, test)
        keep = ("accuracy", "mi_estimate", "mi_floor", "bias_probe_accuracy", "bias_probe_chance")
        print(json.dumps({
            **options, **{key: round(audit[key], 3) for key in keep},
            "test_accuracy_per_epoch": [round(value, 3) for value in history["test_accuracy"]],
            "seconds": round(time.perf_counter() - start, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
