"""Bad input gets one clear message, never a traceback or a silently wrong number (issue 12).

One row per bad input: what the user typed or called, the exit status or exception type they get, and a fragment of
the message they read. Every row runs in a sandbox whose working directory, home, cache and temp folders must still
be empty afterwards (nothing is written outside the data root), and the rows marked ``before_data`` run with data
building replaced by a tripwire: their check must come before any data is built.
"""
import importlib
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from fairlab import cli, config, metrics
from fairlab import ensemble as ens
from fairlab.data import BiasedDataset, adult, binary_coloured_mnist, coloured_mnist
from fairlab.errors import DatasetNotFoundError, DeviceError, FairlabError, NonFiniteLossError
from fairlab.losses import cross_entropy
from fairlab.methods.erm import fit_erm
from fairlab.models import MLP
from fairlab.train import fit, make_step, predict

from conftest import needs_data

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Working directory, HOME, XDG cache and temp folder in empty folders that must stay empty; the FAIRLAB_*
    variables reset (setting them here also undoes what the CLI's --device/--profile write into the environment)."""
    outside = {name: tmp_path / name for name in ("cwd", "home", "tmp")}
    for folder in outside.values():
        folder.mkdir()
    monkeypatch.chdir(outside["cwd"])
    monkeypatch.setenv("HOME", str(outside["home"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(outside["home"] / ".cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(outside["tmp"]))
    for name in ("FAIRLAB_DEVICE", "FAIRLAB_PROFILE", "FAIRLAB_DEBUG", "FAIRLAB_CHECKPOINTS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("FAIRLAB_PROGRESS", "0")
    yield tmp_path
    for name, folder in outside.items():
        written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
        if name == "tmp":
            # torch's own: importing torch._dynamo (the optimisers do, lazily) creates its empty cache folder
            written = [w for w in written if not (w.startswith("torchinductor_") and not any((folder / w).iterdir()))]
        assert not written, f"written outside the data root, in {name}: {written}"


def tripwire(monkeypatch):
    """Make building any data set fail the test: the check under test must have fired before."""

    def built(*args, **kwargs):
        raise AssertionError("data were built before the bad input was reported")

    # the modules, not the functions of the same name that fairlab.data exports
    monkeypatch.setattr(importlib.import_module("fairlab.data.coloured_mnist"), "load_mnist", built)
    monkeypatch.setattr(importlib.import_module("fairlab.data.adult"), "load_adult_frame", built)
    monkeypatch.setattr(importlib.import_module("fairlab.data.binary_cmnist"), "load_mnist", built)


def run_cli(argv, capsys):
    """``python -m fairlab ...`` in this process: (exit status, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------------------------
# The command line: (id, arguments after "run", environment, exit status, message fragment, checked before data)
# ---------------------------------------------------------------------------------------------------------------
CLI_ROWS = [
    # options that do not apply to the chosen data set
    ("colour-variance with cmnist-lff", "erm --dataset cmnist-lff --colour-variance -1", {}, 2,
     "--colour-variance does not apply to --dataset cmnist-lff; only cmnist-kim and cmnist-nifr take it", True),
    ("rho with cmnist-kim", "erm --dataset cmnist-kim --bias-conflicting-ratio 1.5", {}, 2,
     "--bias-conflicting-ratio does not apply to --dataset cmnist-kim; only cmnist-lff takes it", True),
    ("eta with cmnist-nifr", "erm --dataset cmnist-nifr --eta 0.5", {}, 2,
     "--eta does not apply to --dataset cmnist-nifr; only adult and celeba take it", True),
    ("colour-std with adult", "erm --dataset adult --colour-std 0.1", {}, 2,
     "--colour-std does not apply to --dataset adult; only cmnist-lff takes it", True),
    # a data set the method does not run on, refused before any data is built
    ("fls on cmnist-lff", "fls --dataset cmnist-lff", {}, 2, "argument --dataset: invalid choice: 'cmnist-lff'", True),
    ("cflow on cmnist-kim", "cflow --dataset cmnist-kim", {}, 2, "argument --dataset: invalid choice: 'cmnist-kim'",
     True),
    ("cvae on adult without eta", "cvae --dataset adult", {}, 2,
     "cvae needs a representative set: on --dataset adult give --eta E", True),
    ("--seed and --seeds", "erm --seed 1 --seeds 0 1", {}, 2, "argument --seeds: not allowed with argument --seed",
     True),
    ("mi lambda nan", "mi --lambda nan", {}, 2, "--lambda must be a finite number, got nan", True),
    # counts
    ("subsample 0", "erm --subsample 0", {}, 2, "argument --subsample: must be a positive whole number, got 0", True),
    ("subsample -5", "erm --subsample -5", {}, 2, "argument --subsample: must be a positive whole number", True),
    ("subsample 2.5", "erm --subsample 2.5", {}, 2, "argument --subsample: must be a whole number, got '2.5'", True),
    ("subsample larger than the split", "erm --subsample 70000", {}, 1,
     "subsample=70000 is larger than cmnist-lff/train, which has 60000 samples", True),
    ("subsample smaller than a batch", "erm --subsample 100", {}, 2,
     "--subsample 100 is fewer than one batch (--batch-size 256)", True),
    ("batch-size 0", "erm --batch-size 0", {}, 2, "argument --batch-size: must be a positive whole number, got 0", True),
    ("epochs 0", "erm --epochs 0", {}, 2, "argument --epochs: must be a positive whole number, got 0", True),
    # values
    ("colour-variance nan", "erm --dataset cmnist-kim --colour-variance nan", {}, 2,
     "--colour-variance must be a finite number, got nan", True),
    ("colour-variance inf", "erm --dataset cmnist-nifr --colour-variance inf", {}, 2,
     "--colour-variance must be a finite number, got inf", True),
    ("colour-variance negative", "erm --dataset cmnist-nifr --colour-variance -0.5", {}, 1,
     "colour_variance must be a finite number >= 0, got -0.5", True),
    ("colour-std negative", "erm --dataset cmnist-lff --colour-std -0.1", {}, 1,
     "colour_std must be a finite number >= 0, got -0.1", True),
    ("rho 1.5 with cmnist-lff", "erm --dataset cmnist-lff --bias-conflicting-ratio 1.5", {}, 1,
     r"bias_conflicting_ratio (rho) must lie in (0, 1), got 1.5", True),
    ("eta 1.5", "erm --dataset adult --eta 1.5", {}, 1, "eta must lie in [0, 1]", True),
    ("lr nan", "erm --lr nan", {}, 2, "--lr must be a finite number, got nan", True),
    ("method option nan", "lff --q nan", {}, 2, "--q must be a finite number, got nan", True),
    # the environment and the device, checked first and named
    ("FAIRLAB_DEVICE=garbage", "erm", {"FAIRLAB_DEVICE": "garbage"}, 1,
     "FAIRLAB_DEVICE='garbage' is not a device: give cpu, cuda or cuda:<index>, or leave FAIRLAB_DEVICE unset", True),
    ("FAIRLAB_DEVICE=meta", "erm", {"FAIRLAB_DEVICE": "meta"}, 1, "FAIRLAB_DEVICE='meta': fairlab trains on cpu", True),
    ("--device garbage", "erm --device garbage", {}, 1, "--device='garbage' is not a device", True),
    pytest.param("erm", {"FAIRLAB_DEVICE": "cuda"}, 1,
                 "FAIRLAB_DEVICE='cuda' but this machine has no CUDA GPU visible to PyTorch", True,
                 id="FAIRLAB_DEVICE=cuda without a GPU", marks=pytest.mark.skipif(HAS_CUDA, reason="a GPU is here")),
    ("FAIRLAB_DEVICE=cuda:7", "erm", {"FAIRLAB_DEVICE": "cuda:7"}, 1,
     "FAIRLAB_DEVICE='cuda:7' but this machine has" if HAS_CUDA else "FAIRLAB_DEVICE='cuda:7' but this machine has no",
     True),
    ("FAIRLAB_PROFILE=fast", "erm", {"FAIRLAB_PROFILE": "fast"}, 1, "FAIRLAB_PROFILE='fast' is not a profile", True),
    ("FAIRLAB_PROGRESS=maybe", "erm", {"FAIRLAB_PROGRESS": "maybe"}, 1,
     "FAIRLAB_PROGRESS='maybe' is not a switch; use 1 or 0", True),
    ("FAIRLAB_DEBUG=maybe", "erm", {"FAIRLAB_DEBUG": "maybe"}, 1, "FAIRLAB_DEBUG='maybe' is not a switch", True),
]

# rows that need the data: a diverged run must never print chance-level numbers
TRAINING_ROWS = [
    ("sih blows up (NaN validation loss)", "sih --lr 1e30 --subsample 512 --epochs 1 --device cpu", {}, 1,
     "sih: the validation val_loss became NaN/inf at epoch 0", False),
    ("erm blows up on its last step", "erm --lr 1e30 --subsample 256 --epochs 1 --device cpu", {}, 1,
     "the model's outputs on cmnist-lff/test are NaN/inf", False),
    ("data root that cannot be created", "erm --dataset adult", {"FAIRLAB_DATA": "{tmp}/a_file/data"}, 1,
     "The data folder cannot be created", False),
]


def _check_cli_row(argv, env, code, fragment, before_data, sandbox, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=sandbox))
    if "{tmp}/a_file" in env.get("FAIRLAB_DATA", ""):
        (sandbox / "a_file").write_text("a file where the data root should be")
    if before_data:
        tripwire(monkeypatch)
    got, out, err = run_cli(["run", *argv.split()], capsys)
    assert got == code, err
    assert fragment in err
    assert out == ""  # no JSON line: no number a script could mistake for a result
    assert "Traceback" not in err
    if fragment.startswith("argument "):
        assert err.splitlines()[-1].startswith("python -m fairlab run ")  # argparse's usage, then its error line
    elif isinstance(fragment, str) and "data folder" in fragment:
        # a data error says what is wrong on its first line, then lists the files expected and where to get them
        assert err.startswith("fairlab: error: ")
    else:
        assert err.startswith("fairlab: error: ") and err.count("\n") == 1, err  # one line


def _rows(rows):
    """(id, *values) tuples as pytest params named by their id (rows that are already params pass through)."""
    return [row if hasattr(row, "marks") else pytest.param(*row[1:], id=row[0]) for row in rows]


@pytest.mark.parametrize("argv, env, code, fragment, before_data", _rows(CLI_ROWS))
def test_cli_bad_input(argv, env, code, fragment, before_data, sandbox, monkeypatch, capsys):
    _check_cli_row(argv, env, code, fragment, before_data, sandbox, monkeypatch, capsys)


@needs_data
@pytest.mark.parametrize("argv, env, code, fragment, before_data", _rows(TRAINING_ROWS))
def test_cli_bad_input_found_in_training(argv, env, code, fragment, before_data, sandbox, monkeypatch, capsys):
    _check_cli_row(argv, env, code, fragment, before_data, sandbox, monkeypatch, capsys)


def test_ctrl_c_prints_interrupted_and_exits_130(sandbox, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run", interrupted)
    code, out, err = run_cli(["run", "erm"], capsys)
    assert (code, out, err) == (130, "", "interrupted\n")


@pytest.mark.parametrize("how", ["--debug", "FAIRLAB_DEBUG=1"])
def test_debug_shows_the_traceback(how, sandbox, monkeypatch, capsys):
    monkeypatch.setenv("FAIRLAB_DEVICE", "garbage")
    argv = ["run", "erm"]
    if how == "--debug":
        argv.append("--debug")
    else:
        monkeypatch.setenv("FAIRLAB_DEBUG", "1")
    with pytest.raises(DeviceError, match="FAIRLAB_DEVICE='garbage'"):
        cli.main(argv)


def test_the_installed_entry_point_prints_one_line_and_no_traceback(sandbox):
    env = {**os.environ, "FAIRLAB_DEVICE": "garbage", "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-m", "fairlab", "run", "erm"], capture_output=True, text=True, env=env,
                         timeout=120, cwd=sandbox / "cwd")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("fairlab: error: FAIRLAB_DEVICE='garbage' is not a device")
    assert out.stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------------------------------
# The Python API: (id, call, exception type, message fragment); none of these reaches data building
# ---------------------------------------------------------------------------------------------------------------
def _tiny(n=64, d=4):
    g = torch.Generator().manual_seed(0)
    return BiasedDataset(x=torch.randn(n, d, generator=g), y=torch.arange(n) % 2, s=(torch.arange(n) // 2) % 2,
                         name="tiny")


def _fit_with_step(step_effect, validate=None, epochs=1):
    """Train a linear model on ``_tiny`` with a step that calls ``step_effect(model)`` after its update."""
    model = nn.Linear(4, 2)
    update = make_step(model, cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1))

    def step(batch):
        logs = update(batch)
        step_effect(model)
        return logs

    return fit(model, _tiny(), step, epochs=epochs, batch_size=16, validate=validate, device="cpu", progress=False)


def _poison_last_step(model, calls=[0]):  # noqa: B006  (counts the steps of one fit call)
    calls[0] += 1
    if calls[0] % 4 == 0:  # 64 samples / 16 per batch: the 4th step of the epoch is the last
        with torch.no_grad():
            model.weight[0, 0] = float("nan")


def _members_fit(poison_last_step=False, nan_validation=False, epochs=1):
    members, generators = ens.members(lambda: MLP(4, (8,), 2), seeds=[0, 1], device="cpu")
    data = [_tiny(), _tiny()]
    loss = ens.per_member(cross_entropy)
    state = {"steps": 0}

    def loss_fn(ensemble, batch):
        logs = loss(ensemble, batch)
        state["steps"] += 1
        if poison_last_step and state["steps"] == 4:
            with torch.no_grad():
                next(iter(ensemble.params.values()))[1].view(-1)[0] = float("nan")  # member 1, one weight
        return logs

    def val_loss_fn(ensemble, batch):
        logs = loss(ensemble, batch)
        return {**logs, "loss": logs["loss"] * float("nan")} if nan_validation else logs

    return ens.fit_members(members, data, loss_fn, epochs=epochs, generators=generators, batch_size=16,
                           val=data if nan_validation else None, val_loss_fn=val_loss_fn, progress=False)


def _nan_model() -> nn.Module:
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    return model


API_ROWS = [
    # subsample: a positive count no larger than the split, checked before MNIST/Adult is read
    ("coloured_mnist subsample -5", lambda: coloured_mnist("lff", subsample=-5), ValueError,
     "subsample must be a positive number of samples"),
    ("coloured_mnist subsample 0", lambda: coloured_mnist("lff", "test", subsample=0), ValueError,
     "subsample must be a positive number of samples"),
    ("coloured_mnist subsample 2.5", lambda: coloured_mnist("kim", subsample=2.5), ValueError,
     "subsample must be a whole number of samples"),
    ("coloured_mnist subsample too large", lambda: coloured_mnist("nifr", "representative", subsample=30_000),
     ValueError, "larger than cmnist-nifr/representative, which has 24000 samples"),
    ("coloured_mnist colour_variance nan", lambda: coloured_mnist("kim", colour_variance=float("nan")), ValueError,
     "colour_variance must be a finite number >= 0, got nan"),
    ("coloured_mnist colour_std inf", lambda: coloured_mnist("lff", colour_std=float("inf")), ValueError,
     "colour_std must be a finite number >= 0, got inf"),
    ("binary_coloured_mnist subsample too large", lambda: binary_coloured_mnist("test", subsample=10_001), ValueError,
     "larger than cmnist-binary/test, which has 10000 samples"),
    ("binary_coloured_mnist colour_std nan", lambda: binary_coloured_mnist(colour_std=float("nan")), ValueError,
     "colour_std must be a finite number >= 0, got nan"),
    ("adult subsample 0", lambda: adult("train", subsample=0), ValueError,
     "subsample must be a positive number of samples"),
    ("adult eta without the nifr protocol", lambda: adult("train", eta=0.3), ValueError,
     "eta belongs to the null-sampling protocol: pass protocol='nifr'"),
    ("adult eta nan", lambda: adult("train", protocol="nifr", eta=float("nan")), ValueError,
     r"eta must lie in [0, 1]"),
    # BiasedDataset shapes
    ("BiasedDataset 1-D x", lambda: BiasedDataset(x=torch.zeros(5), y=torch.zeros(5, dtype=torch.long),
                                                  s=torch.zeros(5, dtype=torch.long)), ValueError,
     "x must hold one row per sample, (N, features) or (N, C, H, W); got shape (5,). For one feature per sample "
     "pass x[:, None]"),
    ("BiasedDataset 2-D y", lambda: BiasedDataset(x=torch.zeros(5, 2), y=torch.zeros(5, 2, dtype=torch.long),
                                                  s=torch.zeros(5, dtype=torch.long)), ValueError,
     "y must be one class id per sample, shape (N,)"),
    ("batches of 0", lambda: next(_tiny().batches(0)), ValueError, "batch_size must be positive, got 0"),
    # training: counts, and a blow-up caught whatever the epoch count
    ("fit epochs=0", lambda: fit(nn.Linear(4, 2), _tiny(), lambda b: {}, epochs=0, device="cpu"), ValueError,
     "epochs must be a positive whole number, got 0"),
    ("fit batch_size=0", lambda: fit(nn.Linear(4, 2), _tiny(), lambda b: {}, epochs=1, batch_size=0, device="cpu"),
     ValueError, "batch_size must be a positive whole number, got 0"),
    ("fit_erm epochs=0", lambda: fit_erm(_tiny(), epochs=0, device="cpu"), ValueError,
     "epochs must be a positive whole number, got 0"),
    ("fit_members epochs=0", lambda: _members_fit(epochs=0), ValueError, "epochs must be a positive whole number, got 0"),
    ("fit: NaN validation loss in a 1-epoch run",
     lambda: _fit_with_step(lambda m: None, validate=lambda: {"val_loss": float("nan")}), NonFiniteLossError,
     "the validation val_loss became NaN/inf at epoch 0"),
    ("fit: weights blow up on the last step", lambda: _fit_with_step(_poison_last_step), NonFiniteLossError,
     "training ended with NaN/inf weights (weight)"),
    ("fit_members: NaN validation loss", lambda: _members_fit(nan_validation=True), NonFiniteLossError,
     "member 0's validation loss became NaN/inf at epoch 0"),
    ("fit_members: weights blow up on the last step", lambda: _members_fit(poison_last_step=True),
     NonFiniteLossError, "member(s) [1] ended training with NaN/inf weights"),
    ("predict with NaN outputs", lambda: predict(_nan_model(), _tiny()), NonFiniteLossError,
     "the model's outputs on tiny are NaN/inf"),
    # metrics
    ("NaN in sensitive_features", lambda: metrics.summary([0, 1, 1], [0, 1, 0], sensitive_features=[0.0, 1.0,
                                                                                                   float("nan")]),
     ValueError, "sensitive_features holds 1 missing value(s) (NaN or None); every sample needs a group"),
    ("NaN in y_pred", lambda: metrics.accuracy([0, 1, 1], [0.0, float("nan"), 1.0]), ValueError,
     "y_pred holds 1 NaN value(s); every sample needs a class id"),
    ("None in groups", lambda: metrics.group_accuracies([0, 1, 1], [0, 1, 0], groups=["a", None, "b"]), ValueError,
     "groups holds 1 missing value(s)"),
    ("NaN in hgr_correlation", lambda: metrics.hgr_correlation([0, 1, 1], [0.0, float("nan"), 1.0]), ValueError,
     "b holds 1 missing value(s)"),
    ("probe_accuracy on NaN features",
     lambda: metrics.probe_accuracy(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]] * 5), torch.arange(10) % 2),
     ValueError, "features hold NaN or inf in 5 of 10 rows"),
    # the environment, through the API
    ("device garbage", lambda: config.parse_device("garbage"), DeviceError,
     "FAIRLAB_DEVICE='garbage' is not a device"),
    ("device cuda:x", lambda: config.parse_device("cuda:x", "--device"), DeviceError,
     "--device='cuda:x' is not a device"),
]


@pytest.mark.parametrize("call, error, fragment", _rows(API_ROWS))
def test_api_bad_input(call, error, fragment, sandbox, monkeypatch):
    tripwire(monkeypatch)
    with pytest.raises(error) as info:
        call()
    assert fragment in str(info.value)
    if error is not ValueError:
        assert isinstance(info.value, FairlabError)  # what the command line prints as one line


def test_downloaded_files_get_the_usual_permissions(sandbox, monkeypatch):
    import hashlib
    import io

    import fairlab.data._files as files

    payload = b"a data file"
    monkeypatch.setattr(files.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    folder = sandbox / "data"
    folder.mkdir()
    files._download(["https://example.invalid/file"], folder / "file", hashlib.md5(payload).hexdigest())
    mask = os.umask(0o022)
    os.umask(mask)
    mode = stat.S_IMODE((folder / "file").stat().st_mode)
    assert mode == 0o666 & ~mask and mode & stat.S_IROTH  # readable by others, like any downloaded file, not 0600
    assert os.listdir(folder) == ["file"]  # no temp file left behind


def test_missing_data_is_a_fairlab_error():
    assert issubclass(DatasetNotFoundError, FairlabError) and issubclass(DatasetNotFoundError, FileNotFoundError)
    assert issubclass(NonFiniteLossError, FloatingPointError) and issubclass(DeviceError, RuntimeError)
