"""One module per method, each behind one record (``fairlab.methods.base.Method``), found by name in ``METHODS``.

    from fairlab.methods import METHODS
    erm = METHODS["erm"]
    model, history = erm.fit(train, erm.hp(epochs=5), seed=0)
    erm.predict(model, test), erm.representation(model, test)

The command line (``python -m fairlab run <name>``) builds each method's options from its ``hparams``.
"""
from fairlab.methods import erm, fair_latent_space, lff, mi_backprop, null_sampling, sih
from fairlab.methods.base import Method, fit_runs

METHODS: dict[str, Method] = {
    record.name: record
    for record in (erm.METHOD, lff.METHOD, sih.METHOD, mi_backprop.METHOD, null_sampling.CVAE_METHOD,
                   null_sampling.CFLOW, fair_latent_space.METHOD)
}

__all__ = ["METHODS", "Method", "fit_runs"]
