"""(Fused) Gromov-Wasserstein with the square loss: exact and entropic/proximal solvers.

Objective (``alpha`` weights the features, as in DESIGN.md 2.1)::

    FGW(T) = alpha * <M, T> + (1 - alpha) * sum_{ijkl} (C1[i,k] - C2[j,l])^2 T[i,j] T[k,l]

over couplings ``T`` with marginals ``p``, ``q``. Note that POT's ``alpha`` weights the
*structure*: ``modalign`` alpha = 1 - POT alpha.

The square loss decomposes (Peyre et al., 2016) as
``sum (C1 - C2)^2 T T = <f1 1^T + 1 f2^T, T> - 2 <C1 T C2^T, T>`` with ``f1 = (C1*C1) p``,
``f2 = (C2*C2) q``, so one iteration costs a few matrix products, and O(n m r) when the
structures are kept in factored form (:class:`~modalign.ot.structure.LowRank`).
Structures must be symmetric (distances, kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modalign.ot._checks import ArrayLike, as_tensor, check_finite, float_tol, marginal
from modalign.ot.entropic import round_to_marginals, sinkhorn_potentials
from modalign.ot.lp import emd
from modalign.ot.structure import (
    LowRank,
    SparseGraph,
    Structure,
    dense,
    is_symmetric,
    reference,
    sandwich,
    squared_matvec,
)

SOLVERS = ("exact", "entropic", "proximal")


# ----------------------------------------------------------------------------- shared formulas
def inner(x: Structure, t: torch.Tensor) -> torch.Tensor:
    """``<X, T>`` over the last two dimensions, without forming a factored or sparse ``X``."""
    if isinstance(x, SparseGraph):
        rows, cols, values = x.entries()
        return t.sum((-1, -2)) - (values * t[..., rows, cols]).sum(-1)
    if isinstance(x, LowRank):
        return ((t @ x.right) * x.left).sum((-1, -2))
    return (x * t).sum((-1, -2))


def sandwich_inner(c1: Structure, t: torch.Tensor, c2: Structure) -> torch.Tensor:
    """``<C1 T C2^T, T>``, in O(n m r) when both structures are factored."""
    if isinstance(c1, LowRank) and isinstance(c2, LowRank):
        core_r = c1.right.transpose(-1, -2) @ (t @ c2.right)
        core_l = c1.left.transpose(-1, -2) @ (t @ c2.left)
        return (core_r * core_l).sum((-1, -2))
    return (sandwich(c1, t, c2) * t).sum((-1, -2))


def plan_terms(
    c1: Structure, plan: torch.Tensor, c2: Structure
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The plan's terms of the square loss: ``f1 = (C1*C1) T 1`` (..., n),
    ``f2 = (C2*C2) T^T 1`` (..., m) and ``C1 T C2^T`` (..., n, m).

    :func:`fgw_objective` and :func:`linearized_cost` take them (``terms=``) from a caller
    that needs both at one plan, as the exact solver does, instead of computing them twice.
    """
    return (
        squared_matvec(c1, plan.sum(-1)),
        squared_matvec(c2, plan.sum(-2)),
        sandwich(c1, plan, c2),
    )


def fgw_objective(
    plan: torch.Tensor,
    cost: Structure | None,
    c1: Structure | None,
    c2: Structure | None,
    alpha: float,
    *,
    terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The FGW objective of ``plan`` (..., n, m), exactly as in the module docstring.

    The marginals are read off the plan itself, so the formula is the plain quadruple sum for
    any non-negative matrix. ``alpha = 1`` gives the linear OT cost, ``alpha = 0`` plain GW.
    Differentiable in every argument. ``terms``: the plan's :func:`plan_terms`, if at hand.
    """
    value = plan.new_zeros(plan.shape[:-2])
    if alpha > 0:
        value = value + alpha * inner(cost, plan)
    if alpha < 1:
        p, q = plan.sum(-1), plan.sum(-2)
        if terms is None:
            f1, f2 = squared_matvec(c1, p), squared_matvec(c2, q)
            cross = sandwich_inner(c1, plan, c2)
        else:
            f1, f2, s = terms
            cross = (s * plan).sum((-1, -2))
        quad = (f1 * p).sum(-1) + (f2 * q).sum(-1)
        value = value + (1 - alpha) * (quad - 2 * cross)
    return value


def linearized_cost(
    plan: torch.Tensor,
    cost: Structure | None,
    c1: Structure | None,
    c2: Structure | None,
    alpha: float,
    *,
    with_constants: bool = True,
    terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> Structure:
    """Gradient of :func:`fgw_objective` in the plan.

    ``G = alpha M + 2 (1 - alpha) (f1 1^T + 1 f2^T - 2 C1 T C2^T)``.

    With ``with_constants=False`` the row and column constants ``f1``, ``f2`` are left out:
    they do not change a transport problem with fixed marginals. When every input is factored
    the result is factored too (rank ``r_M + r_2 (+2)``), so no n x m matrix is formed here.
    ``terms``: the plan's :func:`plan_terms`, if at hand (not read when both structures are
    factored, whose product stays factored).
    """
    parts_l: list[torch.Tensor] = []
    parts_r: list[torch.Tensor] = []
    dense_part = None
    if alpha > 0:
        if isinstance(cost, LowRank):
            parts_l.append(alpha * cost.left)
            parts_r.append(cost.right)
        else:
            dense_part = alpha * cost
    if alpha < 1:
        w = 2 * (1 - alpha)
        if with_constants:
            if terms is None:
                f1, f2 = squared_matvec(c1, plan.sum(-1)), squared_matvec(c2, plan.sum(-2))
            else:
                f1, f2 = terms[0], terms[1]
            one1, one2 = torch.ones_like(f1), torch.ones_like(f2)
            parts_l.append(torch.stack([w * f1, w * one1], -1))
            parts_r.append(torch.stack([one2, f2], -1))
        if isinstance(c1, LowRank) and isinstance(c2, LowRank):
            core = c1.right.transpose(-1, -2) @ (plan @ c2.right)
            parts_l.append(-2 * w * (c1.left @ core))
            parts_r.append(c2.left)
        else:
            s = -2 * w * (sandwich(c1, plan, c2) if terms is None else terms[2])
            dense_part = s if dense_part is None else dense_part + s
    low = None
    if parts_l:
        batch = torch.broadcast_shapes(*(x.shape[:-2] for x in parts_l + parts_r))
        low = LowRank(
            torch.cat([x.expand(*batch, *x.shape[-2:]) for x in parts_l], -1),
            torch.cat([x.expand(*batch, *x.shape[-2:]) for x in parts_r], -1),
        )
    if dense_part is None:
        return low
    return dense_part if low is None else dense_part + low.dense()


# ----------------------------------------------------------------------------- input handling
def _prepare(cost, c1, c2, p, q, alpha):
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    ref = c1 if c1 is not None else cost
    if ref is None:
        raise ValueError("give a feature cost M (alpha > 0) and/or structures C1, C2 (alpha < 1)")

    def conv(x, name):
        if isinstance(x, SparseGraph):
            check_finite(x.affinity.values(), name)
            return x
        if x is None or isinstance(x, LowRank):
            if isinstance(x, LowRank):
                check_finite(x.left, name)
                check_finite(x.right, name)
            return x
        x = as_tensor(x, name)
        check_finite(x, name)
        return x

    cost, c1, c2 = conv(cost, "M"), conv(c1, "C1"), conv(c2, "C2")
    if alpha > 0 and cost is None:
        raise ValueError(f"a feature cost M is needed when alpha > 0 (alpha={alpha})")
    if alpha < 1:
        if c1 is None or c2 is None:
            raise ValueError("structures C1 and C2 are needed when alpha < 1")
        for c, name in ((c1, "C1"), (c2, "C2")):
            if c.shape[-1] != c.shape[-2]:
                raise ValueError(f"{name} must be square, got shape {tuple(c.shape)}")
            if not is_symmetric(c):
                raise ValueError(f"{name} is not symmetric: use distance or kernel structures")
        n, m = c1.shape[-1], c2.shape[-1]
        if cost is not None and alpha > 0 and tuple(cost.shape[-2:]) != (n, m):
            raise ValueError(f"M has shape {tuple(cost.shape)}, expected (..., {n}, {m})")
    else:
        n, m = cost.shape[-2:]
    like = reference(c1 if c1 is not None else cost)
    p = marginal(p, n, "p", like)
    q = marginal(q, m, "q", like)
    return cost, c1, c2, p, q, like


def _outer(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return p[..., :, None] * q[..., None, :]


# ----------------------------------------------------------------------------- exact solver
def _line_search(cost, c1, c2, plan, direction, alpha, s_plan, terms=None):
    """Exact step ``argmin_{t in [0,1]} FGW(T + t D)``; FGW is quadratic along the segment.

    ``s_plan = C1 T C2^T``; ``terms``: the plan's :func:`plan_terms`, if at hand (their
    ``f1``, ``f2`` are read). Returns the step and ``C1 D C2^T``."""
    s_dir = sandwich(c1, direction, c2) if alpha < 1 else None
    lin = plan.new_zeros(())
    quad = plan.new_zeros(())
    if alpha > 0:
        lin = lin + alpha * inner(cost, direction)
    if alpha < 1:
        dp, dq = direction.sum(-1), direction.sum(-2)
        if terms is None:
            f1, f2 = squared_matvec(c1, plan.sum(-1)), squared_matvec(c2, plan.sum(-2))
        else:
            f1, f2 = terms[0], terms[1]
        lin = lin + (1 - alpha) * (
            2 * (f1 * dp).sum() + 2 * (f2 * dq).sum() - 4 * (s_plan * direction).sum()
        )
        # The marginal terms are quadratic too when a marginal may move (semi-relaxed GW).
        quad = (1 - alpha) * (
            (squared_matvec(c1, dp) * dp).sum()
            + (squared_matvec(c2, dq) * dq).sum()
            - 2 * (s_dir * direction).sum()
        )
    a, b = float(quad), float(lin)
    if a > 0:  # convex along the segment: clipped vertex of the parabola
        return min(1.0, max(0.0, -b / (2 * a))), s_dir
    return (1.0 if a + b < 0 else 0.0), s_dir


def _conditional_gradient(
    cost, c1, c2, p, q, alpha, plan, max_iter, tol_rel, tol_abs, relaxed: bool = False
):
    """Frank-Wolfe with exact line search; each linear step is an exact OT (network simplex).

    With ``relaxed`` only the row marginal is imposed (semi-relaxed GW): the linear step then
    sends each row's mass to its cheapest column.

    The objective at a plan, the gradient at the same plan (the next iteration's) and the
    line search from it share the plan's :func:`plan_terms`, computed once per plan: two
    structure products per iteration (the plan's and the direction's) where computing each
    where it is needed took three, with the same arithmetic, so the same iterates to the bit
    (``benchmarks/head_cg.py`` times both). Both structures factored: their cheap factored
    forms, as before.
    """
    if plan is None:
        plan = _outer(p, q)
    cost_d = dense(cost) if (alpha > 0 and cost is not None) else None
    share = alpha < 1 and not (isinstance(c1, LowRank) and isinstance(c2, LowRank))
    terms = plan_terms(c1, plan, c2) if share else None
    # C1 T C2^T for the line search, carried along each step (linear in the plan).
    s_plan = None
    if alpha < 1:
        s_plan = terms[2] if share else sandwich(c1, plan, c2)
    value = float(fgw_objective(plan, cost_d, c1, c2, alpha, terms=terms))
    history = [value]
    for _ in range(max_iter):
        grad = linearized_cost(plan, cost_d, c1, c2, alpha, terms=terms)
        if relaxed:
            g = dense(grad)
            vertex = torch.zeros_like(g).scatter_(-1, g.argmin(-1, keepdim=True), p[:, None])
        else:
            vertex = emd(p, q, dense(grad))
        direction = vertex - plan
        step, s_dir = _line_search(cost_d, c1, c2, plan, direction, alpha, s_plan, terms)
        plan = plan + step * direction
        if s_plan is not None:
            s_plan = s_plan + step * s_dir
        terms = plan_terms(c1, plan, c2) if share else None
        new_value = float(fgw_objective(plan, cost_d, c1, c2, alpha, terms=terms))
        history.append(new_value)
        delta = abs(new_value - value)
        value = new_value
        if delta < tol_abs or delta / max(abs(value), 1e-300) < tol_rel:
            break
    return plan, history


# ----------------------------------------------------------------------------- mirror descent
@dataclass
class LogPlan:
    """A plan in the log domain, ``log T = kernel + f 1^T + 1 g^T``, with the potentials kept
    apart so that the next mirror step folds them into its low-rank product for free."""

    kernel: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor

    @classmethod
    def of(cls, plan: torch.Tensor) -> LogPlan:
        return cls(
            plan.clamp_min(0).log(),
            plan.new_zeros(plan.shape[:-1]),
            plan.new_zeros((*plan.shape[:-2], plan.shape[-1])),
        )


def mirror_step(
    previous: LogPlan | None,
    grad: Structure,
    epsilon: float,
    log_p: torch.Tensor,
    log_q: torch.Tensor,
    g: torch.Tensor | None = None,
    *,
    sinkhorn_iter: int = 1000,
    sinkhorn_tol: float | None = None,
    sinkhorn_inner: int = 10,
    exact_marginals: bool = False,
) -> tuple[torch.Tensor, LogPlan]:
    """One step ``T = argmin <grad, T> + eps KL(T | T_prev)`` over couplings of p, q.

    With ``previous=None`` the step is entropic (``- eps H(T)``), and ``g`` may warm-start the
    column potential. ``grad`` is dense or factored, shape (..., n, m). For a factored
    gradient the new log-kernel ``log T_prev - grad / eps`` is one in-place batched
    multiply-add on ``previous.kernel`` (which the step consumes), the previous potentials
    riding along as two extra rank-one terms. ``exact_marginals`` projects the plan exactly
    onto the couplings (see :func:`sinkhorn_potentials`). Returns ``(plan, log_plan)``.
    """
    scale = -1.0 / epsilon
    if previous is None:
        log_kernel = scale * dense(grad)
    elif isinstance(grad, LowRank):
        f0, g0 = previous.f, previous.g
        left = torch.cat(
            [
                grad.left.expand(*f0.shape, grad.rank),
                (-epsilon * f0)[..., None],
                torch.full_like(f0, -epsilon)[..., None],
            ],
            -1,
        )
        right = torch.cat(
            [
                grad.right.expand(*g0.shape, grad.rank),
                torch.ones_like(g0)[..., None],
                g0[..., None],
            ],
            -1,
        )
        log_kernel = previous.kernel
        flat = log_kernel.view(-1, *log_kernel.shape[-2:])
        flat.baddbmm_(
            left.reshape(flat.shape[0], *left.shape[-2:]),
            right.reshape(flat.shape[0], *right.shape[-2:]).transpose(-1, -2),
            alpha=scale,
        )
    else:
        log_kernel = (
            previous.kernel + previous.f[..., :, None] + previous.g[..., None, :] + scale * grad
        )
    f, g, _, _, plan = sinkhorn_potentials(
        log_kernel,
        log_p,
        log_q,
        None,
        g,
        max_iter=sinkhorn_iter,
        tol=sinkhorn_tol,
        inner=sinkhorn_inner,
        exact_marginals=exact_marginals,
    )
    return plan, LogPlan(log_kernel, f, g)


def mirror_descent(
    cost: Structure | None,
    c1: Structure | None,
    c2: Structure | None,
    p: torch.Tensor,
    q: torch.Tensor,
    alpha: float,
    plan: torch.Tensor,
    epsilon: float,
    *,
    proximal: bool = True,
    max_iter: int = 1000,
    tol: float = 1e-9,
    check_every: int = 1,
    sinkhorn_iter: int = 1000,
    sinkhorn_tol: float | None = None,
    sinkhorn_inner: int = 10,
    log_plan: LogPlan | None = None,
):
    """Mirror descent on FGW with log-domain Sinkhorn projections, batched over leading dims.

    Proximal (``proximal=True``): ``T <- argmin <G(T_k), T> + eps KL(T | T_k)``, which
    converges to a stationary point of the *unregularised* objective (Xu et al., 2019).
    Entropic: ``T <- argmin <G(T_k), T> - eps H(T)``, the entropic GW of Peyre et al. (2016).
    ``G`` is :func:`linearized_cost` without its row/column constants. Stops when the L1
    change of the plan falls below ``tol`` (checked every ``check_every`` steps).
    ``log_plan`` (``plan`` in the log domain) saves a pass when the caller carries it.
    Returns ``(plan, log_plan, steps)``.
    """
    log_p, log_q = p.log(), q.log()
    if log_plan is None and proximal:
        log_plan = LogPlan.of(plan)
    g = None
    step = 0
    for step in range(1, max_iter + 1):
        grad = linearized_cost(plan, cost, c1, c2, alpha, with_constants=False)
        new_plan, new_log = mirror_step(
            log_plan if proximal else None,
            grad,
            epsilon,
            log_p,
            log_q,
            None if proximal else g,
            sinkhorn_iter=sinkhorn_iter,
            sinkhorn_tol=sinkhorn_tol,
            sinkhorn_inner=sinkhorn_inner,
        )
        g = new_log.g
        if proximal:
            log_plan = new_log
        previous, plan = plan, new_plan
        converged = (
            tol > 0
            and step % check_every == 0
            and (float((plan - previous).abs().sum((-1, -2)).max()) < tol)
        )
        if converged:
            break
    return plan, log_plan, step


# ----------------------------------------------------------------------------- public API
def _check_reached(
    plan: torch.Tensor, p: torch.Tensor, q: torch.Tensor, solver: str, epsilon: float
) -> None:
    """Refuse a plan that is far from its marginals instead of returning it as a coupling.

    The Sinkhorn projections of the entropic and proximal solvers stop after a fixed number
    of sweeps; with ``epsilon`` tiny against the costs (1e-13 of them, say: costs of 1e12
    with an absolute ``epsilon`` of 0.1) they end far from the marginals (0.33 in L1), and
    the plan used to come back as if it were a coupling. The bound, 1e-2 in L1, is loose on
    purpose: the proximal solver sharpens its kernel at every step, so on ordinary problems
    its last projections may end 1e-4 to 1e-3 away, and such plans are still returned.
    """
    error = float(
        torch.maximum(
            (plan.sum(-1) - p).abs().sum(-1).max(), (plan.sum(-2) - q).abs().sum(-1).max()
        )
    )
    if not error <= 1e-2:  # NaN included
        raise ValueError(
            f"epsilon={epsilon} is too small for these costs: the {solver} solver's Sinkhorn "
            f"projections ended {error:.3g} (L1) away from the marginals; raise epsilon (it is "
            "absolute, in cost units) or rescale the costs"
        )


def fused_gromov_wasserstein(
    M: ArrayLike | Structure | None,
    C1: ArrayLike | Structure | None,
    C2: ArrayLike | Structure | None,
    p: ArrayLike | None = None,
    q: ArrayLike | None = None,
    alpha: float = 0.5,
    *,
    solver: str = "exact",
    epsilon: float | None = None,
    T0: ArrayLike | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    log: bool = False,
):
    """Fused Gromov-Wasserstein coupling between two structured point clouds.

    Minimises ``alpha <M, T> + (1-alpha) sum (C1[i,k] - C2[j,l])^2 T[i,j] T[k,l]`` over
    couplings of ``p`` (n,) and ``q`` (m,) (uniform when None). ``M`` is (n, m), ``C1`` (n, n),
    ``C2`` (m, m), dense tensors, :class:`LowRank` factors or (unbatched) a
    :class:`~modalign.ot.structure.SparseGraph` dissimilarity; leading batch dimensions are
    allowed for the entropic and proximal solvers.

    Solvers:
      * ``"exact"``: conditional gradient with exact line search, linear steps by network
        simplex (same iterates as POT's ``fused_gromov_wasserstein`` from the same ``T0``).
      * ``"proximal"``: mirror descent with a KL proximal term of strength ``epsilon``
        (absolute, in cost units); converges to an unregularised stationary point.
      * ``"entropic"``: entropic regularisation ``- epsilon H(T)``.
    ``T0`` warm-starts any solver (default: the product coupling ``p q^T``).
    Returns the plan (..., n, m), and with ``log`` a dict with ``fgw_dist`` and solver details.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}: choose one of {SOLVERS}")
    cost, c1, c2, p, q, like = _prepare(M, C1, C2, p, q, alpha)
    if solver == "proximal":
        for w, name in ((p, "p"), (q, "q")):
            if bool((w <= 0).any()):
                # log 0 = -inf rows of the prox centre turned the whole plan into NaN.
                raise ValueError(
                    f"{name} has zero entries ({int((w <= 0).sum())} of {w.shape[-1]}): the "
                    "proximal solver's KL steps cannot start from a plan with empty rows or "
                    "columns; leave the points without mass out, or use solver='entropic' or "
                    "'exact'"
                )
    batch = torch.broadcast_shapes(*(x.shape[:-2] for x in (cost, c1, c2) if x is not None))
    if T0 is None:
        start = _outer(p, q)
        plan = start.expand(
            *torch.broadcast_shapes(batch, start.shape[:-2]), *start.shape[-2:]
        ).clone()
    else:
        plan = as_tensor(T0, "T0", dtype=like.dtype, device=like.device)
        if tuple(plan.shape[-2:]) != (p.shape[-1], q.shape[-1]):
            raise ValueError(
                f"T0 has shape {tuple(plan.shape)}, expected (..., {p.shape[-1]}, {q.shape[-1]})"
            )
        check_finite(plan, "T0")
    info: dict = {}
    with torch.no_grad():
        if solver == "exact":
            if plan.dim() != 2:
                raise ValueError(
                    "the exact solver takes one problem at a time (no batch "
                    f"dimension), got plans of shape {tuple(plan.shape)}"
                )
            plan, history = _conditional_gradient(
                cost,
                c1,
                c2,
                p,
                q,
                alpha,
                plan,
                max_iter=max_iter or 10_000,
                tol_rel=tol or 1e-9,
                tol_abs=tol or 1e-9,
            )
            info["loss"] = history
        else:
            if epsilon is None or not epsilon > 0:
                raise ValueError(f"the {solver} solver needs a positive epsilon, got {epsilon}")
            plan, _, steps = mirror_descent(
                cost,
                c1,
                c2,
                p,
                q,
                alpha,
                plan,
                epsilon,
                proximal=solver == "proximal",
                max_iter=max_iter or 1000,
                tol=tol if tol is not None else float_tol(like.dtype, 1e-6, 1e-9),
            )
            info["n_iter"] = steps
            _check_reached(plan, p, q, solver, epsilon)
    if log:
        info["fgw_dist"] = fgw_objective(plan, cost, c1, c2, alpha)
        return plan, info
    return plan


def fused_gromov_wasserstein2(
    M: ArrayLike | Structure | None,
    C1: ArrayLike | Structure | None,
    C2: ArrayLike | Structure | None,
    p: ArrayLike | None = None,
    q: ArrayLike | None = None,
    alpha: float = 0.5,
    **kwargs,
) -> torch.Tensor:
    """The FGW value at the plan of :func:`fused_gromov_wasserstein`, differentiable.

    Gradients with respect to ``M``, ``C1`` and ``C2`` (and so the features and structures
    they are computed from) follow the envelope theorem: the plan is held fixed at its
    optimum, so no gradient flows through the solver's iterations.
    """
    plan = fused_gromov_wasserstein(M, C1, C2, p, q, alpha, **kwargs).detach()

    def keep(x):
        if x is None or isinstance(x, LowRank | SparseGraph):
            return x
        return as_tensor(x, "input")

    return fgw_objective(plan, keep(M), keep(C1), keep(C2), alpha)


def gromov_wasserstein(C1, C2, p=None, q=None, **kwargs):
    """Gromov-Wasserstein coupling: :func:`fused_gromov_wasserstein` with ``alpha = 0``."""
    return fused_gromov_wasserstein(None, C1, C2, p, q, alpha=0.0, **kwargs)


def gromov_wasserstein2(C1, C2, p=None, q=None, **kwargs) -> torch.Tensor:
    """Differentiable Gromov-Wasserstein value (envelope theorem), ``alpha = 0``."""
    return fused_gromov_wasserstein2(None, C1, C2, p, q, alpha=0.0, **kwargs)


__all__ = [
    "fgw_objective",
    "linearized_cost",
    "plan_terms",
    "mirror_descent",
    "fused_gromov_wasserstein",
    "fused_gromov_wasserstein2",
    "gromov_wasserstein",
    "gromov_wasserstein2",
    "round_to_marginals",
]
