"""Differentiability: FGW values (envelope theorem), Gaussian W2, gradients to features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalign.ot import (
    fused_gromov_wasserstein,
    fused_gromov_wasserstein2,
    gaussian_w2,
    gromov_wasserstein2,
    sq_distances,
    sqeuclidean_lowrank,
)


def _sym(c: torch.Tensor) -> torch.Tensor:
    """Finite differences perturb one entry at a time; keep the structures symmetric."""
    return (c + c.transpose(-1, -2)) / 2


def _grad(leaf: torch.Tensor) -> np.ndarray:
    """The gradient of a leaf; a term switched off by alpha leaves it unset, i.e. zero."""
    g = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
    return g.detach().cpu().double().numpy()


def _leaves(fgw_problem, seed, n=5, m=4):
    pb = fgw_problem(seed, n, m)
    return pb, [torch.tensor(v, requires_grad=True) for v in (pb.M, pb.C1, pb.C2)]


# ----------------------------------------------------------------------------- FGW values
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.4, 0.8])
def test_fgw_value_gradcheck(fgw_problem, seed, alpha):
    """At an unregularised optimum the value's derivative is the partial derivative at the
    fixed plan (Danskin / envelope theorem), so full finite differences must agree."""
    pb, (m, c1, c2) = _leaves(fgw_problem, seed)
    p, q = torch.tensor(pb.p), torch.tensor(pb.q)

    def value(m, c1, c2):
        return fused_gromov_wasserstein2(m, _sym(c1), _sym(c2), p, q, alpha=alpha, solver="exact")

    assert torch.autograd.gradcheck(value, (m, c1, c2), atol=1e-6, rtol=1e-4)


def test_gw_value_gradcheck(fgw_problem):
    pb, (_, c1, c2) = _leaves(fgw_problem, 2)

    def value(c1, c2):
        return gromov_wasserstein2(_sym(c1), _sym(c2), torch.tensor(pb.p), torch.tensor(pb.q))

    assert torch.autograd.gradcheck(value, (c1, c2), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_entropic_value_gradient_is_the_envelope_gradient(fgw_problem, ref, alpha):
    """With entropy the value of the *unregularised* objective at the entropic plan is not
    stationary in the plan, so full finite differences differ by O(eps); the documented
    gradient is that of the objective at the fixed plan: alpha T for M, and finite
    differences of the brute-force quadruple sum at that plan for C1, C2."""
    pb, (m, c1, c2) = _leaves(fgw_problem, 3)
    p, q = torch.tensor(pb.p), torch.tensor(pb.q)
    kw = dict(alpha=alpha, solver="entropic", epsilon=0.1, tol=1e-13, max_iter=5000)
    value = fused_gromov_wasserstein2(m, c1, c2, p, q, **kw)
    value.backward()
    plan = ref.asnp(fused_gromov_wasserstein(m.detach(), c1.detach(), c2.detach(), p, q, **kw))
    assert float(value.detach()) == pytest.approx(
        ref.fgw(plan, pb.M, pb.C1, pb.C2, alpha), rel=1e-10
    )
    np.testing.assert_allclose(_grad(m), alpha * plan, rtol=1e-10, atol=1e-14)

    h = 1e-6
    for leaf, name in ((c1, "C1"), (c2, "C2")):
        base = {"C1": pb.C1, "C2": pb.C2}
        fd = np.zeros_like(base[name])
        for idx in np.ndindex(*fd.shape):
            up, down = base[name].copy(), base[name].copy()
            up[idx] += h
            down[idx] -= h
            args_up = dict(base, **{name: up})
            args_down = dict(base, **{name: down})
            fd[idx] = (
                ref.fgw(plan, pb.M, args_up["C1"], args_up["C2"], alpha)
                - ref.fgw(plan, pb.M, args_down["C1"], args_down["C2"], alpha)
            ) / (2 * h)
        np.testing.assert_allclose(_grad(leaf), fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("structures", ["dense", "lowrank"])
def test_gradients_flow_to_features(ref, structures):
    """M and C computed from features: the gradient reaches the features, and equals the
    autograd gradient of an independent plain-torch objective at the same fixed plan."""
    rng = np.random.default_rng(4)
    x_np, y_np = rng.normal(size=(6, 2)), rng.normal(size=(5, 2)) + 0.5

    def build(x, y):
        if structures == "dense":
            cx, cy = sq_distances(x), sq_distances(y)
            cx, cy = cx / cx.max(), cy / cy.max()
        else:
            cx, cy = sqeuclidean_lowrank(x), sqeuclidean_lowrank(y)
        return sq_distances(x, y), cx, cy

    x = torch.tensor(x_np, requires_grad=True)
    y = torch.tensor(y_np, requires_grad=True)
    kw = dict(alpha=0.5, solver="proximal", epsilon=0.1, tol=1e-12, max_iter=3000)
    value = fused_gromov_wasserstein2(*build(x, y), **kw)
    value.backward()
    for g in (x.grad, y.grad):
        assert g is not None and bool(torch.isfinite(g).all()) and float(g.abs().max()) > 1e-6

    with torch.no_grad():
        plan = fused_gromov_wasserstein(*build(x, y), **kw)
    x2 = torch.tensor(x_np, requires_grad=True)
    y2 = torch.tensor(y_np, requires_grad=True)
    mm = ((x2[:, None] - y2[None]) ** 2).sum(-1)
    cx = ((x2[:, None] - x2[None]) ** 2).sum(-1)
    cy = ((y2[:, None] - y2[None]) ** 2).sum(-1)
    ref.gw_torch(plan, mm, cx / cx.max(), cy / cy.max(), 0.5).backward()
    np.testing.assert_allclose(ref.asnp(x.grad), ref.asnp(x2.grad), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ref.asnp(y.grad), ref.asnp(y2.grad), rtol=1e-7, atol=1e-10)


def test_fgw_value_gradcheck_wrt_features():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 2, generator=g, dtype=torch.float64, requires_grad=True)

    def value(x, y):
        return fused_gromov_wasserstein2(
            sq_distances(x, y), sq_distances(x), sq_distances(y), alpha=0.3, solver="exact"
        )

    assert torch.autograd.gradcheck(value, (x, y), atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------- Gaussians
def test_gaussian_w2_diagonal_gradcheck():
    g = torch.Generator().manual_seed(6)
    mu1, mu2 = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(2))
    s1, s2 = (torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.3 for _ in range(2))
    leaves = [t.requires_grad_() for t in (mu1, s1, mu2, s2)]
    assert torch.autograd.gradcheck(lambda a, b, c, d: gaussian_w2(a, b, c, d), leaves)


def test_gaussian_w2_full_gradcheck():
    """Covariances ``A A^T + I`` (well conditioned, distinct eigenvalues almost surely);
    differentiating through ``A`` keeps every perturbed covariance symmetric."""
    g = torch.Generator().manual_seed(7)
    d = 3
    mu1, mu2 = (torch.randn(2, d, generator=g, dtype=torch.float64) for _ in range(2))
    a1, a2 = (torch.randn(2, d, d, generator=g, dtype=torch.float64) for _ in range(2))
    eye = torch.eye(d, dtype=torch.float64)

    def value(mu1, a1, mu2, a2):
        return gaussian_w2(mu1, a1 @ a1.mT + eye, mu2, a2 @ a2.mT + eye)

    leaves = [t.requires_grad_() for t in (mu1, a1, mu2, a2)]
    assert torch.autograd.gradcheck(value, leaves)
