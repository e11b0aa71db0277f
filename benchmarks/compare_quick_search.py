"""Chapter 6 (the comparison), sizing the quick profile: one method on the protocol's Coloured MNIST (or Adult)
with hyperparameters and sizes changed from the command line, one JSON line per (rho, seed).

    OMP_NUM_THREADS=1 FAIRLAB_PROFILE=quick python benchmarks/compare_quick_search.py METHOD \
        [--dataset cmnist] [--ratios 0.01 0.05] [--seeds 0 1] [--set epochs=8 lr=1e-3] [--sizes train=4000]

Values are read as JSON where they parse. The protocol's settings are ``protocol("comparison")``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("FAIRLAB_PROFILE", "quick")

from fairlab.experiments import comparison  # noqa: E402

KEEP = ("accuracy", "conflicting_accuracy", "worst_group_accuracy", "worst_cell_accuracy", "dp", "eo", "hgr",
        "probe_accuracy", "seconds")


def parse(pairs) -> dict:
    out = {}
    for pair in pairs or ():
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method")
    parser.add_argument("--dataset", default="cmnist")
    parser.add_argument("--ratios", type=float, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--sizes", nargs="*", default=[])
    args = parser.parse_args()
    overrides, sizes = parse(args.set), parse(args.sizes)
    where = comparison.settings(args.dataset)
    where["sizes"].update(sizes)
    ratios = args.ratios or (where["ratios"] if args.dataset == "cmnist" else [None])
    generators = {}
    for rho in ratios:
        splits = {seed: comparison.splits_for(args.dataset, seed, where, rho) for seed in args.seeds}
        start = time.perf_counter()
        rows, _ = comparison.run_method(args.method, args.dataset, args.seeds, bias_conflicting_ratio=rho,
                                        splits=splits, generators=generators, **overrides)
        wall = time.perf_counter() - start
        for row in rows:
            print(json.dumps({"method": args.method, "rho": rho, "seed": row["seed"], "set": overrides,
                              "sizes": sizes, **{k: round(float(row[k]), 4) for k in KEEP if k in row},
                              "wall_all_seeds": round(wall, 1)}), flush=True)


if __name__ == "__main__":
    main()
