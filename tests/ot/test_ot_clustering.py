"""GW clustering: the graph structure, and matching a structure to K clusters without labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs, make_circles
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from modalign.ot import graph_structure, sq_distances
from modalign.ot.clustering import gw_cluster, spectral_embedding


def _graph_reference(x: np.ndarray, k: int, scale_neighbor: int) -> np.ndarray:
    """The self-tuning kNN affinity written from its definition, with scikit-learn's kNN."""
    n = len(x)
    dist, idx = NearestNeighbors(n_neighbors=n).fit(x).kneighbors(x)  # column 0 is the point
    scale = dist[:, scale_neighbor]
    w = np.zeros((n, n))
    for i in range(n):
        for j in idx[i, : k + 1]:
            value = np.exp(-np.sum((x[i] - x[j]) ** 2) / (scale[i] * scale[j]))
            w[i, j] = w[j, i] = value
    return 1.0 - w


@pytest.mark.parametrize("k", [1, 4, 10])
def test_graph_structure_matches_its_definition(dtype, device, k):
    x = np.random.default_rng(k).normal(size=(40, 3))
    got = graph_structure(torch.tensor(x, dtype=dtype, device=device), k, scale_neighbor=5)
    want = _graph_reference(x, k, 5)
    assert got.shape == (40, 40) and got.dtype == dtype and got.device.type == device.type
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(got.cpu().double().numpy(), want, atol=tol)
    assert torch.equal(got, got.T)
    assert float(got.diagonal().abs().max()) < tol


def test_graph_structure_rejects_bad_input():
    with pytest.raises(ValueError, match="n_neighbors"):
        graph_structure(torch.randn(10, 2), 0)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        graph_structure(torch.randn(2, 10, 2), 3)
    with pytest.raises(ValueError, match="NaN|finite"):
        graph_structure(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), 1)


def test_balanced_gw_cluster_recovers_separated_blobs():
    x, y = make_blobs(n_samples=120, centers=4, cluster_std=0.5, random_state=0)
    labels, plan, value = gw_cluster(torch.tensor(x), 4, balanced=True, random_state=0)
    assert adjusted_rand_score(y, labels.numpy()) == pytest.approx(1.0)
    # Balanced: every cluster receives mass 1/K, every point mass 1/N.
    np.testing.assert_allclose(plan.sum(0).numpy(), np.full(4, 0.25), atol=1e-9)
    np.testing.assert_allclose(plan.sum(1).numpy(), np.full(120, 1 / 120), atol=1e-9)
    assert value >= 0


def test_gw_objective_is_the_four_index_sum():
    x, _ = make_blobs(n_samples=30, centers=3, random_state=1)
    c = sq_distances(torch.tensor(x))
    c = c / c.max()
    _, plan, value = gw_cluster(structure=c, n_clusters=3, balanced=True, random_state=0)
    mean = float(c.mean())
    target = mean * 3 / 2 * (1 - np.eye(3))
    cn, t = c.numpy(), plan.numpy()
    brute = sum(
        (cn[i, k] - target[a, b]) ** 2 * t[i, a] * t[k, b]
        for i in range(30)
        for k in range(30)
        for a in range(3)
        for b in range(3)
    )
    assert value == pytest.approx(brute, rel=1e-9)


def test_graph_structure_finds_rings_that_distances_cannot():
    """Two concentric rings: squared distances (balanced k-means in GW form) cut them in
    half, the kNN graph follows each ring."""
    x, y = make_circles(n_samples=200, factor=0.4, noise=0.03, random_state=0)
    x = torch.tensor(x)
    by_distance, _, _ = gw_cluster(x, 2, balanced=True, random_state=0)
    graph = graph_structure(x, 10)
    by_graph, _, _ = gw_cluster(
        structure=graph,
        n_clusters=2,
        balanced=True,
        embedding=spectral_embedding(1 - graph, 2),
        random_state=0,
    )
    assert adjusted_rand_score(y, by_distance.numpy()) < 0.2
    assert adjusted_rand_score(y, by_graph.numpy()) == pytest.approx(1.0)
