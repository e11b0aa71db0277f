"""One module per method. Each exposes ``fit_*`` for notebooks and ``add_cli_arguments`` / ``cli_run`` for
``python -m fairlab run <method>``.

``cli_run(args, train, test) -> (test_predictions, extras)`` trains on ``train`` as the arguments say and returns the
hard predictions on ``test`` plus method-specific numbers for the JSON line.
"""
METHODS = {
    "cflow": "fairlab.methods.null_sampling",
    "cvae": "fairlab.methods.null_sampling",
    "erm": "fairlab.methods.erm",
    "fls": "fairlab.methods.fair_latent_space",
    "lff": "fairlab.methods.lff",
    "mi": "fairlab.methods.mi_backprop",
    "sih": "fairlab.methods.sih",
}
