"""Fair latent space: the cost claim, measured. Seconds to train the
generator against seconds to train the module, per data set, with the
x / z / w_Y table of the run (one JSON line per data set and seed).

    python benchmarks/bench_fls.py [--datasets cmnist-binary adult]
                                   [--seeds 0 1 2]

The generator is trained afresh here (never loaded: the point is its
training time) and nothing is written to the checkpoint folders. Sizes
and epochs follow FAIRLAB_PROFILE (``full`` by default: the chapter's
full profile, for a GPU). The table has plain ERM on the same training
set (``settings["erm"]``) beside the classifiers on x, z and w_Y; the
margins over seeds are ``benchmarks/fls_margins.py``.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from fairlab import config, pretrained
from fairlab.experiments import fair_latent_space as fls_exp
from fairlab.methods import fair_latent_space as fls


def bench(dataset: str, seed: int) -> dict:
    settings = fls_exp.chapter_settings(dataset)
    device = config.device()
    start = time.perf_counter()
    train = fls_exp.load_data(dataset, "train", seed=seed, settings=settings)
    test = fls_exp.load_data(dataset, "test", seed=seed, settings=settings)
    load_seconds = time.perf_counter() - start
    config.seed_everything(0)
    generator = pretrained.build_generator(train, settings["generator"])
    generator_seconds = pretrained.train_generator(
        generator, train, settings["generator"], device=device)
    pretrained.freeze(generator)
    train_z = pretrained.encode(generator, train)
    test_z = pretrained.encode(generator, test)
    module, history, module_seconds = fls.fit_module(
        train_z, seed=seed, device=device, decoder=generator,
        **settings["module"])
    sets = {"x": (train, test), "z": (train_z, test_z),
            "w_Y": (fls.label_part(module, train_z),
                    fls.label_part(module, test_z))}
    classifiers = {"ERM": fls_exp.fit_erm(train, settings["erm"],
                                          seed=seed, device=device)}
    classifiers.update({n: fls.fit_classifier(tr, settings["classifier"],
                                              seed=seed, device=device)
                        for n, (tr, _) in sets.items()})
    table = fls_exp.representation_table(
        {"ERM": test, **{n: te for n, (_, te) in sets.items()}},
        classifiers)
    error = fls_exp.reconstruction_error(generator, test).mean().item()
    return {
        "dataset": dataset, "seed": seed, "profile": config.profile(),
        "device": pretrained.device_name(device),
        "train_size": len(train), "test_size": len(test),
        "generator_epochs": settings["generator"]["epochs"],
        "module_epochs": settings["module"]["epochs"],
        "load_seconds": round(load_seconds, 2),
        "generator_seconds": round(generator_seconds, 2),
        "module_seconds": round(module_seconds, 2),
        "module_seconds_per_epoch": round(
            module_seconds / settings["module"]["epochs"], 3),
        "reconstruction_mse": round(error, 5),
        "inversion_error": fls_exp.inversion_error(module, test_z),
        "table": {r: {c: round(float(v), 4) for c, v in row.items()}
                  for r, row in table.iterrows()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["cmnist-binary", "adult"],
                        choices=fls.METHOD.datasets)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    print(config.run_info(), flush=True)
    for dataset in args.datasets:
        for seed in args.seeds:
            print(json.dumps(bench(dataset, seed)), flush=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
