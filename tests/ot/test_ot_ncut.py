"""The normalised cut, its single-row descent, and the head's size refinement built on it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from modalign.ot import SparseGraph
from modalign.ot.clustering import graph_cluster, gw_cluster, head_structure, partition_masses
from modalign.ot.ncut import ncut_refine, normalised_cut


def _ncut_reference(w: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Shi and Malik's ``sum_c cut(c, rest) / vol(c)`` from its definition (dense loops)."""
    total = 0.0
    for c in range(k):
        inside = labels == c
        if not inside.any():
            total += 1.0
            continue
        total += w[np.ix_(inside, ~inside)].sum() / w[inside].sum()
    return total


def _random_graph(n: int, seed: int) -> tuple[SparseGraph, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.random((n, n)) * (rng.random((n, n)) < 0.3)
    w = np.triu(w) + np.triu(w, 1).T  # symmetric, with some self-loops
    w[np.arange(n), np.arange(n)] += 0.01  # no isolated row
    return SparseGraph.from_dense(torch.from_numpy(w)), w


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normalised_cut_matches_its_definition(seed):
    graph, w = _random_graph(30, seed)
    labels = np.random.default_rng(seed).integers(0, 4, 30)
    labels[:4] = np.arange(4)
    assert normalised_cut(graph, torch.from_numpy(labels), 4) == pytest.approx(
        _ncut_reference(w, labels, 4), rel=1e-12
    )
    # An empty cluster counts as a whole cut (its term is 1).
    assert normalised_cut(graph, torch.from_numpy(labels), 5) == pytest.approx(
        _ncut_reference(w, labels, 5), rel=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ncut_refine_ends_where_no_single_move_lowers_the_cut(seed):
    """Checked by brute force: every row moved to every other cluster, the cut recomputed."""
    graph, w = _random_graph(24, seed)
    k = 3
    start = np.random.default_rng(10 + seed).integers(0, k, 24)
    start[:k] = np.arange(k)
    found = ncut_refine(graph, torch.from_numpy(start), k).numpy()
    assert _ncut_reference(w, found, k) < _ncut_reference(w, start, k)
    counts = np.bincount(found, minlength=k)
    assert counts.min() >= 1  # no cluster emptied
    best = _ncut_reference(w, found, k)
    for i, b in itertools.product(range(24), range(k)):
        if b == found[i] or counts[found[i]] == 1:
            continue
        moved = found.copy()
        moved[i] = b
        assert _ncut_reference(w, moved, k) >= best - 1e-12


def test_ncut_refine_keeps_a_locally_optimal_partition_and_its_device(device):
    x, y = make_blobs(n_samples=90, centers=3, cluster_std=0.3, random_state=0)
    graph = SparseGraph.from_dense(1 - head_structure(torch.from_numpy(x), 3)).to(device)
    labels = torch.from_numpy(y).to(device)
    found = ncut_refine(graph, labels, 3)
    assert found.device.type == device.type
    assert torch.equal(found, labels)


def test_ncut_refine_rejects_bad_labels():
    graph, _ = _random_graph(10, 0)
    with pytest.raises(ValueError, match="rows"):
        ncut_refine(graph, torch.zeros(9, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ncut_refine(graph, torch.full((10,), 2), 2)


def _unequal_blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four blobs on a square grid, of 80, 40, 40 and 40 points."""
    return make_blobs(
        n_samples=[80, 40, 40, 40],
        centers=[[0, 0], [6, 0], [0, 6], [6, 6]],
        cluster_std=1.0,
        random_state=seed,
    )


def test_size_refinement_mends_unequal_clusters_that_balanced_gw_splits():
    """Equal masses must cut the large blob (the check can fail); the refinement's local moves
    mend most of it, not always all (it is a descent from the balanced partition: on three
    far-apart blobs of 120, 40 and 40 it ends stuck on some seeds, docs/results.md)."""
    balanced, refined = [], []
    for seed in range(5):
        x, y = _unequal_blobs(seed)
        points = torch.from_numpy(x)
        balanced.append(adjusted_rand_score(y, graph_cluster(points, 4, random_state=seed)))
        found = graph_cluster(points, 4, random_state=seed, refine_sizes=True)
        refined.append(adjusted_rand_score(y, found))
    assert max(balanced) < 0.7
    assert np.mean(refined) > np.mean(balanced) + 0.25
    assert np.median(refined) > 0.9


def test_size_refinement_keeps_equal_clusters():
    x, y = make_blobs(n_samples=150, centers=3, cluster_std=1.0, random_state=3)
    points = torch.from_numpy(x)
    refined = graph_cluster(points, 3, random_state=0, refine_sizes=True).numpy()
    assert adjusted_rand_score(y, refined) > 0.95


def test_refinement_needs_a_graph():
    with pytest.raises(ValueError, match="graph"):
        graph_cluster(torch.randn(20, 2), 2, structure="sqeuclidean", refine_sizes=True)


def test_gw_cluster_with_given_masses_has_those_column_sums():
    x, y = _unequal_blobs(0)
    masses = partition_masses(torch.from_numpy(y), 4)
    assert masses.tolist() == pytest.approx([0.4, 0.2, 0.2, 0.2])
    structure = head_structure(torch.from_numpy(x), 4)
    found, plan, _ = gw_cluster(structure=structure, n_clusters=4, masses=masses, restarts=3)
    assert sorted(plan.sum(0).tolist()) == pytest.approx([0.2, 0.2, 0.2, 0.4], abs=1e-9)
    assert adjusted_rand_score(y, found.numpy()) > 0.95
    with pytest.raises(ValueError, match="positive"):
        gw_cluster(structure=structure, n_clusters=4, masses=torch.tensor([0.5, 0.5, 0.0, 0.0]))
    with pytest.raises(ValueError, match="sum to one"):
        gw_cluster(structure=structure, n_clusters=4, masses=torch.tensor([0.5, 0.5, 0.5, 0.5]))


def test_partition_masses_leave_no_cluster_empty():
    masses = partition_masses(torch.tensor([0, 0, 0, 0, 2]), 3)
    assert masses.tolist() == pytest.approx([0.6, 0.2, 0.2])
