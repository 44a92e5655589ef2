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
from the data (a copy or subsample of one input, whose coupling is then the identity and is
never iterated) instead of random points; couplings are warm-started across outer iterations;
the default coupling solver is proximal mirror descent with a few over-relaxed Sinkhorn sweeps
per step on a stabilised kernel, followed by an exact projection onto the coupling
constraints, with the plans kept in scaling form until the end; and everything besides the
couplings is computed in the coordinates of ``T U`` (``U`` a basis of the inputs' factors).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from modalign.ot._checks import ArrayLike, as_tensor, check_finite, marginal
from modalign.ot.entropic import round_to_marginals, sinkhorn_potentials
from modalign.ot.gromov import (
    LogPlan,
    _conditional_gradient,
    fgw_objective,
    linearized_cost,
    mirror_descent,
)
from modalign.ot.structure import (
    LowRank,
    Structure,
    coincident,
    dense,
    is_symmetric,
    sqeuclidean_lowrank,
    squared_matvec,
)

# Sweeps between two marginal checks: each check costs one more product over the plan.
SINKHORN_CHECK_EVERY = 5
# Over-relaxation of the default solver's Sinkhorn sweeps (1: plain Sinkhorn).
SINKHORN_OMEGA = 1.5
# Coupling entries per intra-op thread in the default solver (see fgw_barycenter's `threads`).
THREAD_GRAIN = 1 << 22


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


def _require_positive(w: torch.Tensor, name: str, hint: str) -> None:
    """Refuse zero entries in a barycenter marginal: the closed-form updates divide by ``p``,
    and the solvers work with ``log q``, so a zero weight came out as NaN everywhere."""
    if bool((w <= 0).any()):
        raise ValueError(f"{name} has zero entries ({int((w <= 0).sum())} of {w.numel()}): {hint}")


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


def _default_structures(
    xs: list[torch.Tensor],
) -> tuple[list[LowRank], list[torch.Tensor], torch.Tensor | None]:
    """The default structures, squared Euclidean distances over their maximum, factored as
    :func:`~modalign.ot.structure.sqeuclidean_lowrank` does, and for each input columns
    ``[x, |x|^2, 1]`` known to span the features and both factors (see :func:`_column_basis`).

    The maximum is read off the factored product (one matrix product and one reduction per
    input) rather than a symmetrised dense distance matrix: the same number, in a third of the
    passes over an n x n matrix. Distances are exactly symmetric, so no symmetrisation is
    needed to find their maximum. Also returns that product's buffer, for reuse.
    """
    cs, spans, work = [], [], None
    for x in xs:
        raw = sqeuclidean_lowrank(x, normalize=False)
        if work is None or work.shape[0] != len(x):
            work = torch.empty(len(x), len(x), dtype=x.dtype, device=x.device)
        dist = torch.mm(raw.left, raw.right.T, out=work)
        scale = dist.amax().clamp_min(torch.finfo(x.dtype).tiny)
        # Points that all coincide (one point, a constant view) have the zero structure.
        cs.append(LowRank(torch.where(coincident(x), 0.0, raw.left / scale), raw.right))
        spans.append(torch.cat([x, (x * x).sum(-1, keepdim=True), torch.ones_like(x[:, :1])], -1))
    return cs, spans, work


def _stack(items: Sequence[Structure]) -> Structure:
    if all(isinstance(c, LowRank) for c in items):
        return LowRank(torch.stack([c.left for c in items]), torch.stack([c.right for c in items]))
    return torch.stack([dense(c) for c in items])


def _thread_limited(solve):
    """Run the solver with at most ``threads`` CPU threads (default: one per THREAD_GRAIN
    coupling entries, at least one); GPU inputs are left alone."""

    @functools.wraps(solve)
    def run(features, *args, threads: int | None = None, **kwargs):
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        limit = threads
        if limit is None:
            sizes = [int(x.shape[0]) if getattr(x, "ndim", 0) else 0 for x in features]
            n_points = kwargs.get("n_points")
            limit = max(1, (n_points or max(sizes, default=0)) * sum(sizes) // THREAD_GRAIN)
        on_cpu = not any(isinstance(x, torch.Tensor) and x.device.type != "cpu" for x in features)
        with _at_most_threads(limit if on_cpu else None):
            return solve(features, *args, threads=threads, **kwargs)

    return run


@_thread_limited
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
    epsilon: float | None = None,
    max_iter: int | None = None,
    inner_iter: int = 1,
    sinkhorn_iter: int = 10,
    sinkhorn_tol: float = 1e-3,
    tol: float = 1e-2,
    init: int | str = "largest",
    random_state: int | None = 0,
    threads: int | None = None,
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
            coupling update (warm-started, so a few suffice). Defaults: ``epsilon = 0.0075``
            and ``max_iter = 4`` when every input has one size and a factored structure (the
            fast path: on the benchmark, within 0.5% of the objective of POT's exact solver
            from the same start; ``epsilon=0.02, max_iter=10`` reaches a 1.7% lower objective
            in about twice the time), ``0.02`` and ``10`` otherwise.
        sinkhorn_iter, sinkhorn_tol: at most that many Sinkhorn sweeps per projection, fewer
            once the L1 marginal error is below ``sinkhorn_tol``; the couplings are then projected
            exactly onto their marginals (:func:`round_to_marginals`), so a loose inner
            solve costs accuracy of the step, never feasibility.
        tol: stop when the objective's relative decrease falls below it.
        init: the input the barycenter starts from: ``"largest"`` or an index. Its features
            (or a farthest-point subsample of them) and structure are copied.
        random_state: seed of the subsample's first point.
        threads: CPU threads for the iterations of the default solver (at most
            ``torch.get_num_threads()``). Default: one per ``THREAD_GRAIN`` coupling entries,
            at least one. Every parallel operation waits for its slowest thread, and on a
            machine whose cores are shared a thread is often descheduled for a whole time
            slice: on 2 cores shared with other work, N = 500 took 3.8 s on 2 threads and
            78 ms on one (docs/benchmarks.md). Larger problems amortise the waits; on idle
            cores two threads are 1.3 to 1.7x faster at N = 500 to 1000.

    Returns:
        A :class:`Barycenter` with features, structure, couplings and the objective log.
    """
    del threads  # applied by _thread_limited
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
    # Columns known to span every input's [features | structure factors]: a cheap basis for
    # the fast path (see _column_basis); None when the structures came from the caller.
    spans: list[torch.Tensor] | None = [x for x in xs]
    workspace = None  # an n x n buffer the fast path may reuse
    if use_structure:
        if structures is None:
            cs, spans, workspace = _default_structures(xs)
        else:
            spans = None
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
    for i, q in enumerate(qs):
        _require_positive(q, f"weights[{i}]", f"leave those points out of features[{i}]")

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
    _require_positive(p, "p", "a barycenter point is a p-weighted average and needs mass")
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
    fast = (
        solver == "proximal"
        and len(set(sizes)) == 1
        and (
            not use_structure
            or (all(isinstance(c, LowRank) for c in cs) and len({c.rank for c in cs}) == 1)
        )
    )
    if epsilon is None:
        epsilon = 0.0075 if fast else 0.02
    if max_iter is None:
        max_iter = 4 if fast else 10
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if fast:
        return _proximal_low_rank(
            xs,
            cs if use_structure else None,
            qs,
            lam,
            p,
            z,
            c_bar,
            k if copy else None,
            alpha,
            epsilon=epsilon,
            max_iter=max_iter,
            sinkhorn_iter=sinkhorn_iter,
            sinkhorn_tol=sinkhorn_tol,
            tol=tol,
            span=spans,
            workspace=workspace,
        )

    couplings = [p[:, None] * q[None, :] for q in qs]
    if copy:
        couplings[k] = torch.diag(p)
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


def _kernel_floor(dtype: torch.dtype) -> float:
    """Floor of the log-kernel relative to its row's largest entry: smaller entries, and
    their products with the scalings, would reach the subnormal range, where arithmetic is
    ~50x slower (an exp of a float32 log-kernel that was left unclamped took 2 ms instead of
    0.07 ms at N = 500). Raising an entry of relative size exp(-50) or less to it changes no
    result that float32 can represent."""
    return -50.0 if dtype in (torch.float32, torch.float16, torch.bfloat16) else -500.0


@contextmanager
def _at_most_threads(limit: int | None):
    """Run the block on at most ``limit`` intra-op threads (``None``: unchanged)."""
    before = torch.get_num_threads()
    if limit is None or limit >= before:
        yield
        return
    torch.set_num_threads(max(1, limit))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _ScaledPlan:
    """A coupling ``diag(u) exp(L) diag(v) + e_row e_col^T`` (n, m), kept implicit.

    ``L`` is the stabilised proximal log-kernel (kept by the caller), ``u``, ``v`` its
    Sinkhorn scalings after the exact rounding, and the rank-one term the mass that rounding
    added back (``e_col`` already divided by its total). The n x m plan is written once, at
    the end, which lets every coupling's kernel share one buffer meanwhile.
    """

    u: torch.Tensor
    v: torch.Tensor
    row_deficit: torch.Tensor
    col_deficit: torch.Tensor

    def materialize(self, log_kernel: torch.Tensor) -> torch.Tensor:
        """The dense plan (n, m), written over ``log_kernel``."""
        plan = log_kernel.exp_().mul_(self.u[:, None]).mul_(self.v[None, :])
        return plan.addr_(self.row_deficit, self.col_deficit)


def _project(
    kernel: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    basis: torch.Tensor,
    *,
    sweeps: int,
    tol: float,
    every: int,
    omega: float,
) -> tuple[_ScaledPlan, torch.Tensor, float]:
    """Sinkhorn scalings of ``kernel`` (n, m) towards row sums ``a`` (n,) and column sums
    ``b`` (m,), the exact projection onto the couplings (Altschuler et al.'s rounding), and
    the product ``T @ basis`` (n, k) of the projected plan, without writing any n x m matrix.

    At most ``sweeps`` sweeps ``u = a / K v``, ``v = b / K^T u``, over-relaxed by ``omega``
    (``u <- u^(1 - omega) (a / K v)^omega``, Thibault et al., 2017; 1 is plain Sinkhorn), fewer
    once the L1 row error is below ``tol``. A check every ``every`` sweeps reuses the next
    sweep's product ``K v``, so it costs no pass over ``K``. The rounding scales rows, then
    columns, down to their marginals and adds the missing mass back as a rank-one term; its
    last product, the rows of the rounded plan, rides along with ``T @ basis`` as one more
    column. So the whole call reads ``K`` 2 sweeps + 3 times.
    Returns the plan, ``T @ basis`` and the last error (NaN or inf if the scalings broke down).
    """
    tiny = torch.finfo(kernel.dtype).tiny
    kernel_t = kernel.T
    kv = kernel.sum(-1)  # K @ v with v = 1: the column potentials are folded into K
    u = v = kv
    err = float("inf")
    for sweep in range(1, max(sweeps, 1) + 1):
        if sweep == 1 or omega == 1:
            u = a / kv
            v = b / torch.mv(kernel_t, u)
        else:  # u^(1 - omega) (a / K v)^omega, with one power
            u = u * (a / (u * kv)).pow_(omega)
            v = v * (b / (v * torch.mv(kernel_t, u))).pow_(omega)
        kv = torch.mv(kernel, v)
        if sweep % every == 0 or sweep == sweeps:
            err = float((u * kv - a).abs_().sum())
            if not err >= tol:  # converged, or NaN: stop either way
                break
    u = u * (a / (u * kv).clamp_min_(tiny)).clamp_(max=1)
    col = v * torch.mv(kernel_t, u)
    y = (b / col.clamp_min(tiny)).clamp_(max=1)
    v = v * y
    prod = kernel @ torch.cat([v[:, None] * basis, v[:, None]], -1)
    err_a = (a - u * prod[:, -1]).clamp_min_(0)
    err_b = (b - col * y).clamp_min_(0)
    mass = err_b.sum()
    # A feasible plan gets no correction at all (not even one of rounding-error size).
    e_col = torch.where(
        mass > 64 * torch.finfo(kernel.dtype).eps, err_b / mass.clamp_min(tiny), 0 * err_b
    )
    t_basis = torch.addr(u[:, None] * prod[:, :-1], err_a, e_col @ basis)
    return _ScaledPlan(u, v, err_a, e_col), t_basis, err


def _proximal_low_rank(
    xs,
    cs,
    qs,
    lam,
    p,
    z,
    c_bar,
    copied,
    alpha,
    *,
    epsilon,
    max_iter,
    sinkhorn_iter,
    sinkhorn_tol,
    tol,
    span=None,
    workspace=None,
) -> Barycenter:
    """The default solver when every input has the same size and a factored structure.

    Coordinates. Every input's ``[X_m | A_m | B_m]`` (features and structure factors,
    ``C_m = A_m B_m^T``) equals ``U_m [cX_m | cA_m | cB_m]`` with ``U_m`` (m, k) an orthonormal
    basis (k = d + 2 for squared distances). Everything the iteration needs of a coupling
    ``T_m`` is then ``P_m = T_m U_m`` (n, k): with ``Q = [P_1 / p | ... | P_M / p]`` (n, Mk),
    ``Lx = [lam_m cX_m]_m`` (Mk, d), ``Om = blockdiag(lam_m cA_m cB_m^T)`` and
    ``H = Q^T diag(p) Q`` (Mk, Mk),

    * the barycenter is ``Z = Q Lx`` and ``C = Q Om Q^T`` (the closed-form updates);
    * the objective is a handful of traces of ``H``, ``Om``, ``Lx`` and the coefficients;
    * the next linearised cost of input m is ``Q Phi_m U_m^T`` (rank k) with
      ``Phi_m = -2 alpha Lx cX_m^T - 4 (1 - alpha) Om H_{:,m} cB_m cA_m^T``.

    So per outer iteration the only work of size n x m is the coupling update itself; the
    rest is one (n, Mk) Gram matrix and one (n, Mk) x (Mk, k) product per coupling.

    Couplings. The coupling to the input the barycenter was copied from (``copied``) is left
    out: it starts as ``diag(p)``, and a KL proximal step never gives mass to an entry that
    has none, so it stays ``diag(p)``. The others are updated one at a time (each kernel then
    stays in cache through its Sinkhorn sweeps): one multiply-add ``log K += 1 g^T - G / eps``
    (the column potentials ride along as a rank-one term; row constants are cancelled by the
    row shift), one row maximum, one in-place shift (a one in every row: nothing overflows),
    one clamp at a floor (nothing reaches the slow subnormal range) and one ``exp``; then
    2 passes per Sinkhorn sweep, 3 for the exact rounding and the product ``P = T U``
    (:func:`_project`). The plans stay in scaling form (:class:`_ScaledPlan`) and are written
    out once, at the end. Measured costs: docs/benchmarks.md.
    """
    n_in = len(xs)
    x = torch.stack(xs)  # (M, m, d)
    dtype, device = x.dtype, x.device
    q = torch.stack(qs)
    d = x.shape[-1]
    if cs is not None:
        a = torch.stack([c.left for c in cs])
        b = torch.stack([c.right for c in cs])
        r = a.shape[-1]
        w = torch.cat([x, a, b], -1)
    else:
        w, r = x, 0
    # The columns of [X | A | B] are far from independent (squared-distance factors repeat
    # X), so everything goes through an orthonormal basis of their span.
    basis, coeff = _column_basis(w, None if span is None else torch.stack(span))
    k = basis.shape[-1]
    # Block order: the couplings that are solved, then the copied input's.
    order = [i for i in range(n_in) if i != copied] + ([] if copied is None else [copied])
    n_act = n_in - (copied is not None)
    perm = torch.tensor(order, device=device)
    basis, coeff, q, x, w = basis[perm], coeff[perm], q[perm], x[perm], w[perm]
    lam_t = torch.tensor([lam[i] for i in order], dtype=dtype, device=device)
    c_x, c_a, c_b = coeff[..., :d], coeff[..., d : d + r], coeff[..., d + r :]
    lam_x = (lam_t[:, None, None] * c_x).reshape(n_in * k, d)
    x_const = (q * (x * x).sum(-1)).sum(-1)  # sum_j q_j |x_j|^2
    omega = c_ba = in_const = None
    if cs is not None:
        blocks = lam_t[:, None, None] * (c_a @ c_b.transpose(-1, -2))
        omega = torch.block_diag(*blocks.unbind(0))
        c_ba = c_b @ c_a.transpose(-1, -2)  # (M, k, k)
        in_const = (squared_matvec(LowRank(a[perm], b[perm]), q) * q).sum(-1)  # q^T (C*C) q
    n, m = len(p), x.shape[1]

    def gram(p_act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``Q`` (n, Mk) and ``H = Q^T diag(p) Q`` from the active ``P`` (A, n, k)."""
        blocks = list((p_act / p[:, None]).unbind(0))
        if copied is not None:
            blocks.append(basis[-1])  # diag(p) U / p
        qq = torch.cat(blocks, -1)
        return qq, qq.transpose(0, 1) @ (p[:, None] * qq)

    def objective(h: torch.Tensor) -> float:
        """``sum_m lam_m FGW(T_m)`` at the closed-form barycenter of the current couplings."""
        value = h.new_zeros(n_in)
        h_cols = h.view(n_in * k, n_in, k).transpose(0, 1)  # (M, Mk, k): H[:, m]
        if alpha > 0:
            hx = h @ lam_x  # H Lx: sum_i p_i |z_i|^2 = <H Lx, Lx>, <Z, T_m X_m> = <(H Lx)_m, cX_m>
            cross_x = (hx.view(n_in, k, d) * c_x).sum((-1, -2))
            value = value + alpha * ((hx * lam_x).sum() + x_const - 2 * cross_x)
        if cs is not None:
            ho = h @ omega
            quad = ((omega.transpose(0, 1) @ ho) * h).sum()  # p^T (C*C) p = <Om^T H Om, H>
            # <C T_m C_m^T, T_m> = <H_{m,:} Om H_{:,m} cB_m, cA_m>
            inner = (ho.view(n_in, k, n_in * k) @ h_cols) @ c_b
            value = value + (1 - alpha) * (quad + in_const - 2 * (inner * c_a).sum((-1, -2)))
        return float((lam_t * value).sum())

    def gradient(qq: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Left factors ``Q Phi_m`` (A, n, k) of the active couplings' linearised costs on
        their bases, without the row and column constants (they do not move a coupling)."""
        phi = (-2 * alpha) * (lam_x @ c_x[:n_act].transpose(-1, -2))
        if cs is not None:
            h_cols = h.view(n_in * k, n_in, k).transpose(0, 1)[:n_act]
            phi = phi + (-4 * (1 - alpha)) * ((omega @ h_cols) @ c_ba[:n_act])
        return qq @ phi

    def first_gradient(p_act: torch.Tensor) -> torch.Tensor:
        """The same from the start's ``(z, C)`` (a copy or subsample of one input, not the
        closed form of the start's couplings)."""
        lefts = (-2 * alpha) * (z @ c_x[:n_act].transpose(-1, -2))
        if cs is not None:
            tb = p_act @ c_b[:n_act]  # T_m B_m
            core = c_bar.right.transpose(-1, -2) @ tb
            structure = (c_bar.left @ core) @ c_a[:n_act].transpose(-1, -2)
            lefts = lefts + (-4 * (1 - alpha)) * structure
        return lefts

    def coupling_step(i: int, step: int):
        """One mirror step of coupling ``i``: returns its plan, ``T U`` and its potential."""
        lk = log_k[i]
        # log T_prev - G / eps, plus the warm start of the column correction, in
        # one multiply-add: the column potentials ride along as a rank-one term.
        left = torch.cat([scale * grad[i], ones_n], -1)
        right = torch.cat([basis_a[i], (g[i] + g_warm[i])[:, None]], -1)
        col_shift = None
        if step == 0:
            torch.mm(left, right.T, out=lk)
            # No column correction to start from yet: shift every column to a
            # zero maximum first, or the floor below would flatten columns that
            # lie far under every row's maximum (in float32 it did: 0.88 instead
            # of 0.66 after the first step).
            col_shift = lk.amax(0)
            lk.sub_(col_shift)
        else:
            lk.addmm_(left, right.T)
        lk.sub_(lk.amax(-1, keepdim=True))  # a zero in every row: no overflow
        # A floor below which no entry matters keeps exp and every product with
        # the kernel out of the subnormal range (~50x slower arithmetic).
        lk.clamp_min_(floor)
        torch.exp(lk, out=kernel)
        plan, t_basis, err = _project(
            kernel,
            p,
            q[i],
            basis_a[i],
            sweeps=sinkhorn_iter,
            tol=sinkhorn_tol,
            every=SINKHORN_CHECK_EVERY,
            omega=SINKHORN_OMEGA,
        )
        gi = plan.v.log()
        bound = float(torch.maximum(plan.u.log().abs().max(), gi.abs().max()))
        if not (err == err and bound < limit):
            # The scalings left the range where they are sound: redo the step
            # with the solver that falls back to log-domain sweeps.
            _, gi, _, _, dense_plan = sinkhorn_potentials(
                lk,
                p.log(),
                q[i].log(),
                max_iter=sinkhorn_iter,
                tol=sinkhorn_tol,
                inner=SINKHORN_CHECK_EVERY,
                exact_marginals=True,
            )
            # The plan itself becomes the prox centre: log_k = log T, g = 0.
            t_basis = dense_plan @ basis_a[i]
            torch.log(dense_plan, out=lk)
            ones = torch.ones_like(p)
            plan = _ScaledPlan(ones, torch.ones_like(gi), 0 * ones, 0 * gi)
            gi = torch.zeros_like(gi)
        # This step's column correction, the next step's warm start.
        g_warm[i] += gi if col_shift is None else gi - col_shift
        return plan, t_basis, gi

    history: list[float] = []
    # The start: product couplings p q_m^T, and diag(p) for the copied input.
    p_act = p[:, None] * (q[:n_act, None, :] @ basis[:n_act])
    plans: list[_ScaledPlan] = []
    with torch.no_grad():
        if n_act:
            log_k = torch.empty(n_act, n, m, dtype=dtype, device=device)
            # One kernel buffer for all couplings (see _ScaledPlan); the default structures'
            # workspace when it fits (first touches of fresh memory cost ~0.3 ms per MB here).
            kernel = workspace
            if kernel is None or kernel.shape != (n, m) or kernel.dtype != dtype:
                kernel = torch.empty(n, m, dtype=dtype, device=device)
            prod_b = p[:, None] * (q[:, None, :] @ (basis @ c_b))
            if copied is not None:
                prod_b[-1] = p[:, None] * (basis[-1] @ c_b[-1])
            c_in = LowRank(a[perm], b[perm]) if cs is not None else None
            spread = _start_spread(
                z,
                x,
                q,
                p,
                c_bar,
                c_in,
                prod_b,
                alpha,
                n_in - 1 if copied is not None else None,
                log_k,
            )
            scale = -1 / max(epsilon * spread, 1e-30)
            floor = _kernel_floor(dtype)
            basis_a = basis[:n_act]
            # log T = log_k + f 1^T + 1 g^T, and at the start log T = log p 1^T + 1 log q^T;
            # only g is tracked: the row shift of every step cancels any row constant.
            g = q[:n_act].log()
            g_warm = torch.zeros_like(g)  # the previous step's column correction
            ones_n = p.new_ones(n, 1)
            # Largest |log| of a scaling taken as sound: well inside the float range.
            limit = 0.9 * math.log(torch.finfo(dtype).max)
        grad = first_gradient(p_act) if n_act else None
        for step in range(max_iter if n_act else 1):
            if n_act:
                # Mirror step T <- argmin <G, T> + eps KL(T | T_prev), one coupling at a time
                # (its kernel stays in cache through the Sinkhorn sweeps).
                results = [coupling_step(i, step) for i in range(n_act)]
                plans = [r[0] for r in results]
                parts = [r[1] for r in results]
                g_new = [r[2] for r in results]
                g = torch.stack(g_new)
                p_act = torch.stack(parts)
            qq, h = gram(p_act)
            history.append(objective(h))
            if len(history) > 1 and history[-2] - history[-1] <= tol * abs(history[-2]):
                break
            if n_act:
                grad = gradient(qq, h)
        z = qq @ lam_x
        c_bar = LowRank(qq @ omega, qq) if cs is not None else None
        couplings = [plan.materialize(lk) for plan, lk in zip(plans, log_k)] if n_act else []
    if copied is not None:
        couplings.insert(copied, torch.diag(p))
    return Barycenter(z, c_bar, couplings, history)


def _start_spread(z, x, q, p, c_bar, c_in, prod_b, alpha, copied, work) -> float:
    """Largest spread (max - min) over the inputs of the linearised cost at the start,
    ``alpha M(z, X_m) + 2 (1 - alpha) (f1 1^T + 1 f2^T - 2 C_bar T_m C_m^T)``, with
    ``f1 = (C_bar * C_bar) p`` and ``f2 = (C_m * C_m) q_m`` (every plan has marginals p, q_m)
    and ``prod_b = T_m B_m`` (M, n, r) for ``C_m = A_m B_m^T``. The inputs come in block
    order (the copied one, if any, last); ``work`` (>= M - 1, n, m) is workspace.

    Evaluated from its factors: for a product coupling ``p q^T`` the structure term is
    ``(C_bar p)(C_m q)^T``, of rank one, so those costs have rank d + 3 (one batched product);
    the copied input's (identity coupling) has rank d + 2 + r.
    """
    w = 2 * (1 - alpha)
    n_in = x.shape[0]
    n_prod = n_in - (copied is not None)
    row = alpha * (z * z).sum(-1)
    col = alpha * (x * x).sum(-1)
    if c_in is not None:
        row = row + w * squared_matvec(c_bar, p)
        col = col + w * squared_matvec(c_in, q)
    ones_n = torch.ones_like(row)[:, None]
    spreads = []
    if n_prod:
        lefts = [row[:, None], ones_n, (-2 * alpha) * z]
        rights = [torch.ones_like(col[:n_prod])[..., None], col[:n_prod, :, None], x[:n_prod]]
        if c_in is not None:
            s_row = c_bar.left @ (c_bar.right.transpose(-1, -2) @ p)  # C_bar p
            s_col = c_in.left[:n_prod] @ (
                c_in.right[:n_prod].transpose(-1, -2) @ q[:n_prod, :, None]
            )
            lefts.append((-2 * w) * s_row[:, None])
            rights.append(s_col)
        left = torch.cat(lefts, -1).expand(n_prod, -1, -1)
        full = torch.bmm(left, torch.cat(rights, -1).transpose(-1, -2), out=work[:n_prod])
        spreads.append(float((full.amax((-1, -2)) - full.amin((-1, -2))).max()))
    if copied is not None:
        lefts = [row[:, None], ones_n, (-2 * alpha) * z]
        rights = [torch.ones_like(col[-1])[:, None], col[-1][:, None], x[-1]]
        if c_in is not None:
            lefts.append((-2 * w) * (c_bar.left @ (c_bar.right.transpose(-1, -2) @ prod_b[-1])))
            rights.append(c_in.left[-1])
        full = torch.mm(torch.cat(lefts, -1), torch.cat(rights, -1).T, out=work[0])
        spreads.append(float(full.amax() - full.amin()))
    return max(max(spreads), 1e-12)


def _column_basis(
    w: torch.Tensor, span: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``w = basis @ coeff`` with ``basis`` (..., m, k) orthonormal.

    ``span`` (..., m, s), when given, holds columns known to span those of ``w`` (for squared
    distances: ``[x, |x|^2, 1]``): its QR factor is then the basis, at a tenth of the cost of
    an SVD, and the claim is checked. Otherwise, or if the check fails, ``k`` is the numerical
    rank from an SVD of ``w``.
    """
    rtol = 1e-5 if w.dtype == torch.float32 else 1e-11
    if span is not None:
        basis = torch.linalg.qr(span).Q
        coeff = basis.transpose(-1, -2) @ w
        # The claim, checked on two random combinations of w's columns (a column outside the
        # span shows in any of them with probability one).
        gen = torch.Generator().manual_seed(0)
        probe = w @ torch.randn(w.shape[-1], 2, generator=gen, dtype=w.dtype).to(w.device)
        resid = (probe - basis @ (basis.transpose(-1, -2) @ probe)).abs().amax((-1, -2))
        if bool((resid <= rtol * probe.abs().amax((-1, -2))).all()):
            return basis.contiguous(), coeff
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
