"""Train many independent runs of one method at once: K models stacked along a leading axis, one step for all.

A results table of 3 seeds x 4 bias ratios is 12 independent trainings of the same small network. Run one after the
other on a GPU, each step launches the same few hundred tiny kernels 12 times; stacked, one step launches them once
on 12x the data. ``torch.func`` does the stacking without a second copy of any model's code:

- ``stack_module_state`` turns K modules into one dict of (K, ...) parameters,
- ``vmap(functional_call(...))`` runs the *unchanged* per-model loss (``sih_loss``, ``cross_entropy``...) on every
  member with its own parameters and its own batch,
- the sum of the K losses has, for every member, exactly that member's gradient (the members share nothing), so one
  ``backward()`` trains all of them,
- ``MemberAdam`` is Adam with one learning rate per member, so each member keeps its own plateau schedule and a
  member that has early-stopped is frozen (rate 0) while the others go on.

What stays per member, as in ``train.fit``: its data set (a different rho or seed), its batch order (its own
generator: with ``members(..., seeds)`` the same order a single run with that seed would draw), its validation set,
early stopping, best-state restore, history, NaN detection. Host syncs happen once per epoch (validation and the
early-stopping decisions), never per step.

Equivalence with single runs is tested: an ensemble of ERM or LfF members gives, member by member, the weights of
the corresponding ``fit_erm`` / ``fit_lff`` runs on the CPU (SiH too, once its sampling noise is switched off).
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, NamedTuple, Sequence

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from fairlab import config
from fairlab.data.base import Batch, BiasedDataset
from fairlab.train import NonFiniteLossError, check_positive_count


class _Bound(nn.Module):
    """``fn(model, *args)`` as the forward of a module, so that ``functional_call`` can swap the model's weights for
    any method of it (``encode``, ``bias_classifier``...), not only ``forward``."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args):
        return self.fn(self.model, *args)


class Members:
    """K models with one architecture, their parameters stacked: ``params[name]`` is (K, *shape).

    ``map(fn, *args)`` runs ``fn(model_k, *args_k)`` for every member k at once (``vmap``; every tensor in ``args``
    has the member axis first, or pass ``in_dims`` to share some); random draws differ between members.
    ``module(k)`` gives member k back as an ordinary ``nn.Module``.
    """

    def __init__(self, models: Sequence[nn.Module]):
        if not models:
            raise ValueError("an ensemble needs at least one model.")
        names = [tuple((n, p.shape) for n, p in m.named_parameters()) for m in models]
        if any(n != names[0] for n in names):
            raise ValueError("every member must have the same architecture (the same parameter names and shapes).")
        self._models = list(models)
        params, buffers = stack_module_state(list(models))
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        # the architecture without storage: functional_call fills in each member's weights
        self._template = copy.deepcopy(models[0]).to("meta")
        self.training = True

    def __len__(self) -> int:
        return len(self._models)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def map(self, fn: Callable, *args, in_dims=0):
        bound = _Bound(self._template.train(self.training), fn)
        state = ({f"model.{k}": v for k, v in self.params.items()}, {f"model.{k}": v for k, v in self.buffers.items()})

        def one(state, *a):
            return functional_call(bound, state, a)

        dims = (0, *in_dims) if isinstance(in_dims, tuple) else (0, *([in_dims] * len(args)))
        return vmap(one, in_dims=dims, randomness="different")(state, *args)

    def module(self, k: int) -> nn.Module:
        model = copy.deepcopy(self._models[k])
        model.load_state_dict({n: p[k].detach().clone() for n, p in {**self.params, **self.buffers}.items()})
        return model.train(self.training)

    def state(self, keep: dict[str, torch.Tensor] | None = None, mask: torch.Tensor | None = None) -> dict:
        """A copy of the stacked parameters; with ``keep`` and ``mask`` (K,), the current values only for the members
        where ``mask`` is True and ``keep``'s for the others (how the best states are kept up to date)."""
        if keep is None:
            return {n: p.detach().clone() for n, p in self.params.items()}
        return {n: torch.where(mask.view(-1, *[1] * (p.ndim - 1)), p.detach(), keep[n]) for n, p in self.params.items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state[n])


def members(build: Callable[[], nn.Module], seeds: Sequence[int], device=None) -> tuple[Members, list[torch.Generator]]:
    """Build one model per seed exactly as a single run with that seed would (seed everything, then ``build()``), and
    the generator that gives each member the batch order that single run would draw."""
    device = torch.device(device) if device is not None else config.device()
    models, generators = [], []
    for seed in seeds:
        config.seed_everything(seed)
        models.append(build().to(device))
        gen = torch.Generator(device)
        # a single run draws its epoch permutation from the global generator of the data's device: on the CPU that
        # generator has been advanced by the weight initialisation, on a GPU it is untouched since seeding
        gen.set_state(torch.get_rng_state()) if device.type == "cpu" else gen.manual_seed(seed)
        generators.append(gen)
    return Members(models), generators


class MemberAdam:
    """Adam (the formula of ``torch.optim.Adam``, no weight decay) on stacked parameters with a learning rate per
    member: ``lr`` is a (K,) tensor on the parameters' device, changed in place by the schedule; 0 freezes a member.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float | torch.Tensor, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        k = len(self.params[0])
        self.lr = torch.as_tensor(lr, dtype=self.params[0].dtype, device=self.params[0].device).expand(k).clone()
        self.betas, self.eps, self.steps = betas, eps, 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1  # a Python int shared by all members: no host sync
        correction1 = 1 - beta1**self.steps
        correction2_sqrt = math.sqrt(1 - beta2**self.steps)
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        m = [self.exp_avg[i] for i in live]
        v = [self.exp_avg_sq[i] for i in live]
        # multi-tensor (foreach) kernels: a handful of launches for all parameters, as torch.optim.Adam does
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(m, denom)
        # the per-member rate, broadcast over each parameter's own shape
        torch._foreach_mul_(update, [self.lr.view(-1, *[1] * (p.ndim - 1)) for p in params])
        torch._foreach_add_(params, update, alpha=-1 / correction1)


class Plateau:
    """``ReduceLROnPlateau(mode="min", threshold_mode="rel")`` for one member, on the host (called once per epoch)."""

    def __init__(self, factor: float, patience: int = 0, threshold: float = 1e-5, eps: float = 1e-8):
        self.factor, self.patience, self.threshold, self.eps = factor, patience, threshold, eps
        self.best, self.bad_epochs = math.inf, 0

    def step(self, value: float, lr: float) -> float:
        """The learning rate for the next epoch."""
        if value < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.bad_epochs = 0
            if lr - lr * self.factor > self.eps:
                return lr * self.factor
        return lr


class Stacked(NamedTuple):
    """K data sets of one size, stacked: x (K, N, ...), y (K, N), s (K, N, ...); ``rows`` is (K, 1), member k's row."""

    x: torch.Tensor
    y: torch.Tensor
    s: torch.Tensor
    rows: torch.Tensor

    @classmethod
    def of(cls, datasets: Sequence[BiasedDataset], device) -> "Stacked":
        sizes = {len(d) for d in datasets}
        if len(sizes) != 1:
            raise ValueError(f"stacked members need data sets of one size, got sizes {sorted(sizes)}.")
        stack = lambda key: torch.stack([getattr(d, key).to(device) for d in datasets])  # noqa: E731
        return cls(stack("x"), stack("y"), stack("s"), torch.arange(len(datasets), device=device)[:, None])

    def batch(self, index: torch.Tensor) -> Batch:
        """Samples ``index`` (K, B) of every member: member k gets its own samples index[k]."""
        return Batch(self.x[self.rows, index], self.y[self.rows, index], self.s[self.rows, index], index)


LossFn = Callable[[Members, Batch], dict]


def per_member(loss_fn: Callable[[nn.Module, Batch], dict]) -> LossFn:
    """Turn a single-model loss ``loss_fn(model, batch) -> dict of scalars`` into an ensemble loss (vmapped)."""

    def batched(ensemble: Members, batch: Batch) -> dict:
        return ensemble.map(loss_fn, batch)

    return batched


@torch.no_grad()
def _evaluate(ensemble: Members, loss_fn: LossFn, data: Stacked, batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Each logged quantity averaged over every member's own data: (K,) per key."""
    n = data.y.shape[1]
    totals: dict[str, torch.Tensor] = {}
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n), device=data.y.device).expand(len(data.y), -1)
        for key, value in loss_fn(ensemble, data.batch(index)).items():
            totals[key] = totals.get(key, 0.0) + value.float() * index.shape[1]
    return {key: value / n for key, value in totals.items()}


def fit_members(
    ensemble: Members,
    train: Sequence[BiasedDataset],
    loss_fn: LossFn,
    *,
    epochs: int,
    generators: Sequence[torch.Generator],
    lr: float = 1e-3,
    batch_size: int = 256,
    val: Sequence[BiasedDataset] | None = None,
    val_loss_fn: LossFn | None = None,
    patience: int | None = None,
    lr_factor: float | None = None,
    lr_patience: int = 0,
    progress: bool | None = None,
    desc: str = "ensemble",
) -> list[pd.DataFrame]:
    """Train every member on its own data set, like ``train.fit`` trains one model; return one history per member.

    Args:
        train: one data set per member, all of one size, drawn in batches of ``batch_size`` (drop_last).
        loss_fn: ``loss_fn(ensemble, batch) -> dict`` of (K,) tensors with the key ``"loss"`` (``per_member`` makes
            one from a single-model loss); ``batch`` holds every member's rows, (K, B, ...).
        generators: member k's batch order (see ``members``).
        val, val_loss_fn: one validation set per member and the loss measured on it (default: ``loss_fn``). With
            ``val`` each member's best ``val_loss`` state is restored at the end, as ``fit(monitor="val_loss")``.
        patience: a member stops after this many epochs without a lower validation loss; the others go on.
        lr_factor, lr_patience: a per-member ``ReduceLROnPlateau`` on the validation loss (rel. threshold 1e-5).
    Returns:
        one DataFrame per member with ``fit``'s columns (training means, ``val_*``, ``lr``, ``seconds``) for the epochs
        it trained, ``attrs["best_epoch"]`` set.
    """
    k = len(ensemble)
    if len(train) != k or len(generators) != k or (val is not None and len(val) != k):
        raise ValueError(f"{k} members need {k} training sets, generators (and validation sets), got "
                         f"{len(train)}, {len(generators)}{'' if val is None else f', {len(val)}'}.")
    if (patience is not None or lr_factor is not None) and val is None:
        raise ValueError("early stopping and the plateau schedule watch the validation loss: pass val.")
    check_positive_count(epochs, "epochs")
    check_positive_count(batch_size, "batch_size")
    device = ensemble.parameters()[0].device
    progress = config.progress_enabled() if progress is None else progress
    data = Stacked.of(train, device)
    n = data.y.shape[1]
    if n < batch_size:
        raise ValueError(f"the training sets have {n} samples, fewer than one batch of {batch_size}: lower batch_size.")
    val_data = Stacked.of(val, device) if val is not None else None
    val_loss_fn = val_loss_fn or loss_fn
    n_batches = n // batch_size
    optimizer = MemberAdam(ensemble.parameters(), lr)
    plateaus = [Plateau(lr_factor, lr_patience) for _ in range(k)] if lr_factor is not None else None
    rates = [lr] * k
    histories: list[list[dict]] = [[] for _ in range(k)]
    active = [True] * k
    best = [math.inf] * k
    best_epoch, bad_epochs = [-1] * k, [0] * k
    best_state = ensemble.state() if val is not None else None

    bar = tqdm(total=epochs * n_batches, desc=f"{desc} x{k}", disable=not progress, leave=False, unit="batch")
    for epoch in range(epochs):
        ensemble.training = True
        start = time.perf_counter()
        order = torch.stack([torch.randperm(n, device=device, generator=g) for g in generators])
        sums: dict[str, torch.Tensor] = {}
        first_bad = torch.full((k,), n_batches, device=device, dtype=torch.long)
        for i in range(n_batches):
            logs = loss_fn(ensemble, data.batch(order[:, i * batch_size : (i + 1) * batch_size]))
            optimizer.zero_grad()
            logs["loss"].sum().backward()  # member k's gradient is that of its own loss: they share nothing
            optimizer.step()
            bad_now = ~torch.isfinite(logs["loss"].detach()) & (first_bad == n_batches)
            first_bad = torch.where(bad_now, torch.full_like(first_bad, i), first_bad)
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value.detach().float()
            bar.update(1)
        bad = first_bad.tolist()  # one sync per epoch
        for m in range(k):
            if active[m] and bad[m] < n_batches:
                bar.close()
                raise NonFiniteLossError(f"{desc}: member {m}'s loss became NaN/inf at epoch {epoch}, step {bad[m]}. "
                                         "Lower the learning rate or check its inputs for NaN.")
        means = {key: (value / n_batches).tolist() for key, value in sums.items()}
        if val_data is not None:
            ensemble.training = False
            means.update({f"val_{key}": v.tolist() for key, v in _evaluate(ensemble, val_loss_fn, val_data).items()})
            for m in range(k):
                if active[m] and not math.isfinite(means["val_loss"][m]):
                    bar.close()
                    raise NonFiniteLossError(f"{desc}: member {m}'s validation loss became NaN/inf at epoch {epoch}. "
                                             "Lower the learning rate or check its inputs for NaN.")
        seconds = time.perf_counter() - start

        improved = [False] * k
        for m in range(k):
            if not active[m]:
                continue
            row = {"epoch": epoch, **{key: values[m] for key, values in means.items()}, "lr": rates[m],
                   "seconds": seconds}
            histories[m].append(row)
            if val_data is None:
                continue
            value = row["val_loss"]
            if plateaus is not None:
                rates[m] = plateaus[m].step(value, rates[m])
            if value < best[m]:
                best[m], best_epoch[m], bad_epochs[m], improved[m] = value, epoch, 0, True
            else:
                bad_epochs[m] += 1
            if patience is not None and bad_epochs[m] >= patience:
                active[m] = False
        if best_state is not None and any(improved):
            best_state = ensemble.state(keep=best_state, mask=torch.tensor(improved, device=device))
        optimizer.lr.copy_(torch.tensor([r if a else 0.0 for r, a in zip(rates, active)], dtype=optimizer.lr.dtype))
        bar.set_postfix(active=f"{sum(active)}/{k}")
        if not any(active):
            break
    bar.close()
    if best_state is not None:
        ensemble.load(best_state)
    # a blow-up on the very last step leaves finite losses but NaN weights
    finite = torch.stack([torch.isfinite(p).reshape(len(p), -1).all(1) for p in ensemble.parameters()]).all(0)  # (K,)
    if not bool(finite.all()):
        raise NonFiniteLossError(f"{desc}: member(s) {(~finite).nonzero().flatten().tolist()} ended training with "
                                 "NaN/inf weights. Lower the learning rate or check their inputs for NaN.")
    frames = []
    for m in range(k):
        frame = pd.DataFrame(histories[m]).set_index("epoch")
        frame.attrs["best_epoch"] = best_epoch[m]
        frames.append(frame)
    return frames
