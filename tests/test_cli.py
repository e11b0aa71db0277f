"""``python -m fairlab``: the JSON line's fixed keys, and the data check."""
import json
import subprocess
import sys

from conftest import needs_data

FIXED_KEYS = {"accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy", "seconds"}


def run(*args):
    out = subprocess.run([sys.executable, "-m", "fairlab", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


@needs_data
def test_run_erm_on_coloured_mnist_prints_one_json_line():
    out = run("run", "erm", "--dataset", "cmnist-lff", "--bias-conflicting-ratio", "0.01", "--seed", "0",
              "--subsample", "2000", "--epochs", "1", "--profile", "quick")
    lines = out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert FIXED_KEYS <= set(result)
    assert "eo" not in result  # s has 10 values: equalised odds is only reported for binary s
    assert 0 <= result["accuracy"] <= 1 and result["method"] == "erm" and result["profile"] == "quick"


@needs_data
def test_run_erm_on_adult_reports_dp_and_eo():
    result = json.loads(run("run", "erm", "--dataset", "adult", "--epochs", "1"))
    assert FIXED_KEYS | {"dp", "eo"} <= set(result)
    assert result["accuracy"] > 0.75  # one epoch of an MLP beats the 75% majority class


@needs_data
def test_data_check():
    out = run("data", "check")  # exits 0: Kim's released files are optional, listed but not required
    assert "7/7 files ok" in out
    assert "mnist_10color_jitter_var_0.020.npy  (optional)" in out and "optional files" in out
