"""``python -m fairlab sweep``: a chapter's table as a grid of ``fairlab run`` runs, submitted through submitit
(in-process, local processes or Slurm jobs), resumable at any point.

A spec (TOML, or YAML where PyYAML is installed) names the runs::

    profile = "quick"
    methods = ["erm", "lff", "sih"]
    datasets = ["cmnist-lff"]
    seeds = [0]
    out = "runs/signal_is_harder_quick"        # the sweep's folder (default: runs/<spec name>)
    [grid]                                     # every combination of these values
    bias_conflicting_ratio = [0.01, 0.02]
    [set]                                      # fixed options, the names of ``fairlab run``'s options
    batch_size = 128
    [[part]]                                   # optional: the sweep is the union of its parts, each of which
    methods = ["sih"]                          # replaces the keys above that it sets (set and grid: key by key)

A run is exactly ``python -m fairlab run METHOD --dataset D --OPTION V ... --seed S``: the worker builds that
command line and calls ``fairlab.cli.run``, so a sweep's numbers are the command's. Runs of one cell that differ
only in seed are one job, trained stacked where the method can (``fit_members``).

Each finished run appends one JSON line to ``RESULTS.jsonl`` in the sweep's folder: ``fairlab run``'s keys plus
``status``, ``key`` (the run's identity), ``options`` (every option it trained with), ``git_commit``, ``device``,
``versions``, ``wall_seconds``. A failed attempt appends a line with ``status: "failed"`` and ``error``. Running the
same sweep again skips every run with an ``ok`` line, so a sweep killed at any point resumes without duplicates.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fairlab.cli import DATASET_OPTIONS, UsageError
from fairlab.experiments.results import read_lines

RESULTS = "RESULTS.jsonl"
SPEC_KEYS = ("profile", "methods", "datasets", "seeds", "grid", "set", "out", "part")
PART_KEYS = ("methods", "datasets", "seeds", "grid", "set")
EXECUTORS = ("local", "slurm", "debug")
DATA_OPTIONS = (*DATASET_OPTIONS, "subsample", "representative_subsample")
# options a spec may not set as a run option: each has its own key (or the sweep's own option)
RESERVED = {"dataset": "datasets", "seed": "seeds", "seeds": "seeds", "profile": "profile",
            "device": "the sweep's --device", "method": "methods"}
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default (2 minutes) would kill any real run


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep: a ``fairlab run`` command line (``argv``, without its seed) and a seed."""

    method: str
    dataset: str
    seed: int
    key: str  # hash of (method, dataset, profile, seed, every resolved option): the run's identity
    argv: tuple[str, ...]
    given: tuple[tuple[str, object], ...]  # the options the spec sets, for the status table
    options: dict = dataclasses.field(compare=False, hash=False)  # every option, resolved where the sweep starts


@dataclasses.dataclass(frozen=True)
class Job:
    """What one submitit job trains: runs of one cell, stacked where the method can. Pickled to the worker."""

    runs: tuple[Run, ...]
    results: str
    attempt: int = 1
    reraise: bool = False  # --executor debug --debug: let the error reach the debugger

    @property
    def argv(self) -> list[str]:
        seeds = [str(run.seed) for run in self.runs]
        return [*self.runs[0].argv, *(["--seeds", *seeds] if len(seeds) > 1 else ["--seed", seeds[0]])]

    def describe(self) -> str:
        run = self.runs[0]
        options = " ".join(f"{name}={value}" for name, value in run.given)
        seeds = " ".join(str(r.seed) for r in self.runs)
        return " ".join(filter(None, (run.method, run.dataset, options, f"seed{'s' * (len(self.runs) > 1)} {seeds}")))


# ---------------------------------------------------------------------------------------------------------- spec


def load_spec(path) -> dict:
    """A spec file as a dict, its keys checked (one line naming the file and the key when one is wrong)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no sweep spec at {path}.")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UsageError(f"{path}: YAML specs need PyYAML (pip install pyyaml); or write the spec as TOML.")
        try:
            spec = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise UsageError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        try:
            spec = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"{path} is not valid TOML: {error}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: a spec is a table of keys ({', '.join(SPEC_KEYS)}).")
    _check_keys(spec, SPEC_KEYS, str(path))
    parts = spec.get("part", [])
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise UsageError(f"{path}: part must be a list of tables ([[part]] in TOML).")
    for number, part in enumerate(parts, start=1):
        _check_keys(part, PART_KEYS, f"{path} part {number}")
    return spec


def _check_keys(table: dict, allowed, where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; a spec's keys are {', '.join(allowed)}.")
    for key in ("grid", "set"):
        if key in table and not isinstance(table[key], dict):
            raise UsageError(f"{where}: {key} must be a table of options ([{key}] in TOML).")
    for key in ("methods", "datasets", "seeds"):
        if key in table and not isinstance(table[key], list):
            raise UsageError(f"{where}: {key} must be a list, e.g. {key} = [{'0' if key == 'seeds' else '...'}].")


def _assignments(items, many: bool, flag: str) -> dict:
    """``--set epochs=1`` / ``--grid bias_conflicting_ratio=0.01,0.05`` as a dict (values stay text)."""
    table = {}
    for item in items or ():
        name, sign, value = item.partition("=")
        if not sign or not name or not value:
            raise UsageError(f"{flag} takes OPTION=VALUE{',VALUE...' if many else ''}, got {item!r}.")
        table[name.strip()] = [v.strip() for v in value.split(",")] if many else value.strip()
    return table


def spec_from_args(args) -> tuple[dict, str]:
    """The spec file (if any) with the command line's values on top; returns (spec, where) for messages."""
    spec = load_spec(args.spec) if args.spec else {}
    where = args.spec or "the command line"
    override = {key: value for key, value in (("methods", args.methods), ("datasets", args.datasets),
                                              ("seeds", args.seeds)) if value}
    override["grid"] = _assignments(args.grid, True, "--grid")
    override["set"] = _assignments(args.fixed, False, "--set")
    spec = {**spec, "override": override}
    spec["profile"] = args.profile or spec.get("profile")
    out = args.out or spec.get("out") or (f"runs/{Path(args.spec).stem}" if args.spec else None)
    if out is None:
        raise UsageError("give the sweep's folder (--out DIR) or a spec file.")
    spec["out"] = out
    return spec, where


# ----------------------------------------------------------------------------------------------------- expansion


class _ArgvError(Exception):
    pass


def _raise(message):
    raise _ArgvError(message)


def _run_parser():
    """``fairlab run``'s parser, raising instead of exiting, and each method's options by every name they have."""
    from fairlab.cli import build_parser

    parser = build_parser()
    parser.error = _raise
    actions = {}
    for top in parser._actions:
        if isinstance(top, argparse._SubParsersAction):
            run = top.choices["run"]
            run.error = _raise
            for sub in run._actions:
                if isinstance(sub, argparse._SubParsersAction):
                    for method, method_parser in sub.choices.items():
                        method_parser.error = _raise
                        names = {}
                        for action in method_parser._actions:
                            if not action.option_strings or action.dest in ("help", "debug"):
                                continue
                            names[action.dest] = action
                            names[action.option_strings[0].lstrip("-").replace("-", "_")] = action
                        actions[method] = names
    return parser, actions


def _option_argv(action, name: str, value, where: str) -> list[str]:
    if isinstance(value, (list, tuple, dict)):
        raise UsageError(f"{where}: option {name} takes one value, got {value!r} (put the values under grid to "
                         "sweep them).")
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise UsageError(f"{where}: option {name} is a switch (true or false), got {value!r}.")
        return [flag if text in ("true", "1", "yes") else "--no-" + flag[2:]]
    return [flag, str(value)]


def _layers(spec: dict, part: dict):
    """(methods, datasets, seeds, grid, fixed) of one part: top level, then the part, then the command line."""
    merged = {"methods": None, "datasets": None, "seeds": [0]}
    grid, fixed = {}, {}
    for layer in (spec, part, spec["override"]):
        for key in merged:
            if layer.get(key) is not None:
                merged[key] = layer[key]
        # a fixed value replaces a swept one of the same name and the other way round, layer by layer
        for name, value in layer.get("set", {}).items():
            grid.pop(name, None)
            fixed[name] = value
        for name, values in layer.get("grid", {}).items():
            fixed.pop(name, None)
            grid[name] = values
    return merged["methods"], merged["datasets"], merged["seeds"], grid, fixed


def expand(spec: dict, where: str) -> list[Run]:
    """Every run of the spec, in order, each checked as ``fairlab run`` checks its options (before any data)."""
    from fairlab import config
    from fairlab.methods import METHODS

    profile = spec.get("profile") or config.profile()
    if profile not in ("quick", "full"):
        raise UsageError(f"{where}: profile must be quick or full, got {profile!r}.")
    parser, actions = _run_parser()
    parts = spec.get("part") or [{}]
    runs, seen = [], set()
    for number, part in enumerate(parts, start=1):
        here = f"{where} part {number}" if spec.get("part") else where
        methods, datasets, seeds, grid, fixed = _layers(spec, part)
        if not methods:
            raise UsageError(f"{here}: no methods; give methods = [...] (or --methods), from {', '.join(METHODS)}.")
        for key, values in (("datasets", datasets), ("seeds", seeds)):
            if values is not None and len(values) == 0:
                raise UsageError(f"{here}: {key} is empty.")
        if not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
            raise UsageError(f"{here}: seeds must be whole numbers, got {seeds!r}.")
        for name, values in grid.items():
            if not isinstance(values, list) or len(values) == 0:
                raise UsageError(f"{here}: grid option {name} has no values; give a list, e.g. {name} = [1, 2].")
        for method in methods:
            if method not in METHODS:
                raise UsageError(f"{here}: unknown method {method!r}; the methods are {', '.join(METHODS)}.")
            record = METHODS[method]
            default = "cmnist-lff" if "cmnist-lff" in record.datasets else record.datasets[0]
            for dataset in datasets or [default]:
                try:
                    record.check_dataset(dataset)
                except ValueError as error:
                    raise UsageError(f"{here}: {error}") from None
                for point in itertools.product(*grid.values()):
                    options = {**fixed, **dict(zip(grid, point))}
                    argv, given, resolved = _cell(parser, actions[method], method, dataset, profile, options,
                                                  spec.get("device"), here)
                    for seed in seeds:
                        key = run_key(method, dataset, profile, seed, resolved)
                        if key not in seen:
                            seen.add(key)
                            runs.append(Run(method, dataset, seed, key, argv, given, resolved))
    if not runs:
        raise UsageError(f"{where}: the grid is empty.")
    return runs


def _cell(parser, actions, method, dataset, profile, options, device, where):
    """One cell's ``fairlab run`` command line (no seed), the options it sets, and every option it resolves to."""
    from fairlab.cli import prepare

    argv = ["run", method, "--dataset", dataset, "--profile", profile]
    given = []
    for name, value in options.items():
        normal = name.replace("-", "_")
        if normal in RESERVED:
            raise UsageError(f"{where}: {name} is not a run option here; use {RESERVED[normal]}.")
        if normal not in actions:
            raise UsageError(f"{where}: {method} has no option {name!r} (python -m fairlab run {method} --help "
                             "lists them).")
        argv += _option_argv(actions[normal], name, value, where)
        given.append((actions[normal].dest, value))
    try:
        args = parser.parse_args(argv)
    except _ArgvError as error:
        raise UsageError(f"{where}: {method} on {dataset}: {error}") from None
    # resolved as on a CPU wherever the sweep starts (a login node has no GPU): the key must not depend on it
    with _environment_kept():
        os.environ["FAIRLAB_DEVICE"] = "cpu"
        try:
            _, hp = prepare(args)
        except ValueError as error:
            raise UsageError(f"{where}: {method} on {dataset}: {error}") from None
    if device:
        argv += ["--device", device]
    return tuple(argv), tuple(given), resolved_options(args, hp)


@contextlib.contextmanager
def _environment_kept():
    """``prepare`` applies --profile / --device to the process's environment; checking a run must not."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def resolved_options(args, hp) -> dict:
    """Every option a prepared run trains with: its data options and all its hyperparameters."""
    data = {name: getattr(args, name) for name in DATA_OPTIONS if getattr(args, name, None) is not None}
    return json.loads(json.dumps({**data, **dataclasses.asdict(hp)}, default=str))


def run_key(method: str, dataset: str, profile: str, seed: int, options: dict) -> str:
    """A run's identity, stable across processes and machines: same method, data, options and seed, same key."""
    text = json.dumps({"method": method, "dataset": dataset, "profile": profile, "seed": seed, "options": options},
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def jobs_for(runs, results: Path, reraise: bool = False) -> list[Job]:
    """One job per cell where the method stacks its seeds, else one per run; in the runs' order."""
    from fairlab.methods import METHODS

    cells = collections.OrderedDict()
    for run in runs:
        stack = METHODS[run.method].can_stack
        cells.setdefault(run.argv if stack else (run.argv, run.seed), []).append(run)
    return [Job(tuple(cell), str(results), reraise=reraise) for cell in cells.values()]


# ------------------------------------------------------------------------------------------------- results file


def append_record(path, record: dict) -> bool:
    """Append one run's line to the results file; False (nothing written) for an ok line whose run is already
    there, so that two workers that trained the same run leave one line.

    The whole line goes in one ``os.write`` on a file opened with O_APPEND, which a local file system keeps in one
    piece (for lines of a few kB, as these are); the lock file keeps it so on a network file system too, where
    O_APPEND alone is not atomic, and makes "is the run already there?" and the write one step.
    """
    line = (json.dumps(record, default=str) + "\n").encode()
    with open(str(path) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if record["status"] == "ok" and record["key"] in done_keys(path):
            return False
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
        finally:
            os.close(fd)
    if written != len(line):
        raise OSError(f"only {written} of {len(line)} bytes of a result reached {path} (disk full?).")
    return True


def done_keys(path) -> set[str]:
    return {record["key"] for record in read_lines(path) if record["status"] == "ok"}


def _provenance() -> dict:
    """Where a line came from: the commit, the device, the library versions."""
    import numpy
    import torch

    import fairlab
    from fairlab import config

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(fairlab.__file__).parents[1], text=True,
                                capture_output=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    device = config.describe_device(config.device())
    versions = {"python": sys.version.split()[0], "fairlab": fairlab.__version__, "torch": torch.__version__,
                "numpy": numpy.__version__}
    try:
        import submitit

        versions["submitit"] = submitit.__version__
    except ImportError:
        pass
    return {"git_commit": commit, "device": device, "versions": versions}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _failure(job: Job, run: Run, error: str) -> dict:
    return {"status": "failed", "key": run.key, "method": run.method, "dataset": run.dataset, "seed": run.seed,
            "error": error, "attempt": job.attempt, "options": run.options, "finished": _now()}


def run_job(job: Job) -> list[dict]:
    """The worker: train the job's runs as ``fairlab run`` does, append a line per run, return the lines."""
    from fairlab import cli

    start, started = time.perf_counter(), _now()
    try:
        args = cli.build_parser().parse_args(job.argv)
        _, hp = cli.prepare(args)  # prepare is idempotent: run() prepares the same options again
        results = cli.run(args)
    except Exception as error:
        lines = [_failure(job, run, _one_line(error)) for run in job.runs]
        for line in lines:
            append_record(job.results, line)
        if job.reraise:
            raise
        return lines
    about = {"options": resolved_options(args, hp), **_provenance(),
             "wall_seconds": round(time.perf_counter() - start, 3), "stacked": len(job.runs),
             "attempt": job.attempt, "started": started, "finished": _now()}
    by_seed = {result["seed"]: result for result in results}
    lines = []
    for run in job.runs:
        line = {**by_seed[run.seed], "status": "ok", "key": run.key, **about}
        append_record(job.results, line)
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------------- executors


def slurm_minutes(text: str) -> int:
    """Slurm's --time formats (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S) as whole minutes, for submitit."""
    try:
        days, dash, clock = text.partition("-") if "-" in text else ("0", "", text)
        parts = [int(p) for p in clock.split(":")]
        if dash:
            hours, minutes, seconds = (parts + [0, 0])[:3]
        else:
            hours, minutes, seconds = {1: [0, *parts, 0], 2: [0, *parts], 3: parts}[len(parts)]
        total = int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    except (ValueError, KeyError):
        raise UsageError(f"--time {text!r} is not a Slurm time (minutes, H:MM:SS or D-HH:MM:SS).") from None
    if total < 1:
        raise UsageError(f"--time {text!r} is under a minute.")
    return total


def slurm_parameters(args) -> dict:
    """submitit's SlurmExecutor parameters for the sweep's options (one task per job, on one node)."""
    parameters = {"job_name": "fairlab-sweep", "nodes": 1, "ntasks_per_node": 1}
    if args.partition:
        parameters["partition"] = args.partition
    if args.gpus_per_job is not None:
        parameters["gpus_per_node"] = args.gpus_per_job
    if args.time:
        parameters["time"] = slurm_minutes(args.time)
    if args.cpus_per_task is not None:
        parameters["cpus_per_task"] = args.cpus_per_task
    if args.workers:
        parameters["array_parallelism"] = args.workers
    return parameters


def check_slurm() -> None:
    if shutil.which("sbatch") is None:
        raise UsageError("--executor slurm needs Slurm's sbatch, and there is none on this machine's PATH: run the "
                         "sweep on the cluster's login node, or use --executor local.")


def make_executor(args, folder: Path):
    """The submitit executor ``--executor`` names; its logs and pickles go to ``folder/submitit``."""
    import submitit

    logs = folder / "submitit" / "%j"
    if args.executor == "debug":
        return submitit.DebugExecutor(logs)
    if args.executor == "local":
        executor = submitit.LocalExecutor(logs)
        executor.update_parameters(timeout_min=slurm_minutes(args.time) if args.time else LOCAL_TIMEOUT_MIN)
        return executor
    check_slurm()
    executor = submitit.SlurmExecutor(logs)
    executor.update_parameters(**slurm_parameters(args))
    return executor


def _workers(args) -> int:
    if args.workers:
        return args.workers
    import torch

    return max(torch.cuda.device_count(), 1)


def execute(executor, kind: str, jobs: list[Job], *, workers: int, retries: int, log=print) -> dict[str, str]:
    """Submit the jobs (at most ``workers`` at once on the local executor, one at a time in-process, all of them to
    Slurm), retry a failed job up to ``retries`` times; returns each run's final status by key."""
    gpus = 0
    if kind == "local":
        import torch

        gpus = torch.cuda.device_count()
    limit = {"local": workers, "debug": 1}.get(kind, len(jobs) * (retries + 1))
    poll = {"local": 1.0, "debug": 0.0}.get(kind, 30.0)
    queue, running, final = collections.deque(jobs), {}, {}
    total, finished = len(jobs), 0
    try:
        while queue or running:
            while queue and len(running) < limit:
                job = queue.popleft()
                gpu = None
                if gpus:
                    # each local worker on its own GPU while there are enough, then shared evenly
                    busy = collections.Counter(g for _, g in running.values())
                    gpu = min(range(gpus), key=lambda g: busy[g])
                    executor.update_parameters(gpus_per_node=1, visible_gpus=(gpu,))
                running[executor.submit(run_job, job)] = (job, gpu)
            done = [submitted for submitted in running if submitted.done()]
            if not done:
                time.sleep(poll)
                continue
            for submitted in done:
                job, _ = running.pop(submitted)
                lines = _collect(submitted, job)
                failed = [run for run, line in zip(job.runs, lines) if line["status"] != "ok"]
                final.update({line["key"]: line["status"] for line in lines})
                if failed and job.attempt <= retries:
                    queue.append(dataclasses.replace(job, runs=tuple(failed), attempt=job.attempt + 1))
                    total += 1
                finished += 1
                errors = [line["error"] for line in lines if line["status"] != "ok"]
                status = f"failed ({errors[0]})" if errors else "ok"
                log(f"[{finished}/{total}] {job.describe()}: {status}")
    except KeyboardInterrupt:
        if kind == "local":
            for submitted in running:
                submitted.cancel(check=False)
        elif running:
            log(f"{len(running)} Slurm job(s) still queued or running; their lines will land in the results file "
                "(a run trained twice keeps one line).")
        raise
    return final


def _collect(submitted, job: Job) -> list[dict]:
    """The job's lines; for a job that died without writing them (killed, timed out, out of memory), failed lines
    written here, naming its log."""
    try:
        return submitted.result()
    except Exception as error:
        if job.reraise:
            raise
        log = getattr(getattr(submitted, "paths", None), "stderr", None)
        message = f"job {submitted.job_id} did not finish: {_one_line(error)}" + (f" (log: {log})" if log else "")
        done = done_keys(job.results)
        lines = []
        for run in job.runs:
            line = {"status": "ok", "key": run.key} if run.key in done else _failure(job, run, message)
            if line["status"] != "ok":
                append_record(job.results, line)
            lines.append(line)
        return lines


# ------------------------------------------------------------------------------------------------------ commands


def sweep_command(args) -> int:
    """``python -m fairlab sweep``: run what is not done yet, or (``--status``) say what is done."""
    if args.executor != "slurm":
        for flag in ("partition", "gpus_per_job", "time", "cpus_per_task"):
            if getattr(args, flag) is not None and not (flag == "time" and args.executor == "local"):
                raise UsageError(f"--{flag.replace('_', '-')} applies to --executor slurm only.")
    if args.executor == "slurm" and not args.status:
        check_slurm()
        if args.time is None:  # submitit would ask Slurm for 5 minutes
            raise UsageError("--executor slurm needs --time, a job's time limit (e.g. --time 4:00:00).")
    if args.retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {args.retries}.")
    spec, where = spec_from_args(args)
    spec["device"] = args.device
    if args.device and args.executor != "slurm":  # a login node need not have the cluster's devices
        from fairlab import config

        config.parse_device(args.device, "--device")
    runs = expand(spec, where)
    folder = Path(spec["out"])
    results = folder / RESULTS
    records = read_lines(results)  # a corrupted line stops here, before anything is trained
    if args.status:
        print(status_table(runs, records))
        return 0
    done = {r["key"] for r in records if r["status"] == "ok"}
    todo = [run for run in runs if run.key not in done]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    final = {}
    if todo:
        executor = make_executor(args, folder)
        reraise = args.executor == "debug" and getattr(args, "debug", False)
        jobs = jobs_for(todo, results, reraise=reraise)
        print(f"sweep {folder}: {len(todo)} of {len(runs)} runs to train, in {len(jobs)} job(s) "
              f"({args.executor} executor)", file=sys.stderr)
        final = execute(executor, args.executor, jobs, workers=_workers(args), retries=args.retries,
                        log=lambda text: print(text, file=sys.stderr))
    ok = sum(1 for status in final.values() if status == "ok")
    failed = len(todo) - ok
    print(f"sweep {folder}: {len(runs)} runs: {ok} done, {failed} failed, {len(runs) - len(todo)} skipped "
          f"(already in {RESULTS}); {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


def status_table(runs: list[Run], records: list[dict]) -> str:
    """One row per run of the spec: its options, seed, status (done / failed / pending) and test accuracy."""
    import pandas as pd

    ok = {r["key"]: r for r in records if r["status"] == "ok"}
    failed = {r["key"]: r for r in records if r["status"] == "failed"}
    rows = []
    for run in runs:
        row = {"method": run.method, "dataset": run.dataset, **dict(run.given), "seed": run.seed}
        if run.key in ok:
            row.update(status="done", accuracy=ok[run.key].get("accuracy"))
        elif run.key in failed:
            row.update(status="failed", error=failed[run.key].get("error"))
        else:
            row.update(status="pending")
        rows.append(row)
    table = pd.DataFrame(rows)
    counts = table["status"].value_counts()
    known = {run.key for run in runs}
    other = len({r["key"] for r in records} - known)
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "failed", "pending"))
    extra = f"; {other} run(s) in the results file are not in this spec" if other else ""
    return table.fillna("").to_string(index=False) + f"\n{len(runs)} runs: {summary}{extra}"
