"""(Fused) Gromov-Wasserstein: exact, entropic and proximal solvers against POT, and the
objective against a brute-force quadruple sum.

modalign's ``alpha`` weights the feature term, POT's the structure term: POT gets ``1 - a``.
"""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

from modalign.ot import (
    LowRank,
    fgw_objective,
    fused_gromov_wasserstein,
    gromov_wasserstein,
    linearized_cost,
    sqeuclidean_lowrank,
)


def _cross_lowrank(x: np.ndarray, y: np.ndarray, scale: float) -> LowRank:
    """``|x_i - y_j|^2 / scale`` as exact factors, built here from the definition."""
    xx, yy = (x * x).sum(1, keepdims=True), (y * y).sum(1, keepdims=True)
    left = np.concatenate([xx, np.ones_like(xx), -2 * x], 1) / scale
    right = np.concatenate([np.ones_like(yy), yy, y], 1)
    return LowRank(torch.tensor(left), torch.tensor(right))


def _assert_coupling(plan, p, q, atol):
    plan, p, q = (np.asarray(v) for v in (plan, p, q))
    np.testing.assert_allclose(plan.sum(1), p, atol=atol)
    np.testing.assert_allclose(plan.sum(0), q, atol=atol)
    assert plan.min() >= -atol


# ----------------------------------------------------------------------------- exact solver
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.7])
@pytest.mark.parametrize("sizes,uniform", [((12, 9), False), ((10, 10), True)])
def test_exact_matches_pot(fgw_problem, ref, seed, alpha, sizes, uniform):
    pb = fgw_problem(seed, *sizes, uniform=uniform)
    t = pb.torch()
    plan, log = fused_gromov_wasserstein(
        t["M"], t["C1"], t["C2"], t["p"], t["q"], alpha=alpha, solver="exact", log=True
    )
    if alpha == 0:
        plan_pot, log_pot = pot.gromov.gromov_wasserstein(
            C1=pb.C1, C2=pb.C2, p=pb.p, q=pb.q, log=True
        )
        pot_value = log_pot["gw_dist"]
    else:
        plan_pot, log_pot = pot.gromov.fused_gromov_wasserstein(
            M=pb.M, C1=pb.C1, C2=pb.C2, p=pb.p, q=pb.q, alpha=1 - alpha, log=True
        )
        pot_value = log_pot["fgw_dist"]
    ours = ref.fgw(ref.asnp(plan), pb.M, pb.C1, pb.C2, alpha)
    theirs = ref.fgw(plan_pot, pb.M, pb.C1, pb.C2, alpha)
    assert abs(theirs - pot_value) < 1e-10 * abs(pot_value)  # the reference agrees with POT
    assert abs(ours - theirs) <= 1e-6 * abs(theirs)
    assert abs(float(log["fgw_dist"]) - ours) <= 1e-10 * abs(ours)
    _assert_coupling(ref.asnp(plan), pb.p, pb.q, 1e-12)
    # the loss log of the conditional gradient never goes up
    assert np.all(np.diff(log["loss"]) <= 1e-12 * abs(log["loss"][0]))


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_exact_from_given_start_matches_pot(fgw_problem, ref, seed, alpha):
    pb = fgw_problem(seed, 11, 8)
    rng = np.random.default_rng(100 + seed)
    # a feasible but unusual start: half product coupling, half a random vertex
    vertex = pot.emd(a=pb.p, b=pb.q, M=rng.random((11, 8)))
    start = 0.5 * np.outer(pb.p, pb.q) + 0.5 * vertex
    t = pb.torch()
    plan, log = fused_gromov_wasserstein(
        t["M"],
        t["C1"],
        t["C2"],
        t["p"],
        t["q"],
        alpha=alpha,
        solver="exact",
        T0=torch.tensor(start),
        log=True,
    )
    if alpha == 0:
        plan_pot = gromov_wasserstein(
            t["C1"], t["C2"], t["p"], t["q"], solver="exact", T0=torch.tensor(start)
        )
        assert float((plan_pot - plan).abs().sum()) < 1e-12  # the alias is alpha = 0
        plan_pot = pot.gromov.gromov_wasserstein(C1=pb.C1, C2=pb.C2, p=pb.p, q=pb.q, G0=start)
    else:
        plan_pot = pot.gromov.fused_gromov_wasserstein(
            M=pb.M, C1=pb.C1, C2=pb.C2, p=pb.p, q=pb.q, alpha=1 - alpha, G0=start
        )
    assert log["loss"][0] == pytest.approx(ref.fgw(start, pb.M, pb.C1, pb.C2, alpha), rel=1e-10)
    ours = ref.fgw(ref.asnp(plan), pb.M, pb.C1, pb.C2, alpha)
    theirs = ref.fgw(plan_pot, pb.M, pb.C1, pb.C2, alpha)
    assert abs(ours - theirs) <= 1e-6 * abs(theirs)
    _assert_coupling(ref.asnp(plan), pb.p, pb.q, 1e-12)


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_exact_lowrank_equals_dense(fgw_problem, ref, seed, alpha):
    pb = fgw_problem(seed, 13, 10)
    t = pb.torch()
    dense_plan, dense_log = fused_gromov_wasserstein(
        t["M"], t["C1"], t["C2"], t["p"], t["q"], alpha=alpha, solver="exact", log=True
    )
    low1, low2 = sqeuclidean_lowrank(t["x"]), sqeuclidean_lowrank(t["y"])
    m_low = _cross_lowrank(pb.fx, pb.fy, ref.sqdist(pb.fx, pb.fy).max())
    for cost in (t["M"], m_low):
        plan, log = fused_gromov_wasserstein(
            cost, low1, low2, t["p"], t["q"], alpha=alpha, solver="exact", log=True
        )
        assert float((plan - dense_plan).abs().sum()) < 1e-9
        assert float(log["fgw_dist"]) == pytest.approx(float(dense_log["fgw_dist"]), rel=1e-10)
    assert float(dense_log["fgw_dist"]) == pytest.approx(
        ref.fgw(ref.asnp(dense_plan), pb.M, pb.C1, pb.C2, alpha), rel=1e-10
    )


def test_exact_alpha_one_is_linear_ot(fgw_problem, ref):
    pb = fgw_problem(6, 9, 7)
    t = pb.torch()
    plan = fused_gromov_wasserstein(t["M"], None, None, t["p"], t["q"], alpha=1.0, solver="exact")
    assert float((plan.double() * t["M"]).sum()) == pytest.approx(
        pot.emd2(a=pb.p, b=pb.q, M=pb.M), rel=1e-10
    )


def test_exact_float32_stays_float32(fgw_problem, ref):
    pb = fgw_problem(7, 10, 8)
    t = pb.torch(torch.float32)
    plan = fused_gromov_wasserstein(t["M"], t["C1"], t["C2"], t["p"], t["q"], alpha=0.5)
    assert plan.dtype == torch.float32
    _assert_coupling(ref.asnp(plan), ref.asnp(t["p"]), ref.asnp(t["q"]), 1e-6)
    plan64 = pot.gromov.fused_gromov_wasserstein(
        M=pb.M, C1=pb.C1, C2=pb.C2, p=pb.p, q=pb.q, alpha=0.5
    )
    ours, theirs = (ref.fgw(v, pb.M, pb.C1, pb.C2, 0.5) for v in (ref.asnp(plan), plan64))
    assert ours <= theirs * (1 + 1e-4)


# ----------------------------------------------------------------------------- entropic
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_entropic_matches_pot_pgd(fgw_problem, ref, seed, alpha):
    pb = fgw_problem(seed, 6, 5)
    t = pb.torch()
    eps = 0.1  # costs are normalised to a unit maximum
    plan, log = fused_gromov_wasserstein(
        t["M"],
        t["C1"],
        t["C2"],
        t["p"],
        t["q"],
        alpha=alpha,
        solver="entropic",
        epsilon=eps,
        tol=1e-12,
        max_iter=2000,
        log=True,
    )
    assert log["n_iter"] < 2000  # converged, not capped
    plan_pot = pot.gromov.entropic_fused_gromov_wasserstein(
        M=pb.M,
        C1=pb.C1,
        C2=pb.C2,
        p=pb.p,
        q=pb.q,
        alpha=1 - alpha,
        epsilon=eps,
        solver="PGD",
        max_iter=2000,
        tol=1e-13,
        numItermax=100_000,
        stopThr=1e-14,
    )
    assert np.abs(ref.asnp(plan) - plan_pot).sum() < 1e-8
    _assert_coupling(ref.asnp(plan), pb.p, pb.q, 1e-9)
    ours = float(fgw_objective(plan, t["M"], t["C1"], t["C2"], alpha))
    theirs = float(fgw_objective(torch.tensor(plan_pot), t["M"], t["C1"], t["C2"], alpha))
    assert abs(ours - theirs) < 1e-8 * abs(theirs)
    brute = ref.fgw(ref.asnp(plan), pb.M, pb.C1, pb.C2, alpha)
    assert ours == pytest.approx(brute, rel=1e-12)
    assert float(log["fgw_dist"]) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_proximal_matches_pot_ppa(fgw_problem, ref, device, seed, alpha):
    pb = fgw_problem(seed, 6, 5)
    t = pb.torch(device=device)
    eps, steps = 0.1, 15
    # tol = 0 runs exactly ``steps`` proximal steps in both libraries: identical iterates
    plan, log = fused_gromov_wasserstein(
        t["M"],
        t["C1"],
        t["C2"],
        t["p"],
        t["q"],
        alpha=alpha,
        solver="proximal",
        epsilon=eps,
        tol=0.0,
        max_iter=steps,
        log=True,
    )
    assert plan.device.type == device.type and plan.dtype == torch.float64
    assert log["n_iter"] == steps
    plan_pot = pot.gromov.entropic_fused_gromov_wasserstein(
        M=pb.M,
        C1=pb.C1,
        C2=pb.C2,
        p=pb.p,
        q=pb.q,
        alpha=1 - alpha,
        epsilon=eps,
        solver="PPA",
        max_iter=steps,
        tol=0.0,
        numItermax=100_000,
        stopThr=1e-13,
    )
    # Not 1e-9: as the plan concentrates (entries down to 1e-36), modalign's inner Sinkhorn
    # reaches its fixed cap of 1000 sweeps with an L1 marginal error of up to ~1e-6, where
    # POT (given 1e5 sweeps here) converges fully.
    assert np.abs(ref.asnp(plan) - plan_pot).sum() < 1e-5
    _assert_coupling(ref.asnp(plan), pb.p, pb.q, 1e-6)
    ours = ref.fgw(ref.asnp(plan), pb.M, pb.C1, pb.C2, alpha)
    theirs = ref.fgw(plan_pot, pb.M, pb.C1, pb.C2, alpha)
    assert abs(ours - theirs) < 1e-5 * abs(theirs)
    assert float(log["fgw_dist"]) == pytest.approx(ours, rel=1e-10)


def test_proximal_reaches_exact_quality(fgw_problem, ref):
    """The proximal solver targets the unregularised objective: converged, it is as good as
    the conditional gradient from the same start (both are local methods)."""
    pb = fgw_problem(9, 8, 7)
    t = pb.torch()
    args = (t["M"], t["C1"], t["C2"], t["p"], t["q"])
    prox = fused_gromov_wasserstein(
        *args, alpha=0.5, solver="proximal", epsilon=0.05, tol=1e-10, max_iter=3000
    )
    plan_pot = pot.gromov.fused_gromov_wasserstein(
        M=pb.M, C1=pb.C1, C2=pb.C2, p=pb.p, q=pb.q, alpha=0.5
    )
    ours = ref.fgw(ref.asnp(prox), pb.M, pb.C1, pb.C2, 0.5)
    assert ours <= ref.fgw(plan_pot, pb.M, pb.C1, pb.C2, 0.5) * (1 + 1e-3)
    _assert_coupling(ref.asnp(prox), pb.p, pb.q, 1e-8)


@pytest.mark.parametrize("solver", ["entropic", "proximal"])
def test_mirror_descent_lowrank_equals_dense(fgw_problem, ref, solver):
    pb = fgw_problem(11, 9, 7)
    t = pb.torch()
    kw = dict(alpha=0.3, solver=solver, epsilon=0.1, tol=0.0, max_iter=20)
    dense_plan = fused_gromov_wasserstein(t["M"], t["C1"], t["C2"], t["p"], t["q"], **kw)
    m_low = _cross_lowrank(pb.fx, pb.fy, ref.sqdist(pb.fx, pb.fy).max())
    low_plan = fused_gromov_wasserstein(
        m_low, sqeuclidean_lowrank(t["x"]), sqeuclidean_lowrank(t["y"]), t["p"], t["q"], **kw
    )
    assert float((low_plan - dense_plan).abs().sum()) < 1e-9


@pytest.mark.parametrize("solver", ["entropic", "proximal"])
def test_mirror_descent_batched_equals_separate(fgw_problem, device, dtype, solver):
    problems = [fgw_problem(s, 7, 6) for s in (20, 21, 22)]
    ts = [pb.torch(dtype, device) for pb in problems]
    stack = {k: torch.stack([t[k] for t in ts]) for k in ("M", "C1", "C2", "p", "q")}
    kw = dict(alpha=0.4, solver=solver, epsilon=0.1, tol=0.0, max_iter=10)
    batched = fused_gromov_wasserstein(
        stack["M"], stack["C1"], stack["C2"], stack["p"], stack["q"], **kw
    )
    assert batched.shape == (3, 7, 6)
    assert batched.device.type == device.type and batched.dtype == dtype
    atol = 1e-4 if dtype == torch.float32 else 1e-8
    for i, t in enumerate(ts):
        single = fused_gromov_wasserstein(t["M"], t["C1"], t["C2"], t["p"], t["q"], **kw)
        assert float((batched[i] - single).abs().sum()) < atol


def test_entropic_float32_is_finite_and_close_to_float64(fgw_problem, ref):
    pb = fgw_problem(12, 10, 8)
    plans = {}
    for dt in (torch.float32, torch.float64):
        t = pb.torch(dt)
        plans[dt] = fused_gromov_wasserstein(
            t["M"],
            t["C1"],
            t["C2"],
            t["p"],
            t["q"],
            alpha=0.5,
            solver="entropic",
            epsilon=0.05,
            max_iter=500,
        )
        assert plans[dt].dtype == dt and bool(torch.isfinite(plans[dt]).all())
    assert float((plans[torch.float32].double() - plans[torch.float64]).abs().sum()) < 1e-4


# ----------------------------------------------------------------------------- objective
def _random_inputs(seed, n, m, symmetric):
    rng = np.random.default_rng(seed)
    T = rng.random((n, m))  # not a coupling: marginals are read off the matrix
    M = rng.random((n, m))
    C1, C2 = rng.normal(size=(n, n)), rng.normal(size=(m, m))
    if symmetric:
        C1, C2 = C1 + C1.T, C2 + C2.T
    return T, M, C1, C2


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("symmetric", [True, False])
def test_fgw_objective_is_the_quadruple_sum(ref, dtype, alpha, symmetric):
    T, M, C1, C2 = _random_inputs(int(alpha * 4) + symmetric, 7, 5, symmetric)
    value = fgw_objective(*(torch.tensor(v, dtype=dtype) for v in (T, M, C1, C2)), alpha)
    assert value.dtype == dtype and value.shape == ()
    expected = ref.fgw(T, M, C1, C2, alpha)
    assert float(value) == pytest.approx(expected, rel=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_fgw_objective_lowrank_and_batched(ref, alpha):
    rng = np.random.default_rng(7)
    n, m = 8, 6
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(m, 2))
    C1, C2 = ref.normalized_sqdist(x), ref.normalized_sqdist(y)
    T = rng.random((n, m))
    M = rng.random((n, m))
    expected = ref.fgw(T, M, C1, C2, alpha)
    low1 = sqeuclidean_lowrank(torch.tensor(x))
    low2 = sqeuclidean_lowrank(torch.tensor(y))
    tt, mt, c1t, c2t = (torch.tensor(v) for v in (T, M, C1, C2))
    for a, b in ((low1, low2), (low1, c2t), (c1t, low2)):
        assert float(fgw_objective(tt, mt, a, b, alpha)) == pytest.approx(expected, rel=1e-12)
    # a factored feature cost
    m_low = LowRank(torch.tensor(rng.normal(size=(n, 2))), torch.tensor(rng.normal(size=(m, 2))))
    expected_low = ref.fgw(T, ref.asnp(m_low.dense()), C1, C2, alpha)
    assert float(fgw_objective(tt, m_low, low1, low2, alpha)) == pytest.approx(
        expected_low, rel=1e-12
    )
    # leading batch dimension: one value per problem
    T2 = rng.random((n, m))
    batch = fgw_objective(torch.stack([tt, torch.tensor(T2)]), mt, c1t, c2t, alpha)
    assert batch.shape == (2,)
    assert float(batch[1]) == pytest.approx(ref.fgw(T2, M, C1, C2, alpha), rel=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.35, 1.0])
def test_linearized_cost_is_the_gradient(ref, alpha):
    rng = np.random.default_rng(8)
    n, m = 6, 5
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 3))
    C1, C2 = ref.normalized_sqdist(x), ref.normalized_sqdist(y)
    M, T = rng.random((n, m)), rng.random((n, m))
    tt = torch.tensor(T, requires_grad=True)
    ref.gw_torch(tt, torch.tensor(M), torch.tensor(C1), torch.tensor(C2), alpha).backward()
    grad = linearized_cost(
        torch.tensor(T), torch.tensor(M), torch.tensor(C1), torch.tensor(C2), alpha
    )
    grad = grad.dense() if isinstance(grad, LowRank) else grad
    np.testing.assert_allclose(ref.asnp(grad), ref.asnp(tt.grad), rtol=1e-10, atol=1e-12)
    # factored inputs give the same gradient (possibly still factored)
    low = linearized_cost(
        torch.tensor(T),
        torch.tensor(M),
        sqeuclidean_lowrank(torch.tensor(x)),
        sqeuclidean_lowrank(torch.tensor(y)),
        alpha,
    )
    low = low.dense() if isinstance(low, LowRank) else low
    np.testing.assert_allclose(ref.asnp(low), ref.asnp(tt.grad), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["dense", "lowrank", "sparse"])
@pytest.mark.parametrize("alpha", [0.0, 0.4])
@pytest.mark.parametrize("relaxed", [False, True])
def test_shared_terms_give_each_iterate_its_objective(fgw_problem, ref, kind, alpha, relaxed):
    """The exact solver computes a plan's terms once and shares them between the objective,
    the next gradient and the line search, and carries C1 T C2^T along each step for the
    line search: the objective it reports for every iterate must be that iterate's quadruple
    sum, and the plan must descend. Starts away from the marginals (an infeasible start) so
    that the marginal terms move too."""
    from modalign.ot import SparseGraph, graph_structure
    from modalign.ot.gromov import _conditional_gradient

    pb = fgw_problem(7, 30, 6)
    t = pb.torch()
    c1, c1_dense = t["C1"], pb.C1
    if kind == "lowrank":
        c1 = sqeuclidean_lowrank(t["x"], normalize=True)
    elif kind == "sparse":
        c1_dense_t = graph_structure(t["x"], 5)
        c1, c1_dense = SparseGraph.from_dense(1 - c1_dense_t), c1_dense_t.numpy()
    rng = np.random.default_rng(0)
    start = torch.tensor(rng.uniform(0.5, 1.5, size=(30, 6)) / (30 * 6))
    iterates = []
    for max_iter in (0, 1, 3, 50):
        plan, history = _conditional_gradient(
            t["M"], c1, t["C2"], t["p"], t["q"], alpha, start, max_iter, 1e-12, 0.0, relaxed
        )
        iterates.append((plan, history))
    for plan, history in iterates:
        expected = ref.fgw(ref.asnp(plan), pb.M, c1_dense, pb.C2, alpha)
        assert history[-1] == pytest.approx(expected, rel=1e-10)
    # More steps descend: the last iterate's objective is below the start's.
    assert iterates[-1][1][-1] < iterates[0][1][0]
    np.testing.assert_allclose(ref.asnp(iterates[-1][0]).sum(1), pb.p, atol=1e-12)
