"""``python -m fairlab sweep``: every run exactly once in the results however the sweep is stopped and resumed, the
same numbers as ``fairlab run``, Slurm's parameters, and one clear line for bad input."""
import json
from pathlib import Path

import pytest
from conftest import needs_data

from fairlab import cli
from fairlab.experiments import read_results
from fairlab.sweep import expand, load_spec, make_executor, slurm_minutes

TINY = ["--set", "epochs=1", "--set", "subsample=512", "--set", "batch_size=128", "--profile", "quick"]
METRICS = ("accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy", "dp", "hgr")
SPECS = Path(__file__).resolve().parents[1] / "sweeps"


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    # prepare() writes --profile into the environment: undone after each test
    monkeypatch.setenv("FAIRLAB_PROFILE", "quick")
    monkeypatch.setenv("FAIRLAB_PROGRESS", "0")


def lines(folder):
    return [json.loads(line) for line in (Path(folder) / "RESULTS.jsonl").read_text().splitlines()]


def sweep(*argv):
    return cli.main(["sweep", *argv])


@needs_data
def test_local_executor_runs_two_jobs_at_once(tmp_path):
    assert sweep("--methods", "erm", "--grid", "bias_conflicting_ratio=0.01,0.05", *TINY, "--out", str(tmp_path),
                 "--executor", "local", "--workers", "2") == 0
    runs = lines(tmp_path)
    assert [r["status"] for r in runs] == ["ok", "ok"]
    assert sorted(r["options"]["bias_conflicting_ratio"] for r in runs) == [0.01, 0.05]
    assert {"git_commit", "device", "versions", "wall_seconds", "options"} <= set(runs[0])
    # two workers: the second job started before the first finished
    assert max(r["started"] for r in runs) < min(r["finished"] for r in runs)


@needs_data
def test_stopped_and_failed_runs_resume_to_every_run_exactly_once(tmp_path, monkeypatch, capsys):
    real_run, trained, mode = cli.run, [], {}

    def run(args):
        ratio = args.bias_conflicting_ratio
        if mode.get("stop") and trained:
            raise KeyboardInterrupt  # the sweep stopped part-way (Ctrl-C, a killed job)
        if mode.get("fail") == ratio:
            raise RuntimeError("the loss became NaN\nsecond line")
        trained.append(ratio)
        return real_run(args)

    monkeypatch.setattr(cli, "run", run)
    argv = ["--methods", "erm", "--grid", "bias_conflicting_ratio=0.01,0.02,0.05", *TINY, "--out", str(tmp_path),
            "--executor", "debug"]
    mode.update(stop=True)
    assert sweep(*argv) == 130
    assert [r["status"] for r in lines(tmp_path)] == ["ok"]

    mode.update(stop=False, fail=0.05)
    capsys.readouterr()
    assert sweep(*argv, "--retries", "1") == 1
    assert "3 runs: 1 done, 1 failed, 1 skipped" in capsys.readouterr().out
    failed = [r for r in lines(tmp_path) if r["status"] == "failed"]
    assert [r["attempt"] for r in failed] == [1, 2] and failed[0]["error"] == "RuntimeError: the loss became NaN"

    mode.update(fail=None)
    assert sweep(*argv) == 0
    assert trained == [0.01, 0.02, 0.05]  # nothing trained twice
    ok = [r for r in lines(tmp_path) if r["status"] == "ok"]
    assert sorted(r["options"]["bias_conflicting_ratio"] for r in ok) == [0.01, 0.02, 0.05]
    assert len({r["key"] for r in ok}) == 3

    table = read_results(tmp_path / "RESULTS.jsonl")
    assert sorted(table["bias_conflicting_ratio"]) == [0.01, 0.02, 0.05] and table.attrs["source"]
    assert sweep(*argv, "--status") == 0
    assert "3 runs: 3 done, 0 failed, 0 pending" in capsys.readouterr().out


@needs_data
def test_debug_executor_gives_the_numbers_of_fairlab_run(tmp_path):
    options = ["--dataset", "cmnist-lff", "--bias-conflicting-ratio", "0.01", "--subsample", "512", "--epochs", "1",
               "--batch-size", "128", "--profile", "quick"]
    direct = cli.run(cli.build_parser().parse_args(["run", "erm", *options, "--seeds", "0", "1"]))
    assert sweep("--methods", "erm", "--seeds", "0", "1", "--set", "bias_conflicting_ratio=0.01", *TINY,
                 "--out", str(tmp_path), "--executor", "debug") == 0
    swept = lines(tmp_path)
    assert [r["stacked"] for r in swept] == [2, 2]  # the two seeds trained stacked, as `fairlab run --seeds 0 1`
    for one, other in zip(direct, swept):
        assert {k: one[k] for k in METRICS} == {k: other[k] for k in METRICS}


def test_a_corrupted_last_line_is_reported_not_dropped(tmp_path, monkeypatch, capsys):
    good = {"status": "ok", "key": "abc", "accuracy": 0.5}
    (tmp_path / "RESULTS.jsonl").write_text(json.dumps(good) + '\n{"status": "ok", "key": "de')
    monkeypatch.setattr(cli, "run", lambda args: pytest.fail("nothing may train before the file is repaired"))
    assert sweep("--methods", "erm", *TINY, "--out", str(tmp_path), "--executor", "debug") == 1
    error = capsys.readouterr().err.strip()
    assert "RESULTS.jsonl line 2 is not JSON" in error and len(error.splitlines()) == 1
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_results(tmp_path / "RESULTS.jsonl")


@pytest.mark.parametrize("argv, message", [
    (["--methods", "ermm"], "unknown method 'ermm'"),
    (["--methods", "erm", "--set", "epoch=3"], "erm has no option 'epoch'"),
    (["--methods", "erm", "--set", "epochs=three"], "--epochs: must be a whole number"),
    (["--methods", "erm", "--datasets", "adult", "--set", "bias_conflicting_ratio=0.1"], "does not apply"),
    (["--methods", "cvae", "--datasets", "cmnist-lff"], "cvae does not run on 'cmnist-lff'"),
])
def test_bad_command_line_gets_one_line(tmp_path, capsys, argv, message):
    assert sweep(*argv, "--out", str(tmp_path), "--executor", "debug") == 2
    error = capsys.readouterr().err.strip()
    assert message in error and error.startswith("fairlab: error:") and len(error.splitlines()) == 1


@pytest.mark.parametrize("text, message", [
    ('methods = ["erm"]\n[grid]\nbias_conflicting_ratio = []\n', "grid option bias_conflicting_ratio has no values"),
    ('methods = ["erm"]\nmethod = "lff"\n', "unknown key 'method'"),
    ('methods = ["erm"]\n[set]\nseed = 3\n', "seed is not a run option here; use seeds"),
    ('methods = ["erm"\n', "is not valid TOML"),
])
def test_bad_spec_gets_one_line(tmp_path, capsys, text, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    assert sweep(str(spec), "--out", str(tmp_path), "--executor", "debug") == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_slurm_submission_parameters_without_a_cluster(tmp_path, monkeypatch, capsys):
    args = cli.build_parser().parse_args(["sweep", "--methods", "erm", "--executor", "slurm", "--partition", "gpu",
                                          "--gpus-per-job", "2", "--time", "1:30:00", "--cpus-per-task", "8"])
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")  # pretend sbatch and srun exist
    script = make_executor(args, tmp_path)._make_submission_file_text("python -u -m submitit.core._submit x", "u")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --time=90",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --ntasks-per-node=1", "#SBATCH --nodes=1"):
        assert line in script
    assert (slurm_minutes("45"), slurm_minutes("2-00:00:00"), slurm_minutes("1-12")) == (45, 2880, 2160)

    assert sweep("--methods", "erm", "--out", str(tmp_path), "--executor", "slurm") == 2
    assert "needs --time" in capsys.readouterr().err
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert sweep("--methods", "erm", "--out", str(tmp_path), "--executor", "slurm") == 2
    assert "needs Slurm's sbatch" in capsys.readouterr().err


def test_the_course_specs_expand_to_their_tables():
    def count(name):
        spec = load_spec(SPECS / name)
        return len(expand({**spec, "override": {}}, name))

    assert count("signal_is_harder.toml") == 3 * 4 * 3
    assert count("signal_is_harder_quick.toml") == 3 * 2
    assert count("mi_backprop.toml") == 4 * 2 * 3 + 3
    assert count("null_sampling.toml") == 6 + 1 + 2 * 7
    assert count("mi_sweep.toml") == 3 * 3 * 3
    assert count("comparison.toml") == (4 + 4 + 6 + 5 + 7) * 3
