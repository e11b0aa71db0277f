"""How robust is each chapter's quick-profile effect? The method's margin over its baseline, per seed.

    FAIRLAB_DATA=... python benchmarks/quick_margins.py sih --seeds 0 1 2 3 4 > benchmarks/results/quick_margins_sih.txt

sih: chapter 4's quick protocol (``protocol("signal_is_harder", "quick")``: 10,000 images, rho 1% and 2%, batches of 128,
vanilla 5 / LfF 10 / SiH 15 epochs) once per seed;
prints the bias-conflicting test accuracy of vanilla, LfF and SiH and the margins LfF - vanilla and SiH - vanilla.
The chapter asserts SiH > vanilla at every ratio it shows; this prints how wide that is on each seed.

mi: chapter 2's quick protocol (``protocol("mi_backprop", "quick")``: 4,000 images, 4 epochs, the game at lr
1e-4) once per seed and colour variance; prints the random-colour test accuracy of lambda = 0 and lambda = 1 and
their difference, with the fresh probe's accuracy at reading the colour beside it.

ns: chapter 3's quick protocol (``protocol("null_sampling", "quick")``, ``sweep_cmnist``) with the chapter's
variances for every seed given; prints the test accuracy, worst-group accuracy and colour probe of the raw-data CNN,
the cVAE and cFlow, and each model's margin over the raw-data CNN.
"""
from __future__ import annotations

import argparse
import time

import torch

from fairlab import config
from fairlab.experiments import mi_backprop
from fairlab.experiments import null_sampling
from fairlab.experiments import signal_is_harder as sih
from fairlab.protocols import protocol


def sih_margins(seeds, device) -> None:
    settings = protocol("signal_is_harder", "quick")
    ratios, _ = settings.pop("ratios"), settings.pop("seeds")
    start = time.perf_counter()
    runs, _ = sih.compare_methods(ratios, seeds, device=device, **settings)
    table = runs.pivot_table(index=["rho", "seed"], columns="method", values="conflicting_accuracy") * 100
    table["lff - vanilla"] = table["lff"] - table["vanilla"]
    table["sih - vanilla"] = table["sih"] - table["vanilla"]
    print(f"conflicting test accuracy (%), chapter 4 quick protocol {protocol('signal_is_harder', 'quick')}")
    print(table.round(2).to_string())
    print(f"smallest SiH margin {table['sih - vanilla'].min():.2f} points, smallest LfF margin "
          f"{table['lff - vanilla'].min():.2f}; {time.perf_counter() - start:.0f} s")


def mi_margins(seeds, device) -> None:
    chapter = protocol("mi_backprop", "quick")
    arms = {"lambda=0": {"mi_weight": 0.0}, "lambda=1": {"mi_weight": 1.0}}
    start = time.perf_counter()
    runs = mi_backprop.kim_sweep(
        chapter["variances"], arms, seeds, subsample=chapter["subsample"],
        test_subsample=chapter["test_subsample"], epochs=chapter["epochs"], device=device, progress=False,
        **chapter["game"],
    )
    table = runs.pivot_table(index=["colour_variance", "seed"], columns="arm",
                             values=["accuracy", "bias_probe_accuracy"]) * 100
    table.columns = [f"{arm} {'accuracy' if value == 'accuracy' else 'probe'}" for value, arm in table.columns]
    table["lambda=1 - lambda=0"] = table["lambda=1 accuracy"] - table["lambda=0 accuracy"]
    print(f"random-colour test accuracy and colour-probe accuracy (%), chapter 2 quick protocol {chapter}")
    print(table.round(2).to_string())
    print(f"smallest margin {table['lambda=1 - lambda=0'].min():.2f} points; {time.perf_counter() - start:.0f} s")


def ns_margins(seeds, device) -> None:
    chapter = protocol("null_sampling", "quick")
    start = time.perf_counter()
    rows = []
    for seed in seeds:  # sweep_cmnist reads the seeds from the protocol: one seed at a time
        for variance in chapter["variances"]:
            splits = null_sampling.cmnist_splits(variance, seed, "quick")
            methods = ["cnn", "cvae"] + (["cflow"] if variance in chapter["cflow_variances"] else [])
            for method in methods:
                result, _, _ = null_sampling.run_cmnist(method, variance, seed, profile="quick", splits=splits,
                                                        device=device, progress=False)
                result.pop("predictions")
                rows.append(result)
                print(f"seed {seed} variance {variance} {method}: accuracy {result['accuracy']:.3f} worst group "
                      f"{result['worst_group_accuracy']:.3f} colour probe {result['colour_probe']:.3f}", flush=True)
    import pandas as pd

    runs = pd.DataFrame(rows)
    table = runs.pivot_table(index=["colour_variance", "seed"], columns="method",
                             values=["accuracy", "worst_group_accuracy", "colour_probe"])
    table.columns = [f"{method} {value.replace('worst_group_accuracy', 'wga')}" for value, method in table.columns]
    for method in ("cvae", "cflow"):
        if f"{method} accuracy" in table:
            table[f"{method} - cnn"] = table[f"{method} accuracy"] - table["cnn accuracy"]
    print(f"chapter 3 quick protocol {chapter}")
    print(table.round(3).to_string())
    lowest = runs[(runs.method == "cvae") & (runs.colour_variance == 0.02)].accuracy.min()
    print(f"smallest cVAE margin {table['cvae - cnn'].min():.3f}; lowest cVAE accuracy at 0.02 {lowest:.3f}; "
          f"{time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("method", choices=("sih", "mi", "ns"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else config.device()
    print(config.run_info())
    {"sih": sih_margins, "mi": mi_margins, "ns": ns_margins}[args.method](args.seeds, device)


if __name__ == "__main__":
    main()
