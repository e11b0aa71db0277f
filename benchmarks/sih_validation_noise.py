"""How noisy the released SiH code's validation loss is, against the epoch-to-epoch gains our early stopping sees.

    OMP_NUM_THREADS=1 python benchmarks/sih_validation_noise.py --device cpu          # rho = 1%, all images
    python benchmarks/sih_validation_noise.py --subsample 3000 --epochs 2 --device cpu  # a smoke test

``fit_sih`` scores the whole validation set (6,000 images at full size) in a fixed order with the encoder means,
so the loss it monitors has no noise. The released code scores it through the training loader: batches of 256 from
a fresh shuffle every epoch, the last partial batch dropped (5,888 of 6,000 images), the sum divided by 6,000. This
script trains SiH as ``bench_sih.py`` does (to early stop unless ``--epochs``), then scores the restored model
``--repeats`` times that way, and prints the spread of those scores beside the changes of our ``val_loss`` from epoch
to epoch: where the spread is as large as the late gains, the released rule's plateau schedule (patience 0) and its
stop (two epochs without a gain) fire by chance, which would make its runs stop earlier.
"""
from __future__ import annotations

import argparse
import json

import torch

from fairlab import config
from fairlab.data import coloured_mnist
from fairlab.methods.sih import SiHHParams, fit_sih, released_validation, sih_loss


@torch.no_grad()
def released_style_loss(model, val, hp: SiHHParams, generator: torch.Generator) -> float:
    """The validation loss as the released loop measures it (``released_validation``)."""
    model.eval()
    loss = lambda b: sih_loss(model, b, hp, sample_latents=False)  # noqa: E731
    return released_validation(loss, val, hp.batch_size, generator)["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bias-conflicting-ratio", type=float, default=0.01)
    parser.add_argument("--subsample", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="fixed epochs (default: to early stop)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else config.device()
    data = coloured_mnist("lff", "train", bias_conflicting_ratio=args.bias_conflicting_ratio, seed=args.seed,
                          subsample=args.subsample).to(device)
    train, val = data.random_split(0.1, seed=args.seed)
    hp = SiHHParams()
    model, history = fit_sih(train, val=val, epochs=args.epochs or hp.epochs,
                             patience=None if args.epochs else hp.patience, seed=args.seed, device=device,
                             progress=False)
    generator = torch.Generator().manual_seed(args.seed)
    draws = torch.tensor([released_style_loss(model, val, hp, generator) for _ in range(args.repeats)])
    best = history["val_loss"].min()
    gains = (-history["val_loss"].diff()).dropna()  # positive: the loss fell
    late = gains.iloc[len(gains) // 2:]
    print(config.run_info())
    print(history[["val_loss", "lr", "seconds"]].to_string(float_format=lambda v: f"{v:.6g}"))
    print(json.dumps({
        "epochs": len(history), "best_epoch": int(history.attrs["best_epoch"]), "val_size": len(val),
        "val_loss_best": round(float(best), 5),
        "released_style_mean": round(float(draws.mean()), 5), "released_style_sd": round(float(draws.std()), 5),
        "released_style_range": [round(float(draws.min()), 5), round(float(draws.max()), 5)],
        "gain_median_second_half": round(float(late.median()), 5),
        "gain_abs_median_second_half": round(float(late.abs().median()), 5),
        "epochs_in_second_half_with_gain_below_sd": int((late < float(draws.std())).sum()),
        "second_half_epochs": len(late),
    }))


if __name__ == "__main__":
    main()
