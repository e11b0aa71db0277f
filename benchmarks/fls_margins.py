"""Chapter 5's margins over seeds: the classifier on w_Y against plain ERM on the same data, and what the
counterfactuals change, per data set and module seed (one JSON line per cell, then a table).

    python benchmarks/fls_margins.py [--datasets cmnist-binary adult] [--seeds 0 1 2 3 4]
                                     [--set module.epochs=20 data.correlation=0.95 ...]

Settings follow ``protocol("fair_latent_space", FAIRLAB_PROFILE)`` (quick by default here), with ``--set`` overriding
any entry (``section.key=value``, the value read as JSON). The generators are trained once per training set and
cached in ``FAIRLAB_CHECKPOINTS`` (use a scratch folder). The bounds the chapter asserts are printed under the
table.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import pandas as pd
import torch

os.environ.setdefault("FAIRLAB_PROFILE", "quick")

from fairlab import config  # noqa: E402
from fairlab.experiments import fair_latent_space as fls_exp  # noqa: E402


def parse_sets(pairs) -> dict:
    out = {}
    for pair in pairs or ():
        key, value = pair.split("=", 1)
        section, name = key.split(".", 1)
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        out.setdefault(section, {})[name] = value
    return out


def measure(dataset: str, seed: int, overrides: dict) -> dict:
    settings = fls_exp.chapter_settings(dataset)
    for section, values in overrides.items():
        settings[section].update(values)
    start = time.perf_counter()
    run = fls_exp.run_experiment(dataset, seed=seed, settings=settings, progress=False)
    row = {"dataset": dataset, "seed": seed}
    for name, values in run.table.iterrows():
        for key, value in values.items():
            row[f"{name}_{key}"] = round(float(value), 4)
    row["module_seconds"] = round(run.module_seconds, 1)
    if dataset == "adult":
        names = run.test.info["feature_names"]
        stats = fls_exp.adult_stats()
        tables = fls_exp.counterfactual_records(run.generator.model, run.module, run.test_z, names, stats)
        row["records_in_domain"] = bool(all(fls_exp.in_domain(t, stats, names).all() for t in tables.values()))
    else:
        judge_train = fls_exp.judge_data(dataset, seed=seed, settings=settings)
        for tag, generator in (("", None), ("rec_", run.generator.model)):
            judges = fls_exp.fit_judges(judge_train, settings["judge"], seed=seed, generator=generator)
            report = fls_exp.counterfactual_report(run.generator.model, run.module, run.test_z, judges)
            for kind, where in (("flip_s", 0), ("move_y", 1)):
                for who in "sy":
                    value = report.iloc[where][f"{who} changes (judge)"]
                    row[f"{tag}{kind}_{who}_change"] = round(float(value), 4)
        row.update(judge_controls(run, judges))
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def bounds(dataset: str, part: pd.DataFrame) -> pd.Series:
    """Which of the chapter's bounds hold on every seed."""
    checks = {
        "w_Y eo < ERM eo": part["w_Y_eo"] < part["ERM_eo"],
        "w_Y worst group > ERM's": part["w_Y_worst_group_accuracy"] > part["ERM_worst_group_accuracy"],
    }
    if dataset == "adult":
        checks["w_Y dp <= 0.6 ERM dp"] = part["w_Y_dp"] <= 0.6 * part["ERM_dp"]
        checks["accuracy lost <= 0.05"] = part["ERM_accuracy"] - part["w_Y_accuracy"] <= 0.05
        checks["records in domain"] = part["records_in_domain"].astype(bool)
    else:
        for tag in ("", "rec_"):
            if f"{tag}flip_s_s_change" in part:
                checks[f"{tag}w_S move: s changes >= 0.9"] = part[f"{tag}flip_s_s_change"] >= 0.9
                checks[f"{tag}w_S move: y changes <= 0.1"] = part[f"{tag}flip_s_y_change"] <= 0.1
    return pd.Series({k: f"{int(v.sum())}/{len(v)}" for k, v in checks.items()}, name="seeds where it holds")


@torch.no_grad()
def judge_controls(run, judges, n: int = 1000) -> dict:
    """What the judges (trained on reconstructions) are worth: their accuracy on the test reconstructions, and how
    often the digit judge changes its mind when w_R (which should hold neither y nor s) is moved as far as the
    counterfactual moves w_S, in a random direction: the share of y changes any move of that size causes."""
    generator, module = run.generator.model, run.module
    z, s = run.test_z.x[:n], run.test_z.s[:n]
    x_rec = generator.decode(z)
    out = {f"rec_judge_{who}_accuracy": round(float((judges[who](x_rec).argmax(1) == getattr(run.test_z, who)[:n])
                                                    .float().mean()), 4) for who in "ys"}
    w = module.transform(z)[0]
    k, j, _ = module.sizes
    size = (module.sensitive_means[1 - s] - module.sensitive_means[s]).norm(dim=1, keepdim=True)
    direction = torch.randn(n, w.shape[1] - k - j, generator=torch.Generator().manual_seed(0))
    moved = w.clone()
    moved[:, k + j:] += direction / direction.norm(dim=1, keepdim=True) * size
    x_moved = generator.decode(module.inverse(moved))
    for who in "ys":
        changed = judges[who](x_moved).argmax(1) != judges[who](x_rec).argmax(1)
        out[f"rec_move_r_{who}_change"] = round(float(changed.float().mean()), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["cmnist-binary", "adult"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", nargs="*", dest="sets", default=[])
    args = parser.parse_args()
    overrides = parse_sets(args.sets)
    print(config.run_info(), flush=True)
    print(json.dumps({"profile": config.profile(), "overrides": overrides}), flush=True)
    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            row = measure(dataset, seed, overrides)
            rows.append(row)
            print(json.dumps(row), flush=True)
    frame = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        for dataset, part in frame.groupby("dataset", sort=False):
            print(f"\n{dataset}")
            print(part.drop(columns="dataset").set_index("seed").dropna(axis=1, how="all").T.to_string())
            print(bounds(dataset, part).to_string())


if __name__ == "__main__":
    main()
