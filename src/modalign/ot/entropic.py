"""Entropic optimal transport by log-domain Sinkhorn, batched over leading dimensions."""

from __future__ import annotations

import torch

from modalign.ot._checks import ArrayLike, as_tensor, check_matrix, float_tol, marginal


def _bcast(x: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    return x.expand(*batch, x.shape[-1])


def sinkhorn_potentials(
    log_kernel: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    f: torch.Tensor | None = None,
    g: torch.Tensor | None = None,
    *,
    max_iter: int = 1000,
    tol: float | None = None,
    inner: int = 10,
    exact_marginals: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, int, float, torch.Tensor]:
    """Find potentials ``f`` (..., n), ``g`` (..., m) such that ``T = exp(log_kernel + f + g^T)``
    has row sums ``a`` and column sums ``b``.

    Work is organised in cycles. A cycle first shifts every row of ``log_kernel + g`` so that
    its largest entry is zero (the stabilised kernel then lies in (0, 1] with a one in every
    row, so no row can underflow however small the entropic strength), then runs ``inner``
    cheap scaling sweeps ``u = a / K v``, ``v = b / K^T u`` and absorbs ``log u``, ``log v``
    into the potentials. If a scaling ever leaves the floating-point range, the solver
    switches to exact log-sum-exp sweeps for the rest of the solve. The marginal error (L1 over
    rows) is checked once per cycle, not every sweep, to keep Python overhead off the hot loop.
    Returns ``(f, g, sweeps, error, plan)``.
    """
    batch = log_kernel.shape[:-2]
    log_a = _bcast(log_a, batch)
    log_b = _bcast(log_b, batch)
    if tol is None:
        tol = float_tol(log_kernel.dtype, 1e-5, 1e-9)
    g_is_zero = g is None
    g = torch.zeros_like(log_b) if g is None else g
    a, b = log_a.exp(), log_b.exp()
    # Entries below exp(floor) times their row's largest are set to exactly zero: left tiny,
    # they and their products reach the subnormal range, where arithmetic is ~100x slower.
    floor = -50.0 if log_kernel.dtype in (torch.float32, torch.float16, torch.bfloat16) else -500.0
    # Scalings beyond exp(+-limit) are absorbed into the potentials and the kernel rebuilt.
    limit = 30.0 if floor > -100 else 200.0
    sweeps, err, plan = 0, float("inf"), None
    use_scaling = inner > 0
    while sweeps < max_iter and err >= tol:
        if use_scaling:
            if g_is_zero:  # skip a pass over the kernel
                f = -log_kernel.amax(-1)
                kernel = log_kernel + f[..., :, None]
            else:
                kernel = log_kernel + g[..., None, :]
                f = -kernel.amax(-1)
                kernel.add_(f[..., :, None])
            kernel = torch.nn.functional.threshold_(kernel, floor, float("-inf")).exp_()
            u, v = torch.ones_like(f), torch.ones_like(g)
            while sweeps < max_iter:
                for _ in range(inner):
                    u = a / (kernel @ v[..., :, None])[..., 0]
                    v = b / (u[..., None, :] @ kernel)[..., 0, :]
                sweeps += inner
                row = u * (kernel @ v[..., :, None])[..., 0]
                err = float((row - a).abs().sum(-1).max())
                bound = float(torch.maximum(u.log().abs().max(), v.log().abs().max()))
                if err < tol or not bound < limit:
                    break
            if err == err and err != float("inf") and bool((u > 0).all() and (v > 0).all()):
                if exact_marginals:
                    return _scale_and_round(kernel, u, v, row, f, g, a, b, sweeps, err)
                f = f + u.log()
                g = g + v.log()
                g_is_zero = False
                plan = kernel.mul_(u[..., :, None]).mul_(v[..., None, :])
            else:  # the scalings left the float range: continue in the log domain
                use_scaling = False
                err, plan = float("inf"), None
        else:
            g_is_zero = False
            f = log_a - torch.logsumexp(log_kernel + g[..., None, :], dim=-1)
            g = log_b - torch.logsumexp(log_kernel + f[..., :, None], dim=-2)
            sweeps += 1
            plan = torch.exp(log_kernel + f[..., :, None] + g[..., None, :])
            err = float((plan.sum(-1) - a).abs().sum(-1).max())
    if exact_marginals and plan is not None:
        plan = round_to_marginals(plan, a, b, inplace=True)
    return f, g, sweeps, err, plan


def _scale_and_round(kernel, u, v, row, f, g, a, b, sweeps, err):
    """``round_to_marginals(diag(u) K diag(v))`` with the scalings folded together."""
    tiny = torch.finfo(kernel.dtype).tiny
    u = u * (a / row.clamp_min(tiny)).clamp(max=1)
    col = v * (u[..., None, :] @ kernel)[..., 0, :]
    y = (b / col.clamp_min(tiny)).clamp(max=1)
    v = v * y
    row = u * (kernel @ v[..., :, None])[..., 0]
    plan = kernel.mul_(u[..., :, None]).mul_(v[..., None, :])
    _add_deficit(plan, row, col * y, a, b)
    return f + u.log(), g + v.log(), sweeps, err, plan


def _add_deficit(plan, rows, cols, a, b) -> torch.Tensor:
    """Add the missing mass as a rank-one term, in place; ``rows``/``cols`` are the plan's
    sums, none above its marginal. A feasible plan gets no correction at all."""
    err_a = (a - rows).clamp_min(0)
    err_b = (b - cols).clamp_min(0)
    mass = err_b.sum(-1, keepdim=True)
    eps = 64 * torch.finfo(plan.dtype).eps
    scale = torch.where(
        mass > eps, 1 / mass.clamp_min(torch.finfo(plan.dtype).tiny), torch.zeros_like(mass)
    )
    flat = plan.view(-1, *plan.shape[-2:])
    return flat.baddbmm_(
        err_a.reshape(-1, plan.shape[-2], 1), (err_b * scale).reshape(-1, 1, plan.shape[-1])
    ).view(plan.shape)


def sinkhorn(
    a: ArrayLike | None,
    b: ArrayLike | None,
    cost: ArrayLike,
    reg: float,
    *,
    max_iter: int = 2000,
    tol: float | None = None,
    potentials: tuple[torch.Tensor, torch.Tensor] | None = None,
    log: bool = False,
):
    """Entropic OT plan ``argmin_T <cost, T> - reg * H(T)`` s.t. ``T 1 = a``, ``T^T 1 = b``.

    Shapes: ``cost`` (..., n, m) with any leading batch dimensions; ``a`` (n,) or (..., n),
    ``b`` (m,) or (..., m), uniform when None. ``a`` and ``b`` may differ but each sums to one.
    ``reg`` is the absolute entropic strength (as in POT); float32 stays finite down to
    ``reg = 1e-4 * cost.max()`` because every step is in the log domain. ``potentials`` warm
    starts from the dual potentials of an earlier call (``log["f"], log["g"]``, in units of
    ``reg``; only ``g`` is used). Returns the plan (..., n, m), and with ``log`` a dict with
    ``f``, ``g``, ``n_iter`` and ``err``.
    """
    cost = as_tensor(cost, "cost")
    check_matrix(cost, "cost")
    if not reg > 0:
        raise ValueError(f"reg must be positive, got {reg}")
    n, m = cost.shape[-2:]
    a = marginal(a, n, "a", cost)
    b = marginal(b, m, "b", cost)
    f0, g0 = potentials if potentials is not None else (None, None)
    log_kernel = -cost / reg
    f, g, it, err, plan = sinkhorn_potentials(
        log_kernel, a.log(), b.log(), f0, g0, max_iter=max_iter, tol=tol
    )
    if log:
        return plan, {"f": f, "g": g, "n_iter": it, "err": err}
    return plan


def round_to_marginals(
    plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, inplace: bool = False
) -> torch.Tensor:
    """Project an approximate plan onto the transport polytope (Altschuler et al., 2017).

    Rows and columns with too much mass are scaled down, then the missing mass is added as a
    rank-one correction. The result has the exact marginals ``a``, ``b`` and differs from the
    input by at most twice its marginal error in L1; a feasible input comes back unchanged.
    Shapes (..., n, m), (..., n), (..., m). With ``inplace`` the plan's memory is reused
    (six passes over it, no allocation of its size).
    """
    tiny = torch.finfo(plan.dtype).tiny
    x = (a / plan.sum(-1).clamp_min(tiny)).clamp(max=1)
    col_x = (x[..., None, :] @ plan)[..., 0, :]
    y = (b / col_x.clamp_min(tiny)).clamp(max=1)
    row_xy = x * (plan @ y[..., :, None])[..., 0]
    if not inplace:
        plan = plan.clone()
    plan.mul_(x[..., :, None]).mul_(y[..., None, :])
    # After scaling down, no row or column exceeds its marginal.
    return _add_deficit(plan, row_xy, col_x * y, a, b)
