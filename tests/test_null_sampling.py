"""Null-sampling: the gradient-reversal layer, the adversaries, the objectives, y never read, the command line."""
import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import needs_data
from fairlab.data.base import BiasedDataset
from fairlab.experiments import null_sampling as ns_exp
from fairlab.methods import null_sampling as ns
from fairlab.protocols import protocol
from fairlab.models.adversary import AdversaryEnsemble, GradientReversal, grad_reverse
from fairlab.models.cvae import gated_conv_cvae
from fairlab.models.flow import partition_latent

TINY_FLOW = dict(levels=2, blocks=1, width=8, bias_dims=3, iterations=4, batch_size=8, adversaries=2,
                 adversary_width=8)
TINY_CVAE = dict(levels=2, channels=4, latent_channels=4, epochs=2, batch_size=8, adversaries=2, adversary_width=8)


def _images(n=32, seed=0, shape=(3, 8, 8)):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    s = torch.randint(0, 10, (n,), generator=gen)
    return BiasedDataset(x=x, y=y, s=s, aligned=s == y, num_classes=10, num_groups=10, name="tiny")


def test_gradient_reversal_is_identity_forward_and_minus_w_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = grad_reverse(x, 0.25)
    assert torch.equal(y, x)
    upstream = torch.randn(5, 3)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.25 * upstream)
    layer = GradientReversal(2.0)
    x.grad = None
    (layer(x) * 3).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -6.0))


def test_adversary_ensemble_loss_and_reset():
    torch.manual_seed(0)
    adversary = AdversaryEnsemble(6, 4, members=3, width=8, reset_probability=1.0)
    z, s = torch.randn(10, 6), torch.randint(0, 4, (10,))
    assert adversary(z).shape == (3, 10, 4)
    mean_ce = sum(torch.nn.functional.cross_entropy(m(z), s) for m in adversary.members) / 3
    assert torch.allclose(adversary.loss(z, s), mean_ce)
    before = [p.clone() for p in adversary.parameters()]
    assert adversary.maybe_reset() == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, adversary.parameters()))
    adversary.reset_probability = 0.0
    assert adversary.maybe_reset() == 0


def test_adversary_gradient_reaches_encoder_reversed():
    # one backward pass: the adversary descends its cross-entropy, the encoder's input ascends it
    torch.manual_seed(0)
    adversary = AdversaryEnsemble(4, 2, members=1, width=8).eval()
    z, s = torch.randn(6, 4, requires_grad=True), torch.randint(0, 2, (6,))
    adversary.loss(z, s).backward()
    plain = z.grad.clone()
    z.grad = None
    adversary.loss(grad_reverse(z, 0.5), s).backward()
    assert torch.allclose(z.grad, -0.5 * plain)


def test_cvae_published_latent_is_64x2x2():
    vae = gated_conv_cvae((3, 32, 32), 10)
    mean, logvar = vae.encode(torch.rand(2, 3, 32, 32))
    assert mean.shape == (2, 64, 2, 2) and logvar.shape == mean.shape
    assert vae.decode(mean, vae.onehot(torch.tensor([1, 2]))).shape == (2, 3, 32, 32)


def test_cflow_loss_at_initialisation_is_the_gaussian_nll():
    # every coupling starts as the identity and the 1x1 convolutions as rotations: log|det| = 0, z = rotated x
    data = _images(8)
    model = ns.build_cflow(data, **TINY_FLOW)
    logs = ns.cflow_loss(model, next(data.batches(8)), w_adv=0.01)
    z, logdet = model.encode(data.x)
    assert logdet.abs().max() < 1e-5
    expected = (0.5 * z.pow(2) + 0.5 * math.log(2 * math.pi)).mean()
    assert torch.allclose(logs["nll"], expected, atol=1e-5)
    assert torch.allclose(logs["bits_per_dim"], (expected + math.log(32)) / math.log(2), atol=1e-5)


def test_null_sample_zeroes_z_b_and_bias_sample_zeroes_z_u():
    torch.manual_seed(0)
    data = _images(8)
    model = ns.build_cflow(data, **TINY_FLOW).eval()
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    z_u, z_b = partition_latent(model.encode(data.x)[0], model.bias_dims)
    null_u, null_b = partition_latent(model.encode(ns.null_sample(model, data.x))[0], model.bias_dims)
    assert null_b.abs().max() < 1e-4 and torch.allclose(null_u, z_u, atol=1e-4)
    bias_u, bias_b = partition_latent(model.encode(ns.bias_sample(model, data.x))[0], model.bias_dims)
    assert bias_u.abs().max() < 1e-4 and torch.allclose(bias_b, z_b, atol=1e-4)
    assert torch.allclose(ns.reconstruct(model, data.x, data.s), data.x, atol=1e-5)


@pytest.mark.parametrize("fit, options", [(ns.fit_cflow, TINY_FLOW), (ns.fit_cvae, TINY_CVAE)])
def test_generative_model_never_reads_y(fit, options):
    data = _images(32)
    shuffled = BiasedDataset(x=data.x, y=data.y[torch.randperm(32)], s=data.s, num_classes=10, num_groups=10)
    first, _ = fit(data, seed=3, device="cpu", progress=False, **options)
    second, _ = fit(shuffled, seed=3, device="cpu", progress=False, **options)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_cuda_graph_on_a_cpu_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="train without cuda_graph"):
        ns.fit_cflow(_images(16), device="cpu", progress=False, cuda_graph=True, **TINY_FLOW)


def test_compiled_cflow_trains_as_the_eager_one_and_is_left_eager():
    data = _images(32)
    eager, _ = ns.fit_cflow(data, seed=3, device="cpu", progress=False, **TINY_FLOW)
    compiled, _ = ns.fit_cflow(data, seed=3, device="cpu", progress=False, compile=True, **TINY_FLOW)
    assert all(m._compiled_call_impl is None for m in compiled.modules())  # evaluation will not compile again
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cflow_trained_through_a_cuda_graph_matches_the_eager_one():
    data = _images(32)
    eager, _ = ns.fit_cflow(data, seed=3, device="cuda", progress=False, **TINY_FLOW)
    graphed, history = ns.fit_cflow(data, seed=3, device="cuda", progress=False, cuda_graph=True, **TINY_FLOW)
    assert len(history) == 1 and history["loss"].notna().all()
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5), name


def test_cvae_null_sample_decodes_the_mean_with_zero_s():
    torch.manual_seed(0)
    data = _images(4, shape=(3, 16, 16))
    model = ns.build_cvae(data, **TINY_CVAE).eval()
    mean, _ = model.vae.encode(data.x)
    expected = model.vae.decode(mean, torch.zeros(4, 10))
    assert torch.allclose(ns.null_sample(model, data.x), expected)
    # s is zero *only* in the null-sample: the reconstruction is told the true s
    assert not torch.allclose(ns.reconstruct(model, data.x, data.s), expected)
    with pytest.raises(ValueError, match="pass s"):
        ns.bias_sample(model, data.x)


def test_evaluate_on_raw_data_reports_group_metrics():
    data = _images(40, shape=(3, 8, 8))
    result = ns_exp.evaluate(None, data, data, epochs=1, batch_size=16, width=4, device="cpu", progress=False)
    assert {"accuracy", "hgr", "dp", "tpr_difference", "tnr_difference"} <= set(result)
    assert len(result["predictions"]) == 40


def test_sweep_uses_the_splits_it_is_given(monkeypatch):
    # the chapter passes the splits it has already built; only the missing ones are built
    cfg = protocol("null_sampling", "quick")
    given = {(cfg["variances"][0], cfg["seeds"][0]): {"name": "given"}}
    built, used = [], []
    monkeypatch.setattr(ns_exp, "cmnist_splits", lambda v, seed, profile: built.append((v, seed)) or {"name": "built"})

    def fake_run(method, variance, seed, *, splits, **_):
        used.append((method, variance, splits["name"]))
        return {"predictions": None, "method": method, "colour_variance": variance, "seed": seed}, None, None

    monkeypatch.setattr(ns_exp, "run_cmnist", fake_run)
    runs, _ = ns_exp.sweep_cmnist("quick", splits=given)
    assert (cfg["variances"][0], cfg["seeds"][0]) not in built
    assert len(built) == len(cfg["seeds"]) * len(cfg["variances"]) - 1
    assert {name for _, v, name in used if v == cfg["variances"][0]} == {"given"}
    assert len(runs) == len(used)


def test_settings_cover_both_profiles():
    for profile in ("quick", "full"):
        cfg = protocol("null_sampling", profile)
        assert set(cfg["cflow_variances"]) <= set(cfg["variances"])
    full = protocol("null_sampling", "full")["cflow"]
    assert (full["levels"], full["blocks"], full["width"], full["iterations"]) == (3, 24, 512, 26_000)


def _cli(*args):
    out = subprocess.run([sys.executable, "-m", "fairlab", "run", *args], capture_output=True, text=True,
                         timeout=300)
    return out


@needs_data
def test_cli_cvae_on_adult_prints_one_json_line():
    out = _cli("cvae", "--dataset", "adult", "--eta", "1.0", "--epochs", "1", "--downstream-epochs", "1",
               "--profile", "quick")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["method"] == "cvae" and {"accuracy", "dp", "eo", "hgr", "adversary_accuracy"} <= set(result)


def test_cli_rejects_a_data_set_without_representative_set():
    out = _cli("cflow", "--dataset", "cmnist-lff", "--profile", "quick")
    assert out.returncode == 2 and "invalid choice: 'cmnist-lff'" in out.stderr
    out = _cli("cvae", "--dataset", "adult", "--profile", "quick")
    assert out.returncode == 2 and "needs a representative set" in out.stderr and "--eta" in out.stderr


# ---------------------------------------------------------------------------------------------------------------
# CelebA, end to end on a small generated stand-in (the real data is downloaded by hand)
# ---------------------------------------------------------------------------------------------------------------
TINY_CELEBA = {
    "cvae": ["--architecture", "conv", "--levels", "2", "--channels", "4", "--latent-channels", "4", "--epochs", "1",
             "--batch-size", "8", "--adversaries", "1", "--adversary-width", "8"],
    "cflow": ["--levels", "2", "--blocks", "1", "--width", "8", "--iterations", "2", "--batch-size", "8",
              "--adversaries", "1", "--adversary-width", "8"],
    "erm": ["--epochs", "1", "--batch-size", "4"],
}


@pytest.mark.parametrize("method", ["cvae", "cflow", "erm"])
def test_cli_runs_the_published_celeba_protocol_on_a_stand_in(method, tmp_path, monkeypatch):
    from test_nifr_data import make_fake_celeba

    make_fake_celeba(tmp_path, n=90)
    monkeypatch.setenv("FAIRLAB_DATA", str(tmp_path))
    downstream = [] if method == "erm" else ["--downstream-epochs", "1", "--downstream-batch-size", "4",
                                             "--downstream-width", "4", "--representative-subsample", "32"]
    out = _cli(method, "--dataset", "celeba", "--eta", "1", "--profile", "quick", "--subsample", "8",
               "--test-subsample", "16", *TINY_CELEBA[method], *downstream)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["method"] == method and result["dataset"] == "celeba"
    assert {"accuracy", "dp", "eo", "hgr"} <= set(result) and 0 <= result["accuracy"] <= 1


def test_celeba_models_reconstruct_in_its_value_range():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 16, 16, generator=gen) * 2 - 1  # CelebA's images are scaled to [-1, 1]
    y, s = torch.randint(0, 2, (16,), generator=gen), torch.randint(0, 2, (16,), generator=gen)
    data = BiasedDataset(x=x, y=y, s=s, aligned=s == y, num_classes=2, num_groups=2, name="celeba-like",
                         info={"value_range": (-1.0, 1.0)})
    cvae = ns.build_cvae(data, **TINY_CVAE).eval()
    assert cvae.vae.output == "tanh"  # a sigmoid could not reach the dark half of the range
    flow = ns.build_cflow(data, **TINY_FLOW).eval()
    assert flow.centre == 0.0
    nulls = ns.null_sample_dataset(flow, data).x
    assert float(nulls.min()) >= -1 and float(nulls.max()) <= 1 and float(nulls.min()) < 0  # clamped to [-1, 1]
    assert torch.allclose(ns.reconstruct(flow, data.x, data.s), data.x, atol=1e-4)


def test_cli_gives_celeba_its_protocol_and_refuses_its_options_elsewhere(monkeypatch):
    from conftest import prepared

    args, hp = prepared(["run", "cvae", "--dataset", "celeba", "--eta", "0.5"], monkeypatch)
    full = protocol("null_sampling", "full")["celeba"]
    assert hp.adversaries == full["cvae"]["adversaries"] == 10 and args.eta == 0.5
    args, hp = prepared(["run", "cflow", "--dataset", "celeba"], monkeypatch)
    assert (hp.blocks, hp.bias_dims, hp.adversaries) == (32, 12, 10)  # the brief's CelebA cFlow
    out = _cli("cvae", "--dataset", "cmnist-nifr", "--test-subsample", "10", "--profile", "quick")
    assert out.returncode == 2 and "--test-subsample does not apply" in out.stderr


def test_chapter_celeba_section_runs_where_the_data_is_and_shows_the_authors_table_otherwise(tmp_path, monkeypatch):
    from fairlab.data import celeba_available
    from test_nifr_data import make_fake_celeba

    assert not celeba_available(tmp_path)
    table = ns_exp.published_celeba()
    cflow_eta1 = table.query("eta == 1 and method == 'cflow'").accuracy.item()
    assert set(table.method) == {"cflow", "cvae", "cnn"} and cflow_eta1 == 0.82
    commands = ns_exp.celeba_commands("full")
    assert len(commands) == 3 and all("--dataset celeba --eta 1" in c for c in commands)
    make_fake_celeba(tmp_path, n=90)
    monkeypatch.setenv("FAIRLAB_DATA", str(tmp_path))
    assert celeba_available()
    tiny = {"eta": 1.0, "representative": 24, "train": 8, "test": 16,
            "cflow": dict(TINY_FLOW, iterations=2), "cvae": dict(TINY_CVAE, epochs=1),
            "downstream": dict(architecture="conv", width=4, epochs=1, batch_size=4)}
    monkeypatch.setattr(ns_exp, "protocol", lambda chapter, profile=None: {"celeba": tiny})
    runs = ns_exp.run_celeba()
    assert list(runs.method) == ["cnn", "cvae", "cflow"] and runs.accuracy.between(0, 1).all()


def test_erm_conv_is_the_downstream_cnn_and_trains_one_run_at_a_time():
    from fairlab.methods import METHODS, erm
    from fairlab.models import DownstreamCNN

    data = _images(16, shape=(3, 16, 16))
    model, _ = METHODS["erm"].fit(data, architecture="conv", epochs=1, batch_size=8, device="cpu", progress=False)
    assert isinstance(model, DownstreamCNN)
    assert METHODS["erm"].representation(model, data).shape == (16, 128)
    models, histories = erm.fit_erm_members([data, data], [0, 1], architecture="conv", epochs=1, batch_size=8,
                                            device="cpu", progress=False)
    assert len(models) == len(histories) == 2 and all(isinstance(m, DownstreamCNN) for m in models)
    vectors = BiasedDataset(x=torch.randn(8, 5), y=data.y[:8], s=data.s[:8], aligned=data.aligned[:8],
                            num_classes=10, num_groups=10, name="vectors")
    with pytest.raises(ValueError, match="needs images"):
        erm.network(vectors, "conv")


def test_shipped_cflow_is_the_quick_profiles_and_loads(monkeypatch):
    """The quick profile's cFlow comes with the package (made by benchmarks/ship_cflow.py): its key names the
    profile's settings, it loads weights-only, inverts, and a null-sample differs from its image."""
    from fairlab.data.base import BiasedDataset
    from fairlab.pretrained import SHIPPED

    path = ns_exp.shipped_cflow_path("quick")
    assert path.parent == SHIPPED and path.is_file() and path.stat().st_size < 10 * 2**20
    key = ns_exp.shipped_cflow_key("quick")
    assert key["cflow"] == protocol("null_sampling", "quick")["cflow"] and key["data"]["colour_variance"] == 0.02
    x = torch.rand(4, 3, 32, 32)
    data = BiasedDataset(x, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), num_classes=10,
                         num_groups=10, name="probe")
    model = ns_exp.load_shipped_cflow(data, "quick", device="cpu")
    assert model is not None and not model.training
    with torch.no_grad():
        z, _ = model.encode(x)
        assert torch.allclose(model.decode(z), x, atol=1e-4)
        assert (ns.null_sample(model, x) - x).abs().mean() > 1e-3
    # other settings than the shipped ones: nothing loads, and the chapter trains the flow itself
    changed = protocol("null_sampling", "quick")
    changed["cflow"]["width"] = 16
    monkeypatch.setattr(ns_exp, "protocol", lambda chapter, profile=None: changed)
    assert ns_exp.load_shipped_cflow(data, "quick", device="cpu") is None


def test_cli_cflow_on_cmnist_trains_the_fallback_steps_not_the_shipped_run():
    from fairlab.protocols import cli_defaults

    quick = cli_defaults("cflow", "cmnist", "quick")
    assert quick["iterations"] == protocol("null_sampling", "quick")["cflow_shipped"]["fallback_iterations"]
    assert cli_defaults("cflow", "cmnist", "full")["iterations"] == 26_000
