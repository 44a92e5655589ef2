"""Gaussian VAE building blocks against independent references: the product of experts
against plain-variance closed forms and a numerical product of densities, the decoders'
log-likelihoods against hand computations, reparameterised samples against their moments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from modalign.nn import (
    DECODERS,
    BernoulliDecoder,
    CategoricalDecoder,
    FullGaussianEncoder,
    GaussianDecoder,
    GaussianEncoder,
    make_decoder,
    product_of_experts,
    reparameterise,
    reparameterise_tril,
)
from modalign.ot import kl_normal

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------- product of experts
def _poe_reference(mu, logvar, mask, prior):
    """Product of normal densities with plain variances, one coordinate at a time:
    precision-weighted mean, precisions added (numpy float64, no log space)."""
    mu, var = np.asarray(mu, dtype=float), np.exp(np.asarray(logvar, dtype=float))
    b, m, d = mu.shape
    out_mu, out_var = np.zeros((b, d)), np.zeros((b, d))
    for i in range(b):
        for j in range(d):
            precisions = [1.0] if prior else []
            weighted = [0.0] if prior else []
            for k in range(m):
                if mask[i, k]:
                    precisions.append(1.0 / var[i, k, j])
                    weighted.append(mu[i, k, j] / var[i, k, j])
            total = sum(precisions)
            out_mu[i, j] = sum(weighted) / total
            out_var[i, j] = 1.0 / total
    return out_mu, out_var


@pytest.mark.parametrize("prior", [True, False])
def test_poe_matches_closed_form_product(prior):
    rng = np.random.default_rng(0)
    b, m, d = 6, 3, 4
    mu, logvar = rng.normal(size=(b, m, d)), rng.uniform(-2, 2, size=(b, m, d))
    mask = rng.uniform(size=(b, m)) < 0.6
    mask[:, 0] |= ~mask.any(1)  # every row keeps one expert, so prior=False is defined
    mask[0] = True
    got_mu, got_lv = product_of_experts(
        torch.tensor(mu), torch.tensor(logvar), torch.tensor(mask), prior_expert=prior
    )
    want_mu, want_var = _poe_reference(mu, logvar, mask, prior)
    assert got_mu.shape == got_lv.shape == (b, d) and got_mu.dtype == torch.float64
    np.testing.assert_allclose(got_mu.numpy(), want_mu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.exp(got_lv.numpy()), want_var, rtol=1e-12)


def test_poe_default_mask_is_all_present():
    rng = np.random.default_rng(1)
    mu, logvar = torch.tensor(rng.normal(size=(3, 2, 5))), torch.tensor(rng.normal(size=(3, 2, 5)))
    full = product_of_experts(mu, logvar, torch.ones(3, 2, dtype=torch.bool))
    default = product_of_experts(mu, logvar)
    for a, b in zip(full, default):
        assert torch.equal(a, b)


def test_poe_1d_against_numerical_product_of_densities():
    """Multiply N(0, 1) (prior), N(1.5, 0.5) and N(-0.7, 2.0) on a fine grid, normalise, and
    read off mean and variance by quadrature; a third expert is masked out."""
    grid = np.linspace(-12, 12, 200_001)
    density = scipy.stats.norm.pdf(grid, 0, 1)
    for mean, var in [(1.5, 0.5), (-0.7, 2.0)]:
        density = density * scipy.stats.norm.pdf(grid, mean, math.sqrt(var))
    density /= np.trapezoid(density, grid)
    want_mean = np.trapezoid(grid * density, grid)
    want_var = np.trapezoid((grid - want_mean) ** 2 * density, grid)
    mu = torch.tensor([[[1.5], [-0.7], [40.0]]], dtype=torch.float64)
    logvar = torch.log(torch.tensor([[[0.5], [2.0], [1e-3]]], dtype=torch.float64))
    mask = torch.tensor([[True, True, False]])
    got_mu, got_lv = product_of_experts(mu, logvar, mask)
    assert float(got_mu) == pytest.approx(want_mean, rel=1e-8)
    assert math.exp(float(got_lv)) == pytest.approx(want_var, rel=1e-8)


def test_poe_masked_experts_are_ignored():
    """Masking an expert equals deleting it, whatever garbage it holds."""
    rng = np.random.default_rng(2)
    mu, logvar = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 2))
    mask = np.array([[True, False, True]] * 4)
    dropped = product_of_experts(torch.tensor(mu[:, [0, 2]]), torch.tensor(logvar[:, [0, 2]]))
    for bad_mu, bad_lv in [(1e300, -50.0), (np.nan, np.nan), (-np.inf, np.inf), (0.0, 50.0)]:
        mu2, lv2 = mu.copy(), logvar.copy()
        mu2[:, 1], lv2[:, 1] = bad_mu, bad_lv
        got = product_of_experts(torch.tensor(mu2), torch.tensor(lv2), torch.tensor(mask))
        for a, b in zip(got, dropped):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked_logvar", [-50.0, 50.0, 0.0, -1000.0, 1000.0])
def test_poe_masked_expert_gets_exactly_zero_gradient(masked_logvar, dtype):
    mu = torch.tensor([[[0.3, -1.0], [2.0, 5.0], [-0.4, 0.1]]], dtype=dtype)
    logvar = torch.tensor([[[0.2, -1.0], [masked_logvar] * 2, [1.0, 0.5]]], dtype=dtype)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    mask = torch.tensor([[True, False, True]])
    out_mu, out_lv = product_of_experts(mu, logvar, mask)
    (out_mu.pow(2).sum() + out_mu.sum() + out_lv.sum()).backward()
    assert torch.equal(mu.grad[0, 1], torch.zeros(2, dtype=dtype))
    assert torch.equal(logvar.grad[0, 1], torch.zeros(2, dtype=dtype))
    # present experts do get a (finite, non-zero) gradient
    for g in (mu.grad[0, [0, 2]], logvar.grad[0, [0, 2]]):
        assert bool(torch.isfinite(g).all()) and bool((g != 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("prior", [True, False])
def test_poe_finite_over_extreme_log_variances(dtype, prior):
    """Every pair of log-variances in [-30, 30]: finite values and gradients, and (float64)
    the plain-variance closed form."""
    values = np.linspace(-30, 30, 7)
    pairs = np.array([(a, b) for a in values for b in values])  # (49, 2)
    logvar = np.repeat(pairs[:, :, None], 2, axis=2)  # (49, 2 experts, d=2)
    mu = np.random.default_rng(3).normal(size=logvar.shape)
    mu_t = torch.tensor(mu, dtype=dtype, requires_grad=True)
    lv_t = torch.tensor(logvar, dtype=dtype, requires_grad=True)
    out_mu, out_lv = product_of_experts(mu_t, lv_t, prior_expert=prior)
    assert bool(torch.isfinite(out_mu).all()) and bool(torch.isfinite(out_lv).all())
    (out_mu.sum() + out_lv.sum()).backward()
    assert bool(torch.isfinite(mu_t.grad).all()) and bool(torch.isfinite(lv_t.grad).all())
    if dtype == torch.float64:
        want_mu, want_var = _poe_reference(mu, logvar, np.ones((49, 2), dtype=bool), prior)
        np.testing.assert_allclose(out_mu.detach().numpy(), want_mu, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(out_lv.detach().numpy(), np.log(want_var), rtol=1e-9, atol=1e-9)


def test_poe_empty_rows():
    mu, logvar = (
        torch.randn(3, 2, 4, dtype=torch.float64),
        torch.zeros(3, 2, 4, dtype=torch.float64),
    )
    mask = torch.tensor([[True, False], [False, False], [False, True]])
    out_mu, out_lv = product_of_experts(mu, logvar, mask)
    # only the prior left: N(0, I) exactly
    assert torch.equal(out_mu[1], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(out_lv[1], torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"rows \[1\] have no expert present"):
        product_of_experts(mu, logvar, mask, prior_expert=False)


def test_poe_errors():
    mu = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"mu and logvar must both be \(B, M, d\)"):
        product_of_experts(mu, torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"mu and logvar must both be \(B, M, d\)"):
        product_of_experts(mu[0], mu[0])
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(2, 3\)"):
        product_of_experts(mu, mu, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(2, 3\)"):
        product_of_experts(mu, mu, torch.ones(3, 2, dtype=torch.bool))


# ------------------------------------------------------------------------------------ KL
def test_kl_normal_matches_torch_distributions():
    rng = np.random.default_rng(4)
    mu, lv, mp, lvp = (torch.tensor(rng.normal(size=(5, 3))) for _ in range(4))

    def ref(mu, lv, mp, lvp):
        return kl_divergence(Normal(mu, torch.exp(0.5 * lv)), Normal(mp, torch.exp(0.5 * lvp)))

    got = kl_normal(mu, lv, mp, lvp)
    assert got.shape == (5,) and got.dtype == torch.float64
    torch.testing.assert_close(got, ref(mu, lv, mp, lvp).sum(-1), rtol=1e-12, atol=1e-12)
    zero = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(
        kl_normal(mu, lv), ref(mu, lv, zero, zero).sum(-1), rtol=1e-12, atol=1e-12
    )
    # a prior shared by the batch broadcasts
    torch.testing.assert_close(
        kl_normal(mu, lv, mp[0], lvp[0]),
        ref(mu, lv, mp[0].expand(5, 3), lvp[0].expand(5, 3)).sum(-1),
        rtol=1e-12,
        atol=1e-12,
    )


def test_kl_normal_is_zero_for_equal_gaussians():
    rng = np.random.default_rng(5)
    mu, lv = torch.tensor(rng.normal(size=(4, 6))), torch.tensor(rng.normal(size=(4, 6)))
    assert torch.equal(kl_normal(mu, lv, mu, lv), torch.zeros(4, dtype=torch.float64))
    zero = torch.zeros(2, 3, dtype=torch.float64)
    assert torch.equal(kl_normal(zero, zero), torch.zeros(2, dtype=torch.float64))
    assert bool((kl_normal(mu, lv) > 0).all())


def test_kl_normal_errors():
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        kl_normal(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mu_prior of shape"):
        kl_normal(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(4))


# ---------------------------------------------------------------------------- encoders
def test_gaussian_encoder_shapes_and_clamp():
    torch.manual_seed(0)
    enc = GaussianEncoder(nn.Sequential(nn.Linear(5, 8), nn.GELU()), 8, 3)
    mu, logvar = enc(torch.randn(4, 5))
    assert mu.shape == logvar.shape == (4, 3)
    low, high = GaussianEncoder.LOGVAR_RANGE
    assert (low, high) == (-12.0, 12.0)
    with torch.no_grad():
        enc.logvar.weight.zero_()
        enc.logvar.bias.fill_(100.0)
    assert torch.equal(enc(torch.randn(2, 5))[1], torch.full((2, 3), high))
    with torch.no_grad():
        enc.logvar.bias.fill_(-100.0)
    assert torch.equal(enc(torch.randn(2, 5))[1], torch.full((2, 3), low))
    with pytest.raises(ValueError, match="latent_dim must be positive"):
        GaussianEncoder(nn.Identity(), 4, 0)


# ---------------------------------------------------------------------------- decoders
def _hand_decoder(cls, **kw):
    """Identity body on a 2-d code, the linear head set by hand (float64)."""
    n = 3
    dec = cls(nn.Identity(), 2, n, **kw).double()
    with torch.no_grad():
        dec.head.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]]))
        dec.head.bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    return dec


_Z = [[0.5, 1.0], [-1.0, 0.2]]


def _hand_head(z):
    w = [[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]]
    b = [0.1, -0.2, 0.3]
    return [[sum(w[j][i] * row[i] for i in range(2)) + b[j] for j in range(3)] for row in z]


def test_bernoulli_log_likelihood_by_hand():
    dec = _hand_decoder(BernoulliDecoder)
    x = [[1.0, 0.0, 0.25], [0.0, 1.0, 1.0]]
    logits = dec(torch.tensor(_Z, dtype=torch.float64))
    got = dec.log_likelihood(logits, torch.tensor(x, dtype=torch.float64))
    want = []
    for lrow, xrow in zip(_hand_head(_Z), x):
        p = [1 / (1 + math.exp(-v)) for v in lrow]
        want.append(sum(xi * math.log(pi) + (1 - xi) * math.log(1 - pi) for xi, pi in zip(xrow, p)))
    assert got.shape == (2,)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(
        dec.mean(logits).detach().numpy(),
        [[1 / (1 + math.exp(-v)) for v in row] for row in _hand_head(_Z)],
        rtol=1e-12,
    )


def test_gaussian_log_likelihood_by_hand():
    dec = _hand_decoder(GaussianDecoder)
    with torch.no_grad():
        dec.log_scale.copy_(torch.tensor([0.0, math.log(0.5), math.log(2.0)], dtype=torch.float64))
    x = [[0.3, -1.0, 2.0], [1.5, 0.0, -0.5]]
    means = dec(torch.tensor(_Z, dtype=torch.float64))
    got = dec.log_likelihood(means, torch.tensor(x, dtype=torch.float64))
    scales = [1.0, 0.5, 2.0]
    want = [
        sum(
            -0.5 * ((xi - mi) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
            for xi, mi, s in zip(xrow, mrow, scales)
        )
        for xrow, mrow in zip(x, _hand_head(_Z))
    ]
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(dec.mean(means).detach().numpy(), _hand_head(_Z), rtol=1e-12)
    np.testing.assert_allclose(dec.scale().detach().numpy(), scales, rtol=1e-12)
    # the learned scale gets a gradient; a fixed one is a buffer at 1, not a parameter
    got.sum().backward()
    assert dec.log_scale.grad is not None and bool((dec.log_scale.grad != 0).all())
    fixed = _hand_decoder(GaussianDecoder, learn_scale=False)
    assert "log_scale" not in dict(fixed.named_parameters())
    assert torch.equal(fixed.scale(), torch.ones(3, dtype=torch.float64))
    unit = fixed.log_likelihood(means.detach(), torch.tensor(x, dtype=torch.float64))
    want_unit = scipy.stats.norm.logpdf(np.array(x), np.array(_hand_head(_Z)), 1.0).sum(-1)
    np.testing.assert_allclose(unit.numpy(), want_unit, rtol=1e-12)


def test_gaussian_log_scale_is_clamped():
    dec = _hand_decoder(GaussianDecoder)
    with torch.no_grad():
        dec.log_scale.fill_(-100.0)
    low, _ = GaussianDecoder.LOG_SCALE_RANGE
    torch.testing.assert_close(dec.scale(), torch.full((3,), math.exp(low), dtype=torch.float64))


def test_categorical_log_likelihood_by_hand_onehot_and_indices():
    dec = _hand_decoder(CategoricalDecoder)
    logits = dec(torch.tensor(_Z, dtype=torch.float64))
    labels = [2, 0]
    want = []
    for row, c in zip(_hand_head(_Z), labels):
        want.append(row[c] - math.log(sum(math.exp(v) for v in row)))
    onehot = torch.nn.functional.one_hot(torch.tensor(labels), 3).double()
    by_onehot = dec.log_likelihood(logits, onehot)
    by_index = dec.log_likelihood(logits, torch.tensor(labels))
    by_float_index = dec.log_likelihood(logits, torch.tensor([2.0, 0.0]))
    np.testing.assert_allclose(by_onehot.detach().numpy(), want, rtol=1e-12)
    assert torch.equal(by_onehot, by_index) and torch.equal(by_index, by_float_index)
    probs = dec.mean(logits)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(-1).detach().numpy(), 1.0, rtol=1e-12)
    for x in (onehot, torch.tensor(labels), onehot.bool(), torch.tensor([2.0, 0.0])):
        dec.check(x, "label")  # every accepted form passes the support check


def test_check_errors_name_the_modality():
    bern = BernoulliDecoder(nn.Identity(), 2, 3)
    bern.check(torch.tensor([[0.0, 0.5, 1.0]]), "image")
    with pytest.raises(
        ValueError, match=r"image: Bernoulli likelihood needs values in \[0, 1\], got min -0.3"
    ):
        bern.check(torch.tensor([[0.0, -0.3, 1.0]]), "image")
    with pytest.raises(ValueError, match=r"image: .* got max 1.5"):
        bern.check(torch.tensor([[0.0, 1.5, 1.0]]), "image")
    with pytest.raises(ValueError, match="image: Bernoulli likelihood needs finite"):
        bern.check(torch.tensor([[0.0, float("nan"), 1.0]]), "image")
    with pytest.raises(ValueError, match=r"image: bernoulli likelihood expects \(B, 3\)"):
        bern.check(torch.zeros(2, 4), "image")

    gauss = GaussianDecoder(nn.Identity(), 2, 3)
    gauss.check(torch.tensor([[-1e6, 0.0, 3.0]]), "audio")
    with pytest.raises(ValueError, match="audio: Gaussian likelihood needs finite values, got 2"):
        gauss.check(torch.tensor([[float("inf"), float("nan"), 0.0]]), "audio")

    cat = CategoricalDecoder(nn.Identity(), 2, 3)
    with pytest.raises(ValueError, match="label: .*not one-hot"):
        cat.check(torch.tensor([[1.0, 1.0, 0.0]]), "label")
    with pytest.raises(ValueError, match="label: .*not one-hot"):
        cat.check(torch.tensor([[0.5, 0.5, 0.0]]), "label")
    with pytest.raises(ValueError, match="label: .*not one-hot"):
        cat.check(torch.tensor([[0.0, 0.0, 0.0]]), "label")
    with pytest.raises(ValueError, match=r"label: .*class indices in 0..2, got values from 0 to 3"):
        cat.check(torch.tensor([0, 3]), "label")
    with pytest.raises(ValueError, match="label: .*got values from -1"):
        cat.check(torch.tensor([-1, 2]), "label")
    with pytest.raises(ValueError, match="label: .*non-integer"):
        cat.check(torch.tensor([0.5, 1.0]), "label")
    with pytest.raises(ValueError, match=r"label: .*got shape \(2, 4\)"):
        cat.check(torch.zeros(2, 4), "label")


def test_log_likelihood_shape_errors():
    bern = BernoulliDecoder(nn.Identity(), 2, 3)
    with pytest.raises(ValueError, match="does not match the decoder's output"):
        bern.log_likelihood(torch.zeros(2, 3), torch.zeros(2, 4))
    cat = CategoricalDecoder(nn.Identity(), 2, 3)
    with pytest.raises(ValueError, match="one-hot"):
        cat.log_likelihood(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


def test_make_decoder():
    for name, cls in [
        ("bernoulli", BernoulliDecoder),
        ("gaussian", GaussianDecoder),
        ("categorical", CategoricalDecoder),
    ]:
        dec = make_decoder(name, nn.Identity(), 4, 5)
        assert type(dec) is cls and dec.likelihood == name
        assert dec(torch.zeros(2, 4)).shape == (2, 5)
    assert set(DECODERS) == {"bernoulli", "gaussian", "categorical"}
    assert not make_decoder("gaussian", nn.Identity(), 4, 5, learn_scale=False).learn_scale
    with pytest.raises(ValueError, match=r"unknown likelihood 'poisson'.*'bernoulli'"):
        make_decoder("poisson", nn.Identity(), 4, 5)


# ----------------------------------------------------------------------- reparameterise
def test_reparameterise_moments_and_generator():
    n = 200_000
    mu = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64).expand(n, 3)
    logvar = torch.tensor([0.0, math.log(4.0), -3.0], dtype=torch.float64).expand(n, 3)
    z = reparameterise(mu, logvar, torch.Generator().manual_seed(0))
    assert z.shape == (n, 3) and z.dtype == torch.float64
    var = torch.exp(logvar[0])
    # standard errors: sqrt(var / n) for the mean, about var * sqrt(2 / n) for the variance
    np.testing.assert_allclose(
        z.mean(0).numpy(), mu[0].numpy(), atol=float(5 * (var / n).sqrt().max())
    )
    np.testing.assert_allclose(z.var(0).numpy(), var.numpy(), rtol=0.02)
    again = reparameterise(mu, logvar, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    # a differentiable sample: dz/dmu = 1, dz/dlogvar = 0.5 * std * eps
    m = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    lv = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    sample = reparameterise(m, lv, torch.Generator().manual_seed(1))
    sample.sum().backward()
    assert torch.equal(m.grad, torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(lv.grad, 0.5 * sample.detach())
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        reparameterise(torch.zeros(3), torch.zeros(4))


# ------------------------------------------------------------------ full covariances
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # latent_dim 1
def test_full_gaussian_encoder_cholesky_factor_and_initialisation():
    torch.manual_seed(0)
    diag = GaussianEncoder(nn.Sequential(nn.Linear(5, 8), nn.GELU()), 8, 3)
    torch.manual_seed(0)
    full = FullGaussianEncoder(nn.Sequential(nn.Linear(5, 8), nn.GELU()), 8, 3)
    x = torch.randn(4, 5)
    mu, tril = full(x)
    assert mu.shape == (4, 3) and tril.shape == (4, 3, 3)
    # as built: the diagonal encoder's numbers (no random draw for the zero strictly-lower head)
    d_mu, d_logvar = diag(x)
    assert torch.equal(mu, d_mu)
    assert torch.equal(tril, torch.diag_embed(torch.exp(0.5 * d_logvar)))
    assert full.lower.out_features == 3
    (mu.sum() + tril.sum()).backward()  # every head learns, the zero one too
    for p in full.parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0
    with torch.no_grad():
        full.lower.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
        full.logvar.bias.fill_(100.0)
    _, tril = full(x)
    assert torch.equal(torch.triu(tril, 1), torch.zeros(4, 3, 3))  # lower-triangular
    # strictly-lower entries row by row: (1, 0), (2, 0), (2, 1)
    assert tril[0, 1, 0] == 1.0 and tril[0, 2, 0] == 2.0 and tril[0, 2, 1] == 3.0
    # the diagonal's log-variance is clamped like GaussianEncoder's: exp(0.5 * 12)
    assert torch.equal(torch.diagonal(tril, dim1=1, dim2=2), torch.exp(torch.full((4, 3), 6.0)))
    # latent_dim 1: no strictly-lower entry
    mu, tril = FullGaussianEncoder(nn.Identity(), 5, 1)(x)
    assert tril.shape == (4, 1, 1)


def test_reparameterise_tril_moments_and_the_diagonal_case():
    n = 200_000
    tril = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.3, 0.4, 2.0]], dtype=torch.float64)
    mu = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    z = reparameterise_tril(mu.expand(n, 3), tril.expand(n, 3, 3), torch.Generator().manual_seed(0))
    assert z.shape == (n, 3)
    np.testing.assert_allclose(z.mean(0).numpy(), mu.numpy(), atol=0.03)
    np.testing.assert_allclose(np.cov(z.numpy().T), (tril @ tril.T).numpy(), atol=0.05)
    # a diagonal factor draws exactly what reparameterise draws from the same generator
    logvar = torch.randn(6, 3, dtype=torch.float64)
    means = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(
        reparameterise_tril(
            means, torch.diag_embed(torch.exp(0.5 * logvar)), torch.Generator().manual_seed(3)
        ),
        reparameterise(means, logvar, torch.Generator().manual_seed(3)),
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match=r"scale_tril must have shape \(6, 3, 3\)"):
        reparameterise_tril(means, torch.eye(3))
