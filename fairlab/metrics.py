"""Fairness and debiasing metrics on tensors, arrays or lists.

Every function takes ``(y_true, y_pred, *, sensitive_features)`` like ``fairlearn.metrics`` and returns a plain
Python float (or a pandas object where said). Labels and predictions are hard class ids (``logits.argmax(1)``, not
the logits). Torch tensors may live on any device; they are moved to the CPU once.

===================================  =========================================================================
metric                               what it measures
===================================  =========================================================================
``accuracy``                         P(yhat = y)
``group_accuracies``                 P(yhat = y | g) for every value g of a grouping variable
``worst_group_accuracy``             min over the (y, s) groups that occur of P(yhat = y | y, s)
``aligned_conflicting_accuracy``     accuracy on bias-aligned samples and on bias-conflicting samples
``demographic_parity_difference``    max_g P(yhat=1 | s=g) - min_g P(yhat=1 | s=g)           (0 = parity)
``true_positive_rate_difference``    max_g - min_g of P(yhat=1 | y=1, s=g)                    (equal opportunity)
``true_negative_rate_difference``    max_g - min_g of P(yhat=0 | y=0, s=g)
``equalized_odds_difference``        max(TPR difference, FPR difference)                      (fairlearn's EO)
``hgr_correlation``                  Hirschfeld-Gebelein-Renyi maximal correlation of two discrete variables
``discrete_mutual_information``      I(a; b) in nats of two discrete variables (plug-in)
``probe_accuracy``                   held-out accuracy of a fresh linear classifier reading s from features
``summary`` / ``fairness_report``    the scalars above in one dict / a per-group table
===================================  =========================================================================

Binary or multi-class. Labels are *binary* when every label in ``y_true`` and ``y_pred`` is 0 or 1; the positive
class is then 1, exactly as in fairlearn. Otherwise the group gaps are taken one-vs-rest for every class k that
occurs (the event "yhat = k" in place of "yhat = 1", "y = k" in place of "y = 1") and the largest gap over classes is
returned.

Group rates that are undefined are skipped: a TPR in a group with no positive sample is not a rate. (fairlearn, via
scikit-learn's ``confusion_matrix``, counts it as 0 instead; the two agree whenever every group has both classes.)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

__all__ = [
    "accuracy",
    "aligned_conflicting_accuracy",
    "demographic_parity_difference",
    "discrete_mutual_information",
    "equalized_odds_difference",
    "fairness_report",
    "group_accuracies",
    "hgr_correlation",
    "probe_accuracy",
    "summary",
    "true_negative_rate_difference",
    "true_positive_rate_difference",
    "worst_group_accuracy",
]


# ---------------------------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------------------------
def _to_numpy(values, name: str) -> np.ndarray:
    """A 1-D, non-empty numpy copy of a tensor, array or list."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        hint = " (for logits or scores, pass hard class ids, e.g. logits.argmax(1))" if array.ndim == 2 else ""
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}{hint}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    return array


def _to_labels(values, name: str) -> np.ndarray:
    """Class ids as int64; rejects probabilities and scores, which would silently compare unequal to labels."""
    array = _to_numpy(values, name)
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError(f"{name} holds {int(np.isnan(array).sum())} NaN value(s); every sample needs a class id")
    if array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise ValueError(f"{name} holds non-integer values; pass hard class ids (e.g. logits.argmax(1)), not scores")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    return array.astype(np.int64)


def _to_groups(values, name: str) -> np.ndarray:
    """Group ids (any values that compare equal within a group); a missing value (NaN, None) is refused, never
    counted as a group of its own."""
    array = _to_numpy(values, name)
    if array.dtype.kind == "f":
        missing = int(np.isnan(array).sum())
    elif array.dtype.kind == "O":
        missing = sum(1 for v in array if v is None or v != v)  # v != v: a float NaN among objects
    else:
        missing = 0
    if missing:
        raise ValueError(f"{name} holds {missing} missing value(s) (NaN or None); every sample needs a group. "
                         "Drop those samples or give them a group of their own explicitly.")
    return array


def _check_lengths(**arrays: np.ndarray) -> None:
    (first_name, first), *rest = arrays.items()
    for name, array in rest:
        if len(array) != len(first):
            raise ValueError(
                f"{first_name} and {name} must have the same length, got {len(first)} and {len(array)}"
            )


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, code of each sample in 0..n_values-1)."""
    distinct, codes = np.unique(values, return_inverse=True)
    return distinct, codes.reshape(-1)


def _prepare(y_true, y_pred, sensitive_features):
    y_true = _to_labels(y_true, "y_true")
    y_pred = _to_labels(y_pred, "y_pred")
    sensitive = _to_groups(sensitive_features, "sensitive_features")
    _check_lengths(y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)
    return y_true, y_pred, sensitive


def _is_binary(y_true: np.ndarray, y_pred: np.ndarray) -> bool:
    return bool(np.isin(y_true, (0, 1)).all() and np.isin(y_pred, (0, 1)).all())


# ---------------------------------------------------------------------------------------------------------------
# Group rates: one (groups x classes) table per rate, then the between-group gap
# ---------------------------------------------------------------------------------------------------------------
def _group_rates(y_true, y_pred, sensitive_features, rate: str) -> tuple[np.ndarray, bool]:
    """rates[g, k] for group g of s and class k (one-vs-rest), nan where the conditioning event never occurs.

    rate = "selection": P(yhat=k | s=g);  "tpr": P(yhat=k | y=k, s=g);  "tnr": P(yhat!=k | y!=k, s=g).
    """
    y_true, y_pred, sensitive = _prepare(y_true, y_pred, sensitive_features)
    binary = _is_binary(y_true, y_pred)
    # Binary labels always get both columns, so column 1 is the positive class even if no sample is 1.
    classes = np.array([0, 1]) if binary else np.union1d(y_true, y_pred)
    n_classes = len(classes)
    _, group = _codes(sensitive)
    n_groups = int(group.max()) + 1
    true_class = np.searchsorted(classes, y_true)
    pred_class = np.searchsorted(classes, y_pred)

    def count(cls, weights=None):  # (groups, classes) table of counts of (s=g, cls=k)
        flat = np.bincount(group * n_classes + cls, weights=weights, minlength=n_groups * n_classes)
        return flat.reshape(n_groups, n_classes)

    group_size = np.bincount(group, minlength=n_groups)[:, None].astype(float)
    predicted = count(pred_class)  # s=g, yhat=k
    positives = count(true_class)  # s=g, y=k
    hits = count(true_class, weights=(y_true == y_pred).astype(float))  # s=g, y=k, yhat=k
    if rate == "selection":
        numerator, denominator = predicted, np.broadcast_to(group_size, predicted.shape)
    elif rate == "tpr":
        numerator, denominator = hits, positives
    elif rate == "tnr":
        # inclusion-exclusion: #(y!=k and yhat!=k) = n_g - #(y=k) - #(yhat=k) + #(y=k and yhat=k)
        numerator, denominator = group_size - positives - predicted + hits, group_size - positives
    else:
        raise ValueError(f"unknown rate {rate!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(denominator > 0, numerator / denominator, np.nan)
    return rates, binary


def _between_group_gap(rates: np.ndarray, binary: bool) -> float:
    """max_g rate - min_g rate per class (over groups where the rate is defined); class 1 if binary, else max."""
    defined = ~np.isnan(rates)
    highest = np.where(defined, rates, -np.inf).max(axis=0)
    lowest = np.where(defined, rates, np.inf).min(axis=0)
    gaps = np.where(defined.any(axis=0), highest - lowest, np.nan)  # one gap per class
    if binary:
        return float(gaps[1])
    gaps = gaps[~np.isnan(gaps)]
    return float(gaps.max()) if gaps.size else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# Accuracy family
# ---------------------------------------------------------------------------------------------------------------
def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions, P(yhat = y)."""
    y_true, y_pred = _to_labels(y_true, "y_true"), _to_labels(y_pred, "y_pred")
    _check_lengths(y_true=y_true, y_pred=y_pred)
    return float(np.mean(y_true == y_pred))


def group_accuracies(y_true, y_pred, *, groups) -> pd.Series:
    """Accuracy P(yhat = y | group = g) for every distinct value g of ``groups`` (index sorted by g)."""
    y_true, y_pred = _to_labels(y_true, "y_true"), _to_labels(y_pred, "y_pred")
    groups = _to_groups(groups, "groups")
    _check_lengths(y_true=y_true, y_pred=y_pred, groups=groups)
    values, code = _codes(groups)
    correct = np.bincount(code, weights=(y_true == y_pred).astype(float), minlength=len(values))
    size = np.bincount(code, minlength=len(values))
    return pd.Series(correct / size, index=pd.Index(values.tolist()), name="accuracy")


def worst_group_accuracy(y_true, y_pred, *, sensitive_features) -> float:
    """min over the (y, s) groups that occur of P(yhat = y | y, s) -- the robustness score of group-DRO papers."""
    y_true, y_pred, sensitive = _prepare(y_true, y_pred, sensitive_features)
    _, label_code = _codes(y_true)
    s_values, s_code = _codes(sensitive)
    # One id per (y, s) pair; group_accuracies only sees the pairs that occur, so no empty group becomes 0 or nan.
    pair = label_code * len(s_values) + s_code
    return float(group_accuracies(y_true, y_pred, groups=pair).min())


def aligned_conflicting_accuracy(y_true, y_pred, *, aligned) -> dict:
    """Accuracy on bias-aligned samples (``aligned`` True) and on bias-conflicting ones (False); nan if none."""
    y_true, y_pred = _to_labels(y_true, "y_true"), _to_labels(y_pred, "y_pred")
    aligned = _to_numpy(aligned, "aligned")
    _check_lengths(y_true=y_true, y_pred=y_pred, aligned=aligned)
    if aligned.dtype != bool and not np.isin(aligned, (0, 1)).all():
        raise ValueError("aligned must be a boolean mask (True = bias-aligned sample)")
    aligned = aligned.astype(bool)
    correct = y_true == y_pred
    # An empty split has no accuracy; nan says so where 0.0 would read as "always wrong".
    return {
        "aligned_accuracy": float(correct[aligned].mean()) if aligned.any() else float("nan"),
        "conflicting_accuracy": float(correct[~aligned].mean()) if (~aligned).any() else float("nan"),
    }


# ---------------------------------------------------------------------------------------------------------------
# Group-fairness gaps (fairlearn's definitions, method="between_groups")
# ---------------------------------------------------------------------------------------------------------------
def demographic_parity_difference(y_true, y_pred, *, sensitive_features) -> float:
    """max_g P(yhat=1 | s=g) - min_g P(yhat=1 | s=g); multi-class: max over k of the gap for yhat=k.

    Equals ``fairlearn.metrics.demographic_parity_difference`` for 0/1 labels. ``y_true`` is ignored (kept for
    the common signature).
    """
    return _between_group_gap(*_group_rates(y_true, y_pred, sensitive_features, "selection"))


def true_positive_rate_difference(y_true, y_pred, *, sensitive_features) -> float:
    """max_g TPR_g - min_g TPR_g with TPR_g = P(yhat=1 | y=1, s=g); multi-class: max over k one-vs-rest."""
    return _between_group_gap(*_group_rates(y_true, y_pred, sensitive_features, "tpr"))


def true_negative_rate_difference(y_true, y_pred, *, sensitive_features) -> float:
    """max_g TNR_g - min_g TNR_g with TNR_g = P(yhat=0 | y=0, s=g); multi-class: max over k one-vs-rest."""
    return _between_group_gap(*_group_rates(y_true, y_pred, sensitive_features, "tnr"))


def equalized_odds_difference(y_true, y_pred, *, sensitive_features) -> float:
    """max(TPR difference, FPR difference) between groups -- fairlearn's definition (agg="worst_case").

    This is the convention of the course text: EO = the larger of the TPR gap and the FPR gap. Since
    FPR_g = 1 - TNR_g, the FPR gap equals the TNR gap, so EO = max(TPR gap, TNR gap). Multi-class: the max over
    classes k of the one-vs-rest EO gap.
    """
    tpr, binary = _group_rates(y_true, y_pred, sensitive_features, "tpr")
    tnr, _ = _group_rates(y_true, y_pred, sensitive_features, "tnr")
    if binary:
        tpr, tnr = tpr[:, 1:], tnr[:, 1:]  # the positive class only
    # The largest gap over the stacked TPR and TNR columns = max over classes of max(TPR gap, FPR gap).
    return _between_group_gap(np.concatenate([tpr, tnr], axis=1), binary=False)


# ---------------------------------------------------------------------------------------------------------------
# Dependence between two discrete variables
# ---------------------------------------------------------------------------------------------------------------
def _joint_counts(a, b) -> np.ndarray:
    """Contingency table of two discrete variables: counts[i, j] = #{a = i-th value, b = j-th value}."""
    a, b = _to_groups(a, "a"), _to_groups(b, "b")
    _check_lengths(a=a, b=b)
    (a_values, a_code), (b_values, b_code) = _codes(a), _codes(b)
    counts = np.bincount(a_code * len(b_values) + b_code, minlength=len(a_values) * len(b_values))
    return counts.reshape(len(a_values), len(b_values))


def discrete_mutual_information(a, b) -> float:
    """Plug-in mutual information I(a; b) in nats of two discrete variables, from their empirical joint frequencies.

    sum_ij p_ij log(p_ij / (p_i p_j)). 0 for independent samples, H(a) when b determines a. Biased upwards for
    small samples with many values (every estimate from counts is), so compare it on the same amount of data.
    """
    counts = _joint_counts(a, b)
    joint = counts / counts.sum()
    outer = np.outer(joint.sum(axis=1), joint.sum(axis=0))
    nonzero = joint > 0
    return float(max(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])), 0.0))


# Maximal correlation
# ---------------------------------------------------------------------------------------------------------------
def hgr_correlation(a, b) -> float:
    """Exact HGR maximal correlation of two discrete variables, sup_{f,g} corr(f(a), g(b)).

    With P the joint frequency table (a-values x b-values) and marginals p_a, p_b, Q = P / sqrt(p_a p_b^T); the
    largest singular value of Q is 1 (constant f, g) and HGR is the second largest. 0 iff a and b are independent,
    1 iff some non-constant function of a is a function of b. For two binary variables HGR = |phi| = |Pearson r|.
    """
    counts = _joint_counts(a, b)
    if min(counts.shape) == 1:
        return 0.0  # a constant carries no information; Q has a single singular value
    n = int(counts.sum())
    rows, cols = counts.sum(axis=1), counts.sum(axis=0)
    # A product-form table is exactly independent; checking it in integers avoids the SVD's ~1e-17 rounding.
    if np.array_equal(counts * n, np.outer(rows, cols)):
        return 0.0
    joint = counts / n
    p_a, p_b = rows / n, cols / n
    q = joint / np.sqrt(np.outer(p_a, p_b))
    singular_values = np.linalg.svd(q, compute_uv=False)  # sorted, largest (= 1) first
    return float(min(singular_values[1], 1.0))


# ---------------------------------------------------------------------------------------------------------------
# Leakage: what an auditor can read from a representation
# ---------------------------------------------------------------------------------------------------------------
def probe_accuracy(features, labels, *, test_fraction: float = 0.5, steps: int = 500, weight_decay: float = 1e-4,
                   seed: int = 0) -> dict:
    """How well a *fresh* linear classifier reads ``labels`` (e.g. s) from ``features`` (N, d): an independent audit.

    A method that removes s from its representation is judged by its own adversary during training; an adversary can
    be fooled. This probe is trained afterwards, from scratch, on a random ``1 - test_fraction`` of the rows
    (multinomial logistic regression on standardised features, full-batch L-BFGS, L2 penalty ``weight_decay``) and
    scored on the rest; ``steps`` caps the L-BFGS iterations. Returns ``{"accuracy": ..., "chance": ...}``, chance
    being the accuracy of always predicting the most frequent label of the probe's training rows: a representation
    that carries no linear information about s has accuracy close to chance.
    """
    x = torch.as_tensor(features).detach().float().cpu()
    y = torch.as_tensor(labels).detach().cpu()
    if x.ndim != 2:
        raise ValueError(f"features must be (samples, dimensions), got shape {tuple(x.shape)}.")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"labels must be one value per row of features ({len(x)}), got shape {tuple(y.shape)}.")
    finite = torch.isfinite(x).all(1)
    if not bool(finite.all()):
        raise ValueError(f"features hold NaN or inf in {int((~finite).sum())} of {len(x)} rows: a probe cannot be "
                         "fitted on them (did the representation diverge?).")
    if y.is_floating_point() and bool(torch.isnan(y).any()):
        raise ValueError("labels hold NaN; every row needs a label.")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    _, code = np.unique(y.numpy(), return_inverse=True)
    y = torch.as_tensor(code.reshape(-1), dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(x)))
    fit_rows, test_rows = order[n_test:], order[:n_test]
    if n_test == 0 or len(fit_rows) == 0:
        raise ValueError(f"{len(x)} rows are too few to split into probe training and test rows.")
    # standardise with the training rows' statistics: L-BFGS converges in few steps on a well-scaled problem
    mean, std = x[fit_rows].mean(0), x[fit_rows].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    probe = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    # a convex problem: any start reaches the same optimum, and zeros make the result independent of torch's RNG
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x[fit_rows]), y[fit_rows])
        loss = loss + 0.5 * weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predictions = probe(x[test_rows]).argmax(1)
    majority = torch.full_like(predictions, int(torch.bincount(y[fit_rows]).argmax()))
    return {"accuracy": accuracy(y[test_rows], predictions), "chance": accuracy(y[test_rows], majority)}


# ---------------------------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------------------------
def summary(y_true, y_pred, *, sensitive_features, aligned=None) -> dict:
    """The scalar metrics in one dict (what the command line prints).

    Keys: accuracy, worst_group_accuracy, aligned_accuracy and conflicting_accuracy (only if ``aligned`` is given),
    dp (demographic parity difference), eo (equalized odds difference; only if s has at most 2 values), hgr
    (HGR correlation between the predictions and s: 0 means the predictions carry no information about s).
    """
    y_true, y_pred, sensitive = _prepare(y_true, y_pred, sensitive_features)
    result = {
        "accuracy": accuracy(y_true, y_pred),
        "worst_group_accuracy": worst_group_accuracy(y_true, y_pred, sensitive_features=sensitive),
    }
    if aligned is not None:
        result.update(aligned_conflicting_accuracy(y_true, y_pred, aligned=aligned))
    result["dp"] = demographic_parity_difference(y_true, y_pred, sensitive_features=sensitive)
    if len(np.unique(sensitive)) <= 2:
        result["eo"] = equalized_odds_difference(y_true, y_pred, sensitive_features=sensitive)
    result["hgr"] = hgr_correlation(y_pred, sensitive)
    return result


_LONG_NAMES = {"dp": "demographic_parity_difference", "eo": "equalized_odds_difference"}


def fairness_report(y_true, y_pred, *, sensitive_features, aligned=None) -> pd.DataFrame:
    """Per-group table (rows "s=<value>" and "overall"; columns count, accuracy, selection_rate for 0/1 labels).

    ``df.attrs`` holds :func:`summary` with dp/eo spelled out as demographic_parity_difference and
    equalized_odds_difference.
    """
    y_true, y_pred, sensitive = _prepare(y_true, y_pred, sensitive_features)
    values, code = _codes(sensitive)
    count = np.bincount(code, minlength=len(values))
    table = pd.DataFrame(
        {"count": count, "accuracy": group_accuracies(y_true, y_pred, groups=sensitive).to_numpy()},
        index=[f"s={value}" for value in values.tolist()],
    )
    overall = {"count": len(y_true), "accuracy": accuracy(y_true, y_pred)}
    if _is_binary(y_true, y_pred):
        table["selection_rate"] = np.bincount(code, weights=(y_pred == 1).astype(float), minlength=len(values)) / count
        overall["selection_rate"] = float(np.mean(y_pred == 1))
    table.loc["overall"] = pd.Series(overall)
    table["count"] = table["count"].astype(int)
    scalars = summary(y_true, y_pred, sensitive_features=sensitive, aligned=aligned)
    table.attrs = {_LONG_NAMES.get(key, key): value for key, value in scalars.items()}
    return table
