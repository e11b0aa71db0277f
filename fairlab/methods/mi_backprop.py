"""Mutual-information backpropagation (Ragonesi et al., 2021): penalise what the features know about the bias.

An encoder f_theta maps x to features z, a classifier g_psi predicts y from z, and a statistics network T_phi (MINE)
estimates the mutual information between z and the bias code c with the Donsker-Varadhan bound. The game:

    min_{theta, psi}  CE(g_psi(f_theta(x)), y) + lambda * I_hat_phi(f_theta(x); c)
    max_{phi}         I_hat_phi(f_theta(x); c)

with I_hat_phi(z; c) = mean_i T_phi(c_i, z_i) - log mean_i exp T_phi(c_perm(i), z_i). Optimisation follows the
authors' released code: separate Adam optimisers for the cross-entropy and for the MI term (the MI one with learning
rate lr * lambda), the MI gradient clipped tensor by tensor to the norm of the cross-entropy gradient, and
``statistics_steps`` updates of T per encoder update. Where this module departs from the released code, for speed,
the docstrings say so.

Data: Kim et al.'s Coloured MNIST (c = the 24-dim quantised colour code, encoder = their CNN) or tabular data such as
Adult (c = sex as a one-hot code, encoder = a one-hidden-layer MLP). The same code runs both.
"""
from __future__ import annotations

import argparse
import inspect
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fairlab import config, metrics
from fairlab.data import coloured_mnist
from fairlab.data.base import Batch, BiasedDataset
from fairlab.models import MINE, MLP, KimEncoder
from fairlab.models.mine import shuffle_within
from fairlab.train import fit, model_device, predict

__all__ = [
    "MIBackpropModel", "bias_code", "build_model", "clip_to_reference", "fit_mi_backprop", "mi_estimate",
    "make_mi_step", "objective", "evaluate", "features", "fresh_mi_estimate", "kim_sweep", "prediction_information",
    "MI_UPDATES", "chapter_protocol",
]


def bias_code(s: torch.Tensor, num_values: int) -> torch.Tensor:
    """The bias attribute as the statistics network reads it: (B,) integer labels -> one-hot (B, num_values) float;
    a (B, k) float code (Kim's 24-dim colour code) passes through unchanged."""
    if s.ndim == 1 and not s.is_floating_point():
        return F.one_hot(s, num_values).float()
    if s.ndim == 2 and s.is_floating_point():
        return s
    raise ValueError(
        f"the bias attribute s must be (batch,) integer labels or a (batch, k) float code, got shape "
        f"{tuple(s.shape)} and dtype {s.dtype}."
    )


class MIBackpropModel(nn.Module):
    """Encoder f (x -> z), classifier g (z -> logits) and the statistics network T(c, z). ``forward`` = g(f(x)).

    ``conditional=True`` (our extension, not the paper's): the marginal samples shuffle c only among samples of the
    same label y, so T bounds the conditional information I(z; c | y) from below: what z knows about the bias
    *beyond* the label. See ``mutual_information``.
    """

    def __init__(self, encoder: nn.Module, classifier: nn.Module, statistics: MINE, bias_values: int,
                 conditional: bool = False):
        super().__init__()
        self.encoder, self.classifier, self.statistics = encoder, classifier, statistics
        self.bias_values = bias_values  # one-hot width for integer bias labels (ignored for float codes)
        self.conditional = conditional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))

    def bias_code(self, s: torch.Tensor) -> torch.Tensor:
        code = bias_code(s, self.bias_values)
        if code.shape[1] != self.statistics.x_dim:
            raise ValueError(
                f"the statistics network expects a bias code of width {self.statistics.x_dim}, got {code.shape[1]}."
            )
        return code

    def mutual_information(self, c: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """I_hat(z; c) on the batch, or I_hat(z; c | y) for a conditional model (c shuffled within each label)."""
        return self.statistics(c, z, shuffle_within(y) if self.conditional else None)


def build_model(
    data: BiasedDataset, *, z_dim: int = 64, hidden: int = 64, ema_decay: float | None = None,
    conditional: bool = False,
) -> MIBackpropModel:
    """The networks of the brief for a data set: images -> Kim's CNN; tabular -> MLP(hidden) with ReLU features.

    The statistics network is MINE(c_dim, z_dim) with 3 layers of 64, c_dim = the width of the bias code.
    """
    if data.x.ndim == 4:
        encoder = KimEncoder(data.x.shape[1], z_dim)
    else:
        encoder = nn.Sequential(MLP(data.x[0].numel(), (hidden,), z_dim), nn.ReLU())
    bias_values = data.num_groups or int(data.s.max()) + 1
    c_dim = data.s.shape[1] if data.s.ndim == 2 else bias_values
    return MIBackpropModel(encoder, nn.Linear(z_dim, data.num_classes), MINE(c_dim, z_dim, ema_decay=ema_decay),
                           bias_values, conditional)


def objective(model: MIBackpropModel, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, mi_weight: float) -> dict:
    """L(theta, psi) = CE(g_psi(f_theta(x)), y) + lambda * I_hat_phi(f_theta(x); c), its two terms, z and accuracy."""
    z = model.encoder(x)  # (B, z_dim)
    logits = model.classifier(z)
    cross_entropy = F.cross_entropy(logits, y)
    mutual_information = model.mutual_information(c, z, y)
    return {
        "loss": cross_entropy + mi_weight * mutual_information,
        "ce": cross_entropy,
        "mi": mutual_information,
        "accuracy": (logits.argmax(1) == y).float().mean(),
        "z": z,
    }


def clip_to_reference(gradients: list[torch.Tensor], reference: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per tensor: g <- min(||g_ref||, ||g||) * g / ||g||.

    The MI gradient keeps its direction but never outgrows the cross-entropy gradient of the same tensor, so the
    penalty can steer the features without swamping the task (and an early, wild estimate cannot blow them up).
    """
    clipped = []
    for gradient, ref in zip(gradients, reference):
        norm = torch.linalg.vector_norm(gradient)
        ref_norm = torch.linalg.vector_norm(ref)
        # the clamp only guards 0/0: a zero gradient stays zero
        clipped.append(gradient * (torch.minimum(norm, ref_norm) / norm.clamp_min(1e-12)))
    return clipped


MI_UPDATES = ("simultaneous", "released", "combined")


def _statistics_adam(model: MIBackpropModel, lr: float, statistics_lr: float | None) -> torch.optim.Adam:
    # T's optimiser: its own rate if given (0 is a rate, T held still, not "unset"), else the encoder's
    return torch.optim.Adam(model.statistics.parameters(), lr=lr if statistics_lr is None else statistics_lr)


def make_mi_step(
    model: MIBackpropModel, *, mi_weight: float, statistics_steps: int = 10, lr: float = 1e-4,
    statistics_lr: float | None = None, statistics_data: BiasedDataset | None = None,
    statistics_optimizer: torch.optim.Optimizer | None = None, clamp_at_zero: bool = False,
    mi_update: str = "simultaneous",
):
    """One batch of the game: one CE step and one clipped MI step on (f, g), then ``statistics_steps`` steps on T.

    T's k steps: with ``statistics_data`` (the released code's way), each step draws a fresh random batch of it and
    computes its features with the current encoder (no gradients), so T learns the bound on the whole training
    distribution. Without it, the k steps reuse the current batch's features: no extra encoder passes, but T fits
    the same batch k times. (In our CPU runs neither choice kept the encoder from fooling T: see chapter 2.)
    ``statistics_optimizer`` lets the warm-up pass and these steps share one Adam state for T.
    ``clamp_at_zero`` (our option, not the released code's): the encoder is penalised by max(I_hat, 0). A negative
    estimate says nothing about the information (the true value is >= 0): it is a T that lags behind, and
    descending it further teaches the encoder only to exploit T (the value can be driven to minus infinity).

    ``mi_update`` chooses how the two encoder gradients are applied:

    - ``"simultaneous"`` (default, for speed): the CE and MI gradients come from one forward pass, at the same
      parameters, before either optimiser moves them; each goes to its own Adam (the MI one at rate lr * lambda).
    - ``"released"``: the released code's order. The CE step is taken first; then a second forward pass at the
      *updated* parameters gives the MI gradient and the CE gradient it is clipped to; the MI step follows; T's k
      steps then see the features of the encoder after both steps.
    - ``"combined"`` (our option): one Adam on g_CE + lambda * clip(g_MI). Adam divides each coordinate's step by
      the running size of its gradients, so with *two* Adams the MI step has size about lr * lambda per weight
      however small the clipped gradient is: the clipping only reverses nothing and shrinks nothing. In one
      combined gradient the clipping does act: the penalty can at most match the task's gradient, tensor by tensor.

    Nothing here reads a tensor back to the host: on a GPU a step is queued without waiting.
    """
    if mi_update not in MI_UPDATES:
        raise ValueError(f"mi_update must be one of {MI_UPDATES}, got {mi_update!r}.")
    if statistics_steps < 1:
        raise ValueError(f"statistics_steps must be >= 1, got {statistics_steps}.")
    if mi_weight < 0:
        raise ValueError(f"mi_weight (lambda) must be >= 0, got {mi_weight}.")
    encoder_params = list(model.encoder.parameters())
    task_params = encoder_params + list(model.classifier.parameters())
    task_optimizer = torch.optim.Adam(task_params, lr=lr)
    # lambda enters as the MI optimiser's learning rate, as in the released code (Adam would undo a loss scale)
    separate = mi_weight > 0 and mi_update != "combined"
    mi_optimizer = torch.optim.Adam(encoder_params, lr=lr * mi_weight) if separate else None
    if statistics_optimizer is None:
        statistics_optimizer = _statistics_adam(model, lr, statistics_lr)

    def clipped_mi_gradients(terms: dict, ce_grads) -> list[torch.Tensor]:
        # only the encoder's gradient is asked for: the MI term must not train T towards *less* information
        penalty = terms["mi"].clamp_min(0) if clamp_at_zero else terms["mi"]
        mi_grads = torch.autograd.grad(penalty, encoder_params, retain_graph=True)
        return clip_to_reference(list(mi_grads), list(ce_grads[: len(encoder_params)]))

    def apply(optimizer: torch.optim.Optimizer, params, grads) -> None:
        for param, grad in zip(params, grads):
            param.grad = grad
        optimizer.step()

    def step(batch: Batch) -> dict:
        c = model.bias_code(batch.s)
        terms = objective(model, batch.x, batch.y, c, mi_weight)
        ce_grads = torch.autograd.grad(terms["ce"], task_params, retain_graph=mi_weight > 0)
        mi_grads = None
        if mi_weight > 0 and mi_update == "released":
            apply(task_optimizer, task_params, ce_grads)  # the CE step first ...
            after = objective(model, batch.x, batch.y, c, mi_weight)  # ... then everything at the new parameters
            after_ce = torch.autograd.grad(after["ce"], encoder_params, retain_graph=True)
            apply(mi_optimizer, encoder_params, clipped_mi_gradients(after, after_ce))
            with torch.no_grad():
                z = model.encoder(batch.x)  # T trains on the features of the encoder it will face
        else:
            if mi_weight > 0:
                mi_grads = clipped_mi_gradients(terms, ce_grads)
            z = terms["z"].detach()
        # T climbs the bound on detached features: its ascent must not move the encoder
        y = batch.y
        for _ in range(statistics_steps):
            if statistics_data is not None:
                index = torch.randint(len(statistics_data), (len(batch.y),), device=statistics_data.device)
                with torch.no_grad():
                    z = model.encoder(statistics_data.x[index])
                c, y = model.bias_code(statistics_data.s[index]), statistics_data.y[index]
            estimate = model.mutual_information(c, z, y)
            statistics_optimizer.zero_grad(set_to_none=True)
            (-estimate).backward()
            statistics_optimizer.step()
        if mi_grads is not None and mi_update == "combined":
            n = len(encoder_params)
            combined = [g + mi_weight * m for g, m in zip(ce_grads[:n], mi_grads)] + list(ce_grads[n:])
            apply(task_optimizer, task_params, combined)
        elif mi_grads is not None:  # simultaneous: both gradients were taken before either step
            apply(task_optimizer, task_params, ce_grads)
            apply(mi_optimizer, encoder_params, mi_grads)
        elif not (mi_weight > 0 and mi_update == "released"):  # lambda = 0: the plain CE step
            apply(task_optimizer, task_params, ce_grads)
        return {key: terms[key].detach() for key in ("loss", "ce", "mi", "accuracy")}

    return step


def make_statistics_step(model: MIBackpropModel, optimizer: torch.optim.Optimizer):
    """T-only updates with the encoder fixed (the warm-up pass): the estimate is meaningful from the first step."""

    def step(batch: Batch) -> dict:
        with torch.no_grad():
            z = model.encoder(batch.x)
        estimate = model.mutual_information(model.bias_code(batch.s), z, batch.y)
        optimizer.zero_grad(set_to_none=True)
        (-estimate).backward()
        optimizer.step()
        return {"loss": -estimate.detach(), "mi": estimate.detach()}

    return step


@torch.no_grad()
def mi_estimate(model: MIBackpropModel, data: BiasedDataset, batch_size: int = 1024) -> float:
    """I_hat(z; c) (I_hat(z; c | y) for a conditional model) of the trained statistics network on ``data``,
    averaged over batches of ``batch_size``.

    A lower bound read with the adversary the encoder was trained against; compare it across lambdas only for
    models trained with the same schedule.
    """
    was_training = model.training
    model.eval()
    data = data.to(model_device(model))
    values = [model.mutual_information(model.bias_code(b.s), model.encoder(b.x), b.y)
              for b in data.batches(min(batch_size, len(data)), drop_last=True)]
    model.train(was_training)
    return float(torch.stack(values).mean())


# the optimisation settings of the game (``chapter_protocol``'s "game"; the command line fills them when unset)
GAME_OPTIONS = ("lr", "statistics_steps", "statistics_pass_every_epoch", "mi_update", "batch_size")


def chapter_protocol(profile: str | None = None) -> dict:
    """Chapter 2's settings per profile, shared by the chapter, the command line and ``benchmarks/quick_margins.py``.

    Both profiles play the game as the released code does (``fit_mi_backprop``'s defaults: lr 1e-4, a T pass every
    epoch, two Adams), with k = 10 T steps per batch. quick: 4,000 training images, 4 epochs, sigma^2 0.020 and
    0.040, chosen by measurement on a CPU (lambda = 1 beats lambda = 0 on the random-colour test set on each of
    seeds 0-4, ``benchmarks/results/quick_margins_mi_cpu_2026-11-24.txt``); full: all 60,000 images, the paper's
    sigma^2 grid, 3 seeds, 3 epochs (at that scale the penalty lost to the baseline in our runs,
    ``benchmarks/results/mi_60k_cpu_2026-11-24.jsonl``; chapter 2 asserts it). ``game`` holds the
    ``fit_mi_backprop`` options every Coloured MNIST arm shares: its defaults, read from its signature so that the
    two cannot drift apart.
    """
    defaults = inspect.signature(fit_mi_backprop).parameters
    game = {key: defaults[key].default for key in GAME_OPTIONS}
    return config.by_profile(
        quick=dict(subsample=4000, test_subsample=1000, epochs=4, variances=(0.020, 0.040), seeds=(0,),
                   sweep_lambdas=(3.0,), adult_epochs=3, game=game),
        full=dict(subsample=None, test_subsample=None, epochs=3, variances=(0.020, 0.030, 0.040, 0.050),
                  seeds=(0, 1, 2), sweep_lambdas=(0.3, 3.0, 10.0), adult_epochs=20, game=game),
        name=profile,
    )


def fit_mi_backprop(
    train: BiasedDataset,
    *,
    epochs: int,
    mi_weight: float = 1.0,
    statistics_steps: int = 10,
    warmup_epochs: int = 1,
    lr: float = 1e-4,
    batch_size: int = 128,
    ema_decay: float | None = None,
    statistics_lr: float | None = None,
    conditional: bool = False,
    fresh_statistics_batches: bool = False,
    statistics_pass_every_epoch: bool = True,
    clamp_at_zero: bool = False,
    mi_update: str = "simultaneous",
    test: BiasedDataset | None = None,
    seed: int = 0,
    device=None,
    progress: bool | None = None,
):
    """Train encoder + classifier against the statistics network; returns ``(model, history)``.

    ``warmup_epochs`` passes of T-only updates come first; ``statistics_pass_every_epoch`` adds one before every
    later epoch and ``fresh_statistics_batches`` gives T's k steps fresh batches (together, the released code's T
    schedule; see ``make_mi_step``). ``conditional`` penalises I(z; c | y) instead of I(z; c) and ``clamp_at_zero``
    penalises max(I_hat, 0): both our options, not the paper's. ``mi_update``: see ``make_mi_step``
    (``"released"`` with ``statistics_steps`` up to 40 and ``fresh_statistics_batches`` is the released schedule).
    With ``test``, the history also records the test accuracy after each epoch, for the training curves only:
    nothing is selected on it.
    Defaults: the released code's batch 128, lr 1e-4 for every network and a T-only pass before every epoch, with
    k = 10 T steps per batch (the released code: 40) on the current batch's features (the released code: fresh
    batches). At lr 1e-3 the same game left every penalised model at or below its baseline in our runs (see
    ``chapter_protocol``).
    """
    config.seed_everything(seed)
    device = torch.device(device) if device is not None else config.device()
    model = build_model(train, ema_decay=ema_decay, conditional=conditional).to(device)
    train = train.to(device)
    common = dict(batch_size=min(batch_size, len(train)), device=device, progress=progress)
    statistics_optimizer = _statistics_adam(model, lr, statistics_lr)
    statistics_step = make_statistics_step(model, statistics_optimizer)
    if warmup_epochs:
        fit(model, train, statistics_step, epochs=warmup_epochs, desc="mi/statistics", **common)
    validate = None
    if test is not None:
        test = test.to(device)
        validate = lambda: {"test_accuracy": metrics.accuracy(test.y, predict(model, test))}  # noqa: E731

    def statistics_pass(epoch: int, row: dict) -> None:  # the released code: a T-only pass before every epoch
        fit(model, train, statistics_step, epochs=1, **{**common, "progress": False})

    step = make_mi_step(
        model, mi_weight=mi_weight, statistics_steps=statistics_steps, lr=lr,
        statistics_data=train if fresh_statistics_batches else None, statistics_optimizer=statistics_optimizer,
        clamp_at_zero=clamp_at_zero, mi_update=mi_update,
    )
    history = fit(model, train, step, epochs=epochs, validate=validate,
                  on_epoch_end=statistics_pass if statistics_pass_every_epoch else None,
                  desc=f"mi lambda={mi_weight:g}", **common)
    return model, history


@torch.no_grad()
def features(model: MIBackpropModel, data: BiasedDataset, batch_size: int = 2048) -> torch.Tensor:
    """The encoder's features z for every sample of ``data``, in order: (N, z_dim)."""
    was_training = model.training
    model.eval()
    data = data.to(model_device(model))
    z = torch.cat([model.encoder(batch.x) for batch in data.batches(batch_size)])
    model.train(was_training)
    return z


def prediction_information(model: MIBackpropModel, data: BiasedDataset) -> float:
    """I(yhat; c) in nats on ``data``: a floor under the true I(z; c), since yhat = g(z) (data processing).

    Counted exactly (plug-in, ``metrics.discrete_mutual_information``), with every distinct bias code as one value.
    On a training set where the colour gives the digit away, a model that predicts the digit has a high floor
    whatever it reads: an MI *estimate* below it is the adversary being fooled, not information removed.
    """
    data = data.to(model_device(model))
    codes = torch.unique(data.s, dim=0, return_inverse=True)[1] if data.s.ndim == 2 else data.s
    return metrics.discrete_mutual_information(predict(model, data), codes)


def fresh_mi_estimate(model: MIBackpropModel, data: BiasedDataset, *, steps: int = 2000, batch_size: int = 512,
                      lr: float = 1e-3, seed: int = 0) -> float:
    """I_hat(z; c) from a *new* statistics network trained on the frozen features of ``data``.

    The training-time T chases an encoder that moves under it; this one gets the final features and ``steps`` Adam
    steps to itself (random batches of one half of ``data``, cosine-decayed rate) and is read on the *other* half,
    so that it cannot score by memorising samples. If it finds much more than the training-time T, that T was
    lagging (or fooled), and its estimate says little about the features.
    """
    device = model_device(model)
    on_device = data.to(device)
    z = features(model, on_device).detach()  # (N, z_dim), frozen
    c, y = model.bias_code(on_device.s), on_device.y
    generator = torch.Generator(device=device).manual_seed(seed)
    order = torch.randperm(len(z), device=device, generator=generator)
    fit_rows, read_rows = order[: len(z) // 2], order[len(z) // 2 :]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        fresh = MINE(model.statistics.x_dim, model.statistics.z_dim).to(device)
        optimizer = torch.optim.Adam(fresh.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        size = min(batch_size, len(fit_rows))

        def estimate_on(rows: torch.Tensor) -> torch.Tensor:
            return fresh(c[rows], z[rows], shuffle_within(y[rows]) if model.conditional else None)

        with torch.enable_grad():
            for _ in range(steps):
                rows = fit_rows[torch.randint(len(fit_rows), (size,), device=device, generator=generator)]
                estimate = estimate_on(rows)
                optimizer.zero_grad(set_to_none=True)
                (-estimate).backward()
                optimizer.step()
                schedule.step()
        with torch.no_grad():
            chunk = min(1024, len(read_rows))
            values = [estimate_on(read_rows[i : i + chunk]) for i in range(0, len(read_rows) - chunk + 1, chunk)]
    return float(torch.stack(values).mean())


def evaluate(model: MIBackpropModel, train: BiasedDataset, test: BiasedDataset, *, fresh_statistics_steps: int = 0
             ) -> dict:
    """Test metrics (``fairlab.metrics.summary``), the final MI estimate on the training set, and two audits.

    ``mi_floor`` is ``prediction_information`` on the training set, what the MI estimate cannot honestly fall
    below. ``bias_probe_accuracy`` (with ``bias_probe_chance`` beside it) is ``metrics.probe_accuracy``: a fresh
    linear classifier trained to read the bias group from the *test* features. It answers what the training-time
    adversary cannot: is the bias still in z? On Kim's test set the colour is drawn independently of the digit, so
    whatever the probe finds above chance is colour information, not the label leaking through.
    With ``fresh_statistics_steps`` > 0, ``mi_fresh_estimate`` is ``fresh_mi_estimate`` on the training set: the
    estimate of a statistics network trained afresh on the final, frozen features.
    """
    test = test.to(model_device(model))
    result = metrics.summary(test.y, predict(model, test), sensitive_features=test.group, aligned=test.aligned)
    result["mi_estimate"] = mi_estimate(model, train)
    result["mi_floor"] = prediction_information(model, train)
    probe = metrics.probe_accuracy(features(model, test), test.group)
    result.update(bias_probe_accuracy=probe["accuracy"], bias_probe_chance=probe["chance"])
    if fresh_statistics_steps:
        result["mi_fresh_estimate"] = fresh_mi_estimate(model, train, steps=fresh_statistics_steps)
    return result


def kim_sweep(variances, arms, seeds, *, subsample=None, test_subsample=None, trained=None, **fit_kwargs
              ) -> pd.DataFrame:
    """Train on Kim's Coloured MNIST for every (sigma^2, arm, seed); one row of test metrics (``evaluate``) per run.

    ``arms``: a list of lambdas, or ``{name: options}`` where options are ``fit_mi_backprop`` arguments for that
    arm (e.g. ``{"baseline": {"mi_weight": 0}, "MI": {"mi_weight": 1}}``); ``fit_kwargs`` are shared by all arms.
    ``trained``: ``{(sigma^2, arm, seed): (model, history)}`` for runs already made with the same options (they are
    evaluated, not trained again; their seconds are the history's). Rows carry ``arm`` (the name, or the lambda as
    text) and ``lambda``.
    """
    trained = trained or {}
    if not isinstance(arms, dict):
        arms = {f"{weight:g}": {"mi_weight": weight} for weight in arms}
    rows = []
    for variance in variances:
        for seed in seeds:
            train = coloured_mnist("kim", "train", colour_variance=variance, seed=seed, subsample=subsample)
            test = coloured_mnist("kim", "test", colour_variance=variance, seed=seed, subsample=test_subsample)
            for arm, options in arms.items():
                start = time.perf_counter()
                run_options = {**fit_kwargs, **options}
                reused = trained.get((variance, arm, seed))
                model = reused[0] if reused else fit_mi_backprop(train, seed=seed, **run_options)[0]
                mi_weight = run_options.get("mi_weight", 1.0)  # fit_mi_backprop's default
                row = {"colour_variance": variance, "arm": arm, "lambda": mi_weight, "seed": seed,
                       **evaluate(model, train, test)}
                row["seconds"] = float(reused[1]["seconds"].sum()) if reused else time.perf_counter() - start
                rows.append(row)
    return pd.DataFrame(rows)


def add_cli_arguments(parser) -> None:
    parser.add_argument("--lambda", dest="mi_weight", type=float, default=1.0, help="weight of the MI penalty")
    parser.add_argument("--statistics-steps", type=int, default=None,
                        help="T updates per encoder update (k; default: chapter 2's protocol, 10)")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="T-only epochs before training")
    parser.add_argument("--ema-decay", type=float, default=None, help="MINE's moving-average correction, e.g. 0.99")
    parser.add_argument("--lr", type=float, default=None, help="default: chapter 2's protocol, 1e-4")
    parser.add_argument("--statistics-lr", type=float, default=None, help="T's learning rate (default: --lr)")
    parser.add_argument("--fresh-statistics-batches", action="store_true",
                        help="T's k steps on fresh random batches (the released code), not the current batch")
    parser.add_argument("--statistics-pass-every-epoch", action=argparse.BooleanOptionalAction, default=None,
                        help="a T-only pass before every epoch (the released code, and the default), not only "
                        "before the first")
    parser.add_argument("--clamp-at-zero", action="store_true",
                        help="penalise max(I_hat, 0): negative estimates give the encoder no gradient (our option)")
    parser.add_argument("--mi-update", choices=MI_UPDATES, default=None,
                        help="default: simultaneous (both gradients at the same parameters, two Adams); "
                        "released: the released code's order (CE step, then MI at the new parameters); "
                        "combined: one Adam on g_CE + lambda * clip(g_MI) (our option)")
    parser.add_argument("--conditional", action="store_true",
                        help="penalise I(z; c | y) instead of I(z; c) (our extension, not the paper's)")


def cli_defaults(args) -> None:
    """Fill the options left unset with chapter 2's protocol for the profile (before the data is loaded): the
    game's settings, the epochs, and on Kim's Coloured MNIST the quick profile's training subset."""
    from fairlab.cli import fill_unset

    protocol = chapter_protocol(args.profile)
    fill_unset(args, **protocol["game"], epochs=protocol["epochs"])
    if args.dataset == "cmnist-kim":
        fill_unset(args, subsample=protocol["subsample"])


def cli_run(args, train: BiasedDataset, test: BiasedDataset):
    model, history = fit_mi_backprop(
        train, epochs=args.epochs, mi_weight=args.mi_weight, statistics_steps=args.statistics_steps,
        warmup_epochs=args.warmup_epochs, lr=args.lr, batch_size=args.batch_size, ema_decay=args.ema_decay,
        statistics_lr=args.statistics_lr, conditional=args.conditional,
        fresh_statistics_batches=args.fresh_statistics_batches,
        statistics_pass_every_epoch=args.statistics_pass_every_epoch, clamp_at_zero=args.clamp_at_zero,
        mi_update=args.mi_update, seed=args.seed,
    )
    predictions = predict(model, test)
    extras = {
        "epochs": len(history), "lambda": args.mi_weight, "statistics_steps": args.statistics_steps,
        "conditional": args.conditional,
        "mi_estimate": mi_estimate(model, train),
    }
    return predictions, extras
