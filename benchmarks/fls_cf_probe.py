"""Chapter 5, a probe (no module): how far does a *linear* move of z along the colour direction go? For each seed,
fit a cell-balanced logistic regression for s on the training latents z, move every test latent along the probe's
unit direction v by the difference of the two groups' (cell-balanced) mean projections, decode, and judge with the
judges trained on reconstructions (as fls_margins' rec_ keys). Also the direction of the cell-balanced mean
difference. If this oracle move cannot flip colour without the digit, no w_S move that mimics it can.

    OMP_NUM_THREADS=1 FAIRLAB_CHECKPOINTS=<scratch> python benchmarks/fls_cf_probe.py 1,2
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

os.environ.setdefault("FAIRLAB_PROFILE", "quick")
from fairlab.experiments import fair_latent_space as fls_exp  # noqa: E402
from fairlab.pretrained import encode, pretrained_generator  # noqa: E402


def cell_weights(y, s):
    cell = 2 * y + s
    count = torch.bincount(cell, minlength=4).float()
    return (1.0 / count.clamp(min=1))[cell] * len(cell) / 4


def fit_probe(z, y, s, steps=300, lr=0.05, decay=1e-3):
    """Cell-balanced logistic regression s ~ z (Adam, L2)."""
    torch.manual_seed(0)
    mean, std = z.mean(0), z.std(0)
    w = torch.zeros(z.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    weight = cell_weights(y, s)
    for _ in range(steps):
        logit = ((z - mean) / std) @ w + b
        loss = (F.binary_cross_entropy_with_logits(
            logit, s.float(), reduction="none") * weight).mean()
        loss = loss + decay * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    v = (w / std).detach()  # direction in raw z
    return v / v.norm()


def balanced_means(p, y, s):
    """(2,): the group means of p, each the average of its two cells."""
    return torch.stack([(p[(y == 0) & (s == g)].mean() + p[(y == 1) & (s == g)].mean()) / 2 for g in (0, 1)])


@torch.no_grad()
def judge_move(gen, judges, z, s, v, mu, scale, replace=False):
    if replace:  # set the projection on v to the other group's mean
        shift = (mu[1 - s] - z @ v)[:, None] * v[None] * scale
    else:  # shift by the difference of the group means
        shift = (mu[1 - s] - mu[s])[:, None] * v[None] * scale
    base = gen.decode(z)
    moved = gen.decode(z + shift)
    return {w: round(float((judges[w](moved).argmax(1) != judges[w](base).argmax(1)).float().mean()), 4)
            for w in "sy"}


def main():
    seeds = [int(a) for a in sys.argv[1].split(",")]
    for seed in seeds:
        settings = fls_exp.chapter_settings("cmnist-binary")
        train = fls_exp.load_data("cmnist-binary", "train", seed=seed, settings=settings)
        test = fls_exp.load_data("cmnist-binary", "test", seed=seed, settings=settings)
        gen = pretrained_generator(train, settings["generator"], progress=False).model
        tz, sz = encode(gen, train), encode(gen, test)
        judges = fls_exp.fit_judges(fls_exp.judge_data("cmnist-binary", seed=seed, settings=settings),
                                    settings["judge"], seed=seed, generator=gen)
        z, s = sz.x[:1000], sz.s[:1000]
        directions = {"logreg": fit_probe(tz.x, tz.y, tz.s)}
        d = torch.stack([tz.x[(tz.y == a) & (tz.s == 1)].mean(0) - tz.x[(tz.y == a) & (tz.s == 0)].mean(0)
                         for a in (0, 1)]).mean(0)
        directions["meandiff"] = d / d.norm()
        for name, v in directions.items():
            mu = balanced_means(tz.x @ v, tz.y, tz.s)
            for scale, repl in ((0.7, False), (0.85, False), (1.0, False), (1.5, False), (1.0, True)):
                out = judge_move(gen, judges, z, s, v, mu, scale, repl)
                print(json.dumps({"seed": seed, "direction": name, "scale": scale, "replace": repl,
                                  "shift": round(float(mu[1] - mu[0]), 3), **out}), flush=True)
        print(json.dumps({"seed": seed, "cos(logreg, meandiff)":
                          round(float(directions["logreg"] @ directions["meandiff"]), 3)}), flush=True)


if __name__ == "__main__":
    main()
