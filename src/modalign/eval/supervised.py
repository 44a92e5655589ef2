"""Metrics for supervised prediction: classification and regression scores.

Accuracy, the mean absolute error and Pearson's r are computed here with NumPy; macro F1 is
scikit-learn's (``f1_score(average="macro")``). The tests check them against scikit-learn and
SciPy, and macro F1 also against a count by hand.

All functions take two 1-D vectors of the same length ``N >= 1``: ``y_true`` (the targets) and
``y_pred`` (the predictions). Either may be a list, a NumPy array or a torch tensor.

* Classification (:func:`accuracy`, :func:`macro_f1`): the labels must be integer-valued (an
  integer or boolean array, or floats holding whole numbers).
* Regression (:func:`mean_absolute_error`, :func:`pearson`): the values must be finite real
  numbers.

Wrong shapes, different lengths, empty input, non-integer class labels and non-finite regression
values raise :class:`ValueError` naming the argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score

__all__ = [
    "SUPERVISED_METRICS",
    "accuracy",
    "classification_scores",
    "macro_f1",
    "mean_absolute_error",
    "pearson",
    "regression_scores",
]

#: The metric names of :func:`classification_scores` and :func:`regression_scores`, in table order.
SUPERVISED_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "mae", "pearson")

Vector = Sequence[Any] | np.ndarray | torch.Tensor


def _as_vector(y: Vector, what: str) -> np.ndarray:
    """A 1-D NumPy array; a clear error for anything else."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D vector, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{what}: is empty; at least one sample is needed")
    return arr


def _same_length(t: np.ndarray, p: np.ndarray) -> None:
    if t.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true has {t.shape[0]} entries but y_pred has {p.shape[0]}; they must describe "
            "the same samples"
        )


def _labels(y: Vector, what: str) -> np.ndarray:
    """A 1-D int64 label vector; integer-valued floats are accepted."""
    arr = _as_vector(y, what)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}: class labels contain NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{what}: class labels must be integer-valued, got fractional values")
        return arr.astype(np.int64)
    raise ValueError(f"{what}: class labels must be integer-valued, got dtype {arr.dtype}")


def real_vector(y: Vector, what: str) -> np.ndarray:
    """A non-empty 1-D float64 vector of finite real numbers; a clear error naming ``what``
    for anything else (shared by the regression metrics and the robustness measures)."""
    arr = _as_vector(y, what)
    if arr.dtype.kind not in "iubf":
        raise ValueError(f"{what}: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: contains NaN or inf")
    return arr


def _label_pair(y_true: Vector, y_pred: Vector) -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    _same_length(t, p)
    return t, p


def _value_pair(y_true: Vector, y_pred: Vector) -> tuple[np.ndarray, np.ndarray]:
    t = real_vector(y_true, "y_true")
    p = real_vector(y_pred, "y_pred")
    _same_length(t, p)
    return t, p


def accuracy(y_true: Vector, y_pred: Vector) -> float:
    """Share of samples whose predicted label equals the true one.

    ``accuracy = (1/N) * sum_i [y_true_i == y_pred_i]``, in ``[0, 1]``.
    """
    t, p = _label_pair(y_true, y_pred)
    return float(np.mean(t == p))


def macro_f1(y_true: Vector, y_pred: Vector) -> float:
    """Unweighted mean of the per-class F1 scores.

    For each class ``c`` in the union of the labels of ``y_true`` and ``y_pred``, with ``TP_c``
    the samples of class ``c`` predicted as ``c``, ``FP_c`` those predicted as ``c`` but of
    another class and ``FN_c`` those of class ``c`` predicted as another class::

        F1_c = 2 * TP_c / (2 * TP_c + FP_c + FN_c)      (0 when the denominator is 0)
        macro_f1 = (1/|C|) * sum_c F1_c

    A class present only in the truth or only in the predictions has ``TP_c = 0`` and so
    ``F1_c = 0``; it still counts in the mean. Computed by
    ``sklearn.metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)``.
    """
    t, p = _label_pair(y_true, y_pred)
    # labels=None: scikit-learn averages over the sorted union of both vectors' labels, the
    # semantics above; zero_division=0 gives a class with no true and no predicted sample 0.
    return float(f1_score(t, p, average="macro", zero_division=0))


def mean_absolute_error(y_true: Vector, y_pred: Vector) -> float:
    """Mean absolute error ``(1/N) * sum_i |y_true_i - y_pred_i|``, in float64."""
    t, p = _value_pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def pearson(y_true: Vector, y_pred: Vector) -> float:
    """Pearson correlation coefficient, computed in float64.

    ``r = sum_i (t_i - mean(t)) (p_i - mean(p)) / sqrt(sum_i (t_i - mean(t))^2 *
    sum_i (p_i - mean(p))^2)``, in ``[-1, 1]``.

    When either side is constant (zero variance, which includes ``N = 1``) the coefficient is
    undefined: no linear association can be measured, and this returns ``0.0`` rather than NaN
    so that result records always hold finite numbers.
    """
    t, p = _value_pair(y_true, y_pred)
    # Exact test: after centring, a constant vector can leave rounding residue instead of zeros.
    if np.all(t == t[0]) or np.all(p == p[0]):
        return 0.0
    dt = t - t.mean()
    dp = p - p.mean()
    # Scale by the largest deviation first so the sums of squares neither overflow nor underflow.
    dt /= np.abs(dt).max()
    dp /= np.abs(dp).max()
    st = float(np.sqrt(np.dot(dt, dt)))
    sp = float(np.sqrt(np.dot(dp, dp)))
    r = float(np.dot(dt / st, dp / sp))
    return float(min(1.0, max(-1.0, r)))


def classification_scores(y_true: Vector, y_pred: Vector) -> dict[str, float]:
    """``{"accuracy": accuracy(...), "macro_f1": macro_f1(...)}``."""
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred)}


def regression_scores(y_true: Vector, y_pred: Vector) -> dict[str, float]:
    """``{"mae": mean_absolute_error(...), "pearson": pearson(...)}``."""
    return {"mae": mean_absolute_error(y_true, y_pred), "pearson": pearson(y_true, y_pred)}
