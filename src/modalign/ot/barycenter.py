"""Fused Gromov-Wasserstein and Wasserstein barycenters on a fixed support.

Objective, for inputs ``(X_m, C_m, q_m)`` with weights ``lambda_m`` (summing to one)::

    min_{Z, C, T_m}  sum_m lambda_m * FGW_alpha(T_m; M(Z, X_m), C, C_m)

with ``Z`` (n, d) the barycenter's features, ``C`` (n, n) its structure, ``M`` the squared
Euclidean cost and ``T_m`` couplings of ``p`` and ``q_m``. Block-coordinate descent: the
couplings for fixed ``(Z, C)`` (all inputs in one batched solve when their sizes allow), then
the closed forms ``Z = diag(1/p) sum lambda_m T_m X_m`` and
``C = diag(1/p) (sum lambda_m T_m C_m T_m^T) diag(1/p)``.

What makes it fast (see docs/benchmarks.md): the structures stay in exact low-rank form
(squared distances have rank d + 2, and so does every ``T C_m T^T``); the barycenter starts
from the data (a copy or subsample of one input, whose coupling is then the identity) instead
of random points; couplings are warm-started across outer iterations; and the default
coupling solver is proximal mirror descent with a few log-domain Sinkhorn projections per
step, followed by an exact projection onto the coupling constraints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from modalign.ot._checks import ArrayLike, as_tensor, check_finite, marginal
from modalign.ot.entropic import round_to_marginals
from modalign.ot.gromov import (
    LogPlan,
    _conditional_gradient,
    fgw_objective,
    linearized_cost,
    mirror_descent,
    mirror_step,
)
from modalign.ot.structure import (
    LowRank,
    Structure,
    dense,
    is_symmetric,
    sqeuclidean_lowrank,
    squared_matvec,
)

# Sweeps between two marginal checks: each check costs one more product over the plan.
SINKHORN_CHECK_EVERY = 5


@dataclass
class Barycenter:
    """Result of :func:`fgw_barycenter`.

    ``features`` (n, d); ``structure`` (n, n) dense or :class:`LowRank` (``None`` for a
    Wasserstein barycenter); ``couplings[m]`` (n, n_m); ``objective`` the barycenter objective
    after each outer iteration (its last entry is the final value).
    """

    features: torch.Tensor
    structure: Structure | None
    couplings: list[torch.Tensor]
    objective: list[float] = field(default_factory=list)

    @property
    def structure_dense(self) -> torch.Tensor | None:
        return None if self.structure is None else dense(self.structure)


def _feature_cost(z: torch.Tensor, x: torch.Tensor) -> LowRank:
    """Squared Euclidean cost between rows of ``z`` (n, d) and ``x`` (..., m, d), factored."""
    zz = (z * z).sum(-1, keepdim=True)
    xx = (x * x).sum(-1, keepdim=True)
    left = torch.cat([zz, torch.ones_like(zz), -2 * z], -1)
    right = torch.cat([torch.ones_like(xx), xx, x], -1)
    return LowRank(left, right)


def _spread_subset(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``k`` rows of ``x`` spread over the data (farthest-point sampling)."""
    first = int(torch.randint(x.shape[0], (1,), generator=generator))
    chosen = [first]
    dist = ((x - x[first]) ** 2).sum(-1)
    for _ in range(k - 1):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, ((x - x[nxt]) ** 2).sum(-1))
    return torch.tensor(chosen, device=x.device)


def _update_structure(structures, couplings, lambdas, p) -> Structure:
    """``diag(1/p) (sum_m lambda_m T_m C_m T_m^T) diag(1/p)``, factored if the inputs are."""
    inv_p = (1 / p)[:, None]
    if all(isinstance(c, LowRank) for c in structures):
        lefts = [lam * inv_p * (t @ c.left) for lam, t, c in zip(lambdas, couplings, structures)]
        rights = [inv_p * (t @ c.right) for t, c in zip(couplings, structures)]
        return LowRank(torch.cat(lefts, -1), torch.cat(rights, -1))
    total = sum(
        lam * (t @ dense(c) @ t.transpose(-1, -2))
        for lam, t, c in zip(lambdas, couplings, structures)
    )
    return inv_p * total * inv_p.transpose(0, 1)


def _stack(items: Sequence[Structure]) -> Structure:
    if all(isinstance(c, LowRank) for c in items):
        return LowRank(torch.stack([c.left for c in items]), torch.stack([c.right for c in items]))
    return torch.stack([dense(c) for c in items])


def fgw_barycenter(
    features: Sequence[ArrayLike],
    structures: Sequence[ArrayLike | LowRank] | None = None,
    *,
    n_points: int | None = None,
    alpha: float = 0.5,
    lambdas: Sequence[float] | None = None,
    weights: Sequence[ArrayLike | None] | None = None,
    p: ArrayLike | None = None,
    solver: str = "proximal",
    epsilon: float = 0.02,
    max_iter: int = 10,
    inner_iter: int = 1,
    sinkhorn_iter: int = 10,
    sinkhorn_tol: float = 1e-3,
    tol: float = 1e-2,
    init: int | str = "largest",
    random_state: int | None = 0,
) -> Barycenter:
    """Fused Gromov-Wasserstein barycenter of M structured point clouds (module docstring).

    Args:
        features: M tensors (n_m, d) on one device and dtype.
        structures: M symmetric (n_m, n_m) structures, dense or :class:`LowRank`; default:
            squared Euclidean distances of the features divided by their maximum (factored).
        n_points: support size n of the barycenter (default: the reference input's size).
        alpha: weight of the feature term (``1`` gives a Wasserstein barycenter).
        lambdas: input weights, summing to one (default uniform).
        weights: per-input marginals ``q_m`` (default uniform); ``p``: barycenter marginal.
        solver: ``"proximal"`` (fast default, see module docstring) or ``"exact"``
            (conditional gradient with network-simplex steps for every coupling).
        epsilon: proximal strength relative to the spread of the first linearised cost.
        max_iter: outer block-coordinate iterations; ``inner_iter``: mirror-descent steps per
            coupling update (warm-started, so a few suffice).
        sinkhorn_iter, sinkhorn_tol: at most that many Sinkhorn sweeps per projection, fewer
            once the L1 marginal error is below ``sinkhorn_tol``; the couplings are then projected
            exactly onto their marginals (:func:`round_to_marginals`), so a loose inner
            solve costs accuracy of the step, never feasibility.
        tol: stop when the objective's relative decrease falls below it.
        init: the input the barycenter starts from: ``"largest"`` or an index. Its features
            (or a farthest-point subsample of them) and structure are copied.
        random_state: seed of the subsample's first point.

    Returns:
        A :class:`Barycenter` with features, structure, couplings and the objective log.
    """
    if len(features) < 1:
        raise ValueError("give at least one input")
    if solver not in ("proximal", "exact"):
        raise ValueError(f"unknown solver {solver!r}: use 'proximal' or 'exact'")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    xs = [as_tensor(x, f"features[{i}]") for i, x in enumerate(features)]
    ref = xs[0]
    xs = [x.to(device=ref.device, dtype=ref.dtype) for x in xs]
    for i, x in enumerate(xs):
        if x.dim() != 2:
            raise ValueError(f"features[{i}] must be (n, d), got shape {tuple(x.shape)}")
        if x.shape[1] != ref.shape[1]:
            raise ValueError(
                f"features[{i}] has dimension {x.shape[1]}, features[0] has {ref.shape[1]}: "
                "a barycenter needs features in one space"
            )
        check_finite(x, f"features[{i}]")
    n_inputs = len(xs)
    sizes = [x.shape[0] for x in xs]
    use_structure = alpha < 1
    cs: list[Structure] | None = None
    if use_structure:
        if structures is None:
            cs = [sqeuclidean_lowrank(x) for x in xs]
        else:
            if len(structures) != n_inputs:
                raise ValueError(f"got {len(structures)} structures for {n_inputs} inputs")
            cs = []
            for i, c in enumerate(structures):
                if not isinstance(c, LowRank):
                    c = as_tensor(c, f"structures[{i}]", dtype=ref.dtype, device=ref.device)
                    check_finite(c, f"structures[{i}]")
                if tuple(c.shape[-2:]) != (sizes[i], sizes[i]):
                    raise ValueError(
                        f"structures[{i}] has shape {tuple(c.shape)}, expected {sizes[i]}^2"
                    )
                if not is_symmetric(c):
                    raise ValueError(f"structures[{i}] is not symmetric: use distances or kernels")
                cs.append(c)
    lam = [1.0 / n_inputs] * n_inputs if lambdas is None else [float(v) for v in lambdas]
    if len(lam) != n_inputs or min(lam) < 0 or abs(sum(lam) - 1) > 1e-6:
        raise ValueError(f"lambdas must be {n_inputs} non-negative weights summing to one")
    qs = [
        marginal(None if weights is None else weights[i], sizes[i], f"weights[{i}]", ref)
        for i in range(n_inputs)
    ]

    if init == "largest":
        k = int(max(range(n_inputs), key=lambda i: sizes[i]))
    elif isinstance(init, int) and not isinstance(init, bool):
        k = init
    else:
        raise ValueError(f"init must be 'largest' or an input index, got {init!r}")
    if not 0 <= k < n_inputs:
        raise ValueError(f"init={init!r} does not name an input")
    n = sizes[k] if n_points is None else int(n_points)
    if n < 1:
        raise ValueError(f"n_points must be positive, got {n}")
    p = marginal(p, n, "p", ref)
    gen = torch.Generator().manual_seed(0 if random_state is None else random_state)
    copy = n == sizes[k] and bool(torch.allclose(p, qs[k]))
    idx = torch.arange(n, device=ref.device) if copy else _spread_subset(xs[k], n, gen)
    z = xs[k][idx].clone()
    c_bar: Structure | None = None
    if use_structure:
        ck = cs[k]
        c_bar = ck[idx] if not isinstance(ck, LowRank) else LowRank(ck.left[idx], ck.right[idx])
        if not isinstance(ck, LowRank):
            c_bar = c_bar[:, idx]
    couplings = [p[:, None] * q[None, :] for q in qs]
    if copy:
        couplings[k] = torch.diag(p)

    fast = (
        solver == "proximal"
        and len(set(sizes)) == 1
        and (
            not use_structure
            or (all(isinstance(c, LowRank) for c in cs) and len({c.rank for c in cs}) == 1)
        )
    )
    if fast:
        return _proximal_low_rank(
            xs,
            cs if use_structure else None,
            qs,
            lam,
            p,
            z,
            c_bar,
            couplings,
            alpha,
            epsilon=epsilon,
            max_iter=max_iter,
            sinkhorn_iter=sinkhorn_iter,
            sinkhorn_tol=sinkhorn_tol,
            tol=tol,
        )

    # Inputs of one size are solved together as a batch; others one at a time.
    groups: dict[tuple, list[int]] = {}
    for i in range(n_inputs):
        key = (sizes[i], type(cs[i]).__name__, getattr(cs[i], "rank", 0)) if cs else (sizes[i],)
        groups.setdefault(key, []).append(i)
    group_list = list(groups.values())
    x_g = [torch.stack([xs[i] for i in idx]) for idx in group_list]
    c_g = [_stack([cs[i] for i in idx]) if use_structure else None for idx in group_list]
    q_g = [torch.stack([qs[i] for i in idx]) for idx in group_list]
    lam_g = [
        torch.tensor([lam[i] for i in idx], dtype=ref.dtype, device=ref.device)
        for idx in group_list
    ]
    plans = [torch.stack([couplings[i] for i in idx]) for idx in group_list]
    log_plans: list[LogPlan | None] = [None] * len(group_list)

    def update(plans):
        """Closed-form features and structure for fixed couplings."""
        z_new = z
        if alpha > 0:
            z_new = (
                sum((lg[:, None, None] * (t @ x)).sum(0) for lg, t, x in zip(lam_g, plans, x_g))
                / p[:, None]
            )
        c_new = None
        if use_structure:
            c_new = _update_structure(
                [c for cg in c_g for c in _unstack(cg)],
                [t for tg in plans for t in tg.unbind(0)],
                [float(v) for lg in lam_g for v in lg],
                p,
            )
        return z_new, c_new

    order = [i for idx in group_list for i in idx]

    def objective(z, c_bar, plans):
        return barycenter_objective(
            z,
            c_bar,
            [xs[i] for i in order],
            [cs[i] for i in order] if cs else None,
            [t for tg in plans for t in tg.unbind(0)],
            alpha,
            [lam[i] for i in order],
        )

    eps_abs: float | None = None
    history: list[float] = []
    with torch.no_grad():
        for _ in range(max_iter):
            if solver == "exact":
                plans = [
                    torch.stack(
                        [
                            _conditional_gradient(
                                dense(_feature_cost(z, x)) if alpha > 0 else None,
                                c_bar,
                                c,
                                p,
                                q,
                                alpha,
                                t,
                                max_iter=100,
                                tol_rel=1e-5,
                                tol_abs=0.0,
                            )[0]
                            for t, x, c, q in zip(
                                tg, xg, _unstack(cg) if cg is not None else [None] * len(tg), qg
                            )
                        ]
                    )
                    for tg, xg, cg, qg in zip(plans, x_g, c_g, q_g)
                ]
            else:
                new_plans = []
                for gi, (tg, xg, cg, qg) in enumerate(zip(plans, x_g, c_g, q_g)):
                    cost = _feature_cost(z, xg) if alpha > 0 else None
                    if eps_abs is None:
                        spread = dense(linearized_cost(tg, cost, c_bar, cg, alpha))
                        eps_abs = epsilon * float((spread.max() - spread.min()).clamp_min(1e-12))
                    tg, log_plans[gi], _ = mirror_descent(
                        cost,
                        c_bar,
                        cg,
                        p,
                        qg,
                        alpha,
                        tg,
                        eps_abs,
                        max_iter=inner_iter,
                        tol=0.0,
                        sinkhorn_iter=sinkhorn_iter,
                        sinkhorn_tol=sinkhorn_tol,
                        sinkhorn_inner=SINKHORN_CHECK_EVERY,
                        log_plan=log_plans[gi],
                    )
                    new_plans.append(tg)
                plans = new_plans
            z, c_bar = update(plans)
            history.append(objective(z, c_bar, plans))
            if len(history) > 1 and history[-2] - history[-1] <= tol * abs(history[-2]):
                break
        if solver != "exact":
            # Sinkhorn leaves a small marginal error; project the couplings exactly onto
            # their constraints and recompute the barycenter from them.
            plans = [round_to_marginals(t, p.expand_as(t[..., 0]), qg) for t, qg in zip(plans, q_g)]
            z, c_bar = update(plans)
            history[-1] = objective(z, c_bar, plans)
    out = [None] * n_inputs
    for i, t in zip(order, (t for tg in plans for t in tg.unbind(0))):
        out[i] = t
    return Barycenter(z, c_bar, out, history)


def _unstack(c: Structure | None) -> list:
    if c is None:
        return [None]
    if isinstance(c, LowRank):
        return [LowRank(a, b) for a, b in zip(c.left.unbind(0), c.right.unbind(0))]
    return list(c.unbind(0))


def _proximal_low_rank(
    xs,
    cs,
    qs,
    lam,
    p,
    z,
    c_bar,
    couplings,
    alpha,
    *,
    epsilon,
    max_iter,
    sinkhorn_iter,
    sinkhorn_tol,
    tol,
) -> Barycenter:
    """The default solver when every input has the same size and a factored structure.

    All M couplings form one (M, n, n_m) batch, and one product ``P = T [X | A | B]`` per
    iteration (with ``C_m = A B^T``) yields the feature update, the structure update, the
    objective and the next gradient, so an iteration costs one O(M n n_m (d + 2r)) product,
    one fused multiply-add and a few Sinkhorn sweeps.
    """
    x = torch.stack(xs)  # (M, m, d)
    lam_t = torch.tensor(lam, dtype=x.dtype, device=x.device)
    q = torch.stack(qs)
    d = x.shape[-1]
    if cs is not None:
        a = torch.stack([c.left for c in cs])
        b = torch.stack([c.right for c in cs])
        r = a.shape[-1]
        w = torch.cat([x, a, b], -1)
        c_in = LowRank(a, b)
    else:
        w, r, c_in = x, 0, None
    # The columns of [X | A | B] are far from independent (squared-distance factors repeat
    # X), so products with the plans go through an orthonormal basis of their span.
    basis, coeff = _column_basis(w)
    plan = torch.stack(couplings)
    log_plan = _initial_log_plan(couplings, p, q)
    log_p, log_q = p.log(), q.log()
    inv_p = (1 / p)[:, None]
    prod_b = plan @ b if cs is not None else None
    input_quad = (squared_matvec(c_in, q) * q).sum(-1) if cs is not None else None

    def gradient():
        # alpha * M(z, X_m) + 2 (1-alpha)(- 2 C_bar T C_m^T), dropping row/column constants.
        # The right factors [X_m | A_m] are the first d + r columns of W = basis @ coeff.
        lefts = [(-2 * alpha) * z.expand(len(xs), -1, -1)]
        if cs is not None:
            core = c_bar.right.transpose(-1, -2) @ prod_b
            lefts.append(-4 * (1 - alpha) * (c_bar.left @ core))
        return LowRank(torch.cat(lefts, -1) @ coeff[..., : d + r].transpose(-1, -2), basis)

    def update_and_objective(plan):
        prod = (plan @ basis) @ coeff
        px, pa, pb = prod[..., :d], prod[..., d : d + r], prod[..., d + r :]
        z_new = (lam_t[:, None, None] * px).sum(0) * inv_p
        c_new = None
        cols = q  # exact: the plans were projected onto their marginals
        value = 0.0
        if alpha > 0:
            feat = (p * (z_new * z_new).sum(-1)).sum(-1) + (cols * (x * x).sum(-1)).sum(-1)
            feat = feat - 2 * (z_new * px).sum((-1, -2))
            value = value + alpha * feat
        if cs is not None:
            c_new = LowRank(
                (lam_t[:, None, None] * pa * inv_p).transpose(0, 1).reshape(len(p), -1),
                (pb * inv_p).transpose(0, 1).reshape(len(p), -1),
            )
            quad = (squared_matvec(c_new, p) * p).sum(-1)  # rows sum to p in every plan
            quad = quad + input_quad
            cross = (
                (c_new.right.transpose(-1, -2) @ pb) * (c_new.left.transpose(-1, -2) @ pa)
            ).sum((-1, -2))
            value = value + (1 - alpha) * (quad - 2 * cross)
        return z_new, c_new, pb, float((lam_t * value).sum())

    history: list[float] = []
    eps_abs = None
    with torch.no_grad():
        for _ in range(max_iter):
            grad = gradient()
            if eps_abs is None:  # relative to the spread of the full linearised cost
                spread = dense(
                    linearized_cost(
                        plan, _feature_cost(z, x) if alpha > 0 else None, c_bar, c_in, alpha
                    )
                )
                eps_abs = epsilon * float((spread.amax((-1, -2)) - spread.amin((-1, -2))).max())
                del spread
            # The previous step's column correction is a good first guess for this one.
            plan, log_plan = mirror_step(
                log_plan,
                grad,
                max(eps_abs, 1e-30),
                log_p,
                log_q,
                log_plan.g.clone(),
                sinkhorn_iter=sinkhorn_iter,
                sinkhorn_tol=sinkhorn_tol,
                sinkhorn_inner=SINKHORN_CHECK_EVERY,
                # A few sweeps leave a marginal error; the exact projection onto the
                # constraints keeps every logged objective that of feasible couplings.
                exact_marginals=True,
            )
            z, c_bar, prod_b, value = update_and_objective(plan)
            history.append(value)
            if len(history) > 1 and history[-2] - history[-1] <= tol * abs(history[-2]):
                break
    return Barycenter(z, c_bar, list(plan.unbind(0)), history)


def _initial_log_plan(couplings, p, q) -> LogPlan:
    """Log of the starting couplings (products ``p q^T``, or ``diag(p)`` for the input the
    barycenter was copied from), written down instead of taking logs of n x m matrices."""
    kernel = torch.zeros(len(couplings), len(p), q.shape[-1], dtype=p.dtype, device=p.device)
    f = p.log().expand(len(couplings), -1).clone()
    g = q.log().clone()
    for i, t in enumerate(couplings):
        if t.shape[0] == t.shape[1] and bool((t.diagonal() == p).all()):
            kernel[i].fill_(float("-inf")).diagonal().zero_()
            g[i].zero_()
    return LogPlan(kernel, f, g)


def _column_basis(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``w = basis @ coeff`` with ``basis`` (..., m, k) orthonormal and k the numerical rank."""
    u, sv, vh = torch.linalg.svd(w, full_matrices=False)
    rtol = 1e-6 if w.dtype == torch.float32 else 1e-12
    k = max(1, int((sv > rtol * sv[..., :1]).sum(-1).max()))
    return u[..., :k].contiguous(), sv[..., :k, None] * vh[..., :k, :]


def barycenter_objective(
    z: torch.Tensor,
    c_bar: Structure | None,
    xs: Sequence[torch.Tensor],
    cs: Sequence[Structure] | None,
    couplings: Sequence[torch.Tensor],
    alpha: float,
    lambdas: Sequence[float] | None = None,
) -> float:
    """``sum_m lambda_m FGW_alpha(T_m)`` evaluated by :func:`~modalign.ot.gromov.fgw_objective`."""
    lambdas = lambdas or [1.0 / len(xs)] * len(xs)
    total = 0.0
    for i, (x, t) in enumerate(zip(xs, couplings)):
        cost = _feature_cost(z, x) if alpha > 0 else None
        ci = cs[i] if cs is not None else None
        total += lambdas[i] * float(fgw_objective(t, cost, c_bar, ci, alpha))
    return total


def wasserstein_barycenter(features: Sequence[ArrayLike], **kwargs) -> Barycenter:
    """Fixed-support Wasserstein barycenter: :func:`fgw_barycenter` with ``alpha = 1``."""
    kwargs.pop("structures", None)
    return fgw_barycenter(features, None, alpha=1.0, **kwargs)
