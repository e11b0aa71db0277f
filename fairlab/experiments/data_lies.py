"""Chapter 1's experiment: the plain model trained at each bias-conflicting ratio."""
from __future__ import annotations

import pandas as pd
import torch

from fairlab import config, metrics
from fairlab.data import coloured_mnist
from fairlab.methods.erm import fit_erm
from fairlab.train import predict


def sweep_bias_conflicting_ratio(
    ratios, *, epochs: int, subsample: int | None = None, seed: int = 0, device=None,
    return_predictions: bool = False,
):
    """Train the baseline on Coloured MNIST (lff) at each rho; one row of test metrics per rho (index "rho").

    With ``return_predictions=True`` also returns ``{rho: predicted labels on the lff test set}`` (CPU tensors), to
    see *what* each model reads, e.g. with ``viz.reads_digit_or_colour``.
    """
    device = torch.device(device) if device is not None else config.device()
    test = coloured_mnist("lff", "test").to(device)
    rows, predictions = {}, {}
    for rho in ratios:
        train = coloured_mnist("lff", "train", bias_conflicting_ratio=rho, subsample=subsample, seed=seed)
        model, _ = fit_erm(train, epochs=epochs, seed=seed, device=device, progress=False)
        pred = predict(model, test)  # on the test set's device, like test.y
        rows[rho] = metrics.summary(test.y, pred, sensitive_features=test.group, aligned=test.aligned)
        predictions[rho] = pred.cpu()
    frame = pd.DataFrame(rows).T.rename_axis("rho")
    return (frame, predictions) if return_predictions else frame
