"""Label-free geometry: cross-modal retrieval, alignment, uniformity, joint embedding plots."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from matplotlib.markers import MarkerStyle
from scipy.special import i0e, logsumexp

import modalign.eval.geometry as geometry
from modalign.eval.geometry import (
    alignment,
    modality_embedding_figure,
    plot_modality_embeddings,
    retrieval_scores,
    uniformity,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------- brute force
def unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else np.zeros_like(v)


def brute_ranks(q: np.ndarray, g: np.ndarray, optimistic: bool = False) -> list[int]:
    n = q.shape[0]
    ranks = []
    for i in range(n):
        qi = unit(q[i])
        sims = [float(np.dot(qi, unit(g[j]))) for j in range(n)]
        if optimistic:
            ranks.append(1 + sum(sims[j] > sims[i] for j in range(n) if j != i))
        else:
            ranks.append(1 + sum(sims[j] >= sims[i] for j in range(n) if j != i))
    return ranks


def brute_alignment(a: np.ndarray, b: np.ndarray, alpha: float) -> float:
    total = 0.0
    for i in range(a.shape[0]):
        total += math.sqrt(sum((x - y) ** 2 for x, y in zip(unit(a[i]), unit(b[i])))) ** alpha
    return total / a.shape[0]


def brute_uniformity(x: np.ndarray, t: float) -> float:
    n = x.shape[0]
    total, pairs = 0.0, 0
    for i in range(n):
        for j in range(i + 1, n):
            d2 = sum((p - r) ** 2 for p, r in zip(unit(x[i]), unit(x[j])))
            total += math.exp(-t * d2)
            pairs += 1
    return math.log(total / pairs)


def circle(n: int, radius: float = 1.0, dim: int = 2, seed: int = 0) -> np.ndarray:
    """``n`` points equally spaced on a circle of ``radius``, rotated into ``dim`` dimensions."""
    angles = 2 * np.pi * np.arange(n) / n
    pts = np.zeros((n, dim))
    pts[:, 0], pts[:, 1] = np.cos(angles), np.sin(angles)
    rot, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return radius * pts @ rot


# ---------------------------------------------------------------------------------- retrieval
@pytest.mark.parametrize("chunk_size", [1, 8, 16, 1000])
def test_retrieval_matches_brute_force_with_planted_ties(chunk_size):
    rng = np.random.default_rng(0)
    n, d = 53, 6
    q = rng.normal(size=(n, d))
    g = q + 0.8 * rng.normal(size=(n, d))
    # Planted ties: duplicated gallery rows (one a scaled copy: the same direction), a
    # query's own row copied elsewhere, zero rows in both.
    g[5] = g[3]
    g[40] = 2.5 * g[3]
    g[7] = g[8]
    g[20] = 0.0
    q[31] = 0.0
    g[11] = g[12] = g[13]
    ranks = np.array(brute_ranks(q, g))
    # The ties matter: an optimistic count would give other ranks.
    assert not np.array_equal(ranks, brute_ranks(q, g, optimistic=True))
    assert ranks[31] == n  # a zero query has similarity 0 to everything: all ties
    ks = (1, 2, 3, 5, 10, 60)
    got = retrieval_scores(q, g, ks, chunk_size=chunk_size)
    assert list(got) == [f"recall@{k}" for k in ks] + ["median_rank"]
    for k in ks:
        assert got[f"recall@{k}"] == pytest.approx(np.mean(ranks <= k), abs=1e-15)
    assert got["median_rank"] == float(np.median(ranks))
    assert got["recall@60"] == 1.0


def test_retrieval_chunking_does_not_change_the_result_and_median_of_even_n():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(300, 4)).astype(np.float32)
    g = q + rng.normal(size=(300, 4)).astype(np.float32)
    results = [retrieval_scores(q, g, (1, 5, 20), chunk_size=c) for c in (7, 64, 300, 10_000)]
    assert all(r == results[0] for r in results)
    ranks = np.array(brute_ranks(q.astype(np.float64), g.astype(np.float64)))
    assert results[0]["median_rank"] == float(np.median(ranks))


def test_retrieval_identical_distinct_rows_is_perfect():
    g = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    for q in (g, 3.0 * g, g.double()):
        got = retrieval_scores(q, g, ks=(1, 10))
        assert got == {"recall@1": 1.0, "recall@10": 1.0, "median_rank": 1.0}


def test_retrieval_constant_gallery_is_pessimistic():
    rng = np.random.default_rng(2)
    n = 101
    q = rng.normal(size=(n, 5))
    for g in (np.ones((n, 5)), np.zeros((n, 5)), np.tile(rng.normal(size=5), (n, 1))):
        got = retrieval_scores(q, g, ks=(1, 10, 100))
        assert got["recall@1"] == 0.0
        assert got["recall@10"] == 0.0
        assert got["recall@100"] == 0.0
        assert got["median_rank"] == float(n)


def test_retrieval_permuted_gallery_scores_about_chance():
    rng = np.random.default_rng(3)
    n = 2000
    a = rng.normal(size=(n, 16))
    perm = rng.permutation(n)
    got = retrieval_scores(a, a[perm], ks=(1, 10, 100))
    fixed = np.mean(perm == np.arange(n))  # fixed points of the permutation retrieve themselves
    assert got["recall@1"] == pytest.approx(fixed, abs=2 / n)
    assert got["recall@10"] < 0.015  # chance: 10 / 2000
    assert 0.03 < got["recall@100"] < 0.075  # chance: 0.05
    assert 0.4 * n < got["median_rank"] < 0.6 * n


@pytest.mark.parametrize(
    ("queries", "gallery", "ks", "match"),
    [
        (np.zeros((5, 3)), np.zeros((6, 3)), (1,), "same shape"),
        (np.zeros((5, 3)), np.zeros((5, 4)), (1,), "same shape"),
        (np.ones((1, 3)), np.ones((1, 3)), (1,), "N >= 2"),
        (np.ones(5), np.ones(5), (1,), r"queries: expected an \(N, d\)"),
        (np.ones((5, 3)), np.ones((5, 3)), (0,), "k must be an integer >= 1"),
        (np.ones((5, 3)), np.ones((5, 3)), (1, -2), "k must be an integer >= 1"),
        (np.ones((5, 3)), np.ones((5, 3)), (1.5,), "k must be an integer >= 1"),
        (np.array([["a", "b"], ["c", "d"]]), np.ones((2, 2)), (1,), "queries: expected a numeric"),
    ],
)
def test_retrieval_rejects_bad_input(queries, gallery, ks, match):
    with pytest.raises(ValueError, match=match):
        retrieval_scores(queries, gallery, ks)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_retrieval_rejects_non_finite(bad):
    q = np.ones((4, 3))
    g = np.ones((4, 3))
    g[2, 1] = bad
    with pytest.raises(ValueError, match="gallery: contains NaN or inf"):
        retrieval_scores(q, g)
    with pytest.raises(ValueError, match="queries: contains NaN or inf"):
        retrieval_scores(torch.from_numpy(g), q)


# ---------------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_brute_force_and_closed_forms(alpha):
    rng = np.random.default_rng(4)
    a = rng.normal(size=(25, 7))
    b = a + rng.normal(size=(25, 7))
    assert alignment(a, b, alpha) == pytest.approx(brute_alignment(a, b, alpha), rel=1e-12)
    assert alignment(a, 3 * a, alpha) == pytest.approx(0.0, abs=1e-12)
    assert alignment(a, -a, alpha) == pytest.approx(2.0**alpha, rel=1e-12)
    # Orthogonal pairs: distance sqrt(2).
    e = np.eye(2)
    assert alignment(e, e[::-1], alpha) == pytest.approx(2.0 ** (alpha / 2), rel=1e-12)
    # Tensors, float32.
    ta, tb = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    assert alignment(ta, tb, alpha) == pytest.approx(brute_alignment(a, b, alpha), rel=1e-5)


def test_alignment_rejects_bad_input():
    a = np.ones((4, 3))
    with pytest.raises(ValueError, match="same shape"):
        alignment(a, np.ones((5, 3)))
    with pytest.raises(ValueError, match="alpha"):
        alignment(a, a, alpha=0)
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="b: contains NaN"):
        alignment(a, bad)


# ---------------------------------------------------------------------------------- uniformity
@pytest.mark.parametrize("t", [0.5, 2.0, 7.0])
def test_uniformity_matches_brute_force(t):
    x = np.random.default_rng(5).normal(size=(30, 5))
    assert uniformity(x, t) == pytest.approx(brute_uniformity(x, t), rel=1e-12)


@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
def test_uniformity_equally_spaced_circle_closed_form(t):
    # n points on a circle: ||x_i - x_j||^2 = 2 - 2 cos(2 pi (j - i) / n), and by symmetry the
    # mean over pairs i < j is the mean over the n - 1 offsets m = j - i of one point.
    n = 12
    m = np.arange(1, n)
    exact = logsumexp(-2 * t * (1 - np.cos(2 * np.pi * m / n))) - math.log(n - 1)
    for x in (circle(n), circle(n, radius=4.0, dim=5, seed=1)):
        assert uniformity(x, t) == pytest.approx(exact, rel=1e-12)
    # Many points: the mean over all offsets (self included) is exp(-2t) I0(2t) = i0e(2t),
    # the integral over the circle, so the mean over pairs is (n i0e(2t) - 1) / (n - 1).
    n = 64
    closed = math.log((n * i0e(2 * t) - 1) / (n - 1))
    assert uniformity(circle(n, dim=3), t) == pytest.approx(closed, rel=1e-10)


def test_uniformity_is_stable_for_large_t():
    # exp(-t d^2) underflows to 0 for every pair at t = 5000; log-sum-exp keeps the value.
    n, t = 12, 5000.0
    m = np.arange(1, n)
    exact = logsumexp(-2 * t * (1 - np.cos(2 * np.pi * m / n))) - math.log(n - 1)
    got = uniformity(circle(n), t)
    assert math.isfinite(got)
    assert got == pytest.approx(exact, rel=1e-12)
    # All rows the same direction: the largest value, 0.
    assert uniformity(np.ones((6, 3)), t) == pytest.approx(0.0, abs=1e-12)


def test_uniformity_subsamples_only_above_max_rows_and_is_seeded():
    x = np.random.default_rng(6).normal(size=(101, 3))
    full = uniformity(x, max_rows=None)
    # At the limit: every row, whatever the seed.
    assert uniformity(x[:100], max_rows=100, seed=0) == uniformity(x[:100], max_rows=None)
    assert uniformity(x[:100], max_rows=100, seed=1) == uniformity(x[:100], max_rows=None)
    assert uniformity(x, max_rows=101) == full
    # Above it: a seeded subset.
    sub0 = uniformity(x, max_rows=40, seed=0)
    assert sub0 == uniformity(x, max_rows=40, seed=0)
    assert sub0 != full
    assert sub0 != uniformity(x, max_rows=40, seed=1)
    keep = np.random.default_rng(0).choice(101, size=40, replace=False)
    assert sub0 == pytest.approx(brute_uniformity(x[np.sort(keep)], 2.0), rel=1e-12)


def test_uniformity_rejects_bad_input():
    with pytest.raises(ValueError, match="N >= 2"):
        uniformity(np.ones((1, 3)))
    with pytest.raises(ValueError, match="t must be"):
        uniformity(np.ones((4, 3)), t=-1.0)
    with pytest.raises(ValueError, match="max_rows"):
        uniformity(np.ones((4, 3)), max_rows=1)
    with pytest.raises(ValueError, match="x: contains NaN"):
        uniformity(np.full((4, 3), np.nan))


# ---------------------------------------------------------------------------------- figure
def sample(n: int = 40, d: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    complete = rng.normal(size=(n, d)) + 3.0 * labels[:, None]
    singles = {
        "image": complete + 0.3 * rng.normal(size=(n, d)),
        "text": torch.from_numpy(complete + rng.normal(size=(n, d))).float(),
    }
    return complete, singles, labels


@pytest.fixture
def no_umap(monkeypatch):
    """umap-learn not importable, whether installed or not."""
    monkeypatch.setitem(sys.modules, "umap", None)


def test_figure_one_panel_per_modality_and_png_written(tmp_path, no_umap):
    complete, singles, labels = sample()
    fig = modality_embedding_figure(complete, singles, labels, "GMC")  # auto: t-SNE here
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == [
        "complete (o) vs image only (x)",
        "complete (o) vs text only (x)",
    ]
    for ax in fig.axes:
        # The dots, the legend's empty markers, the crosses.
        dots, crosses = ax.collections[0], ax.collections[-1]
        x_marker = MarkerStyle("x")
        x_path = x_marker.get_path().transformed(x_marker.get_transform())
        np.testing.assert_array_equal(crosses.get_paths()[0].vertices, x_path.vertices)
        assert dots.get_offsets().shape == (40, 2)
        assert crosses.get_offsets().shape == (40, 2)
        # Both coloured by class, the same colours for the same samples.
        np.testing.assert_array_equal(dots.get_facecolors(), crosses.get_facecolors())
    # Consistent class colours across panels.
    np.testing.assert_array_equal(
        fig.axes[0].collections[0].get_facecolors(), fig.axes[1].collections[0].get_facecolors()
    )
    path = plot_modality_embeddings(
        complete, singles, labels, tmp_path / "sub" / "emb.png", "GMC", method="pca"
    )
    assert path == tmp_path / "sub" / "emb.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert [p.name for p in path.parent.iterdir()] == ["emb.png"]  # no temporary left


def test_figure_many_modalities_grid():
    complete, singles, labels = sample(n=20)
    many = {f"m{i}": singles["image"] for i in range(4)}
    fig = modality_embedding_figure(complete, many, labels, method="pca")
    assert len(fig.axes) == 4
    assert fig.axes[3].get_title() == "complete (o) vs m3 only (x)"


def test_figure_auto_and_explicit_methods(monkeypatch, no_umap):
    calls = []
    real = geometry.embed_2d

    def spy(x, *, method, seed):
        calls.append((x.copy(), method, seed))
        return real(x, method="pca", seed=seed)

    monkeypatch.setattr(geometry, "embed_2d", spy)
    complete, singles, labels = sample(n=60)
    modality_embedding_figure(complete, singles, labels, max_points=25, seed=3)
    assert [(c[1], c[2]) for c in calls] == [("auto", 3), ("auto", 3)]
    # The same seeded subset of rows in every panel: complete first, then the single modality.
    keep = np.sort(np.random.default_rng(3).choice(60, size=25, replace=False))
    for (x, _, _), name in zip(calls, ["image", "text"]):
        assert x.shape == (50, 5)
        np.testing.assert_array_equal(x[:25], complete[keep])
        single = np.asarray(singles[name], dtype=np.float64)
        np.testing.assert_array_equal(x[25:], single[keep])
    calls.clear()
    modality_embedding_figure(complete, singles, labels, method="tsne")
    assert [c[1] for c in calls] == ["tsne", "tsne"]
    assert calls[0][0].shape == (120, 5)  # no subset at N <= max_points


def test_figure_umap_missing_raises_with_the_pip_command(no_umap):
    complete, singles, labels = sample(n=10)
    with pytest.raises(ImportError, match=r"pip install 'modalign\[umap\]'"):
        modality_embedding_figure(complete, singles, labels, method="umap")


def test_figure_umap():
    umap = pytest.importorskip("umap")
    if not hasattr(umap, "UMAP"):
        pytest.skip("umap is not umap-learn")
    complete, singles, labels = sample(n=40)
    fig = modality_embedding_figure(complete, singles, labels, method="umap")
    assert len(fig.axes) == 2
    assert fig.axes[0].collections[-1].get_offsets().shape == (40, 2)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda c, s, lab: (c, s, lab[:-1]), "labels: 39 labels for 40"),
        (lambda c, s, lab: (c, {**s, "text": s["text"][:-1]}, lab), r"singles\['text'\]"),
        (lambda c, s, lab: (c, {**s, "image": s["image"][:, :3]}, lab), r"singles\['image'\]"),
        (lambda c, s, lab: (np.where(c > 2, np.nan, c), s, lab), "complete: contains NaN"),
        (
            lambda c, s, lab: (c, {**s, "image": np.full_like(c, np.inf)}, lab),
            r"singles\['image'\]: contains NaN",
        ),
        (lambda c, s, lab: (c, s, np.full(40, np.nan)), "labels: contains NaN"),
        (lambda c, s, lab: (c, {}, lab), "singles: expected a non-empty"),
        (lambda c, s, lab: (c[0], s, lab), r"complete: expected an \(N, d\)"),
    ],
)
def test_figure_rejects_bad_input(change, match):
    complete, singles, labels = change(*sample())
    with pytest.raises(ValueError, match=match):
        modality_embedding_figure(complete, singles, labels, method="pca")


def test_figure_rejects_unknown_method_and_bad_max_points():
    complete, singles, labels = sample()
    with pytest.raises(ValueError, match="method must be one of"):
        modality_embedding_figure(complete, singles, labels, method="mds")
    with pytest.raises(ValueError, match="max_points"):
        modality_embedding_figure(complete, singles, labels, max_points=0)
