"""How robust is each chapter's quick-profile effect? The method's margin over its baseline, per seed.

    FAIRLAB_DATA=... python benchmarks/quick_margins.py sih --seeds 0 1 2 3 4 > benchmarks/results/quick_margins_sih.txt

sih: chapter 4's quick protocol (``sih.chapter_protocol("quick")``: 10,000 images, rho 1% and 2%, vanilla 5 / LfF 10
/ SiH 20 epochs) once per seed;
prints the bias-conflicting test accuracy of vanilla, LfF and SiH and the margins LfF - vanilla and SiH - vanilla.
The chapter asserts SiH > vanilla at every ratio it shows; this prints how wide that is on each seed.
"""
from __future__ import annotations

import argparse
import time

import torch

from fairlab import config
from fairlab.methods import sih

def sih_margins(seeds, device) -> None:
    settings = sih.chapter_protocol("quick")
    ratios, _ = settings.pop("ratios"), settings.pop("seeds")
    start = time.perf_counter()
    runs, _ = sih.compare_methods(ratios, seeds, device=device, **settings)
    table = runs.pivot_table(index=["rho", "seed"], columns="method", values="conflicting_accuracy") * 100
    table["lff - vanilla"] = table["lff"] - table["vanilla"]
    table["sih - vanilla"] = table["sih"] - table["vanilla"]
    print(f"conflicting test accuracy (%), chapter 4 quick protocol {sih.chapter_protocol('quick')}")
    print(table.round(2).to_string())
    print(f"smallest SiH margin {table['sih - vanilla'].min():.2f} points, smallest LfF margin "
          f"{table['lff - vanilla'].min():.2f}; {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("method", choices=("sih",))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else config.device()
    print(config.run_info())
    sih_margins(args.seeds, device)


if __name__ == "__main__":
    main()
