"""Time the null-sampling models: training steps per second, seconds, bits per dimension, downstream accuracy.

    python benchmarks/bench_null_sampling.py                              # cFlow, the profile's schedule
    python benchmarks/bench_null_sampling.py --iterations 500 --bf16      # a short timing run
    python benchmarks/bench_null_sampling.py --model cvae --epochs 5
    python benchmarks/bench_null_sampling.py --max-seconds 300 --cudnn-benchmark on   # the schedule's first 5 min
    python benchmarks/bench_null_sampling.py --max-seconds 20 --downstream-epochs 0 --cuda-graph on   # a timing

Sizes and schedule come from ``null_sampling.settings()`` (``FAIRLAB_PROFILE``; full: 3 levels x 24 blocks x 512,
26,000 steps of 256); the options override them. ``--downstream-epochs 0`` skips the downstream evaluation.
``--max-seconds`` stops training after the epoch in which that many seconds have passed: the learning rate is
constant, so such a run is the schedule's beginning, and ``projected_seconds`` says how long the whole schedule
would take at the steady rate (epochs after the first, which pays for warm-up). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from fairlab import config
from fairlab.experiments import null_sampling as ns_exp
from fairlab.methods import null_sampling as ns
from fairlab.protocols import protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("cflow", "cvae"), default="cflow")
    parser.add_argument("--variance", type=float, default=0.02, help="colour variance")
    parser.add_argument("--iterations", type=int, default=None, help="cflow steps (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=None, help="cvae epochs (default: the profile's)")
    parser.add_argument("--blocks", type=int, default=None, help="cflow blocks per level")
    parser.add_argument("--width", type=int, default=None, help="cflow coupling width")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile the loss")
    parser.add_argument("--cuda-graph", choices=("on", "off"), default=None,
                        help="capture the whole step as one CUDA graph (default: the profile's setting, off)")
    parser.add_argument("--channels-last", choices=("on", "off"), default=None,
                        help="NHWC activations (default: the profile's setting, else on for CUDA)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop training after about this long")
    parser.add_argument("--cudnn-benchmark", choices=("on", "off"), default=None,
                        help="torch.backends.cudnn.benchmark (default: torch's, off)")
    parser.add_argument("--downstream-epochs", type=int, default=None, help="0: skip the downstream classifier")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cfg = protocol("null_sampling")
    options = dict(cfg[args.model])
    for key in ("iterations", "epochs", "blocks", "width", "batch_size"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    if args.cudnn_benchmark is not None:
        torch.backends.cudnn.benchmark = args.cudnn_benchmark == "on"
    if args.max_seconds is not None:
        options["max_seconds"] = args.max_seconds
    planned = options["iterations" if args.model == "cflow" else "epochs"]
    splits = ns_exp.cmnist_splits(args.variance, args.seed)
    device = config.device()
    fit = ns.fit_cflow if args.model == "cflow" else ns.fit_cvae
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    options["bf16"] = options.get("bf16", False) or args.bf16
    if args.channels_last is not None:
        options["channels_last"] = args.channels_last == "on"
    if args.cuda_graph is not None:
        options["cuda_graph"] = args.cuda_graph == "on"
    model, history = fit(splits["representative"], seed=args.seed, device=device, compile=args.compile, **options)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    per_epoch = splits["representative"].num_batches(options["batch_size"], drop_last=True)
    steps = len(history) * per_epoch
    # the first epoch pays for warm-up (allocation, cuDNN's search, compilation): the steady rate leaves it out
    steady = per_epoch / float(history["seconds"].iloc[1:].median() if len(history) > 1 else history["seconds"].iloc[0])
    planned_steps = planned if args.model == "cflow" else planned * per_epoch
    result = {
        "model": args.model, "device": config.run_info().split(" | ")[2].removeprefix("device="),
        "profile": config.profile(), "steps": steps, "planned_steps": planned_steps,
        "out_of_time": bool(history.attrs.get("out_of_time", False)), "batch_size": options["batch_size"],
        "seconds": round(seconds, 1), "steps_per_second": round(steps / seconds, 2),
        "steady_steps_per_second": round(steady, 2), "projected_seconds": round(planned_steps / steady, 1),
        "bf16": options["bf16"], "channels_last": options.get("channels_last"), "compile": args.compile,
        "cuda_graph": options.get("cuda_graph", False), "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if args.model == "cflow":
        result.update(levels=options["levels"], blocks=options["blocks"], width=options["width"],
                      bits_per_dim=round(float(history["bits_per_dim"].iloc[-1]), 4),
                      # every tenth epoch's mean bits/dim, to see how far from converged a shortened run stopped
                      bits_per_dim_curve={int((e + 1) * per_epoch): round(float(v), 4)
                                          for e, v in history["bits_per_dim"].items() if e % 10 == 9 or e == 0})
    else:
        result["reconstruction"] = round(float(history["reconstruction"].iloc[-1]), 2)
    result["adversary_accuracy"] = round(float(history["adversary_accuracy"].iloc[-1]), 3)
    downstream = dict(cfg["downstream"])
    if args.downstream_epochs is not None:
        downstream["epochs"] = args.downstream_epochs
    if downstream["epochs"] > 0:
        start = time.perf_counter()
        downstream["bf16"] = downstream.get("bf16", False) or args.bf16
        evaluation = ns_exp.evaluate(model, splits["train"], splits["test"], seed=args.seed, device=device,
                                 **downstream)
        result.update(downstream_accuracy=round(evaluation["accuracy"], 4), downstream_hgr=round(evaluation["hgr"], 3),
                      downstream_seconds=round(time.perf_counter() - start, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
