"""Supervised metrics against independent references (scikit-learn and SciPy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score
from sklearn.metrics import mean_absolute_error as sk_mae

from modalign.eval.supervised import (
    SUPERVISED_METRICS,
    accuracy,
    classification_scores,
    macro_f1,
    mean_absolute_error,
    pearson,
    regression_scores,
)


def _sk_macro_f1(t, p) -> float:
    return float(f1_score(t, p, average="macro", zero_division=0))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_classes", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [1, 5, 40, 300])
def test_accuracy_and_macro_f1_match_sklearn(seed: int, n_classes: int, n: int) -> None:
    rng = np.random.default_rng(1000 * seed + 10 * n_classes + n)
    t = rng.integers(0, n_classes, size=n)
    # Half the time a noisy copy of the truth (high scores), half the time independent labels.
    if seed % 2 == 0:
        p = np.where(rng.random(n) < 0.7, t, rng.integers(0, n_classes, size=n))
    else:
        p = rng.integers(0, n_classes, size=n)
    assert accuracy(t, p) == pytest.approx(accuracy_score(t, p), abs=1e-12)
    assert macro_f1(t, p) == pytest.approx(_sk_macro_f1(t, p), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_classes_only_in_predictions_or_only_in_truth(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    t = rng.integers(0, 4, size=n)  # classes 0..3
    p = rng.integers(2, 7, size=n)  # classes 2..6: 0, 1 only in truth; 4, 5, 6 only in predictions
    assert set(np.unique(t)) - set(np.unique(p))
    assert set(np.unique(p)) - set(np.unique(t))
    expected = _sk_macro_f1(t, p)
    assert macro_f1(t, p) == pytest.approx(expected, abs=1e-12)
    assert accuracy(t, p) == pytest.approx(accuracy_score(t, p), abs=1e-12)


def test_macro_f1_by_hand() -> None:
    # Class 0: TP=1, FP=0, FN=1 -> 2/3. Class 1: TP=1, FP=1, FN=0 -> 2/3. Class 2 (only in
    # predictions): TP=0, FP=1 -> 0. Class 3 (only in truth): TP=0, FN=1 -> 0.
    t = [0, 0, 1, 3]
    p = [0, 1, 1, 2]
    assert macro_f1(t, p) == pytest.approx((2 / 3 + 2 / 3 + 0 + 0) / 4, abs=1e-15)
    assert accuracy(t, p) == pytest.approx(0.5, abs=1e-15)


def test_perfect_and_disjoint_predictions() -> None:
    t = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    assert accuracy(t, t) == 1.0
    assert macro_f1(t, t) == 1.0
    assert accuracy(t, t + 100) == 0.0
    assert macro_f1(t, t + 100) == 0.0


def test_arbitrary_label_values_and_float_labels() -> None:
    rng = np.random.default_rng(3)
    t = rng.choice([-5, 2, 17, 1000], size=50)
    p = rng.choice([-5, 2, 17, 999], size=50)
    assert macro_f1(t, p) == pytest.approx(_sk_macro_f1(t, p), abs=1e-12)
    # Integer-valued floats and booleans are accepted as class labels.
    assert macro_f1(t.astype(float), p.astype(float)) == pytest.approx(macro_f1(t, p), abs=1e-15)
    tb, pb = t > 10, p > 10
    assert macro_f1(tb, pb) == pytest.approx(_sk_macro_f1(tb, pb), abs=1e-12)
    assert accuracy(tb, pb) == pytest.approx(accuracy_score(tb, pb), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_torch_tensor_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, size=80)
    p = rng.integers(0, 6, size=80)
    tt = torch.from_numpy(t)
    pt = torch.from_numpy(p)
    assert accuracy(tt, pt) == pytest.approx(accuracy_score(t, p), abs=1e-12)
    assert macro_f1(tt, pt) == pytest.approx(_sk_macro_f1(t, p), abs=1e-12)
    # Mixed: a tensor against a list.
    assert macro_f1(tt, p.tolist()) == pytest.approx(_sk_macro_f1(t, p), abs=1e-12)

    y = rng.normal(size=80)
    yhat = 0.5 * y + rng.normal(size=80)
    yt = torch.tensor(y, dtype=torch.float32, requires_grad=True)
    yhat_t = torch.tensor(yhat, dtype=torch.float32)
    y32 = yt.detach().numpy().astype(np.float64)
    yhat32 = yhat_t.numpy().astype(np.float64)
    assert mean_absolute_error(yt, yhat_t) == pytest.approx(sk_mae(y32, yhat32), abs=1e-12)
    assert pearson(yt, yhat_t) == pytest.approx(pearsonr(y32, yhat32)[0], abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("n", [2, 3, 17, 500])
def test_mae_and_pearson_match_references(seed: int, n: int) -> None:
    rng = np.random.default_rng(7919 * seed + n)
    y = rng.normal(loc=rng.normal() * 10, scale=rng.uniform(0.1, 5), size=n)
    yhat = rng.uniform(-1, 1) * y + rng.normal(scale=rng.uniform(0.01, 3), size=n)
    assert mean_absolute_error(y, yhat) == pytest.approx(sk_mae(y, yhat), rel=1e-12, abs=1e-12)
    assert pearson(y, yhat) == pytest.approx(float(pearsonr(y, yhat)[0]), abs=1e-10)
    assert pearson(yhat, y) == pytest.approx(pearson(y, yhat), abs=1e-14)


def test_pearson_perfect_and_large_offsets() -> None:
    x = np.linspace(-3, 5, 21)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0, abs=1e-14)
    assert pearson(x, -0.5 * x + 3) == pytest.approx(-1.0, abs=1e-14)
    # Computed in float64: a large offset with small spread must not lose the correlation.
    rng = np.random.default_rng(0)
    a = 1e6 + rng.normal(size=200)
    b = a + 0.3 * rng.normal(size=200)
    assert pearson(a, b) == pytest.approx(float(pearsonr(a, b)[0]), abs=1e-9)
    # Float32 inputs are upcast before computing.
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    expected = float(pearsonr(a32.astype(np.float64), b32.astype(np.float64))[0])
    assert pearson(a32, b32) == pytest.approx(expected, abs=1e-9)


def test_pearson_constant_gives_zero() -> None:
    x = np.linspace(0.1, 0.7, 7)
    c = np.full(7, 0.1)
    assert np.any(c - c.mean() != 0)  # centring this constant leaves rounding residue
    assert pearson(x, c) == 0.0
    assert pearson(c, x) == 0.0
    assert pearson(c, c) == 0.0
    assert pearson([2.5], [1.0]) == 0.0  # a single sample is constant too
    assert regression_scores(x, c)["pearson"] == 0.0


def test_score_dicts() -> None:
    t = [0, 1, 1, 2, 2, 2]
    p = [0, 1, 2, 2, 2, 0]
    s = classification_scores(t, p)
    assert list(s) == ["accuracy", "macro_f1"]
    assert s["accuracy"] == pytest.approx(accuracy_score(t, p), abs=1e-15)
    assert s["macro_f1"] == pytest.approx(_sk_macro_f1(t, p), abs=1e-15)
    y = [1.0, 2.0, 4.0, 3.0]
    yhat = [1.5, 1.5, 3.0, 3.5]
    r = regression_scores(y, yhat)
    assert list(r) == ["mae", "pearson"]
    assert r["mae"] == pytest.approx(0.625, abs=1e-15)
    assert r["pearson"] == pytest.approx(float(pearsonr(y, yhat)[0]), abs=1e-12)
    assert SUPERVISED_METRICS == ("accuracy", "macro_f1", "mae", "pearson")
    assert set(s) | set(r) == set(SUPERVISED_METRICS)


CLASSIFIERS = [accuracy, macro_f1, classification_scores]
REGRESSORS = [mean_absolute_error, pearson, regression_scores]


@pytest.mark.parametrize("fn", CLASSIFIERS + REGRESSORS)
def test_shape_length_and_empty_errors(fn) -> None:
    with pytest.raises(ValueError, match=r"y_true: expected a 1-D vector, got shape \(2, 2\)"):
        fn([[0, 1], [1, 0]], [0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"y_pred: expected a 1-D vector, got shape \(\)"):
        fn([0, 1], 1)
    with pytest.raises(ValueError, match=r"y_pred: expected a 1-D vector, got shape \(3, 1\)"):
        fn([0, 1, 1], np.zeros((3, 1), dtype=int))
    with pytest.raises(ValueError, match="y_true has 3 entries but y_pred has 2"):
        fn([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="y_true: is empty"):
        fn([], [])
    with pytest.raises(ValueError, match="y_pred: is empty"):
        fn(np.array([1]), torch.zeros(0))


@pytest.mark.parametrize("fn", CLASSIFIERS)
def test_non_integer_labels_raise(fn) -> None:
    with pytest.raises(ValueError, match="y_pred: class labels must be integer-valued"):
        fn([0, 1, 2], [0.0, 1.5, 2.0])
    with pytest.raises(ValueError, match="y_true: class labels must be integer-valued"):
        fn(["a", "b"], [0, 1])
    with pytest.raises(ValueError, match="y_true: class labels contain NaN or inf"):
        fn([0.0, np.nan], [0, 1])


@pytest.mark.parametrize("fn", REGRESSORS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_regression_values_raise(fn, bad: float) -> None:
    with pytest.raises(ValueError, match="y_true: contains NaN or inf"):
        fn([1.0, bad, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="y_pred: contains NaN or inf"):
        fn(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, bad]))


@pytest.mark.parametrize("fn", REGRESSORS)
def test_non_numeric_regression_values_raise(fn) -> None:
    with pytest.raises(ValueError, match="y_pred: expected real numbers"):
        fn([1.0, 2.0], ["x", "y"])
