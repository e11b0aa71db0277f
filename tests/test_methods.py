"""One method, one interface: every record of ``METHODS`` fits, predicts and gives a representation the same way;
hyperparameters are declared once; method files import no other method and no command line; the command line's
options come from the hyperparameters."""
import ast
import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch

from fairlab import cli
from fairlab.methods import METHODS, fit_runs
from fairlab.methods.base import NEEDS, Method, resolve
from fairlab.methods.erm import ERMHParams

from conftest import needs_data

ROOT = Path(__file__).resolve().parents[1]

TINY_GENERATOR = {"latent_dim": 6, "channels": (4, 8), "hidden": 16, "beta": 1.0, "epochs": 1, "batch_size": 16,
                  "lr": 1e-3}
DOWNSTREAM = dict(downstream_architecture="mlp", downstream_epochs=1, downstream_batch_size=16)
# a few steps of every method: what is checked is the interface, not what the methods learn
TINY = {
    "erm": dict(epochs=1, batch_size=16),
    "lff": dict(epochs=1, batch_size=16),
    "sih": dict(epochs=1, batch_size=16, patience=None),
    "mi": dict(epochs=1, batch_size=16, statistics_steps=1),
    "cvae": dict(architecture="mlp", channels=16, latent_channels=4, epochs=1, batch_size=16, adversaries=1,
                 adversary_width=8, **DOWNSTREAM),
    "cflow": dict(levels=2, blocks=1, width=8, bias_dims=3, iterations=2, batch_size=16, adversaries=1,
                  adversary_width=8, **DOWNSTREAM),
    "fls": dict(generator=TINY_GENERATOR, epochs=1, batch_size=16, blocks=1, width=8, adversary_width=8,
                classifier_epochs=1, classifier_batch_size=16),
}


def _images(n=64, seed=0):
    """Binary y and s on 3 x 28 x 28 images: s tints the red channel, y lights the top half."""
    from fairlab.data.base import BiasedDataset

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    s = torch.where(torch.rand(n, generator=g) < 0.8, y, 1 - y)
    x = torch.rand(n, 3, 28, 28, generator=g) * 0.2
    x[:, 0] += 0.6 * s[:, None, None]
    x[:, 1, :14] += 0.6 * y[:, None, None]
    return BiasedDataset(x=x.clamp(0, 1), y=y, s=s, aligned=s == y, num_classes=2, num_groups=2,
                         name=f"toy-{seed}", info={"seed": seed})


def test_every_cli_name_has_a_record():
    assert set(METHODS) == {"erm", "lff", "sih", "mi", "cvae", "cflow", "fls"}
    for name, record in METHODS.items():
        assert isinstance(record, Method) and record.name == name
        assert dataclasses.is_dataclass(record.hparams) and record.hparams() == record.hp()
        assert set(record.needs) <= set(NEEDS) and "y" in record.needs
        assert set(record.datasets) <= set(cli.DATASETS)
    stacked = {name for name, record in METHODS.items() if record.can_stack}
    assert stacked == {"erm", "lff", "sih"}


@pytest.mark.parametrize("name", sorted(TINY))
def test_fit_predict_representation(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRLAB_CHECKPOINTS", str(tmp_path))
    record = METHODS[name]
    train, test = _images(64, seed=0), _images(40, seed=1)
    options = {"representative": _images(64, seed=2)} if "s_representative" in record.needs else {}
    model, history = record.fit(train, record.hp(**TINY[name]), seed=0, device="cpu", progress=False, **options)
    assert len(history) >= 1
    predictions = record.predict(model, test)
    assert predictions.dtype == torch.long and predictions.shape == (40,)
    assert set(predictions.tolist()) <= {0, 1}
    features = record.representation(model, test)
    assert features.shape[0] == 40 and torch.isfinite(features.float()).all()
    # the same seed and hyperparameters, given as overrides instead of a record: the same predictions
    again, _ = record.fit(train, seed=0, device="cpu", progress=False, **options, **TINY[name])
    assert torch.equal(record.predict(again, test), predictions)


def test_null_sampling_without_a_representative_set_says_what_to_pass():
    with pytest.raises(ValueError, match="representative=<"):
        METHODS["cvae"].fit(_images(32), **TINY["cvae"])


def test_fls_without_generator_settings_says_where_they_are():
    with pytest.raises(ValueError, match="hp.generator"):
        METHODS["fls"].fit(_images(32), epochs=1)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_default_is_written_once(name):
    # the fit functions take hyperparameters through hp / overrides only: no keyword of theirs repeats a field
    record = METHODS[name]
    fields = {f.name for f in dataclasses.fields(record.hparams)}
    for fn in (record.fit, record.fit_members):
        if fn is None:
            continue
        parameters = set(inspect.signature(fn).parameters)
        assert not parameters & fields, (fn.__name__, parameters & fields)


def test_an_unknown_hyperparameter_is_named():
    with pytest.raises(TypeError, match=r"ERMHParams has no field\(s\) \['epoch'\]; its fields are"):
        resolve(ERMHParams, None, {"epoch": 3})
    with pytest.raises(TypeError, match="epoch"):
        METHODS["erm"].fit(_images(32), epoch=3)


def test_fit_runs_stacked_equals_one_by_one():
    trains = [_images(64, seed=0), _images(64, seed=1)]
    hp = METHODS["erm"].hp(epochs=2, batch_size=16)
    stacked, _ = fit_runs(METHODS["erm"], trains, [3, 4], hp, device="cpu", progress=False)
    alone, _ = fit_runs(METHODS["erm"], trains, [3, 4], hp, stack=False, device="cpu", progress=False)
    for a, b in zip(stacked, alone):
        for (key, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5, msg=key)
    with pytest.raises(ValueError, match="one seed per training set"):
        fit_runs(METHODS["erm"], trains, [0], hp)


def test_method_files_import_no_other_method_and_no_command_line():
    folder = ROOT / "fairlab" / "methods"
    allowed = {"fairlab.methods.base"}
    for path in sorted(folder.glob("*.py")):
        if path.name == "__init__.py":
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        forbidden = {m for m in imported if (m.startswith("fairlab.methods") and m not in allowed
                                             and not m.startswith("fairlab.methods.base"))
                     or m.startswith(("fairlab.cli", "fairlab.experiments", "fairlab.protocols"))}
        assert not forbidden, (path.name, forbidden)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_help_lists_the_hyperparameters(name, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", name, "--help"])
    text = capsys.readouterr().out
    record = METHODS[name]
    for field in dataclasses.fields(record.hparams):
        if field.metadata.get("cli", True):
            flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
            assert flag in text, flag
            assert field.metadata["help"].split()[0] in text
    assert "--seeds" in text and f"{name} hyperparameters" in text


@needs_data
def test_cli_seeds_stack_runs_and_match_single_runs(capsys, monkeypatch):
    monkeypatch.setenv("FAIRLAB_DEVICE", "cpu")  # restored afterwards (--device writes the environment)
    monkeypatch.setenv("FAIRLAB_PROFILE", "quick")
    common = ["run", "erm", "--subsample", "512", "--epochs", "1", "--batch-size", "128", "--device", "cpu"]
    assert cli.main([*common, "--seeds", "0", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["seed"] for line in lines] == [0, 1]
    assert cli.main([*common, "--seed", "1"]) == 0
    (single,) = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    for key in ("accuracy", "conflicting_accuracy", "worst_group_accuracy"):
        assert lines[1][key] == pytest.approx(single[key], abs=2e-3), key


def test_fls_cli_takes_chapter_5s_training_and_test_correlation(monkeypatch):
    # the chapter trains where colour and label agree 98 times in 100 and tests where they are independent: the command
    # line must build the same two splits, and what the user gives wins
    from conftest import prepared

    from fairlab.protocols import protocol

    chapter = protocol("fair_latent_space", "quick", dataset="cmnist-binary")["data"]
    args, hp = prepared(["run", "fls", "--dataset", "cmnist-binary", "--profile", "quick"], monkeypatch)
    assert (args.correlation, args.test_correlation) == (chapter["correlation"], chapter["test_correlation"])
    assert chapter["correlation"] != chapter["test_correlation"]
    args, _ = prepared(["run", "fls", "--dataset", "cmnist-binary", "--profile", "quick", "--test-correlation", "0.7"],
                       monkeypatch)
    assert args.test_correlation == 0.7
    with pytest.raises(cli.UsageError, match="--test-correlation does not apply to --dataset adult"):
        prepared(["run", "erm", "--dataset", "adult", "--test-correlation", "0.5"], monkeypatch)
