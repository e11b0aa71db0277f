"""A fair latent space on a frozen generative model (FLS, Joo et al.,
AAAI 2025): train only a small invertible module on the latent space of
a pretrained generator, decide from the label part, explain by moving
either part and decoding.

No code was released and the paper's method section is not in the
course's sources: what follows is the course's reconstruction. Verified from the
paper: a module on a *frozen* pretrained generator; an invertible
network that separates label from sensitive information and gives the
latent a diagonal, evenly scaled covariance; batches hold (x, y, s);
counterfactuals by moving each part. Everything else (sizes, the exact
losses and their weights, the frozen generator being a VAE we train
ourselves) is ours.

    z = E(x)                       frozen VAE encoder (mean), cached
    w = f(z) = [w_Y, w_S, w_R]     affine couplings, fixed permutations

Losses per batch (``fls_loss``), each a function below:

    nll   = -(log N(w; 0, I) + log|det df/dz|) / D          flow_nll
    heads = CE(h_Y(w_Y), y) + CE(h_S(w_S), s)               head_losses
    indep = CE(a_Y([GRL(w_Y), y]), s) + CE(a_S([GRL(w_S), s]), y)
            + CE(a_R(GRL(w_R)), (y, s))            independence_loss
    redis = mean over cells (y, s) of
            |mean(w_Y | y, s) - m_Y(y)|^2 + |mean(w_S | y, s) - m_S(s)|^2
                                                 redistribution_loss
    loss  = nll + heads + indep + redistribution_weight * redis

Optional, and ours alone (off by default: FLSHParams
``sensitive_alignment`` and ``counterfactual_*``): a fixed reflection of
z that starts w_S on a frozen linear s probe's direction, and terms
asking the decoded w_S counterfactual to carry the other group and keep
its label (``counterfactual_terms``).

GRL is a gradient reversal: the adversaries a_Y, a_S and a_R learn to
read s (given y) from w_Y, y (given s) from w_S and (y, s) from w_R; the
flow learns to stop them.
m_Y(y) = +-(d/2) u and m_S(s) = +-(d/2) u (u the unit diagonal): the
class means of w_Y, and the group means of w_S, placed symmetrically,
the same in every cell, so no group sits closer to a decision.

``fit_module`` holds out ``selection_share`` of the training latents
and keeps the epoch whose own decision h_Y(w_Y) has the highest
worst-group accuracy on them; the class and group means the
counterfactuals move between average their two cells (y, s).

The fair decision reads w_Y only. ``flip_sensitive`` moves w_S from its
group's mean to the other group's; ``move_label`` does the same to w_Y;
``f^-1`` and the frozen decoder turn either into an image or a record.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from fairlab import config, metrics
from fairlab.data.base import BiasedDataset
from fairlab.methods.base import Method, hparam, resolve
from fairlab.models.adversary import AdversaryEnsemble, grad_reverse
from fairlab.models.flow import VectorFlow, standard_normal_log_prob
from fairlab.models.mlp import MLP
from fairlab.pretrained import synchronize, encode, pretrained_generator
from fairlab.train import fit, make_step, model_device, predict


@dataclass
class FLSHParams:
    """The module's sizes, losses and schedule, and the fair classifier on w_Y. No code was released: these are
    the course's reconstruction (the full profile's values), not the paper's."""

    label_dims: int = hparam(2, "size of w_Y", positive=True)
    sensitive_dims: int = hparam(2, "size of w_S", positive=True)
    blocks: int = hparam(8, "affine coupling blocks", positive=True)
    width: int = hparam(128, "width of the coupling networks", positive=True)
    depth: int = hparam(2, "hidden layers of each coupling network", positive=True)
    adversary_width: int = hparam(64, "the adversaries' hidden width", positive=True)
    adversaries: int = hparam(2, "members of each adversary ensemble", positive=True)
    mean_distance: float = hparam(4.0, "distance d between the two class (and group) means")
    independence_weight: float = hparam(1.0, "weight of the reversed adversaries' gradient")
    redistribution_weight: float = hparam(1.0, "weight of the redistribution loss")
    epochs: int = hparam(40, "the module's epochs", positive=True)
    selection_share: float = hparam(0.2, "share of the training latents held out to pick the module's epoch "
                                    "(the highest worst-group accuracy of h_Y there); 0: keep the last epoch")
    batch_size: int = hparam(2048, "the module's batch size", positive=True)
    lr: float = hparam(3e-3, "the module's learning rate (Adam)")
    classifier_hidden: tuple = hparam((64,), "the w_Y classifier's hidden widths", cli=False)
    classifier_epochs: int = hparam(20, "the w_Y classifier's epochs", positive=True)
    classifier_lr: float = hparam(1e-3, "the w_Y classifier's learning rate")
    classifier_batch_size: int = hparam(256, "the w_Y classifier's batch size", positive=True)
    # counterfactual consistency, our addition (counterfactual_terms);
    # the defaults leave it off
    sensitive_alignment: bool = hparam(
        False, "start w_S on the direction of a frozen linear s probe "
        "on z: a fixed reflection of z before the flow")
    counterfactual_weight: float = hparam(
        0.0, "weight of CE(s probe(f^-1(flip(w))), 1 - s): the "
        "counterfactual must carry the other group (0: off)")
    counterfactual_keep_weight: float = hparam(
        0.0, "weight of |f^-1(flip(w)) - z|^2 off the s probe's "
        "direction (0: off)")
    counterfactual_label_weight: float = hparam(
        0.0, "weight of the decoded counterfactual's label consistency "
        "under a frozen label probe (0: off; needs the decoder)")
    counterfactual_label_samples: int = hparam(
        128, "samples of each batch the label consistency decodes",
        positive=True)
    counterfactual_probe_epochs: int = hparam(
        8, "epochs of the frozen label probe on decoded latents",
        positive=True)
    counterfactual_label_every: int = hparam(
        1, "add the label consistency on every k-th step only (it "
        "decodes, the costliest part)", positive=True)
    generator: dict | None = hparam(None, "the frozen generator's settings (fairlab.protocols gives the "
                                    "chapter's per data set)", cli=False)


def classifier_settings(hp: FLSHParams) -> dict:
    """``fit_classifier``'s settings for the w_Y classifier."""
    return {"hidden": list(hp.classifier_hidden), "epochs": hp.classifier_epochs,
            "lr": hp.classifier_lr, "batch_size": hp.classifier_batch_size}


# -------------------------------------------------------------------
# The module
# -------------------------------------------------------------------
class FairLatentSpace(nn.Module):
    """w = f(z) = [w_Y, w_S, w_R], an invertible coupling flow on z,
    with a classifier head on w_Y (the fair decision), one on w_S, and
    two adversaries for the independence term.

    ``label_means`` and ``sensitive_means`` (2, k) are the class means
    of w_Y and the group means of w_S on the training set, set by
    ``fit_fls``; the counterfactual moves go from one to the other.
    """

    def __init__(self, latent_dim: int, label_dims: int,
                 sensitive_dims: int, *, blocks: int, width: int,
                 depth: int, adversary_width: int, adversaries: int,
                 seed: int = 0):
        super().__init__()
        rest = latent_dim - label_dims - sensitive_dims
        if rest < 1 or min(label_dims, sensitive_dims) < 1:
            raise ValueError(
                f"need label_dims, sensitive_dims >= 1 and at least one"
                f" dimension left for w_R; got {label_dims} + "
                f"{sensitive_dims} of {latent_dim}.")
        self.sizes = (label_dims, sensitive_dims, rest)
        self.flow = VectorFlow(latent_dim, blocks=blocks, width=width,
                               depth=depth, seed=seed)
        self.label_head = nn.Linear(label_dims, 2)
        self.sensitive_head = nn.Linear(sensitive_dims, 2)
        options = {"members": adversaries, "width": adversary_width,
                   "seed": seed}
        # s from (w_Y, y): what w_Y knows of s beyond the label
        self.label_adversary = AdversaryEnsemble(
            label_dims + 2, 2, **options)
        # y from (w_S, s): what w_S knows of y beyond the group
        self.sensitive_adversary = AdversaryEnsemble(
            sensitive_dims + 2, 2, **options)
        # the cell (y, s) from w_R: w_R should know neither
        self.rest_adversary = AdversaryEnsemble(rest, 4, **options)
        self.register_buffer("label_means", torch.zeros(2, label_dims))
        self.register_buffer(
            "sensitive_means", torch.zeros(2, sensitive_dims))
        # a fixed reflection of z before the flow (``align_sensitive``);
        # None, the default, is no buffer at all: the flow reads z
        self.register_buffer("basis", None)

    def transform(self, z: torch.Tensor):
        """z (B, D) -> (w (B, D), log|det df/dz| (B,))."""
        if self.basis is not None:  # orthogonal: log|det| 0
            z = z @ self.basis
        return self.flow(z)

    def inverse(self, w: torch.Tensor) -> torch.Tensor:
        z = self.flow.inverse(w)
        if self.basis is not None:  # the reflection is its own inverse
            z = z @ self.basis
        return z

    @torch.no_grad()
    def align_sensitive(self, direction: torch.Tensor) -> None:
        """Put the unit vector ``direction`` (D,) of z on w_S: a fixed
        reflection H (orthogonal, symmetric) with (H z)_c = direction . z,
        c the coordinate of z that the flow, still the identity (its
        couplings start as the identity), sends to the first entry of
        w_S. Call before training; moving w_S then starts as moving z
        along ``direction``."""
        dim = direction.shape[0]
        eye = torch.eye(dim, device=direction.device)
        sent = self.flow(eye)[0]  # row i: f(e_i), a permutation of e_i
        c = int(sent[:, self.sizes[0]].abs().argmax())
        u = eye[c] - direction
        if float(u.norm()) < 1e-8:
            self.basis = eye
            return
        u = u / u.norm()
        self.basis = eye - 2 * torch.outer(u, u)

    def split(self, w: torch.Tensor):
        """w -> (w_Y, w_S, w_R)."""
        return w.split(self.sizes, 1)

    def decide(self, w: torch.Tensor) -> torch.Tensor:
        """The fair decision's logits (B, 2): a function of w_Y only."""
        return self.label_head(w[:, : self.sizes[0]])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decide(self.transform(z)[0])

    def flip_sensitive(self, w: torch.Tensor,
                       s: torch.Tensor) -> torch.Tensor:
        """w with w_S moved from the mean of group s to the mean of the
        other group; w_Y and w_R untouched."""
        k, j, _ = self.sizes
        shift = self.sensitive_means[1 - s] - self.sensitive_means[s]
        return torch.cat([w[:, :k], w[:, k:k + j] + shift,
                          w[:, k + j:]], 1)

    def move_label(self, w: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
        """w with w_Y moved from the mean of class y to the other's."""
        k = self.sizes[0]
        shift = self.label_means[1 - y] - self.label_means[y]
        return torch.cat([w[:, :k] + shift, w[:, k:]], 1)


# -------------------------------------------------------------------
# The losses (our reconstruction; see the module docstring)
# -------------------------------------------------------------------
def flow_nll(w: torch.Tensor, logdet: torch.Tensor) -> torch.Tensor:
    """-log p(z) per dimension when f(z) ~ N(0, I): the change of
    variables, -(log N(w; 0, I) + log|det df/dz|) / D, batch mean.
    A diagonal, evenly scaled covariance is what N(0, I) asks for."""
    log_p = standard_normal_log_prob(w) + logdet
    return -log_p.mean() / w.shape[1]


def head_losses(model: FairLatentSpace, w_y, w_s, y, s) -> tuple:
    """CE(h_Y(w_Y), y) and CE(h_S(w_S), s): w_Y must carry the label,
    w_S the sensitive attribute."""
    label = F.cross_entropy(model.label_head(w_y), y)
    sensitive = F.cross_entropy(model.sensitive_head(w_s), s)
    return label, sensitive


def independence_loss(model: FairLatentSpace, w_y, w_s, w_r, y, s,
                      weight: float) -> torch.Tensor:
    """Adversaries behind gradient reversal: one reads s from w_Y *and
    y* (so w_Y may keep the label, not what s adds to it), one reads y
    from w_S and s (so w_S may keep the group, not the label that goes
    with it in this population), one reads the cell (y, s) from w_R.
    The adversaries minimise this loss; the flow, through the reversal,
    maximises it (times ``weight``)."""
    y_hot = F.one_hot(y, 2).to(w_y.dtype)
    s_hot = F.one_hot(s, 2).to(w_s.dtype)
    label_in = torch.cat([grad_reverse(w_y, weight), y_hot], 1)
    from_label = model.label_adversary.loss(label_in, s)
    sensitive_in = torch.cat([grad_reverse(w_s, weight), s_hot], 1)
    from_sensitive = model.sensitive_adversary.loss(sensitive_in, y)
    from_rest = model.rest_adversary.loss(
        grad_reverse(w_r, weight), 2 * y + s)
    return from_label + from_sensitive + from_rest


def redistribution_targets(k: int, distance: float, device=None):
    """(2, k) targets for the two class (or group) means: -+(d/2) u,
    u = (1, ..., 1) / sqrt(k), so the two means are d apart."""
    u = torch.ones(k, device=device) / math.sqrt(k)
    return torch.stack([-u, u]) * distance / 2


def redistribution_loss(w_y, w_s, y, s,
                        distance: float) -> torch.Tensor:
    """Place the class means of w_Y and the group means of w_S at
    symmetric targets, *in every cell (y, s)*: the mean of w_Y over the
    samples with (y, s) should be m_Y(y) whatever s is, that of w_S
    m_S(s) whatever y is. Every occupied cell counts the same, however
    rare, which is what balances the groups. No host sync."""
    cell = 2 * y + s  # (B,) in 0..3
    hot = F.one_hot(cell, 4).to(w_y.dtype)  # (B, 4)
    count = hot.sum(0)  # (4,)
    occupied = (count > 0).to(w_y.dtype)
    mean_y = hot.T @ w_y / count.clamp(min=1)[:, None]  # (4, k_Y)
    mean_s = hot.T @ w_s / count.clamp(min=1)[:, None]  # (4, k_S)
    cells = torch.arange(4, device=y.device)
    target_y = redistribution_targets(
        w_y.shape[1], distance, y.device)[cells // 2]
    target_s = redistribution_targets(
        w_s.shape[1], distance, y.device)[cells % 2]
    error = ((mean_y - target_y).pow(2).sum(1)
             + (mean_s - target_s).pow(2).sum(1))
    return (error * occupied).sum() / occupied.sum()


def fls_loss(model: FairLatentSpace, z, y, s, *,
             mean_distance: float, independence_weight: float,
             redistribution_weight: float,
             counterfactual: "CounterfactualProbes | None" = None,
             ) -> dict:
    """The whole objective on a batch of latents z (B, D); with
    ``counterfactual``, plus ``counterfactual_terms``."""
    w, logdet = model.transform(z)
    w_y, w_s, w_r = model.split(w)
    nll = flow_nll(w, logdet)
    label, sensitive = head_losses(model, w_y, w_s, y, s)
    independence = independence_loss(
        model, w_y, w_s, w_r, y, s, independence_weight)
    redistribution = redistribution_loss(
        w_y, w_s, y, s, mean_distance)
    loss = (nll + label + sensitive + independence
            + redistribution_weight * redistribution)
    out = {"loss": loss, "nll": nll, "label_ce": label,
           "sensitive_ce": sensitive, "adversary_ce": independence,
           "redistribution": redistribution}
    if counterfactual is not None:
        terms = counterfactual_terms(model, counterfactual, z, w, s,
                                     mean_distance)
        out["loss"] = loss + terms.pop("loss")
        out.update(terms)
    return out


# -------------------------------------------------------------------
# Counterfactual consistency (our reconstruction's addition; off by
# default)
# -------------------------------------------------------------------
@dataclass
class CounterfactualProbes:
    """Frozen probes fitted on the training latents before the module,
    and the weights of ``counterfactual_terms``.

    ``direction`` (D,) is the unit vector of the cell-balanced
    difference of the two groups' means of z (each group's mean the
    average of its two cells' means, so the label, which goes with the
    group in a biased population, cancels); the s probe's logit is
    (z . direction - centre) / spread. ``label_probe`` reads y from
    decoded latents (None when the label term is off)."""

    direction: torch.Tensor
    centre: float
    spread: float
    weight: float
    keep_weight: float
    label_weight: float = 0.0
    label_samples: int = 128
    label_probe: nn.Module | None = None
    decoder: nn.Module | None = None
    label_every: int = 1
    steps: int = 0  # calls of counterfactual_terms so far

    def sensitive_logit(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.direction - self.centre) / self.spread


def counterfactual_terms(model: FairLatentSpace,
                         probes: CounterfactualProbes, z, w, s,
                         mean_distance: float) -> dict:
    """The w_S counterfactual of the batch, z_cf = f^-1(flip(w)), w_S
    moved between the redistribution targets (the group means the
    module is trained towards; ``sensitive_means`` are set only after
    training), and three terms on it:

        weight       * CE(s probe(z_cf), 1 - s)
        keep_weight  * |P (z_cf - z)|^2,  P: off the s probe's direction
        label_weight * CE(p(D(z_cf)), softmax p(D(z)))

    The first asks the counterfactual to carry the other group as a
    frozen *linear* probe reads it (z holds s linearly); the second to
    move z only along that probe's direction; the third, on the first
    ``label_samples`` of the batch, to keep what a frozen label probe p
    reads from the decoded image D(z) (D the frozen decoder), on every
    ``label_every``-th call (it is the costly one). Why: the
    heads and adversaries alone leave s readable from w_R, nonlinearly,
    and the decoder keeps reading it there, so moving w_S did not
    change the decoded group on some seeds, and changed the digit on
    others. Gradients reach the flow through f^-1."""
    k, j, _ = model.sizes
    targets = redistribution_targets(j, mean_distance, z.device)
    shift = targets[1 - s] - targets[s]
    flipped = torch.cat([w[:, :k], w[:, k:k + j] + shift,
                         w[:, k + j:]], 1)
    z_cf = model.inverse(flipped)
    other = F.binary_cross_entropy_with_logits(
        probes.sensitive_logit(z_cf), (1 - s).to(z.dtype))
    move = z_cf - z
    along = (move @ probes.direction)[:, None] * probes.direction
    keep = (move - along).pow(2).sum(1).mean()
    loss = probes.weight * other + probes.keep_weight * keep
    out = {"cf_other_ce": other, "cf_keep": keep}
    probes.steps += 1
    if probes.label_weight and probes.steps % probes.label_every:
        out["cf_label_ce"] = torch.zeros((), device=z.device)
    elif probes.label_weight:
        n, decode = probes.label_samples, probes.decoder.decode
        with torch.no_grad():
            reference = probes.label_probe(decode(z[:n])).softmax(1)
        logits = probes.label_probe(decode(z_cf[:n]))
        label = -(reference * logits.log_softmax(1)).sum(1).mean()
        loss = loss + probes.label_weight * label
        out["cf_label_ce"] = label
    out["loss"] = loss
    return out


def cell_balance(y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """(N,) sample weights, mean 1, giving every occupied cell (y, s)
    the same total weight."""
    cell = 2 * y + s
    count = torch.bincount(cell, minlength=4).to(torch.float32)
    return (1.0 / count.clamp(min=1))[cell] * len(cell) / (count > 0).sum()


@torch.no_grad()
def sensitive_direction(latents: BiasedDataset) -> tuple:
    """(direction (D,), centre, spread) of the cell-balanced linear s
    probe: see ``CounterfactualProbes``."""
    z, y, s = latents.x, latents.y, latents.s
    means = torch.stack([
        (z[(y == 0) & (s == g)].mean(0) + z[(y == 1) & (s == g)].mean(0))
        / 2 for g in (0, 1)])
    direction = means[1] - means[0]
    direction = direction / direction.norm()
    projected = means @ direction
    centre = float(projected.mean())
    spread = float((z @ direction - projected[s]).std())
    return direction, centre, spread


def fit_label_probe(latents: BiasedDataset, decoder: nn.Module, *,
                    epochs: int, seed: int = 0) -> nn.Module:
    """A frozen MLP (one hidden layer of 128) for y on the decoded
    training latents D(z), cell-balanced, Adam (1e-3), batches of 256:
    what the decoded counterfactual's label consistency reads."""
    config.seed_everything(seed)
    z, y, s = latents.x, latents.y, latents.s
    with torch.no_grad():
        x = torch.cat([decoder.decode(z[i:i + 2048])
                       for i in range(0, len(z), 2048)])
    probe = MLP(math.prod(x.shape[1:]), [128], 2).to(x.device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-3)
    weight = cell_balance(y, s)
    order_gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=order_gen).to(x.device)
        for i in range(0, len(x), 256):
            idx = order[i:i + 256]
            loss = (F.cross_entropy(probe(x[idx]), y[idx],
                                    reduction="none") * weight[idx]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return probe.eval().requires_grad_(False)


def counterfactual_probes(latents: BiasedDataset, hp: FLSHParams, *,
                          decoder: nn.Module | None = None,
                          seed: int = 0) -> CounterfactualProbes:
    """The frozen probes ``counterfactual_terms`` reads, from the
    training latents (and, for the label term, the frozen decoder)."""
    direction, centre, spread = sensitive_direction(latents)
    label_probe = None
    if hp.counterfactual_label_weight:
        if decoder is None:
            raise ValueError(
                "counterfactual_label_weight > 0 needs the frozen "
                "generator: pass decoder= to fit_module.")
        label_probe = fit_label_probe(
            latents, decoder, epochs=hp.counterfactual_probe_epochs,
            seed=seed)
    return CounterfactualProbes(
        direction, centre, spread, hp.counterfactual_weight,
        hp.counterfactual_keep_weight, hp.counterfactual_label_weight,
        hp.counterfactual_label_samples, label_probe, decoder,
        hp.counterfactual_label_every)


def build_module(latent_dim: int, hp: FLSHParams | None = None,
                 seed: int = 0, **overrides) -> FairLatentSpace:
    hp = resolve(FLSHParams, hp, overrides)
    return FairLatentSpace(
        latent_dim, hp.label_dims, hp.sensitive_dims,
        blocks=hp.blocks, width=hp.width, depth=hp.depth,
        adversary_width=hp.adversary_width,
        adversaries=hp.adversaries, seed=seed)


def fit_module(latents: BiasedDataset, hp: FLSHParams | None = None, *,
               seed: int = 0, device=None,
               progress: bool | None = None,
               decoder: nn.Module | None = None, **overrides):
    """Train the module on cached latents (x = z); only the module
    learns. ``decoder``: the frozen generator, needed only when
    ``counterfactual_label_weight`` > 0. Returns (module, history,
    seconds); the seconds include fitting the counterfactual probes."""
    hp = resolve(FLSHParams, hp, overrides)
    probes, probe_seconds = None, 0.0
    uses_probes = hp.sensitive_alignment or any((
        hp.counterfactual_weight, hp.counterfactual_keep_weight,
        hp.counterfactual_label_weight))
    if uses_probes:
        probe_start = time.perf_counter()
        on = latents.to(device or config.device())
        probes = counterfactual_probes(on, hp, decoder=decoder,
                                       seed=seed)
        probe_seconds = time.perf_counter() - probe_start
    config.seed_everything(seed)
    model = build_module(latents.x.shape[1], hp, seed)
    if hp.sensitive_alignment:
        model.align_sensitive(probes.direction.cpu())
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr)
    weights = {k: getattr(hp, k) for k in (
        "mean_distance", "independence_weight", "redistribution_weight")}
    if any((hp.counterfactual_weight, hp.counterfactual_keep_weight,
            hp.counterfactual_label_weight)):
        weights["counterfactual"] = probes

    def loss_fn(model, batch):
        return fls_loss(model, batch.x, batch.y, batch.s, **weights)

    start = time.perf_counter() - probe_seconds
    train, held_out = selection_split(latents, hp.selection_share, seed)
    validate = None
    if held_out is not None:
        held_out = held_out.to(device or config.device())

        def validate() -> dict:
            return {"val_worst_group_accuracy":
                    head_worst_group_accuracy(model, held_out)}
    history = fit(model, train, make_step(model, loss_fn, optimizer),
                  epochs=hp.epochs, batch_size=hp.batch_size,
                  validate=validate,
                  monitor="val_worst_group_accuracy" if validate else None,
                  mode="max", device=device, progress=progress,
                  desc="fair latent module")
    set_group_means(model, latents)
    synchronize(model_device(model))
    return model, history, time.perf_counter() - start


def selection_split(latents: BiasedDataset, share: float, seed: int):
    """(train, held out): a random ``share`` of the latents held out
    (``None`` when the share is 0) to pick the module's epoch."""
    if share <= 0:
        return latents, None
    order = torch.randperm(
        len(latents), generator=torch.Generator().manual_seed(seed))
    n = int(round(share * len(latents)))
    return latents.subset(order[n:]), latents.subset(order[:n])


@torch.no_grad()
def head_worst_group_accuracy(model: FairLatentSpace,
                              latents: BiasedDataset) -> float:
    """The accuracy of the module's own fair decision h_Y(w_Y) in the
    worst cell (y, s) of ``latents``: high only if it is right for
    every cell, the rare ones too (a constant decision scores 0)."""
    model.eval()
    decision = torch.cat([model(b.x).argmax(1)
                          for b in latents.batches(4096)])
    return metrics.worst_group_accuracy(latents.y, decision,
                                        sensitive_features=latents.s)


@torch.no_grad()
def transform(model: FairLatentSpace, latents: BiasedDataset,
              batch_size: int = 4096) -> torch.Tensor:
    """w = f(z) for a whole latent data set: (N, D), on the model's
    device."""
    model.eval()
    on = latents.to(model_device(model))
    return torch.cat([model.transform(b.x)[0]
                      for b in on.batches(batch_size)])


@torch.no_grad()
def set_group_means(model: FairLatentSpace,
                    latents: BiasedDataset) -> None:
    """Class means of w_Y and group means of w_S on ``latents``, each
    the average of its two cells' means (the class mean of w_Y averages
    its cells (y, 0) and (y, 1)), so that the rare cells count as much
    as the common ones: a plain group mean in a population where the
    group goes with the label would carry the label too."""
    w = transform(model, latents)
    w_y, w_s, _ = model.split(w)
    y, s = latents.y.to(w.device), latents.s.to(w.device)

    def cell_mean(part, a, b):  # the mean of part over y == a, s == b
        return part[(y == a) & (s == b)].mean(0)

    for value in (0, 1):
        model.label_means[value] = (cell_mean(w_y, value, 0)
                                    + cell_mean(w_y, value, 1)) / 2
        model.sensitive_means[value] = (cell_mean(w_s, 0, value)
                                        + cell_mean(w_s, 1, value)) / 2


def label_part(model: FairLatentSpace,
               latents: BiasedDataset) -> BiasedDataset:
    """The data set with x = w_Y: what the fair classifier reads."""
    w_y = model.split(transform(model, latents))[0]
    return replace(latents.to(w_y.device), x=w_y,
                   name=latents.name.replace("(z)", "(w_Y)"))


# -------------------------------------------------------------------
# Classifiers on x, z and w_Y; the independent judges
# -------------------------------------------------------------------
def fit_classifier(data: BiasedDataset, settings: dict, *,
                   target: str = "y", seed: int = 0, device=None,
                   progress: bool | None = None) -> nn.Module:
    """An MLP predicting ``target`` ("y" or "s") from data.x, trained
    with cross-entropy on the shared loop (the same recipe for x, z
    and w_Y, so the comparison is between representations)."""
    config.seed_everything(seed)
    n_in = math.prod(data.x.shape[1:])
    model = MLP(n_in, settings["hidden"], 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])

    def loss_fn(model, batch):
        labels = batch.y if target == "y" else batch.s
        return F.cross_entropy(model(batch.x), labels)

    fit(model, data, make_step(model, loss_fn, optimizer),
        epochs=settings["epochs"], batch_size=settings["batch_size"],
        device=device, progress=progress, desc=f"classifier ({target})")
    return model.eval()


@torch.no_grad()
def counterfactuals(generator: nn.Module, model: FairLatentSpace,
                    z: torch.Tensor, s: torch.Tensor) -> dict:
    """Decoded x for latents z (B, D) and sensitive attributes s (B,):
    ``reconstruction`` (decode z), ``flip_s`` (w_S to the other
    group), ``move_y`` (w_Y to the other class of the fair decision);
    also ``decision`` (B,), the fair decision on z."""
    model.eval()
    w = model.transform(z)[0]
    decision = model.decide(w).argmax(1)
    flip_s = model.inverse(model.flip_sensitive(w, s))
    move_y = model.inverse(model.move_label(w, decision))
    return {"reconstruction": generator.decode(z),
            "flip_s": generator.decode(flip_s),
            "move_y": generator.decode(move_y), "decision": decision}


# -------------------------------------------------------------------
# The method end to end: generator, module, the fair classifier
# -------------------------------------------------------------------
class FLSModel(nn.Module):
    """The frozen generator, the module f and the classifier on w_Y."""

    def __init__(self, generator: nn.Module, module: FairLatentSpace,
                 classifier: nn.Module):
        super().__init__()
        self.generator, self.module = generator, module
        self.classifier = classifier


def fit_fls(train: BiasedDataset, hp: FLSHParams | None = None, *,
            val: BiasedDataset | None = None, seed: int = 0,
            device=None, progress: bool | None = None, **overrides):
    """Load (or train once, with seed 0) the frozen generator for
    ``train``, encode, train the module and the classifier on w_Y.
    ``val`` is not used. Returns ``(FLSModel, the module's history)``;
    ``history.attrs`` holds ``module_seconds`` and where the generator
    came from (``generator_loaded``, ``generator_seconds``)."""
    hp = resolve(FLSHParams, hp, overrides)
    if hp.generator is None:
        raise ValueError(
            "fls sits on a frozen generator: give its settings as "
            "hp.generator (the chapter's, per data set: "
            "fairlab.protocols.protocol('fair_latent_space', "
            "dataset=...)['generator']).")
    generator = pretrained_generator(train, dict(hp.generator),
                                     device=device, progress=progress)
    train_z = encode(generator.model, train)
    module, history, seconds = fit_module(
        train_z, hp, seed=seed, device=device, progress=progress,
        decoder=generator.model)
    classifier = fit_classifier(
        label_part(module, train_z), classifier_settings(hp), seed=seed,
        device=device, progress=progress)
    history.attrs.update(module_seconds=seconds,
                         generator_loaded=generator.loaded,
                         generator_seconds=generator.seconds)
    return FLSModel(generator.model, module, classifier), history


def representation(model: FLSModel, data: BiasedDataset) -> torch.Tensor:
    """w_Y for every sample: (N, label_dims), what the fair decision
    reads (on the model's device)."""
    return label_part(model.module, encode(model.generator, data)).x


def predict_fair(model: FLSModel, data: BiasedDataset) -> torch.Tensor:
    """The fair decision: the classifier on w_Y. (N,) on the data's
    device."""
    w_y = label_part(model.module, encode(model.generator, data))
    return predict(model.classifier, w_y).to(data.device)


def _summary(model, history, *, train, test, hp, seed, **_) -> dict:
    """The generator's and the module's seconds, and the same
    classifier recipe on x and on z (what w_Y is compared with)."""
    extras = {"generator_seconds": round(history.attrs["generator_seconds"], 3),
              "generator_loaded": history.attrs["generator_loaded"],
              "module_seconds": round(history.attrs["module_seconds"], 3)}
    settings = classifier_settings(hp)
    train_z, test_z = (encode(model.generator, d) for d in (train, test))
    for name, (tr, te) in (("z", (train_z, test_z)), ("x", (train, test))):
        classifier = fit_classifier(tr, settings, seed=seed)
        pred = predict(classifier, te)
        result = metrics.summary(te.y, pred, sensitive_features=te.group)
        for key in ("accuracy", "dp", "eo", "worst_group_accuracy"):
            extras[f"{name}_{key}"] = round(float(result[key]), 6)
    return extras


METHOD = Method(
    name="fls", hparams=FLSHParams, fit=fit_fls, predict=predict_fair,
    representation=representation, needs=("y", "s"),
    datasets=("cmnist-binary", "adult"), summary=_summary,
    description="A fair latent space: an invertible module on a frozen "
                "generator separates label from sensitive information.",
)
