"""OT solvers on degenerate input: a finite, valid plan (non-negative, of the right shape, with
its marginals) or a ValueError whose message starts with the name of a bad argument. No NaN
leaves a solver silently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _degenerate import (
    FLAWS,
    MARGINALS,
    VALID_MARGINALS,
    Recipe,
    is_project_error,
    marginal,
    recipes,
)
from hypothesis import given
from hypothesis import strategies as st

from modalign.ot import (
    LowRank,
    emd,
    fgw_barycenter,
    fused_gromov_wasserstein,
    gaussian_barycenter,
    gaussian_w2,
    graph_structure,
    kernel_structure,
    normalize_structure,
    sinkhorn,
    sq_distances,
    sqeuclidean_lowrank,
    token_alignment_loss,
    token_cost,
    token_ot,
    wasserstein_barycenter,
)

DTYPES = (torch.float64, torch.float32)
sizes = st.integers(1, 5)


def _t(x: np.ndarray | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if x is None else torch.from_numpy(np.asarray(x)).to(dtype)


def _weights(kind: str, n: int, seed: int, dtype: torch.dtype) -> torch.Tensor | None:
    return _t(marginal(kind, n, seed), dtype)


def _expected(w: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=like.dtype) if w is None else w.to(like.dtype)


def _check_plan(
    plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, rows: float, cols: float
) -> None:
    """Finite, non-negative, shape (n, m), L1 marginal errors at most ``rows`` and ``cols``."""
    assert plan.shape == (a.shape[-1], b.shape[-1])
    assert torch.isfinite(plan).all(), "NaN or inf in the plan"
    assert bool((plan >= 0).all()), f"negative plan entries: {float(plan.min())}"
    err_rows = float((plan.sum(-1) - a).abs().sum())
    err_cols = float((plan.sum(-2) - b).abs().sum())
    assert err_rows <= rows, f"row marginal error {err_rows} > {rows}"
    assert err_cols <= cols, f"column marginal error {err_cols} > {cols}"


def _check_refusal(err: BaseException, bad: dict[str, bool], may: tuple[str, ...] = ()) -> None:
    """The solver refused with the project's error type, naming first a bad argument (one
    that must be refused) or one of ``may`` (that may be, e.g. an epsilon too small to
    converge)."""
    if not is_project_error(err):
        raise err
    msg = str(err)
    first = msg.split()[0] if msg else ""
    named = [name for name, is_bad in bad.items() if is_bad] + list(may)
    assert named, f"valid input refused: {msg}"
    assert any(first == n or first.startswith((f"{n}[", f"{n}=")) for n in named), (
        f"message names none of {named}: {msg}"
    )


def _bad_marginal(kind: str) -> bool:
    return kind not in VALID_MARGINALS


# ----------------------------------------------------------------------------- sinkhorn, emd
@given(
    cost=recipes(rows=sizes, cols=sizes),
    a_kind=st.sampled_from(MARGINALS),
    b_kind=st.sampled_from(MARGINALS),
    reg=st.sampled_from([1e-2, 1.0, 1e-4, 100.0, 0.0, -1.0, math.nan]),
    dtype=st.sampled_from(DTYPES),
)
def test_sinkhorn_plan_is_valid_or_refused(cost, a_kind, b_kind, reg, dtype):
    c = _t(cost.build(), dtype)
    a = _weights(a_kind, cost.rows, cost.seed, dtype)
    b = _weights(b_kind, cost.cols, cost.seed + 1, dtype)
    bad = {
        "cost": not cost.finite,
        "reg": not reg > 0,
        "a": _bad_marginal(a_kind),
        "b": _bad_marginal(b_kind),
    }
    try:
        plan, log = sinkhorn(a, b, c, reg, log=True)
    except Exception as err:  # any type: _check_refusal re-raises all but ours
        _check_refusal(err, bad)
        return
    assert not any(bad.values()), f"bad input accepted: {bad}"
    # Columns are matched last, rows to the reported error, both up to the precision of the
    # potentials: of size cost / reg, they carry an absolute error of eps * cost / reg, which
    # exp turns into that relative error of the plan (1e-4 at cost / reg = 8000 in float32).
    eps = torch.finfo(dtype).eps
    ratio = float(c.max() - c.min()) / reg
    tol = 64 * eps * (1 + ratio) + (1e-5 if dtype == torch.float32 else 1e-9)
    assert math.isfinite(log["err"])
    _check_plan(
        plan,
        _expected(a, cost.rows, plan),
        _expected(b, cost.cols, plan),
        rows=log["err"] + tol,
        cols=tol,
    )


@given(
    cost=recipes(rows=sizes, cols=sizes),
    a_kind=st.sampled_from(MARGINALS),
    b_kind=st.sampled_from(MARGINALS),
    dtype=st.sampled_from(DTYPES),
)
def test_emd_plan_is_valid_or_refused(cost, a_kind, b_kind, dtype):
    c = _t(cost.build(), dtype)
    a = _weights(a_kind, cost.rows, cost.seed, dtype)
    b = _weights(b_kind, cost.cols, cost.seed + 1, dtype)
    bad = {"cost": not cost.finite, "a": _bad_marginal(a_kind), "b": _bad_marginal(b_kind)}
    try:
        plan = emd(a, b, c)
    except Exception as err:
        _check_refusal(err, bad)
        return
    assert not any(bad.values()), f"bad input accepted: {bad}"
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    _check_plan(
        plan, _expected(a, cost.rows, plan), _expected(b, cost.cols, plan), rows=tol, cols=tol
    )


# ----------------------------------------------------------------------------- (F)GW
STRUCTURES = ("sqdist", "lowrank", "raw", "symmetrised")


def _structure(kind: str, points: Recipe, dtype: torch.dtype):
    """A structure over ``points.rows`` points, whether it is finite and whether it is
    symmetric. ``raw``: a random square matrix (asymmetric unless it has one row)."""
    x = points.build()
    if kind in ("raw", "symmetrised"):
        c = Recipe(points.rows, points.rows, points.flaw, points.seed).build()
        c = c + c.T if kind == "symmetrised" else c
        return _t(c, dtype), points.finite, bool(np.allclose(c, c.T, equal_nan=True))
    if not points.finite:
        return None, False, True  # the builders refuse non-finite points themselves
    if kind == "lowrank":
        return sqeuclidean_lowrank(_t(x, dtype)), True, True
    return sq_distances(_t(x, dtype)), True, True


def _has_zero(w: torch.Tensor | None) -> bool:
    return w is not None and bool((w == 0).any())


@given(
    xs=recipes(rows=sizes, cols=st.just(2)),
    ys=recipes(rows=sizes, cols=st.just(2)),
    kinds=st.tuples(st.sampled_from(STRUCTURES), st.sampled_from(STRUCTURES)),
    m_flaw=st.sampled_from(FLAWS),
    alpha=st.sampled_from([0.0, 0.5, 1.0, 1.5]),
    solver=st.sampled_from(["exact", "proximal", "entropic"]),
    epsilon=st.sampled_from([0.1, 1e-3, 10.0, 0.0]),
    p_kind=st.sampled_from(MARGINALS),
    q_kind=st.sampled_from(MARGINALS),
    dtype=st.sampled_from(DTYPES),
)
def test_fgw_plan_is_valid_or_refused(
    xs, ys, kinds, m_flaw, alpha, solver, epsilon, p_kind, q_kind, dtype
):
    if not (xs.finite and ys.finite):
        # The structure builders refuse non-finite points themselves, naming them.
        for pts in (xs, ys):
            if not pts.finite:
                with pytest.raises(ValueError, match=r"^x contains 1 NaN or infinite"):
                    sq_distances(_t(pts.build(), dtype))
    m_recipe = Recipe(xs.rows, ys.rows, m_flaw, xs.seed)
    m = _t(m_recipe.build(), dtype)
    c1, finite1, sym1 = _structure(kinds[0], xs, dtype)
    c2, finite2, sym2 = _structure(kinds[1], ys, dtype)
    if c1 is None or c2 is None:
        return
    p = _weights(p_kind, xs.rows, xs.seed, dtype)
    q = _weights(q_kind, ys.rows, ys.seed, dtype)
    # The proximal solver refuses zero masses (its KL steps cannot start from empty rows).
    zero_mass = solver == "proximal"
    # Every given matrix is checked for NaN / inf, used or not; symmetry only when used.
    bad = {
        "alpha": not 0 <= alpha <= 1,
        "M": not m_recipe.finite,
        "C1": not finite1 or (alpha < 1 and not sym1),
        "C2": not finite2 or (alpha < 1 and not sym2),
        "p": _bad_marginal(p_kind) or (zero_mass and _has_zero(p)),
        "q": _bad_marginal(q_kind) or (zero_mass and _has_zero(q)),
        "the": solver != "exact" and not epsilon > 0,  # "the proximal solver needs ..."
    }
    dense = [c.dense() if isinstance(c, LowRank) else c for c in (c1, c2)]
    if solver != "exact" and epsilon > 0 and all(torch.isfinite(c).all() for c in [m, *dense]):
        # An epsilon far below the costs' scale may stop the Sinkhorn projections short of
        # the marginals: refused as such (naming epsilon), never returned as a coupling.
        scale = max(
            float(m.abs().max()) if alpha > 0 else 0.0,
            max(float(c.abs().max()) for c in dense) ** 2 if alpha < 1 else 0.0,
        )
        may = ("epsilon",) if epsilon < 1e-2 * scale else ()
    else:
        may = ()
    try:
        plan = fused_gromov_wasserstein(
            m, c1, c2, p, q, alpha, solver=solver, epsilon=epsilon, max_iter=50
        )
    except Exception as err:
        _check_refusal(err, bad, may)
        return
    assert not any(bad.values()), f"bad input accepted: {bad}"
    tol = 1e-4 if dtype == torch.float32 else 1e-7
    # Exact: network-simplex vertices mixed by line search. The others: Sinkhorn projections,
    # whose plan is refused when more than 1e-2 (L1) from the marginals; the proximal solver
    # sharpens its kernel every step, and its last projections may end 1e-4 to 1e-3 away.
    loose = tol if solver == "exact" else 1e-2
    _check_plan(
        plan, _expected(p, xs.rows, plan), _expected(q, ys.rows, plan), rows=loose, cols=loose
    )


# ----------------------------------------------------------------------------- barycenters
@given(
    inputs=st.lists(recipes(rows=sizes, cols=st.just(2)), min_size=1, max_size=3),
    alpha=st.sampled_from([0.5, 1.0, 0.0]),
    solver=st.sampled_from(["proximal", "exact"]),
    n_points=st.sampled_from([None, 1, 3]),
    weight_kind=st.sampled_from(MARGINALS),
    p_kind=st.sampled_from(["none", "random", "unnormalised", "sparse"]),
    dtype=st.sampled_from(DTYPES),
)
def test_fgw_barycenter_is_valid_or_refused(
    inputs, alpha, solver, n_points, weight_kind, p_kind, dtype
):
    feats = [_t(r.build(), dtype) for r in inputs]
    weights = [_weights(weight_kind, r.rows, r.seed, dtype) for r in inputs]
    n_bar = n_points if n_points is not None else max(r.rows for r in inputs)
    p = _weights(p_kind, n_bar, 7, dtype)
    bad = {f"features[{i}]": not r.finite for i, r in enumerate(inputs)}
    # Zero weights are refused too: the closed forms divide by p, the solvers take log q.
    bad.update(
        {f"weights[{i}]": _bad_marginal(weight_kind) or _has_zero(w) for i, w in enumerate(weights)}
    )
    bad["p"] = _bad_marginal(p_kind) or _has_zero(p)
    try:
        bary = fgw_barycenter(
            feats, alpha=alpha, solver=solver, n_points=n_points, weights=weights, p=p
        )
    except Exception as err:
        _check_refusal(err, bad)
        return
    assert not any(bad.values()), f"bad input accepted: {bad}"
    assert bary.features.shape == (n_bar, 2)
    assert torch.isfinite(bary.features).all(), "NaN in the barycenter's features"
    if alpha < 1:
        assert torch.isfinite(bary.structure_dense).all(), "NaN in the barycenter's structure"
    assert all(math.isfinite(v) for v in bary.objective)
    tol = 1e-4 if dtype == torch.float32 else 1e-7
    for t, r, w in zip(bary.couplings, inputs, weights, strict=True):
        _check_plan(t, _expected(p, n_bar, t), _expected(w, r.rows, t), rows=tol, cols=tol)


@given(inputs=st.lists(recipes(rows=sizes, cols=st.just(3)), min_size=1, max_size=3))
def test_wasserstein_barycenter_is_finite_or_refused(inputs):
    feats = [_t(r.build(), torch.float64) for r in inputs]
    try:
        bary = wasserstein_barycenter(feats)
    except Exception as err:
        _check_refusal(err, {f"features[{i}]": not r.finite for i, r in enumerate(inputs)})
        return
    assert all(r.finite for r in inputs)
    assert torch.isfinite(bary.features).all()
    assert bary.structure is None


# ----------------------------------------------------------------------------- token OT
@st.composite
def token_batches(draw: st.DrawFn):
    """Two token batches (B, T, d) and (B, S, d) with random masks (some rows maybe empty),
    each with one flaw: a NaN on a real or on a padded token, a zero token, huge or tiny.
    Each comes as ``(tokens, mask, sample)``, ``sample`` the index of the sample with a NaN on
    a real token (None without one)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    batch, t, s, d = (draw(st.integers(1, 3)), draw(sizes), draw(sizes), draw(st.integers(1, 3)))
    out = []
    for length in (t, s):
        x = rng.normal(size=(batch, length, d))
        mask = rng.random((batch, length)) < draw(st.sampled_from([1.0, 0.6, 0.0]))
        flaw = draw(st.sampled_from(["none", "zero", "huge", "tiny", "nan_padded", "nan_real"]))
        sample = None
        if flaw == "zero":
            x[0, 0] = 0.0
        elif flaw == "huge":
            x *= 1e6
        elif flaw == "tiny":
            x *= 1e-6
        elif flaw == "nan_padded":
            x[~mask] = np.nan  # never read: padding is replaced by zeros first
        elif flaw == "nan_real" and mask.any():
            sample, token = (int(i[0]) for i in mask.nonzero())
            x[sample, token, 0] = np.nan
        out.append((torch.from_numpy(x), torch.from_numpy(mask), sample))
    return out


@given(
    batches=token_batches(),
    solver=st.sampled_from(["ipot", "sinkhorn", "exact"]),
    beta=st.sampled_from([0.5, 1e-3, 10.0]),
    empty=st.sampled_from(["raise", "zero"]),
    dtype=st.sampled_from(DTYPES),
)
def test_token_ot_is_valid_or_refused(batches, solver, beta, empty, dtype):
    (x, x_mask, x_nan), (y, y_mask, y_nan) = batches
    cost = token_cost(x.to(dtype), y.to(dtype), x_mask, y_mask)
    void = ~x_mask.any(-1) | ~y_mask.any(-1)
    bad = {
        # A NaN on a real token is refused, unless its sample has no real token on the other
        # side and empty="zero" leaves the whole sample out.
        "cost": any(k is not None and not bool(void[k]) for k in (x_nan, y_nan)),
        "sample": empty == "raise" and bool(void.any()),  # "sample 0 has no real token ..."
    }
    try:
        plan, value = token_ot(cost, x_mask, y_mask, solver=solver, beta=beta, empty=empty)
    except Exception as err:
        _check_refusal(err, bad)
        return
    assert not any(bad.values()), f"bad input accepted: {bad}"
    assert torch.isfinite(plan).all() and torch.isfinite(value).all(), "NaN left token_ot"
    assert bool((plan >= 0).all())
    tol = 1e-4 if dtype == torch.float32 else 1e-8
    for k in range(plan.shape[0]):
        real = torch.outer(x_mask[k], y_mask[k])
        assert torch.equal(plan[k][~real], torch.zeros_like(plan[k][~real]))
        if bool(void[k]):
            assert float(plan[k].abs().sum()) == 0 and float(value[k]) == 0
            continue
        a = x_mask[k].to(plan.dtype) / x_mask[k].sum()
        b = y_mask[k].to(plan.dtype) / y_mask[k].sum()
        # A fixed number of iterations (50) by design: one side is exact (IPOT: columns,
        # Sinkhorn in POT's order: rows); the other converges, within 50 iterations only when
        # beta is not far below the cost range [0, 2] (at beta = 1e-3 it was 0.33 off).
        loose = 0.1 if beta >= 0.5 else 2.0
        rows = tol if solver != "ipot" else loose
        cols = tol if solver != "sinkhorn" else loose
        _check_plan(plan[k], a, b, rows=rows, cols=cols)
    loss = token_alignment_loss(
        x.to(dtype), y.to(dtype), x_mask, y_mask, solver=solver, beta=beta, empty=empty
    )
    assert torch.isfinite(loss) and (float(loss) == 0 or not bool(void.all()))


# ----------------------------------------------------------------------------- Gaussians
SPREADS = ("random", "zeros", "both_zero", "huge", "tiny", "nan", "inf", "negative")


@given(
    mean=recipes(rows=st.integers(1, 3), cols=st.integers(1, 3)),
    spread=st.sampled_from(SPREADS),
    full=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_gaussians_are_finite_or_refused(mean, spread, full, seed):
    """W2 between batches of Gaussians and their barycenter: finite (and W2 non-negative), or
    refused naming the input; never a NaN, never a LinAlgError."""
    rng = np.random.default_rng(seed)
    mu1 = torch.from_numpy(mean.build())
    mu2 = torch.from_numpy(rng.normal(size=mu1.shape))
    n, d = mu1.shape
    if full:
        a = rng.normal(size=(n, d, d))
        cov1 = a @ a.transpose(0, 2, 1) + 1e-3 * np.eye(d)
        cov2 = np.broadcast_to(np.eye(d), (n, d, d)).copy()
    else:
        cov1 = np.abs(rng.normal(size=(n, d)))
        cov2 = np.ones((n, d))
    if spread == "nan":
        cov1.flat[0] = np.nan
    elif spread == "inf":
        cov1.flat[0] = np.inf
    elif spread == "negative":
        cov1 = -cov1 - 1.0  # negative standard deviations; a negative definite covariance
    elif spread == "huge":
        cov1 = cov1 * 1e6
    elif spread == "tiny":
        cov1 = cov1 * 1e-6
    elif spread in ("zeros", "both_zero"):
        cov1 = np.zeros_like(cov1)
        if spread == "both_zero":
            cov2 = np.zeros_like(cov2)  # two Diracs: W2 is the distance of the means
    cov1, cov2 = torch.from_numpy(cov1), torch.from_numpy(cov2)
    bad = {
        "mu1": not mean.finite,
        "cov1": spread in ("nan", "inf"),
        "standard": spread == "negative" and not full,  # "standard deviations must be ..."
    }
    try:
        w2 = gaussian_w2(mu1, cov1, mu2, cov2, diagonal=not full)
    except Exception as err:
        _check_refusal(err, bad)
        return
    # gaussian_w2 reads a covariance through its PSD part (negative eigenvalues clamped to 0),
    # so a negative definite one gives a finite, if meaningless, value.
    assert not any(bad.values()), f"bad input accepted: {bad}"
    assert w2.shape == (n,)
    assert torch.isfinite(w2).all(), "NaN or inf left gaussian_w2"
    assert bool((w2 >= 0).all())

    means = torch.stack([mu1, mu2], dim=-2)  # (n, 2, d)
    covs = torch.stack([cov1, cov2], dim=-3 if full else -2)
    # The full fixed-point iteration needs PSD covariances and a positive definite sum.
    bad = {"covs": full and spread in ("negative", "both_zero")}
    try:
        mean_b, cov_b = gaussian_barycenter(means, covs, diagonal=not full, max_iter=20)
    except Exception as err:
        _check_refusal(err, bad)
        return
    assert not any(bad.values()), f"bad input accepted: {bad}"
    assert torch.isfinite(mean_b).all() and torch.isfinite(cov_b).all()
    assert torch.allclose(mean_b, 0.5 * (mu1 + mu2))


# ----------------------------------------------------------------------------- structures
@given(points=recipes(rows=st.integers(1, 6), cols=st.integers(1, 3)))
def test_structures_are_finite_symmetric_or_refused(points):
    x = torch.from_numpy(points.build())
    bad = {"x": not points.finite}
    results = {}
    for name, build in (
        ("sq_distances", lambda: sq_distances(x)),
        ("lowrank", lambda: sqeuclidean_lowrank(x).dense()),
        ("kernel", lambda: kernel_structure(x)),
        ("graph", lambda: graph_structure(x, 2)),
    ):
        try:
            results[name] = build()
        except Exception as err:
            if name == "graph" and points.rows < 2 and points.finite:
                assert "need at least 2 points" in str(err)
                continue
            _check_refusal(err, bad)
    if not points.finite:
        assert not results, f"built from non-finite points: {sorted(results)}"
        return
    for name, c in results.items():
        assert c.shape == (points.rows, points.rows), name
        assert torch.isfinite(c).all(), f"{name}: NaN or inf"
        assert torch.allclose(c, c.T, atol=1e-9 * (1 + float(c.abs().max()))), name
        assert bool((c >= -1e-9 * (1 + float(c.abs().max()))).all()), name
        unit = normalize_structure(c)
        assert torch.isfinite(unit).all() and float(unit.abs().max()) <= 1 + 1e-12
