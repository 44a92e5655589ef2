"""Multi-view clustering baselines (DESIGN.md section 3: trivial baselines beside, and the
head alone beside every method that clusters through a head).

Every baseline has the signature ``(views, n_clusters, seed, *, aligned=True) -> labels``:

* ``views``: a list of ``V`` arrays or tensors, view ``v`` of shape ``(N_v, D_v)``, *already
  preprocessed* by the caller (the same inputs the learned methods get, e.g. from
  :class:`modalign.data.Preprocessor`); the baselines never rescale features themselves apart
  from the per-view balancing described below;
* ``n_clusters``: the number of clusters ``K``;
* ``seed``: the random state of every stochastic step;
* ``aligned``: whether row ``i`` of every view is the same sample. In the unaligned setting
  concatenating rows of different views pairs unrelated samples, so the concatenating baselines
  refuse it (``ValueError``); only the single-view baselines (:func:`majority`,
  :func:`kmeans_best_view`, :func:`graph_best_view`, :func:`graph_each_view`) are valid there.

The ``graph_*`` baselines are OTM's clustering head
(:meth:`modalign.methods.OTM.assign_clusters`, its settings from the
:class:`~modalign.methods.OTMConfig` of keyword ``head``, the defaults when not given) applied
to the raw views with no training: what a learned method scores through that head is credited
to its learning only beyond them.

None of them ever receives labels. Every baseline returns ``(N,)`` int64 cluster labels in
``0..K-1`` for the rows of the views (of the chosen view for the ``*_best_view`` baselines,
which also return that view's index; one array per view for :func:`graph_each_view`).
:func:`run_baseline` runs any of them by name and returns its clusters per view, and
:func:`score_prediction` scores such a prediction: the one protocol of
:func:`evaluate_baselines` and of ``modalign cluster``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.cluster import KMeans, SpectralClustering

from modalign.eval.metrics import clustering_scores

if TYPE_CHECKING:
    from modalign.data import MultiViewDataset
    from modalign.methods import OTMConfig

__all__ = [
    "ALIGNED_ONLY",
    "BASELINES",
    "Baseline",
    "Prediction",
    "ViewArray",
    "ViewSelection",
    "evaluate_baselines",
    "graph_best_view",
    "graph_concat",
    "graph_each_view",
    "graph_fused",
    "head_clusters",
    "kmeans_best_view",
    "kmeans_concat",
    "kmeans_each_view",
    "majority",
    "run_baseline",
    "scale_view",
    "score_prediction",
    "spectral_concat",
]

ViewArray = np.ndarray | torch.Tensor
#: Clusters per view: ``{v: (N_v,) labels of view v's rows}`` (one entry for a clustering of
#: aligned rows or of a single view; one per view when every view is clustered on its own).
Prediction = dict[int, np.ndarray]
Baseline = Callable[..., Prediction]


# ---------------------------------------------------------------------------------- input checks
def _as_views(views: Sequence[ViewArray], *, aligned: bool) -> list[np.ndarray]:
    """The views as float64 arrays, checked: 2-D, finite, equal row counts when aligned."""
    if isinstance(views, (np.ndarray, torch.Tensor)):
        raise ValueError("views must be a list of (N, D) arrays, one per view, not one array")
    if len(views) == 0:
        raise ValueError("views is empty: a baseline needs at least one view")
    out = []
    for v, x in enumerate(views):
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"view {v}: expected a non-empty (N, D) array, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"view {v}: expected numeric values, got dtype {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"view {v}: contains NaN or inf values")
        out.append(arr)
    rows = [x.shape[0] for x in out]
    if aligned and len(set(rows)) != 1:
        raise ValueError(
            f"views have different row counts {rows} but aligned=True; aligned views must have "
            "the same rows in the same order (pass aligned=False for unaligned data)"
        )
    return out


def _check_k(n_clusters: int, n_rows: int) -> int:
    if (
        isinstance(n_clusters, bool)
        or not isinstance(n_clusters, (int, np.integer))
        or n_clusters < 1
    ):
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    if n_clusters > n_rows:
        raise ValueError(f"n_clusters={n_clusters} exceeds the number of rows ({n_rows})")
    return int(n_clusters)


def _refuse_unaligned(name: str, aligned: bool) -> None:
    if not aligned:
        raise ValueError(
            f"{name} concatenates the views row by row, which is meaningless when rows of "
            "different views are not in correspondence (aligned=False); in the unaligned "
            "setting use a single-view baseline (majority, kmeans_best_view, graph_best_view, "
            "graph_each_view)"
        )


# ---------------------------------------------------------------------------------- helpers
def scale_view(x: ViewArray) -> np.ndarray:
    """Centre a ``(N, D)`` view and scale it to unit total variance.

    After scaling ``||x - mean||_F / sqrt(N) = 1``, i.e. the per-feature variances sum to 1, so
    that in a concatenation every view weighs the same whatever its dimension or units. The
    *centred* norm is used because k-means and kNN graphs ignore translations: an uncentred norm
    would measure the distance to the origin (always 1 per row after L2 row normalisation) rather
    than the spread that the clustering sees. A constant view (zero variance) is returned as zeros:
    it carries no clustering information.

    Returns:
        ``(N, D)`` float64 array.
    """
    arr = _as_views([x], aligned=True)[0]
    centred = arr - arr.mean(axis=0, keepdims=True)
    spread = np.sqrt((centred**2).sum() / arr.shape[0])
    if spread <= 1e-12 * (1.0 + np.abs(arr).max()):
        return np.zeros_like(centred)
    return centred / spread


def _concat(views: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([scale_view(x) for x in views], axis=1)


def _kmeans(x: np.ndarray, n_clusters: int, seed: int) -> KMeans:
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(x)


# ---------------------------------------------------------------------------------- baselines
def majority(
    views: Sequence[ViewArray], n_clusters: int, seed: int = 0, *, aligned: bool = True
) -> np.ndarray:
    """Every row in one cluster: the trivial baseline.

    Its purity and accuracy equal the share of the largest class, its NMI and ARI are 0. Returns
    ``(N_0,)`` zeros for the rows of view 0 (in the unaligned setting score them against view 0's
    row labels). ``n_clusters`` and ``seed`` are accepted for a uniform signature and unused.
    """
    xs = _as_views(views, aligned=aligned)
    _check_k(n_clusters, xs[0].shape[0])
    return np.zeros(xs[0].shape[0], dtype=np.int64)


def kmeans_concat(
    views: Sequence[ViewArray], n_clusters: int, seed: int = 0, *, aligned: bool = True
) -> np.ndarray:
    """k-means (10 restarts) on the concatenation of the views, each scaled by :func:`scale_view`.

    Returns:
        ``(N,)`` int64 cluster labels.

    Raises:
        ValueError: with ``aligned=False`` (concatenation needs row correspondence).
    """
    _refuse_unaligned("kmeans_concat", aligned)
    xs = _as_views(views, aligned=True)
    k = _check_k(n_clusters, xs[0].shape[0])
    return _kmeans(_concat(xs), k, seed).labels_.astype(np.int64)


def spectral_concat(
    views: Sequence[ViewArray],
    n_clusters: int,
    seed: int = 0,
    *,
    aligned: bool = True,
    n_neighbors: int = 10,
) -> np.ndarray:
    """Spectral clustering of the concatenated scaled views on a symmetric kNN graph.

    scikit-learn's ``SpectralClustering`` with ``affinity="nearest_neighbors"`` (``n_neighbors``,
    capped at ``N - 1``) and ``assign_labels="cluster_qr"`` (deterministic, no k-means restarts
    to tune). The graph may be disconnected on strongly clustered data; scikit-learn then warns
    and the spectral embedding is still usable.

    Returns:
        ``(N,)`` int64 cluster labels.

    Raises:
        ValueError: with ``aligned=False`` (concatenation needs row correspondence).
    """
    _refuse_unaligned("spectral_concat", aligned)
    xs = _as_views(views, aligned=True)
    n = xs[0].shape[0]
    k = _check_k(n_clusters, n)
    if n < 3:
        raise ValueError(f"spectral_concat needs at least 3 rows, got {n}")
    model = SpectralClustering(
        n_clusters=k,
        affinity="nearest_neighbors",
        n_neighbors=max(1, min(int(n_neighbors), n - 1)),
        assign_labels="cluster_qr",
        random_state=seed,
    )
    return model.fit_predict(_concat(xs)).astype(np.int64)


@dataclass(frozen=True)
class ViewSelection:
    """k-means on each view separately, and the label-free score that ranks the views.

    Attributes:
        labels: per view, the ``(N_v,)`` int64 k-means labels of its rows.
        explained: per view, the fraction of the view's total variance explained by its
            clustering, ``1 - inertia / total sum of squares``.
        null_explained: the same fraction for a structureless copy of the view (every feature
            permuted independently across rows: same marginals, no joint structure).
        score: ``explained - null_explained``, the selection criterion (higher is better).
        best: index of the view with the highest score.
    """

    labels: list[np.ndarray] = field(repr=False)
    explained: np.ndarray
    null_explained: np.ndarray
    score: np.ndarray
    best: int


def _explained(x: np.ndarray, n_clusters: int, seed: int) -> tuple[np.ndarray, float]:
    """k-means labels of ``x`` and the fraction of its total variance they explain."""
    centred = x - x.mean(axis=0, keepdims=True)
    total = float((centred**2).sum())
    km = _kmeans(centred, n_clusters, seed)
    frac = 0.0 if total <= 0 else 1.0 - float(km.inertia_) / total
    return km.labels_.astype(np.int64), frac


def kmeans_each_view(
    views: Sequence[ViewArray], n_clusters: int, seed: int = 0, *, aligned: bool = True
) -> ViewSelection:
    """Run k-means (10 restarts) on every view and rank the views without labels.

    Why this criterion. Raw inertia is not comparable across views (it carries each view's units),
    and the explained-variance ratio ``1 - inertia / total`` is not either: it grows as the
    dimension shrinks (with ``K`` clusters in 3 dimensions k-means explains most of the variance
    of *any* cloud). On Prokaryotic (L2 rows) the ratio picks the 3-feature proteome view
    (0.88) over the gene-repertoire view (0.17), whose clusters are far better. So each view's
    ratio is compared with that of a structureless reference of the same view, its features
    permuted independently across rows (a gap-statistic style null with the view's own
    marginals and dimension), and the view whose clustering explains the most variance *beyond
    the null* wins. The reference uses a generator seeded with ``seed``; no label is read.

    Returns:
        A :class:`ViewSelection`.
    """
    xs = _as_views(views, aligned=aligned)
    rng = np.random.default_rng(seed)
    labels, explained, null = [], [], []
    for x in xs:
        k = _check_k(n_clusters, x.shape[0])
        lab, frac = _explained(x, k, seed)
        # Each column permuted on its own: marginals kept, cluster structure destroyed.
        reference = rng.permuted(x, axis=0)
        _, frac_null = _explained(reference, k, seed)
        labels.append(lab)
        explained.append(frac)
        null.append(frac_null)
    exp, nul = np.asarray(explained), np.asarray(null)
    score = exp - nul
    return ViewSelection(labels, exp, nul, score, int(np.argmax(score)))


def kmeans_best_view(
    views: Sequence[ViewArray], n_clusters: int, seed: int = 0, *, aligned: bool = True
) -> tuple[np.ndarray, int]:
    """k-means on the single view chosen without labels by :func:`kmeans_each_view`.

    Valid in the aligned and the unaligned setting (each view is clustered on its own; views may
    then have different row counts).

    Returns:
        ``(labels, view)``: the chosen view's ``(N_view,)`` int64 cluster labels and its index.
        Score them against that view's row labels (``ds.row_labels(view)``).
    """
    sel = kmeans_each_view(views, n_clusters, seed, aligned=aligned)
    return sel.labels[sel.best], sel.best


# ---------------------------------------------------------------------------------- the head alone
def _head_model_config(head: OTMConfig | None, n_clusters: int, n_rows: int) -> OTMConfig:
    """The head's OTMConfig for ``n_clusters`` clusters of ``n_rows`` rows (default
    ``OTMConfig(n_clusters=K)``), checked against K."""
    from modalign.methods.otm import OTMConfig

    k = _check_k(n_clusters, n_rows)
    cfg = OTMConfig(n_clusters=k) if head is None else head
    if cfg.n_clusters != k:
        raise ValueError(f"head.n_clusters={cfg.n_clusters} but n_clusters={k}; they must agree")
    return cfg


def head_clusters(
    x: ViewArray,
    n_clusters: int,
    seed: int = 0,
    *,
    head: OTMConfig | None = None,
    content_order: bool = False,
) -> np.ndarray:
    """OTM's clustering head on points ``x`` ``(N, D)``, with no training: ``(N,)`` int64 labels.

    Runs ``OTM(head, random_state=seed).assign_clusters(x)`` (GW matching of the points' kNN
    graph to ``K`` clusters, :func:`modalign.ot.clustering.graph_cluster`) in float64 on
    ``head.device``, exactly as OTM clusters its codes. ``head``: the
    :class:`~modalign.methods.OTMConfig` whose head settings are used (``cluster_structure``,
    ``cluster_neighbors``, ``cluster_restarts``, ``cluster_sizes``); default
    ``OTMConfig(n_clusters=n_clusters)``. ``content_order``: cluster the rows sorted by content
    and map the labels back, as :meth:`~modalign.methods.OTM.predict` does in the unaligned
    setting, so that the clusters do not depend on the order in which the rows came.
    """
    # Imported here, not at module level: modalign.methods imports modalign.eval.supervised,
    # which runs this package's __init__; a top-level import would start methods' import from
    # inside its own.
    from modalign.methods.otm import OTM, canonical_order

    arr = _as_views([x], aligned=True)[0]
    cfg = _head_model_config(head, n_clusters, arr.shape[0])
    points = torch.from_numpy(arr)
    model = OTM(cfg, random_state=seed)
    if not content_order:
        return model.assign_clusters(points.to(cfg.device)).astype(np.int64)
    order = canonical_order(points).numpy()
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = model.assign_clusters(points[order].to(cfg.device))
    return labels


def graph_concat(
    views: Sequence[ViewArray],
    n_clusters: int,
    seed: int = 0,
    *,
    aligned: bool = True,
    head: OTMConfig | None = None,
) -> np.ndarray:
    """OTM's head alone (:func:`head_clusters`) on the concatenated views, each scaled by
    :func:`scale_view` as in :func:`kmeans_concat`.

    Returns:
        ``(N,)`` int64 cluster labels.

    Raises:
        ValueError: with ``aligned=False`` (concatenation needs row correspondence).
    """
    _refuse_unaligned("graph_concat", aligned)
    xs = _as_views(views, aligned=True)
    return head_clusters(_concat(xs), n_clusters, seed, head=head)


def graph_best_view(
    views: Sequence[ViewArray],
    n_clusters: int,
    seed: int = 0,
    *,
    aligned: bool = True,
    head: OTMConfig | None = None,
) -> tuple[np.ndarray, int]:
    """OTM's head alone on the single view that :func:`kmeans_best_view` would choose (the
    same label-free criterion, :func:`kmeans_each_view`), rows in content order when
    unaligned (as OTM clusters each view's rows there).

    Returns:
        ``(labels, view)``: the chosen view's ``(N_view,)`` int64 cluster labels and its index.
    """
    best = kmeans_each_view(views, n_clusters, seed, aligned=aligned).best
    x = _as_views(views, aligned=aligned)[best]
    return head_clusters(x, n_clusters, seed, head=head, content_order=not aligned), best


def graph_each_view(
    views: Sequence[ViewArray],
    n_clusters: int,
    seed: int = 0,
    *,
    aligned: bool = True,
    head: OTMConfig | None = None,
) -> list[np.ndarray]:
    """OTM's head alone on every view's own rows: what OTM's unaligned prediction (each view
    clustered from its own codes) gets without training. Score each view against its own row
    labels and average, as OTM unaligned is scored (:func:`score_prediction`).

    Returns:
        Per view, the ``(N_v,)`` int64 cluster labels of its rows.
    """
    xs = _as_views(views, aligned=aligned)
    return [head_clusters(x, n_clusters, seed, head=head, content_order=not aligned) for x in xs]


def graph_fused(
    views: Sequence[ViewArray],
    n_clusters: int,
    seed: int = 0,
    *,
    aligned: bool = True,
    head: OTMConfig | None = None,
    known: np.ndarray | None = None,
) -> list[np.ndarray]:
    """OTM's head alone with its graph fusion on the raw views: what OTM's prediction with
    ``fusion="graphs"`` (:meth:`~modalign.methods.OTM.assign_paired_clusters`) gets without
    training. The known pairs are clustered once on the mean of the views' structures, and
    each view's other rows take their clusters by label spreading on its own graph. ``known``
    (N,) bool marks the known pairs (rows at the same position in every view); aligned, every
    row is one (graph averaging: the views share one clustering); unaligned without it, none
    is (then it is :func:`graph_each_view`).

    Returns:
        Per view, the ``(N_v,)`` int64 cluster labels of its rows.
    """
    from modalign.methods.otm import OTM

    xs = _as_views(views, aligned=aligned)
    if aligned:
        known = np.ones(xs[0].shape[0], dtype=bool)
    if known is None or not np.asarray(known).any():
        return graph_each_view(xs, n_clusters, seed, aligned=aligned, head=head)
    if len({x.shape[0] for x in xs}) > 1 or np.asarray(known).size != xs[0].shape[0]:
        raise ValueError(
            f"known pairs need views of equal row counts and one mask entry per row; got rows "
            f"{[x.shape[0] for x in xs]}, mask of {np.asarray(known).size}"
        )
    cfg = _head_model_config(head, n_clusters, xs[0].shape[0])
    points = [torch.from_numpy(x).to(cfg.device) for x in xs]
    model = OTM(cfg, random_state=seed)
    return model.assign_paired_clusters(points, torch.as_tensor(np.asarray(known, dtype=bool)))


# ---------------------------------------------------------------------------------- protocol
def _in_chosen_view(labels_and_view: tuple[np.ndarray, int]) -> Prediction:
    """``{view: labels}`` from a best-view baseline's ``(labels, view)``."""
    labels, view = labels_and_view
    return {view: labels}


#: The baselines by name, each run as ``fn(views, n_clusters, seed, aligned, head, known)``
#: and returning its :data:`Prediction` (clusters per view; ``head`` is used by the graph
#: ones, ``known``, the known-pair mask or None, by :func:`graph_fused`).
BASELINES: dict[str, Baseline] = {
    "majority": lambda xs, k, seed, aligned, head, known: {
        0: majority(xs, k, seed, aligned=aligned)
    },
    "kmeans_concat": lambda xs, k, seed, aligned, head, known: {
        0: kmeans_concat(xs, k, seed, aligned=aligned)
    },
    "kmeans_best_view": lambda xs, k, seed, aligned, head, known: _in_chosen_view(
        kmeans_best_view(xs, k, seed, aligned=aligned)
    ),
    "spectral_concat": lambda xs, k, seed, aligned, head, known: {
        0: spectral_concat(xs, k, seed, aligned=aligned)
    },
    "graph_concat": lambda xs, k, seed, aligned, head, known: {
        0: graph_concat(xs, k, seed, aligned=aligned, head=head)
    },
    "graph_best_view": lambda xs, k, seed, aligned, head, known: _in_chosen_view(
        graph_best_view(xs, k, seed, aligned=aligned, head=head)
    ),
    "graph_each_view": lambda xs, k, seed, aligned, head, known: dict(
        enumerate(graph_each_view(xs, k, seed, aligned=aligned, head=head))
    ),
    "graph_fused": lambda xs, k, seed, aligned, head, known: dict(
        enumerate(graph_fused(xs, k, seed, aligned=aligned, head=head, known=known))
    ),
}

#: Baselines that need aligned rows (they concatenate views).
ALIGNED_ONLY: frozenset[str] = frozenset({"kmeans_concat", "spectral_concat", "graph_concat"})


def run_baseline(
    name: str,
    views: Sequence[ViewArray],
    n_clusters: int,
    seed: int = 0,
    *,
    aligned: bool = True,
    head: OTMConfig | None = None,
    known: np.ndarray | None = None,
) -> Prediction:
    """Run the baseline ``name`` (a key of :data:`BASELINES`) and return its clusters per view,
    ``{v: (N_v,) labels of view v's rows}``: view 0 for a clustering of aligned rows (and for
    :func:`majority`), the chosen view for the best-view baselines, every view for
    :func:`graph_each_view` and :func:`graph_fused`. ``head``: the OTM head settings of
    the graph baselines; ``known``: the known-pair mask of the partially aligned setting."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose among {sorted(BASELINES)}")
    return BASELINES[name](views, n_clusters, seed, aligned, head, known)


def score_prediction(ds: MultiViewDataset, prediction: Prediction) -> dict[str, float]:
    """Clustering scores (:func:`~modalign.eval.clustering_scores`) of clusters per view, each
    view's against the labels of its own rows (``ds.row_labels(v)``), averaged over the views
    of ``prediction``. Labels are read here only, after clustering."""
    if not prediction:
        raise ValueError("the prediction holds no view's clusters")
    per_view = [
        clustering_scores(ds.row_labels(v).cpu().numpy(), labels)
        for v, labels in prediction.items()
    ]
    return {k: float(np.mean([s[k] for s in per_view])) for k in per_view[0]}


def evaluate_baselines(
    ds: MultiViewDataset,
    seeds: Sequence[int],
    *,
    dataset: str,
    setting: str | None = None,
    methods: Sequence[str] | None = None,
    n_clusters: int | None = None,
    head: OTMConfig | None = None,
) -> list[dict]:
    """Run baselines on an already preprocessed dataset and return result records.

    Labels are read only to score the predictions, after clustering. The setting follows the
    data: if ``ds.is_aligned`` is False, baselines in :data:`ALIGNED_ONLY` are skipped. Each
    baseline runs through :func:`run_baseline` and is scored by :func:`score_prediction`
    (per view, against the row labels of the views it clusters), as in ``modalign cluster``.

    Args:
        ds: a labelled :class:`~modalign.data.MultiViewDataset` (preprocessed).
        seeds: the seeds to run (at least 5 for a table, DESIGN.md section 3).
        dataset: the dataset name stored in the records.
        setting: stored in the records; default ``"aligned"`` or ``"unaligned"``.
        methods: names from :data:`BASELINES` (default: all valid in the setting).
        n_clusters: default ``ds.n_classes``.
        head: OTM head settings of the graph baselines (default ``OTMConfig(n_clusters=K)``).

    Returns:
        Records as produced by :func:`modalign.eval.records_from_scores`, 4 per method and seed.
    """
    from modalign.eval.report import records_from_scores

    if ds.labels is None:
        raise ValueError(f"{ds.source}: evaluate_baselines needs labels to score the clusters")
    aligned = ds.is_aligned
    setting = setting or ("aligned" if aligned else "unaligned")
    k = ds.n_classes if n_clusters is None else n_clusters
    if methods is None:
        names = [m for m in BASELINES if aligned or m not in ALIGNED_ONLY]
    else:
        unknown = [m for m in methods if m not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baselines {unknown}; choose among {sorted(BASELINES)}")
        names = list(methods)
    views = [x.detach().cpu().numpy() for x in ds.views]
    # The known pairs of partially aligned data (graph_fused uses them; none if unaligned).
    known = None if aligned or ds.paired is None else ds.paired.cpu().numpy()
    records: list[dict] = []
    for name in names:
        for seed in seeds:
            start = time.perf_counter()
            prediction = run_baseline(name, views, k, seed, aligned=aligned, head=head, known=known)
            seconds = time.perf_counter() - start
            scores = score_prediction(ds, prediction)
            records += records_from_scores(dataset, setting, name, seed, scores, seconds)
    return records
