"""Make the cFlow that chapter 3's quick profile loads: train it on the chapter's representative split with the
profile's settings, and write its weights to ``fairlab/checkpoints`` (about an hour on one CPU thread).

    OMP_NUM_THREADS=1 FAIRLAB_PROFILE=quick python benchmarks/ship_cflow.py [--out PATH] [--from MODEL.pt]

``--from``: instead of training, take a cFlow already trained by exactly that call and saved whole with
``torch.save`` (``benchmarks/ns_quick_search.py cflow '<the profile's cflow settings>' --save MODEL.pt``); only
the flow's weights are kept. Prints the checkpoint's path and size, and the colour probe on test null-samples.
"""
from __future__ import annotations

import argparse
import time

import torch

from fairlab.experiments import null_sampling as ns_exp
from fairlab.methods.null_sampling import fit_cflow
from fairlab.protocols import protocol


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="where to write (default: the package's checkpoint)")
    parser.add_argument("--from", dest="source", default=None, help="a whole cFlow saved by torch.save")
    parser.add_argument("--seconds", type=float, default=None, help="with --from: what training it took")
    args = parser.parse_args(argv)
    cfg = protocol("null_sampling")
    where = cfg["cflow_shipped"]
    splits = ns_exp.cmnist_splits(where["colour_variance"], where["seed"])
    start = time.perf_counter()
    if args.source:  # a file we made ourselves with the same call; it holds a pickled module, not only tensors
        model = torch.load(args.source, weights_only=False, map_location="cpu")
    else:
        model, _ = fit_cflow(splits["representative"], seed=where["seed"], **cfg["cflow"])
    seconds = args.seconds if args.source and args.seconds else time.perf_counter() - start
    path = ns_exp.save_shipped_cflow(model.cpu(), seconds, path=args.out)
    loaded = ns_exp.load_shipped_cflow(splits["test"]) if args.out is None else model.eval()
    probe = ns_exp.colour_probe(ns_exp.null_sample_dataset(loaded, splits["test"]))
    print(f"{path} ({path.stat().st_size / 2**20:.2f} MiB); colour probe on test null-samples {probe:.3f} "
          f"(originals: {ns_exp.colour_probe(splits['test']):.3f})")


if __name__ == "__main__":
    main()
