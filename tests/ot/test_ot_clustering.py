"""GW clustering: the graph structure, and matching a structure to K clusters without labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs, make_circles
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

import modalign.ot.clustering as clustering
from modalign.ot import SparseGraph, graph_structure, sq_distances, sqeuclidean_lowrank
from modalign.ot.clustering import SIZES, graph_cluster, gw_cluster, spectral_embedding


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


def test_graph_structure_is_symmetric_whatever_the_blas(asymmetric_blas):
    """On a BLAS whose ``x x^T`` is not exactly symmetric the structure still is."""
    x = torch.tensor(np.random.default_rng(0).normal(size=(60, 3)))
    product = asymmetric_blas(x, x)
    assert not torch.equal(product, product.T)  # the simulation is asymmetric
    got = graph_structure(x, 8)
    assert torch.equal(got, got.T)


def test_graph_structure_rejects_bad_input():
    with pytest.raises(ValueError, match="n_neighbors"):
        graph_structure(torch.randn(10, 2), 0)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        graph_structure(torch.randn(2, 10, 2), 3)
    with pytest.raises(ValueError, match="NaN|finite"):
        graph_structure(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), 1)


def test_balanced_gw_cluster_recovers_separated_blobs():
    x, y = make_blobs(n_samples=120, centers=4, cluster_std=0.5, random_state=0)
    labels, plan, value = gw_cluster(torch.tensor(x), 4, sizes="balanced", random_state=0)
    assert adjusted_rand_score(y, labels.numpy()) == pytest.approx(1.0)
    # Balanced: every cluster receives mass 1/K, every point mass 1/N.
    np.testing.assert_allclose(plan.sum(0).numpy(), np.full(4, 0.25), atol=1e-9)
    np.testing.assert_allclose(plan.sum(1).numpy(), np.full(120, 1 / 120), atol=1e-9)
    assert value >= 0


def test_more_restarts_never_raise_the_objective():
    """The first starts of more restarts are those of fewer (one seeded generator), so the
    lowest GW objective found can only fall: the head's restarts trade time for its own
    label-free criterion."""
    x, _ = make_blobs(300, centers=8, cluster_std=2.5, random_state=3)
    graph = SparseGraph.from_dense(1 - graph_structure(torch.tensor(x), 20))
    start = spectral_embedding(graph, 8)
    objectives = [
        gw_cluster(structure=graph, n_clusters=8, embedding=start, restarts=r, sizes="balanced")[2]
        for r in (1, 3, 6, 24)
    ]
    assert all(b <= a + 1e-12 for a, b in zip(objectives, objectives[1:]))
    assert objectives[-1] < objectives[0]  # and on this data more starts do find lower ones


def test_gw_objective_is_the_four_index_sum():
    x, _ = make_blobs(n_samples=30, centers=3, random_state=1)
    c = sq_distances(torch.tensor(x))
    c = c / c.max()
    _, plan, value = gw_cluster(structure=c, n_clusters=3, sizes="balanced", random_state=0)
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
    by_distance, _, _ = gw_cluster(x, 2, sizes="balanced", random_state=0)
    graph = graph_structure(x, 10)
    by_graph, _, _ = gw_cluster(
        structure=graph,
        n_clusters=2,
        sizes="balanced",
        embedding=spectral_embedding(1 - graph, 2),
        random_state=0,
    )
    assert adjusted_rand_score(y, by_distance.numpy()) < 0.2
    assert adjusted_rand_score(y, by_graph.numpy()) == pytest.approx(1.0)


def _imbalanced_blobs(n: int, shares: list[float], seed: int = 0):
    """Gaussian blobs with the given class shares, well apart (labels for scoring only)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(shares)), np.round(np.array(shares) * n).astype(int))
    centres = 6.0 * np.eye(len(shares), 2 * len(shares))
    return centres[y] + rng.normal(size=(len(y), centres.shape[1])), y


@pytest.mark.parametrize("structure", ["graph", "sqeuclidean"])
def test_estimated_sizes_recover_an_imbalanced_mixture(structure):
    """Shares 0.6 / 0.25 / 0.15: equal masses must split the large blob; masses estimated
    without labels recover the blobs and their sizes."""
    x, y = _imbalanced_blobs(600, [0.6, 0.25, 0.15])
    truth = np.sort(np.bincount(y) / len(y))
    estimated = graph_cluster(torch.tensor(x), 3, structure=structure, sizes="estimated")
    balanced = graph_cluster(torch.tensor(x), 3, structure=structure, sizes="balanced")
    assert adjusted_rand_score(y, estimated.numpy()) > 0.97
    sizes = np.sort(np.bincount(estimated.numpy(), minlength=3) / len(y))
    np.testing.assert_allclose(sizes, truth, atol=0.01)
    assert adjusted_rand_score(y, balanced.numpy()) < 0.7
    np.testing.assert_allclose(np.bincount(balanced.numpy(), minlength=3), 200, atol=1)


def test_estimated_sizes_keep_every_cluster():
    """Masses come from a start, floored at one point: asked for more clusters than distinct
    points, every cluster still gets a member (an empty one would silently give K - 1)."""
    x = torch.tensor(np.repeat(np.random.default_rng(1).normal(size=(4, 2)), 25, axis=0))
    # Exactly repeated rows in the start's embedding: k-means leaves clusters empty there.
    labels, plan, _ = gw_cluster(x, 6, embedding=x, sizes="estimated", random_state=0)
    masses = plan.sum(0).numpy()
    assert (masses >= 1 / 100 - 1e-12).all()
    assert masses.sum() == pytest.approx(1.0, abs=1e-9)
    assert len(np.unique(labels.numpy())) == 6


def test_sizes_are_checked():
    with pytest.raises(ValueError, match="sizes must be one of"):
        gw_cluster(torch.randn(20, 2), 2, sizes="equal")
    assert SIZES == ("balanced", "estimated", "free")


def test_gw_cluster_above_the_dense_embedding_limit():
    """N = 5000 > 4096: a dense graph structure once crashed reading ``structure.left``;
    embeddings then come from Lanczos, not a full eigendecomposition."""
    x, y = make_blobs(n_samples=5000, centers=3, n_features=2, cluster_std=0.6, random_state=0)
    labels = graph_cluster(torch.tensor(x), 3, neighbors=10, restarts=1, sizes="estimated")
    assert labels.shape == (5000,)
    assert adjusted_rand_score(y, labels.numpy()) > 0.95


def _gram(embedding: torch.Tensor) -> np.ndarray:
    """``E E^T``: the same for any orthonormal basis of the same eigenspaces."""
    return (embedding @ embedding.T).numpy()


def test_lanczos_embeddings_match_the_full_eigendecomposition(monkeypatch):
    """Above the size limit embeddings use a few Lanczos eigenpairs: with the limit lowered
    they must span what the full ``eigh`` spans (classical scaling of squared distances is
    PCA, checked against scikit-learn)."""
    from sklearn.decomposition import PCA

    x, _ = make_blobs(n_samples=150, centers=3, n_features=4, random_state=2)
    graph = graph_structure(torch.tensor(x), 10)
    lowrank = sqeuclidean_lowrank(torch.tensor(x))
    full = (spectral_embedding(1 - graph, 3), clustering._classical_embedding(lowrank, 3))
    full_graph = clustering._classical_embedding(graph, 3)
    monkeypatch.setattr(clustering, "_EMBED_MAX", 50)
    lanczos = (spectral_embedding(1 - graph, 3), clustering._classical_embedding(lowrank, 3))
    for a, b in zip(full, lanczos):
        np.testing.assert_allclose(_gram(b), _gram(a), atol=1e-8)
    np.testing.assert_allclose(
        _gram(clustering._classical_embedding(graph, 3)), _gram(full_graph), atol=1e-8
    )
    scores = PCA(3).fit_transform(x)
    scale = float(sq_distances(torch.tensor(x)).max())
    np.testing.assert_allclose(_gram(lanczos[1]), scores @ scores.T / scale, atol=1e-8)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_label_spreading_matches_scikit_learn(dtype, device, alpha):
    """Label spreading on a kNN graph against scikit-learn's ``LabelSpreading`` iterated to
    convergence on the same affinity (a callable kernel): the unseeded rows take the same
    labels, and the seeds keep theirs (scikit-learn's may move; ours are clamped)."""
    from sklearn.semi_supervised import LabelSpreading

    x, y = make_blobs(n_samples=90, centers=3, cluster_std=2.5, random_state=4)
    affinity = 1 - graph_structure(torch.from_numpy(x), 6)
    seeds = np.random.default_rng(0).permutation(90)[:15]
    seed_labels = (y[seeds] + 1) % 3  # any labels: spreading is told, not scored
    ours = clustering.spread_labels(
        affinity.to(dtype=dtype, device=device),
        torch.from_numpy(seeds),
        torch.from_numpy(seed_labels),
        3,
        alpha=alpha,
    ).cpu()
    w = affinity.numpy()
    partial = np.full(90, -1)
    partial[seeds] = seed_labels
    reference = LabelSpreading(kernel=lambda a, b: w, alpha=alpha, max_iter=100_000, tol=1e-13)
    reference.fit(np.arange(90, dtype=float)[:, None], partial)
    loose = np.setdiff1d(np.arange(90), seeds)
    assert np.array_equal(ours.numpy()[loose], reference.transduction_[loose])
    assert np.array_equal(ours.numpy()[seeds], seed_labels)
    assert ours.dtype == torch.long


def test_label_spreading_rejects_bad_input():
    affinity = torch.rand(6, 6, dtype=torch.float64)
    seeds = torch.tensor([0, 3])
    with pytest.raises(ValueError, match="square"):
        clustering.spread_labels(affinity[:, :4], seeds, torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="alpha"):
        clustering.spread_labels(affinity, seeds, torch.tensor([0, 1]), 2, alpha=1.0)
    with pytest.raises(ValueError, match="2 seeds but 3"):
        clustering.spread_labels(affinity, seeds, torch.tensor([0, 1, 1]), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        clustering.spread_labels(affinity, seeds, torch.tensor([0, 2]), 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_joined_structure_against_a_loop_reference(dtype, device):
    """Per node pair of the joined graph: the mean over the views that hold both nodes of
    their weights, and no edge (dissimilarity 1) between rows of different views that are
    not known pairs. Views may hold different numbers of other rows."""
    g = torch.Generator().manual_seed(0)
    sizes, n_known = (6, 4, 7), 3
    affinities = []
    for n in sizes:
        w = torch.rand(n, n, generator=g, dtype=dtype)
        affinities.append(((w + w.T) / 2).to(device))
    graph, index = clustering.joined_structure(affinities, n_known)
    assert isinstance(graph, SparseGraph) and graph.device.type == device.type
    joined, index = graph.dense().cpu(), [rows.cpu() for rows in index]
    affinities = [w.cpu() for w in affinities]
    total = n_known + sum(n - n_known for n in sizes)
    assert joined.shape == (total, total) and joined.dtype == dtype
    holders = {}  # node -> [(view, row)]
    for m, rows in enumerate(index):
        assert rows.shape == (sizes[m],) and torch.equal(rows[:n_known], torch.arange(n_known))
        for r, node in enumerate(rows.tolist()):
            holders.setdefault(node, []).append((m, r))
    assert sorted(holders) == list(range(total))
    for a in range(total):
        for b in range(total):
            weights = [
                affinities[m][r, s] for m, r in holders[a] for m2, s in holders[b] if m == m2
            ]
            want = 1 - (sum(weights) / len(weights) if weights else 0.0)
            assert float(joined[a, b]) == pytest.approx(float(want), abs=1e-6)
    with pytest.raises(ValueError, match="view 1: affinity must be square"):
        clustering.joined_structure([affinities[0], affinities[1][:, :3]], n_known)
    with pytest.raises(ValueError, match="at least 5 rows"):
        clustering.joined_structure(affinities, 5)
    with pytest.raises(ValueError, match="at least one view"):
        clustering.joined_structure([], 0)
