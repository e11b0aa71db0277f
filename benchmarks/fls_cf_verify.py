"""Chapter 5: the counterfactual-consistency terms as implemented in fairlab/methods/fair_latent_space.py (FLSHParams
sensitive_alignment, counterfactual_*), measured with fls_margins.measure on binary Coloured MNIST.

``run_experiment`` calls ``fit_module`` without the frozen decoder, which the label term needs; this script hands it
over (the generator ``run_experiment`` loads) without touching the package.

    OMP_NUM_THREADS=1 FAIRLAB_CHECKPOINTS=<scratch> python benchmarks/fls_cf_verify.py SEEDS '{"module": {...}}'
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("FAIRLAB_PROFILE", "quick")
from fairlab.experiments import fair_latent_space as fls_exp  # noqa: E402

KEYS = ["w_Y_eo", "ERM_eo", "w_Y_worst_group_accuracy", "ERM_worst_group_accuracy", "w_Y_accuracy",
        "rec_flip_s_s_change", "rec_flip_s_y_change", "rec_move_y_y_change", "module_seconds",
        "flip_s_s_change", "flip_s_y_change", "rec_move_r_y_change"]
HELD = {}
_pretrained, _fit_module = fls_exp.pretrained_generator, fls_exp.fit_module


def pretrained_generator(*args, **kw):
    generator = _pretrained(*args, **kw)
    HELD["decoder"] = generator.model
    return generator


def fit_module(latents, hp=None, **kw):
    return _fit_module(latents, hp, decoder=HELD.get("decoder"), **kw)


def main():
    seeds = [int(a) for a in sys.argv[1].split(",")]
    sets = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    fls_exp.pretrained_generator, fls_exp.fit_module = pretrained_generator, fit_module
    import fls_margins as M
    for seed in seeds:
        row = M.measure("cmnist-binary", seed, sets)
        print(json.dumps({"seed": seed, "sets": sets, **{k: row[k] for k in KEYS}, "seconds": row["seconds"]}),
              flush=True)


if __name__ == "__main__":
    main()
