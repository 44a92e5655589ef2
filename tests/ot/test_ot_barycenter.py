"""FGW and Wasserstein barycenters: feasibility, closed-form updates, the reported objective
against an independent evaluation, and quality against POT."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

from modalign.ot import (
    Barycenter,
    LowRank,
    barycenter_objective,
    fgw_barycenter,
    sqeuclidean_lowrank,
    wasserstein_barycenter,
)

N, D = 60, 5


def _tensors(arrays, dtype=torch.float64, device="cpu"):
    return [torch.tensor(a, dtype=dtype, device=device) for a in arrays]


def _as_lists(bary: Barycenter, ref):
    z = ref.asnp(bary.features)
    c = None if bary.structure is None else ref.asnp(bary.structure_dense)
    return z, c, [ref.asnp(t) for t in bary.couplings]


def _assert_exact_couplings(couplings, p, qs, atol):
    assert len(couplings) == len(qs)
    for t, q in zip(couplings, qs):
        assert t is not None, "a coupling is missing"
        assert t.shape == (len(p), len(q))
        np.testing.assert_allclose(t.sum(1), p, atol=atol, rtol=0)
        np.testing.assert_allclose(t.sum(0), q, atol=atol, rtol=0)
        assert t.min() >= -atol


def _assert_closed_forms(z, c, xs, cs, couplings, p, lambdas, alpha):
    """``z = diag(1/p) sum lam T X`` and ``C = diag(1/p) sum lam T C_m T^T diag(1/p)``."""
    if alpha > 0:
        z_expected = sum(lam * t @ x for lam, t, x in zip(lambdas, couplings, xs)) / p[:, None]
        np.testing.assert_allclose(z, z_expected, rtol=1e-9, atol=1e-10)
    if alpha < 1:
        c_expected = sum(lam * t @ cm @ t.T for lam, t, cm in zip(lambdas, couplings, cs))
        c_expected = c_expected / np.outer(p, p)
        np.testing.assert_allclose(c, c_expected, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(c, c.T, atol=1e-12)


def _pot_fgw_value(xs, cs, alpha, ref, n=N, same_start=False):
    """POT's exact barycenter objective, from its own random start or, with ``same_start``,
    from modalign's default start (a copy of the first input: ``init_X``, ``init_C``)."""
    start = {"init_X": xs[0].copy(), "init_C": cs[0].copy()} if same_start else {}
    x, c, log = pot.gromov.fgw_barycenters(
        N=n, Ys=xs, Cs=cs, alpha=1 - alpha, log=True, random_state=0, **start
    )
    return ref.barycenter_objective(x, c, xs, cs, log["T"], alpha)


# ----------------------------------------------------------------------------- default solver
@pytest.fixture(scope="module")
def inputs(point_clouds):
    """Three random clouds of N points in R^D."""
    return point_clouds(0, [N] * 3, D)


@pytest.fixture(scope="module")
def structures(inputs, ref):
    """The default structures, densely: squared distances over their maximum."""
    return [ref.normalized_sqdist(x) for x in inputs]


@pytest.fixture(scope="module")
def default_bary(inputs):
    return fgw_barycenter(_tensors(inputs), alpha=0.5)


def test_default_returns_factored_structure(default_bary):
    assert isinstance(default_bary.structure, LowRank)
    assert default_bary.features.shape == (N, D)
    assert default_bary.structure_dense.shape == (N, N)
    assert default_bary.features.dtype == torch.float64


def test_default_couplings_are_exact(default_bary, ref):
    _, _, ts = _as_lists(default_bary, ref)
    _assert_exact_couplings(ts, np.full(N, 1 / N), [np.full(N, 1 / N)] * 3, atol=1e-8)


def test_default_objective_equals_independent_evaluation(default_bary, inputs, structures, ref):
    xs = inputs
    z, c, ts = _as_lists(default_bary, ref)
    expected = ref.barycenter_objective(z, c, xs, structures, ts, 0.5)
    assert default_bary.objective[-1] == pytest.approx(expected, rel=1e-9)
    # the public evaluator agrees too
    value = barycenter_objective(
        default_bary.features,
        default_bary.structure,
        _tensors(xs),
        [sqeuclidean_lowrank(x) for x in _tensors(xs)],
        default_bary.couplings,
        0.5,
    )
    assert value == pytest.approx(expected, rel=1e-9)


def test_default_closed_form_updates(default_bary, inputs, structures, ref):
    xs = inputs
    z, c, ts = _as_lists(default_bary, ref)
    _assert_closed_forms(z, c, xs, structures, ts, np.full(N, 1 / N), [1 / 3] * 3, 0.5)


def test_default_objective_log_decreases(default_bary):
    history = np.asarray(default_bary.objective[:-1])  # the last entry follows the rounding
    assert len(history) >= 2
    assert history[-1] < history[0]
    assert np.all(np.diff(history) <= 1e-3 * abs(history[0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_not_worse_than_pot(point_clouds, ref, seed):
    xs = point_clouds(seed, [N] * 3, D)
    cs = [ref.normalized_sqdist(x) for x in xs]
    bary = fgw_barycenter(_tensors(xs), alpha=0.5)
    z, c, ts = _as_lists(bary, ref)
    ours = ref.barycenter_objective(z, c, xs, cs, ts, 0.5)
    assert ours <= 1.05 * _pot_fgw_value(xs, cs, 0.5, ref)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_not_worse_than_pot_from_the_same_start(point_clouds, ref, seed):
    """Against POT started where modalign starts, with iterations to converge (the defaults
    stop after 4 for speed, 1-5% above this on these small problems)."""
    xs = point_clouds(seed, [N] * 3, D)
    cs = [ref.normalized_sqdist(x) for x in xs]
    bary = fgw_barycenter(_tensors(xs), alpha=0.5, max_iter=10)
    z, c, ts = _as_lists(bary, ref)
    ours = ref.barycenter_objective(z, c, xs, cs, ts, 0.5)
    assert ours <= _pot_fgw_value(xs, cs, 0.5, ref, same_start=True)


def test_float32_follows_float64():
    """The float32 kernel's floor must not distort the proximal steps: on the benchmark's
    kind of data (uniform in [0, 1]^32) float32 and float64 reach the same objective. Without
    the first step's column shift, the floor flattened whole columns in float32 (5% apart)."""
    rng = np.random.default_rng(0)
    xs = [rng.random((300, 32)) for _ in range(3)]
    value64 = fgw_barycenter(_tensors(xs)).objective[-1]
    value32 = fgw_barycenter(_tensors(xs, torch.float32)).objective[-1]
    assert value32 == pytest.approx(value64, rel=1e-2)


def test_threads_argument():
    xs = _tensors([np.random.default_rng(1).normal(size=(20, 3)) for _ in range(2)])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        bary = fgw_barycenter(xs, threads=1)  # and the default: one thread at this size
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
    assert bary.objective[-1] == pytest.approx(fgw_barycenter(xs).objective[-1], rel=1e-12)
    with pytest.raises(ValueError, match="threads"):
        fgw_barycenter(xs, threads=0)
    with pytest.raises(ValueError, match="max_iter"):
        fgw_barycenter(xs, max_iter=0)


# ----------------------------------------------------------------------------- other paths
@pytest.mark.parametrize("solver", ["proximal", "exact"])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_inputs_of_different_sizes(point_clouds, ref, solver, alpha):
    xs = point_clouds(1, [40, 30, 50], 4, shift=0.5)
    cs = [ref.normalized_sqdist(x) for x in xs]
    if solver == "exact" and alpha == 1.0:
        pytest.skip("covered by test_wasserstein_barycenter_exact_solver")
    bary = fgw_barycenter(_tensors(xs), alpha=alpha, solver=solver)
    z, c, ts = _as_lists(bary, ref)
    assert z.shape == (50, 4)  # "largest" input sets the support size
    sizes = [40, 30, 50]
    atol = 1e-12 if solver == "exact" else 1e-8
    _assert_exact_couplings(ts, np.full(50, 1 / 50), [np.full(n, 1 / n) for n in sizes], atol)
    _assert_closed_forms(z, c, xs, cs, ts, np.full(50, 1 / 50), [1 / 3] * 3, alpha)
    expected = ref.barycenter_objective(z, c if alpha < 1 else None, xs, cs, ts, alpha)
    assert bary.objective[-1] == pytest.approx(expected, rel=1e-9)
    if alpha == 0:  # features are not part of a GW barycenter: they stay at the start
        np.testing.assert_array_equal(z, xs[2])


def test_dense_structures_take_the_generic_path(inputs, structures, ref):
    xs = inputs
    bary = fgw_barycenter(_tensors(xs), _tensors(structures), alpha=0.5)
    assert isinstance(bary.structure, torch.Tensor)
    z, c, ts = _as_lists(bary, ref)
    _assert_exact_couplings(ts, np.full(N, 1 / N), [np.full(N, 1 / N)] * 3, atol=1e-8)
    _assert_closed_forms(z, c, xs, structures, ts, np.full(N, 1 / N), [1 / 3] * 3, 0.5)
    expected = ref.barycenter_objective(z, c, xs, structures, ts, 0.5)
    assert bary.objective[-1] == pytest.approx(expected, rel=1e-9)


def test_exact_solver(inputs, structures, ref):
    xs = inputs
    bary = fgw_barycenter(_tensors(xs), alpha=0.5, solver="exact")
    z, c, ts = _as_lists(bary, ref)
    _assert_exact_couplings(ts, np.full(N, 1 / N), [np.full(N, 1 / N)] * 3, atol=1e-12)
    _assert_closed_forms(z, c, xs, structures, ts, np.full(N, 1 / N), [1 / 3] * 3, 0.5)
    ours = ref.barycenter_objective(z, c, xs, structures, ts, 0.5)
    assert bary.objective[-1] == pytest.approx(ours, rel=1e-9)
    assert np.all(np.diff(bary.objective) <= 1e-12)  # block-coordinate descent, exact steps
    assert ours <= 1.05 * _pot_fgw_value(xs, structures, 0.5, ref)


def test_wasserstein_barycenter(point_clouds, ref):
    xs = point_clouds(2, [50] * 3, 3, shift=1.0)
    bary = wasserstein_barycenter(_tensors(xs), structures=["ignored"])
    assert bary.structure is None and bary.structure_dense is None
    z, _, ts = _as_lists(bary, ref)
    _assert_exact_couplings(ts, np.full(50, 1 / 50), [np.full(50, 1 / 50)] * 3, atol=1e-8)
    _assert_closed_forms(z, None, xs, None, ts, np.full(50, 1 / 50), [1 / 3] * 3, 1.0)
    expected = ref.barycenter_objective(z, None, xs, None, ts, 1.0)
    assert bary.objective[-1] == pytest.approx(expected, rel=1e-9)


def _pot_free_support_value(xs, ref, n):
    w = [np.full(len(x), 1 / len(x)) for x in xs]
    z = pot.lp.free_support_barycenter(
        measures_locations=xs, measures_weights=w, X_init=xs[0][:n].copy(), numItermax=100
    )
    ts = [pot.emd(a=np.full(n, 1 / n), b=wi, M=ref.sqdist(z, x)) for x, wi in zip(xs, w)]
    return ref.barycenter_objective(z, None, xs, None, ts, 1.0)


def test_wasserstein_barycenter_not_worse_than_pot(point_clouds, ref):
    xs = point_clouds(0, [50] * 3, 3, shift=1.0)
    bary = wasserstein_barycenter(_tensors(xs))
    z, _, ts = _as_lists(bary, ref)
    ours = ref.barycenter_objective(z, None, xs, None, ts, 1.0)
    assert ours <= 1.05 * _pot_free_support_value(xs, ref, 50)


def test_wasserstein_barycenter_exact_solver(point_clouds, ref):
    xs = point_clouds(2, [20] * 3, 3, shift=1.0)
    bary = wasserstein_barycenter(_tensors(xs), solver="exact")
    assert all(t is not None for t in bary.couplings), "couplings are missing"
    z, _, ts = _as_lists(bary, ref)
    _assert_exact_couplings(ts, np.full(20, 1 / 20), [np.full(20, 1 / 20)] * 3, atol=1e-12)
    _assert_closed_forms(z, None, xs, None, ts, np.full(20, 1 / 20), [1 / 3] * 3, 1.0)
    assert bary.objective[-1] == pytest.approx(
        ref.barycenter_objective(z, None, xs, None, ts, 1.0), rel=1e-9
    )


@pytest.mark.parametrize("solver", ["proximal", "exact"])
def test_fewer_points_than_the_inputs(inputs, structures, ref, solver):
    xs = inputs
    bary = fgw_barycenter(_tensors(xs), alpha=0.5, n_points=25, solver=solver)
    z, c, ts = _as_lists(bary, ref)
    assert z.shape == (25, D) and c.shape == (25, 25)
    atol = 1e-12 if solver == "exact" else 1e-8
    _assert_exact_couplings(ts, np.full(25, 1 / 25), [np.full(N, 1 / N)] * 3, atol)
    _assert_closed_forms(z, c, xs, structures, ts, np.full(25, 1 / 25), [1 / 3] * 3, 0.5)
    assert bary.objective[-1] == pytest.approx(
        ref.barycenter_objective(z, c, xs, structures, ts, 0.5), rel=1e-9
    )


@pytest.mark.parametrize("solver", ["proximal", "exact"])
def test_non_uniform_lambdas_and_marginals(point_clouds, ref, solver):
    xs = point_clouds(3, [30] * 3, 3)
    cs = [ref.normalized_sqdist(x) for x in xs]
    rng = np.random.default_rng(33)
    qs = [w / w.sum() for w in rng.uniform(0.3, 1.0, size=(3, 30))]
    p = rng.uniform(0.3, 1.0, size=30)
    p = p / p.sum()
    lambdas = [0.6, 0.3, 0.1]
    bary = fgw_barycenter(
        _tensors(xs),
        alpha=0.4,
        lambdas=lambdas,
        weights=_tensors(qs),
        p=torch.tensor(p),
        solver=solver,
    )
    z, c, ts = _as_lists(bary, ref)
    atol = 1e-12 if solver == "exact" else 1e-8
    _assert_exact_couplings(ts, p, qs, atol)
    _assert_closed_forms(z, c, xs, cs, ts, p, lambdas, 0.4)
    assert bary.objective[-1] == pytest.approx(
        ref.barycenter_objective(z, c, xs, cs, ts, 0.4, lambdas), rel=1e-9
    )


def test_dtype_and_device(point_clouds, ref, device, dtype):
    xs = point_clouds(4, [30] * 3, 3)
    bary = fgw_barycenter(_tensors(xs, dtype, device), alpha=0.5)
    for t in (bary.features, bary.structure_dense, *bary.couplings):
        assert t.dtype == dtype and t.device.type == device.type
        assert bool(torch.isfinite(t).all())
    assert all(np.isfinite(bary.objective))
    z, c, ts = _as_lists(bary, ref)
    atol = 1e-5 if dtype == torch.float32 else 1e-8
    _assert_exact_couplings(ts, np.full(30, 1 / 30), [np.full(30, 1 / 30)] * 3, atol)
    expected = ref.barycenter_objective(z, c, xs, [ref.normalized_sqdist(x) for x in xs], ts, 0.5)
    assert bary.objective[-1] == pytest.approx(
        expected, rel=1e-4 if dtype == torch.float32 else 1e-9
    )
