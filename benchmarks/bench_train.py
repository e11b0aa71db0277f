"""Benchmark the shared training loop on the vanilla baseline (LfF's MLP on Coloured MNIST, batch 256).

    python benchmarks/bench_train.py --epochs 5 [--device cuda] [--subsample N] [--bf16]

Prints one JSON line per measured epoch set: device, samples/s, seconds per epoch (the first epoch, which pays for
allocation and warm-up, is reported separately). Reference points from the course's issues, measured on one H100:
the published SiH code trains this data at about 65 iterations/s of batch 256 (about 3.2 s per epoch); a plain
GPU-resident eager loop managed 1.56 s per epoch for the two-VAE SiH model.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from fairlab import config
from fairlab.data import coloured_mnist
from fairlab.losses import cross_entropy
from fairlab.models import baseline_network
from fairlab.train import fit, make_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--subsample", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device) if args.device else config.device()
    train = coloured_mnist("lff", "train", bias_conflicting_ratio=0.01, subsample=args.subsample).to(device)
    config.seed_everything(0)
    model = baseline_network(train).to(device)
    step = make_step(model, cross_entropy, torch.optim.Adam(model.parameters(), lr=1e-3), bf16=args.bf16)
    start = time.perf_counter()
    history = fit(model, train, step, epochs=args.epochs, batch_size=args.batch_size, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    steady = history["seconds"].iloc[1:] if len(history) > 1 else history["seconds"]
    samples = train.num_batches(args.batch_size, drop_last=True) * args.batch_size
    print(json.dumps({
        "benchmark": "erm-cmnist-lff", "device": config.run_info().split("device=")[1].split(" | ")[0],
        "torch": torch.__version__, "threads": torch.get_num_threads(), "epochs": args.epochs,
        "batch_size": args.batch_size, "n_train": len(train), "bf16": args.bf16,
        "first_epoch_s": round(float(history["seconds"].iloc[0]), 3),
        "seconds_per_epoch": round(float(steady.mean()), 3),
        "samples_per_s": round(samples / float(steady.mean())),
        "iterations_per_s": round(samples / args.batch_size / float(steady.mean()), 1),
        "total_s": round(total, 2), "final_train_accuracy": round(float(history["accuracy"].iloc[-1]), 4),
    }))


if __name__ == "__main__":
    main()
