"""fairlab.metrics: hand-worked examples, known HGR answers, and agreement with fairlearn on random data."""
import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import MetricFrame, true_negative_rate, true_positive_rate
from fairlearn.metrics import demographic_parity_difference as fl_demographic_parity_difference
from fairlearn.metrics import equalized_odds_difference as fl_equalized_odds_difference
from sklearn.metrics import mutual_info_score

from fairlab.metrics import (
    accuracy,
    aligned_conflicting_accuracy,
    demographic_parity_difference,
    discrete_mutual_information,
    equalized_odds_difference,
    fairness_report,
    group_accuracies,
    hgr_correlation,
    summary,
    true_negative_rate_difference,
    true_positive_rate_difference,
    worst_group_accuracy,
)

GAPS = [
    demographic_parity_difference,
    true_positive_rate_difference,
    true_negative_rate_difference,
    equalized_odds_difference,
]


# --------------------------------------------------------------------------------------------------------------
# Hand-worked examples
# --------------------------------------------------------------------------------------------------------------
def test_hand_worked_gaps_every_rate_defined():
    # s=0: y = 1 1 0 0, yhat = 1 0 1 1 -> selection 3/4, TPR 1/2, TNR 0/2 = 0 (FPR 1)
    # s=1: y = 1 1 0 0, yhat = 1 1 0 0 -> selection 2/4, TPR 2/2 = 1, TNR 2/2 = 1 (FPR 0)
    # DP = 3/4 - 1/2 = 0.25; TPR gap = 1 - 1/2 = 0.5; TNR gap = FPR gap = 1 - 0 = 1; EO = max(0.5, 1) = 1
    y_true = [1, 1, 0, 0, 1, 1, 0, 0]
    y_pred = [1, 0, 1, 1, 1, 1, 0, 0]
    s = [0, 0, 0, 0, 1, 1, 1, 1]
    assert demographic_parity_difference(y_true, y_pred, sensitive_features=s) == 0.25
    assert true_positive_rate_difference(y_true, y_pred, sensitive_features=s) == 0.5
    assert true_negative_rate_difference(y_true, y_pred, sensitive_features=s) == 1.0
    assert equalized_odds_difference(y_true, y_pred, sensitive_features=s) == 1.0
    assert fl_equalized_odds_difference(y_true, y_pred, sensitive_features=s) == 1.0


def test_hand_worked_gaps_with_undefined_rates():
    # s=0: y = 1 1, yhat = 1 0 -> selection 1/2, TPR 1/2, TNR undefined (no y=0 sample)
    # s=1: y = 0 0, yhat = 0 0 -> selection 0,   TPR undefined (no y=1 sample), TNR 2/2 = 1
    # DP = 1/2 - 0 = 0.5. Each of TPR and TNR is defined in one group only, so there is no gap to measure: 0.
    # (fairlearn counts an undefined rate as 0 and reports TPR gap 0.5, TNR gap 1 but FPR gap 0, EO 0.5.)
    y_true, y_pred, s = [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]
    assert demographic_parity_difference(y_true, y_pred, sensitive_features=s) == 0.5
    assert true_positive_rate_difference(y_true, y_pred, sensitive_features=s) == 0.0
    assert true_negative_rate_difference(y_true, y_pred, sensitive_features=s) == 0.0
    assert equalized_odds_difference(y_true, y_pred, sensitive_features=s) == 0.0


@pytest.mark.parametrize("s", [[0, 1, 0, 1, 1, 0], [0, 1, 2, 2, 1, 0]])
@pytest.mark.parametrize("y_true", [[0, 1, 1, 0, 1, 0], [0, 1, 2, 0, 1, 2]])
def test_constant_predictor_has_zero_demographic_parity(y_true, s):
    assert demographic_parity_difference(y_true, [1] * 6, sensitive_features=s) == 0.0


def test_accuracy():
    assert accuracy([0, 1, 2, 1], [0, 1, 2, 1]) == 1.0
    assert accuracy([0, 1, 2, 1], [0, 1, 0, 0]) == 0.5
    assert isinstance(accuracy([0, 1], [0, 1]), float)


def test_group_accuracies_is_a_sorted_series():
    accuracies = group_accuracies([0, 1, 1, 0, 1], [0, 1, 0, 0, 0], groups=[2, 0, 0, 2, 1])
    # group 0: samples 1,2 -> 1/2;  group 1: sample 4 -> 0;  group 2: samples 0,3 -> 1
    pd.testing.assert_series_equal(accuracies, pd.Series([0.5, 0.0, 1.0], index=[0, 1, 2], name="accuracy"))


def test_worst_group_accuracy():
    # (y, s) groups: (0,0) sample 0 -> 1;  (0,1) sample 1 -> 1;  (1,0) samples 2,3 -> 1/2;  (1,1) 4,5 -> 1
    y_true, y_pred, s = [0, 0, 1, 1, 1, 1], [0, 0, 1, 0, 1, 1], [0, 1, 0, 0, 1, 1]
    assert worst_group_accuracy(y_true, y_pred, sensitive_features=s) == 0.5


def test_worst_group_accuracy_ignores_empty_groups():
    # (y=0, s=1) never occurs; it must not count as accuracy 0 (or nan). Present: 1, 1, 1/2.
    y_true, y_pred, s = [0, 1, 1, 1], [0, 1, 1, 0], [0, 0, 1, 1]
    assert worst_group_accuracy(y_true, y_pred, sensitive_features=s) == 0.5


def test_aligned_conflicting_accuracy():
    result = aligned_conflicting_accuracy([0, 1, 0, 1], [0, 1, 1, 1], aligned=[True, True, False, False])
    assert result == {"aligned_accuracy": 1.0, "conflicting_accuracy": 0.5}
    only_aligned = aligned_conflicting_accuracy([0, 1], [0, 0], aligned=[True, True])
    assert only_aligned["aligned_accuracy"] == 0.5 and np.isnan(only_aligned["conflicting_accuracy"])


# --------------------------------------------------------------------------------------------------------------
# HGR maximal correlation: known answers
# --------------------------------------------------------------------------------------------------------------
def test_hgr_of_a_variable_with_itself_is_one():
    a = np.array([0, 1, 2, 2, 1, 0, 0, 3])
    assert hgr_correlation(a, a) == pytest.approx(1.0, abs=1e-12)
    assert hgr_correlation(["x", "y", "y", "z"], ["x", "y", "y", "z"]) == pytest.approx(1.0, abs=1e-12)


def test_hgr_is_one_when_a_function_of_a_is_b():
    a = np.array([0, 1, 2, 3, 0, 1, 2, 3, 3])
    assert hgr_correlation(a, a % 2) == pytest.approx(1.0, abs=1e-12)


def test_hgr_of_a_product_table_is_exactly_zero():
    # joint counts [[1, 2, 3], [2, 4, 6]] = (1, 2)^T (1, 2, 3): a and b independent
    counts = np.array([[1, 2, 3], [2, 4, 6]])
    a = np.repeat([0, 0, 0, 1, 1, 1], counts.ravel())
    b = np.repeat([0, 1, 2, 0, 1, 2], counts.ravel())
    assert hgr_correlation(a, b) == 0.0


def test_hgr_of_a_constant_is_zero():
    assert hgr_correlation([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0
    assert hgr_correlation([0, 1, 0, 1], [5, 5, 5, 5]) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_hgr_of_two_binary_variables_is_the_absolute_phi_coefficient(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, size=300)
    b = np.where(rng.random(300) < 0.3, 1 - a, a) if seed % 2 else rng.integers(0, 2, size=300)
    phi = abs(np.corrcoef(a, b)[0, 1])
    assert hgr_correlation(a, b) == pytest.approx(phi, abs=1e-12)
    assert hgr_correlation(b, a) == pytest.approx(phi, abs=1e-12)


# --------------------------------------------------------------------------------------------------------------
# Agreement with fairlearn on random data
# --------------------------------------------------------------------------------------------------------------
def _random_binary_problem(seed, n_groups, n=500):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_groups, size=n)
    y_true = rng.integers(0, 2, size=n)
    # predictions that depend on both y and s, so the gaps are far from 0
    flip = rng.random(n) < 0.15 + 0.15 * s
    y_pred = np.where(flip, 1 - y_true, y_true)
    return y_true, y_pred, s


def _fairlearn_difference(metric, y_true, y_pred, s):
    return MetricFrame(metrics=metric, y_true=y_true, y_pred=y_pred, sensitive_features=s).difference()


@pytest.mark.parametrize("n_groups", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_binary_gaps_match_fairlearn(seed, n_groups):
    y_true, y_pred, s = _random_binary_problem(seed, n_groups)
    kw = {"sensitive_features": s}
    assert demographic_parity_difference(y_true, y_pred, **kw) == pytest.approx(
        fl_demographic_parity_difference(y_true, y_pred, **kw), abs=1e-12
    )
    assert equalized_odds_difference(y_true, y_pred, **kw) == pytest.approx(
        fl_equalized_odds_difference(y_true, y_pred, **kw), abs=1e-12
    )
    assert true_positive_rate_difference(y_true, y_pred, **kw) == pytest.approx(
        _fairlearn_difference(true_positive_rate, y_true, y_pred, s), abs=1e-12
    )
    assert true_negative_rate_difference(y_true, y_pred, **kw) == pytest.approx(
        _fairlearn_difference(true_negative_rate, y_true, y_pred, s), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_gaps_are_the_worst_one_vs_rest_fairlearn_gap(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 3, size=500)
    y_true = rng.integers(0, 4, size=500)
    y_pred = np.where(rng.random(500) < 0.2 + 0.2 * s, rng.integers(0, 4, size=500), y_true)
    kw = {"sensitive_features": s}
    one_vs_rest = [((y_true == k).astype(int), (y_pred == k).astype(int)) for k in range(4)]
    expected = {
        demographic_parity_difference: max(fl_demographic_parity_difference(t, p, **kw) for t, p in one_vs_rest),
        equalized_odds_difference: max(fl_equalized_odds_difference(t, p, **kw) for t, p in one_vs_rest),
        true_positive_rate_difference: max(_fairlearn_difference(true_positive_rate, t, p, s) for t, p in one_vs_rest),
        true_negative_rate_difference: max(_fairlearn_difference(true_negative_rate, t, p, s) for t, p in one_vs_rest),
    }
    for metric, value in expected.items():
        assert metric(y_true, y_pred, **kw) == pytest.approx(value, abs=1e-12), metric.__name__


# --------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------
def test_torch_numpy_and_list_inputs_agree():
    y_true, y_pred, s = _random_binary_problem(seed=7, n_groups=2, n=200)
    aligned = y_true == s
    from_numpy = summary(y_true, y_pred, sensitive_features=s, aligned=aligned)
    from_torch = summary(
        torch.from_numpy(y_true), torch.from_numpy(y_pred), sensitive_features=torch.from_numpy(s),
        aligned=torch.from_numpy(aligned),
    )
    from_lists = summary(y_true.tolist(), y_pred.tolist(), sensitive_features=s.tolist(), aligned=aligned.tolist())
    assert from_torch == from_numpy == from_lists
    assert all(type(value) is float for value in from_torch.values())
    # float tensors holding class ids are class ids too
    assert accuracy(torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0, 1, 0])) == pytest.approx(2 / 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_tensors_are_accepted():
    y_true, y_pred, s = (torch.tensor(x, device="cuda") for x in ([0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 1, 1]))
    assert demographic_parity_difference(y_true, y_pred, sensitive_features=s) == 0.5


@pytest.mark.parametrize("metric", GAPS + [worst_group_accuracy])
def test_mismatched_lengths_name_both_lengths(metric):
    with pytest.raises(ValueError, match=r"\b4\b.*\b3\b"):
        metric([0, 1, 0, 1], [0, 1, 1], sensitive_features=[0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"\b4\b.*\b5\b"):
        metric([0, 1, 0, 1], [0, 1, 1, 0], sensitive_features=[0, 0, 1, 1, 1])


def test_mismatched_lengths_other_functions():
    with pytest.raises(ValueError, match=r"\b3\b.*\b2\b"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match=r"\b2\b.*\b3\b"):
        aligned_conflicting_accuracy([0, 1], [0, 1], aligned=[True, False, True])
    with pytest.raises(ValueError, match=r"\b2\b.*\b3\b"):
        hgr_correlation([0, 1], [0, 1, 1])


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="1-D.*argmax"):
        accuracy([0, 1], torch.randn(2, 3))  # logits instead of class ids
    with pytest.raises(ValueError, match="non-integer"):
        accuracy([0, 1], [0.2, 0.9])  # probabilities instead of class ids
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])


# --------------------------------------------------------------------------------------------------------------
# summary and fairness_report
# --------------------------------------------------------------------------------------------------------------
def test_summary_keys():
    y_true, y_pred, s = _random_binary_problem(seed=0, n_groups=2, n=100)
    assert list(summary(y_true, y_pred, sensitive_features=s)) == [
        "accuracy", "worst_group_accuracy", "dp", "eo", "hgr",
    ]
    assert list(summary(y_true, y_pred, sensitive_features=s, aligned=y_true == s)) == [
        "accuracy", "worst_group_accuracy", "aligned_accuracy", "conflicting_accuracy", "dp", "eo", "hgr",
    ]
    # no eo for a sensitive attribute with more than two values
    _, _, s3 = _random_binary_problem(seed=0, n_groups=3, n=100)
    assert list(summary(y_true, y_pred, sensitive_features=s3)) == ["accuracy", "worst_group_accuracy", "dp", "hgr"]


def test_fairness_report():
    # s=a: y 1 1 0 0, yhat 1 0 1 1 -> accuracy 1/4, selection 3/4;  s=b: perfect, selection 1/2
    y_true = [1, 1, 0, 0, 1, 1, 0, 0]
    y_pred = [1, 0, 1, 1, 1, 1, 0, 0]
    s = ["a"] * 4 + ["b"] * 4
    report = fairness_report(y_true, y_pred, sensitive_features=s, aligned=[True] * 6 + [False] * 2)
    expected = pd.DataFrame(
        {"count": [4, 4, 8], "accuracy": [0.25, 1.0, 0.625], "selection_rate": [0.75, 0.5, 0.625]},
        index=["s=a", "s=b", "overall"],
    )
    pd.testing.assert_frame_equal(report, expected)
    assert report.attrs == {
        "accuracy": 0.625,
        "worst_group_accuracy": 0.0,  # (y=0, s=a): both wrong
        "aligned_accuracy": 0.5,
        "conflicting_accuracy": 1.0,
        "demographic_parity_difference": 0.25,
        "equalized_odds_difference": 1.0,
        "hgr": hgr_correlation(y_pred, s),
    }


# ---------------------------------------------------------------------------------------------------------------
# discrete_mutual_information
# ---------------------------------------------------------------------------------------------------------------
def test_discrete_mutual_information_known_answers():
    a = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert discrete_mutual_information(a, a) == pytest.approx(np.log(4))  # I(a; a) = H(a)
    assert discrete_mutual_information(a, a // 2) == pytest.approx(np.log(2))  # b a function of a: H(b)
    assert discrete_mutual_information(a, np.array([0, 1] * 4)) == 0.0  # a product table: independent
    assert discrete_mutual_information(a, np.zeros(8)) == 0.0


def test_discrete_mutual_information_matches_scikit_learn():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 3000)
    b = (a + rng.integers(0, 3, 3000)) % 7  # dependent, not a function
    assert discrete_mutual_information(a, b) == pytest.approx(mutual_info_score(a, b), rel=1e-9)
    assert discrete_mutual_information(torch.tensor(a), torch.tensor(b)) == pytest.approx(mutual_info_score(a, b))
