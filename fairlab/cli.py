"""Command line: ``python -m fairlab run <method>``, ``compare``, ``sweep`` and ``data check``.

``run`` trains one method (``fairlab.methods.METHODS``) on one data set and prints one JSON line of test-split
metrics per seed, with fixed keys: accuracy, aligned_accuracy, conflicting_accuracy, worst_group_accuracy, seconds,
dp and eo (binary s only), hgr, method, dataset, seed, profile, plus the method's own numbers (its ``summary``).
A method's options are built from its ``hparams`` fields; an option left unset takes the chapter's protocol for the
profile (``fairlab.protocols.cli_defaults``), else the method's default. ``--seeds 0 1 2`` trains one run per seed,
stacked in one process where the method can. ``sweep`` runs a grid of such runs through submitit (``fairlab.sweep``).
``compare --dataset cmnist|adult`` runs every method on chapter 6's protocol (``fairlab.experiments.comparison``):
one JSON line per (method, seed), then the table.

Errors: fairlab's own (``FairlabError``: missing data, no such device, a diverged run) and bad values
(``ValueError``) print as ``fairlab: error: <what is wrong and how to fix it>`` on stderr, exit status 1 (2 for
options that do not fit together, like argparse's own errors); ``--debug`` or ``FAIRLAB_DEBUG=1`` shows the
traceback instead. Ctrl-C prints ``interrupted`` and exits 130. Counts, data-set options, NaN values and the
device are checked before any data is built.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

DATASETS = ("cmnist-lff", "cmnist-kim", "cmnist-nifr", "cmnist-binary", "adult", "celeba")
# the data sets that take each data-set option: given to another data set, an option is an error, never ignored
DATASET_OPTIONS = {
    "bias_conflicting_ratio": ("cmnist-lff",),
    "colour_std": ("cmnist-lff",),
    "colour_variance": ("cmnist-kim", "cmnist-nifr"),
    "eta": ("adult", "celeba"),
    "correlation": ("cmnist-binary",),
    "test_correlation": ("cmnist-binary",),
    "test_subsample": ("celeba",),
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
    flags = getattr(args, "flags", {})
    for key, value in vars(args).items():
        # no option of any method means anything as NaN or inf (--lr nan, --colour-variance inf...)
        if isinstance(value, float) and not math.isfinite(value):
            flag = flags.get(key, "--" + key.replace("_", "-"))
            raise UsageError(f"{flag} must be a finite number, got {value}.")
    for key, takers in DATASET_OPTIONS.items():
        if getattr(args, key, None) is not None and args.dataset not in takers:
            raise UsageError(f"--{key.replace('_', '-')} does not apply to --dataset {args.dataset}; only "
                             f"{' and '.join(takers)} take{'s' if len(takers) == 1 else ''} it.")
    batch_size = getattr(args, "batch_size", None)
    if args.subsample is not None and batch_size is not None and args.subsample < batch_size:
        raise UsageError(f"--subsample {args.subsample} is fewer than one batch (--batch-size {batch_size}): "
                         "raise --subsample or lower --batch-size.")


def load_datasets(args, seed: int | None = None):
    """(train, test) for the command line's data-set arguments (``seed``: default ``args.seed``)."""
    from fairlab.data import adult, binary_coloured_mnist, coloured_mnist

    if seed is not None:
        args = argparse.Namespace(**{**vars(args), "seed": seed})

    if args.dataset == "cmnist-binary":
        # y = digit >= 5, s = one of two colours, P(s = y) = --correlation (the test split: --test-correlation)
        correlation = 0.9 if args.correlation is None else args.correlation
        test_correlation = correlation if args.test_correlation is None else args.test_correlation
        return (binary_coloured_mnist("train", correlation=correlation, seed=args.seed, subsample=args.subsample),
                binary_coloured_mnist("test", correlation=test_correlation, seed=args.seed))
    if args.dataset == "adult":
        if args.eta is None:
            return adult("train", seed=args.seed, subsample=args.subsample), adult("test", seed=args.seed)
        return (adult("train", protocol="nifr", eta=args.eta, seed=args.seed, subsample=args.subsample),
                adult("test", protocol="nifr", seed=args.seed))
    if args.dataset == "celeba":  # the null-sampling splits; eta defaults to 1 (only s != y), the paper's headline
        from fairlab.data import celeba

        eta = 1.0 if args.eta is None else args.eta
        return (celeba("train", eta=eta, seed=args.seed, subsample=args.subsample),
                celeba("test", seed=args.seed, subsample=getattr(args, "test_subsample", None)))
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


def load_representative(args, seed: int):
    """The representative split (x and s, s independent of y) for methods that need one (null-sampling)."""
    from fairlab.data import adult, coloured_mnist

    if args.dataset == "adult":
        return adult("representative", protocol="nifr", seed=seed)
    if args.dataset == "celeba":
        from fairlab.data import celeba

        return celeba("representative", seed=seed, subsample=args.representative_subsample)
    return coloured_mnist("nifr", "representative", colour_variance=args.colour_variance, seed=seed,
                          subsample=args.representative_subsample)


def _hparam_option(parser, field, value_type) -> str:
    """Add one hyperparameter's option (``--field-name``, or the field's ``flag``); returns the flag."""
    meta = field.metadata
    flag = meta.get("flag", "--" + field.name.replace("_", "-"))
    help_text = f"{meta.get('help', '')} (method default: {field.default})"
    options = dict(dest=field.name, default=None, help=help_text)
    if value_type is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        return flag
    if meta.get("positive"):
        value_type = _positive_int
    parser.add_argument(flag, type=value_type, choices=meta.get("choices"), **options)
    return flag


def build_parser() -> argparse.ArgumentParser:
    import dataclasses

    from fairlab.methods import METHODS
    from fairlab.methods.base import field_types

    parser = argparse.ArgumentParser(prog="python -m fairlab", description=__doc__.split("\n")[0])
    debug_help = "show the Python traceback of an error (also FAIRLAB_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train a method and print test metrics as one JSON line per seed")
    methods = run.add_subparsers(dest="method", required=True)
    for name, record in METHODS.items():
        sub = methods.add_parser(
            name, help=record.description, description=f"{record.description} Needs: {', '.join(record.needs)}. "
            "Unset options take the chapter's protocol for the profile, else the method's default (the "
            "paper's, where the paper gives one).")
        default_dataset = "cmnist-lff" if "cmnist-lff" in record.datasets else record.datasets[0]
        data = sub.add_argument_group("data")
        data.add_argument("--dataset", choices=record.datasets, default=default_dataset)
        data.add_argument("--bias-conflicting-ratio", type=float, default=None,
                          help="rho, cmnist-lff only (default 0.01)")
        data.add_argument("--colour-std", type=float, default=None, help="colour jitter sigma, cmnist-lff only")
        data.add_argument("--colour-variance", type=float, default=None, help="sigma^2, cmnist-kim / cmnist-nifr")
        data.add_argument("--eta", type=float, default=None,
                          help="Adult: use the null-sampling protocol with this eta; CelebA: its eta (default 1)")
        data.add_argument("--correlation", type=float, default=None,
                          help="P(s = y), cmnist-binary only (default 0.9)")
        data.add_argument("--test-correlation", type=float, default=None,
                          help="P(s = y) in the test split, cmnist-binary only (default: --correlation)")
        data.add_argument("--subsample", type=_positive_int, default=None,
                          help="train on a random subset of this size (default: the chapter's protocol)")
        if "celeba" in record.datasets:
            data.add_argument("--test-subsample", type=_positive_int, default=None,
                              help="celeba only: test on a random subset of this size (default: the chapter's "
                                   "protocol)")
        if "s_representative" in record.needs:
            data.add_argument("--representative-subsample", type=_positive_int, default=None,
                              help="images of the representative set (default: the chapter's protocol)")
        seeds = sub.add_mutually_exclusive_group()
        seeds.add_argument("--seed", type=int, default=0)
        seeds.add_argument("--seeds", type=int, nargs="+", default=None,
                           help="one run per seed (stacked in one process where the method can), one JSON line each")
        sub.add_argument("--profile", choices=("quick", "full"), default=None, help="overrides FAIRLAB_PROFILE")
        sub.add_argument("--device", default=None, help="overrides FAIRLAB_DEVICE (cpu, cuda, ...)")
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        group = sub.add_argument_group(f"{name} hyperparameters")
        types = field_types(record.hparams)
        flags = {}
        for field in dataclasses.fields(record.hparams):
            if field.metadata.get("cli", True):
                flags[field.name] = _hparam_option(group, field, types[field.name])
        sub.set_defaults(record=record, flags=flags)
    _sweep_parser(commands, debug_help)
    _compare_parser(commands, debug_help)
    data = commands.add_parser("data", help="data-folder utilities")
    data.add_argument("action", choices=("check",), help="check: verify every raw file and its md5")
    data.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def _sweep_parser(commands, debug_help: str) -> None:
    """``python -m fairlab sweep``'s options (the sweep itself is ``fairlab.sweep``)."""
    sweep = commands.add_parser(
        "sweep", help="a grid of runs through submitit (local processes, Slurm or in-process), resumable",
        description="Expand a grid of `fairlab run` runs and submit them through submitit; each finished run "
        "appends one JSON line to OUT/RESULTS.jsonl, and running the same sweep again skips the runs there.")
    sweep.add_argument("spec", nargs="?", help="a TOML (or YAML) file: profile, methods, datasets, seeds, grid, "
                       "set, out, [[part]] (see sweeps/)")
    grid = sweep.add_argument_group("the grid (on the command line, or replacing the spec's values)")
    grid.add_argument("--methods", nargs="+", default=None)
    grid.add_argument("--datasets", nargs="+", default=None)
    grid.add_argument("--seeds", type=int, nargs="+", default=None)
    grid.add_argument("--grid", action="append", default=[], metavar="OPTION=V1,V2",
                      help="sweep a run option over these values (repeatable)")
    grid.add_argument("--set", action="append", default=[], dest="fixed", metavar="OPTION=VALUE",
                      help="a fixed run option (repeatable)")
    grid.add_argument("--profile", choices=("quick", "full"), default=None,
                      help="the runs' profile (default: the spec's, else FAIRLAB_PROFILE)")
    grid.add_argument("--device", default=None, help="every run's --device (default: each worker's choice)")
    grid.add_argument("--out", default=None, help="the sweep's folder (default: the spec's out, else runs/SPEC)")
    how = sweep.add_argument_group("where the runs go")
    how.add_argument("--executor", choices=("local", "slurm", "debug"), default="local",
                     help="local: submitit's local processes; slurm: one Slurm job per cell; debug: in this process")
    how.add_argument("--workers", type=_positive_int, default=None,
                     help="local: runs at once (default: one per visible GPU, else one); slurm: array parallelism")
    how.add_argument("--retries", type=int, default=1, help="attempts after a failed one, per job (default 1)")
    how.add_argument("--partition", default=None, help="slurm: the partition")
    how.add_argument("--gpus-per-job", type=int, default=None, help="slurm: GPUs per job")
    how.add_argument("--time", default=None, help="slurm (and local): a job's time limit, minutes or D-HH:MM:SS")
    how.add_argument("--cpus-per-task", type=_positive_int, default=None, help="slurm: CPUs per job")
    sweep.add_argument("--status", action="store_true", help="print what is done, failed and pending; train nothing")
    sweep.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)


def _compare_parser(commands, debug_help: str) -> None:
    """``python -m fairlab compare``'s options (the protocol is ``fairlab.experiments.comparison``)."""
    compare = commands.add_parser(
        "compare", help="every method on one protocol (chapter 6): one JSON line per (method, seed), then the table",
        description="Train every method of the course on chapter 6's protocol for one data set and print one JSON "
        "line of test metrics per (method, bias strength, seed), then the table (mean ± sd over seeds). Sizes and "
        "schedules: the profile's (fairlab.protocols, entry 'comparison').")
    compare.add_argument("--dataset", choices=("cmnist", "adult"), default="cmnist",
                         help="cmnist: LfF's Coloured MNIST (y digit, s colour); adult: s sex, y income > 50K")
    compare.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the profile's")
    # checked by fairlab (one line, exit 2), not by argparse's choices: the list depends on the data set
    compare.add_argument("--methods", nargs="+", default=None, help="default: every method that runs on the data set")
    compare.add_argument("--bias-conflicting-ratio", type=float, nargs="+", default=None, dest="ratios",
                         metavar="RHO", help="cmnist only: the bias strengths (default: the profile's)")
    compare.add_argument("--profile", choices=("quick", "full"), default=None, help="overrides FAIRLAB_PROFILE")
    compare.add_argument("--device", default=None, help="overrides FAIRLAB_DEVICE (cpu, cuda, ...)")
    compare.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)


def compare(args) -> int:
    """``python -m fairlab compare``: check everything that needs no data, then run and print as runs finish."""
    from fairlab import config
    from fairlab.experiments import comparison

    for ratio in args.ratios or ():
        if not 0 < ratio < 1:  # also NaN
            raise UsageError(f"--bias-conflicting-ratio must lie in (0, 1), got {ratio}; e.g. 0.01 for 1%.")
    if args.ratios and args.dataset != "cmnist":
        raise UsageError(f"--bias-conflicting-ratio does not apply to --dataset {args.dataset}; only cmnist "
                         "takes it.")
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"--seeds repeats a seed: {' '.join(map(str, args.seeds))}.")
    if args.device:
        config.parse_device(args.device, "--device")
        os.environ["FAIRLAB_DEVICE"] = args.device
    if args.profile:
        os.environ["FAIRLAB_PROFILE"] = args.profile
    config.check_environment()
    profile = config.profile()
    try:
        comparison.check_methods(args.dataset, args.methods or (), profile)
    except ValueError as error:
        raise UsageError(str(error)) from None
    seeds = args.seeds if args.seeds is not None else comparison.settings(args.dataset, profile)["seeds"]

    def show(row: dict) -> None:
        print(json.dumps({**row, "profile": profile}), flush=True)

    runs = comparison.compare(args.dataset, seeds, args.methods, ratios=args.ratios, profile=profile,
                              on_result=show)
    print()
    print(comparison.comparison_table(runs).to_string())
    return 0


def prepare(args):
    """Check the options (no data is built), apply ``--profile`` / ``--device`` to this process, fill the options
    left unset from the chapter's protocol (``fairlab.protocols.cli_defaults``); returns ``(method, hp)``."""
    import dataclasses

    from fairlab import config
    from fairlab.protocols import cli_defaults

    record = args.record
    # everything that needs no data is checked first: a typo fails in a second, not after the data is built
    check_options(args)
    record.check_dataset(args.dataset)
    if "s_representative" in record.needs and args.dataset == "adult" and args.eta is None:
        raise UsageError(f"{record.name} needs a representative set: on --dataset adult give --eta E (the "
                         "null-sampling protocol's training split), or use --dataset cmnist-nifr.")
    if args.device:
        config.parse_device(args.device, "--device")
    # --profile / --device override the environment for everything this process does
    if args.profile:
        os.environ["FAIRLAB_PROFILE"] = args.profile
    if args.device:
        os.environ["FAIRLAB_DEVICE"] = args.device
    config.check_environment()
    args.profile = config.profile()
    # the chapter's protocol fills what the command line left unset (epochs, learning rate, subsample, ...)
    for key, value in cli_defaults(record.name, args.dataset, args.profile).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    check_options(args)
    names = [f.name for f in dataclasses.fields(record.hparams)]
    hp = record.hp(**{name: getattr(args, name) for name in names if getattr(args, name, None) is not None})
    return record, hp


def run(args) -> list[dict]:
    """Train as the arguments say; one result dict (the JSON line) per seed."""
    from fairlab import config, metrics

    record, hp = prepare(args)
    seeds = args.seeds or [args.seed]
    needs_representative = "s_representative" in record.needs
    data = {}
    for seed in seeds:
        config.seed_everything(seed)
        data[seed] = load_datasets(args, seed)
    start = time.perf_counter()
    if len(seeds) > 1 and record.can_stack:
        models, histories = record.fit_members([data[s][0] for s in seeds], seeds, hp)
        fitted = dict(zip(seeds, zip(models, histories)))
        shared = (time.perf_counter() - start) / len(seeds)
    else:
        fitted, shared = {}, None
    results = []
    for seed in seeds:
        train, test = data[seed]
        start = time.perf_counter()
        if seed in fitted:
            model, history = fitted[seed]
        else:
            options = {"representative": load_representative(args, seed)} if needs_representative else {}
            model, history = record.fit(train, hp, seed=seed, **options)
        predictions = record.predict(model, test)
        extras = {}
        if record.summary is not None:
            extras = record.summary(model, history, train=train, test=test, hp=hp, predictions=predictions,
                                    seed=seed)
        seconds = time.perf_counter() - start + (shared or 0.0)
        result = metrics.summary(test.y, predictions, sensitive_features=test.group, aligned=test.aligned)
        result["seconds"] = round(seconds, 3)
        result.update(method=args.method, dataset=args.dataset, seed=seed, profile=args.profile)
        result.update(extras)
        results.append(result)
    return results


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
            print(f"{row['status']:>9}  {row['path']}" + ("  (optional)" if row["optional"] else ""))
        required = [r for r in rows if not r["optional"]]
        bad = [r for r in required if r["status"] != "ok"]
        optional_ok = sum(r["status"] == "ok" for r in rows if r["optional"])
        print(f"data root {config.data_root()}: {len(required) - len(bad)}/{len(required)} files ok; "
              f"{optional_ok}/{len(rows) - len(required)} optional files (Kim et al.'s released Coloured MNIST, "
              "downloaded by hand: see the README; without them its reconstruction is used)")
        return 1 if bad else 0
    if args.command == "sweep":
        from fairlab.sweep import sweep_command

        return sweep_command(args)
    if args.command == "compare":
        return compare(args)
    for result in run(args):
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
