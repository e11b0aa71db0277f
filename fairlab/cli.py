"""Command line: ``python -m fairlab run <method> ...`` and ``python -m fairlab data check``.

``run`` trains one method on one data set and prints one JSON line of test-split metrics with fixed keys:
accuracy, aligned_accuracy, conflicting_accuracy, worst_group_accuracy, seconds, dp and eo (binary s only), hgr,
plus the method's own extras.

Errors: fairlab's own (``FairlabError``: missing data, no such device, a diverged run) and bad values
(``ValueError``) print as ``fairlab: error: <what is wrong and how to fix it>`` on stderr, exit status 1 (2 for
options that do not fit together, like argparse's own errors); ``--debug`` or ``FAIRLAB_DEBUG=1`` shows the
traceback instead. Ctrl-C prints ``interrupted`` and exits 130. Counts, data-set options, NaN values and the
device are checked before any data is built.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time

DATASETS = ("cmnist-lff", "cmnist-kim", "cmnist-nifr", "cmnist-binary", "adult")
# the data sets that take each data-set option: given to another data set, an option is an error, never ignored
DATASET_OPTIONS = {
    "bias_conflicting_ratio": ("cmnist-lff",),
    "colour_std": ("cmnist-lff",),
    "colour_variance": ("cmnist-kim", "cmnist-nifr"),
    "eta": ("adult",),
    "correlation": ("cmnist-binary",),
}


class UsageError(ValueError):
    """Command-line options that do not fit together (exit status 2, like argparse's errors)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value}")
    return value


def check_options(args) -> None:
    """Every check that needs no data: options that do not apply to the data set, NaN/inf values, a subsample
    smaller than one batch. Raises ``UsageError``."""
    for key, value in vars(args).items():
        # no option of any method means anything as NaN or inf (--lr nan, --colour-variance inf...)
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"--{key.replace('_', '-')} must be a finite number, got {value}.")
    for key, takers in DATASET_OPTIONS.items():
        if getattr(args, key, None) is not None and args.dataset not in takers:
            raise UsageError(f"--{key.replace('_', '-')} does not apply to --dataset {args.dataset}; only "
                             f"{' and '.join(takers)} take{'s' if len(takers) == 1 else ''} it.")
    if args.subsample is not None and args.batch_size is not None and args.subsample < args.batch_size:
        raise UsageError(f"--subsample {args.subsample} is fewer than one batch (--batch-size {args.batch_size}): "
                         "raise --subsample or lower --batch-size.")


def fill_unset(args, **values) -> None:
    """Set each option the command line left unset (None) to ``values[option]``; what the user gave is kept. Used
    by the methods' ``cli_defaults`` to fill options from their chapter's protocol."""
    for key, value in values.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def load_datasets(args):
    """(train, test) for the command line's data-set arguments."""
    from fairlab.data import adult, binary_coloured_mnist, coloured_mnist

    if args.dataset == "cmnist-binary":
        # y = digit >= 5, s = one of two colours, P(s = y) = --correlation in both splits
        correlation = 0.9 if args.correlation is None else args.correlation
        return (binary_coloured_mnist("train", correlation=correlation, seed=args.seed, subsample=args.subsample),
                binary_coloured_mnist("test", correlation=correlation, seed=args.seed))
    if args.dataset == "adult":
        if args.eta is None:
            return adult("train", seed=args.seed, subsample=args.subsample), adult("test", seed=args.seed)
        return (adult("train", protocol="nifr", eta=args.eta, seed=args.seed, subsample=args.subsample),
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
    debug_help = "show the Python traceback of an error (also FAIRLAB_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train a method and print test metrics as one JSON line")
    methods = run.add_subparsers(dest="method", required=True)
    for name, module_name in METHODS.items():
        module = importlib.import_module(module_name)
        sub = methods.add_parser(name, help=(module.__doc__ or "").strip().split("\n")[0])
        sub.add_argument("--dataset", choices=DATASETS, default="cmnist-lff")
        sub.add_argument("--bias-conflicting-ratio", type=float, default=None,
                         help="rho, cmnist-lff only (default 0.01)")
        sub.add_argument("--colour-std", type=float, default=None, help="colour jitter sigma, cmnist-lff only")
        sub.add_argument("--colour-variance", type=float, default=None, help="sigma^2, cmnist-kim / cmnist-nifr")
        sub.add_argument("--eta", type=float, default=None, help="Adult: use the null-sampling protocol with this eta")
        sub.add_argument("--correlation", type=float, default=None,
                         help="P(s = y), cmnist-binary only (default 0.9)")
        sub.add_argument("--subsample", type=_positive_int, default=None,
                         help="train on a random subset of this size")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--epochs", type=_positive_int, default=None, help="default: the profile's")
        sub.add_argument("--batch-size", type=_positive_int, default=None,
                         help="default: the method's protocol, else 256")
        sub.add_argument("--profile", choices=("quick", "full"), default=None, help="overrides FAIRLAB_PROFILE")
        sub.add_argument("--device", default=None, help="overrides FAIRLAB_DEVICE (cpu, cuda, ...)")
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        module.add_cli_arguments(sub)
        sub.set_defaults(module=module)
    data = commands.add_parser("data", help="data-folder utilities")
    data.add_argument("action", choices=("check",), help="check: verify every raw file and its md5")
    data.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def run(args) -> dict:
    from fairlab import config, metrics

    # everything that needs no data is checked first: a typo fails in a second, not after the data is built
    check_options(args)
    if args.device:
        config.parse_device(args.device, "--device")
    # --profile / --device override the environment for everything this process does
    if args.profile:
        os.environ["FAIRLAB_PROFILE"] = args.profile
    if args.device:
        os.environ["FAIRLAB_DEVICE"] = args.device
    config.check_environment()
    args.profile = config.profile()
    # a method's chapter protocol fills what the command line left unset (epochs, learning rate, ...)
    if hasattr(args.module, "cli_defaults"):
        args.module.cli_defaults(args)
    fill_unset(args, batch_size=256)
    check_options(args)
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
    from fairlab import config
    from fairlab.errors import FairlabError

    show_traceback = False
    try:
        args = build_parser().parse_args(argv)
        show_traceback = args.debug or config.debug()
        return command(args)
    except KeyboardInterrupt:
        if show_traceback:
            raise
        # nothing is half-written: the JSON line comes last, checkpoints are written to a temp file and renamed
        print("interrupted", file=sys.stderr)
        return 130
    except (FairlabError, ValueError) as error:
        if show_traceback:
            raise
        # the message's first line is the error; data errors go on with the files expected and how to get them
        print(f"fairlab: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1


def command(args) -> int:
    """Run the parsed command; its exit status."""
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
