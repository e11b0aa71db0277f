"""Search for quick-profile null-sampling settings on a CPU (chapter 3): which cVAE / cFlow settings remove the
colour within minutes. One JSON line per run: the generative model's settings, seconds, a linear probe's accuracy at
reading s from the test null-samples (chance about 0.1), and the downstream CNN's test accuracy on null-samples.

    OMP_NUM_THREADS=1 python benchmarks/ns_quick_search.py cvae '{"beta": 1.0}' --variance 0.02 --seed 0
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from fairlab import metrics
from fairlab.experiments import null_sampling as E
from fairlab.methods import null_sampling as ns


def colour_features(x: torch.Tensor) -> torch.Tensor:
    """What a probe of the colour reads: the image average-pooled to 4x4 per channel (48 numbers)."""
    return F.adaptive_avg_pool2d(x, 4).flatten(1)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("method", choices=("cvae", "cflow", "cnn"))
    parser.add_argument("options", nargs="?", default="{}")
    parser.add_argument("--variance", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", default="6000,6000,3000")
    parser.add_argument("--downstream", default='{"architecture": "conv", "width": 8, "epochs": 2, "batch_size": 64}')
    parser.add_argument("--out", default=None)
    parser.add_argument("--save", default=None, help="save the trained generative model here (torch.save)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rep, tr, te = (int(v) for v in args.sizes.split(","))
    from fairlab.data import coloured_mnist
    splits = {name: coloured_mnist("nifr", name, colour_variance=args.variance, seed=args.seed, subsample=n)
              for name, n in (("representative", rep), ("train", tr), ("test", te))}
    options = json.loads(args.options)
    start = time.perf_counter()
    model = history = None
    row = {"method": args.method, "variance": args.variance, "seed": args.seed, "sizes": args.sizes,
           "downstream": args.downstream, **options}
    if args.method != "cnn":
        fit_fn = ns.fit_cflow if args.method == "cflow" else ns.fit_cvae
        model, history = fit_fn(splits["representative"], seed=args.seed, progress=False, **options)
        row["fit_seconds"] = round(time.perf_counter() - start, 1)
        row["adversary_accuracy"] = round(float(history["adversary_accuracy"].tail(20).mean()), 3)
        if args.save:
            torch.save(model, args.save)
        train, test = ns.null_sample_dataset(model, splits["train"]), ns.null_sample_dataset(model, splits["test"])
    else:
        train, test = splits["train"], splits["test"]
    row["probe_s_test"] = round(metrics.probe_accuracy(colour_features(test.x), test.s)["accuracy"], 3)
    row["probe_s_train_y"] = round(metrics.probe_accuracy(colour_features(train.x), train.y)["accuracy"], 3)
    t = time.perf_counter()
    downstream = {**ns.downstream_options(), "lr": 1e-3, **json.loads(args.downstream)}
    classifier = ns.fit_downstream(train, seed=args.seed, progress=False, **downstream)
    from fairlab.train import predict
    predictions = predict(classifier, test)
    summary = metrics.summary(test.y, predictions, sensitive_features=test.group, aligned=test.aligned)
    row.update(downstream_seconds=round(time.perf_counter() - t, 1), accuracy=round(summary["accuracy"], 3),
               worst_group_accuracy=round(summary["worst_group_accuracy"], 3), hgr=round(summary["hgr"], 3))
    line = json.dumps(row)
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    if model is not None and args.save:
        torch.save(model.cpu(), args.save)


if __name__ == "__main__":
    main()
