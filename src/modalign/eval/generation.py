"""Judging generated modalities: coherence scores and the pictures of ``modalign generate``.

* :func:`coherence`: the share of generated samples whose class, read by a classifier of the
  target modality trained on real data, is the true class of the sample they came from
  (cross-modal coherence, Shi et al. 2019).
* :func:`joint_coherence`: the share of joint samples (one latent decoded into every
  modality) on whose class every modality's classifier agrees. A model that always generates
  one class scores 1.0 here, so it is read beside :func:`class_spread`.
* :func:`class_spread`: the normalised entropy of the classes read from samples (1: every
  class equally often, 0: one class only).
* :func:`generation_grid_figure`: rows of generated images (one row per source of
  modalities) under the real ones; :func:`latent_figure`: a 2-D picture of representations
  coloured by class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modalign.eval.report import _palette, _scatter, embed_2d

__all__ = [
    "class_spread",
    "coherence",
    "generation_grid_figure",
    "joint_coherence",
    "latent_figure",
    "one_per_class",
]


def _classes(x: Any, what: str) -> np.ndarray:
    out = np.asarray(x).reshape(-1)
    if out.size == 0:
        raise ValueError(f"{what}: no sample")
    return out


def coherence(predicted: Any, true: Any) -> float:
    """Share of samples whose read class ``predicted`` ``(N,)`` equals ``true`` ``(N,)``."""
    p, t = _classes(predicted, "predicted"), _classes(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"predicted has {p.size} classes for {t.size} true ones")
    return float((p == t).mean())


def joint_coherence(predicted: Sequence[Any]) -> float:
    """Share of samples on which every modality's read class agrees.

    Args:
        predicted: one ``(N,)`` array of classes per modality (at least two).
    """
    if len(predicted) < 2:
        raise ValueError(f"joint coherence needs two or more modalities, got {len(predicted)}")
    parts = [_classes(p, f"predicted[{m}]") for m, p in enumerate(predicted)]
    if len({p.size for p in parts}) > 1:
        raise ValueError(f"predicted: modalities have {[p.size for p in parts]} samples")
    rows = np.stack(parts)
    return float((rows == rows[0]).all(0).mean())


def class_spread(predicted: Any, n_classes: int) -> float:
    """Entropy of the classes' frequencies in ``predicted`` ``(N,)``, divided by
    ``log n_classes``: 1 when every class is equally frequent, 0 for a single class."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    counts = np.bincount(_classes(predicted, "predicted").astype(np.int64), minlength=n_classes)
    share = counts[counts > 0] / counts.sum()
    # + 0.0: a single class gives -0.0, which JSON would keep.
    return float(-(share * np.log(share)).sum() / np.log(n_classes)) + 0.0


def one_per_class(labels: Any, per_class: int = 2) -> np.ndarray:
    """Indices of the first ``per_class`` samples of each class, classes in sorted order (the
    columns of a generation grid: deterministic, every class shown)."""
    y = _classes(labels, "labels")
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])


def generation_grid_figure(
    real: np.ndarray,
    generated: Mapping[str, np.ndarray],
    shape: tuple[int, int],
    title: str = "",
) -> Any:
    """A matplotlib ``Figure`` (no pyplot): the real images in the first row, then one row per
    entry of ``generated`` (labelled with its key, e.g. ``"from image + label"``).

    Args:
        real: ``(C, H * W)`` images in [0, 1], one per column.
        generated: ``{row label: (C, H * W)}``, the images generated for the same columns.
        shape: ``(H, W)``.
    """
    from matplotlib.figure import Figure

    rows = [("real", np.asarray(real)), *((k, np.asarray(v)) for k, v in generated.items())]
    n_cols = rows[0][1].shape[0]
    for label, images in rows:
        if images.shape != (n_cols, shape[0] * shape[1]):
            raise ValueError(
                f"{label}: expected ({n_cols}, {shape[0] * shape[1]}) images, got {images.shape}"
            )
    fig = Figure(figsize=(0.55 * n_cols + 1.6, 0.6 * len(rows) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(shape), cmap="gray_r", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def latent_figure(codes: Mapping[str, Any], labels: Any, title: str = "", *, seed: int = 0) -> Any:
    """A matplotlib ``Figure``: one panel per entry of ``codes`` (``{name: (N, d)}``), its
    2-D embedding (:func:`~modalign.eval.report.embed_2d`: t-SNE for 30 to 2500 rows, PCA
    otherwise) coloured by class ``labels`` ``(N,)``."""
    from matplotlib.figure import Figure

    y = _classes(labels, "labels")
    colour_of = {v.item(): i for i, v in enumerate(np.unique(y))}
    palette = _palette(len(colour_of))
    fig = Figure(figsize=(4.2 * len(codes), 4.0), layout="constrained")
    axes = fig.subplots(1, len(codes), squeeze=False)[0]
    for ax, (name, z) in zip(axes, codes.items()):
        xy = embed_2d(z, seed=seed)
        if xy.shape[0] != y.size:
            raise ValueError(f"{name}: {xy.shape[0]} codes for {y.size} labels")
        _scatter(ax, xy, y, colour_of, palette, name)
    if title:
        fig.suptitle(title)
    return fig
