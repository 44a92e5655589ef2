"""Linear OT: log-domain Sinkhorn, rounding onto the transport polytope, network simplex."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

from modalign.ot import emd, round_to_marginals, sinkhorn


def _problem(seed: int, n: int, m: int):
    """Cost between two shifted clouds and two different, non-uniform marginals."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 1.0
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    a, b = rng.uniform(0.2, 1.0, n), rng.uniform(0.2, 1.0, m)
    return cost, a / a.sum(), b / b.sum()


def _tensors(*arrays, dtype=torch.float64, device="cpu"):
    return [torch.tensor(v, dtype=dtype, device=device) for v in arrays]


def _l1_marginal_errors(plan, a, b):
    return float((plan.sum(-1) - a).abs().sum()), float((plan.sum(-2) - b).abs().sum())


# ----------------------------------------------------------------------------- sinkhorn
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("rel_reg", [0.02, 0.2])
def test_sinkhorn_matches_pot_log(seed, rel_reg, ref):
    cost, a, b = _problem(seed, 14, 9)  # n != m and a, b differ
    reg = rel_reg * cost.max()
    plan, log = sinkhorn(*_tensors(a, b, cost), reg, log=True)
    expected = pot.sinkhorn(
        a=a, b=b, M=cost, reg=reg, method="sinkhorn_log", numItermax=100_000, stopThr=1e-13
    )
    assert plan.shape == (14, 9) and plan.dtype == torch.float64
    assert np.abs(ref.asnp(plan) - expected).sum() < 1e-7
    err_a, err_b = _l1_marginal_errors(plan, *_tensors(a, b))
    assert err_a < 1e-8 and err_b < 1e-8
    assert log["err"] < 1e-8 and log["n_iter"] > 0
    # the returned potentials reproduce the plan: T = exp(-C / reg + f + g^T)
    rebuilt = np.exp(-cost / reg + ref.asnp(log["f"])[:, None] + ref.asnp(log["g"])[None, :])
    np.testing.assert_allclose(rebuilt, ref.asnp(plan), rtol=1e-8, atol=1e-14)


def test_sinkhorn_defaults_to_uniform_marginals(ref):
    cost, _, _ = _problem(2, 8, 6)
    plan = sinkhorn(None, None, torch.tensor(cost), 0.1 * cost.max())
    expected = pot.sinkhorn(
        a=np.full(8, 1 / 8),
        b=np.full(6, 1 / 6),
        M=cost,
        reg=0.1 * cost.max(),
        method="sinkhorn_log",
        stopThr=1e-13,
    )
    assert np.abs(ref.asnp(plan) - expected).sum() < 1e-7


def test_sinkhorn_accepts_numpy(ref):
    cost, a, b = _problem(3, 7, 5)
    plan = sinkhorn(a, b, cost, 0.1 * cost.max())
    assert isinstance(plan, torch.Tensor) and plan.dtype == torch.float64
    expected = pot.sinkhorn(
        a=a, b=b, M=cost, reg=0.1 * cost.max(), method="sinkhorn_log", stopThr=1e-13
    )
    assert np.abs(ref.asnp(plan) - expected).sum() < 1e-7


def test_sinkhorn_batched_equals_separate_calls(device, dtype):
    problems = [_problem(s, 10, 7) for s in (4, 5, 6)]
    cost = torch.tensor(np.stack([c for c, _, _ in problems]), dtype=dtype, device=device)
    a = torch.tensor(np.stack([a for _, a, _ in problems]), dtype=dtype, device=device)
    b = torch.tensor(np.stack([b for _, _, b in problems]), dtype=dtype, device=device)
    reg = 0.05 * float(cost.max())
    batched = sinkhorn(a, b, cost, reg)
    assert batched.shape == (3, 10, 7)
    assert batched.device.type == device.type and batched.dtype == dtype
    # each solve stops once its L1 marginal error is below 1e-5 (f32) or 1e-9 (f64)
    atol = 1e-4 if dtype == torch.float32 else 1e-8
    for i in range(3):
        single = sinkhorn(a[i], b[i], cost[i], reg)
        assert single.device.type == device.type and single.dtype == dtype
        assert float((batched[i] - single).abs().sum()) < atol
    # one marginal pair shared by the whole batch is broadcast
    shared = sinkhorn(a[0], b[0], cost, reg)
    for i in range(3):
        assert float((shared[i] - sinkhorn(a[0], b[0], cost[i], reg)).abs().sum()) < atol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_sinkhorn_small_regularisation_stays_finite_and_feasible(dtype, ref):
    cost, a, b = _problem(0, 30, 20)
    ct, at, bt = _tensors(cost, a, b, dtype=dtype)
    reg = 1e-4 * float(ct.max())
    # At this strength Sinkhorn needs ~1e4 sweeps (the default cap, 2000, is not enough on
    # this 30 x 20 problem); what matters is that every step stays finite.
    plan, log = sinkhorn(at, bt, ct, reg, max_iter=20_000, log=True)
    assert plan.dtype == dtype
    assert bool(torch.isfinite(plan).all()) and bool((plan >= 0).all())
    err_a, err_b = _l1_marginal_errors(plan, at, bt)
    assert err_a < 1e-3 and err_b < 1e-3
    assert log["err"] < 1e-3
    # near-zero regularisation: the transport cost approaches the exact OT cost
    exact = pot.emd2(a=ref.asnp(at), b=ref.asnp(bt), M=ref.asnp(ct))
    assert abs(float((plan.double() * ct.double()).sum()) - exact) < 5e-3 * exact


def test_sinkhorn_warm_start_from_potentials():
    cost, a, b = _problem(7, 12, 10)
    ct, at, bt = _tensors(cost, a, b)
    reg = 0.02 * cost.max()
    cold, log = sinkhorn(at, bt, ct, reg, log=True)
    assert log["n_iter"] > 20
    warm, log_warm = sinkhorn(at, bt, ct, reg, potentials=(log["f"], log["g"]), log=True)
    assert log_warm["n_iter"] <= 10  # one cycle of sweeps confirms convergence
    assert float((warm - cold).abs().sum()) < 1e-8


# ----------------------------------------------------------------------------- rounding
def _rough_plan(seed, n, m, dtype, batch=()):
    """A positive matrix with the right total mass order but wrong marginals."""
    g = torch.Generator().manual_seed(seed)
    plan = torch.rand(*batch, n, m, generator=g, dtype=torch.float64) + 0.05
    plan = plan / plan.sum((-1, -2), keepdim=True)
    a = torch.rand(*batch, n, generator=g, dtype=torch.float64) + 0.2
    b = torch.rand(*batch, m, generator=g, dtype=torch.float64) + 0.2
    return (
        plan.to(dtype),
        (a / a.sum(-1, keepdim=True)).to(dtype),
        (b / b.sum(-1, keepdim=True)).to(dtype),
    )


@pytest.mark.parametrize("batch", [(), (4,)])
def test_round_to_marginals_is_exact_and_close(dtype, batch):
    plan, a, b = _rough_plan(0, 9, 6, dtype, batch)
    rounded = round_to_marginals(plan, a, b)
    assert rounded.shape == plan.shape and rounded.dtype == dtype
    exact = 1e-6 if dtype == torch.float32 else 1e-12
    assert float((rounded.sum(-1) - a).abs().max()) < exact
    assert float((rounded.sum(-2) - b).abs().max()) < exact
    assert float(rounded.min()) >= -exact
    # Altschuler et al.: ||rounded - plan||_1 <= 2 (||r(P) - a||_1 + ||c(P) - b||_1)
    marg = (plan.sum(-1) - a).abs().sum(-1) + (plan.sum(-2) - b).abs().sum(-1)
    moved = (rounded - plan).abs().sum((-1, -2))
    assert bool((moved <= 2 * marg + 10 * exact).all())


def test_round_to_marginals_of_nearly_feasible_sinkhorn_plan(dtype):
    cost, a, b = _problem(8, 16, 11)
    ct, at, bt = _tensors(cost, a, b, dtype=dtype)
    loose = sinkhorn(at, bt, ct, 0.01 * cost.max(), max_iter=10)  # one cycle: not converged
    err = sum(_l1_marginal_errors(loose, at, bt))
    assert err > 1e-4
    rounded = round_to_marginals(loose, at, bt)
    exact = 1e-6 if dtype == torch.float32 else 1e-12
    assert float((rounded.sum(-1) - at).abs().max()) < exact
    assert float((rounded.sum(-2) - bt).abs().max()) < exact
    assert float((rounded - loose).abs().sum()) <= 2 * err + 10 * exact


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_round_to_marginals_leaves_a_feasible_plan_alone(dtype):
    worst = 0.0
    for seed in range(300):
        g = torch.Generator().manual_seed(seed)
        a = torch.rand(7, generator=g, dtype=dtype) + 0.1
        b = torch.rand(5, generator=g, dtype=dtype) + 0.1
        a, b = a / a.sum(), b / b.sum()
        plan = a[:, None] * b[None, :]  # the product coupling: feasible up to rounding
        worst = max(worst, float((round_to_marginals(plan, a, b) - plan).abs().max()))
    assert worst < (1e-6 if dtype == torch.float32 else 1e-14)


# ----------------------------------------------------------------------------- emd
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_emd_matches_pot(dtype, seed, ref):
    cost, a, b = _problem(seed, 13, 8)
    ct, at, bt = _tensors(cost, a, b, dtype=dtype)
    plan, log = emd(at, bt, ct, log=True)
    assert plan.dtype == dtype and plan.shape == (13, 8)
    # POT on the very numbers modalign received (float32 inputs rounded once)
    an, bn, cn = ref.asnp(at), ref.asnp(bt), ref.asnp(ct)
    expected = pot.emd2(a=an, b=bn / bn.sum() * an.sum(), M=cn)
    value = float((plan.double() * ct.double()).sum())
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    assert abs(value - expected) <= rtol * expected
    assert abs(log["cost"] - expected) <= 1e-12 * expected
    exact = 1e-6 if dtype == torch.float32 else 1e-12
    assert float((plan.sum(-1) - at).abs().max()) < exact
    assert float((plan.sum(-2) - bt).abs().max()) < exact
    assert float(plan.min()) >= 0
    # a basic solution of the simplex has at most n + m - 1 non-zeros
    assert int((plan > 0).sum()) <= 13 + 8 - 1
    # dual feasibility and optimality: u_i + v_j <= C_ij, with equality on the support
    u, v = ref.asnp(log["u"]), ref.asnp(log["v"])
    slack = cn - u[:, None] - v[None, :]
    assert slack.min() > -1e-5 * cn.max()
    assert np.abs(slack[ref.asnp(plan) > 0]).max() < 1e-5 * cn.max()


def test_emd_uniform_default_and_device(device, dtype, ref):
    cost, _, _ = _problem(3, 6, 6)
    ct = torch.tensor(cost, dtype=dtype, device=device)
    plan = emd(None, None, ct)
    assert plan.device.type == device.type and plan.dtype == dtype
    # equal uniform masses: the optimum is a permutation matrix / 6
    pn = ref.asnp(plan) * 6
    np.testing.assert_allclose(np.sort(pn, axis=1)[:, -1], 1.0, atol=1e-6)
    assert (
        abs(
            float((plan.double() * ct.double()).sum())
            - pot.emd2(a=np.full(6, 1 / 6), b=np.full(6, 1 / 6), M=ref.asnp(ct))
        )
        < 1e-6 * cost.max()
    )
