"""Clustering metrics, each under its real name (DESIGN.md section 3).

All functions take two label vectors of the same length ``N``: ``y_true`` (the classes) and
``y_pred`` (the clusters). Either may be a list, a NumPy array or a torch tensor, and the label
values are arbitrary (they need not be ``0..K-1`` and the numbers of clusters and classes may
differ): every score is invariant to renaming the clusters or the classes.

* :func:`purity`: each cluster is credited with its most frequent class. Clusters may share a
  class, so purity rewards over-segmentation (``N`` singleton clusters have purity 1).
* :func:`hungarian_accuracy`: clusters and classes are matched one to one (the best matching,
  found with the Hungarian algorithm); samples in unmatched clusters count as errors. This is what
  many papers call "clustering accuracy", and what some public code mislabels as purity.
* :func:`nmi`: normalised mutual information (arithmetic-mean normalisation, scikit-learn's
  default).
* :func:`ari`: the adjusted Rand index (0 in expectation for random clusterings, 1 when perfect).

:func:`balanced_accuracy_cap` is not a score: it is the best accuracy that any clustering into
``K`` clusters of equal size can reach on given labels, the ceiling of a head that forces equal
cluster sizes (reported beside such tables; labels are used for the report only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = [
    "METRICS",
    "LabelVector",
    "ari",
    "balanced_accuracy_cap",
    "clustering_scores",
    "contingency_matrix",
    "equal_sizes",
    "hungarian_accuracy",
    "nmi",
    "purity",
]

#: The metric names of :func:`clustering_scores`, in table order.
METRICS: tuple[str, ...] = ("purity", "accuracy", "nmi", "ari")

LabelVector = Sequence[Any] | np.ndarray | torch.Tensor


def _as_labels(y: LabelVector, what: str) -> np.ndarray:
    """A 1-D NumPy label vector; a clear error for anything else."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim == 2 and 1 in arr.shape:
        # (N, 1) columns come straight out of .mat files; accept them.
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D label vector, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: labels contain NaN or inf")
    return arr


def _pair(y_true: LabelVector, y_pred: LabelVector) -> tuple[np.ndarray, np.ndarray]:
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true has {t.shape[0]} labels but y_pred has {p.shape[0]}; they must describe "
            "the same samples (in the unaligned setting compare a view's clusters with that "
            "view's row labels, e.g. ds.row_labels(v))"
        )
    if t.shape[0] == 0:
        raise ValueError("cannot score an empty clustering")
    return t, p


def contingency_matrix(y_true: LabelVector, y_pred: LabelVector) -> np.ndarray:
    """Counts ``C[c, k]`` of samples in cluster ``c`` and class ``k``.

    Returns:
        ``(n_clusters, n_classes)`` int64 array; rows follow the sorted distinct values of
        ``y_pred`` and columns those of ``y_true``.
    """
    t, p = _pair(y_true, y_pred)
    _, k = np.unique(t, return_inverse=True)
    _, c = np.unique(p, return_inverse=True)
    counts = np.zeros((int(c.max()) + 1, int(k.max()) + 1), dtype=np.int64)
    np.add.at(counts, (c.reshape(-1), k.reshape(-1)), 1)
    return counts


def purity(y_true: LabelVector, y_pred: LabelVector) -> float:
    """Sum over clusters of the cluster's largest class count, divided by ``N``.

    In ``[max class share when one cluster, 1]``; 1 when every cluster holds a single class.
    """
    counts = contingency_matrix(y_true, y_pred)
    return float(counts.max(axis=1).sum() / counts.sum())


def hungarian_accuracy(y_true: LabelVector, y_pred: LabelVector) -> float:
    """Accuracy after the best one-to-one matching of clusters to classes.

    The matching maximises the number of correctly matched samples (``linear_sum_assignment`` on
    the contingency matrix). With more clusters than classes the extra clusters stay unmatched and
    their samples count as errors; with fewer, some classes get no cluster. Always ``<= purity``.
    """
    counts = contingency_matrix(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


def nmi(y_true: LabelVector, y_pred: LabelVector) -> float:
    """Normalised mutual information (scikit-learn, arithmetic normalisation), in ``[0, 1]``."""
    t, p = _pair(y_true, y_pred)
    return float(normalized_mutual_info_score(t, p))


def ari(y_true: LabelVector, y_pred: LabelVector) -> float:
    """Adjusted Rand index (scikit-learn), in ``[-0.5, 1]``; about 0 for random clusterings."""
    t, p = _pair(y_true, y_pred)
    return float(adjusted_rand_score(t, p))


def clustering_scores(y_true: LabelVector, y_pred: LabelVector) -> dict[str, float]:
    """All four metrics: ``{"purity", "accuracy", "nmi", "ari"}`` (accuracy = Hungarian)."""
    t, p = _pair(y_true, y_pred)
    return {
        "purity": purity(t, p),
        "accuracy": hungarian_accuracy(t, p),
        "nmi": nmi(t, p),
        "ari": ari(t, p),
    }


def equal_sizes(n: int, n_clusters: int) -> np.ndarray:
    """The sizes of ``n_clusters`` clusters of ``n`` samples as equal as they can be:
    with ``n = q K + r`` (``0 <= r < K``), ``r`` clusters of ``q + 1`` and ``K - r`` of ``q``
    (sizes differ by at most one). Returns ``(K,)`` int64, largest first."""
    q, r = divmod(n, n_clusters)
    return np.array([q + 1] * r + [q] * (n_clusters - r), dtype=np.int64)


def balanced_accuracy_cap(labels: LabelVector, n_clusters: int) -> float:
    """The best Hungarian accuracy of any partition of the samples into ``K`` equal clusters.

    Equal means :func:`equal_sizes` (sizes ``s_j`` differing by at most one when ``K`` does not
    divide ``N``). With ``n_c`` the size of class ``c``, the cap is::

        cap = max over one-to-one matchings m of clusters to classes of
              sum_{(j, c) in m} min(s_j, n_c) / N

    Why. Upper bound: in any such partition, the samples of cluster ``j`` that belong to its
    matched class ``c`` number at most ``min(s_j, n_c)``, so the Hungarian matching's count is at
    most the sum above for that matching, hence at most the max. Reached: for a maximising
    matching, put ``min(s_j, n_c)`` samples of class ``c`` in cluster ``j`` (classes are distinct,
    so no sample is used twice) and fill the remaining places with the remaining samples (there
    are exactly as many places as samples); that partition's Hungarian accuracy is at least the
    sum, and by the bound exactly it. The max is an assignment problem on the
    ``(K, C)`` matrix ``min(s_j, n_c)``, solved with ``linear_sum_assignment`` (with ``K > C``
    some clusters stay unmatched, with ``K < C`` some classes).

    Example: Prokaryotic's class shares 0.568 / 0.203 / 0.165 / 0.064 with ``K = 4`` give
    ``0.25 + 0.203 + 0.165 + 0.064 = 0.682``.

    Raises:
        ValueError: ``n_clusters`` not a positive integer or above the number of samples.
    """
    t = _as_labels(labels, "labels")
    if t.shape[0] == 0:
        raise ValueError("labels is empty: no partition to bound")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    if not 1 <= n_clusters <= t.shape[0]:
        raise ValueError(
            f"n_clusters must lie in [1, {t.shape[0]}] (the samples), got {n_clusters}"
        )
    _, class_sizes = np.unique(t, return_counts=True)
    sizes = equal_sizes(t.shape[0], int(n_clusters))
    gain = np.minimum(sizes[:, None], class_sizes[None, :])
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return float(gain[rows, cols].sum() / t.shape[0])
