"""Clustering metrics against brute-force references written from the definitions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from modalign.eval import (
    METRICS,
    ari,
    balanced_accuracy_cap,
    clustering_scores,
    contingency_matrix,
    hungarian_accuracy,
    nmi,
    purity,
)
from modalign.eval.metrics import equal_sizes


def brute_purity(y: np.ndarray, c: np.ndarray) -> float:
    # Definition: every cluster votes for its most frequent class.
    total = 0
    for cluster in np.unique(c):
        members = y[c == cluster]
        total += max(np.sum(members == k) for k in np.unique(members))
    return total / len(y)


def brute_accuracy(y: np.ndarray, c: np.ndarray) -> float:
    # Definition: the best injective map between clusters and classes, found by enumerating
    # every one (clusters padded with dummies so both sides have the same size).
    clusters, classes = list(np.unique(c)), list(np.unique(y))
    size = max(len(clusters), len(classes))
    clusters += [None] * (size - len(clusters))
    classes += [None] * (size - len(classes))
    best = 0
    for perm in itertools.permutations(classes):
        hits = sum(
            np.sum((c == cl) & (y == k))
            for cl, k in zip(clusters, perm)
            if cl is not None and k is not None
        )
        best = max(best, hits)
    return best / len(y)


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(1, 40))
    k_true, k_pred = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    return rng.integers(0, k_true, n), rng.integers(0, k_pred, n)


def test_purity_and_accuracy_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(150):
        y, c = random_case(rng)
        assert purity(y, c) == pytest.approx(brute_purity(y, c), abs=1e-12)
        assert hungarian_accuracy(y, c) == pytest.approx(brute_accuracy(y, c), abs=1e-12)


def test_nmi_and_ari_are_sklearn() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        y, c = random_case(rng)
        assert nmi(y, c) == pytest.approx(normalized_mutual_info_score(y, c), abs=1e-12)
        assert ari(y, c) == pytest.approx(adjusted_rand_score(y, c), abs=1e-12)


def test_invariant_to_renaming_clusters_and_classes() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 60)
    c = np.where(rng.random(60) < 0.7, y, rng.integers(0, 5, 60))
    base = clustering_scores(y, c)
    for _ in range(5):
        # Arbitrary, non-contiguous new names on both sides.
        y2 = rng.permutation(np.arange(10, 14))[y] * 3
        c2 = rng.permutation(np.arange(5))[c] - 7
        assert clustering_scores(y2, c2) == pytest.approx(base, abs=1e-12)


def test_perfect_and_worst_cases() -> None:
    y = np.repeat(np.arange(4), 25)
    perfect = clustering_scores(y, (y + 1) % 4)
    assert perfect == pytest.approx({"purity": 1.0, "accuracy": 1.0, "nmi": 1.0, "ari": 1.0})
    # One cluster: purity and accuracy are the majority share, no information.
    y_imb = np.array([0] * 70 + [1] * 20 + [2] * 10)
    one = clustering_scores(y_imb, np.zeros(100, dtype=int))
    assert one["purity"] == pytest.approx(0.7)
    assert one["accuracy"] == pytest.approx(0.7)
    assert one["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert one["ari"] == pytest.approx(0.0, abs=1e-12)
    # Singletons: purity 1 (it rewards over-segmentation), accuracy only K / N.
    single = np.arange(100)
    assert purity(y, single) == 1.0
    assert hungarian_accuracy(y, single) == pytest.approx(4 / 100)
    # A clustering orthogonal to the classes: every cluster holds every class equally.
    y, ortho = np.repeat(np.arange(4), 20), np.tile(np.arange(4), 20)
    assert purity(y, ortho) == pytest.approx(0.25)
    assert nmi(y, ortho) == pytest.approx(0.0, abs=1e-12)


def test_more_clusters_than_classes_and_fewer() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    c = np.array([0, 0, 1, 2, 2, 3])
    assert purity(y, c) == 1.0
    assert hungarian_accuracy(y, c) == pytest.approx(4 / 6)
    assert hungarian_accuracy(c, y) == pytest.approx(4 / 6)
    assert hungarian_accuracy(y, c) <= purity(y, c)


def test_scores_dict_and_inputs() -> None:
    y = [0, 0, 1, 1, 2]
    c = torch.tensor([1, 1, 0, 0, 0])
    scores = clustering_scores(y, c)
    assert list(scores) == list(METRICS) == ["purity", "accuracy", "nmi", "ari"]
    assert all(isinstance(v, float) for v in scores.values())
    assert clustering_scores(np.array(y)[:, None], c.numpy()) == scores
    assert contingency_matrix(y, c).tolist() == [[0, 2, 1], [2, 0, 0]]


@pytest.mark.parametrize(
    ("y", "c", "message"),
    [
        ([0, 1, 2], [0, 1], "same samples"),
        ([], [], "empty"),
        (np.zeros((3, 2)), [0, 1, 2], "1-D"),
        ([0.0, np.nan], [0, 1], "NaN"),
    ],
)
def test_bad_inputs(y, c, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clustering_scores(y, c)


# ---------------------------------------------------------------------------------- balanced cap
def brute_balanced_cap(y: np.ndarray, k: int) -> float:
    # Definition: the best Hungarian accuracy over every assignment of the samples to k
    # clusters whose sizes differ by at most one (all k clusters used), enumerated.
    best = 0.0
    for assign in itertools.product(range(k), repeat=len(y)):
        sizes = np.bincount(assign, minlength=k)
        if sizes.max() - sizes.min() <= 1:
            best = max(best, brute_accuracy(y, np.asarray(assign)))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_balanced_cap_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    k = int(rng.integers(1, min(n, 4) + 1))
    # Skewed class shares, so that equal cluster sizes really cost accuracy.
    y = np.where(rng.random(n) < 0.5, 0, rng.integers(0, 4, size=n))
    assert balanced_accuracy_cap(y, k) == pytest.approx(brute_balanced_cap(y, k), abs=1e-12)


@pytest.mark.parametrize(
    ("y", "k", "expected"),
    [
        ([0, 0, 0, 0, 0, 1], 2, 4 / 6),  # sizes 3, 3: at most 3 zeros + 1 one
        ([0, 0, 0, 0, 1], 2, 4 / 5),  # sizes 3, 2 (N not divisible by K): 3 zeros + 1 one
        ([0, 0, 0, 1, 1, 2], 4, 5 / 6),  # sizes 2, 2, 1, 1: 2 + 2 + 1, one cluster unmatched
        ([0, 1, 2, 3], 2, 2 / 4),  # fewer clusters than classes: two classes stay unmatched
        ([5, 5, 7, 7], 1, 2 / 4),  # one cluster: the majority share
    ],
)
def test_balanced_cap_small_cases_by_hand(y, k: int, expected: float) -> None:
    assert balanced_accuracy_cap(y, k) == pytest.approx(expected, abs=1e-15)
    assert balanced_accuracy_cap(y, k) == pytest.approx(brute_balanced_cap(np.array(y), k))


def test_balanced_cap_of_prokaryotic_shares() -> None:
    # Prokaryotic's class shares 0.568 / 0.203 / 0.165 / 0.064 (issue 11): four clusters of
    # 0.25 each can hold at most 0.25 + 0.203 + 0.165 + 0.064 of correctly matched samples.
    y = torch.from_numpy(np.repeat(np.arange(4), [568, 203, 165, 64]))
    assert balanced_accuracy_cap(y, 4) == pytest.approx(0.682, abs=1e-12)
    assert balanced_accuracy_cap(y, 4) < 0.568 + 0.25  # far from the free-size optimum 1


def test_equal_sizes() -> None:
    assert equal_sizes(10, 3).tolist() == [4, 3, 3]
    assert equal_sizes(9, 3).tolist() == [3, 3, 3]
    assert equal_sizes(2, 2).sum() == 2


@pytest.mark.parametrize(
    ("y", "k", "message"),
    [
        ([0, 1], 3, r"\[1, 2\]"),
        ([0, 1], 0, r"\[1, 2\]"),
        ([0, 1], 1.5, "integer"),
        ([], 1, "empty"),
    ],
)
def test_balanced_cap_bad_inputs(y, k, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        balanced_accuracy_cap(y, k)
