"""Clustering by Gromov-Wasserstein matching to a K-cluster structure (balanced, estimated
or free cluster sizes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import LinearOperator, aslinearoperator, eigsh

from modalign.ot._checks import ArrayLike, as_tensor, check_finite
from modalign.ot.gromov import _conditional_gradient, fgw_objective
from modalign.ot.ncut import ncut_refine
from modalign.ot.structure import (
    LowRank,
    SparseGraph,
    Structure,
    dense,
    graph_structure,
    reference,
    sqeuclidean_lowrank,
)

#: How :func:`gw_cluster` sets the cluster masses (the plan's column sums).
SIZES = ("balanced", "estimated", "free")
#: Label spreading's weight of the graph against the seeds (:func:`spread_labels`). On digits
#: (the development set, the known-pairs curve's models at shares 0.3 and 0.5) every value
#: from 0.1 to 0.7 scored within 0.006 of each other, and 0.99 (Zhou et al.'s) 0.03 lower:
#: ``scripts/pair_spreading_digits.py``.
SPREAD_ALPHA = 0.5


def structure_mean(structure: Structure) -> float:
    """Mean entry of a dense, factored or sparse (n, m) structure, without densifying it."""
    if isinstance(structure, SparseGraph):
        return structure.mean()
    if isinstance(structure, LowRank):
        n, m = structure.shape[-2:]
        return float(structure.left.sum(0) @ structure.right.sum(0)) / (n * m)
    return float(structure.mean())


def _feasible_start(start: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """A coupling of (p, q) near a hard start: the product coupling nudged toward the start,
    then one round of column and row scaling (the conditional gradient keeps it feasible)."""
    start = 0.5 * start + 0.5 * p[:, None] * q[None, :]
    start = start * (q / start.sum(0).clamp_min(1e-30))[None, :]
    return start * (p / start.sum(1).clamp_min(1e-30))[:, None]


def _by_rank(masses: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """``masses`` (K,) reordered so that the k-th largest goes to the k-th largest of
    ``sizes`` (K,): cluster indices are arbitrary, and a start keeps its own largest cluster
    largest."""
    ranks = sizes.argsort(stable=True).argsort()
    return masses.sort().values[ranks]


def cluster_structure(n_clusters: int, off_diagonal: float, like: torch.Tensor) -> torch.Tensor:
    """The K x K structure of K well-separated clusters: 0 within, ``off_diagonal`` across."""
    eye = torch.eye(n_clusters, dtype=like.dtype, device=like.device)
    return off_diagonal * (1 - eye)


def gw_cluster(
    x: ArrayLike | None = None,
    n_clusters: int = 2,
    *,
    structure: Structure | None = None,
    restarts: int = 5,
    max_iter: int = 100,
    sizes: str = "free",
    embedding: torch.Tensor | None = None,
    random_state: int = 0,
    masses: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Cluster points by matching their structure to a K-cluster structure, without labels.

    Solves ``min_T sum (C[i,k] - I_K[a,b])^2 T[i,a] T[k,b]`` over ``T >= 0`` with rows
    summing to ``1/N``, where ``C`` (N, N) is the points' structure (default: squared distances
    of ``x`` (N, d), normalised by their maximum) and ``I_K`` has zeros within clusters and,
    across, the value that makes its mean match ``C``'s under equal sizes. The column sums
    (the cluster masses) depend on ``sizes`` (see :data:`SIZES`):

    * ``"free"``: left free (semi-relaxed GW); prone to collapse onto a few clusters.
    * ``"balanced"``: ``1/K`` each, an exact GW problem with network-simplex steps. It caps
      the accuracy on imbalanced data (e.g. 0.682 on Prokaryotic's class shares).
    * ``"estimated"``: the masses are estimated without labels, as the cluster sizes of the
      lowest-cost of ``restarts`` k-means runs in the first embedding (below), then every
      restart solves exact GW with them (the largest mass on its start's largest cluster),
      so that no cluster can collapse. On balanced data it loses accuracy (digits: k-means
      merges two digits and splits another, and the masses inherit that).

    ``masses`` (K,): cluster masses given by the caller (e.g. the sizes of a partition found
    before), used as ``"estimated"`` uses its own (placed by rank on each start's clusters);
    they must be positive and sum to one, and ``sizes`` is then ignored.

    Conditional gradient from ``restarts`` spread-out
    hard initialisations, cycling over three kinds: k-means++ and a few Lloyd steps in
    ``embedding`` (N, e) if given (e.g. :func:`spectral_embedding` for a graph structure) and
    in the structure's classical scaling (principal coordinates for squared distances), and
    k-means++ on the structure's rows; the run with the lowest objective wins (a label-free
    choice).
    Returns ``(labels (N,), plan (N, K), objective)``.
    """
    if structure is None:
        if x is None:
            raise ValueError("give points x or a structure")
        x = as_tensor(x, "x")
        check_finite(x, "x")
        structure = sqeuclidean_lowrank(x)
    n = structure.shape[-1]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must lie in [1, {n}], got {n_clusters}")
    if sizes not in SIZES:
        raise ValueError(f"sizes must be one of {SIZES}, got {sizes!r}")
    like = reference(structure)
    p = torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    off = structure_mean(structure) * n_clusters / max(n_clusters - 1, 1)
    target = cluster_structure(n_clusters, off, like)
    uniform = torch.full((n_clusters,), 1.0 / n_clusters, dtype=like.dtype, device=like.device)
    gen = torch.Generator().manual_seed(random_state)
    if embedding is not None and embedding.shape[0] != n:
        raise ValueError(f"embedding has {embedding.shape[0]} rows, the structure {n}")
    # Starts cycle over embeddings: each kind of start finds different local optima of this
    # non-convex problem, and the objective (not any label) picks among them.
    embeddings = [
        e for e in (embedding, _classical_embedding(structure, n_clusters)) if e is not None
    ]
    embeddings.append(None)
    estimate = None
    if masses is not None:
        estimate = _checked_masses(masses, n_clusters, like)
        sizes = "estimated"
    elif sizes == "estimated":
        estimate = _estimated_masses(structure, embeddings[0], n_clusters, restarts, random_state)
    best = None
    for restart in range(max(1, restarts)):
        start = torch.zeros(n, n_clusters, dtype=like.dtype, device=like.device)
        kind = embeddings[restart % len(embeddings)]
        assign, _ = _hard_start(structure, kind, n_clusters, gen)
        start.scatter_(1, assign[:, None], p[:, None])
        q = uniform if estimate is None else _by_rank(estimate, start.sum(0))
        if sizes != "free":
            start = _feasible_start(start, p, q)
        plan, history = _conditional_gradient(
            None,
            structure,
            target,
            p,
            q,
            0.0,
            start,
            max_iter,
            1e-7,
            0.0,
            relaxed=sizes == "free",
        )
        value = history[-1]  # the objective of the returned plan
        if best is None or value < best[2]:
            best = (plan, history, value)
    plan, _, value = best
    return plan.argmax(1), plan, value


def head_neighbors(n_rows: int, n_clusters: int, neighbors: int | None = None) -> int:
    """The head's kNN-graph size: ``neighbors`` if given, else half the mean cluster size
    ``n_rows / (2 K)`` and at least 5."""
    return neighbors or max(5, round(n_rows / (2 * n_clusters)))


def head_structure(
    x: ArrayLike, n_clusters: int, *, structure: str = "graph", neighbors: int | None = None
) -> torch.Tensor:
    """The dense (N, N) structure the head matches for points x (N, d): the kNN-graph
    dissimilarity ``1 - W`` (:func:`~modalign.ot.graph_structure`, :func:`head_neighbors`)
    for ``"graph"``, the squared distances over their maximum for ``"sqeuclidean"``."""
    x = as_tensor(x, "x")
    check_finite(x, "x")
    if structure == "graph":
        return graph_structure(x, head_neighbors(len(x), n_clusters, neighbors))
    if structure == "sqeuclidean":
        return dense(sqeuclidean_lowrank(x, normalize=True))
    raise ValueError(f"structure must be 'graph' or 'sqeuclidean', got {structure!r}")


def graph_cluster(
    x: ArrayLike | None,
    n_clusters: int,
    *,
    structure: str = "graph",
    neighbors: int | None = None,
    restarts: int = 6,
    sizes: str = "balanced",
    random_state: int = 0,
    dissimilarity: Structure | None = None,
    refine_sizes: bool = False,
) -> torch.Tensor:
    """The clustering head of OTM and of its head-alone baselines: labels (N,) of points x (N, d).

    ``structure="graph"``: GW matching (:func:`gw_cluster`) of the kNN-graph dissimilarity
    ``1 - W`` (:func:`~modalign.ot.graph_structure`, ``neighbors`` default half the mean
    cluster size and at least 5) to the K-cluster structure, started from k-means in its
    spectral embedding; ``"sqeuclidean"``: of the squared distances (balanced k-means in GW
    form). ``sizes``: the cluster masses, ``"balanced"`` (equal), ``"estimated"`` (from each
    restart's start) or ``"free"`` (semi-relaxed GW), see :func:`gw_cluster`. No label is
    read anywhere: restarts are ranked by the GW objective.

    ``dissimilarity`` (N, N): a structure of that kind computed elsewhere (e.g. the mean of
    several views' structures over their known pairs, or a :class:`SparseGraph` such as
    :func:`joined_structure`'s), matched instead of x's own; x is then not used and may be
    None. A dense graph dissimilarity ``1 - W`` is matched as a :class:`SparseGraph` of its
    ``W``: the same problem, solved with sparse products.

    ``refine_sizes`` (graph structures only): let the cluster sizes follow the graph. The GW
    partition is moved row by row to a lower normalised cut (:func:`~modalign.ot.ncut.ncut_refine`),
    GW matching runs again with that partition's sizes as its cluster masses (the same starts),
    and its partition is moved again. One such round, chosen on digits (the development set,
    ``scripts/head_refine_digits.py``): on the aligned views' mean graph it kept balanced
    classes (0.934 against 0.931 on OTM's codes) and gained 0.11 on a subsample of unequal
    classes; a second round gained nothing. On a single weak view it can lose (digits view 1:
    0.677 against 0.744), which is why OTM refines only its aligned head.
    """
    if structure not in ("graph", "sqeuclidean"):
        raise ValueError(f"structure must be 'graph' or 'sqeuclidean', got {structure!r}")
    graph = dissimilarity
    if graph is None and structure == "graph":
        graph = head_structure(x, n_clusters, neighbors=neighbors)
    # Squared distances stay factored (gw_cluster builds them from x, low rank).
    emb = None
    if structure == "graph":
        if not isinstance(graph, SparseGraph):
            # A kNN graph's W is sparse (6.7% non-zeros on a digits view, 11.3% on the mean
            # of two), and the GW solver's products then cost O(nnz): the same partitions
            # several times faster (benchmarks/head_sparse.py prints both).
            graph = SparseGraph.from_dense(1 - graph)
        emb = spectral_embedding(graph, n_clusters)
    if refine_sizes and structure != "graph":
        raise ValueError("refine_sizes needs structure='graph' (a normalised cut needs a graph)")

    def match(masses: torch.Tensor | None = None) -> torch.Tensor:
        labels, _, _ = gw_cluster(
            x if graph is None else None,
            n_clusters,
            structure=graph,
            embedding=emb,
            restarts=restarts,
            sizes=sizes,
            random_state=random_state,
            masses=masses,
        )
        return labels

    labels = match()
    if refine_sizes:
        moved = ncut_refine(graph, labels, n_clusters)
        labels = ncut_refine(graph, match(partition_masses(moved, n_clusters)), n_clusters)
    return labels


def pair_fused_structures(
    structures: Sequence[torch.Tensor], known: torch.Tensor
) -> list[torch.Tensor]:
    """Per view, its structure with the block between known pairs averaged over the views.

    ``structures[m]`` (N, N): view m's dissimilarity (:func:`head_structure`), rows at the
    same positions in every view; ``known`` (N,) bool: True where row i of every view is the
    same sample (a known pair). Entry (i, j) with both rows known pairs becomes the mean over
    views of ``structures[v][i, j]``; every other entry stays view m's own. No known pair:
    the views' own structures; all of them: the same mean structure for every view. (OTM's
    partially aligned prediction of issue 15's second round, the head on each fused
    structure; ``scripts/pair_spreading_digits.py`` compares it with today's, which clusters
    the known pairs apart and spreads their clusters.)
    """
    if not structures:
        raise ValueError("give at least one view's structure")
    n = structures[0].shape[-1]
    if any(s.shape != (n, n) for s in structures):
        shapes = [tuple(s.shape) for s in structures]
        raise ValueError(f"pair fusion needs (N, N) structures of one N, got {shapes}")
    known = torch.as_tensor(known, dtype=torch.bool, device=structures[0].device).reshape(-1)
    if known.numel() != n:
        raise ValueError(f"known marks {known.numel()} rows, the structures have {n}")
    block = known[:, None] & known[None, :]
    mean = torch.stack(list(structures)).mean(0)
    return [torch.where(block, mean, s) for s in structures]


def joined_structure(
    affinities: Sequence[torch.Tensor], n_known: int
) -> tuple[SparseGraph, list[torch.Tensor]]:
    """One graph over every view's rows, joined through the rows known to be the same sample.

    ``affinities[m]`` (N_m, N_m): view m's symmetric kNN weights ``W`` (e.g. ``1 -
    head_structure``) over its rows, its ``n_known`` known pairs first, in the same order in
    every view. The joined graph has one node per known pair and one per other row of each
    view, ``U = n_known + sum_m (N_m - n_known)`` nodes; an edge seen by several views (both
    ends known pairs) takes their mean weight, one seen by one view that view's, and rows of
    different views that are not known pairs stay unlinked. Clustering it keeps each view's
    neighbourhoods over all of its rows (every cluster whole), where clustering the known
    pairs alone sees a random part of each cluster.

    Returns:
        The dissimilarity ``1 - W`` (U, U), kept sparse (:class:`SparseGraph`: the head's
        products then cost O(nnz) rather than O(U^2)), and, per view, the (N_m,) indices of
        its rows in the joined graph.
    """
    if not affinities:
        raise ValueError("joined_structure needs at least one view")
    for m, w in enumerate(affinities):
        if w.dim() != 2 or w.shape[0] != w.shape[1] or w.shape[0] < n_known:
            raise ValueError(
                f"view {m}: affinity must be square with at least {n_known} rows (the known "
                f"pairs), got shape {tuple(w.shape)}"
            )
    ref = affinities[0]
    known = torch.arange(n_known, device=ref.device)
    index, start = [], n_known
    for w in affinities:
        loose = w.shape[0] - n_known
        index.append(torch.cat([known, torch.arange(start, start + loose, device=ref.device)]))
        start += loose
    rows, cols, values = [], [], []
    for w, nodes in zip(affinities, index):
        i, j = w.nonzero(as_tuple=True)
        rows.append(nodes[i])
        cols.append(nodes[j])
        values.append(w[i, j].to(ref.dtype))
    rows, cols, values = torch.cat(rows), torch.cat(cols), torch.cat(values)
    # Only the known pairs' block is seen by more than one view: average it there.
    shared = (rows < n_known) & (cols < n_known)
    values = torch.where(shared, values / len(affinities), values)
    return SparseGraph.from_entries(rows, cols, values, start), index


def spread_labels(
    affinity: torch.Tensor,
    seeds: torch.Tensor,
    seed_labels: torch.Tensor,
    n_clusters: int,
    alpha: float = SPREAD_ALPHA,
) -> torch.Tensor:
    """Label spreading (Zhou et al. 2004): labels (N,) for every row of a graph from those of
    its ``seeds``, which keep theirs.

    ``affinity`` (N, N): symmetric non-negative weights ``W`` (e.g. ``1 - head_structure``);
    ``seeds`` (S,) row indices with ``seed_labels`` (S,) in ``[0, n_clusters)``. Minimises
    ``sum_ij W_ij |F_i / sqrt(d_i) - F_j / sqrt(d_j)|^2 + (1/alpha - 1) |F - Y|^2`` over
    scores ``F`` (N, K), ``Y`` the seeds' one-hot labels and ``d = W 1``, whose minimiser is
    ``(I - alpha S)^-1 Y`` up to scale with ``S = D^-1/2 W D^-1/2``; each row takes its
    highest score. A row with no path to a seed keeps score zero and takes cluster 0.
    """
    n = affinity.shape[-1]
    if affinity.shape != (n, n):
        raise ValueError(f"affinity must be square, got {tuple(affinity.shape)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    seeds = torch.as_tensor(seeds, dtype=torch.long, device=affinity.device).reshape(-1)
    seed_labels = torch.as_tensor(seed_labels, dtype=torch.long, device=affinity.device)
    if seed_labels.shape != seeds.shape:
        raise ValueError(f"{seeds.numel()} seeds but {seed_labels.numel()} seed labels")
    if seeds.numel() and not 0 <= int(seed_labels.min()) <= int(seed_labels.max()) < n_clusters:
        raise ValueError(f"seed labels must lie in [0, {n_clusters})")
    w = affinity.double().clone().fill_diagonal_(0)
    inv_sqrt = w.sum(1).clamp_min(1e-30).rsqrt()
    normalised = inv_sqrt[:, None] * w * inv_sqrt[None, :]
    onehot = torch.zeros(n, n_clusters, dtype=torch.float64, device=affinity.device)
    onehot[seeds, seed_labels] = 1
    eye = torch.eye(n, dtype=torch.float64, device=affinity.device)
    scores = torch.linalg.solve(eye - alpha * normalised, onehot)
    labels = scores.argmax(1)
    labels[seeds] = seed_labels
    return labels


def gw_cluster_loss(
    codes: torch.Tensor,
    n_clusters: int,
    *,
    restarts: int = 1,
    max_iter: int = 30,
    random_state: int = 0,
) -> torch.Tensor:
    """Differentiable semi-relaxed GW distance of ``codes`` (B, d) to a K-cluster structure.

    The coupling is solved without gradient (:func:`gw_cluster`); by the envelope theorem the
    gradient of the optimal value with respect to the codes is that of the objective at the
    fixed coupling, which pulls the codes into K tight, well-separated groups.
    """
    sq = (codes[:, None, :] - codes[None, :, :]).pow(2).sum(-1)
    structure = sq / sq.detach().max().clamp_min(1e-12)
    with torch.no_grad():
        _, plan, _ = gw_cluster(
            structure=structure.detach(),
            n_clusters=n_clusters,
            restarts=restarts,
            max_iter=max_iter,
            sizes="free",
            random_state=random_state,
        )
    mean = float(structure.detach().mean())
    target = cluster_structure(n_clusters, mean * n_clusters / max(n_clusters - 1, 1), structure)
    return fgw_objective(plan.to(structure.dtype), None, structure, target, 0.0)


def _row(structure: Structure, i: int) -> torch.Tensor:
    if isinstance(structure, SparseGraph):
        return structure.row(i)
    if isinstance(structure, LowRank):
        return structure.left[i] @ structure.right.T
    return structure[i]


#: Above this many points embeddings use a few leading eigenpairs (ARPACK's Lanczos) instead
#: of a full O(n^3) eigendecomposition, and a factored structure is never densified.
_EMBED_MAX = 4096


def _classical_embedding(structure: Structure, k: int) -> torch.Tensor:
    """Classical scaling of a dissimilarity: the top-``k`` eigenvectors of ``-J C J / 2``
    (J the centring matrix), scaled by the square roots of their eigenvalues, (n, k).

    For squared distances these are the points' principal coordinates; for ``1 - W`` they are
    the leading eigenvectors of the centred affinity, a spectral embedding. Either way nearby
    rows in the embedding are rows the structure calls close, which makes good starts.
    """
    n = structure.shape[-1]
    k = min(k, n)
    if isinstance(structure, SparseGraph) and k < n - 1:
        # -J (1 1^T - W) J / 2 = J W J / 2: J kills the constant part.
        w = structure.to_scipy()

        def centred(v: np.ndarray) -> np.ndarray:
            return 0.5 * _centre(w @ _centre(v))

        operator = LinearOperator((n, n), matvec=centred, dtype=np.float64)
        values, vectors = _leading_eigh(operator, k, structure.device)
    elif _lanczos(n, k):
        if isinstance(structure, LowRank):
            # J L R^T J = (J L)(J R)^T: centre the factors' columns.
            factors = (structure.left, structure.right)
            left, right = (_centre(f.detach().double().cpu().numpy()) for f in factors)
            c = aslinearoperator(left) @ aslinearoperator(right.T)
        else:
            # J (C - max C) J = J C J, and C - max C is sparse for a graph's 1 - W.
            c = _as_operator(structure - structure.max())

        def gram(v: np.ndarray) -> np.ndarray:  # -J (C + C^T) J v / 4, symmetric
            v = _centre(v)
            return -0.25 * _centre(c.matvec(v) + c.rmatvec(v))

        operator = LinearOperator((n, n), matvec=gram, dtype=np.float64)
        values, vectors = _leading_eigh(operator, k, structure.device)
    else:
        c = dense(structure).double()
        c = 0.5 * (c + c.T)
        gram = -0.5 * (c - c.mean(0, keepdim=True) - c.mean(1, keepdim=True) + c.mean())
        values, vectors = _leading_eigh(gram, k, structure.device)
    return vectors * values.clamp_min(0).sqrt()


def spectral_embedding(affinity: torch.Tensor | SparseGraph, k: int) -> torch.Tensor:
    """Ng-Jordan-Weiss spectral embedding (n, k) of a symmetric non-negative affinity (n, n)
    (dense, or a :class:`SparseGraph`'s ``W``): the top-``k`` eigenvectors of
    ``D^-1/2 W D^-1/2``, rows scaled to unit length. The starts of :func:`gw_cluster` for a
    graph structure ``1 - W``."""
    if isinstance(affinity, SparseGraph):
        # Sparse: Lanczos whatever the size, its products cost O(nnz).
        w = affinity.to_scipy()
        n, k = w.shape[0], min(k, w.shape[0])
        inv_sqrt = 1 / np.sqrt(np.maximum(np.asarray(w.sum(1)).ravel(), 1e-30))
        normalised = w.multiply(inv_sqrt[:, None]).multiply(inv_sqrt[None, :]).tocsr()
        normalised = (
            aslinearoperator(normalised) if k < n - 1 else torch.from_numpy(normalised.toarray())
        )
    else:
        w = affinity.double()
        n, k = len(w), min(k, len(w))
        inv_sqrt = w.sum(1).clamp_min(1e-30).rsqrt()
        normalised = inv_sqrt[:, None] * w * inv_sqrt[None, :]
        if _lanczos(n, k):
            normalised = _as_operator(normalised)
    _, top = _leading_eigh(normalised, k, affinity.device)
    return top / top.norm(dim=1, keepdim=True).clamp_min(1e-30)


def _lanczos(n: int, k: int) -> bool:
    """Whether ``k`` leading eigenpairs of an (n, n) matrix are found by Lanczos (large n)."""
    return n > _EMBED_MAX and k < n - 1


def _centre(v: np.ndarray) -> np.ndarray:
    """``J v``: columns (or a vector) minus their mean."""
    return v - v.mean(0)


def _as_operator(matrix: torch.Tensor) -> LinearOperator:
    """A float64 CPU operator of a dense (n, n) matrix, kept sparse (CSR) when at most a tenth
    of its entries are non-zero: a kNN graph's matrix-vector products then cost O(n k)."""
    array = matrix.detach().double().cpu().numpy()
    if np.count_nonzero(array) <= array.size // 10:
        return aslinearoperator(csr_matrix(array))
    return aslinearoperator(array)


def _leading_eigh(
    matrix: torch.Tensor | LinearOperator, k: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest eigenvalues (k,) (ascending) and eigenvectors (n, k), on ``device``,
    of a symmetric float64 (n, n) matrix (a full ``eigh``) or operator (ARPACK's Lanczos
    iteration from a fixed start vector, reproducible, that finds only the ``k`` wanted)."""
    if isinstance(matrix, torch.Tensor):
        values, vectors = torch.linalg.eigh(matrix)
        return values[-k:].to(device), vectors[:, -k:].to(device)
    start = np.random.default_rng(0).standard_normal(matrix.shape[0])
    values, vectors = eigsh(matrix, k=k, which="LA", v0=start)
    order = np.argsort(values)
    return (
        torch.from_numpy(values[order]).to(device),
        torch.from_numpy(np.ascontiguousarray(vectors[:, order])).to(device),
    )


def _hard_start(
    structure: Structure, embedding: torch.Tensor | None, k: int, gen: torch.Generator
) -> tuple[torch.Tensor, float]:
    """One start: cluster indices (n,) and their cost. k-means++ seeds then Lloyd steps in the
    embedding (cost: the k-means inertia) or, without one, each row to its nearest seed by the
    structure itself (cost: the k-medoids sum of each row's dissimilarity to its seed)."""
    if embedding is None:
        seeds = _spread_seeds(structure, k, gen)
        to_seeds = torch.stack([_row(structure, s) for s in seeds], -1)
        nearest = to_seeds.min(1)
        return nearest.indices, float(nearest.values.sum())
    # Factored distances: seeding reads k rows, never the n x n matrix.
    seeds = _spread_seeds(sqeuclidean_lowrank(embedding, normalize=False), k, gen)
    centres = embedding[seeds]
    for _ in range(10):
        assign = torch.cdist(embedding, centres).argmin(1)
        for a in range(k):
            members = embedding[assign == a]
            if len(members):
                centres[a] = members.mean(0)
    nearest = torch.cdist(embedding, centres).min(1)
    return nearest.indices, float(nearest.values.pow(2).sum())


def _estimated_masses(
    structure: Structure, embedding: torch.Tensor | None, k: int, tries: int, seed: int
) -> torch.Tensor:
    """Cluster masses (k,) estimated without labels: the sizes of the lowest-cost start of
    ``tries`` seeds (k-means in ``embedding``, else k-medoids on the structure's rows), each
    at least one point's mass (taken from the largest) so that no cluster of the exact GW
    problem is empty.

    The start's own cost, not the GW objective, ranks the seeds: with a graph structure the
    GW objective to the fixed K-cluster structure prefers equal sizes (it charges every
    within-cluster dissimilarity, and a sparse graph's are near the maximum), and it would
    pick the most balanced estimate rather than the best one.
    """
    gen = torch.Generator().manual_seed(seed)
    assign, _ = min(
        (_hard_start(structure, embedding, k, gen) for _ in range(max(1, tries))),
        key=lambda start: start[1],
    )
    return partition_masses(assign, k).to(reference(structure))


def partition_masses(labels: torch.Tensor, k: int) -> torch.Tensor:
    """The cluster masses (k,) float64 of a partition ``labels`` (n,) of n >= k rows, each
    at least one row's mass (taken from the largest cluster), so that an exact GW problem
    with them has no empty cluster."""
    counts = torch.bincount(torch.as_tensor(labels).cpu(), minlength=k)
    for empty in (counts == 0).nonzero()[:, 0].tolist():
        # One point's mass moves from the currently largest cluster: k <= n keeps it possible.
        counts[counts.argmax()] -= 1
        counts[empty] = 1
    return counts.double() / len(labels)


def _checked_masses(masses: torch.Tensor, k: int, like: torch.Tensor) -> torch.Tensor:
    """Caller-given cluster masses (k,), positive and summing to one, as ``like``'s kind."""
    masses = torch.as_tensor(masses).to(like.dtype).to(like.device).reshape(-1)
    if len(masses) != k or not bool((masses > 0).all()):
        raise ValueError(f"masses must be {k} positive numbers, got {masses.tolist()}")
    if abs(float(masses.sum()) - 1) > 1e-6:
        raise ValueError(f"masses must sum to one, got {float(masses.sum())}")
    return masses


def _spread_seeds(structure: Structure, k: int, gen: torch.Generator) -> list[int]:
    """k-means++ seeding on the structure's distances (random but spread out)."""
    n = structure.shape[-1]
    seeds = [int(torch.randint(n, (1,), generator=gen))]
    closest = _row(structure, seeds[0]).clamp_min(0)
    for _ in range(k - 1):
        weights = closest.double().cpu()
        if float(weights.sum()) <= 0:
            nxt = int(torch.randint(n, (1,), generator=gen))
        else:
            nxt = int(torch.multinomial(weights, 1, generator=gen))
        seeds.append(nxt)
        closest = torch.minimum(closest, _row(structure, nxt).clamp_min(0))
    return seeds
