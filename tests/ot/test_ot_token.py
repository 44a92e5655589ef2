"""Token-set OT (modalign.ot.token): cosine cost, batched IPOT / Sinkhorn / exact with padding.

References are independent of modalign: POT's ``ot.dist`` (cosine), ``ot.sinkhorn``,
``ot.emd`` / ``ot.emd2``, and a plain numpy IPOT written below from Algorithm 1 of Xie et al.
(2019). Problems are tiny (a few samples of <= 9 tokens) to keep the file fast.
"""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

import modalign.ot.token as token_module
from modalign.ot import token_alignment_loss, token_cost, token_ot

BATCHED = ("ipot", "sinkhorn")


# ----------------------------------------------------------------------------- helpers
def _masks(lengths, size, *, hole: int | None = None):
    """(B, size) bool masks with ``lengths[k]`` real tokens; ``hole`` also removes one token
    inside the real range (as a [CLS] token left out), so masks are not all prefixes."""
    mask = torch.arange(size)[None, :] < torch.tensor(lengths)[:, None]
    if hole is not None:
        mask[0, hole] = False
    return mask


def _batch(seed=0, dtype=torch.float64, device="cpu", d=5):
    """4 samples; x has up to 7 tokens, y up to 9, real counts all different, and the
    padded entries hold large random values (they must never matter)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 7, d, generator=g, dtype=torch.float64)
    y = torch.randn(4, 9, d, generator=g, dtype=torch.float64) + 0.3
    x_mask = _masks([7, 4, 5, 2], 7, hole=1)
    y_mask = _masks([3, 9, 6, 5], 9)
    x[~x_mask] = 100 * torch.randn(int((~x_mask).sum()), d, generator=g, dtype=torch.float64)
    y[~y_mask] = 100 * torch.randn(int((~y_mask).sum()), d, generator=g, dtype=torch.float64)
    to = {"dtype": dtype, "device": device}
    return x.to(**to), y.to(**to), x_mask.to(device), y_mask.to(device)


def _real(t: torch.Tensor, k: int, x_mask, y_mask) -> np.ndarray:
    """Sample k of a (B, T, S) tensor restricted to its real rows and columns, float64."""
    rows = x_mask[k].cpu().nonzero()[:, 0]
    cols = y_mask[k].cpu().nonzero()[:, 0]
    return t[k].detach().cpu().double()[rows][:, cols].numpy()


def _uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def ipot_numpy(C: np.ndarray, beta: float, n_iter: int, inner: int) -> np.ndarray:
    """IPOT as in Algorithm 1 of Xie, Wang, Wang, Zha (UAI 2019), uniform marginals:
    G = exp(-C / beta), Gamma = 1 1^T, sigma = 1/m; each step Q = G * Gamma, ``inner`` times
    delta = mu / (Q sigma), sigma = nu / (Q^T delta); then Gamma = diag(delta) Q diag(sigma)."""
    n, m = C.shape
    mu, nu = _uniform(n), _uniform(m)
    G = np.exp(-C / beta)
    gamma = np.ones((n, m))
    sigma = np.full(m, 1.0 / m)
    for _ in range(n_iter):
        Q = G * gamma
        for _ in range(inner):
            delta = mu / (Q @ sigma)
            sigma = nu / (Q.T @ delta)
        gamma = delta[:, None] * Q * sigma[None, :]
    return gamma


def _tol(dtype, f64: float, f32: float) -> float:
    return f64 if dtype == torch.float64 else f32


def _force_log_domain(monkeypatch):
    monkeypatch.setattr(token_module, "_limit", lambda dtype: -1.0)


# ----------------------------------------------------------------------------- cost
def test_token_cost_matches_pot_cosine(device, dtype):
    x, y, x_mask, y_mask = _batch(0, dtype, device)
    C = token_cost(x, y, x_mask, y_mask)
    assert C.shape == (4, 7, 9) and C.dtype == dtype and C.device.type == device.type
    assert bool(torch.isfinite(C).all())
    for k in range(4):
        xk = x[k][x_mask[k]].cpu().double().numpy()
        yk = y[k][y_mask[k]].cpu().double().numpy()
        expected = pot.dist(xk, yk, metric="cosine")  # 1 - cos, by scipy
        np.testing.assert_allclose(
            _real(C, k, x_mask, y_mask), expected, atol=_tol(dtype, 1e-12, 1e-6)
        )


def test_token_cost_zero_vector_is_finite():
    x = torch.zeros(1, 2, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 2, 3, dtype=torch.float64)
    C = token_cost(x, y)
    C.sum().backward()
    assert torch.equal(C.detach(), torch.ones(1, 2, 2, dtype=torch.float64))
    assert bool(torch.isfinite(x.grad).all())


# ----------------------------------------------------------------------------- against POT
@pytest.mark.parametrize("beta", [0.5, 0.05])
def test_sinkhorn_matches_pot_on_padded_batch(device, dtype, beta):
    x, y, x_mask, y_mask = _batch(1, dtype, device)
    C = token_cost(x, y, x_mask, y_mask)
    plan, value = token_ot(C, x_mask, y_mask, solver="sinkhorn", beta=beta, n_iter=30)
    assert plan.shape == C.shape and value.shape == (4,) and plan.dtype == dtype
    for k in range(4):
        Ck = _real(C, k, x_mask, y_mask)
        n, m = Ck.shape
        # stopThr=0: POT runs exactly numItermax iterations, as token_ot does
        expected = pot.sinkhorn(
            _uniform(n), _uniform(m), Ck, reg=beta, numItermax=30, stopThr=0.0, warn=False
        )
        np.testing.assert_allclose(
            _real(plan, k, x_mask, y_mask), expected, rtol=_tol(dtype, 1e-10, 2e-4), atol=1e-7
        )
        assert abs(float(value[k]) - float((expected * Ck).sum())) < _tol(dtype, 1e-12, 1e-6)
    # padded rows and columns carry exactly nothing
    outside = ~(x_mask[..., :, None] & y_mask[..., None, :])
    assert bool((plan[outside] == 0).all())


def test_exact_matches_pot_emd(device, dtype):
    x, y, x_mask, y_mask = _batch(2, dtype, device)
    C = token_cost(x, y, x_mask, y_mask)
    plan, value = token_ot(C, x_mask, y_mask, solver="exact")
    assert plan.dtype == dtype and plan.device.type == device.type
    for k in range(4):
        Ck = _real(C, k, x_mask, y_mask)
        n, m = Ck.shape
        expected = pot.emd(_uniform(n), _uniform(m), Ck)
        np.testing.assert_allclose(
            _real(plan, k, x_mask, y_mask), expected, atol=_tol(dtype, 1e-12, 1e-6)
        )
        assert abs(float(value[k]) - pot.emd2(_uniform(n), _uniform(m), Ck)) < _tol(
            dtype, 1e-12, 1e-6
        )
    outside = ~(x_mask[..., :, None] & y_mask[..., None, :])
    assert bool((plan[outside] == 0).all())


@pytest.mark.parametrize(("beta", "inner"), [(0.5, 1), (0.05, 1), (0.5, 3)])
def test_ipot_matches_numpy_reference(device, dtype, beta, inner):
    x, y, x_mask, y_mask = _batch(3, dtype, device)
    C = token_cost(x, y, x_mask, y_mask)
    plan, value = token_ot(C, x_mask, y_mask, solver="ipot", beta=beta, n_iter=40, inner_iter=inner)
    for k in range(4):
        Ck = _real(C, k, x_mask, y_mask)
        expected = ipot_numpy(Ck, beta, 40, inner)
        np.testing.assert_allclose(
            _real(plan, k, x_mask, y_mask), expected, rtol=_tol(dtype, 1e-9, 1e-4), atol=1e-7
        )
        assert abs(float(value[k]) - float((expected * Ck).sum())) < _tol(dtype, 1e-12, 2e-6)
        # IPOT's last update is a column scaling: the column sums are exact
        np.testing.assert_allclose(
            _real(plan, k, x_mask, y_mask).sum(0),
            _uniform(Ck.shape[1]),
            atol=_tol(dtype, 1e-14, 1e-6),
        )


def test_ipot_tends_to_exact_ot_while_sinkhorn_keeps_its_bias():
    """beta is a step for IPOT (no bias at convergence), a lasting blur for Sinkhorn."""
    x, y, x_mask, y_mask = _batch(4)
    C = token_cost(x, y, x_mask, y_mask)
    _, ipot_value = token_ot(C, x_mask, y_mask, solver="ipot", beta=0.5, n_iter=1500)
    _, sink_value = token_ot(C, x_mask, y_mask, solver="sinkhorn", beta=0.5, n_iter=1500)
    for k in range(4):
        Ck = _real(C, k, x_mask, y_mask)
        exact = pot.emd2(_uniform(Ck.shape[0]), _uniform(Ck.shape[1]), Ck)
        assert abs(float(ipot_value[k]) - exact) < 1e-5
        assert float(sink_value[k]) - exact > 1e-2


def test_log_domain_path_matches_scaling_path(monkeypatch, device, dtype):
    """Costs whose range / beta exceeds the float range are solved in the log domain: the
    same iterations, so the same plans."""
    x, y, x_mask, y_mask = _batch(5, dtype, device)
    C = token_cost(x, y, x_mask, y_mask)
    fast = {s: token_ot(C, x_mask, y_mask, solver=s, beta=0.1, n_iter=25) for s in BATCHED}
    _force_log_domain(monkeypatch)
    for s in BATCHED:
        plan, value = token_ot(C, x_mask, y_mask, solver=s, beta=0.1, n_iter=25)
        assert torch.allclose(plan, fast[s][0], rtol=_tol(dtype, 1e-9, 1e-4), atol=1e-7)
        assert torch.allclose(value, fast[s][1], atol=_tol(dtype, 1e-12, 1e-6))


def test_small_beta_takes_the_log_domain_and_stays_finite():
    """range / beta ~ 1.5 / 0.01 is beyond float32's scaling range: no NaN, no underflow."""
    x, y, x_mask, y_mask = _batch(6, torch.float32)
    C = token_cost(x, y, x_mask, y_mask)
    a = x_mask / x_mask.sum(-1, keepdim=True)
    b = y_mask / y_mask.sum(-1, keepdim=True)
    for solver, dim, exact in (("ipot", -2, b), ("sinkhorn", -1, a)):
        plan, value = token_ot(C, x_mask, y_mask, solver=solver, beta=0.01, n_iter=200)
        assert bool(torch.isfinite(plan).all()) and bool(torch.isfinite(value).all())
        # the side scaled last is exact (IPOT: columns; Sinkhorn, as POT: rows)
        assert torch.allclose(plan.sum(dim), exact.float(), atol=1e-6)


# ----------------------------------------------------------------------------- batching
@pytest.mark.parametrize("solver", ["ipot", "sinkhorn", "exact"])
def test_batched_equals_per_sample(device, solver):
    x, y, x_mask, y_mask = _batch(7, torch.float64, device)
    C = token_cost(x, y, x_mask, y_mask)
    plan, value = token_ot(C, x_mask, y_mask, solver=solver)
    for k in range(4):
        alone = torch.tensor(_real(C, k, x_mask, y_mask), device=device)[None]
        plan_k, value_k = token_ot(alone, solver=solver)  # no padding at all
        np.testing.assert_allclose(
            _real(plan, k, x_mask, y_mask), plan_k[0].cpu().numpy(), rtol=1e-10, atol=1e-15
        )
        assert abs(float(value[k]) - float(value_k[0])) < 1e-12


# ----------------------------------------------------------------------------- padding
@pytest.mark.parametrize("solver", ["ipot", "sinkhorn", "exact"])
def test_padded_tokens_get_zero_mass_and_zero_gradient(device, solver):
    x, y, x_mask, y_mask = _batch(8, torch.float64, device)
    x.requires_grad_(True)
    y.requires_grad_(True)
    loss = token_alignment_loss(x, y, x_mask, y_mask, solver=solver)
    loss.backward()
    assert bool((x.grad[~x_mask] == 0).all()) and bool((y.grad[~y_mask] == 0).all())
    assert bool((x.grad[x_mask].abs().sum(-1) > 0).all())  # every real token is pulled
    plan, _ = token_ot(token_cost(x, y, x_mask, y_mask), x_mask, y_mask, solver=solver)
    assert bool((plan.masked_select(~x_mask[..., :, None]) == 0).all())
    assert bool((plan.masked_select(~y_mask[..., None, :]) == 0).all())
    # new values (even NaN) in the padded tokens change nothing, bit for bit
    x2, y2 = x.detach().clone(), y.detach().clone()
    x2[~x_mask] = float("nan")
    y2[~y_mask] = -1e6
    x2.requires_grad_(True)
    loss2 = token_alignment_loss(x2, y2, x_mask, y_mask, solver=solver)
    loss2.backward()
    assert torch.equal(loss2, loss)
    assert torch.equal(x2.grad, x.grad)


@pytest.mark.parametrize("solver", BATCHED)
def test_padded_cost_entries_are_never_read(solver):
    x, y, x_mask, y_mask = _batch(9)
    C = token_cost(x, y, x_mask, y_mask)
    outside = ~(x_mask[..., :, None] & y_mask[..., None, :])
    C2 = C.clone()
    C2[outside] = float("nan")
    p1, v1 = token_ot(C, x_mask, y_mask, solver=solver)
    p2, v2 = token_ot(C2, x_mask, y_mask, solver=solver)
    assert torch.equal(p1, p2) and torch.equal(v1, v2)


def test_integer_masks_are_accepted():
    x, y, x_mask, y_mask = _batch(10)
    a = token_alignment_loss(x, y, x_mask, y_mask)
    b = token_alignment_loss(x, y, x_mask.long(), y_mask.to(torch.uint8))
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("solver", ["ipot", "sinkhorn", "exact"])
def test_gradient_of_value_is_the_fixed_plan(device, solver):
    x, y, x_mask, y_mask = _batch(11, torch.float64, device)
    C = token_cost(x, y, x_mask, y_mask).detach().requires_grad_(True)
    plan, value = token_ot(C, x_mask, y_mask, solver=solver)
    assert not plan.requires_grad
    weights = torch.arange(1.0, 5.0, dtype=torch.float64, device=device)
    (value * weights).sum().backward()
    assert torch.equal(C.grad, plan * weights[:, None, None])


def test_exact_value_gradient_by_finite_differences():
    """Envelope theorem: min_P <P, C> has gradient P* in C; finite differences re-solve the
    LP at every perturbed cost, so this checks the theorem, not only the chain rule."""
    x, y, x_mask, y_mask = _batch(12)
    C = token_cost(x, y, x_mask, y_mask).detach().requires_grad_(True)

    def value(c):
        return token_ot(c, x_mask, y_mask, solver="exact")[1]

    assert torch.autograd.gradcheck(value, (C,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("solver", BATCHED)
def test_gradient_through_the_cost_with_the_plan_fixed(solver):
    """The loss's gradient w.r.t. the tokens equals that of <P0, C(x, y)> with P0 held fixed,
    and gradcheck (finite differences in float64) validates the latter."""
    x, y, x_mask, y_mask = _batch(13)
    x.requires_grad_(True)
    y.requires_grad_(True)
    plan0, _ = token_ot(token_cost(x, y, x_mask, y_mask), x_mask, y_mask, solver=solver)

    def fixed_plan_value(xx, yy):
        return (plan0 * token_cost(xx, yy, x_mask, y_mask)).sum((-2, -1))

    assert torch.autograd.gradcheck(fixed_plan_value, (x, y), eps=1e-6, atol=1e-7)
    loss = token_alignment_loss(x, y, x_mask, y_mask, solver=solver)
    gx, gy = torch.autograd.grad(loss, (x, y))
    ex, ey = torch.autograd.grad(fixed_plan_value(x, y).mean(), (x, y))
    assert torch.allclose(gx, ex, rtol=1e-12, atol=1e-15)
    assert torch.allclose(gy, ey, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("log_domain", [False, True], ids=["scaling", "log"])
@pytest.mark.parametrize("solver", BATCHED)
def test_unrolled_gradient_by_finite_differences(monkeypatch, solver, log_domain):
    """detach_plan=False differentiates through the iterations (both code paths)."""
    if log_domain:
        _force_log_domain(monkeypatch)
    g = torch.Generator().manual_seed(14)
    C = torch.rand(2, 4, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    a_mask = _masks([4, 3], 4)
    b_mask = _masks([2, 5], 5)

    def value(c):
        return token_ot(c, a_mask, b_mask, solver=solver, n_iter=6, detach_plan=False)[1]

    assert torch.autograd.gradcheck(value, (C,), eps=1e-6, atol=1e-7)
    value(C).sum().backward()
    outside = ~(a_mask[..., :, None] & b_mask[..., None, :])
    assert bool((C.grad[outside] == 0).all())


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize("solver", ["ipot", "sinkhorn", "exact"])
def test_float32_agrees_with_float64(device, solver):
    x, y, x_mask, y_mask = _batch(15, torch.float64, device)
    p64, v64 = token_ot(token_cost(x, y, x_mask, y_mask), x_mask, y_mask, solver=solver)
    p32, v32 = token_ot(
        token_cost(x.float(), y.float(), x_mask, y_mask), x_mask, y_mask, solver=solver
    )
    assert p32.dtype == torch.float32 and v32.dtype == torch.float32
    assert float((v32.double() - v64).abs().max()) < 1e-5
    assert float((p32.double() - p64).abs().max()) < 1e-5


def test_half_precision_inputs_are_solved_in_float32():
    x, y, x_mask, y_mask = _batch(16, torch.float32)
    ref = token_alignment_loss(x.bfloat16().float(), y.bfloat16().float(), x_mask, y_mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = token_alignment_loss(x.bfloat16(), y.bfloat16(), x_mask, y_mask)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, ref, atol=1e-6)


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("solver", BATCHED)
def test_tol_stops_early(solver):
    x, y, x_mask, y_mask = _batch(17)
    C = token_cost(x, y, x_mask, y_mask)
    # an L1 change / marginal error is at most 2 < 10: the first check (step 10) stops
    p_early, _ = token_ot(C, x_mask, y_mask, solver=solver, n_iter=500, tol=10.0)
    p_ten, _ = token_ot(C, x_mask, y_mask, solver=solver, n_iter=10)
    assert torch.equal(p_early, p_ten)
    p_tight, _ = token_ot(C, x_mask, y_mask, solver=solver, n_iter=3000, tol=1e-11)
    p_long, _ = token_ot(C, x_mask, y_mask, solver=solver, n_iter=3000)
    assert float((p_tight - p_long).abs().sum((-2, -1)).max()) < 1e-8


def test_empty_side_raises_naming_sample_and_side():
    x, y, x_mask, y_mask = _batch(18)
    y_mask = y_mask.clone()
    y_mask[2] = False
    C = token_cost(x, y, x_mask, y_mask)
    with pytest.raises(ValueError, match=r"sample 2 .*b_mask"):
        token_ot(C, x_mask, y_mask)
    with pytest.raises(ValueError, match=r"sample 2 .*y_mask"):
        token_alignment_loss(x, y, x_mask, y_mask)
    x_mask = x_mask.clone()
    x_mask[1] = False
    with pytest.raises(ValueError, match=r"sample 1 .*x_mask"):
        token_alignment_loss(x, y, x_mask, y_mask)


@pytest.mark.parametrize("solver", ["ipot", "sinkhorn", "exact"])
def test_empty_zero_gives_zero_and_leaves_the_others_alone(solver):
    x, y, x_mask, y_mask = _batch(19)
    y_mask = y_mask.clone()
    y_mask[2] = False
    C = token_cost(x, y, x_mask, y_mask)
    plan, value = token_ot(C, x_mask, y_mask, solver=solver, empty="zero")
    assert float(value[2]) == 0 and bool((plan[2] == 0).all())
    keep = [0, 1, 3]
    p_ref, v_ref = token_ot(C[keep], x_mask[keep], y_mask[keep], solver=solver)
    assert torch.allclose(plan[keep], p_ref, atol=1e-15) and torch.allclose(value[keep], v_ref)
    x.requires_grad_(True)
    loss = token_alignment_loss(x, y, x_mask, y_mask, solver=solver, empty="zero")
    assert torch.allclose(loss, v_ref.mean())  # the mean over the 3 non-empty samples
    loss.backward()
    assert bool((x.grad[2] == 0).all())


# ----------------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    x, y, x_mask, y_mask = _batch(20)
    C = token_cost(x, y, x_mask, y_mask)
    with pytest.raises(ValueError, match="same batch size"):
        token_cost(x, y[:3])
    with pytest.raises(ValueError, match="token dimension"):
        token_cost(x, y[..., :4])
    with pytest.raises(ValueError, match=r"x must have shape \(B, tokens, d\)"):
        token_cost(x[0], y)
    with pytest.raises(ValueError, match="x_mask must have shape"):
        token_cost(x, y, x_mask[:, :5], y_mask)
    with pytest.raises(ValueError, match="y_mask must have shape"):
        token_alignment_loss(x, y, x_mask, y_mask[:2])
    with pytest.raises(ValueError, match="x_mask must be a bool tensor"):
        token_cost(x, y, x_mask.double(), y_mask)
    with pytest.raises(ValueError, match="a_mask must have shape"):
        token_ot(C, x_mask.T, y_mask)
    with pytest.raises(ValueError, match="b_mask must have shape"):
        token_ot(C, x_mask, x_mask)
    with pytest.raises(ValueError, match=r"cost must have shape \(B, T, S\)"):
        token_ot(C[0])
    with pytest.raises(ValueError, match="solver must be one of"):
        token_ot(C, x_mask, y_mask, solver="greenkhorn")
    for beta in (0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="beta must be a positive"):
            token_ot(C, x_mask, y_mask, beta=beta)
    with pytest.raises(ValueError, match="n_iter must be an integer >= 1"):
        token_ot(C, x_mask, y_mask, n_iter=0)
    with pytest.raises(ValueError, match="inner_iter must be an integer >= 1"):
        token_ot(C, x_mask, y_mask, inner_iter=1.5)
    with pytest.raises(ValueError, match="tol must be positive"):
        token_ot(C, x_mask, y_mask, tol=0)
    with pytest.raises(ValueError, match="empty must be"):
        token_ot(C, x_mask, y_mask, empty="skip")
    bad = C.clone()
    bad[0, 0, 0] = float("nan")  # a real pair
    with pytest.raises(ValueError, match="cost .*NaN"):
        token_ot(bad, x_mask, y_mask)
    with pytest.raises(TypeError, match="unexpected keyword"):
        token_alignment_loss(x, y, x_mask, y_mask, reg=0.1)
