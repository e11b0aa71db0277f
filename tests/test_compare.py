"""Chapter 6's comparison: one protocol for every method (``fairlab.experiments.comparison``) and
``python -m fairlab compare``."""
import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from fairlab import cli
from fairlab.experiments import comparison
from fairlab.methods import METHODS

from conftest import needs_data

TINY = dict(train=300, representative=200, test=300)


@needs_data
def test_the_representative_set_holds_other_images_with_random_colours():
    splits = comparison.cmnist_splits(0.01, seed=0, **TINY)
    train, representative = splits["train"], splits["representative"]
    assert (len(train), len(representative), len(splits["test"])) == (300, 200, 300)
    assert train.aligned.float().mean() > 0.95  # strongly biased
    # no image of the representative set is in the training set: no stroke (the pixels that are not black) in both
    strokes = lambda d: {bytes((d.x.amax(1) > 0).flatten(1)[i].numpy()) for i in range(len(d))}  # noqa: E731
    assert len(strokes(representative)) == 200 and not strokes(train) & strokes(representative)
    # its colour is not its digit's: about 10% aligned, as on the test set
    assert representative.aligned.float().mean() < 0.25


def test_every_method_of_the_protocol_exists_and_has_an_audit_entry():
    for dataset in comparison.DATASETS:
        for name in comparison.methods_for(dataset, "quick"):
            assert name in METHODS and name in comparison.AUDIT
            METHODS[name].hp(**comparison.settings(dataset, "quick")["hparams"][name])  # every field is real
    assert "fls" not in comparison.methods_for("cmnist", "quick")  # binary y and s only
    with pytest.raises(ValueError, match="does not run in the comparison on cmnist"):
        comparison.check_methods("cmnist", ["fls"])
    with pytest.raises(ValueError, match="no method named 'nope'"):
        comparison.check_methods("cmnist", ["nope"])


def test_on_images_the_worst_group_is_a_digit_on_its_conflicting_images():
    from fairlab.data.base import BiasedDataset

    # 2 digits x 3 colours; colour c is digit c's own colour (aligned), colour 2 belongs to neither
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    s = torch.tensor([0, 0, 1, 2, 2, 1, 1, 0, 0, 2])
    test = BiasedDataset(x=torch.zeros(10, 3, 2, 2), y=y, s=s, aligned=y == s, num_classes=2, num_groups=3,
                         name="toy")
    pred = torch.tensor([0, 0, 1, 0, 1, 1, 1, 1, 1, 0])
    # groups (y, aligned): (0, T) 2/2, (0, F) 1/3, (1, T) 2/2, (1, F) 2/3; cells (y, s): (0, 1) is 0/1
    result = comparison.group_scores(test, pred)
    assert result["worst_group_accuracy"] == pytest.approx(1 / 3)
    assert result["worst_cell_accuracy"] == 0.0
    assert result["accuracy"] == pytest.approx(0.7) and result["conflicting_accuracy"] == pytest.approx(0.5)
    # vectors (no aligned): the usual (y, s) groups, no worst cell
    flat = BiasedDataset(x=torch.zeros(10, 4), y=y, s=s, num_classes=2, num_groups=3, name="toy")
    result = comparison.group_scores(flat, pred)
    assert result["worst_group_accuracy"] == 0.0 and "worst_cell_accuracy" not in result


@needs_data
def test_the_harness_on_tiny_sizes(monkeypatch):
    where = comparison.settings("cmnist", "quick")
    where["sizes"] = TINY
    where["hparams"]["erm"] = dict(epochs=1, batch_size=64)
    where["hparams"]["cvae"] = dict(architecture="mlp", channels=16, latent_channels=4, epochs=1, adversaries=1,
                                    adversary_width=8, downstream_epochs=1, downstream_width=4)
    monkeypatch.setattr(comparison, "settings", lambda dataset, profile=None: where)
    runs = comparison.compare("cmnist", [0, 1], ["erm", "cvae"], ratios=[0.05], profile="quick")
    assert len(runs) == 4 and set(comparison.KEYS) | {"conflicting_accuracy", "rho"} <= set(runs.columns)
    for column in ("accuracy", "worst_group_accuracy", "conflicting_accuracy", "dp", "eo", "hgr", "probe_accuracy"):
        assert runs[column].between(0, 1).all(), column
    assert list(runs.loc[runs.method == "cvae", "needs"].iloc[0]) == ["y", "s_representative"]
    table = comparison.comparison_table(runs)
    assert list(table.index.get_level_values("method")) == ["erm", "cvae"]
    assert table.loc[("cmnist", 0.05, "cvae"), "auditor sees"] == "null-sample"
    assert "±" in table.loc[("cmnist", 0.05, "erm"), "accuracy"]


def test_the_table_shows_mean_and_sd_over_seeds():
    runs = pd.DataFrame([
        dict(dataset="adult", method="erm", seed=seed, accuracy=acc, worst_group_accuracy=0.5, dp=0.1, eo=0.2,
             hgr=0.1, probe_accuracy=0.7, seconds=1.0, needs=["y"]) for seed, acc in ((0, 0.80), (1, 0.84))
    ])
    table = comparison.comparison_table(runs)
    assert table.loc[("adult", "erm"), "accuracy"] == f"0.820 ± {math.sqrt(0.0008):.3f}"
    assert table.loc[("adult", "erm"), "labels needed"] == "y"
    assert table.loc[("adult", "erm"), "auditor sees"] == "nothing"


@needs_data
def test_compare_prints_one_json_line_per_method_and_seed_then_the_table(monkeypatch, capsys):
    monkeypatch.setenv("FAIRLAB_DEVICE", "cpu")
    where = comparison.settings("adult", "quick")
    where["sizes"] = dict(train=400, representative=400, test=400)
    where["hparams"]["erm"] = dict(epochs=1)
    monkeypatch.setattr(comparison, "settings", lambda dataset, profile=None: where)
    assert cli.main(["compare", "--dataset", "adult", "--methods", "erm", "--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in out[:2]]
    assert [r["seed"] for r in rows] == [0, 1]
    assert set(comparison.KEYS) <= set(rows[0]) and rows[0]["needs"] == ["y"]
    assert "conflicting_accuracy" not in rows[0]  # images only
    assert "worst group" in "\n".join(out[2:]) and "nothing" in out[-1]


# bad input: one line on stderr, exit status 2, before any data is built
BAD = [
    ("unknown-method", "--methods erm nope", "no method named 'nope'"),
    ("method-not-on-images", "--dataset cmnist --methods fls", "fls does not run in the comparison on cmnist"),
    ("ratio-on-adult", "--dataset adult --bias-conflicting-ratio 0.01", "does not apply to --dataset adult"),
    ("ratio-out-of-range", "--bias-conflicting-ratio 1.5", "must lie in (0, 1)"),
    ("ratio-nan", "--bias-conflicting-ratio nan", "must lie in (0, 1)"),
    ("repeated-seed", "--seeds 0 0", "repeats a seed"),
]


@pytest.mark.parametrize("argv, fragment", [pytest.param(a, f, id=i) for i, a, f in BAD])
def test_compare_bad_input(argv, fragment, monkeypatch, capsys):
    def tripwire(*args, **kwargs):
        raise AssertionError("data was built before the options were checked")

    monkeypatch.setattr(comparison, "compare", tripwire)
    monkeypatch.setenv("FAIRLAB_PROFILE", "quick")
    code = cli.main(["compare", *argv.split()])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("fairlab: error: ") and err.count("\n") == 1 and fragment in err, err


def test_compare_bad_dataset_is_argparses_error():
    out = subprocess.run([sys.executable, "-m", "fairlab", "compare", "--dataset", "celeba"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "invalid choice: 'celeba'" in out.stderr and out.stdout == ""
