"""Adult search for chapter 5's w_Y bounds: ERM against the classifier on w_Y, per seed, with per-group rates.

    python benchmarks/fls_adult_search.py --seeds 0 2 --set module.independence_weight=3 ... [--out FILE]

Same settings and overrides as benchmarks/fls_margins.py (``section.key=value``, value read as JSON), Adult only,
without the counterfactual records (the four bounds only). Each row also carries the test split's base rates
P(y=1|s) and ERM's and w_Y's per-group TPR / FPR. Rows are printed and, with --out, appended to FILE.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

os.environ.setdefault("FAIRLAB_PROFILE", "quick")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fls_margins import parse_sets  # noqa: E402

from fairlab.experiments import fair_latent_space as fls_exp  # noqa: E402
from fairlab.train import predict  # noqa: E402


def group_rates(y: torch.Tensor, s: torch.Tensor, pred: torch.Tensor) -> dict:
    out = {}
    for g in (0, 1):
        in_g = s == g
        out[f"tpr_s{g}"] = round(float(pred[in_g & (y == 1)].float().mean()), 4)
        out[f"fpr_s{g}"] = round(float(pred[in_g & (y == 0)].float().mean()), 4)
        out[f"pos_s{g}"] = round(float(pred[in_g].float().mean()), 4)
    return out


def measure(seed: int, overrides: dict) -> dict:
    settings = fls_exp.chapter_settings("adult")
    for section, values in overrides.items():
        settings[section].update(values)
    start = time.perf_counter()
    run = fls_exp.run_experiment("adult", seed=seed, settings=settings, progress=False)
    row = {"seed": seed}
    for name in ("ERM", "w_Y"):
        for key, value in run.table.loc[name].items():
            row[f"{name}_{key}"] = round(float(value), 4)
    row["module_seconds"] = round(run.module_seconds, 1)
    test = run.test
    y, s = test.y.long().cpu(), test.s.long().cpu()
    for g in (0, 1):
        row[f"base_rate_s{g}"] = round(float((y[s == g] == 1).float().mean()), 4)
        row[f"n_s{g}"] = int((s == g).sum())
    w_test = fls_exp.label_part(run.module, run.test_z)
    for name, data in (("ERM", test), ("w_Y", w_test)):
        pred = predict(run.classifiers[name], data)
        pred = torch.as_tensor(pred).long().cpu().reshape(-1)
        for key, value in group_rates(y, s, pred).items():
            row[f"{name}_{key}"] = value
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--set", nargs="*", dest="sets", default=[])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    overrides = parse_sets(args.sets)
    lines = ["# --set " + " ".join(args.sets) if args.sets else "# --set (none: the committed quick protocol)"]
    print(lines[0], flush=True)
    for seed in args.seeds:
        row = measure(seed, overrides)
        ok = (row["w_Y_dp"] <= 0.6 * row["ERM_dp"], row["w_Y_accuracy"] >= row["ERM_accuracy"] - 0.05,
              row["w_Y_eo"] < row["ERM_eo"], row["w_Y_worst_group_accuracy"] > row["ERM_worst_group_accuracy"])
        row["bounds_dp_acc_eo_wg"] = "".join("Y" if b else "n" for b in ok)
        line = json.dumps(row)
        print(line, flush=True)
        lines.append(line)
        if args.out:
            with open(args.out, "a") as f:
                if len(lines) == 2:
                    f.write(lines[0] + "\n")
                f.write(line + "\n")


if __name__ == "__main__":
    main()
