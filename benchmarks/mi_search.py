"""Try MI-backprop settings on Kim's Coloured MNIST and audit each run: one JSON line per setting.

    FAIRLAB_DATA=... python benchmarks/mi_search.py --subsample 10000 --epochs 5 \
        '{"mi_weight": 0}' '{"mi_weight": 1}' '{"mi_weight": 1, "conditional": true, "statistics_steps": 20}'
    python benchmarks/mi_search.py '{"mi_weight": 0}' --subsample 0 --epochs 10 --colour-variances 0.02 0.03 --seeds 0 1
    (the settings go before the options that take several values)

Each argument is a dict of ``fit_mi_backprop`` options. A line holds the options, the test accuracy per epoch, and
``fairlab.experiments.mi_backprop.evaluate``'s numbers: the final MINE estimate, the estimate of a statistics
network trained afresh on the final features (``mi_fresh_estimate``), the counted floor I(yhat; c) and the accuracy of a
fresh linear probe reading the colour from the test features (chance about 0.1). A setting removes the colour only
if the probe falls; a setting debiases only if the test accuracy also rises above the ``{"mi_weight": 0}`` line.
Each line also records what produced it: colour variance, seed, epochs, training and test sizes, device.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from fairlab import config
from fairlab.data import coloured_mnist
from fairlab.experiments import mi_backprop as mi_experiments
from fairlab.methods import mi_backprop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="+", type=json.loads, help='JSON dicts, e.g. \'{"mi_weight": 1}\'')
    parser.add_argument("--subsample", type=int, default=10_000, help="training images (0: all 60,000)")
    parser.add_argument("--test-subsample", type=int, default=2_000, help="test images (0: all 10,000)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--colour-variances", type=float, nargs="+", default=[0.02], help="sigma^2 values")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--fresh-statistics-steps", type=int, default=2000,
                        help="audit: train a new T on the final frozen features (0: skip)")
    args = parser.parse_args()

    device = torch.device(args.device) if args.device else config.device()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    for variance in args.colour_variances:
        for seed in args.seeds:
            train = coloured_mnist("kim", "train", colour_variance=variance, seed=seed, subsample=args.subsample or None)
            test = coloured_mnist("kim", "test", colour_variance=variance, seed=seed,
                                  subsample=args.test_subsample or None)
            for options in args.settings:
                start = time.perf_counter()
                model, history = mi_backprop.fit_mi_backprop(
                    train, **{"epochs": args.epochs, **options}, test=test, seed=seed, device=device, progress=False,
                )
                audit = mi_experiments.evaluate(model, train, test, fresh_statistics_steps=args.fresh_statistics_steps)
                keep = ("accuracy", "aligned_accuracy", "conflicting_accuracy", "mi_estimate", "mi_fresh_estimate",
                        "mi_floor", "bias_probe_accuracy", "bias_probe_chance")
                print(json.dumps({
                    "settings": options, "colour_variance": variance, "seed": seed,
                    "epochs": options.get("epochs", args.epochs), "train_size": len(train), "test_size": len(test),
                    **{key: round(audit[key], 3) for key in keep if key in audit},
                    "test_accuracy_per_epoch": [round(value, 3) for value in history["test_accuracy"]],
                    "seconds": round(time.perf_counter() - start, 1), "device": device_name,
                }), flush=True)


if __name__ == "__main__":
    main()
