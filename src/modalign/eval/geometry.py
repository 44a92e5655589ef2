"""Label-free geometry of multimodal representations: how well a sample's representation from
one modality lines up with its representation from all modalities.

A method such as GMC maps a sample to a ``d``-dimensional vector computed from all modalities
(the *complete* representation) or from a subset of them, e.g. one modality alone. Row ``i``
of every array below is the same sample. No labels are needed for the scores; the figure uses
the classes for colour only.

* :func:`retrieval_scores`: does a single-modality representation retrieve its own complete
  representation among all of them (cosine similarity, recall@k and the median rank)?
* :func:`alignment`, :func:`uniformity`: Wang & Isola (2020), "Understanding contrastive
  representation learning through alignment and uniformity on the hypersphere".
* :func:`plot_modality_embeddings`: the complete and each single-modality representation in
  one joint 2-D embedding per modality.

Typical use::

    scores = retrieval_scores(z_image_only, z_complete, ks=(1, 5, 10))
    align = alignment(z_image_only, z_complete)
    unif = uniformity(z_complete)
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalign.eval.report import _as_array, _palette, _scatter, embed_2d, save_png

__all__ = [
    "EMBEDDING_METHODS",
    "alignment",
    "modality_embedding_figure",
    "plot_modality_embeddings",
    "retrieval_scores",
    "uniformity",
]

ArrayLike = np.ndarray | torch.Tensor

#: Embedding methods of :func:`modality_embedding_figure`.
EMBEDDING_METHODS: tuple[str, ...] = ("auto", "umap", "tsne", "pca")
_UMAP_HINT = "pip install 'modalign[umap]'"


# ---------------------------------------------------------------------------------- helpers
def _matrix(x: Any, what: str, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite ``(N, d)`` float64 array with ``N >= min_rows``, else ValueError."""
    arr = _as_array(x, what)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected an (N, d) array, got shape {arr.shape}")
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise ValueError(
            f"{what}: expected an (N, d) array with N >= {min_rows} and d >= 1, "
            f"got shape {arr.shape}"
        )
    return arr.astype(np.float64)


def _paired(a: Any, b: Any, names: tuple[str, str], min_rows: int) -> tuple[np.ndarray, ...]:
    x = _matrix(a, names[0], min_rows)
    y = _matrix(b, names[1], min_rows)
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape (row i of both is one "
            f"sample), got {x.shape} and {y.shape}"
        )
    return x, y


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; a zero row stays zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _positive_float(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{what} must be a positive finite number, got {value!r}")
    return v


# ---------------------------------------------------------------------------------- retrieval
def retrieval_scores(
    queries: ArrayLike,
    gallery: ArrayLike,
    ks: Sequence[int] = (1, 10),
    *,
    chunk_size: int = 256,
) -> dict[str, float]:
    """Cross-modal retrieval of each sample's own gallery row by cosine similarity.

    Definition: rows of ``queries`` and ``gallery`` are L2-normalised (a zero row stays zero,
    so it has similarity 0 to everything) and ``s_ij = <q_i, g_j>`` (cosine similarity). The
    rank of query ``i`` is ``1 + #{j != i : s_ij >= s_ii}``: ties count against the query
    (pessimistic), so a constant representation gives every query rank ``N``, never a
    flattering one. Similarities within ``4 * d * eps(float64)`` of ``s_ii`` (rounding noise
    of the dot products, about 1e-12 for ``d = 1000``) count as ties, so that exactly
    duplicated gallery rows tie whatever the order of the floating-point sums.

    Everything is computed in float64, ``chunk_size`` queries at a time, so at most
    ``chunk_size x N`` similarities exist at once (about 41 MB for N = 20,000).

    Args:
        queries: ``(N, d)`` array or tensor, e.g. the single-modality representations.
        gallery: ``(N, d)`` array or tensor, e.g. the complete representations; row ``i`` is
            the same sample as ``queries[i]``.
        ks: the cut-offs ``k >= 1`` of recall@k (``k >= N`` gives 1.0).
        chunk_size: queries per block.

    Returns:
        ``{"recall@k": share of queries with rank <= k, one key per k in ks, in order,
        "median_rank": median of the N ranks (a float; the mean of the two middle ranks for
        even N)}``. Chance level: recall@k about ``k / N``, median rank about ``N / 2``.

    Raises:
        ValueError: shapes differ or are not ``(N, d)``, ``N < 2``, NaN or inf, ``k < 1``.
    """
    ks = [_positive_int(k, "ks: k") for k in ks]
    chunk_size = _positive_int(chunk_size, "chunk_size")
    q, g = _paired(queries, gallery, ("queries", "gallery"), min_rows=2)
    n, d = q.shape
    q, g = _unit_rows(q), _unit_rows(g)
    tol = 4.0 * d * np.finfo(np.float64).eps
    ranks = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = q[start:stop] @ g.T  # (chunk, N)
        rows = np.arange(stop - start)
        own = sims[rows, np.arange(start, stop)]
        # The own column always counts (s_ii >= s_ii - tol): it is the 1 of the rank.
        ranks[start:stop] = (sims >= (own - tol)[:, None]).sum(axis=1)
    out = {f"recall@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    return out


# ---------------------------------------------------------------------------------- W&I
def alignment(a: ArrayLike, b: ArrayLike, alpha: float = 2.0) -> float:
    """Alignment of paired rows (Wang & Isola, 2020): ``mean_i ||â_i - b̂_i||_2 ** alpha``.

    ``â_i = a_i / ||a_i||`` (a zero row stays zero), likewise ``b̂_i``; computed in float64.
    Lower is better: 0 when every pair points the same way, ``2 ** alpha`` when every pair
    points in opposite directions.

    Args:
        a, b: ``(N, d)`` arrays or tensors, row ``i`` of both the same sample.
        alpha: the exponent, > 0 (2 in the paper).

    Raises:
        ValueError: shapes differ or are not ``(N, d)`` with ``N >= 1``, NaN or inf,
            ``alpha <= 0``.
    """
    alpha = _positive_float(alpha, "alpha")
    x, y = _paired(a, b, ("a", "b"), min_rows=1)
    dist = np.linalg.norm(_unit_rows(x) - _unit_rows(y), axis=1)
    return float(np.mean(dist**alpha))


def uniformity(x: ArrayLike, t: float = 2.0, max_rows: int | None = 5000, seed: int = 0) -> float:
    """Uniformity (Wang & Isola, 2020):
    ``log( mean_{i<j} exp(-t ||x̂_i - x̂_j||_2 ** 2) )``.

    ``x̂_i = x_i / ||x_i||`` (a zero row stays zero). Lower is more uniform; the largest value
    is 0 (all rows the same direction). For points spread evenly on the unit circle it tends to
    ``-2t + log I0(2t)``; on high-dimensional spheres it approaches ``-2t``.

    When ``N > max_rows`` the score is estimated on a random subset of ``max_rows`` rows drawn
    without replacement by ``numpy.random.default_rng(seed)``, so the same input and seed give
    the same value; with ``N <= max_rows`` (or ``max_rows`` None) every row is used and
    ``seed`` is ignored. The pairs are processed in blocks of rows and summed with
    log-sum-exp, in float64, so large ``t`` does not underflow to ``log 0``.

    Args:
        x: ``(N, d)`` array or tensor, ``N >= 2``.
        t: the temperature, > 0 (2 in the paper).
        max_rows: the most rows used (>= 2), or None for all (``N**2 / 2`` pairs).
        seed: the subset's seed.

    Raises:
        ValueError: not ``(N, d)`` with ``N >= 2``, NaN or inf, ``t <= 0``, ``max_rows < 2``.
    """
    t = _positive_float(t, "t")
    if max_rows is not None:
        max_rows = _positive_int(max_rows, "max_rows", minimum=2)
    z = _matrix(x, "x", min_rows=2)
    if max_rows is not None and z.shape[0] > max_rows:
        rng = np.random.default_rng(seed)
        z = z[np.sort(rng.choice(z.shape[0], size=max_rows, replace=False))]
    z = _unit_rows(z)
    n = z.shape[0]
    sq = np.einsum("ij,ij->i", z, z)  # 1, or 0 for a zero row
    block = 512
    total = -np.inf
    for start in range(0, n - 1, block):
        stop = min(start + block, n - 1)
        # Row i pairs with j > i only: columns from start + 1 on, masked below the diagonal.
        cols = slice(start + 1, n)
        d2 = sq[start:stop, None] + sq[None, cols] - 2.0 * (z[start:stop] @ z[cols].T)
        np.maximum(d2, 0.0, out=d2)
        i = np.arange(start, stop)[:, None]
        j = np.arange(start + 1, n)[None, :]
        logits = np.where(j > i, -t * d2, -np.inf)
        peak = logits.max()
        block_lse = peak + np.log(np.exp(logits - peak).sum())
        total = np.logaddexp(total, block_lse)
    n_pairs = n * (n - 1) / 2.0
    return float(total - math.log(n_pairs))


# ---------------------------------------------------------------------------------- figure
def _umap_module(required: bool) -> Any | None:
    """umap-learn's module, or None when it is missing and not ``required``."""
    try:
        with warnings.catch_warnings():
            # umap-learn warns on import that its optional ParametricUMAP needs TensorFlow.
            warnings.filterwarnings("ignore", message=".*Tensorflow not installed.*")
            module = importlib.import_module("umap")
    except ImportError:
        module = None
    # A different PyPI project is also called "umap": umap-learn is the one with UMAP.
    if module is not None and hasattr(module, "UMAP"):
        return module
    if required:
        raise ImportError(f"method='umap' needs umap-learn: {_UMAP_HINT}")
    return None


def _embed_joint(x: np.ndarray, method: str, seed: int, umap: Any | None) -> np.ndarray:
    """``(M, 2)`` embedding of ``(M, d)`` rows: UMAP when ``umap`` is given, else
    :func:`embed_2d` with ``method``."""
    m, d = x.shape
    if umap is None or d <= 2 or m < 3:
        # embed_2d pads what has nothing to reduce; "pca" never runs t-SNE on a handful.
        return embed_2d(x, method=method if umap is None else "pca", seed=seed)
    # n_jobs=1: a seeded UMAP runs on one thread anyway (and warns unless told so).
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, m - 1), random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(x), dtype=np.float64)


def modality_embedding_figure(
    complete: ArrayLike,
    singles: Mapping[str, ArrayLike],
    labels: Any,
    title: str = "",
    *,
    method: str = "auto",
    seed: int = 0,
    max_points: int = 1000,
) -> Any:
    """The figure :func:`plot_modality_embeddings` saves (a matplotlib ``Figure``, no pyplot):
    one panel per modality, the complete representations (filled dots) and that modality's
    (small ``x``) embedded jointly in 2-D, both coloured by class.

    Args:
        complete: ``(N, d)`` representations computed from all modalities.
        singles: ``{modality name: (N, d)}``, the representations from that modality alone
            (same ``N`` and ``d`` as ``complete``), one panel each, in the mapping's order.
        labels: ``(N,)`` classes; colours only (the same class, the same colour in every
            panel, :func:`~modalign.eval.report._palette` in sorted class order).
        title: the figure title.
        method: the 2-D embedding of the ``2 * n`` stacked rows ``[complete; single]``:
            ``"umap"`` (umap-learn, an optional extra), ``"tsne"`` or ``"pca"``
            (:func:`~modalign.eval.report.embed_2d`), or ``"auto"``: UMAP when umap-learn is
            installed, else what ``embed_2d`` does (t-SNE for 30 to 2500 rows, PCA otherwise).
        seed: the seed of the embedding and of the subset.
        max_points: when ``N > max_points``, every panel shows the same random subset of
            ``max_points`` samples (``numpy.random.default_rng(seed)``, without replacement).

    Raises:
        ValueError: bad shapes, lengths or NaN/inf (the message names the argument), an
            empty ``singles``, an unknown ``method``.
        ImportError: ``method="umap"`` without umap-learn installed.
    """
    from matplotlib.figure import Figure

    if method not in EMBEDDING_METHODS:
        raise ValueError(f"method must be one of {EMBEDDING_METHODS}, got {method!r}")
    max_points = _positive_int(max_points, "max_points")
    full = _matrix(complete, "complete")
    n = full.shape[0]
    if not isinstance(singles, Mapping) or not singles:
        raise ValueError("singles: expected a non-empty dict {modality name: (N, d) array}")
    views = {}
    for name, value in singles.items():
        what = f"singles[{name!r}]"
        view = _matrix(value, what)
        if view.shape != full.shape:
            raise ValueError(
                f"{what}: shape {view.shape} differs from complete's {full.shape} (row i of "
                "both must be the same sample)"
            )
        views[name] = view
    classes = _as_array(labels, "labels").reshape(-1)
    if classes.shape[0] != n:
        raise ValueError(f"labels: {classes.shape[0]} labels for {n} samples")
    umap = None
    if method in ("umap", "auto"):
        umap = _umap_module(required=method == "umap")
    if n > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        full, classes = full[keep], classes[keep]
        views = {name: v[keep] for name, v in views.items()}

    class_colour = {v.item(): i for i, v in enumerate(np.unique(classes))}
    palette = _palette(len(class_colour))
    values, idx = np.unique(classes, return_inverse=True)
    point_colours = palette[[class_colour[v.item()] for v in values]][idx.reshape(-1)]

    ncols = min(3, len(views))
    nrows = math.ceil(len(views) / ncols)
    fig = Figure(figsize=(5.0 * ncols, 4.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    m = full.shape[0]
    for ax, (name, view) in zip(axes, views.items()):
        xy = _embed_joint(np.vstack([full, view]), method, seed, umap)
        _scatter(ax, xy[:m], classes, class_colour, palette, f"complete (o) vs {name} only (x)")
        ax.scatter(
            xy[m:, 0], xy[m:, 1], c=point_colours, marker="x", s=10, linewidths=0.6, alpha=0.8
        )
    for ax in axes[len(views) :]:
        ax.remove()
    if title:
        fig.suptitle(title)
    return fig


def plot_modality_embeddings(
    complete: ArrayLike,
    singles: Mapping[str, ArrayLike],
    labels: Any,
    path: str | Path,
    title: str = "",
    *,
    method: str = "auto",
    seed: int = 0,
    max_points: int = 1000,
) -> Path:
    """Write :func:`modality_embedding_figure` as a PNG, atomically
    (:func:`modalign.utils.atomic_write`).

    Args:
        complete, singles, labels, title, method, seed, max_points: see
            :func:`modality_embedding_figure`.
        path: the PNG file (its folder is created if needed).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    fig = modality_embedding_figure(
        complete, singles, labels, title, method=method, seed=seed, max_points=max_points
    )

    return save_png(fig, path)
