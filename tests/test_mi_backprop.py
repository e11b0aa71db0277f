"""fairlab.methods.mi_backprop: the clipping rule, which gradients the MI term reaches, shapes, and the CLI."""
import json
import math

import pytest
import torch

from fairlab.cli import main
from fairlab.data.base import BiasedDataset
from fairlab.experiments import mi_backprop as mi_experiments
from fairlab.methods import mi_backprop
from fairlab.methods.mi_backprop import bias_code, build_model, clip_to_reference, make_mi_step, mi_estimate
from fairlab.metrics import discrete_mutual_information

from conftest import prepared
from fairlab.train import fit


def _tabular(n=64, features=5, seed=0) -> BiasedDataset:
    """Tabular toy data whose label leans on a binary sensitive attribute (1-D int s, as Adult has)."""
    gen = torch.Generator().manual_seed(seed)
    s = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randn(n, features, generator=gen) + s[:, None].float()
    y = (x[:, 0] > 0.5).long()
    return BiasedDataset(x=x, y=y, s=s, aligned=s == y, num_classes=2, num_groups=2, name="toy")


def _images(n=16, seed=0) -> BiasedDataset:
    """Kim-shaped toy data: (n, 3, 28, 28) images and a (n, 24) float bias code."""
    gen = torch.Generator().manual_seed(seed)
    code = torch.zeros(n, 24)
    code[torch.arange(n), torch.randint(0, 24, (n,), generator=gen)] = 1
    return BiasedDataset(x=torch.rand(n, 3, 28, 28, generator=gen), y=torch.randint(0, 10, (n,), generator=gen),
                         s=code, num_classes=10, num_groups=24, name="toy-images")


def test_clipping_matches_hand_computation():
    ce = [torch.tensor([3.0, 4.0]), torch.tensor([[1.0, 0.0], [0.0, 0.0]])]  # norms 5 and 1
    mi = [torch.tensor([0.6, 0.8]), torch.tensor([[0.0, 6.0], [8.0, 0.0]])]  # norms 1 and 10
    clipped = clip_to_reference(mi, ce)
    # first tensor: already smaller than the CE gradient -> unchanged
    assert torch.allclose(clipped[0], mi[0])
    # second: scaled to norm min(1, 10) = 1, same direction
    assert torch.allclose(clipped[1], torch.tensor([[0.0, 0.6], [0.8, 0.0]]))
    for g_mi, g_ce, out in zip(mi, ce, clipped):
        assert torch.isclose(out.norm(), torch.minimum(g_mi.norm(), g_ce.norm()))
        assert torch.allclose(out / out.norm(), g_mi / g_mi.norm())


def test_clipping_leaves_zero_gradients_zero():
    assert torch.equal(clip_to_reference([torch.zeros(3)], [torch.ones(3)])[0], torch.zeros(3))


def _one_step(data, mi_weight, seed=0):
    """Parameters of (encoder, classifier) after one step of the game, from the same start."""
    torch.manual_seed(seed)
    model = build_model(data)
    step = make_mi_step(model, mi_weight=mi_weight, statistics_steps=1)
    torch.manual_seed(seed + 1)  # the same shuffle of the bias code in every call
    logs = step(next(data.batches(len(data))))
    return model, logs


def test_mi_term_reaches_the_encoder_only_when_lambda_positive():
    data = _tabular()
    baseline, _ = _one_step(data, 0.0)
    penalised, logs = _one_step(data, 1.0)
    # lambda = 0: the step is exactly a cross-entropy step
    torch.manual_seed(0)
    reference = build_model(data)
    optimizer = torch.optim.Adam(list(reference.encoder.parameters()) + list(reference.classifier.parameters()), lr=1e-4)
    batch = next(data.batches(len(data)))
    torch.nn.functional.cross_entropy(reference(batch.x), batch.y).backward()
    optimizer.step()
    for ours, theirs in zip(baseline.encoder.parameters(), reference.encoder.parameters()):
        assert torch.allclose(ours, theirs)
    # lambda > 0: the encoder moves differently, the classifier (which I(z; c) does not depend on) does not
    assert any(not torch.allclose(a, b) for a, b in zip(baseline.encoder.parameters(), penalised.encoder.parameters()))
    for a, b in zip(baseline.classifier.parameters(), penalised.classifier.parameters()):
        assert torch.allclose(a, b)
    assert set(logs) >= {"loss", "ce", "mi", "accuracy"}


def test_statistics_network_climbs_the_bound():
    data = _tabular(n=256)
    torch.manual_seed(0)
    model = build_model(data)
    before = [p.clone() for p in model.statistics.parameters()]
    # mi_weight = 0: the encoder learns only the task, T only the estimate
    step = make_mi_step(model, mi_weight=0.0, statistics_steps=5, lr=1e-2)
    history = fit(model, data, step, epochs=15, batch_size=64, device="cpu", progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.statistics.parameters()))
    # s shifts x, so features carry information about s: the estimate becomes clearly positive
    assert history["mi"].iloc[-3:].mean() > 0.05
    assert mi_estimate(model, data, batch_size=256) > 0.05


def test_image_data_and_float_bias_code():
    data = _images()
    model, logs = _one_step(data, 1.0)
    assert model.statistics.x_dim == 24 and logs["mi"].shape == ()


def test_bias_code_shapes():
    assert torch.equal(bias_code(torch.tensor([0, 1, 1]), 2), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    code = torch.rand(3, 24)
    assert bias_code(code, 24) is code
    with pytest.raises(ValueError, match=r"got shape \(3, 2, 2\)"):
        bias_code(torch.zeros(3, 2, 2), 2)


def test_bias_code_width_mismatch_names_sizes():
    model = build_model(_tabular())  # sex: a 2-wide one-hot code
    with pytest.raises(ValueError, match="width 2, got 24"):
        model.bias_code(torch.rand(4, 24))


def test_bad_arguments():
    model = build_model(_tabular())
    with pytest.raises(ValueError, match="statistics_steps"):
        make_mi_step(model, mi_weight=1.0, statistics_steps=0)
    with pytest.raises(ValueError, match="lambda"):
        make_mi_step(model, mi_weight=-1.0)


def test_cli_prints_metrics_and_the_mi_estimate(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRLAB_PROGRESS", "0")
    code = main(["run", "mi", "--dataset", "cmnist-kim", "--subsample", "256", "--epochs", "1", "--batch-size", "64",
                 "--lambda", "1", "--colour-variance", "0.03", "--statistics-steps", "2", "--device", "cpu",
                 "--profile", "quick", "--conditional", "--statistics-lr", "3e-3"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = {"accuracy", "worst_group_accuracy", "aligned_accuracy", "conflicting_accuracy", "dp", "hgr",
                "seconds", "method", "dataset", "seed", "profile", "epochs", "lambda", "statistics_steps",
                "conditional", "mi_estimate"}
    assert expected <= set(result)
    assert result["method"] == "mi" and result["lambda"] == 1.0 and result["conditional"] is True
    assert isinstance(result["mi_estimate"], float)


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_cli_fills_unset_options_with_chapter_2s_protocol(profile, monkeypatch):
    # one protocol per profile, shared by the chapter and the command line; what the user sets is kept
    from fairlab.protocols import protocol

    chapter = protocol("mi_backprop", profile)
    args, hp = prepared(["run", "mi", "--dataset", "cmnist-kim", "--profile", profile], monkeypatch)
    assert {key: getattr(hp, key) for key in chapter["game"]} == chapter["game"]
    assert hp.epochs == chapter["epochs"] and args.subsample == chapter["subsample"]
    assert chapter["game"]["lr"] == 1e-4 and chapter["game"]["statistics_pass_every_epoch"] is True

    args, hp = prepared(["run", "mi", "--dataset", "adult", "--profile", profile, "--lr", "1e-3",
                         "--no-statistics-pass-every-epoch", "--epochs", "2", "--batch-size", "64"], monkeypatch)
    assert hp.lr == 1e-3 and hp.statistics_pass_every_epoch is False and hp.epochs == 2
    assert hp.batch_size == 64 and args.subsample is None  # the image subset is for Kim's Coloured MNIST only
    assert hp.statistics_steps == chapter["game"]["statistics_steps"]


def test_cli_adult(capsys, monkeypatch):
    monkeypatch.setenv("FAIRLAB_PROGRESS", "0")
    assert main(["run", "mi", "--dataset", "adult", "--epochs", "1", "--batch-size", "1024", "--device", "cpu",
                 "--statistics-steps", "1", "--warmup-epochs", "0", "--profile", "quick"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"dp", "eo", "mi_estimate"} <= set(result)
    assert mi_backprop.__name__ == "fairlab.methods.mi_backprop"


def test_conditional_model_estimates_information_beyond_the_label():
    """s = y: everything z knows about s it knows through y, so I(z; s | y) = 0 and the conditional DV value is
    <= 0 for any statistics network, while the unconditional one sees the information."""
    data = _tabular(n=256)
    data = BiasedDataset(x=data.x, y=data.s.clone(), s=data.s, num_classes=2, num_groups=2, name="s=y")
    torch.manual_seed(0)
    plain = build_model(data)
    step = make_mi_step(plain, mi_weight=0.0, statistics_steps=5, lr=1e-2)
    fit(plain, data, step, epochs=10, batch_size=64, device="cpu", progress=False)
    assert mi_estimate(plain, data, batch_size=256) > 0.1
    conditional = build_model(data, conditional=True)
    conditional.load_state_dict(plain.state_dict())  # the same trained T and encoder, read conditionally
    assert mi_estimate(conditional, data, batch_size=256) <= 1e-6


def test_evaluate_audits_the_features_with_a_fresh_probe():
    data = _tabular(n=512)
    torch.manual_seed(0)
    model = build_model(data)
    result = mi_experiments.evaluate(model, data, data)
    assert {"accuracy", "dp", "mi_estimate", "mi_floor", "bias_probe_accuracy", "bias_probe_chance"} <= set(result)
    # x is shifted by s, so even an untrained encoder's features show s to a linear probe
    assert result["bias_probe_accuracy"] > result["bias_probe_chance"] + 0.1
    assert mi_backprop.features(model, data).shape == (512, 64)


def test_prediction_information_is_the_plug_in_mutual_information():
    data = _images(n=64)
    torch.manual_seed(0)
    model = build_model(data)
    predictions = mi_backprop.predict(model, data)
    codes = torch.unique(data.s, dim=0, return_inverse=True)[1]
    assert mi_backprop.prediction_information(model, data) == discrete_mutual_information(predictions, codes)
    # a model whose prediction *is* the (1-D) bias attribute: the floor is H(s)
    tabular = _tabular(n=200)
    reads_s = BiasedDataset(x=tabular.s[:, None].float(), y=tabular.s.clone(), s=tabular.s, num_classes=2)
    share = reads_s.s.float().mean().item()
    entropy = -(share * math.log(share) + (1 - share) * math.log(1 - share))
    assert mi_backprop.prediction_information(_ReadsFirstColumn(), reads_s) == pytest.approx(entropy)


class _ReadsFirstColumn(torch.nn.Module):
    """Logits that put the class on the value of x[:, 0]: a stand-in for a model that reads the bias."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0].long(), 2).float() * self.scale


def test_released_code_schedule_fresh_batches_and_a_statistics_pass_every_epoch():
    """The released code's T schedule (fresh batches for T's k steps, a T-only pass before every epoch) runs and
    still finds the information that s puts into x."""
    data = _tabular(n=256)
    model, history = mi_backprop.fit_mi_backprop(
        data, epochs=8, mi_weight=0.0, statistics_steps=3, lr=1e-2, batch_size=64, fresh_statistics_batches=True,
        statistics_pass_every_epoch=True, device="cpu", progress=False,
    )
    assert len(history) == 8
    assert mi_estimate(model, data, batch_size=256) > 0.05


def test_clamp_at_zero_ignores_negative_estimates():
    """A T blind to c (its c-weights zeroed) gives a DV value < 0 by Jensen. Clamped, the MI step then leaves the
    encoder exactly where the cross-entropy step put it; unclamped, it pushes the estimate further down."""
    data = _tabular()

    def one_step(mi_weight, clamp):
        torch.manual_seed(0)
        model = build_model(data)
        with torch.no_grad():
            model.statistics.statistics[0].weight[:, : model.statistics.x_dim] = 0  # T(c, z) = f(z)
        step = make_mi_step(model, mi_weight=mi_weight, statistics_steps=1, clamp_at_zero=clamp)
        torch.manual_seed(1)
        logs = step(next(data.batches(len(data))))
        return model, logs

    baseline, _ = one_step(0.0, False)
    clamped, logs = one_step(1.0, True)
    unclamped, _ = one_step(1.0, False)
    assert logs["mi"] < 0
    for a, b in zip(baseline.encoder.parameters(), clamped.encoder.parameters()):
        assert torch.allclose(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(baseline.encoder.parameters(), unclamped.encoder.parameters()))


def _encoder_after(data, mi_weight, mi_update, seed=0, lr=1e-3):
    torch.manual_seed(seed)
    model = build_model(data)
    step = make_mi_step(model, mi_weight=mi_weight, statistics_steps=1, mi_update=mi_update, lr=lr)
    torch.manual_seed(seed + 1)
    step(next(data.batches(len(data))))
    return [p.detach().clone() for p in model.encoder.parameters()]


def _adam_step(params, grads, lr):
    optimizer = torch.optim.Adam(params, lr=lr)
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()


def _replica(data):
    """The model _encoder_after starts from, its full batch, its encoder and task parameters; the RNG then set as
    the step sets it, so the shuffles of the bias code are drawn in the same order."""
    batch = next(data.batches(len(data)))
    torch.manual_seed(0)
    model = build_model(data)
    enc = list(model.encoder.parameters())
    torch.manual_seed(1)
    return model, batch, enc, enc + list(model.classifier.parameters())


def test_released_order_takes_the_mi_gradient_at_the_updated_parameters():
    data, lr, weight = _tabular(), 1e-3, 2.0
    model, batch, enc, task = _replica(data)
    c = model.bias_code(batch.s)
    first = mi_backprop.objective(model, batch.x, batch.y, c, weight)
    _adam_step(task, torch.autograd.grad(first["ce"], task), lr)  # 1. the CE step
    after = mi_backprop.objective(model, batch.x, batch.y, c, weight)  # 2. everything again, at the new parameters
    ce_after = torch.autograd.grad(after["ce"], enc, retain_graph=True)
    mi_after = torch.autograd.grad(after["mi"], enc)
    with torch.no_grad():
        _adam_step(enc, clip_to_reference(list(mi_after), list(ce_after)), lr * weight)  # 3. the clipped MI step
    expected = [p.detach() for p in enc]
    ours = _encoder_after(data, weight, "released")
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b)
    # and it is a different update from the simultaneous one
    assert any(not torch.allclose(a, b) for a, b in zip(ours, _encoder_after(data, weight, "simultaneous")))


def test_combined_update_is_one_adam_step_on_ce_plus_lambda_clipped_mi():
    data, lr, weight = _tabular(), 1e-3, 0.5
    model, batch, enc, task = _replica(data)
    terms = mi_backprop.objective(model, batch.x, batch.y, model.bias_code(batch.s), weight)
    ce = torch.autograd.grad(terms["ce"], task, retain_graph=True)
    mi = clip_to_reference(list(torch.autograd.grad(terms["mi"], enc)), list(ce[: len(enc)]))
    with torch.no_grad():
        _adam_step(task, [g + weight * m for g, m in zip(ce, mi)] + list(ce[len(enc):]), lr)
    for a, b in zip(_encoder_after(data, weight, "combined"), [p.detach() for p in enc]):
        torch.testing.assert_close(a, b)


def test_unknown_mi_update_is_refused():
    with pytest.raises(ValueError, match="mi_update"):
        make_mi_step(build_model(_tabular()), mi_weight=1.0, mi_update="sideways")


def test_fresh_statistics_network_finds_the_bias_only_when_it_is_there():
    data = _tabular(n=2048)

    class Copy(torch.nn.Module):  # features = noise, plus (leak) the mean of x, which is s + N(0, 1/5)
        def __init__(self, leak):
            super().__init__()
            self.leak = leak
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            noise = torch.randn(len(x), 64, generator=torch.Generator().manual_seed(len(x)))
            return noise + self.leak * 3 * x.mean(1, keepdim=True)

    informative, blind = build_model(data), build_model(data)
    informative.encoder, blind.encoder = Copy(1.0), Copy(0.0)
    torch.manual_seed(0)
    high = mi_backprop.fresh_mi_estimate(informative, data, steps=300)
    low = mi_backprop.fresh_mi_estimate(blind, data, steps=300)
    # read on held-out features: a T that only fits noise scores at or below 0 there
    assert low < 0.05 and 0.2 < high <= math.log(2) + 0.05, (high, low)


def test_kim_sweep_evaluates_runs_it_is_given_and_trains_the_others(monkeypatch):
    # chapter 2 hands its first two models to the sweep: those are evaluated as they are, not trained again
    from fairlab.data import coloured_mnist

    options = dict(subsample=256, test_subsample=256, epochs=1, batch_size=64, statistics_steps=1, device="cpu",
                   progress=False)
    first = mi_experiments.kim_sweep([0.03], [0.0], [0], **options)
    train = coloured_mnist("kim", "train", colour_variance=0.03, seed=0, subsample=256)
    model, history = mi_backprop.fit_mi_backprop(train, mi_weight=0.0, seed=0, **{
        k: v for k, v in options.items() if k not in ("subsample", "test_subsample")})
    calls = []
    real_fit = mi_backprop.fit_mi_backprop

    def counting_fit(train, hp, **kwargs):
        calls.append(hp.mi_weight)
        return real_fit(train, hp, **kwargs)

    monkeypatch.setattr(mi_experiments, "fit_mi_backprop", counting_fit)
    rows = mi_experiments.kim_sweep([0.03], [0.0, 1.0], [0], trained={(0.03, "0", 0): (model, history)}, **options)
    assert calls == [1.0]  # only the arm it was not given
    reused = rows.set_index("arm").loc["0"]
    assert reused["seconds"] == pytest.approx(float(history["seconds"].sum()))
    # the same seed and options as the sweep's own lambda = 0 run: the same model, so the same test accuracy
    assert reused["accuracy"] == pytest.approx(first.loc[0, "accuracy"])
    assert list(rows["lambda"]) == [0.0, 1.0]


@pytest.mark.parametrize("mi_update", ["simultaneous", "released", "combined"])
def test_the_mi_step_descends_the_estimate_of_a_fixed_statistics_network(mi_update):
    # the sign of the penalty: with T held still (statistics_lr = 0), the encoder trained with lambda > 0 ends with a
    # lower estimate under that T than the same encoder trained with lambda = 0 from the same state
    import copy

    data = _tabular(n=256)
    torch.manual_seed(0)
    model = build_model(data)
    fit(model, data, make_mi_step(model, mi_weight=0.0, statistics_steps=5, lr=1e-2), epochs=15, batch_size=64,
        device="cpu", progress=False)
    ends = {}
    for mi_weight in (0.0, 1.0):
        trained = copy.deepcopy(model)
        step = make_mi_step(trained, mi_weight=mi_weight, statistics_steps=1, lr=1e-2, statistics_lr=0.0,
                            mi_update=mi_update)
        torch.manual_seed(1)  # the same batch order for both
        fit(trained, data, step, epochs=10, batch_size=64, device="cpu", progress=False)
        for before, after in zip(model.statistics.parameters(), trained.statistics.parameters()):
            assert torch.equal(before, after)  # T did not move
        torch.manual_seed(2)  # the same shuffles of c for both readings
        ends[mi_weight] = mi_estimate(trained, data, batch_size=256)
    assert ends[0.0] > 0.05  # T sees the information the baseline keeps
    assert ends[1.0] < ends[0.0] - 0.05, ends


def test_the_released_schedule_is_one_hand_written_step():
    """``RELEASED_SCHEDULE`` in one encoder update, against the released code written out by hand: the CE step
    (Adam), the MI gradient at the updated weights clipped tensor by tensor to the CE gradient there, the MI step
    (Adam at lr * lambda), then 40 T steps, step q on batch q of the epoch's head (a random order's first 40
    batches), each with the current encoder's features."""
    import copy

    data, weight, batch_size = _tabular(n=1024), 2.0, 16
    schedule = mi_backprop.RELEASED_SCHEDULE
    assert schedule == dict(mi_update="released", statistics_steps=40, statistics_batches="epoch_head",
                            statistics_pass_every_epoch=True, lr=1e-4, batch_size=128)
    batch = next(data.batches(batch_size))
    torch.manual_seed(0)
    model = build_model(data)
    by_hand = copy.deepcopy(model)

    torch.manual_seed(1)
    make_mi_step(model, statistics_data=data, mi_weight=weight, **schedule)(batch)

    torch.manual_seed(1)
    lr, steps = schedule["lr"], schedule["statistics_steps"]
    head = torch.randperm(len(data))[: steps * batch_size].view(steps, batch_size)  # the epoch's first 40 batches
    enc = list(by_hand.encoder.parameters())
    task = enc + list(by_hand.classifier.parameters())
    c = by_hand.bias_code(batch.s)
    first = mi_backprop.objective(by_hand, batch.x, batch.y, c, weight)
    _adam_step(task, torch.autograd.grad(first["ce"], task), lr)  # 1. the CE step
    after = mi_backprop.objective(by_hand, batch.x, batch.y, c, weight)  # 2. at the updated weights
    ce_after = torch.autograd.grad(after["ce"], enc, retain_graph=True)
    mi_after = torch.autograd.grad(after["mi"], enc)
    with torch.no_grad():
        _adam_step(enc, clip_to_reference(list(mi_after), list(ce_after)), lr * weight)  # 3. the clipped MI step
    statistics_adam = torch.optim.Adam(by_hand.statistics.parameters(), lr=lr)
    for rows in head:  # 4. T's 40 steps, one batch of the head each
        with torch.no_grad():
            z = by_hand.encoder(data.x[rows])
        estimate = by_hand.statistics(by_hand.bias_code(data.s[rows]), z)
        statistics_adam.zero_grad()
        (-estimate).backward()
        statistics_adam.step()

    for (name, ours), theirs in zip(model.named_parameters(), by_hand.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=name)


def test_the_released_schedule_keeps_one_head_per_epoch_and_passes_t_over_the_data_every_epoch(monkeypatch):
    """Across updates: T's k steps train on the same k batches (the epoch's head, k * batch distinct images) for a
    whole epoch and on a new head the next; ``fit_mi_backprop`` adds a T-only pass over the data every epoch."""
    n, batch_size, steps = 32, 8, 2  # 4 updates per epoch
    data = _tabular(n=n)
    data.x[:, 0] = torch.arange(n, dtype=torch.float)  # each row names itself in its first feature
    schedule = {**mi_backprop.RELEASED_SCHEDULE, "statistics_steps": steps, "batch_size": batch_size}
    torch.manual_seed(0)
    model = build_model(data)
    seen: list[list[int]] = []  # the rows of every feature pass made without gradients (T's features)
    model.encoder.register_forward_pre_hook(
        lambda module, inputs: None if torch.is_grad_enabled() else seen.append(inputs[0][:, 0].long().tolist()))
    step = make_mi_step(model, statistics_data=data, mi_weight=1.0, **schedule)
    heads = []
    for epoch in range(2):
        for batch in data.batches(batch_size, shuffle=True, drop_last=True):
            seen.clear()
            step(batch)
            assert seen[0] == batch.x[:, 0].long().tolist()  # the features of the encoder after both steps ...
            heads.append(seen[1:])  # ... then one head batch per T step
    for head in heads:
        rows = [row for rows in head for row in rows]
        assert len(head) == steps and len(set(rows)) == steps * batch_size  # k distinct batches
    assert heads[0] == heads[1] == heads[2] == heads[3]  # one head for the whole epoch
    assert heads[4] == heads[5] == heads[6] == heads[7] and heads[4] != heads[0]  # a new one the next

    calls = []
    real_statistics_step = mi_backprop.make_statistics_step

    def counting(model, optimizer):
        step = real_statistics_step(model, optimizer)
        return lambda batch: calls.append(len(batch.y)) or step(batch)

    monkeypatch.setattr(mi_backprop, "make_statistics_step", counting)
    mi_backprop.fit_mi_backprop(data, **schedule, epochs=2, mi_weight=1.0, device="cpu", progress=False)
    # the warm-up pass, then a T-only pass after each of the 2 epochs: 3 passes of 4 batches
    assert calls == [batch_size] * (3 * n // batch_size)


def test_the_released_schedule_trains_and_its_options_are_checked():
    data = _tabular(n=512)
    model, history = mi_backprop.fit_mi_backprop(
        data, **{**mi_backprop.RELEASED_SCHEDULE, "statistics_steps": 4, "batch_size": 64, "lr": 1e-2},
        epochs=3, mi_weight=0.0, device="cpu", progress=False,
    )
    assert len(history) == 3 and mi_estimate(model, data, batch_size=256) > 0.05
    with pytest.raises(ValueError, match="contradicts"):
        mi_backprop.fit_mi_backprop(data, statistics_batches="epoch_head", fresh_statistics_batches=True, epochs=1)
    with pytest.raises(ValueError, match="needs statistics_data"):
        make_mi_step(build_model(data), statistics_batches="epoch_head")
    # the older flag still means fresh batches
    assert mi_backprop.statistics_batches(mi_backprop.MIBackpropHParams(fresh_statistics_batches=True)) == "fresh"


def test_long_runs_number_epochs_alike_and_report_the_last_and_the_best_reading(tmp_path):
    kim, released = tmp_path / "kim.jsonl", tmp_path / "mi.jsonl"
    common = {"colour_variance": 0.02, "seed": 0}
    kim.write_text("\n".join(json.dumps(line) for line in [
        {**common, "epoch": 0, "test_accuracy": 0.2}, {**common, "epoch": 1, "test_accuracy": 0.4},
        {**common, "epoch": 2, "test_accuracy": 0.3}, {**common, "final": True, "test_accuracy": 0.3}]) + "\n")
    released.write_text("\n".join(json.dumps({**common, "arm": "mi", **line}) for line in [
        {"epoch": 0.5, "test_accuracy": 0.35}, {"epoch": 1, "test_accuracy": 0.45}]) + "\n")
    curves, summary = mi_experiments.long_runs(kim, released)
    kim_name, mi_name = mi_experiments.LONG_RUN_NAMES["kim"], mi_experiments.LONG_RUN_NAMES["mi"]
    # the Kim file counts epochs from 0: after shifting, every curve counts epochs trained; the final line is dropped
    assert curves[curves["run"] == kim_name]["epoch"].tolist() == [1, 2, 3]
    rows = summary.set_index("run")
    assert rows.loc[kim_name, ["epochs", "last", "best", "best_epoch"]].tolist() == [3, 0.3, 0.4, 2]
    assert rows.loc[mi_name, ["epochs", "last", "best", "best_epoch"]].tolist() == [1, 0.45, 0.45, 1]
    assert mi_experiments.KIM_PUBLISHED.loc["Baseline", 0.020] == 0.4055
    assert mi_experiments.KIM_PUBLISHED_BASELINE[0.03] == 0.5996


def test_the_mlp_encoder_makes_erms_network_on_images():
    from fairlab.models.mlp import baseline_network

    data = BiasedDataset(x=torch.rand(8, 3, 28, 28), y=torch.arange(8) % 10, s=torch.arange(8) % 10,
                         num_classes=10, num_groups=10, name="toy")
    model = mi_backprop.build_model(data, encoder="mlp", z_dim=100)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # encoder + classifier: 2352-100-100-100-10, the same parameter count as LfF's MLP
    assert count(model.encoder) + count(model.classifier) == count(baseline_network(data))
    assert model.encoder(data.x).shape == (8, 100) and (model.encoder(data.x) >= 0).all()
    assert isinstance(mi_backprop.build_model(data).encoder, mi_backprop.RagonesiEncoder)
