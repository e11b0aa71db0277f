"""Fair latent space: the module inverts, its log-determinant is the
Jacobian's, the generator checkpoint round-trips and is refused with
other settings, flipping w_S cannot move the fair decision, the losses
by hand, the whole experiment on tiny generated data."""
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from fairlab.data.base import BiasedDataset
from fairlab import pretrained
from fairlab.experiments import fair_latent_space as fls_exp
from fairlab.methods import fair_latent_space as fls
from fairlab.models.flow import standard_normal_log_prob
from fairlab.models.generator import ConvVAE, TabularVAE
from tests.conftest import needs_data

try:
    import zuko  # noqa: F401  (test-only reference, if installed)
except ImportError:
    zuko = None


def _module(dim=8, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = fls.FairLatentSpace(dim, 2, 2, blocks=4, width=16, depth=2,
                                adversary_width=8, adversaries=2)
    # the couplings start as the identity: perturb every parameter so
    # the test sees a real, non-trivial map
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.to(dtype)


def test_module_inverts_to_1e5():
    model = _module()
    z = torch.randn(256, 8) * 2
    w, _ = model.transform(z)
    assert (w - z).abs().max() > 0.1  # not the identity
    assert torch.allclose(model.inverse(w), z, atol=1e-5)
    back, _ = model.transform(model.inverse(w))
    assert torch.allclose(back, w, atol=1e-5)


def test_log_determinant_equals_the_jacobian():
    model = _module(dtype=torch.float64)
    z = torch.randn(5, 8, dtype=torch.float64)
    _, logdet = model.transform(z)
    for i in range(len(z)):
        jac = torch.autograd.functional.jacobian(
            lambda v: model.transform(v[None])[0][0], z[i])
        expected = torch.linalg.slogdet(jac).logabsdet
        assert logdet[i].item() == pytest.approx(expected.item(),
                                                 abs=1e-9)


def test_flow_nll_of_the_identity_is_the_gaussian_nll():
    w = torch.randn(16, 6)
    expected = -standard_normal_log_prob(w).mean() / 6
    assert fls.flow_nll(w, torch.zeros(16)).item() == pytest.approx(
        expected.item())
    # by hand for w = 0: log(2 pi) / 2 per dimension
    assert fls.flow_nll(torch.zeros(3, 4), torch.zeros(3)).item() == \
        pytest.approx(0.5 * math.log(2 * math.pi))


def test_flipping_w_s_leaves_the_decision_unchanged_by_construction():
    model = _module()
    model.sensitive_means.copy_(torch.tensor([[-2.0, -1.0],
                                              [2.0, 1.0]]))
    model.label_means.copy_(torch.tensor([[-1.5, -1.5], [1.5, 1.5]]))
    with torch.no_grad():
        model.label_head.weight.copy_(torch.tensor([[-1.0, -1.0],
                                                    [1.0, 1.0]]))
    w = torch.randn(200, 8)
    s = torch.randint(0, 2, (200,))
    flipped = model.flip_sensitive(w, s)
    w_y, w_s, w_r = model.split(w)
    f_y, f_s, f_r = model.split(flipped)
    assert torch.equal(f_y, w_y) and torch.equal(f_r, w_r)
    # w_S moved by exactly the difference of the group means
    shift = model.sensitive_means[1 - s] - model.sensitive_means[s]
    assert torch.allclose(f_s - w_s, shift)
    assert torch.equal(model.decide(flipped), model.decide(w))
    # and flipping twice comes back
    assert torch.allclose(model.flip_sensitive(flipped, 1 - s), w, atol=1e-5)
    # moving w_Y does change the decision
    decision = model.decide(w).argmax(1)
    moved = model.move_label(w, decision)
    assert (model.decide(moved).argmax(1) != decision).float().mean() > .5


def test_redistribution_loss_by_hand():
    targets = fls.redistribution_targets(2, 4.0)
    assert torch.allclose(targets[1] - targets[0],
                          torch.full((2,), 4 / math.sqrt(2)))
    assert (targets[1] - targets[0]).norm().item() == pytest.approx(4.0)
    y = torch.tensor([0, 0, 1, 1, 1])
    s = torch.tensor([0, 1, 0, 1, 1])
    w_y, w_s = targets[y].clone(), targets[s].clone()
    assert fls.redistribution_loss(w_y, w_s, y, s, 4.0).item() == \
        pytest.approx(0.0, abs=1e-12)
    # shift w_Y of the cell (y=1, s=1) by 1 in one coordinate: error 1
    # in one of the four occupied cells -> 1 / 4
    w_y[3:, 0] += 1.0
    assert fls.redistribution_loss(w_y, w_s, y, s, 4.0).item() == \
        pytest.approx(0.25)
    # an empty cell does not count: drop (y=0, s=1)
    keep = torch.tensor([0, 2, 3, 4])
    value = fls.redistribution_loss(w_y[keep], w_s[keep], y[keep],
                                    s[keep], 4.0)
    assert value.item() == pytest.approx(1 / 3)


def test_independence_loss_trains_the_adversaries_and_reverses():
    model = _module()
    z = torch.randn(64, 8)
    y, s = torch.randint(0, 2, (64,)), torch.randint(0, 2, (64,))
    out = fls.fls_loss(model, z, y, s, mean_distance=4.0,
                       independence_weight=1.0,
                       redistribution_weight=1.0)
    assert set(out) == {"loss", "nll", "label_ce", "sensitive_ce",
                        "adversary_ce", "redistribution"}
    out["loss"].backward()
    # the adversary and the flow get gradients of opposite signs on the
    # adversary term: check the flow's gradient from that term alone
    model.zero_grad()
    w, _ = model.transform(z)
    w_y, w_s, w_r = model.split(w)
    fls.independence_loss(model, w_y, w_s, w_r, y, s, 1.0).backward()
    for adversary in (model.label_adversary, model.sensitive_adversary,
                      model.rest_adversary):
        adv = next(adversary.parameters()).grad
        assert adv is not None and adv.abs().sum() > 0
    flow = next(model.flow.parameters()).grad
    assert flow is not None and flow.abs().sum() > 0


def _images(n=64, shape=(3, 8, 8), seed=0, name="toy/train"):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    s = torch.where(torch.rand(n, generator=g) < 0.8, y, 1 - y)
    x = torch.rand(n, *shape, generator=g) * 0.2
    x[:, 0] += 0.6 * s[:, None, None]  # s: red channel
    x[:, 1, : shape[1] // 2] += 0.6 * y[:, None, None]  # y: top half
    return BiasedDataset(x=x.clamp(0, 1), y=y, s=s, aligned=s == y,
                         num_classes=2, num_groups=2, name=name,
                         info={"seed": seed})


TINY_GENERATOR = {"latent_dim": 6, "channels": [4, 8], "hidden": 16,
                  "beta": 1.0, "epochs": 1, "batch_size": 16,
                  "lr": 1e-3}


def test_generator_checkpoint_round_trips_and_is_refused(
        tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRLAB_CHECKPOINTS", str(tmp_path / "ck"))
    data = _images()
    first = pretrained.pretrained_generator(data, TINY_GENERATOR,
                                     device="cpu", progress=False)
    assert not first.loaded and first.path.is_file()
    assert first.path.parent == tmp_path / "ck"
    assert not any(p.requires_grad for p in first.model.parameters())
    second = pretrained.pretrained_generator(data, TINY_GENERATOR,
                                      device="cpu", progress=False)
    assert second.loaded and second.path == first.path
    assert second.seconds == pytest.approx(first.seconds)
    z = torch.randn(4, 6)
    assert torch.equal(first.model.decode(z), second.model.decode(z))
    # other settings: another file name, trained anew
    other = {**TINY_GENERATOR, "latent_dim": 5}
    third = pretrained.pretrained_generator(data, other, device="cpu",
                                     progress=False)
    assert not third.loaded and third.path != first.path
    # a file whose stored settings differ from the ones asked for
    key = pretrained.generator_key(data, other)
    with pytest.raises(pretrained.CheckpointMismatchError, match="latent_dim"):
        pretrained.load_generator(pretrained.build_generator(data, other), key,
                           first.path)
    # other training data (another seed's draw): refused as well
    moved = replace(data, info={"seed": 1})
    with pytest.raises(pretrained.CheckpointMismatchError, match="data"):
        pretrained.load_generator(pretrained.build_generator(moved, TINY_GENERATOR),
                           pretrained.generator_key(moved, TINY_GENERATOR),
                           first.path)


def test_checkpoints_are_never_written_into_the_data_root(tmp_path, monkeypatch):
    from fairlab import config
    from fairlab.errors import FairlabError

    data_root, cache = tmp_path / "data", tmp_path / "cache"
    data_root.mkdir()
    monkeypatch.setenv("FAIRLAB_DATA", str(data_root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("FAIRLAB_CHECKPOINTS", raising=False)
    # even a writable data root (or one a root process may write) is only read
    assert config.checkpoint_root() == cache / "fairlab" / "checkpoints"
    # a shipped checkpoint in the data root is still found first
    assert config.checkpoint_folders()[0] == data_root / "checkpoints"
    monkeypatch.setenv("FAIRLAB_CHECKPOINTS", str(tmp_path / "mine"))
    assert config.checkpoint_root() == tmp_path / "mine"
    monkeypatch.setattr(config, "_writable", lambda folder: False)
    with pytest.raises(FairlabError, match="FAIRLAB_CHECKPOINTS"):
        config.checkpoint_root()


def test_tabular_vae_layout_and_decoded_records():
    names = ["age", "hours", "job_a", "job_b", "job_c", "sex_F", "sex_M"]
    assert pretrained.tabular_layout(names) == (2, [3, 2])
    vae = TabularVAE(2, [3, 2], latent_dim=3, hidden=[8, 8])
    x = vae.decode(torch.randn(5, 3))
    assert x.shape == (5, 7)
    assert torch.equal(x[:, 2:5].sum(1), torch.ones(5))
    table = fls_exp.records(x, names)
    assert list(table.columns) == ["age", "hours", "job", "sex"]
    assert set(table["sex"]) <= {"F", "M"}
    # with the data's statistics: whole numbers inside the training range, as a person reads a record
    stats = pd.DataFrame({"age": [40.0, 10.0, 17, 90], "hours": [40.0, 12.0, 1, 99]},
                         index=["mean", "std", "min", "max"])
    wild = x.clone()
    wild[:, 0] = torch.tensor([-9.0, -0.44, 0.0, 0.33, 9.0])
    readable = fls_exp.records(wild, names, stats)
    assert readable["age"].tolist() == [17, 36, 40, 43, 90]
    assert pd.api.types.is_integer_dtype(readable["hours"])
    assert fls_exp.in_domain(readable, stats, names).all()
    assert not fls_exp.in_domain(table, stats, names)[["age", "hours"]].any()
    real = torch.tensor([[0.0, 1.0, 1, 0, 0, 0, 1]])
    assert torch.isfinite(vae.loss(real.repeat(4, 1))["loss"])
    changed = fls_exp.changed_fields(
        pd.DataFrame({"age": [30.0, 40.0], "sex": ["F", "M"]}),
        pd.DataFrame({"age": [30.0, 45.0], "sex": ["M", "M"]}))
    assert changed.to_dict() == {"age": 0.5, "sex": 0.5}


def test_celeba_sized_generator_on_a_generated_stand_in():
    # CelebA itself is never needed by the tests: 64x64 noise stands in
    data = _images(16, shape=(3, 64, 64), name="celeba-standin/train")
    settings = fls_exp.chapter_settings("celeba", "quick")["generator"]
    model = pretrained.build_generator(data, settings)
    assert isinstance(model, ConvVAE)
    mean, _ = model.encode(data.x[:4])
    assert mean.shape == (4, settings["latent_dim"])
    assert model.decode(mean).shape == (4, 3, 64, 64)
    assert torch.isfinite(model.loss(data.x[:4])["loss"])


def test_the_whole_experiment_on_tiny_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRLAB_CHECKPOINTS", str(tmp_path))
    torch.set_num_threads(1)
    settings = fls_exp.chapter_settings("cmnist-binary", "quick")
    settings["generator"] = TINY_GENERATOR
    settings["module"].update(epochs=2, batch_size=32, blocks=2,
                              width=16, adversary_width=8)
    settings["classifier"].update(epochs=1, batch_size=32)
    settings["erm"].update(epochs=1, batch_size=32)
    train, test = _images(128), _images(64, seed=1, name="toy/test")
    run = fls_exp.run_experiment("cmnist-binary", settings=settings,
                             train=train, test=test, device="cpu",
                             progress=False)
    assert list(run.table.index) == ["ERM", "x", "z", "w_Y"]
    assert set(run.table.columns) == {"accuracy", "dp", "eo",
                                      "worst_group_accuracy"}
    assert run.module_seconds > 0 and not run.generator.loaded
    # the group means exist and differ
    assert (run.module.sensitive_means[1]
            - run.module.sensitive_means[0]).abs().sum() > 0
    judges = fls_exp.fit_judges(train, settings["classifier"],
                            device="cpu", progress=False)
    report = fls_exp.counterfactual_report(run.generator.model, run.module,
                                       run.test_z, judges, n=32)
    assert report.shape == (2, 3)
    paths = fls_exp.traversals(run.generator.model, run.module,
                           run.train_z, run.test_z.x[:3],
                           steps=(-1, 0, 1))
    assert paths["original"].shape == (3, 3, 3, 8, 8)
    curves = fls_exp.traversal_curves(paths, judges)
    assert len(curves) == 2 * 3 * 2


@needs_data
def test_binary_coloured_mnist_counts_are_exact():
    from fairlab.data import binary_coloured_mnist

    data = binary_coloured_mnist("test", correlation=0.8, subsample=1000)
    assert data.num_classes == 2 and data.num_groups == 2
    for label in (0, 1):
        n = int((data.y == label).sum())
        aligned = int(((data.y == label) & (data.s == label)).sum())
        assert aligned == round(0.8 * n)
    again = binary_coloured_mnist("test", correlation=0.8,
                                  subsample=1000)
    assert torch.equal(again.x, data.x)


def test_cli_knows_fls_and_the_binary_data_set():
    from fairlab.cli import build_parser, check_options

    args = build_parser().parse_args(
        ["run", "fls", "--dataset", "cmnist-binary", "--correlation",
         "0.8", "--seed", "3"])
    assert args.record is fls.METHOD and args.correlation == 0.8
    check_options(args)
    wrong = build_parser().parse_args(
        ["run", "fls", "--dataset", "adult", "--correlation", "0.8"])
    with pytest.raises(ValueError, match="correlation"):
        check_options(wrong)



# -------------------------------------------------------------------
# The counterfactual terms (our addition; off by default)
# -------------------------------------------------------------------
def test_the_alignment_is_a_reflection_that_puts_the_direction_on_w_s():
    model = fls.FairLatentSpace(6, 1, 1, blocks=2, width=8, depth=1,
                                adversary_width=8, adversaries=1)
    direction = torch.tensor([3.0, 0.0, 4.0, 0.0, 0.0, 0.0]) / 5
    model.align_sensitive(direction)
    h = model.basis
    assert torch.allclose(h @ h, torch.eye(6), atol=1e-6)  # orthogonal
    assert torch.allclose(h, h.T)  # symmetric: its own inverse
    z = torch.randn(64, 6)
    w, logdet = model.transform(z)
    # the couplings start as the identity: w_S is z's component along
    # the direction, and the reflection adds nothing to log|det|
    assert torch.allclose(model.split(w)[1][:, 0], z @ direction, atol=1e-5)
    assert torch.allclose(logdet, torch.zeros(64), atol=1e-5)
    assert torch.allclose(model.inverse(w), z, atol=1e-5)


def test_cell_balance_and_the_sensitive_direction_by_hand():
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])
    s = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1])
    weight = fls.cell_balance(y, s)
    # cells: (0,0) x3, (1,1) x3, (1,0) x1, (0,1) x1; 8 / 4 cells = 2 each
    assert torch.allclose(weight, torch.tensor(
        [2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2.0, 2.0]))
    # z: the label on axis 0, the group on axis 1 (and the biased cells
    # far more numerous): the direction must be axis 1, not a mix
    z = torch.stack([y.float() * 5, s.float() * 2, torch.zeros(8)], 1)
    latents = BiasedDataset(x=z, y=y, s=s, num_classes=2, num_groups=2)
    direction, centre, _ = fls.sensitive_direction(latents)
    assert torch.allclose(direction, torch.tensor([0.0, 1.0, 0.0]))
    assert centre == pytest.approx(1.0)


def test_the_label_term_without_a_decoder_is_a_clear_error():
    z = torch.randn(64, 6)
    latents = BiasedDataset(x=z, y=torch.arange(64) % 2,
                            s=(torch.arange(64) // 2) % 2,
                            num_classes=2, num_groups=2)
    with pytest.raises(ValueError, match="pass decoder= to fit_module"):
        fls.fit_module(latents, fls.FLSHParams(
            label_dims=1, sensitive_dims=1, blocks=1, width=8, epochs=1,
            counterfactual_label_weight=1.0), progress=False)


def test_the_counterfactual_terms_train_the_flip_towards_the_other_group():
    torch.manual_seed(0)
    n = 512
    y = torch.randint(0, 2, (n,))
    s = torch.where(torch.rand(n) < 0.9, y, 1 - y)
    z = torch.randn(n, 6) * 0.3
    z[:, 0] += 2 * y - 1
    z[:, 3] += 2 * s - 1  # the group lives on axis 3
    latents = BiasedDataset(x=z, y=y, s=s, num_classes=2, num_groups=2)
    hp = fls.FLSHParams(label_dims=1, sensitive_dims=1, blocks=2, width=16,
                        epochs=3, batch_size=128, selection_share=0.0,
                        sensitive_alignment=True, counterfactual_weight=1.0,
                        counterfactual_keep_weight=1.0)
    model, history, _ = fls.fit_module(latents, hp, progress=False)
    assert {"cf_other_ce", "cf_keep"} <= set(history.columns)
    with torch.no_grad():
        w = model.transform(z)[0]
        z_cf = model.inverse(model.flip_sensitive(w, s))
    # the decoded-side group (axis 3) changes sign for nearly every
    # sample; the label's axis barely moves
    assert ((z_cf[:, 3] > 0).long() != s).float().mean() > 0.9
    assert (z_cf[:, 0] - z[:, 0]).abs().mean() < 0.3
