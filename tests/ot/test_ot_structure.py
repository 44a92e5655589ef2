"""Structure helpers: squared distances (dense and exact low-rank), kernels, normalisation."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import scipy.spatial.distance as ssd
import torch

from modalign.ot import (
    LowRank,
    kernel_structure,
    normalize_structure,
    sq_distances,
    sqeuclidean_lowrank,
)
from modalign.ot.structure import squared_matvec


def _tol(dtype, f32, f64):
    return f64 if dtype == torch.float64 else f32


def test_sq_distances_matches_pot(dtype, ref):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(7, 4)) + 2.0
    d_xy = sq_distances(torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype))
    d_xx = sq_distances(torch.tensor(x, dtype=dtype))
    assert d_xy.shape == (9, 7) and d_xy.dtype == dtype
    scale = pot.dist(x, y).max()
    np.testing.assert_allclose(
        ref.asnp(d_xy), pot.dist(x, y), atol=_tol(dtype, 1e-5, 1e-12) * scale
    )
    np.testing.assert_allclose(
        ref.asnp(d_xx), pot.dist(x, x), atol=_tol(dtype, 1e-5, 1e-12) * pot.dist(x, x).max()
    )
    assert bool((d_xx >= 0).all()), "squared distances are clamped at zero"


@pytest.mark.parametrize("d", [1, 3, 6])
def test_sqeuclidean_lowrank_is_exact(dtype, d, ref):
    rng = np.random.default_rng(d)
    x = rng.normal(size=(11, d)) * 3.0
    low = sqeuclidean_lowrank(torch.tensor(x, dtype=dtype))
    assert isinstance(low, LowRank)
    assert low.rank == d + 2
    assert tuple(low.shape) == (11, 11)
    assert low.dtype == dtype
    full = pot.dist(x, x)
    np.testing.assert_allclose(
        ref.asnp(low.dense()), full / full.max(), atol=_tol(dtype, 1e-5, 1e-12)
    )
    raw = sqeuclidean_lowrank(torch.tensor(x, dtype=dtype), normalize=False)
    np.testing.assert_allclose(
        ref.asnp(raw.dense()), full, atol=_tol(dtype, 1e-4, 1e-11) * full.max()
    )


def test_sqeuclidean_lowrank_batched_normalises_each_matrix(ref):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 8, 2)) * np.array([1.0, 10.0, 0.1])[:, None, None]
    low = sqeuclidean_lowrank(torch.tensor(x))
    assert tuple(low.shape) == (3, 8, 8)
    dense = ref.asnp(low.dense())
    for b in range(3):
        full = pot.dist(x[b], x[b])
        np.testing.assert_allclose(dense[b], full / full.max(), atol=1e-12)
    # indexing a batch of factors gives the factors of one matrix
    # Not bit for bit: one matrix of a batched product and a single product may use
    # different BLAS kernels (different accumulation orders).
    np.testing.assert_allclose(ref.asnp(low[1].dense()), dense[1], atol=1e-13)


def test_lowrank_transpose_and_to(ref):
    rng = np.random.default_rng(4)
    left, right = rng.normal(size=(5, 3)), rng.normal(size=(6, 3))
    low = LowRank(torch.tensor(left), torch.tensor(right))
    assert tuple(low.shape) == (5, 6)
    np.testing.assert_allclose(ref.asnp(low.dense()), left @ right.T, atol=1e-14)
    np.testing.assert_allclose(ref.asnp(low.mT.dense()), (left @ right.T).T, atol=1e-14)
    low32 = low.to(torch.float32)
    assert low32.dtype == torch.float32 and low32.left.dtype == low32.right.dtype
    np.testing.assert_allclose(ref.asnp(low32.dense()), left @ right.T, atol=1e-5)


@pytest.mark.parametrize("bandwidth", [None, 0.7])
def test_kernel_structure(dtype, bandwidth, ref):
    rng = np.random.default_rng(5)
    # n = 10 gives 45 distinct pairs: an odd count, so "the median" is one pair's distance
    x = rng.normal(size=(10, 3))
    k = kernel_structure(torch.tensor(x, dtype=dtype), bandwidth=bandwidth)
    assert k.shape == (10, 10) and k.dtype == dtype
    kn = ref.asnp(k)
    np.testing.assert_allclose(kn, kn.T, atol=0)
    np.testing.assert_allclose(np.diag(kn), 1.0, atol=_tol(dtype, 1e-6, 1e-14))
    h = np.median(ssd.pdist(x)) if bandwidth is None else bandwidth
    expected = np.exp(-ssd.squareform(ssd.pdist(x, "sqeuclidean")) / (2 * h**2))
    np.testing.assert_allclose(kn, expected, atol=_tol(dtype, 1e-5, 1e-12))
    assert float(k.min()) > 0 and float(k.max()) <= 1 + 1e-6


def test_kernel_structure_rejects_bad_bandwidth():
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        kernel_structure(x, bandwidth=-1.0)


def test_normalize_structure(dtype, ref):
    rng = np.random.default_rng(6)
    c = rng.uniform(0.5, 4.0, size=(2, 7, 7))
    c = c + np.swapaxes(c, -1, -2)
    ct = torch.tensor(c, dtype=dtype)
    by_max = ref.asnp(normalize_structure(ct, "max"))
    by_mean = ref.asnp(normalize_structure(ct, "mean"))
    for b in range(2):  # each matrix of a batch on its own
        np.testing.assert_allclose(by_max[b], c[b] / c[b].max(), rtol=_tol(dtype, 1e-6, 1e-14))
        np.testing.assert_allclose(by_mean[b], c[b] / c[b].mean(), rtol=_tol(dtype, 1e-6, 1e-14))
    # scale free: a positive multiple normalises to the same matrix
    np.testing.assert_allclose(
        ref.asnp(normalize_structure(ct * 37.0)), by_max, rtol=_tol(dtype, 1e-6, 1e-14)
    )
    with pytest.raises(ValueError, match="unknown normalisation 'median'"):
        normalize_structure(ct, "median")


@pytest.mark.parametrize("n", [30, 700])  # 700 x 700 is above one block: squared in row blocks
def test_squared_matvec_matches_its_definition(dtype, n):
    rng = np.random.default_rng(n)
    c, w = rng.normal(size=(n, n)), rng.random(n)
    got = squared_matvec(torch.tensor(c, dtype=dtype), torch.tensor(w, dtype=dtype))
    want = (c**2) @ w
    assert got.shape == (n,) and got.dtype == dtype
    np.testing.assert_allclose(got.double().numpy(), want, rtol=_tol(dtype, 1e-5, 1e-12))
    batched = squared_matvec(torch.tensor(np.stack([c, 2 * c])), torch.tensor(w))
    np.testing.assert_allclose(batched.numpy(), np.stack([want, 4 * want]), rtol=1e-12)


def test_self_distances_and_kernels_are_symmetric_whatever_the_blas(dtype, asymmetric_blas):
    """Exactly symmetric even where the BLAS gives ``x x^T`` asymmetric last bits (as MKL on
    AMD EPYC does), also batched."""
    x = torch.tensor(np.random.default_rng(1).normal(size=(2, 30, 4)), dtype=dtype)
    product = asymmetric_blas(x, x)
    assert not torch.equal(product, product.mT)  # the simulation is asymmetric
    d = sq_distances(x)
    assert torch.equal(d, d.mT)
    k = kernel_structure(x[0])
    assert torch.equal(k, k.T)
    np.testing.assert_allclose(
        d.double().numpy()[0], pot.dist(x[0].double().numpy()), atol=_tol(dtype, 1e-4, 1e-12)
    )
