"""OTM's structure term: the scale-free distance stress and what it does to the codes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from sklearn.neighbors import NearestNeighbors

from modalign.methods import OTM, OTMConfig
from modalign.methods.otm import LOSS_TERMS
from modalign.nn import distance_stress

pytestmark = pytest.mark.usefixtures("one_thread")


def stress_reference(x: np.ndarray, z: np.ndarray) -> float:
    """The stress from scipy's pairwise distances, written independently of torch."""
    dx, dz = pdist(x), pdist(z)
    return float(np.mean((dx / dx.mean() - dz / dz.mean()) ** 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_distance_stress_matches_scipy(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 12, generator=gen, dtype=torch.float64)
    z = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    got = float(distance_stress(x.to(dtype), z.to(dtype)))
    assert got == pytest.approx(stress_reference(x.numpy(), z.numpy()), rel=1e-4)


def test_distance_stress_vanishes_on_scaled_isometries_only():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    isometry = 7.5 * x @ rotation + 3.0  # rotated, scaled and moved: same structure
    assert float(distance_stress(x, isometry)) < 1e-20
    scrambled = isometry[torch.randperm(50, generator=gen)]  # same points, rows reassigned
    assert float(distance_stress(x, scrambled)) > 0.1
    # No gradient flows to the inputs; coinciding codes keep finite gradients.
    codes = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
    distance_stress(x[:5], codes).backward()
    assert bool(torch.isfinite(codes.grad).all())
    # Nothing to keep: identical inputs or a single row cost zero.
    assert float(distance_stress(torch.ones(5, 6), torch.randn(5, 3))) == 0.0
    assert float(distance_stress(x[:1], x[:1, :3])) == 0.0
    with pytest.raises(ValueError, match="same rows"):
        distance_stress(x, x[:10])


def clustered_views(n: int = 240, k: int = 6) -> list[torch.Tensor]:
    """Two views of one 5-D clustered latent through different random nonlinear maps."""
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(k, 5, generator=gen)[torch.arange(n) % k] * 3
    latent = latent + torch.randn(n, 5, generator=gen)
    views = []
    for _ in range(2):
        x = torch.tanh(latent @ torch.randn(5, 40, generator=gen) / 3)
        x = x + 0.1 * torch.randn(n, 40, generator=gen)
        views.append((x - x.mean(0)) / x.std(0))
    return views


def knn_kept(x: torch.Tensor, z: torch.Tensor, k: int = 10) -> float:
    """Mean share of each row's k nearest inputs that are among its k nearest codes."""
    near = [
        NearestNeighbors(n_neighbors=k + 1).fit(a).kneighbors(a, return_distance=False)[:, 1:]
        for a in (x.double().numpy(), z.double().numpy())
    ]
    return float(np.mean([len(set(p) & set(q)) / k for p, q in zip(*near)]))


def test_structure_term_keeps_each_views_knn_graph():
    """Measured (seed 0, 20 epochs, mean over the views): input 10-NN kept in the codes 0.76
    with the term, 0.61 without it, 0.56 untrained; stress of the final codes 0.006-0.008 with
    the term against 0.030-0.039 without."""
    views = clustered_views()
    cfg = OTMConfig(
        n_clusters=6, latent_dim=8, mixer="none", epochs=20, batch_size=32, lambda_structure=16
    )
    kept = {}
    for name, changes in {
        "structure": {},
        "plain": {"lambda_structure": 0.0},
        "untrained": {"lr": 0.0, "epochs": 1},
    }.items():
        model = OTM(dataclasses.replace(cfg, **changes), random_state=0).fit(views, aligned=False)
        codes = model.transform(views)
        kept[name] = np.mean([knn_kept(v, z) for v, z in zip(views, codes)])
        if name == "structure":
            history = model.history
            stress = [float(distance_stress(v, z)) for v, z in zip(views, codes)]
        if name == "plain":
            plain_stress = [float(distance_stress(v, z)) for v, z in zip(views, codes)]
    assert set(history[0]) >= set(LOSS_TERMS)
    assert history[-1]["structure"] < 0.3 * history[0]["structure"]
    assert max(stress) < 0.5 * min(plain_stress), (stress, plain_stress)
    assert kept["structure"] > kept["plain"] + 0.04, kept
    assert kept["structure"] > kept["untrained"] + 0.1, kept


def test_structure_term_needs_no_correspondence():
    """Unaligned training with the term stays independent of how the rows came."""
    views = clustered_views(120)
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(3))
    cfg = OTMConfig(n_clusters=6, latent_dim=4, epochs=3, warmup_epochs=1, lambda_structure=4)
    a = OTM(cfg, random_state=0).fit(views, aligned=False)
    b = OTM(cfg, random_state=0).fit([views[0], views[1][perm]], aligned=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert a.history[-1]["structure"] > 0 and a.history[-1]["mixed"] > 0


def test_negative_weights_are_refused():
    with pytest.raises(ValueError, match="lambda_structure must be >= 0"):
        OTMConfig(n_clusters=3, lambda_structure=-1)


def test_distance_stress_keeps_a_given_reference():
    """``reference`` replaces the inputs' distances: another matrix's pair distances give that
    matrix's stress (scipy reference), and any positive rescaling of it changes nothing."""
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(12, 6, generator=g), torch.randn(12, 3, generator=g)
    codes = torch.randn(12, 4, generator=g)
    dy = torch.from_numpy(np.asarray(pdist(y.numpy()), dtype=np.float32))
    dz = torch.from_numpy(np.asarray(pdist(codes.numpy()), dtype=np.float32))
    want = ((dy / dy.mean() - dz / dz.mean()) ** 2).mean()
    reference = torch.cdist(y, y)
    torch.testing.assert_close(distance_stress(x, codes, reference=reference), want)
    torch.testing.assert_close(
        distance_stress(x, codes, reference=3.0 * reference), distance_stress(y, codes)
    )
    assert not torch.isclose(
        distance_stress(x, codes, reference=reference), distance_stress(x, codes)
    )
