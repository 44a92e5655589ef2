"""Baselines: label-free, deterministic, better than the trivial one on real data; the head
alone (graph-*) is exactly OTM's head."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from modalign.data import MissingDataError, Preprocessor, load_dataset, unalign
from modalign.eval import (
    ALIGNED_ONLY,
    BASELINES,
    clustering_scores,
    evaluate_baselines,
    graph_best_view,
    graph_concat,
    graph_each_view,
    graph_fused,
    head_clusters,
    hungarian_accuracy,
    kmeans_best_view,
    kmeans_concat,
    kmeans_each_view,
    majority,
    run_baseline,
    scale_view,
    score_prediction,
    spectral_concat,
)
from modalign.methods import OTM, OTMConfig

pytestmark = pytest.mark.usefixtures("one_thread")

# MODALIGN_DATA when set, else ../shared/data beside the checkout (the library never looks there).
SHARED_DATA = Path(
    os.environ.get("MODALIGN_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)


@pytest.fixture(scope="module")
def digits():
    """400 samples of scikit-learn's digits (two image halves), z-scored: views and labels."""
    ds = load_dataset("digits")
    ds = ds.subset(np.random.default_rng(0).choice(ds.n_samples, 400, replace=False))
    ds = Preprocessor("auto").fit_transform(ds)
    return ds


def blobs(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Two views of 3 well separated classes: view 0 informative, view 1 pure noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 40)
    centres = rng.normal(size=(3, 5)) * 6
    informative = centres[y] + rng.normal(size=(120, 5))
    noise = rng.normal(size=(120, 40)) * 50  # larger scale and dimension: must not dominate
    return [informative, noise], y


def test_scale_view_gives_unit_total_variance() -> None:
    x = np.random.default_rng(0).normal(loc=5.0, scale=7.0, size=(50, 13))
    s = scale_view(torch.from_numpy(x))
    assert np.allclose(s.mean(axis=0), 0.0)
    assert np.linalg.norm(s) / np.sqrt(50) == pytest.approx(1.0)
    assert np.all(scale_view(np.ones((4, 3))) == 0.0)


def test_baselines_beat_majority_on_digits(digits) -> None:
    # Labels are stored by sample identity; row_labels gives them in row order (a subset keeps
    # the rows in their original order, so the two differ here).
    views, y = digits.views, digits.row_labels(0).numpy()
    base = clustering_scores(y, majority(views, 10, 0))
    assert base["accuracy"] == pytest.approx(np.bincount(y).max() / len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a possibly disconnected kNN graph
        preds = {
            "kmeans_concat": kmeans_concat(views, 10, 0),
            "kmeans_best_view": kmeans_best_view(views, 10, 0)[0],
            "spectral_concat": spectral_concat(views, 10, 0),
            "graph_concat": graph_concat(views, 10, 0),
            "graph_best_view": graph_best_view(views, 10, 0)[0],
        }
    for name, pred in preds.items():
        assert pred.shape == (400,) and pred.dtype == np.int64, name
        assert set(np.unique(pred)) <= set(range(10)), name
        scores = clustering_scores(y, pred)
        assert scores["accuracy"] > base["accuracy"] + 0.2, (name, scores)
        assert scores["nmi"] > 0.35, (name, scores)


def test_concat_balances_views() -> None:
    # Without per-view scaling the 40-dim, scale-50 noise view would swamp the informative one.
    views, y = blobs()
    assert hungarian_accuracy(y, kmeans_concat(views, 3, 0)) > 0.9


def test_best_view_choice_is_label_free_and_sensible() -> None:
    views, y = blobs()
    sel = kmeans_each_view(views, 3, seed=0)
    assert sel.best == 0
    assert sel.score[0] > sel.score[1]
    labels, view = kmeans_best_view(views, 3, seed=0)
    assert view == 0 and hungarian_accuracy(y, labels) > 0.95
    # The noise view first: the choice follows the data, not the position.
    labels2, view2 = kmeans_best_view(views[::-1], 3, seed=0)
    assert view2 == 1 and np.array_equal(labels2, labels)


def test_best_view_prefers_structure_over_low_dimension() -> None:
    # A 2-D view of structureless noise has a high explained-variance ratio just because it is
    # low-dimensional; the null-corrected score must still prefer the clustered 30-D view.
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 50)
    clustered = rng.normal(size=(4, 30))[y] + rng.normal(size=(200, 30))
    flat = rng.normal(size=(200, 2))
    sel = kmeans_each_view([flat, clustered], 4, seed=0)
    assert sel.explained[0] > sel.explained[1]  # the naive criterion would pick the noise
    assert sel.best == 1


def test_best_view_is_deterministic_and_never_sees_labels(digits) -> None:
    views = [x.numpy() for x in digits.views]
    a = kmeans_best_view(views, 10, seed=3)
    b = kmeans_best_view([v.copy() for v in views], 10, seed=3)
    assert a[1] == b[1] and np.array_equal(a[0], b[0])
    # The labels are not an input; permuting them changes only the scores, never the choice.
    y = digits.row_labels(0).numpy()
    y_perm = np.random.default_rng(0).permutation(10)[y]
    assert clustering_scores(y, a[0]) == pytest.approx(clustering_scores(y_perm, a[0]))


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
def test_deterministic_given_seed() -> None:
    views, _ = blobs(1)
    for name in BASELINES:
        first, again = run_baseline(name, views, 3, 5), run_baseline(name, views, 3, 5)
        assert first.keys() == again.keys(), name
        assert all(np.array_equal(first[v], again[v]) for v in first), name


def test_unaligned_setting() -> None:
    views, _ = blobs()
    assert {"kmeans_concat", "spectral_concat", "graph_concat"} <= ALIGNED_ONLY
    for name in ALIGNED_ONLY:
        with pytest.raises(ValueError, match="not in correspondence"):
            run_baseline(name, views, 3, 0, aligned=False)
    # Single-view baselines accept views of different lengths when unaligned.
    short = [views[0], views[1][:100]]
    labels, view = kmeans_best_view(short, 3, 0, aligned=False)
    assert view == 0 and labels.shape == (120,)
    assert majority(short, 3, 0, aligned=False).shape == (120,)
    with pytest.raises(ValueError, match="different row counts"):
        kmeans_best_view(short, 3, 0)


@pytest.mark.parametrize(
    ("views", "k", "message"),
    [
        (np.zeros((5, 2)), 2, "list"),
        ([], 2, "empty"),
        ([np.zeros(5)], 2, r"\(N, D\)"),
        ([np.array([[0.0, np.inf], [1.0, 2.0]])], 1, "NaN or inf"),
        ([np.zeros((5, 2))], 6, "exceeds"),
        ([np.zeros((5, 2))], 0, "positive"),
        ([np.zeros((5, 2))], 2.5, "positive"),
    ],
)
def test_bad_inputs(views, k: int, message: str) -> None:
    for baseline in (kmeans_concat, graph_concat, graph_best_view, graph_each_view, graph_fused):
        with pytest.raises(ValueError, match=message):
            baseline(views, k, 0)


def test_evaluate_baselines_aligned_and_unaligned() -> None:
    from modalign.data import MultiViewDataset

    views, y = blobs()
    ds = MultiViewDataset(views, y)
    recs = evaluate_baselines(ds, [0, 1], dataset="blobs", methods=["majority", "kmeans_concat"])
    assert len(recs) == 2 * 2 * 4 and {r["setting"] for r in recs} == {"aligned"}
    un = unalign(ds, 1.0, seed=0)
    recs = evaluate_baselines(un, [0], dataset="blobs")
    assert {r["method"] for r in recs} == {
        "majority",
        "kmeans_best_view",
        "graph_best_view",
        "graph_each_view",
        "graph_fused",
    }
    acc = {r["method"]: r["value"] for r in recs if r["metric"] == "accuracy"}
    # No known pair: the graph fusion has nothing to fuse.
    assert acc["graph_fused"] == acc["graph_each_view"]
    # Scored against the chosen view's own row labels, so unaligning costs nothing here.
    assert acc["kmeans_best_view"] > 0.95 and acc["graph_best_view"] > 0.95
    # Each view scored on its own rows and averaged: the informative view (1) and the noise
    # view (about 1/3 + the best matching's luck) together.
    assert 0.55 < acc["graph_each_view"] < 0.85


def prokaryotic_l2():
    try:
        ds = load_dataset("prokaryotic", SHARED_DATA)
    except MissingDataError as err:
        pytest.skip(f"real data not available: {err}")
    return Preprocessor("l2").fit_transform(ds)


def test_prokaryotic_best_view_picks_gene_repertoire() -> None:
    ds = prokaryotic_l2()
    labels, view = kmeans_best_view(ds.views, 4, seed=0)
    assert ds.names[view] == "gene_repert"
    scores = clustering_scores(ds.row_labels(view).numpy(), labels)
    # DESIGN.md section 3: purity about 0.84 for this baseline.
    assert scores["purity"] > 0.8
    assert scores["purity"] > np.bincount(ds.labels.numpy()).max() / ds.n_samples + 0.2


# ---------------------------------------------------------------------------------- the head alone
def test_graph_baselines_recover_well_separated_clusters() -> None:
    views, y = blobs()
    assert adjusted_rand_score(y, graph_concat(views, 3, 0)) > 0.95
    labels, view = graph_best_view(views, 3, 0)
    assert view == 0 and adjusted_rand_score(y, labels) > 0.95
    each = graph_each_view(views, 3, 0, aligned=False)
    assert [x.shape for x in each] == [(120,), (120,)]
    assert adjusted_rand_score(y, each[0]) > 0.95
    assert abs(adjusted_rand_score(y, each[1])) < 0.1  # the noise view holds no clusters


@pytest.mark.parametrize("order", [1, -1])
def test_graph_best_view_makes_the_kmeans_best_view_choice(order: int) -> None:
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 50)
    clustered = rng.normal(size=(4, 30))[y] + rng.normal(size=(200, 30))
    flat = rng.normal(size=(200, 2))
    views = [flat, clustered][::order]
    for seed in (0, 1):
        chosen = kmeans_best_view(views, 4, seed)[1]
        assert graph_best_view(views, 4, seed)[1] == chosen
        assert graph_best_view(views, 4, seed, aligned=False)[1] == chosen
    assert chosen == (1 if order == 1 else 0)


def test_head_is_otms_head_with_the_given_settings() -> None:
    views, _ = blobs()
    concat = np.concatenate([scale_view(x) for x in views], axis=1)
    for head in (OTMConfig(n_clusters=3), OTMConfig(n_clusters=3, cluster_structure="sqeuclidean")):
        # The same code path as OTM clustering its codes (float64, as OTM.predict passes them).
        otm = OTM(head, random_state=2).assign_clusters(torch.from_numpy(concat))
        assert np.array_equal(graph_concat(views, 3, 2, head=head), otm)
    # Settings come from the config: another structure gives other clusters of the noise view.
    noise = views[1]
    default = head_clusters(noise, 3, 0)
    sq = head_clusters(noise, 3, 0, head=OTMConfig(n_clusters=3, cluster_structure="sqeuclidean"))
    assert not np.array_equal(default, sq)
    with pytest.raises(ValueError, match="head.n_clusters=4 but n_clusters=3"):
        head_clusters(noise, 3, 0, head=OTMConfig(n_clusters=4))


def test_unaligned_head_ignores_the_order_rows_come_in() -> None:
    # On a structureless view the head's clusters depend on the row order unless the rows are
    # put in content order first, as OTM does for each view in the unaligned setting.
    views, _ = blobs()
    perm = np.random.default_rng(1).permutation(120)
    shuffled = [views[0], views[1][perm]]
    before = graph_each_view(views, 3, 0, aligned=False)[1]
    after = graph_each_view(shuffled, 3, 0, aligned=False)[1]
    assert np.array_equal(after, before[perm])


def test_score_prediction_scores_each_view_on_its_own_rows() -> None:
    from modalign.data import MultiViewDataset

    views, y = blobs()
    un = unalign(MultiViewDataset(views, y), 1.0, seed=0)
    rng = np.random.default_rng(0)
    pred = {0: rng.integers(0, 3, 120), 1: un.row_labels(1).numpy().copy()}
    scores = score_prediction(un, pred)
    rows = [un.row_labels(v).numpy() for v in (0, 1)]
    assert scores["ari"] == pytest.approx(
        np.mean([adjusted_rand_score(rows[v], pred[v]) for v in (0, 1)]), abs=1e-12
    )
    assert scores["nmi"] == pytest.approx(
        np.mean([normalized_mutual_info_score(rows[v], pred[v]) for v in (0, 1)]), abs=1e-12
    )
    # A single view's clusters are scored against that view's rows, not view 0's.
    assert score_prediction(un, {1: pred[1]})["accuracy"] == 1.0
    with pytest.raises(ValueError, match="no view"):
        score_prediction(un, {})
    with pytest.raises(ValueError, match="unknown baseline"):
        run_baseline("dbscan", views, 3)
