"""Command line: ``python -m fairlab run <method> ...`` and ``python -m fairlab data check``.

``run`` trains one method on one data set and prints one JSON line of test-split metrics with fixed keys:
accuracy, aligned_accuracy, conflicting_accuracy, worst_group_accuracy, seconds, dp and eo (binary s only), hgr,
plus the method's own extras.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

DATASETS = ("cmnist-lff", "cmnist-kim", "cmnist-nifr", "adult")


def load_datasets(args):
    """(train, test) for the command line's data-set arguments."""
    from fairlab.data import adult, coloured_mnist

    if args.dataset == "adult":
        if args.eta is None:
            return adult("train", seed=args.seed), adult("test", seed=args.seed)
        return (adult("train", protocol="nifr", eta=args.eta, seed=args.seed),
                adult("test", protocol="nifr", seed=args.seed))
    protocol = args.dataset.removeprefix("cmnist-")
    options = {}
    if protocol == "lff":
        options["bias_conflicting_ratio"] = args.bias_conflicting_ratio
        options["colour_std"] = args.colour_std
    else:
        options["colour_variance"] = args.colour_variance
    train = coloured_mnist(protocol, "train", seed=args.seed, subsample=args.subsample, **options)
    options.pop("bias_conflicting_ratio", None)
    test = coloured_mnist(protocol, "test", seed=args.seed, **options)
    return train, test


def build_parser() -> argparse.ArgumentParser:
    from fairlab.methods import METHODS

    parser = argparse.ArgumentParser(prog="python -m fairlab", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train a method and print test metrics as one JSON line")
    methods = run.add_subparsers(dest="method", required=True)
    for name, module_name in METHODS.items():
        module = importlib.import_module(module_name)
        sub = methods.add_parser(name, help=(module.__doc__ or "").strip().split("\n")[0])
        sub.add_argument("--dataset", choices=DATASETS, default="cmnist-lff")
        sub.add_argument("--bias-conflicting-ratio", type=float, default=0.01, help="rho, cmnist-lff only")
        sub.add_argument("--colour-std", type=float, default=None, help="colour jitter sigma, cmnist-lff only")
        sub.add_argument("--colour-variance", type=float, default=None, help="sigma^2, cmnist-kim / cmnist-nifr")
        sub.add_argument("--eta", type=float, default=None, help="Adult: use the null-sampling protocol with this eta")
        sub.add_argument("--subsample", type=int, default=None, help="train on a random subset of this size")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--epochs", type=int, default=None, help="default: the profile's")
        sub.add_argument("--batch-size", type=int, default=256)
        sub.add_argument("--profile", choices=("quick", "full"), default=None, help="overrides FAIRLAB_PROFILE")
        sub.add_argument("--device", default=None, help="overrides FAIRLAB_DEVICE (cpu, cuda, ...)")
        module.add_cli_arguments(sub)
        sub.set_defaults(module=module)
    data = commands.add_parser("data", help="data-folder utilities")
    data.add_argument("action", choices=("check",), help="check: verify every raw file and its md5")
    return parser


def run(args) -> dict:
    from fairlab import config, metrics

    # --profile / --device override the environment for everything this process does
    if args.profile:
        os.environ["FAIRLAB_PROFILE"] = args.profile
    if args.device:
        os.environ["FAIRLAB_DEVICE"] = args.device
    args.profile = config.profile()
    config.seed_everything(args.seed)
    train, test = load_datasets(args)
    start = time.perf_counter()
    predictions, extras = args.module.cli_run(args, train, test)
    seconds = time.perf_counter() - start
    result = metrics.summary(test.y, predictions, sensitive_features=test.group, aligned=test.aligned)
    result["seconds"] = round(seconds, 3)
    result.update(method=args.method, dataset=args.dataset, seed=args.seed, profile=args.profile)
    result.update(extras)
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "data":
        from fairlab import config
        from fairlab.data import check_data

        rows = check_data()
        for row in rows:
            print(f"{row['status']:>9}  {row['path']}")
        bad = [r for r in rows if r["status"] != "ok"]
        print(f"data root {config.data_root()}: {len(rows) - len(bad)}/{len(rows)} files ok")
        return 1 if bad else 0
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
