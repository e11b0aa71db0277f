"""How long MI backprop training takes on Kim's Coloured MNIST: seconds per epoch, steps/s, for k statistics steps.

    FAIRLAB_DATA=... python benchmarks/bench_mi.py                          # all 60,000 images, k = 5, 2 epochs
    python benchmarks/bench_mi.py --device cpu --subsample 2000 --epochs 2 --k 1 5 20

One line per k: the steady-state seconds per epoch (the first epoch pays for warm-up and is left out when there
are two or more), steps per second, images per second, and the time of one whole run of ``--epochs`` epochs.
The chapter's full profile trains 24 + 6 such runs (sigma^2 x lambda x seed, then the lambda sweep) of 8 epochs
at batch 256 (``--batch-size 256 --epochs 8``); its budget is under 5 minutes on one H100.
"""
from __future__ import annotations

import argparse
import time

import torch

from fairlab import config
from fairlab.data import coloured_mnist
from fairlab.methods.mi_backprop import fit_mi_backprop


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", nargs="+", type=int, default=[5], help="statistics-network steps per batch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subsample", type=int, default=None, help="train on this many images (quick CPU check)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lambda", dest="mi_weight", type=float, default=1.0)
    parser.add_argument("--colour-variance", type=float, default=0.02)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = torch.device(args.device) if args.device else config.device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}) | torch {torch.__version__} | batch {args.batch_size} | lambda {args.mi_weight:g}")
    train = coloured_mnist("kim", "train", colour_variance=args.colour_variance, subsample=args.subsample).to(device)
    steps_per_epoch = len(train) // args.batch_size
    print(f"{'k':>3} {'s/epoch':>8} {'steps/s':>8} {'images/s':>9} {'s/run':>7}  ({len(train)} images, "
          f"{steps_per_epoch} steps/epoch, {args.epochs} epochs + 1 warm-up pass of T)")
    for k in args.k:
        synchronise(device)
        start = time.perf_counter()
        _, history = fit_mi_backprop(train, epochs=args.epochs, mi_weight=args.mi_weight, statistics_steps=k,
                                     batch_size=args.batch_size, device=device, progress=False)
        synchronise(device)
        seconds = time.perf_counter() - start
        per_epoch = history["seconds"].iloc[1:].median() if len(history) > 1 else history["seconds"].iloc[0]
        print(f"{k:3d} {per_epoch:8.2f} {steps_per_epoch / per_epoch:8.1f} {len(train) / per_epoch:9.0f} "
              f"{seconds:7.1f}")


if __name__ == "__main__":
    main()
