"""OTM in the partially aligned setting: known pairs in the mixer, the batches and the curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from modalign.cli import app
from modalign.data import load_digits_views, unalign
from modalign.methods import OTM, OTMConfig, ot_mix
from modalign.methods.otm import anchor_profiles

pytestmark = pytest.mark.usefixtures("one_thread")


def _rotated_pair(n: int = 60, k: int = 15, seed: int = 0, clusters: int = 0):
    """Codes of two modalities for the same n samples: the second a rotation plus a shift of
    the first (unrelated coordinates, same geometry); rows k.. of the second are shuffled.
    With ``clusters``, samples lie in that many tight clusters (sample i in cluster i % c)."""
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, 5, generator=g, dtype=torch.float64)
    if clusters:
        centres = 4 * torch.randn(clusters, 5, generator=g, dtype=torch.float64)
        z0 = centres[torch.arange(n) % clusters] + 0.3 * z0
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    z1 = z0 @ q + 10.0
    perm = torch.cat([torch.arange(k), k + torch.randperm(n - k, generator=g)])
    return z0, z1[perm], perm


def _cross_mass(z0, z1, n_known: int, same) -> float:
    """Share of the view-0 x view-1 coupling of the loose rows (through the barycenter) on
    the pairs where ``same(sample of view-0 row, sample of view-1 row)``."""
    _, bary = ot_mix([z0, z1], torch.Generator().manual_seed(0), n_known=n_known)
    t0, t1 = bary.couplings
    cross = t0.T @ (t1 / t0.sum(1, keepdim=True))
    return float(cross[same].sum() / cross.sum())


def test_anchor_profiles_are_invariant_to_rotation_and_shift():
    z0, z1, perm = _rotated_pair()
    p0, p1 = anchor_profiles(z0, 15), anchor_profiles(z1, 15)
    assert p0.shape == (60, 15)
    # Row r of view 1 is sample perm[r]: its distances to the shared anchors are the same.
    assert torch.allclose(p1, p0[perm], atol=1e-9)


def test_known_pairs_mix_through_their_correspondence():
    z0, z1, _ = _rotated_pair()
    mixed, bary = ot_mix([z0, z1], torch.Generator().manual_seed(0), n_known=15)
    # Known pairs share one mixed code: an entrywise convex combination of the pair's codes.
    assert torch.equal(mixed[0][:15], mixed[1][:15])
    lo, hi = torch.minimum(z0[:15], z1[:15]), torch.maximum(z0[:15], z1[:15])
    assert bool(((mixed[0][:15] >= lo - 1e-12) & (mixed[0][:15] <= hi + 1e-12)).all())
    assert mixed[0].shape == z0.shape and mixed[1].shape == z1.shape
    assert bary is not None and bary.couplings[0].shape[1] == 45


def test_anchors_let_the_couplings_find_the_true_pairs():
    """Same-geometry views with unrelated coordinates: through anchor profiles the coupling
    between the views' loose rows puts its mass on the true pairs; on raw codes it cannot."""
    z0, z1, perm = _rotated_pair()
    loose = torch.arange(15, 60)[:, None] == perm[15:][None, :]
    with_anchors = _cross_mass(z0, z1, 15, loose)
    without = _cross_mass(z0, z1, 0, torch.arange(60)[:, None] == perm[None, :])
    assert with_anchors > 0.9 and without < 0.1  # measured: 0.97 and 0.02
    # Tight clusters: the solver's blur spreads mass within a cluster, which stays in it.
    z0, z1, perm = _rotated_pair(clusters=4)
    same_cluster = (torch.arange(15, 60) % 4)[:, None] == (perm[15:] % 4)[None, :]
    assert _cross_mass(z0, z1, 15, same_cluster) > 0.9
    assert _cross_mass(z0, z1, 0, (torch.arange(60) % 4)[:, None] == (perm % 4)[None, :]) < 0.5


def test_ot_mix_rejects_bad_known_pair_counts():
    z = torch.randn(10, 3)
    with pytest.raises(ValueError, match="n_known"):
        ot_mix([z, z], torch.Generator(), n_known=11)
    with pytest.raises(ValueError, match="without a known pair"):
        ot_mix([z, z[:5]], torch.Generator(), n_known=5)


@pytest.fixture(scope="module")
def digits_partial():
    ds = load_digits_views().subset(np.arange(0, 1797, 6))  # 300 samples
    return unalign(ds, 0.7, seed=0)  # 30 % of the rows known pairs


def test_partial_batches_lead_with_known_pairs(digits_partial):
    data = digits_partial
    known = data.paired
    model = OTM(OTMConfig(n_clusters=10, batch_size=50), random_state=0)
    batches, k = model._batches(list(data.views), torch.Generator().manual_seed(0), False, known)
    assert k == round(50 * int(known.sum()) / 300)  # known pairs in proportion
    seen = [set(), set()]
    for rows in batches:
        assert all(len(r) == 50 for r in rows)
        assert torch.equal(rows[0][:k], rows[1][:k])  # the same known rows in both views
        assert bool(known[rows[0][:k]].all())
        for v, r in enumerate(rows):
            assert not bool(known[r[k:]].any())  # the rest are rows without a pair
            assert not seen[v] & set(r.tolist())  # no row twice in an epoch
            seen[v] |= set(r.tolist())


def test_partial_fit_trains_and_refuses_misuse(digits_partial):
    data = digits_partial
    views = list(data.views)
    cfg = OTMConfig(n_clusters=10, latent_dim=8, epochs=3, warmup_epochs=1, cluster_restarts=1)
    model = OTM(cfg, random_state=0).fit(views, aligned=False, known_pairs=data.paired)
    assert all(h["mixed"] > 0 for h in model.history[1:])  # mixing ran after the warm-up
    labels = model.predict(views, aligned=False)
    assert [len(p) for p in labels] == [300, 300]
    with pytest.raises(ValueError, match="unaligned setting"):
        OTM(cfg).fit(views, aligned=True, known_pairs=data.paired)
    with pytest.raises(ValueError, match="one entry per row"):
        OTM(cfg).fit(views, aligned=False, known_pairs=data.paired[:10])


def test_known_pairs_curve_from_the_command_line(tmp_path):
    ds = load_digits_views().subset(np.arange(0, 1797, 6))  # 300 digits, as a .npz file
    data = tmp_path / "digits300.npz"
    np.savez(data, left=ds.views[0].numpy(), right=ds.views[1].numpy(), labels=ds.labels.numpy())
    args = [
        "cluster",
        "--dataset",
        str(data),
        "--setting",
        "partial",
        "--known-pairs",
        "0,0.5,1",
        "--methods",
        "otm,kmeans-best-view",
        "--seeds",
        "1",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Accuracy against the share of known pairs" in md
    for share in ("0", "0.5", "1"):
        assert f"known pairs {share}" in md
    assert (tmp_path / "out" / "known_pairs.png").stat().st_size > 5_000
    bad = CliRunner().invoke(app, [*args[:6], "0,half", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--known-pairs" in bad.output


def test_every_row_a_known_pair_trains_as_the_aligned_setting(digits_partial):
    views = [v[:120] for v in load_digits_views().views]
    cfg = OTMConfig(n_clusters=10, latent_dim=4, epochs=2, warmup_epochs=1, batch_size=40)
    aligned = OTM(cfg, random_state=3).fit(views, aligned=True)
    all_known = OTM(cfg, random_state=3).fit(
        views, aligned=False, known_pairs=torch.ones(120, dtype=torch.bool)
    )
    for (name, a), b in zip(aligned.state_dict().items(), all_known.state_dict().values()):
        assert torch.equal(a, b), name


def test_batches_never_claim_more_known_pairs_than_exist():
    # Batches larger than the data: the known share of a batch is capped by the pairs there are.
    views = [torch.randn(20, 3), torch.randn(20, 2)]
    known = torch.zeros(20, dtype=torch.bool)
    known[:2] = True
    model = OTM(OTMConfig(n_clusters=2, batch_size=64), random_state=0)
    batches, k = model._batches(views, torch.Generator().manual_seed(0), False, known)
    assert k == 2 and len(batches) == 1
    assert bool(known[batches[0][0][:k]].all()) and not bool(known[batches[0][0][k:]].any())
