"""Clustering by (semi-relaxed) Gromov-Wasserstein matching to a K-cluster structure."""

from __future__ import annotations

import torch

from modalign.ot._checks import ArrayLike, as_tensor, check_finite
from modalign.ot.gromov import _conditional_gradient, fgw_objective
from modalign.ot.structure import (
    LowRank,
    Structure,
    dense,
    graph_structure,
    sq_distances,
    sqeuclidean_lowrank,
)


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
    balanced: bool = False,
    embedding: torch.Tensor | None = None,
    random_state: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Cluster points by matching their structure to a K-cluster structure, without labels.

    Solves the semi-relaxed GW problem ``min_T sum (C[i,k] - I_K[a,b])^2 T[i,a] T[k,b]``
    over ``T >= 0`` with rows summing to ``1/N`` and free column sums (the cluster sizes),
    (``balanced=True``: clusters of equal mass, an exact GW problem with network-simplex
    steps), where ``C`` (N, N) is the points' structure (default: squared distances of ``x`` (N, d),
    normalised by their maximum) and ``I_K`` has zeros within clusters and, across, the value
    that makes its mean match ``C``'s. Conditional gradient from ``restarts`` spread-out
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
    like = structure.left if isinstance(structure, LowRank) else structure
    p = torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    ones = torch.ones_like(p)
    mean = (
        float((dense(structure) @ ones).sum()) / n**2
        if n <= 4096
        else float((structure.left.T @ ones) @ (structure.right.T @ ones)) / n**2
    )
    off = mean * n_clusters / max(n_clusters - 1, 1)
    target = cluster_structure(n_clusters, off, like)
    q = torch.full((n_clusters,), 1.0 / n_clusters, dtype=like.dtype, device=like.device)
    gen = torch.Generator().manual_seed(random_state)
    if embedding is not None and embedding.shape[0] != n:
        raise ValueError(f"embedding has {embedding.shape[0]} rows, the structure {n}")
    # Starts cycle over embeddings: each kind of start finds different local optima of this
    # non-convex problem, and the objective (not any label) picks among them.
    embeddings = [
        e for e in (embedding, _classical_embedding(structure, n_clusters)) if e is not None
    ]
    embeddings.append(None)
    best = None
    for restart in range(max(1, restarts)):
        start = torch.zeros(n, n_clusters, dtype=like.dtype, device=like.device)
        kind = embeddings[restart % len(embeddings)]
        start.scatter_(1, _hard_start(structure, kind, n_clusters, gen)[:, None], p[:, None])
        if balanced:  # a feasible start: the product coupling nudged toward the hard one
            start = 0.5 * start + 0.5 * p[:, None] * q[None, :]
            start = start * (q / start.sum(0).clamp_min(1e-30))[None, :]
            start = start * (p / start.sum(1).clamp_min(1e-30))[:, None]
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
            relaxed=not balanced,
        )
        value = float(fgw_objective(plan, None, structure, target, 0.0))
        if best is None or value < best[2]:
            best = (plan, history, value)
    plan, _, value = best
    return plan.argmax(1), plan, value


def graph_cluster(
    x: ArrayLike,
    n_clusters: int,
    *,
    structure: str = "graph",
    neighbors: int | None = None,
    restarts: int = 6,
    balanced: bool = True,
    random_state: int = 0,
) -> torch.Tensor:
    """The clustering head of OTM and of its head-alone baselines: labels (N,) of points x (N, d).

    ``structure="graph"``: GW matching (:func:`gw_cluster`) of the kNN-graph dissimilarity
    ``1 - W`` (:func:`~modalign.ot.graph_structure`, ``neighbors`` default half the mean
    cluster size and at least 5) to the K-cluster structure, started from k-means in its
    spectral embedding; ``"sqeuclidean"``: of the squared distances (balanced k-means in GW
    form). ``balanced``: clusters of equal mass; else sizes are free (semi-relaxed GW). No
    label is read anywhere: restarts are ranked by the GW objective.
    """
    x = as_tensor(x, "x")
    check_finite(x, "x")
    graph = emb = None
    if structure == "graph":
        k = neighbors or max(5, round(len(x) / (2 * n_clusters)))
        graph = graph_structure(x, k)
        emb = spectral_embedding(1 - graph, n_clusters)
    elif structure != "sqeuclidean":
        raise ValueError(f"structure must be 'graph' or 'sqeuclidean', got {structure!r}")
    labels, _, _ = gw_cluster(
        x,
        n_clusters,
        structure=graph,
        embedding=emb,
        restarts=restarts,
        balanced=balanced,
        random_state=random_state,
    )
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
            random_state=random_state,
        )
    mean = float(structure.detach().mean())
    target = cluster_structure(n_clusters, mean * n_clusters / max(n_clusters - 1, 1), structure)
    return fgw_objective(plan.to(structure.dtype), None, structure, target, 0.0)


def _row(structure: Structure, i: int) -> torch.Tensor:
    if isinstance(structure, LowRank):
        return structure.left[i] @ structure.right.T
    return structure[i]


#: Above this many points the structure is not densified for an embedding; starts then seed
#: on the structure's rows directly.
_EMBED_MAX = 4096


def _classical_embedding(structure: Structure, k: int) -> torch.Tensor | None:
    """Classical scaling of a dissimilarity: the top-``k`` eigenvectors of ``-J C J / 2``
    (J the centring matrix), scaled by the square roots of their eigenvalues, (n, k).

    For squared distances these are the points' principal coordinates; for ``1 - W`` they are
    the leading eigenvectors of the centred affinity, a spectral embedding. Either way nearby
    rows in the embedding are rows the structure calls close, which makes good starts.
    """
    n = structure.shape[-1]
    if n > _EMBED_MAX:
        return None
    c = dense(structure).double()
    c = 0.5 * (c + c.T)
    gram = -0.5 * (c - c.mean(0, keepdim=True) - c.mean(1, keepdim=True) + c.mean())
    values, vectors = torch.linalg.eigh(gram)
    top = min(k, n)
    return vectors[:, -top:] * values[-top:].clamp_min(0).sqrt()


def spectral_embedding(affinity: torch.Tensor, k: int) -> torch.Tensor:
    """Ng-Jordan-Weiss spectral embedding (n, k) of a symmetric non-negative affinity (n, n):
    the top-``k`` eigenvectors of ``D^-1/2 W D^-1/2``, rows scaled to unit length. The
    starts of :func:`gw_cluster` for a graph structure ``1 - W``."""
    w = affinity.double()
    inv_sqrt = w.sum(1).clamp_min(1e-30).rsqrt()
    _, vectors = torch.linalg.eigh(inv_sqrt[:, None] * w * inv_sqrt[None, :])
    top = vectors[:, -min(k, len(w)) :]
    return top / top.norm(dim=1, keepdim=True).clamp_min(1e-30)


def _hard_start(
    structure: Structure, embedding: torch.Tensor | None, k: int, gen: torch.Generator
) -> torch.Tensor:
    """Cluster indices (n,) of one start: k-means++ seeds then Lloyd steps in the embedding
    (or, without one, each row to its nearest seed by the structure itself)."""
    if embedding is None:
        seeds = _spread_seeds(structure, k, gen)
        return torch.stack([_row(structure, s) for s in seeds], -1).argmin(1)
    dist = sq_distances(embedding)
    seeds = _spread_seeds(dist, k, gen)
    centres = embedding[seeds]
    for _ in range(10):
        assign = torch.cdist(embedding, centres).argmin(1)
        for a in range(k):
            members = embedding[assign == a]
            if len(members):
                centres[a] = members.mean(0)
    return torch.cdist(embedding, centres).argmin(1)


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
