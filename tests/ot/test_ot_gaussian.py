"""Closed-form W2 between Gaussians against scipy's matrix square root and POT's Bures
distance; gradients by finite differences (gradcheck) and by the closed-form OT map.
Gaussian W2 barycenters against POT's fixed point and the fixed-point equation itself.
The full-covariance KL to ``N(0, I)`` against torch.distributions."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import scipy.linalg as sla
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from modalign.ot import gaussian_barycenter, gaussian_w2, kl_normal, kl_normal_full


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
    # and POT's Bures-Wasserstein distance (it returns W2, not W2^2) on diag(sigma^2)
    reference = (
        pot.gaussian.bures_wasserstein_distance(
            mu1,
            mu2,
            np.stack([np.diag(v**2) for v in sd1]),
            np.stack([np.diag(v**2) for v in sd2]),
            paired=True,
        )
        ** 2
    )
    np.testing.assert_allclose(diag.double().numpy(), reference, rtol=max(rtol, 1e-10))


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


def _rotated(eigenvalues: list[float], seed: int) -> np.ndarray:
    """``Q diag(eigenvalues) Q^T`` for a random rotation ``Q`` (repeated values stay repeated)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigenvalues),) * 2))
    return q @ np.diag(eigenvalues) @ q.T


#: (S1, S2) pairs where differentiating an eigendecomposition divides by zero: identity,
#: isotropic, repeated eigenvalues in a rotated basis; and one generic SPD pair.
_COVARIANCES = {
    "identity-2I": (np.eye(3), 2 * np.eye(3)),
    "cI-generic": (0.7 * np.eye(3), _spd(np.random.default_rng(8), 3)),
    "repeated": (_rotated([1.0, 1.0, 2.5], 9), _rotated([3.0, 0.5, 0.5], 10)),
    "generic": (_spd(np.random.default_rng(11), 3), _spd(np.random.default_rng(12), 3)),
}


@pytest.mark.parametrize("case", list(_COVARIANCES))
def test_full_covariance_gradcheck(case):
    """Finite differences agree with the backward, also where eigenvalues repeat (S = I,
    S = cI): there the eigendecomposition's own backward gives NaN."""
    s1, s2 = _COVARIANCES[case]
    rng = np.random.default_rng(13)
    inputs = tuple(
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in (rng.normal(size=3), s1, rng.normal(size=3), s2)
    )
    assert torch.autograd.gradcheck(lambda *t: gaussian_w2(*t, diagonal=False), inputs)
    gradients = torch.autograd.grad(gaussian_w2(*inputs, diagonal=False), inputs)
    assert all(bool(torch.isfinite(g).all()) for g in gradients)


def test_full_covariance_gradcheck_batched():
    """One batch holding every case at once: the backward is batched too."""
    s1 = np.stack([pair[0] for pair in _COVARIANCES.values()])
    s2 = np.stack([pair[1] for pair in _COVARIANCES.values()])
    mu = np.random.default_rng(14).normal(size=(2, len(s1), 3))
    inputs = tuple(
        torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (mu[0], s1, mu[1], s2)
    )
    assert torch.autograd.gradcheck(lambda *t: gaussian_w2(*t).sum(), inputs)


@pytest.mark.parametrize("case", list(_COVARIANCES))
def test_covariance_gradient_is_the_ot_map(case):
    """``d W2^2 / d S2 = I - T`` with ``T = S1^1/2 (S1^1/2 S2 S1^1/2)^-1/2 S1^1/2`` the OT map
    from N(0, S2) to N(0, S1) (Peyre and Cuturi, remark 2.31), computed with scipy."""
    s1, s2 = _COVARIANCES[case]
    r1 = sla.sqrtm(s1).real
    t_map = r1 @ np.linalg.inv(sla.sqrtm(r1 @ s2 @ r1).real) @ r1
    cov2 = torch.tensor(s2, requires_grad=True)
    zero = torch.zeros(3, dtype=torch.float64)
    (grad,) = torch.autograd.grad(gaussian_w2(zero, torch.tensor(s1), zero, cov2), cov2)
    np.testing.assert_allclose(grad.numpy(), np.eye(3) - t_map, atol=1e-9)


def test_isotropic_closed_form_and_pot(device, dtype):
    """``W2^2(N(m1, aI), N(m2, bI)) = |m1 - m2|^2 + d (sqrt a - sqrt b)^2``, and POT's
    Bures-Wasserstein distance (squared) on every case, batched."""
    d, a, b = 3, 1.0, 2.0
    m1, m2 = np.zeros(d), np.arange(d, dtype=float)
    t = [
        torch.tensor(v, dtype=dtype, device=device) for v in (m1, a * np.eye(d), m2, b * np.eye(d))
    ]
    want = np.sum((m1 - m2) ** 2) + d * (np.sqrt(a) - np.sqrt(b)) ** 2
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    assert float(gaussian_w2(*t)) == pytest.approx(want, rel=rtol)
    s1 = np.stack([pair[0] for pair in _COVARIANCES.values()])
    s2 = np.stack([pair[1] for pair in _COVARIANCES.values()])
    mu = np.random.default_rng(15).normal(size=(2, len(s1), 3))
    got = gaussian_w2(
        *(torch.tensor(v, dtype=dtype, device=device) for v in (mu[0], s1, mu[1], s2))
    )
    reference = pot.gaussian.bures_wasserstein_distance(mu[0], mu[1], s1, s2, paired=True) ** 2
    np.testing.assert_allclose(got.cpu().double().numpy(), reference, rtol=max(rtol, 1e-10))


def test_gradient_at_the_identity_is_finite_on_any_device(device, dtype):
    eye = torch.eye(4, dtype=dtype, device=device)
    cov1 = eye.clone().requires_grad_(True)
    mu = torch.zeros(4, dtype=dtype, device=device)
    gaussian_w2(mu, cov1, mu + 1, 2 * eye).backward()
    assert cov1.grad.dtype == dtype and cov1.grad.device.type == device.type
    # Commuting isotropic covariances: d/dS1 tr(S1 - 2 sqrt(2 S1)) at S1 = I is (1 - sqrt 2) I.
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(
        cov1.grad.cpu().double().numpy(), (1 - np.sqrt(2)) * np.eye(4), atol=tol
    )


# ------------------------------------------------------------------------------ barycenters
def _pot_barycenter(means: np.ndarray, covs: np.ndarray, weights: np.ndarray):
    """POT's fixed-point Bures-Wasserstein barycenter, run to a tight absolute tolerance."""
    return pot.gaussian.bures_wasserstein_barycenter(
        means, covs, weights, method="fixed_point", num_iter=5000, eps=1e-13
    )


def _fixed_point_residual(s: np.ndarray, covs: np.ndarray, weights: np.ndarray) -> float:
    """``|S - sum_k w_k (S^1/2 S_k S^1/2)^1/2|_max`` with scipy's sqrtm."""
    r = sla.sqrtm(s).real
    image = sum(w * sla.sqrtm(r @ c @ r).real for w, c in zip(weights, covs))
    return float(np.abs(s - image).max())


def test_diagonal_barycenter_closed_form_and_pot(dtype):
    rng = np.random.default_rng(20)
    k, d = 3, 4
    means, stds = rng.normal(size=(k, d)), rng.uniform(0.2, 2.0, size=(k, d))
    weights = np.array([0.2, 0.5, 0.3])
    mean, std = gaussian_barycenter(*(torch.tensor(v, dtype=dtype) for v in (means, stds, weights)))
    assert mean.shape == std.shape == (d,) and mean.dtype == std.dtype == dtype
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(mean.double().numpy(), weights @ means, rtol=rtol)
    np.testing.assert_allclose(std.double().numpy(), weights @ stds, rtol=rtol)
    pot_mean, pot_cov = _pot_barycenter(means, np.stack([np.diag(v**2) for v in stds]), weights)
    np.testing.assert_allclose(mean.double().numpy(), pot_mean, rtol=max(rtol, 1e-10))
    np.testing.assert_allclose(
        np.diag(std.double().numpy() ** 2), pot_cov, rtol=max(rtol, 1e-9), atol=1e-12
    )
    # default weights are uniform
    _, uniform = gaussian_barycenter(torch.tensor(means), torch.tensor(stds))
    np.testing.assert_allclose(uniform.numpy(), stds.mean(0), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_full_barycenter_matches_pot_and_is_a_fixed_point(seed):
    rng = np.random.default_rng(21 + seed)
    k, d = 3, 4
    means, covs = rng.normal(size=(k, d)), np.stack([_spd(rng, d) for _ in range(k)])
    weights = rng.uniform(0.2, 1.0, size=k)
    weights /= weights.sum()
    mean, cov = gaussian_barycenter(*(torch.tensor(v) for v in (means, covs, weights)))
    assert mean.shape == (d,) and cov.shape == (d, d) and cov.dtype == torch.float64
    pot_mean, pot_cov = _pot_barycenter(means, covs, weights)
    np.testing.assert_allclose(mean.numpy(), pot_mean, rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), pot_cov, rtol=1e-8, atol=1e-9)
    assert _fixed_point_residual(cov.numpy(), covs, weights) < 1e-9
    np.testing.assert_allclose(cov.numpy(), cov.numpy().T, atol=1e-12)
    assert np.linalg.eigvalsh(cov.numpy()).min() > 0


def test_full_barycenter_batched_and_float32():
    rng = np.random.default_rng(23)
    b, k, d = 3, 2, 3
    means = rng.normal(size=(b, k, d))
    covs = np.stack([np.stack([_spd(rng, d) for _ in range(k)]) for _ in range(b)])
    mean, cov = gaussian_barycenter(torch.tensor(means), torch.tensor(covs))
    assert mean.shape == (b, d) and cov.shape == (b, d, d)
    mean32, cov32 = gaussian_barycenter(torch.tensor(means).float(), torch.tensor(covs).float())
    assert cov32.dtype == torch.float32
    for i in range(b):
        pot_mean, pot_cov = _pot_barycenter(means[i], covs[i], np.full(k, 1 / k))
        np.testing.assert_allclose(mean[i].numpy(), pot_mean, rtol=1e-12)
        np.testing.assert_allclose(cov[i].numpy(), pot_cov, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(cov32[i].double().numpy(), pot_cov, rtol=1e-4, atol=1e-4)


def test_barycenter_of_identical_gaussians_is_that_gaussian():
    rng = np.random.default_rng(24)
    mean, cov, std = rng.normal(size=3), _spd(rng, 3), rng.uniform(0.1, 1.0, size=3)
    weights = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    got_mean, got_cov = gaussian_barycenter(
        torch.tensor(mean).expand(3, 3), torch.tensor(cov).expand(3, 3, 3), weights
    )
    np.testing.assert_allclose(got_mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(got_cov.numpy(), cov, rtol=1e-10, atol=1e-12)
    _, got_std = gaussian_barycenter(
        torch.tensor(mean).expand(3, 3), torch.tensor(std).expand(3, 3), weights
    )
    np.testing.assert_allclose(got_std.numpy(), std, rtol=1e-12)


def test_full_barycenter_isotropic_closed_form_and_finite_gradients():
    """``S_k = c_k I`` commute: the barycenter is ``(sum_k w_k sqrt(c_k))^2 I``. Every square
    root there has repeated eigenvalues, where differentiating ``eigh`` gives NaN; the
    gradients through the unrolled iteration are finite and match finite differences."""
    c = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    covs = (c[:, None, None] * torch.eye(4, dtype=torch.float64)).requires_grad_(True)
    means = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    _, cov = gaussian_barycenter(means, covs, weights)
    want = float((weights * c.sqrt()).sum()) ** 2
    np.testing.assert_allclose(cov.detach().numpy(), want * np.eye(4), rtol=1e-12, atol=1e-14)
    probe = torch.tensor(_spd(np.random.default_rng(25), 4))
    (cov * probe).sum().backward()
    assert bool(torch.isfinite(covs.grad).all()) and bool((covs.grad != 0).any())
    assert torch.autograd.gradcheck(
        lambda s: (gaussian_barycenter(means.detach(), s, weights)[1] * probe).sum(),
        (covs.detach().clone().requires_grad_(True),),
    )


def test_full_barycenter_gradcheck_generic():
    rng = np.random.default_rng(26)
    covs = torch.tensor(np.stack([_spd(rng, 3) for _ in range(2)]), requires_grad=True)
    means = torch.tensor(rng.normal(size=(2, 3)), requires_grad=True)
    weights = torch.tensor([0.4, 0.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda m, s, w: tuple(t.sum() for t in gaussian_barycenter(m, s, w / w.sum())),
        (means, covs, weights),
    )


def test_barycenter_errors():
    means, stds = torch.zeros(3, 2), torch.ones(3, 2)
    with pytest.raises(ValueError, match=r"means must be \(\.\.\., K, d\)"):
        gaussian_barycenter(torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="standard deviations must be non-negative"):
        gaussian_barycenter(means, -stds)
    with pytest.raises(ValueError, match="covs must be standard deviations shaped like means"):
        gaussian_barycenter(means, torch.ones(3, 3), diagonal=True)
    with pytest.raises(ValueError, match=r"covs must be covariances of shape \(3, 2, 2\)"):
        gaussian_barycenter(means, torch.eye(2).expand(2, 2, 2))
    with pytest.raises(ValueError, match=r"weights must have shape \(3,\)"):
        gaussian_barycenter(means, stds, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="weights must sum to 1"):
        gaussian_barycenter(means, stds, torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        gaussian_barycenter(means, stds, torch.tensor([1.5, -0.5, 0.0]))
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        gaussian_barycenter(means, torch.eye(2).expand(3, 2, 2), max_iter=0)


# ------------------------------------------------------------------------- KL, full
def _random_tril(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """Lower-triangular (..., d, d) factors with a positive diagonal, float64."""
    d = shape[-1]
    strict = torch.tril(torch.randn(*shape, d, generator=gen, dtype=torch.float64), -1)
    diag = 0.2 + torch.rand(*shape, generator=gen, dtype=torch.float64)
    return strict + torch.diag_embed(diag)


def test_kl_normal_full_matches_torch_distributions():
    gen = torch.Generator().manual_seed(40)
    mu = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    tril = _random_tril(gen, 2, 5, 4)
    prior = MultivariateNormal(
        torch.zeros(4, dtype=torch.float64), scale_tril=torch.eye(4, dtype=torch.float64)
    )
    want = kl_divergence(MultivariateNormal(mu, scale_tril=tril), prior)
    got = kl_normal_full(mu, tril)
    assert got.shape == (2, 5)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # only the lower triangle is read
    noise = torch.triu(torch.randn(2, 5, 4, 4, generator=gen, dtype=torch.float64), 1)
    torch.testing.assert_close(kl_normal_full(mu, tril + noise), got, rtol=0, atol=0)
    # a diagonal factor diag(exp(0.5 logvar)) is the diagonal KL
    logvar = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(
        kl_normal_full(mu, torch.diag_embed(torch.exp(0.5 * logvar))),
        kl_normal(mu, logvar),
        rtol=1e-12,
        atol=1e-12,
    )
    eye = torch.eye(4, dtype=torch.float64).expand(3, 4, 4)
    assert torch.equal(kl_normal_full(torch.zeros(3, 4, dtype=torch.float64), eye), torch.zeros(3))


def test_kl_normal_full_gradcheck_and_errors():
    gen = torch.Generator().manual_seed(41)
    mu = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    tril = _random_tril(gen, 3, 3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m, t: kl_normal_full(m, t), (mu, tril))
    with pytest.raises(ValueError, match=r"scale_tril must have shape \(2, 3, 3\)"):
        kl_normal_full(torch.zeros(2, 3), torch.eye(3))
