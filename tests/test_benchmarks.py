"""The benchmark scripts run end to end on a tiny CPU setting and print what they promise.

They are what a GPU session runs first, with little device time to spare: a crash or a missing field found there
costs minutes of that time. The figures they print are not checked here (speed is measured, never asserted by a
test); the shape of their output is.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_data

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str, profile: str = "quick", text: bool = False):
    env = {**os.environ, "FAIRLAB_PROFILE": profile, "FAIRLAB_DEVICE": "cpu", "FAIRLAB_PROGRESS": "0",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    if text:
        return done.stdout
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout[-2000:]
    return lines


@needs_data
@pytest.mark.parametrize("model, options, fields", [
    ("cflow", ["--iterations", "3", "--blocks", "1", "--width", "8", "--batch-size", "16"],
     {"steps_per_second", "bits_per_dim", "adversary_accuracy"}),
    ("cvae", ["--epochs", "1", "--batch-size", "64"], {"steps_per_second", "reconstruction", "adversary_accuracy"}),
])
def test_bench_null_sampling(model, options, fields):
    (result,) = run_script("benchmarks/bench_null_sampling.py", "--model", model, *options,
                           "--downstream-epochs", "0")
    assert fields <= set(result) and result["model"] == model and result["device"].startswith("cpu")
    assert result["steps"] > 0 and result["seconds"] > 0


@needs_data
def test_bench_null_sampling_for_a_time_budget_projects_the_whole_schedule():
    (result,) = run_script("benchmarks/bench_null_sampling.py", "--iterations", "100000", "--blocks", "1",
                           "--width", "8", "--batch-size", "500", "--max-seconds", "0.001",
                           "--downstream-epochs", "0", "--cudnn-benchmark", "off")
    per_epoch = 6_000 // 500  # the quick profile's representative set
    assert result["out_of_time"] and result["steps"] == per_epoch and result["planned_steps"] == 100_000
    assert result["projected_seconds"] > result["seconds"] and result["cudnn_benchmark"] is False
    assert result["bits_per_dim_curve"] == {str(per_epoch): result["bits_per_dim"]}


@needs_data
def test_bench_null_sampling_takes_the_full_profiles_settings():
    # the full profile's cFlow sets its own speed options (bf16, channels_last): they must reach fit_cflow once
    (result,) = run_script("benchmarks/bench_null_sampling.py", "--blocks", "1", "--width", "8", "--batch-size",
                           "1000", "--iterations", "1", "--downstream-epochs", "0", "--channels-last", "on",
                           profile="full")
    assert result["profile"] == "full" and result["levels"] == 3 and result["bf16"] is False
    assert result["steps"] == 24 and result["planned_steps"] == 1  # one epoch of the 24,000 representative images


@needs_data
def test_sih_validation_noise_matches_the_full_loss_when_no_batch_is_dropped():
    # 5,120 images: a validation set of 512, two whole batches of 256, so the released way of scoring it drops
    # nothing and, whatever the shuffle, sums the same per-sample losses as fit_sih's val_loss
    (result,) = run_script("benchmarks/sih_validation_noise.py", "--subsample", "5120", "--epochs", "1",
                           "--repeats", "3", "--device", "cpu")
    assert result["val_size"] == 512 and result["epochs"] == 1
    assert result["released_style_mean"] == pytest.approx(result["val_loss_best"], rel=1e-4)
    assert result["released_style_sd"] < 1e-3 * result["val_loss_best"]


@needs_data
def test_profile_step_counts_per_step():
    out = run_script("benchmarks/profile_step.py", "vanilla", "--subsample", "600", "--device", "cpu", text=True)
    assert "## vanilla: one epoch, 2 steps" in out and "per step:" in out and "aten::" in out, out


@needs_data
def test_bench_sih_runs_every_method():
    out = run_script("benchmarks/bench_sih.py", "--methods", "sih", "lff", "vanilla", "--epochs", "1",
                     "--subsample", "600", "--device", "cpu", text=True)
    assert "device: cpu" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in
            (["sih"], ["lff"], ["vanilla"])}
    assert set(rows) == {"sih", "lff", "vanilla"}, out
    for method, (per_epoch, epochs, per_run, accuracy, conflicting) in rows.items():
        assert int(epochs) == 1 and float(per_epoch) > 0, out
        assert 0 <= float(accuracy) <= 1 and 0 <= float(conflicting) <= 1, out


@needs_data
def test_mi_search_records_the_audits():
    (line,) = run_script("benchmarks/mi_search.py", '{"mi_weight": 1, "mi_update": "combined"}', "--subsample",
                         "400", "--test-subsample", "300", "--epochs", "1", "--fresh-statistics-steps", "5",
                         "--device", "cpu")
    for key in ("settings", "colour_variance", "seed", "epochs", "train_size", "accuracy", "mi_estimate",
                "mi_fresh_estimate", "mi_floor", "bias_probe_accuracy", "seconds", "device"):
        assert key in line, key
    assert line["train_size"] == 400 and line["settings"]["mi_update"] == "combined"


@needs_data
def test_bench_train():
    (result,) = run_script("benchmarks/bench_train.py", "--epochs", "1", "--subsample", "600", "--device", "cpu")
    assert result["benchmark"] == "erm-cmnist-lff" and result["epochs"] == 1 and result["n_train"] == 600
    assert result["device"].startswith("cpu")
    # one epoch of 600 images in batches of the script's size: the counts and rates must agree with each other
    assert result["seconds_per_epoch"] > 0 and result["samples_per_s"] > 0
    batches = result["samples_per_s"] / result["batch_size"]
    assert abs(result["iterations_per_s"] - batches) <= 0.1 + 0.01 * batches
    assert 0.0 <= result["final_train_accuracy"] <= 1.0


@needs_data
def test_kim_baseline_cpu_prints_a_line_per_epoch_and_a_final_line(tmp_path):
    out = tmp_path / "kim.jsonl"
    lines = run_script("benchmarks/kim_baseline_cpu.py", "--variances", "0.02", "--epochs", "2", "--decay-every", "1",
                       "--subsample", "256", "--test-subsample", "128", "--out", str(out))
    assert [line.get("epoch") for line in lines] == [0, 1, None]
    assert lines[1]["lr"] == pytest.approx(0.001) and lines[-1]["final"] and lines[-1]["schedule"]["epochs"] == 2
    assert lines[0]["source"] == "reconstruction" and lines[0]["published_baseline"] == 0.4055
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines


@needs_data
def test_mi_released_cpu_reads_the_test_set_inside_epochs_and_appends_every_line(tmp_path):
    out = tmp_path / "mi.jsonl"
    lines = run_script("benchmarks/mi_released_cpu.py", "--epochs", "1", "--baseline-epochs", "1", "--read-every", "1",
                       "--subsample", "256", "--test-subsample", "128", "--out", str(out))
    # 256 images are 2 updates of 128: a reading after each, then each arm's final line
    assert [(line["arm"], line.get("epoch")) for line in lines] == [
        ("baseline", 0.5), ("baseline", 1), ("baseline", None), ("mi", 0.5), ("mi", 1), ("mi", None)]
    assert lines[3]["schedule"] == "released" and lines[3]["lambda"] == 1.0 and lines[-1]["final"]
    assert all(0 <= line["test_accuracy"] <= 1 for line in lines if "epoch" in line)
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines


@needs_data
def test_ns_quick_search_prints_the_runs_line_and_appends_it(tmp_path):
    out = tmp_path / "search.jsonl"
    options = ('{"architecture": "mlp", "channels": 16, "latent_channels": 4, "epochs": 1, "batch_size": 32, '
               '"adversaries": 1, "adversary_width": 8, "adversary_lr": 0.01}')
    (line,) = run_script("benchmarks/ns_quick_search.py", "cvae", options, "--sizes", "96,96,96", "--downstream",
                         '{"architecture": "conv", "width": 2, "epochs": 1, "batch_size": 32}', "--out", str(out))
    assert line["method"] == "cvae" and line["adversary_lr"] == 0.01
    assert 0 <= line["accuracy"] <= 1 and 0 <= line["probe_s_test"] <= 1
    assert [json.loads(text) for text in out.read_text().splitlines()] == [line]
