"""Closed-form W2 between Gaussians against scipy's matrix square root."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import torch

from modalign.ot import gaussian_w2


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.5 * np.eye(d)


def _bures_reference(mu1, s1, mu2, s2) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`` with scipy's sqrtm."""
    r1 = sla.sqrtm(s1)
    cross = sla.sqrtm(r1 @ s2 @ r1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * cross).real)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("d", [1, 3, 6])
def test_full_covariance_matches_scipy(seed, d):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _spd(rng, d), _spd(rng, d)
    value = gaussian_w2(*(torch.tensor(v) for v in (mu1, s1, mu2, s2)))
    assert value.shape == () and value.dtype == torch.float64
    assert float(value) == pytest.approx(_bures_reference(mu1, s1, mu2, s2), rel=1e-9)


def test_full_covariance_float32():
    rng = np.random.default_rng(3)
    mu1, mu2, s1, s2 = rng.normal(size=4), rng.normal(size=4), _spd(rng, 4), _spd(rng, 4)
    value = gaussian_w2(*(torch.tensor(v, dtype=torch.float32) for v in (mu1, s1, mu2, s2)))
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(_bures_reference(mu1, s1, mu2, s2), rel=1e-4)


def test_diagonal_matches_full_with_diagonal_covariances(dtype):
    rng = np.random.default_rng(4)
    mu1, mu2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    sd1, sd2 = rng.uniform(0.1, 2.0, size=(5, 3)), rng.uniform(0.1, 2.0, size=(5, 3))
    t = [torch.tensor(v, dtype=dtype) for v in (mu1, sd1, mu2, sd2)]
    diag = gaussian_w2(*t)  # standard deviations shaped like the means: diagonal mode
    cov1 = torch.diag_embed(t[1] ** 2)
    cov2 = torch.diag_embed(t[3] ** 2)
    full = gaussian_w2(t[0], cov1, t[2], cov2)
    assert diag.shape == full.shape == (5,)
    rtol = 1e-4 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(full.double().numpy(), diag.double().numpy(), rtol=rtol)
    # the diagonal closed form itself
    expected = ((mu1 - mu2) ** 2).sum(-1) + ((sd1 - sd2) ** 2).sum(-1)
    np.testing.assert_allclose(diag.double().numpy(), expected, rtol=rtol)
    # forcing the mode explicitly gives the same numbers
    np.testing.assert_allclose(gaussian_w2(*t, diagonal=True).double().numpy(), expected, rtol=rtol)


def test_batched_shapes_and_broadcasting():
    rng = np.random.default_rng(5)
    b, d = 4, 3
    mu1, mu2 = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    s1 = np.stack([_spd(rng, d) for _ in range(b)])
    s2 = np.stack([_spd(rng, d) for _ in range(b)])
    batched = gaussian_w2(*(torch.tensor(v) for v in (mu1, s1, mu2, s2)))
    assert batched.shape == (b,)
    for i in range(b):
        assert float(batched[i]) == pytest.approx(
            _bures_reference(mu1[i], s1[i], mu2[i], s2[i]), rel=1e-9
        )
    # one covariance shared by the batch (diagonal=False: it is (d, d), not standard deviations)
    shared = gaussian_w2(
        torch.tensor(mu1),
        torch.tensor(s1[0]),
        torch.tensor(mu2),
        torch.tensor(s2[0]),
        diagonal=False,
    )
    assert shared.shape == (b,)
    for i in range(b):
        assert float(shared[i]) == pytest.approx(
            _bures_reference(mu1[i], s1[0], mu2[i], s2[0]), rel=1e-9
        )


def test_identical_gaussians_are_at_distance_zero(dtype):
    rng = np.random.default_rng(6)
    mu, s = torch.tensor(rng.normal(size=4), dtype=dtype), torch.tensor(_spd(rng, 4), dtype=dtype)
    sd = torch.tensor(rng.uniform(0.1, 1.0, 4), dtype=dtype)
    atol = 1e-4 if dtype == torch.float32 else 1e-10
    assert abs(float(gaussian_w2(mu, s, mu, s))) < atol
    assert float(gaussian_w2(mu, sd, mu, sd)) == 0.0
    assert float(gaussian_w2(mu, s, mu, s)) >= 0.0


def test_symmetric_and_translation():
    rng = np.random.default_rng(7)
    mu1, mu2, s1, s2 = (
        torch.tensor(v)
        for v in (rng.normal(size=3), rng.normal(size=3), _spd(rng, 3), _spd(rng, 3))
    )
    assert float(gaussian_w2(mu1, s1, mu2, s2)) == pytest.approx(
        float(gaussian_w2(mu2, s2, mu1, s1)), rel=1e-10
    )
    # same covariance: only the means move
    assert float(gaussian_w2(mu1, s1, mu2, s1)) == pytest.approx(
        float(((mu1 - mu2) ** 2).sum()), rel=1e-9, abs=1e-12
    )


def test_gaussian_errors():
    mu, sd = torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError, match="means have shapes"):
        gaussian_w2(mu, sd, torch.zeros(4), torch.ones(4))
    with pytest.raises(ValueError, match="standard deviations must be non-negative"):
        gaussian_w2(mu, sd, mu, -sd)
    with pytest.raises(ValueError, match=r"covariances must be \(\.\.\., 3, 3\)"):
        gaussian_w2(mu, torch.eye(3), mu, torch.eye(2))
