"""The chapters' settings per profile, as data: the one place a chapter, the command line and the benchmarks read
them from.

``protocol(chapter)`` gives one chapter's settings for the active profile (``FAIRLAB_PROFILE``; ``profile=``
overrides it). Chapters: ``data_lies`` (1), ``mi_backprop`` (2), ``null_sampling`` (3), ``signal_is_harder`` (4),
``fair_latent_space`` (5, per data set). ``full`` is the paper's protocol (meant for a GPU); ``quick`` is sized by
measurement so that each chapter runs in minutes on a 2-core CPU and still shows its method working (the
measurements are in ``benchmarks/results/``).

``cli_defaults(method, dataset)`` says which of those settings the command line uses for a method on a data set:
``python -m fairlab run M`` fills every option the user left unset from it, then from the method's ``HParams``.

A method's hyperparameters keep the paper's defaults in its ``HParams``; a protocol lists only what a chapter
changes. Two values are looked up when the protocol is read: ``"auto"`` for ``bf16`` (on where the device is a
GPU) and chapter 2's ``game`` (``fit_mi_backprop``'s own defaults or ``RELEASED_SCHEDULE``, so neither can drift).
"""
from __future__ import annotations

import copy

from fairlab import config

# options of the MI game every chapter-2 arm shares; their values are MIBackpropHParams' defaults
GAME_OPTIONS = ("lr", "statistics_steps", "statistics_batches", "statistics_pass_every_epoch", "mi_update",
                "batch_size")


def _fls(quick: bool) -> dict:
    """Chapter 5's settings for one profile, per data set (module, classifier and judge shared)."""
    def pick(q, f):
        return q if quick else f

    classifier = {"hidden": (64,), "epochs": pick(6, 20), "lr": 1e-3, "batch_size": 256}
    judge = {"hidden": (128,), "epochs": pick(3, 10), "lr": 1e-3, "batch_size": 256}
    erm = {"epochs": pick(6, 20), "batch_size": 256}  # plain ERM (METHODS["erm"]) on the same training set
    module = {"label_dims": 2, "sensitive_dims": 2, "blocks": pick(4, 8), "width": 128, "depth": 2,
              "adversary_width": 64, "adversaries": 2, "mean_distance": 4.0, "independence_weight": 1.0,
              "redistribution_weight": 1.0, "epochs": pick(12, 40), "batch_size": pick(256, 2048), "lr": 3e-3}
    return {
        "cmnist-binary": {
            # P(s = y) 0.98 in training, where plain ERM visibly learns the colour; a test set in which colour and
            # label are independent (1,000 images in each cell (y, s) in the quick profile)
            "data": {"correlation": 0.98, "test_correlation": 0.5, "train_size": pick(8_000, None),
                     "test_size": pick(4_000, None)},
            # quick: 10 generator epochs (5 before): with the sharper decoder, moving w_S changed the judged digit
            # for 0.071-0.091 of the images on seeds 0-4 (0.063-0.103 with 5 epochs), the judges' digit accuracy on
            # reconstructions rose from 0.82-0.85 to 0.85-0.90 (benchmarks/results/fls_quick_margins_cpu_2026-12-04.txt)
            "generator": {"latent_dim": 16, "channels": (16, 32), "hidden": 128, "beta": 1.0,
                          "epochs": pick(10, 40), "batch_size": pick(64, 256), "lr": pick(2e-3, 5e-3)},
            # one coordinate each for w_Y and w_S: no room in w_Y for a second, colour-sorting coordinate; the
            # counterfactual terms (ours): with the five-epoch generator, without them moving w_S recoloured
            # 0.10-0.98 of the images by seed and changed the judged digit for 0.07-0.22; with them 0.997-1.000 and
            # 0.063-0.103 on seeds 0-4, where the true recolouring, encoded and decoded, changes it for 0.070-0.116;
            # the module trains in about twice the time (benchmarks/results/fls_cf_search_cpu_2026-12-04.txt)
            "module": {**module, "label_dims": 1, "sensitive_dims": 1, "epochs": pick(24, 40),
                       "sensitive_alignment": True, "counterfactual_weight": 1.0,
                       "counterfactual_keep_weight": 3.0, "counterfactual_label_weight": 5.0,
                       "counterfactual_label_samples": 32, "counterfactual_probe_epochs": 8},
            "classifier": classifier, "judge": judge, "erm": erm,
        },
        "adult": {
            "data": {"train_size": None, "test_size": pick(8_000, None)},
            # a 16-dimensional latent, four adversaries of width 128 and an independence weight of 3: the classifier
            # on w_Y then had a lower equalised odds gap and demographic parity gap than plain ERM on seeds 0-4, at
            # 2.7-3.5 points of accuracy (one thread; the EO margins, 0.010-0.043, are within thread noise); with a
            # latent of 10, two adversaries of 64 and weight 1: lower EO on two seeds in five. None of the 29
            # settings tried reached a DP gap of 0.6 of ERM's with a better worst group
            # (benchmarks/results/fls_adult_search_cpu_2026-12-04.txt, measured in the quick profile)
            "generator": {"latent_dim": 16, "hidden": (128, 128), "beta": 1.0, "epochs": pick(5, 40),
                          "batch_size": 256, "lr": 1e-3},
            "module": {**module, "epochs": pick(10, 60), "independence_weight": 3.0, "adversaries": 4,
                       "adversary_width": 128},
            "classifier": classifier, "judge": judge, "erm": erm,
        },
        "celeba": {  # 64x64
            "data": {"train_size": pick(2_000, None), "test_size": pick(1_000, 10_000)},
            "generator": {"latent_dim": 64, "channels": (32, 64, 128, 256), "hidden": 512, "beta": 1.0,
                          "epochs": pick(2, 20), "batch_size": 256, "lr": 1e-3},
            "module": {**module, "label_dims": 4, "sensitive_dims": 4},
            "classifier": classifier, "judge": judge, "erm": erm,
        },
    }


PROTOCOLS = {
    # chapter 1: the plain model on LfF's Coloured MNIST and on Adult
    "data_lies": {
        "quick": dict(subsample=6_000, epochs=2, sweep_epochs=2, sweep_ratios=[0.005, 0.02, 0.1, 0.5],
                      adult_epochs=2),
        "full": dict(subsample=None, epochs=5, sweep_epochs=2,
                     sweep_ratios=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5], adult_epochs=10),
    },
    # chapter 2 on our reconstruction of Kim's Coloured MNIST (kim_reconstruction="estimated", the default; the
    # authors' files where they are installed). quick: the MI method's defaults (lr 1e-4, a T pass every epoch, two
    # Adams, k = 10 T steps on the current batch), 4,000 training images, 4 epochs, sigma^2 0.020 and 0.040, sized so
    # that lambda = 1 beats lambda = 0 on the random-colour test set (on this reconstruction by 5-27 points on seeds
    # 0-2, benchmarks/results/quick_margins_mi_cpu_2026-12-03.txt). full: the released code's schedule
    # (RELEASED_SCHEDULE: the CE step, then the clipped MI step at the new weights, 40 T steps on the epoch's first
    # 40 batches), all 60,000 images, 100 epochs with the test accuracy recorded after each, one seed: hours on a GPU
    # (one epoch is about 25 minutes on one CPU thread, benchmarks/results/mi_released_cpu_2026-12-03.jsonl).
    "mi_backprop": {
        "quick": dict(subsample=4000, test_subsample=1000, epochs=4, variances=(0.020, 0.040), seeds=(0,),
                      sweep_lambdas=(3.0,), adult_epochs=3, game="defaults"),
        "full": dict(subsample=None, test_subsample=None, epochs=100, variances=(0.020, 0.030, 0.040, 0.050),
                     seeds=(0,), sweep_lambdas=(3.0,), adult_epochs=20, game="released"),
    },
    # chapter 3: full is the published protocol; quick is sized to run in minutes on 2 CPU cores
    "null_sampling": {
        "quick": dict(
            representative=6_000, train=6_000, test=3_000,  # images kept (None: all)
            # one level instead of three, so that z_b (the last 8 of the 12 channels after the squeeze, 2,048 of the
            # 3,072 dimensions instead of 6) can hold each pixel's colour; a small flow (2 blocks of width 32), the
            # adversaries as strong as the cVAE's, 12,000 steps (about 1 h on one CPU thread): that run is shipped
            # (fairlab/checkpoints, made by benchmarks/ship_cflow.py) and loaded; without it the chapter trains the
            # same flow for 470 steps (about a minute), which removes little colour
            # (benchmarks/results/ns_quick_search_cpu_2026-12-03.jsonl)
            cflow=dict(levels=1, blocks=2, width=32, bias_dims=2048, iterations=12_000, batch_size=64, lr=1e-3,
                       w_adv=1.0, adversaries=3, adversary_width=256, adversary_lr=0.01),
            cflow_shipped=dict(colour_variance=0.02, seed=0, fallback_iterations=470),
            # fully connected in place of the gated convolutions (better than small gated-conv ones in our CPU runs
            # and several times cheaper); about 1,900 steps instead of ~9,400, for which the published beta = 0.01,
            # w_adv = 1 let the colour through: a stronger KL, a stronger push, and three adversaries of width 256
            # that learn at 0.01 (ours), so that they keep up with the encoder
            # (benchmarks/results/ns_quick_search_cpu_2026-12-03.jsonl)
            cvae=dict(architecture="mlp", channels=256, latent_channels=32, epochs=20, batch_size=64, lr=3e-3,
                      beta=0.1, w_adv=5.0, adversaries=3, adversary_width=256, adversary_lr=0.01),
            # the published classifier's kind (a CNN, ours: DownstreamCNN) at width 8, for 4 epochs
            downstream=dict(architecture="conv", width=8, epochs=4, lr=1e-3, batch_size=64),
            variances=(0.02, 0.05), cflow_variances=(0.02, 0.05), seeds=(0,),
            adult=dict(etas=(0.0, 0.5, 1.0),
                       cflow=dict(blocks=4, width=64, bias_dims=2, iterations=300, lr=1e-3, adversary_width=64),
                       cvae=dict(channels=64, latent_channels=16, epochs=5, adversary_width=64),
                       downstream=dict(epochs=5)),
            # CelebA 64x64 (s = Male, y = Smiling, eta = 1), read only where the data is installed: a few thousand
            # images and small models, so that a reader who has it sees the protocol run on a CPU in minutes
            celeba=dict(eta=1.0, representative=4_000, train=2_000, test=2_000,
                        cflow=dict(levels=3, blocks=2, width=32, bias_dims=12, iterations=300, batch_size=64,
                                   lr=1e-3, w_adv=0.01, adversaries=2, adversary_width=64),
                        cvae=dict(architecture="conv", levels=4, channels=8, latent_channels=16, epochs=3,
                                  batch_size=64, lr=1e-3, beta=0.01, w_adv=1.0, adversaries=2, adversary_width=64),
                        downstream=dict(architecture="conv", width=8, epochs=3, lr=1e-3, batch_size=64)),
        ),
        "full": dict(
            representative=None, train=None, test=None,
            # float32 in NCHW: a step took 131 ms this way on one H200, 145 ms with bf16, 168 ms with bf16 in NHWC
            # (eager PyTorch, launch-bound: about 6,300 kernel launches a step;
            # benchmarks/results/gpu_h200_2026-12-04.txt)
            cflow=dict(levels=3, blocks=24, width=512, bias_dims=6, iterations=26_000, batch_size=256, lr=3e-4,
                       w_adv=0.01, adversaries=3, adversary_width=512, bf16=False, channels_last=False),
            cvae=dict(levels=4, channels=32, latent_channels=64, epochs=50, batch_size=128, lr=1e-3, beta=0.01,
                      w_adv=1.0, adversaries=3, adversary_width=512, bf16="auto"),
            downstream=dict(architecture="conv", epochs=40, lr=1e-3, batch_size=256, width=32, bf16="auto"),
            # one seed: at the rate measured on one H200 the cFlow's schedule alone would take about an hour
            variances=(0.0, 0.01, 0.02, 0.03, 0.04, 0.05), cflow_variances=(0.02,), seeds=(0,),
            adult=dict(etas=(0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
                       cflow=dict(blocks=8, width=256, bias_dims=2, iterations=5_000, lr=1e-3, adversary_width=64),
                       cvae=dict(channels=64, latent_channels=16, epochs=50, adversary_width=64),
                       downstream=dict(epochs=40)),
            # CelebA: the brief gives K = 32 blocks per level, |z_b| = 12 and 10 adversaries; the number of levels,
            # the coupling width, the schedule and the cVAE's depth on 64x64 are not given: ours are those of the
            # Coloured MNIST models (levels 3, width 512, RAdam 3e-4; a gated-conv cVAE of 4 levels, latent 4x4)
            celeba=dict(eta=1.0, representative=None, train=None, test=None,
                        cflow=dict(levels=3, blocks=32, width=512, bias_dims=12, iterations=26_000, batch_size=256,
                                   lr=3e-4, w_adv=0.01, adversaries=10, adversary_width=512, bf16="auto"),
                        cvae=dict(architecture="conv", levels=4, channels=32, latent_channels=64, epochs=50,
                                  batch_size=128, lr=1e-3, beta=0.01, w_adv=1.0, adversaries=10,
                                  adversary_width=512, bf16="auto"),
                        downstream=dict(architecture="conv", width=32, epochs=40, lr=1e-3, batch_size=256,
                                        bf16="auto")),
        ),
    },
    # chapter 4: full is the published protocol (all 60,000 images, rho 0.5-5%, 3 seeds, batches of 256; SiH to
    # early stopping, at most 500 epochs; vanilla and LfF 100 epochs). quick: 10,000 images, rho 1% and 2%,
    # batches of 128 for every method, vanilla 5 / LfF 10 / SiH 15 epochs, chosen so that both debiasing methods
    # beat vanilla on the conflicting images for each of seeds 0-4 within minutes on a CPU
    # (benchmarks/results/quick_margins_sih_cpu_2026-11-24.txt).
    "signal_is_harder": {
        "quick": dict(ratios=(0.01, 0.02), seeds=(0,), subsample=10_000, batch_size=128, vanilla_epochs=5,
                      lff_epochs=10, sih_epochs=15),
        "full": dict(ratios=(0.005, 0.01, 0.02, 0.05), seeds=(0, 1, 2), subsample=None, batch_size=256,
                     vanilla_epochs=100, lff_epochs=100, sih_epochs=500),
    },
    # chapter 5: per data set; keys data, generator, module (the method's hyperparameters), classifier (the
    # x / z / w_Y comparison) and judge (the independent attribute classifiers)
    "fair_latent_space": {"quick": _fls(True), "full": _fls(False)},
    # chapter 6: every method on one protocol, per data set (fairlab.experiments.comparison): LfF's Coloured MNIST at
    # two bias strengths (a representative set of random-colour images for null-sampling) and Adult on
    # null-sampling's partition. "hparams" are each method's settings there (what is not given: its paper's).
    # quick: 4,000 biased images, rho 2% and 5% (at 1%, 40 conflicting images, LfF fell behind ERM's worst group
    # on one seed in four), two seeds, short schedules: LfF and the cVAE beat ERM on the worst group and the
    # conflicting images on seeds 0-3 with one thread (with two, the cVAE's worst group at 5% fell below ERM's on
    # seed 1: the chapter checks it on average over seeds); SiH, MI and cFlow do not at this budget
    # (benchmarks/results/compare_quick_search_cpu_2026-12-04.jsonl; the cVAE's classifier needs 8 epochs on the
    # null-samples for that: at 4, seed 1 at 5% was 1.4 points short of ERM's worst group). full: the methods near
    # their papers' scale on a GPU (not yet run).
    "comparison": {
        "quick": {
            "cmnist": dict(
                ratios=(0.02, 0.05), seeds=(0, 1), probe_size=2_000,
                sizes=dict(train=4_000, representative=2_000, test=None),
                methods=("erm", "lff", "sih", "mi", "cvae", "cflow"),
                hparams=dict(
                    erm=dict(epochs=5, batch_size=128), lff=dict(epochs=10, batch_size=128),
                    sih=dict(epochs=6, batch_size=128),
                    # MI on ERM's network (LfF's MLP, our option) and schedule, so the rows differ by the penalty
                    # alone; the paper's CNN learnt less in the same time (benchmarks/results/compare_quick_search_*)
                    mi=dict(encoder="mlp", z_dim=100, epochs=5, batch_size=128, warmup_epochs=0, lr=1e-3,
                            statistics_steps=2, statistics_pass_every_epoch=False),
                    cvae=dict(architecture="mlp", channels=256, latent_channels=32, epochs=20, batch_size=64,
                              lr=3e-3, beta=0.1, w_adv=5.0, adversaries=3, adversary_width=256,
                              adversary_lr=0.01, downstream_epochs=8, downstream_width=8,
                              downstream_batch_size=64),
                    cflow=dict(levels=2, blocks=2, width=16, bias_dims=6, iterations=100, batch_size=64, lr=1e-3,
                               adversaries=1, adversary_width=64, downstream_epochs=4, downstream_width=8,
                               downstream_batch_size=64),
                ),
            ),
            "adult": dict(
                eta=0.5, seeds=(0, 1), probe_size=4_000,
                sizes=dict(train=8_000, representative=None, test=None),
                methods=("erm", "lff", "sih", "mi", "cvae", "cflow", "fls"),
                hparams=dict(
                    erm=dict(epochs=3, batch_size=256), lff=dict(epochs=3, batch_size=256),
                    sih=dict(epochs=5, batch_size=256),
                    mi=dict(epochs=3, lr=1e-3, statistics_steps=2, statistics_pass_every_epoch=False),
                    cvae=dict(channels=64, latent_channels=16, epochs=5, adversary_width=64, downstream_epochs=5),
                    cflow=dict(blocks=4, width=64, bias_dims=2, iterations=300, lr=1e-3, adversary_width=64,
                               downstream_epochs=5),
                    fls="fair_latent_space",  # chapter 5's settings on Adult
                ),
            ),
        },
        "full": {
            "cmnist": dict(
                ratios=(0.005, 0.01, 0.02, 0.05), seeds=(0, 1, 2), probe_size=None,
                sizes=dict(train=None, representative=10_000, test=None),
                methods=("erm", "lff", "sih", "mi", "cvae", "cflow"),
                hparams=dict(
                    erm=dict(epochs=100, batch_size=256), lff=dict(epochs=100, batch_size=256),
                    sih=dict(epochs=500, batch_size=256), mi=dict(epochs=20),
                    cvae=dict(architecture="conv", levels=2, channels=32, latent_channels=64, epochs=50,
                              batch_size=128, bf16="auto", downstream_epochs=40),
                    # float32 NCHW, as chapter 3's full profile (the faster on one H200)
                    cflow=dict(levels=2, blocks=24, width=512, bias_dims=6, iterations=26_000, batch_size=256,
                               lr=3e-4, bf16=False, channels_last=False, downstream_epochs=40),
                ),
            ),
            "adult": dict(
                eta=0.5, seeds=(0, 1, 2), probe_size=None,
                sizes=dict(train=None, representative=None, test=None),
                methods=("erm", "lff", "sih", "mi", "cvae", "cflow", "fls"),
                hparams=dict(
                    erm=dict(epochs=20, batch_size=256), lff=dict(epochs=20, batch_size=256),
                    sih=dict(epochs=100, batch_size=256), mi=dict(epochs=20),
                    cvae=dict(channels=64, latent_channels=16, epochs=50, adversary_width=64, downstream_epochs=40),
                    cflow=dict(blocks=8, width=256, bias_dims=2, iterations=5_000, lr=1e-3, adversary_width=64,
                               downstream_epochs=40),
                    fls="fair_latent_space",
                ),
            ),
        },
    },
}

CHAPTERS = tuple(PROTOCOLS)


def protocol(chapter: str, profile: str | None = None, *, dataset: str | None = None) -> dict:
    """One chapter's settings for the active profile (``profile`` overrides it), a fresh copy the caller may change.

    ``dataset`` picks the data set's settings where a chapter has several (``fair_latent_space``).
    """
    if chapter not in PROTOCOLS:
        raise ValueError(f"no protocol named {chapter!r}; the chapters' protocols are {', '.join(CHAPTERS)}.")
    settings = copy.deepcopy(config.by_profile(**PROTOCOLS[chapter], name=profile))
    if chapter == "fair_latent_space":
        if dataset is None:
            return settings
        if dataset not in settings:
            raise ValueError(f"dataset must be one of {tuple(settings)}, got {dataset!r}.")
        return settings[dataset]
    if dataset is not None:
        raise ValueError(f"the {chapter} protocol has no per-data-set settings (dataset={dataset!r}).")
    if settings.get("game") in ("defaults", "released"):  # chapter 2: the method's defaults, or the released code's
        from fairlab.methods.mi_backprop import RELEASED_SCHEDULE, MIBackpropHParams

        game = MIBackpropHParams(**(RELEASED_SCHEDULE if settings["game"] == "released" else {}))
        settings["game"] = {key: getattr(game, key) for key in GAME_OPTIONS}
    return _resolve_auto(settings)


def _resolve_auto(value):
    """``bf16="auto"`` -> on where the device is a GPU (bf16 autocast pays there, not on a CPU)."""
    if isinstance(value, dict):
        return {k: (config.device().type == "cuda" if (k == "bf16" and v == "auto") else _resolve_auto(v))
                for k, v in value.items()}
    return value


def cli_defaults(method: str, dataset: str, profile: str | None = None) -> dict:
    """What the command line fills, for ``python -m fairlab run <method> --dataset <dataset>``, into the options
    the user left unset: hyperparameters by their field names, and the data options ``subsample`` and
    ``representative_subsample``. What is not here comes from the method's ``HParams`` (the paper's)."""
    if method in ("erm", "lff", "sih") and (method != "erm" or dataset == "cmnist-lff"):
        # chapter 4's protocol: epochs, batch size and, on LfF's Coloured MNIST, the training subset
        chapter = protocol("signal_is_harder", profile)
        epochs = {"erm": "vanilla_epochs", "lff": "lff_epochs", "sih": "sih_epochs"}[method]
        values = {"epochs": chapter[epochs], "batch_size": chapter["batch_size"]}
        if dataset == "cmnist-lff":
            values["subsample"] = chapter["subsample"]
        return values
    if method == "erm" and dataset == "celeba":  # the raw-data baseline of chapter 3's CelebA table
        where = protocol("null_sampling", profile)["celeba"]
        return {"subsample": where["train"], "test_subsample": where["test"], "epochs": where["downstream"]["epochs"],
                "batch_size": where["downstream"]["batch_size"], "architecture": "conv"}
    if method == "erm":
        return {"epochs": config.by_profile(quick=3, full=100, name=profile), "batch_size": 256}
    if method == "mi":
        chapter = protocol("mi_backprop", profile)
        values = {**chapter["game"], "epochs": chapter["epochs"]}
        if dataset == "cmnist-kim":
            values["subsample"] = chapter["subsample"]
        return values
    if method in ("cflow", "cvae"):
        chapter = protocol("null_sampling", profile)
        where = chapter[dataset] if dataset in ("adult", "celeba") else chapter
        values = {**where[method], **{f"downstream_{k}": v for k, v in where["downstream"].items()
                                      if k != "bf16"}}
        if dataset != "adult":
            values["representative_subsample"] = where["representative"]
        if method == "cflow" and "cflow_shipped" in where and dataset not in ("adult", "celeba"):
            # the command line trains: the chapter's flow for the steps it trains when no weights are shipped
            values["iterations"] = where["cflow_shipped"]["fallback_iterations"]
        if dataset == "celeba":
            values.update(subsample=where["train"], test_subsample=where["test"])
        return values
    if method == "fls":
        chapter = protocol("fair_latent_space", profile, dataset=dataset)
        values = dict(chapter["module"])
        values.update({f"classifier_{k}": v for k, v in chapter["classifier"].items()})
        values["generator"] = chapter["generator"]
        values["subsample"] = chapter["data"]["train_size"]
        for key in ("correlation", "test_correlation"):
            if key in chapter["data"]:
                values[key] = chapter["data"][key]
        return values
    return {}
