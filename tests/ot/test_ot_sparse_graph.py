"""SparseGraph: a kNN graph's dissimilarity ``1 - W`` kept as the sparse ``W``, checked against
its dense form (plain torch formulas) and POT's Gromov-Wasserstein solver."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from modalign.ot import (
    SparseGraph,
    fgw_objective,
    fused_gromov_wasserstein,
    graph_structure,
    gromov_wasserstein,
)
from modalign.ot.clustering import _row, graph_cluster, spectral_embedding, structure_mean
from modalign.ot.gromov import inner
from modalign.ot.structure import sandwich, squared_matvec


def _graph(n: int, dtype: torch.dtype, device: torch.device, neighbors: int = 5):
    """A kNN-graph dissimilarity of n random points: dense (n, n) and as a SparseGraph."""
    g = torch.Generator().manual_seed(0)
    c = graph_structure(torch.randn(n, 3, generator=g, dtype=torch.float64), neighbors)
    c = c.to(dtype=dtype, device=device)
    return c, SparseGraph.from_dense(1 - c)


def _tol(dtype):
    return 1e-5 if dtype == torch.float32 else 1e-12


def test_products_match_the_dense_structure(dtype, device):
    c, graph = _graph(40, dtype, device)
    assert graph.affinity.layout == torch.sparse_csr
    assert graph.shape == (40, 40) and graph.dtype == dtype and graph.device.type == device.type
    # A kNN graph: most pairs are not neighbours, and the sparse form stores only neighbours.
    assert graph.affinity.values().numel() < 0.5 * 40 * 40
    torch.testing.assert_close(graph.dense(), c, atol=_tol(dtype), rtol=0)
    g = torch.Generator().manual_seed(1)
    t = torch.rand(40, 4, generator=g, dtype=dtype).to(device)
    small = torch.rand(4, 4, generator=g, dtype=dtype).to(device)
    small = small + small.T
    tol = dict(atol=_tol(dtype) * 40, rtol=_tol(dtype))
    torch.testing.assert_close(sandwich(graph, t, small), c @ t @ small.T, **tol)
    torch.testing.assert_close(sandwich(small, t.T, graph), small @ t.T @ c.T, **tol)
    square = torch.rand(40, 40, generator=g, dtype=dtype).to(device)
    torch.testing.assert_close(sandwich(graph, square, graph), c @ square @ c.T, **tol)
    p = torch.rand(40, generator=g, dtype=dtype).to(device)
    torch.testing.assert_close(squared_matvec(graph, p), (c * c) @ p, **tol)
    torch.testing.assert_close(inner(graph, square), (c * square).sum(), **tol)
    torch.testing.assert_close(graph.matmul(p), c @ p, **tol)
    assert structure_mean(graph) == pytest.approx(float(c.mean()), abs=_tol(dtype))
    torch.testing.assert_close(_row(graph, 7), c[7], **tol)
    plan = t / t.sum()
    torch.testing.assert_close(
        fgw_objective(plan, None, graph, small, 0.0),
        fgw_objective(plan, None, c, small, 0.0),
        **tol,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_gw_on_a_sparse_graph_matches_pot(seed):
    """The same conditional-gradient iterates as POT on the dense matrix, from one start."""
    c, graph = _graph(30, torch.float64, torch.device("cpu"))
    rng = np.random.default_rng(seed)
    c2 = rng.random((6, 6))
    c2 = c2 + c2.T
    p, q = np.full(30, 1 / 30), rng.dirichlet(np.ones(6))
    start = 0.5 * np.outer(p, q) + 0.5 * pot.emd(p, q, rng.random((30, 6)))
    ours = gromov_wasserstein(
        graph, torch.tensor(c2), torch.tensor(p), torch.tensor(q), T0=torch.tensor(start)
    )
    theirs = pot.gromov.gromov_wasserstein(c.numpy(), c2, p, q, G0=start)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-9)


def test_head_clusters_a_sparse_graph_as_its_dense_form():
    """Label for label the same partition, and the same spectral embedding up to rotation."""
    x, truth = make_blobs(n_samples=90, centers=3, cluster_std=0.6, random_state=0)
    c = graph_structure(torch.tensor(x), 10)
    graph = SparseGraph.from_dense(1 - c)
    dense_emb, sparse_emb = spectral_embedding(1 - c, 3), spectral_embedding(graph, 3)
    # Rows are unit length, so their Gram matrix is what a rotation of the columns leaves.
    torch.testing.assert_close(
        sparse_emb @ sparse_emb.T, dense_emb @ dense_emb.T, atol=1e-8, rtol=0
    )
    dense_labels = graph_cluster(None, 3, dissimilarity=c, restarts=4)
    sparse_labels = graph_cluster(None, 3, dissimilarity=graph, restarts=4)
    assert adjusted_rand_score(dense_labels.numpy(), sparse_labels.numpy()) == 1.0
    assert adjusted_rand_score(truth, sparse_labels.numpy()) > 0.9


def test_bad_sparse_graphs_are_refused():
    with pytest.raises(RuntimeError, match="index"):
        SparseGraph.from_entries(
            torch.tensor([0, 5]), torch.tensor([1, 0]), torch.ones(2, dtype=torch.float64), 3
        )
    lopsided = SparseGraph.from_entries(
        torch.tensor([0]), torch.tensor([1]), torch.ones(1, dtype=torch.float64), 3
    )
    with pytest.raises(ValueError, match="C1 is not symmetric"):
        gromov_wasserstein(lopsided, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(n, k\) matrices"):
        lopsided.matmul(torch.zeros(2, 3, 1, dtype=torch.float64))


@pytest.mark.parametrize("solver", ["entropic", "proximal"])
def test_mirror_descent_solvers_take_a_sparse_graph(solver, device):
    """The entropic and proximal solvers give the dense matrix's plan, and a SparseGraph may
    also be the feature cost of fused GW."""
    c, graph = _graph(30, torch.float64, device)
    c2 = torch.rand(6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    c2 = (c2 + c2.T).to(device)
    kwargs = dict(alpha=0.0, solver=solver, epsilon=0.05, max_iter=30)
    sparse_plan = fused_gromov_wasserstein(None, graph, c2, **kwargs)
    torch.testing.assert_close(
        sparse_plan, fused_gromov_wasserstein(None, c, c2, **kwargs), atol=1e-10, rtol=0
    )
    fused = fused_gromov_wasserstein(graph, graph, graph, alpha=0.5)
    dense_fused = fused_gromov_wasserstein(c, c, c, alpha=0.5)
    torch.testing.assert_close(fused, dense_fused, atol=1e-10, rtol=0)
