"""Graph fusion of OTM's prediction: aligned, the rows are clustered once on the mean of the
views' structures; partially aligned, every view's rows are clustered at once on one graph
joined through the known pairs (``pair_fusion="joined"``), or the known pairs alone and then
label spreading to each view's other rows (``"spread"``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalign.data import load_digits_views, unalign
from modalign.eval.baselines import graph_each_view, graph_fused
from modalign.eval.metrics import clustering_scores
from modalign.methods import OTM, OTMConfig
from modalign.methods.otm import canonical_order
from modalign.ot.clustering import graph_cluster, head_structure, pair_fused_structures

pytestmark = pytest.mark.usefixtures("one_thread")


def _clear_and_noisy(n: int = 240, k: int = 4, seed: int = 0):
    """Two views of n samples in k classes (sample i in class i % k): a clear one and one
    whose class centres are buried in noise three times their spread."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    clear = 3 * rng.normal(size=(k, 6))[labels] + rng.normal(size=(n, 6))
    noisy = 3 * rng.normal(size=(k, 6))[labels] + 3 * rng.normal(size=(n, 6))
    return clear, noisy, labels


def _accuracy(labels, clusters) -> float:
    return clustering_scores(labels, clusters)["accuracy"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pair_fusion_against_a_loop_reference(dtype):
    g = torch.Generator().manual_seed(0)
    structures = [torch.rand(7, 7, generator=g, dtype=dtype) for _ in range(3)]
    known = torch.tensor([1, 0, 1, 1, 0, 0, 1], dtype=torch.bool)
    fused = pair_fused_structures(structures, known)
    for m, s in enumerate(structures):
        want = s.clone()
        for i in range(7):
            for j in range(7):
                if known[i] and known[j]:
                    want[i, j] = sum(t[i, j] for t in structures) / 3
        torch.testing.assert_close(fused[m], want)
    # No pair: every view keeps its own; every row a pair: one mean structure for all.
    none = pair_fused_structures(structures, torch.zeros(7, dtype=torch.bool))
    assert all(torch.equal(a, b) for a, b in zip(none, structures))
    every = pair_fused_structures(structures, torch.ones(7, dtype=torch.bool))
    assert torch.equal(every[0], every[2])
    with pytest.raises(ValueError, match="marks 3 rows"):
        pair_fused_structures(structures, known[:3])
    with pytest.raises(ValueError, match="one N"):
        pair_fused_structures([structures[0], structures[1][:5, :5]], known)


def test_head_on_a_given_structure_is_the_head_on_the_points():
    x, _, _ = _clear_and_noisy(n=80)
    points = torch.from_numpy(x)
    own = graph_cluster(points, 4, random_state=3)
    given = graph_cluster(None, 4, random_state=3, dissimilarity=head_structure(points, 4))
    assert torch.equal(own, given)


def test_known_pairs_carry_a_clear_views_clusters_to_a_noisy_one():
    """OTM's head with pair fusion on raw views: the known pairs share one clustering, and
    the noisy view's clusters improve with the share of known pairs (measured 0.742 alone,
    0.838 with half the rows pairs, 1.0 with all), while the clear view stays near its own
    (1.0 alone, 0.979 with half: its known rows are clustered on the mean of both graphs)."""
    clear, noisy, labels = _clear_and_noisy()
    alone = graph_each_view([clear, noisy], 4, 0, aligned=False)
    known = np.zeros(len(labels), dtype=bool)
    known[np.random.default_rng(1).permutation(len(labels))[:120]] = True
    fused = graph_fused([clear, noisy], 4, 0, aligned=False, known=known)
    assert np.array_equal(fused[0][known], fused[1][known])
    assert _accuracy(labels, alone[0]) == 1.0 and _accuracy(labels, fused[0]) > 0.95
    assert _accuracy(labels, fused[1]) > _accuracy(labels, alone[1]) + 0.08
    every = graph_fused([clear, noisy], 4, 0, aligned=True)
    assert np.array_equal(every[0], every[1]) and _accuracy(labels, every[1]) == 1.0


def test_pair_fusion_reads_only_which_rows_are_pairs():
    """Shuffling the noisy view's rows that are not pairs (their correspondence is unknown)
    moves its clusters with the rows and changes nothing else."""
    clear, noisy, _ = _clear_and_noisy(n=120)
    known = np.zeros(120, dtype=bool)
    known[::3] = True
    loose = np.flatnonzero(~known)
    order = np.arange(120)
    order[loose] = np.random.default_rng(2).permutation(loose)
    base = graph_fused([clear, noisy], 4, 0, aligned=False, known=known)
    moved = graph_fused([clear, noisy[order]], 4, 0, aligned=False, known=known)
    assert np.array_equal(base[0], moved[0])
    assert np.array_equal(base[1][order], moved[1])


def test_no_known_pair_is_the_head_on_each_view():
    clear, noisy, _ = _clear_and_noisy(n=80)
    none = np.zeros(80, dtype=bool)
    each = graph_each_view([clear, noisy], 4, 5, aligned=False)
    for a, b in zip(graph_fused([clear, noisy], 4, 5, aligned=False, known=none), each):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="one mask entry per row"):
        graph_fused([clear, noisy], 4, 0, aligned=False, known=none[:10] | True)


@pytest.fixture(scope="module")
def trained_partial():
    ds = load_digits_views().subset(np.arange(0, 1797, 6))  # 300 samples
    data = unalign(ds, 0.5, seed=0)  # half the rows known pairs
    cfg = OTMConfig(n_clusters=10, latent_dim=8, epochs=3, warmup_epochs=1, cluster_restarts=2)
    model = OTM(cfg, random_state=0).fit(list(data.views), aligned=False, known_pairs=data.paired)
    return data, model


def test_otm_predicts_through_the_graph_fusion_and_its_ablation_does_not(trained_partial):
    data, model = trained_partial
    views = list(data.views)
    with_pairs = model.predict(views, aligned=False, known_pairs=data.paired)
    codes = [z.double() for z in model.transform(views)]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(with_pairs, model.assign_paired_clusters(codes, data.paired))
    )
    model.config.fusion = "codes"
    try:
        without = model.predict(views, aligned=False, known_pairs=data.paired)
    finally:
        model.config.fusion = "graphs"
    own = model.predict(views, aligned=False)
    assert all(np.array_equal(a, b) for a, b in zip(without, own))
    assert not all(np.array_equal(a, b) for a, b in zip(with_pairs, own))
    with pytest.raises(ValueError, match="unaligned setting"):
        model.predict(views, aligned=True, known_pairs=data.paired)


def test_pair_fusion_does_not_key_the_checkpoint(tmp_path, trained_partial):
    """A prediction-only field neither keys nor invalidates a checkpoint: a model that differs
    only in it resumes the finished run instead of training again."""
    data, _ = trained_partial
    cfg = OTMConfig(n_clusters=10, latent_dim=8, epochs=2, warmup_epochs=1, cluster_restarts=1)
    assert "fusion" not in cfg.training_settings()
    assert "pair_restarts" not in cfg.training_settings()
    assert "pair_fusion" not in cfg.training_settings()
    assert "aligned_restarts" not in cfg.training_settings()
    assert "aligned_size_refinement" not in cfg.training_settings()
    ckpt = tmp_path / "run.pt"
    views = list(data.views)
    first = OTM(cfg, random_state=1).fit(
        views, aligned=False, known_pairs=data.paired, checkpoint=ckpt
    )
    other = OTMConfig(
        **{
            **cfg.training_settings(),
            "fusion": "codes",
            "pair_restarts": 3,
            "pair_fusion": "spread",
            "aligned_restarts": 2,
            "aligned_size_refinement": False,
        }
    )
    again = OTM(other, random_state=1).fit(
        views, aligned=False, known_pairs=data.paired, checkpoint=ckpt, stop_after=0
    )
    assert again.history == first.history
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_aligned_prediction_averages_the_views_graphs():
    views = [v[:150] for v in load_digits_views().views]
    cfg = OTMConfig(n_clusters=10, latent_dim=8, epochs=2, warmup_epochs=1, cluster_restarts=2)
    model = OTM(cfg, random_state=0).fit(views, aligned=True)
    labels = model.predict(views, aligned=True)
    # One clustering shared by the views: the head on the mean of the views' structures,
    # rows in view 0's content order.
    codes = [z.double() for z in model.transform(views)]
    order = canonical_order(codes[0])
    mean = torch.stack([head_structure(z[order], 10) for z in codes]).mean(0)
    # With the aligned head's own restarts (sixth round), not cluster_restarts: on this data
    # the two find different labels, so a prediction that took cluster_restarts would fail.
    default = cfg.aligned_restarts
    fewer = model.assign_clusters(None, dissimilarity=mean, restarts=cfg.cluster_restarts)
    assert not np.array_equal(
        fewer, model.assign_clusters(None, dissimilarity=mean, restarts=default)
    )
    # The aligned head refines its sizes (eighth round); a prediction that ignored the switch
    # would fail, the two differ here.
    assert cfg.aligned_size_refinement
    refined = model.assign_clusters(None, dissimilarity=mean, restarts=default, refine_sizes=True)
    assert not np.array_equal(
        refined, model.assign_clusters(None, dissimilarity=mean, restarts=default)
    )
    for restarts, refine in ((default, True), (default, False), (1, True)):
        model.config.aligned_restarts = restarts
        model.config.aligned_size_refinement = refine
        want = np.empty(150, dtype=np.int64)
        want[order.numpy()] = model.assign_clusters(
            None, dissimilarity=mean, restarts=restarts, refine_sizes=refine
        )
        assert np.array_equal(model.predict(views, aligned=True), want)
    model.config.aligned_restarts = default
    model.config.aligned_size_refinement = True
    assert np.array_equal(labels, model.predict(views, aligned=True))
    model.config.fusion = "codes"
    try:
        side_by_side = model.predict(views, aligned=True)
    finally:
        model.config.fusion = "graphs"
    assert np.array_equal(side_by_side, model.assign_clusters(model.fused_codes(views)[0]))
    assert not np.array_equal(side_by_side, labels)


@pytest.mark.parametrize("fusion", ["graphs", "codes"])
def test_federated_server_clusters_aligned_codes_as_centralised_otm(fusion):
    from modalign.federated import FederatedConfig
    from modalign.federated.server import Coordinator

    views = [v[:120] for v in load_digits_views().views]
    cfg = OTMConfig(
        n_clusters=10, latent_dim=8, epochs=2, warmup_epochs=1, cluster_restarts=2, fusion=fusion
    )
    model = OTM(cfg, random_state=4).fit(views, aligned=True)
    codes = {m: z.numpy() for m, z in enumerate(model.transform(views))}
    server = Coordinator(FederatedConfig(dataset="digits", otm=cfg, seed=4))
    clusters = server.cluster(codes)
    want = model.predict(views, aligned=True)
    assert all(np.array_equal(clusters[m], want) for m in codes)


def test_spread_clusters_the_known_rows_with_their_own_restarts(trained_partial):
    """With ``pair_fusion="spread"`` the known rows' one clustering is the head on the mean of
    the views' structures over them with ``pair_restarts``."""
    data, model = trained_partial
    assert model.config.pair_fusion == "joined"  # the default, since the fifth round
    model.config.pair_fusion = "spread"
    try:
        _check_spread_restarts(data, model)
    finally:  # the fixture is shared: leave its config as it came
        model.config.pair_fusion = "joined"
        model.config.pair_restarts = OTMConfig(n_clusters=10).pair_restarts


def _check_spread_restarts(data, model):
    views = list(data.views)
    codes = [z.double() for z in model.transform(views)]
    pairs = data.paired.nonzero().reshape(-1)
    pairs = pairs[canonical_order(codes[0][pairs])]
    mean = torch.stack([head_structure(z[pairs], 10) for z in codes]).mean(0)
    labels = model.predict(views, aligned=False, known_pairs=data.paired)
    for restarts in (model.config.pair_restarts, 1):
        model.config.pair_restarts = restarts
        want = model.assign_clusters(None, dissimilarity=mean, restarts=restarts)
        got = model.assign_paired_clusters(codes, data.paired)
        assert all(np.array_equal(view[pairs.numpy()], want) for view in got)
    # Back at the default restarts, the prediction is the first one again.
    model.config.pair_restarts = OTMConfig(n_clusters=10).pair_restarts
    assert all(
        np.array_equal(a, b)
        for a, b in zip(labels, model.predict(views, aligned=False, known_pairs=data.paired))
    )
    with pytest.raises(ValueError, match="at least one known pair"):
        model.assign_paired_clusters(codes, torch.zeros(len(pairs) * 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="pair_restarts"):
        OTMConfig(n_clusters=10, pair_restarts=0)
    with pytest.raises(ValueError, match="pair_fusion must be one of"):
        OTMConfig(n_clusters=10, pair_fusion="mean")


def _duplicated_small_clusters(k: int = 40, n: int = 10, seed: int = 0):
    """Two identical views (as ORL's) of k Gaussian blobs of n rows in 20 dimensions, and a
    random half of the rows as known pairs: the pairs carry nothing either view lacks."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n)
    x = (1.2 * rng.normal(size=(k, 20))[labels] + rng.normal(size=(k * n, 20))).astype(np.float32)
    return [x, x.copy()], labels, rng.random(k * n) < 0.5


def test_joined_graph_keeps_small_clusters_whole():
    """40 clusters of 10 rows, duplicated views, half the rows known pairs. Clustering the
    known rows alone sees 1-8 rows of each cluster and then spreads (measured 0.790); the
    joined graph clusters every row at once and loses nothing against the head on each view
    alone (0.921 against 0.890; scripts/pair_subset_synthetic.py has more seeds)."""
    views, labels, known = _duplicated_small_clusters()
    alone = graph_each_view(views, 40, 0, aligned=False)
    joined = graph_fused(views, 40, 0, aligned=False, known=known)  # the default
    spread_head = OTMConfig(n_clusters=40, pair_fusion="spread")
    spread = graph_fused(views, 40, 0, aligned=False, known=known, head=spread_head)
    assert np.array_equal(joined[0][known], joined[1][known])

    def accuracy(clusters):
        return np.mean([_accuracy(labels, c) for c in clusters])

    assert accuracy(joined) > accuracy(spread) + 0.05
    assert accuracy(joined) > accuracy(alone) - 0.02
