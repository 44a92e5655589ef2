"""The normalised cut of a partition of an affinity graph, and single-row moves that lower it.

The clustering head's GW matching to K clusters fixes the cluster masses (equal, by default),
which caps its accuracy on data whose classes are unequal. The normalised cut
``Ncut = sum_c cut(c, rest) / vol(c) = K - sum_c assoc(c) / vol(c)`` (Shi and Malik, 2000),
with ``assoc(c) = sum_{i, j in c} W_ij`` and ``vol(c) = sum_{i in c} d_i``, charges a
partition for the affinity it cuts relative to each cluster's volume, not for its sizes, so
lowering it lets the sizes follow the graph.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csr_matrix

from modalign.ot.structure import SparseGraph


def _cluster_terms(
    w: csr_matrix, labels: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Of the partition ``labels`` (N,) of ``w`` (N, N): the degrees ``d`` (N,), each row's
    affinity to each cluster ``links`` (N, K), and per cluster ``assoc`` and ``vol`` (K,)."""
    onehot = np.zeros((len(labels), n_clusters))
    onehot[np.arange(len(labels)), labels] = 1
    degrees = np.asarray(w.sum(1)).ravel()
    links = np.asarray(w @ onehot)
    return degrees, links, (onehot * links).sum(0), onehot.T @ degrees


def _check_partition(graph: SparseGraph, labels: torch.Tensor, n_clusters: int) -> np.ndarray:
    """``labels`` as a numpy int64 array, checked against the graph and K."""
    found = torch.as_tensor(labels).detach().cpu().numpy().astype(np.int64).reshape(-1)
    if len(found) != graph.shape[0]:
        raise ValueError(f"labels has {len(found)} rows, the graph {graph.shape[0]}")
    if len(found) and (found.min() < 0 or found.max() >= n_clusters):
        raise ValueError(f"labels must lie in [0, {n_clusters}), got {found.min()}..{found.max()}")
    return found


def normalised_cut(graph: SparseGraph, labels: torch.Tensor, n_clusters: int) -> float:
    """``K - sum_c assoc(c) / vol(c)`` of the partition ``labels`` (N,) of the graph's
    symmetric non-negative affinity ``W`` (N, N); an empty cluster contributes a full 1."""
    found = _check_partition(graph, labels, n_clusters)
    _, _, assoc, vol = _cluster_terms(graph.to_scipy(), found, n_clusters)
    return float(n_clusters - (assoc / np.maximum(vol, 1e-300)).sum())


def ncut_refine(
    graph: SparseGraph, labels: torch.Tensor, n_clusters: int, max_sweeps: int = 50
) -> torch.Tensor:
    """The partition (N,) reached from ``labels`` (N,) by single-row moves that each lower the
    normalised cut of the graph's affinity ``W`` (N, N), until no move does (or after
    ``max_sweeps`` passes over the rows); no cluster is emptied.

    Each pass visits the rows in order and moves a row to the cluster that lowers
    :func:`normalised_cut` the most, if any does (a greedy descent: it stops at a partition
    no single move improves, near its start). A move's effect is computed from each row's
    affinity to every cluster, kept up to date, so a pass costs O(N K + nnz(W)). Sequential,
    on the CPU; the result is on ``labels``' device.
    """
    found = _check_partition(graph, labels, n_clusters)
    w = graph.to_scipy()
    self_loops = w.diagonal()
    degrees, links, assoc, vol = _cluster_terms(w, found, n_clusters)
    count = np.bincount(found, minlength=n_clusters).astype(float)
    for _ in range(max_sweeps):
        moved = False
        for i in range(len(found)):
            a = found[i]
            if count[a] <= 1:
                continue
            # assoc/vol of a without row i, and of every cluster with it.
            leave = (assoc[a] - 2 * links[i, a] + self_loops[i]) / max(vol[a] - degrees[i], 1e-300)
            join = (assoc + 2 * links[i] + self_loops[i]) / np.maximum(vol + degrees[i], 1e-300)
            gain = join - assoc / np.maximum(vol, 1e-300) + leave - assoc[a] / max(vol[a], 1e-300)
            gain[a] = -np.inf
            b = int(gain.argmax())
            if gain[b] <= 1e-12:
                continue
            assoc[a] += self_loops[i] - 2 * links[i, a]
            assoc[b] += self_loops[i] + 2 * links[i, b]
            vol[a] -= degrees[i]
            vol[b] += degrees[i]
            count[a] -= 1
            count[b] += 1
            found[i] = b
            lo, hi = w.indptr[i], w.indptr[i + 1]
            links[w.indices[lo:hi], a] -= w.data[lo:hi]
            links[w.indices[lo:hi], b] += w.data[lo:hi]
            moved = True
        if not moved:
            break
    return torch.from_numpy(found).to(torch.as_tensor(labels).device)
