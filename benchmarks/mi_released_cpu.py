"""The MI penalty with the released schedule on our reconstruction of Kim's Coloured MNIST, on a CPU: all 60,000
training images, test accuracy read as training goes.

    OMP_NUM_THREADS=1 python benchmarks/mi_released_cpu.py --variance 0.020 --epochs 100 --read-every 117 \
        --baseline-epochs 4

The released schedule (``RELEASED_SCHEDULE``: the CE step, then the clipped MI step at the new parameters, 40 T
steps on the epoch's first 40 batches, a T-only pass before every epoch, Adam 1e-4, batches of 128) with lambda = 1
and Ragonesi et al.'s encoder. The loop is ``fit_mi_backprop``'s (the same warm-up, steps and T-only passes, built
from the same functions), written out here only so that the 10,000 test images can be read every ``--read-every``
encoder updates as well as after every epoch: at about 3 s per update on one CPU thread, an epoch of 468 updates
takes about half an hour, and a curve read only per epoch would have a handful of points.

``--baseline-epochs N`` first trains the same encoder with lambda = 0 (the same Adam, no T: with lambda = 0 the
statistics network cannot move the encoder) for N epochs, read the same way: the penalty's own baseline.
One JSON line per reading on stdout, appended to ``--out`` as it is made; a run stopped by hand keeps what it read.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from fairlab import config, metrics
from fairlab.data import coloured_mnist
from fairlab.experiments.mi_backprop import KIM_PUBLISHED_BASELINE
from fairlab.methods.mi_backprop import (
    RELEASED_SCHEDULE, MIBackpropHParams, _statistics_adam, build_model, make_mi_step, make_statistics_step,
)
from fairlab.train import fit, predict

DEFAULT_OUT = Path(__file__).parent / "results" / "mi_released_cpu_2026-12-03.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variance", type=float, default=0.020)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--mi-weight", type=float, default=1.0, help="lambda")
    parser.add_argument("--baseline-epochs", type=int, default=0, help="lambda = 0 first, for this many epochs")
    parser.add_argument("--read-every", type=int, default=117, help="encoder updates between test readings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subsample", type=int, default=None, help="training images (default: all 60,000)")
    parser.add_argument("--test-subsample", type=int, default=None, help="test images (default: all 10,000)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    data = dict(colour_variance=args.variance, seed=args.seed, kim_reconstruction="estimated")
    train = coloured_mnist("kim", "train", subsample=args.subsample, **data)
    test = coloured_mnist("kim", "test", subsample=args.test_subsample, **data)
    machine = {"threads": torch.get_num_threads(), "cpu": platform.processor()}

    def emit(line: dict) -> None:
        print(json.dumps(line), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")

    arms = ([("baseline", 0.0, args.baseline_epochs)] if args.baseline_epochs else []) + \
        [("mi", args.mi_weight, args.epochs)]
    for arm, mi_weight, epochs in arms:
        penalised = mi_weight > 0
        schedule = RELEASED_SCHEDULE if penalised else dict(lr=1e-4, batch_size=128, statistics_steps=1,
                                                             warmup_epochs=0, statistics_pass_every_epoch=False)
        hp = MIBackpropHParams(**{**schedule, "mi_weight": mi_weight, "epochs": epochs})
        run = {"arm": arm, "lambda": mi_weight, "colour_variance": args.variance, "seed": args.seed,
               "source": train.info["source"], "reconstruction": "estimated", "train_size": len(train),
               "test_size": len(test), "schedule": "released" if penalised else "adam 1e-4, no T",
               "published_baseline": KIM_PUBLISHED_BASELINE.get(round(args.variance, 3))}
        # fit_mi_backprop's loop, with readings inside the epoch
        config.seed_everything(args.seed)
        model = build_model(train, hp)
        statistics_optimizer = _statistics_adam(model, hp.lr, hp.statistics_lr)
        statistics_step = make_statistics_step(model, statistics_optimizer)
        passes = dict(batch_size=hp.batch_size, device="cpu", progress=False)
        if penalised and hp.warmup_epochs:
            fit(model, train, statistics_step, epochs=hp.warmup_epochs, **passes)
        step = make_mi_step(model, hp, statistics_data=train if penalised else None,
                            statistics_optimizer=statistics_optimizer)
        per_epoch = train.num_batches(hp.batch_size, drop_last=True)
        updates, start, sums = 0, time.perf_counter(), {}

        def read(epoch: float) -> None:
            nonlocal sums
            means = {key: round(float(value) / count, 4) for key, (value, count) in sums.items()}
            emit({**run, "epoch": round(epoch, 3), "updates": updates,
                  "test_accuracy": round(metrics.accuracy(test.y, predict(model, test)), 4),
                  **{f"train_{key}": value for key, value in means.items()},
                  "seconds": round(time.perf_counter() - start, 1)})
            sums = {}

        for epoch in range(epochs):
            model.train()
            for batch in train.batches(hp.batch_size, shuffle=True, drop_last=True):
                terms = step(batch)
                updates += 1
                for key in ("ce", "mi", "accuracy"):
                    value, count = sums.get(key, (0.0, 0))
                    sums[key] = (value + float(terms[key]), count + 1)
                if updates % args.read_every == 0 and updates % per_epoch:
                    read(updates / per_epoch)
            read(epoch + 1)
            if penalised and hp.statistics_pass_every_epoch:
                fit(model, train, statistics_step, epochs=1, **passes)
        emit({**run, "final": True, "epochs": epochs, **machine,
              "seconds_per_epoch": round((time.perf_counter() - start) / epochs, 1)})


if __name__ == "__main__":
    main()
