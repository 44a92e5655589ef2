"""Optimal transport between the token sets of two modalities, batched over samples.

The alignment loss of DESIGN.md section 2.2 (Wasserstein modality alignment, Zhi et al.), in the
word-region formulation of UNITER: sample ``k`` has ``n_k`` real tokens of modality a (rows)
and ``m_k`` of modality b (columns), padded to ``T`` and ``S``; the cost is
``C_ij = 1 - cos(x_i, y_j)``; both sides carry uniform weights ``1 / n_k`` and ``1 / m_k``
over their real tokens; the loss is ``<P_k, C_k>`` for a transport plan ``P_k`` between them.

Masks follow one convention everywhere: **True marks a real token** (the opposite of UNITER's
and PyTorch's ``key_padding_mask``, where True marks padding: invert those with ``~mask``).
Any pattern is allowed (padding at the end, or special tokens such as [CLS] left out in the
middle). Padded rows and columns get exactly zero mass, hence exactly zero gradient, and
their cost entries never enter the result (they may hold any value, even NaN).

Solvers (``beta`` > 0 plays a different role in each):

* ``"ipot"``: the inexact proximal point method of Xie et al. (UAI 2019), as UNITER uses it.
  Each outer iteration is one proximal step ``P <- argmin_{P in U(a, b)} <C, P> +
  beta * KL(P || P_prev)``, solved inexactly by ``inner_iter`` Sinkhorn sweeps on the kernel
  ``exp(-C / beta) * P_prev``, the scaling ``sigma`` carried from one step to the next. Unrolled,
  after ``t`` steps ``P = diag(u) exp(-t C / beta) diag(v)``: the form of an entropic plan of
  strength ``beta / t``. So ``beta`` is a step size, not a bias: the plan tends to the *exact*
  OT plan as the steps go on, and a larger ``beta`` only slows that down.
* ``"sinkhorn"``: entropic OT ``argmin_P <C, P> - beta * H(P)`` (``beta`` = epsilon, the
  absolute strength, as POT's ``reg``), ``n_iter`` Sinkhorn iterations. ``beta`` is a lasting
  bias: the plan stays blurred however many iterations are run.
* ``"exact"``: the exact plan ``argmin_P <C, P>``, sample by sample with POT's network simplex
  (:func:`modalign.ot.emd`); ``beta`` and the iteration counts are unused.

Gradients: by default the plan is computed without gradient and held fixed, so
``d value / d C = P`` (the plan itself). For exact OT this *is* the gradient of the optimal
value (envelope theorem: ``min_P <P, C>`` is concave and piecewise linear in ``C``, with
gradient ``P*`` wherever the optimum is unique); for Sinkhorn it is the gradient of the
converged entropic optimum ``min_P <P, C> - beta H(P)`` (not of the returned ``<P, C>``, which
lacks the entropy term); for IPOT, which tends to exact OT, it is the envelope gradient of the
exact value it approximates. This is UNITER's choice, and it makes the
backward pass free. ``detach_plan=False`` instead differentiates through the unrolled
iterations (costly in memory: every iteration is kept for the backward pass).
"""

from __future__ import annotations

import contextlib
import math
import numbers

import torch
import torch.nn.functional as F

from modalign.ot._checks import check_finite
from modalign.ot.lp import emd

__all__ = ["SOLVERS", "token_alignment_loss", "token_cost", "token_ot"]

SOLVERS = ("ipot", "sinkhorn", "exact")
_CHECK_EVERY = 10  # iterations between two convergence checks when tol is given
_ABSORB_MAX = 16  # most IPOT steps between two absorptions of the scalings into the plan


# ----------------------------------------------------------------------------- validation
def _check_tokens(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (B, tokens, d), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating tensor, got {x.dtype}")
    return x


def _check_mask(mask, name: str, shape: tuple[int, int], device) -> torch.Tensor:
    """A validated bool mask (True = real token), all True when ``mask`` is None."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have shape {tuple(shape)} (one flag per token, True = real), "
            f"got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        if torch.is_floating_point(mask) or torch.is_complex(mask):
            raise ValueError(f"{name} must be a bool tensor (True = real token), got {mask.dtype}")
        if bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError(f"{name} is an integer tensor with values other than 0 and 1")
        mask = mask != 0
    return mask.to(device)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16 / bfloat16 are computed in float32 (as the loss should be under AMP)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


# ----------------------------------------------------------------------------- cost
def token_cost(
    x: torch.Tensor,
    y: torch.Tensor,
    x_mask: torch.Tensor | None = None,
    y_mask: torch.Tensor | None = None,
    *,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Cosine cost ``C[k, i, j] = 1 - cos(x[k, i], y[k, j])`` between two batches of tokens.

    Shapes: ``x`` (B, T, d), ``y`` (B, S, d), masks (B, T) / (B, S) bool with True for real
    tokens (None: all real); returns ``C`` (B, T, S), with values in [0, 2] on real pairs.
    Vectors are normalised as ``v / max(||v||, eps)``, so a zero token has cosine 0 (cost 1)
    and a finite gradient. Padded tokens are replaced by zeros before anything else: their
    rows / columns of ``C`` are exactly 1, and their gradient is exactly zero whatever they
    hold (even NaN). float16 / bfloat16 inputs are computed in float32 (autocast is disabled
    inside), float32 / float64 in their own dtype.
    """
    x = _check_tokens(x, "x")
    y = _check_tokens(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same batch size, got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"x and y must have the same token dimension d, got x {tuple(x.shape)} "
            f"and y {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError(f"x is on {x.device} but y is on {y.device}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    x_mask = _check_mask(x_mask, "x_mask", x.shape[:2], x.device)
    y_mask = _check_mask(y_mask, "y_mask", y.shape[:2], y.device)
    dtype = _work_dtype(torch.promote_types(x.dtype, y.dtype))
    with torch.autocast(x.device.type, enabled=False):
        xn = F.normalize(torch.where(x_mask[..., None], x.to(dtype), 0.0), dim=-1, eps=eps)
        yn = F.normalize(torch.where(y_mask[..., None], y.to(dtype), 0.0), dim=-1, eps=eps)
        return 1 - xn @ yn.transpose(-1, -2)


# ----------------------------------------------------------------------------- solvers
def _matvec(mat: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """``mat @ vec`` batched: (B, n, m), (B, m) -> (B, n). Written as ``vec^T mat^T``:
    CPU BLAS is about twice as fast on that form than on a matrix-vector batch."""
    return torch.bmm(vec[..., None, :], mat.transpose(-1, -2))[..., 0, :]


def _vecmat(vec: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """``vec @ mat`` batched: (B, n), (B, n, m) -> (B, m)."""
    return torch.bmm(vec[..., None, :], mat)[..., 0, :]


def _all_finite(*tensors) -> bool:
    """Whether every entry is finite, tested on the sums (a NaN or inf entry makes its sum
    non-finite; a sum that overflows only sends the caller to its slower, safe path)."""
    return bool(torch.isfinite(torch.stack([t.sum() for t in tensors])).all())


def _plan_change_small(new, old, tol) -> bool:
    return float((new - old).abs().sum((-2, -1)).max()) < tol


def _ipot_scaling(kernel, r, a, b, n_iter, inner, tol, spread):
    """IPOT with scalings (Algorithm 1 of Xie et al.); None if a scaling left the float range.

    ``kernel`` is ``exp(-C / beta)`` (up to a constant per sample) with zeros outside the real
    pairs, ``r`` the indicator of the real pairs (the paper's start ``P = 1 1^T``; it is
    overwritten when no gradient is recorded). The plan is kept factored,
    ``P = diag(u) R diag(v)``: a step multiplies ``R`` by the kernel (the only pass over a
    matrix besides the two products) and folds the new scalings into the vectors ``u``, ``v``;
    every ``every`` steps they are multiplied into ``R``. Between two such absorptions the
    entries of ``R`` shrink by at most ``exp(-every * spread)``, which ``every`` keeps within
    half the float range; the gauge of ``(u, v)`` is fixed by ``max u = 1`` after every step.
    Plan entries below ``floor`` are set to exactly zero at an absorption: left alone they
    decay geometrically into the subnormal range, where CPU arithmetic is ~100x slower. The
    floor is far below any mass that counts (1e-25 in float32, against masses ~1 / n).
    """
    inplace = not torch.is_grad_enabled()
    dtype = kernel.dtype
    limit = _limit(dtype)
    floor = torch.finfo(dtype).tiny * math.exp(limit)
    every = max(1, min(_ABSORB_MAX, int(limit / 2 / max(spread, 1e-6))))
    row, col = (a > 0).to(dtype), (b > 0).to(dtype)
    pad_a, pad_b = 1 - row, 1 - col  # padded rows / columns: 0 / (0 + 1) = 0, not 0 / 0
    u, v = row, col
    sigma = delta = b
    for it in range(n_iter):
        check = tol is not None and (it + 1) % _CHECK_EVERY == 0
        old = _factored(r, u, v) if check else None
        r = r.mul_(kernel) if inplace else r * kernel  # Q = kernel * P, still factored
        for _ in range(inner):
            delta = a / torch.addcmul(pad_a, u, _matvec(r, v * sigma))
            u_delta = u * delta
            sigma = b / torch.addcmul(pad_b, v, _vecmat(u_delta, r))
        u, v = u_delta, v * sigma  # P = diag(delta) Q diag(sigma)
        scale = u.amax(-1, keepdim=True)
        scale = torch.where(scale > 0, scale, 1.0)
        u, v = u / scale, v * scale
        if (it + 1) % every == 0 or it + 1 == n_iter or check:
            outer = torch.bmm(u[..., :, None], v[..., None, :])
            if inplace:
                r = F.threshold_(r.mul_(outer), floor, 0.0)
            else:
                r = F.threshold(r * outer, floor, 0.0)
            u, v = row, col
            if check and _plan_change_small(r, old, tol):
                break
    return r if _all_finite(delta, sigma, r) else None


def _factored(r, u, v):
    return r * u[..., :, None] * v[..., None, :]


def _ipot_log(log_k, joint, log_a, log_b, row_mask, col_mask, n_iter, inner, tol):
    """IPOT in the log domain: the same iterations, for kernels with a large dynamic range."""
    fill_rows, fill_cols = _lse_fills(row_mask, col_mask, log_k.dtype)
    log_g = torch.where(joint, log_k, 0.0)
    log_p = torch.where(joint, 0.0, -math.inf).to(log_k.dtype)
    log_sigma = log_b
    log_delta = log_a
    for it in range(n_iter):
        check = tol is not None and (it + 1) % _CHECK_EVERY == 0
        old = log_p.exp() if check else None
        log_q = log_g + log_p
        for _ in range(inner):
            lse = torch.logsumexp(
                torch.where(joint, log_q + log_sigma[..., None, :], fill_rows), -1
            )
            log_delta = torch.where(row_mask, log_a - lse, 0.0)
            lse = torch.logsumexp(
                torch.where(joint, log_q + log_delta[..., :, None], fill_cols), -2
            )
            log_sigma = torch.where(col_mask, log_b - lse, 0.0)
        log_p = torch.where(
            joint, log_q + log_delta[..., :, None] + log_sigma[..., None, :], -math.inf
        )
        if check and _plan_change_small(log_p.exp(), old, tol):
            break
    return log_p.exp()


def _sinkhorn_scaling(kernel, a, b, n_iter, tol):
    """Sinkhorn with scalings, in POT's order (columns, then rows); None on overflow.
    ``kernel`` as in :func:`_ipot_scaling`."""
    dtype = kernel.dtype
    pad_a, pad_b = (a == 0).to(dtype), (b == 0).to(dtype)
    u = (a > 0).to(dtype)  # POT starts from u = 1 / n: the scale of u is immaterial
    v = b
    for it in range(n_iter):
        v = b / (_vecmat(u, kernel) + pad_b)
        u = a / (_matvec(kernel, v) + pad_a)
        if tol is not None and (it + 1) % _CHECK_EVERY == 0:
            col = v * _vecmat(u, kernel)
            if float((col - b).abs().sum(-1).max()) < tol:
                break
    plan = u[..., :, None] * kernel * v[..., None, :]
    return plan if _all_finite(u, v, plan) else None


def _sinkhorn_log(log_k, joint, log_a, log_b, row_mask, col_mask, n_iter, tol):
    """Log-domain Sinkhorn: the same iterations as :func:`_sinkhorn_scaling`."""
    fill_rows, fill_cols = _lse_fills(row_mask, col_mask, log_k.dtype)
    log_k = torch.where(joint, log_k, 0.0)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for it in range(n_iter):
        lse = torch.logsumexp(torch.where(joint, log_k + f[..., :, None], fill_cols), -2)
        g = torch.where(col_mask, log_b - lse, 0.0)
        lse = torch.logsumexp(torch.where(joint, log_k + g[..., None, :], fill_rows), -1)
        f = torch.where(row_mask, log_a - lse, 0.0)
        if tol is not None and (it + 1) % _CHECK_EVERY == 0:
            lse = torch.logsumexp(torch.where(joint, log_k + f[..., :, None], fill_cols), -2)
            col = torch.where(col_mask, (lse + g).exp(), 0.0)
            if float((col - log_b.exp()).abs().sum(-1).max()) < tol:
                break
    return torch.where(joint, (log_k + f[..., :, None] + g[..., None, :]).exp(), 0.0)


def _lse_fills(row_mask, col_mask, dtype):
    """Values for the entries outside the joint mask in a log-sum-exp over columns (rows):
    -inf in a real row (column), so they add nothing; 0 in a padded one, so that its sum
    stays finite (it is discarded) and no NaN reaches the backward pass."""
    inf = torch.tensor(-math.inf, dtype=dtype, device=row_mask.device)
    zero = torch.zeros((), dtype=dtype, device=row_mask.device)
    return torch.where(row_mask[..., :, None], inf, zero), torch.where(
        col_mask[..., None, :], inf, zero
    )


def _limit(dtype: torch.dtype) -> float:
    """Largest dynamic range ``(max C - min C) / beta`` solved with scalings."""
    return 30.0 if dtype == torch.float32 else 300.0


def _exact(cost, row_mask, col_mask) -> torch.Tensor:
    """Exact plans, one network simplex per sample on its real tokens only (CPU, float64)."""
    host = cost.detach().to("cpu", torch.float64)
    rows_all, cols_all = row_mask.cpu(), col_mask.cpu()
    plan = torch.zeros_like(host)
    for k in range(host.shape[0]):
        rows = rows_all[k].nonzero()[:, 0]
        cols = cols_all[k].nonzero()[:, 0]
        if len(rows) == 0 or len(cols) == 0:
            continue
        sub = host[k].index_select(0, rows).index_select(1, cols)
        plan[k, rows[:, None], cols[None, :]] = emd(None, None, sub)
    return plan.to(device=cost.device, dtype=cost.dtype)


def _solve(
    cost,
    a_mask,
    b_mask,
    *,
    solver,
    beta,
    n_iter,
    inner_iter,
    tol,
    detach_plan,
    empty,
    names=("a_mask", "b_mask"),
):
    if not isinstance(cost, torch.Tensor):
        raise TypeError(f"cost must be a torch.Tensor, got {type(cost).__name__}")
    if cost.dim() != 3:
        raise ValueError(f"cost must have shape (B, T, S), got {tuple(cost.shape)}")
    if not torch.is_floating_point(cost):
        raise ValueError(f"cost must be a floating tensor, got {cost.dtype}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if not (isinstance(beta, numbers.Real) and beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    for name, value in (("n_iter", n_iter), ("inner_iter", inner_iter)):
        if not (isinstance(value, numbers.Integral) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if tol is not None and not tol > 0:
        raise ValueError(f"tol must be positive or None, got {tol!r}")
    if empty not in ("raise", "zero"):
        raise ValueError(f"empty must be 'raise' or 'zero', got {empty!r}")
    batch, n, m = cost.shape
    row_mask = _check_mask(a_mask, names[0], (batch, n), cost.device)
    col_mask = _check_mask(b_mask, names[1], (batch, m), cost.device)
    n_a, n_b = row_mask.sum(-1), col_mask.sum(-1)
    void = (n_a == 0) | (n_b == 0)
    if bool(void.any()):
        if empty == "raise":
            k = int(void.nonzero()[0, 0])
            side = names[0] if int(n_a[k]) == 0 else names[1]
            raise ValueError(
                f"sample {k} has no real token in {side} (side "
                f"{'a, the rows' if side == names[0] else 'b, the columns'} of the cost): "
                "drop it from the batch, or pass empty='zero' to give it plan 0 and value 0"
            )
        # A sample with one side empty gets no mass on either side.
        row_mask = row_mask & ~void[:, None]
        col_mask = col_mask & ~void[:, None]
        n_a, n_b = row_mask.sum(-1), col_mask.sum(-1)
    # (a product of uint8 is several times faster than a broadcast of bool & bool on CPU)
    joint = (row_mask.to(torch.uint8)[..., :, None] * col_mask.to(torch.uint8)[..., None, :]).bool()
    dtype = _work_dtype(cost.dtype)
    with torch.autocast(cost.device.type, enabled=False):
        cost = torch.where(joint, cost.to(dtype), 0.0)
        if cost.numel() == 0:
            return torch.zeros_like(cost), cost.sum((-2, -1))
        # Each sample's range, padded zeros included; a NaN or inf on a real pair shows here.
        flat = cost.detach().flatten(1)
        lo, hi = flat.amin(1), flat.amax(1)  # (torch.aminmax is ~8x slower on CPU)
        if not bool(torch.isfinite(hi - lo).all()):
            check_finite(cost.detach(), "cost (on real token pairs)")
        if solver == "exact":
            plan = _exact(cost, row_mask, col_mask)
        else:
            grad = contextlib.nullcontext() if not detach_plan else torch.no_grad()
            with grad:
                plan = _iterate(
                    cost,
                    joint,
                    row_mask,
                    col_mask,
                    n_a,
                    n_b,
                    lo,
                    hi,
                    solver,
                    beta,
                    n_iter,
                    inner_iter,
                    tol,
                )
        if detach_plan or solver == "exact":
            plan = plan.detach()
        value = (plan * cost).sum((-2, -1))
    return plan, value


def _iterate(cost, joint, row_mask, col_mask, n_a, n_b, lo, hi, solver, beta, n_iter, inner, tol):
    """IPOT or Sinkhorn on the whole batch; ``cost`` is zero outside the real pairs and
    ``lo``, ``hi`` (B,) bound each sample's real costs from below and above."""
    dtype = cost.dtype
    limit = _limit(dtype)
    a = row_mask.to(dtype) / n_a.clamp_min(1).to(dtype)[:, None]
    b = col_mask.to(dtype) / n_b.clamp_min(1).to(dtype)[:, None]
    # Shifting the cost of a sample by a constant leaves both algorithms' plans unchanged
    # (it rescales the kernel, which the scalings absorb) and keeps the kernel in (0, 1].
    spread = float((hi - lo).max()) / beta
    if spread > limit:  # the bounds include the padded zeros: the exact range, to be sure
        detached = cost.detach()
        lo = torch.where(joint, detached, math.inf).amin((-2, -1))
        hi = torch.where(joint, detached, -math.inf).amax((-2, -1))
        lo = torch.where(torch.isfinite(lo), lo, 0.0)
        spread = float(torch.where(torch.isfinite(hi), hi - lo, 0.0).max()) / beta
    lo = lo[:, None, None]
    plan = None
    if spread <= limit:
        indicator = joint.to(dtype)
        if torch.is_grad_enabled():
            kernel = ((lo - cost) / beta).exp() * indicator
        else:
            kernel = torch.sub(lo, cost).div_(beta).exp_().mul_(indicator)
        if solver == "ipot":
            plan = _ipot_scaling(kernel, indicator, a, b, n_iter, inner, tol, spread)
        else:
            plan = _sinkhorn_scaling(kernel, a, b, n_iter, tol)
    if plan is None:  # a dynamic range beyond the float range: log domain
        log_k = (lo - cost) / beta
        log_a = torch.where(row_mask, a.log(), 0.0)
        log_b = torch.where(col_mask, b.log(), 0.0)
        if solver == "ipot":
            plan = _ipot_log(log_k, joint, log_a, log_b, row_mask, col_mask, n_iter, inner, tol)
        else:
            plan = _sinkhorn_log(log_k, joint, log_a, log_b, row_mask, col_mask, n_iter, tol)
    return plan


# ----------------------------------------------------------------------------- public
def token_ot(
    cost: torch.Tensor,
    a_mask: torch.Tensor | None = None,
    b_mask: torch.Tensor | None = None,
    *,
    solver: str = "ipot",
    beta: float = 0.5,
    n_iter: int = 50,
    inner_iter: int = 1,
    tol: float | None = None,
    detach_plan: bool = True,
    empty: str = "raise",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transport plans between the real tokens of every sample, and their costs ``<P, C>``.

    For each sample ``k``: ``P_k = argmin <C_k, P>`` (approximately, see the solvers) over
    ``P >= 0`` with ``P 1 = a_k``, ``P^T 1 = b_k``, where ``a_k`` is ``1 / n_k`` on the
    ``n_k`` real rows (``a_mask[k]``) and 0 on padded ones, ``b_k`` likewise over columns.
    Returns ``(plan, value)``: ``plan`` (B, T, S), exactly 0 on every padded row and column,
    and ``value[k] = <P_k, C_k>`` (B,).

    Shapes: ``cost`` (B, T, S) (e.g. from :func:`token_cost`), ``a_mask`` (B, T) and
    ``b_mask`` (B, S) bool, True = real token (None: all real; 0/1 integer masks are
    accepted). Cost entries outside the real pairs are never read (they may be NaN).

    Solvers (see the module docstring for the formulations):

    * ``"ipot"`` (default, as UNITER): ``n_iter`` proximal steps of size ``beta``, each
      solved by ``inner_iter`` Sinkhorn sweeps (rows, then columns). The plan has exact
      column sums ``b`` and row sums within the inner solve's accuracy; it tends to the
      exact plan as ``n_iter`` grows. With ``tol``, stops early once no sample's plan changed
      by more than ``tol`` (L1) in one step (checked every 10 steps).
    * ``"sinkhorn"``: entropic OT with strength ``epsilon = beta``; ``n_iter`` iterations of
      a column then a row scaling, in POT's order from POT's start (``ot.sinkhorn`` with
      ``reg=beta, numItermax=n_iter`` gives the same plan), so row sums are exact. With
      ``tol``, stops once every sample's column marginal error (L1) is below ``tol``.
    * ``"exact"``: exact OT, one network simplex per sample on the CPU in float64.

    IPOT and Sinkhorn solve the whole batch at once on the cost's device (no loop over
    samples), with scalings when every sample's ``(max C - min C) / beta`` is at most 30
    (float32) or 300 (float64), in the log domain otherwise (or should a scaling overflow).
    float16 / bfloat16 costs are solved in float32, and autocast is disabled inside.

    ``detach_plan`` (default True): the plan is computed without gradient and held fixed,
    so the gradient of ``value`` w.r.t. ``cost`` is the plan (envelope theorem, see the module
    docstring). False differentiates through the unrolled iterations (not for ``"exact"``,
    whose plan is always fixed: its gradient is the plan anyway).

    ``empty``: a sample with no real token on one side raises a ValueError naming the sample
    and the side (``"raise"``, default), or (``"zero"``) gets plan 0 and value 0.
    """
    return _solve(
        cost,
        a_mask,
        b_mask,
        solver=solver,
        beta=beta,
        n_iter=n_iter,
        inner_iter=inner_iter,
        tol=tol,
        detach_plan=detach_plan,
        empty=empty,
    )


def token_alignment_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    x_mask: torch.Tensor | None = None,
    y_mask: torch.Tensor | None = None,
    *,
    eps: float = 1e-8,
    **kw,
) -> torch.Tensor:
    """The alignment loss ``OT_beta`` between two modalities' tokens, a scalar.

    ``mean_k <P_k, C_k>`` with ``C = token_cost(x, y, x_mask, y_mask, eps=eps)`` and ``P``
    from :func:`token_ot` (keyword arguments ``solver``, ``beta``, ``n_iter``, ``inner_iter``,
    ``tol``, ``detach_plan``, ``empty`` are passed on). Shapes: ``x`` (B, T, d), ``y``
    (B, S, d), masks (B, T) / (B, S), True = real token. The paper's weight ``alpha`` is the
    caller's to apply. With ``empty="zero"`` the mean runs over the samples that have real
    tokens on both sides (0, still attached to the graph, when there are none), so that
    samples with a missing modality do not dilute the loss.
    """
    cost = token_cost(x, y, x_mask, y_mask, eps=eps)
    options = {
        "solver": "ipot",
        "beta": 0.5,
        "n_iter": 50,
        "inner_iter": 1,
        "tol": None,
        "detach_plan": True,
        "empty": "raise",
    }
    unknown = set(kw) - set(options)
    if unknown:
        raise TypeError(f"token_alignment_loss got unexpected keyword(s) {sorted(unknown)}")
    options.update(kw)
    _, value = _solve(cost, x_mask, y_mask, names=("x_mask", "y_mask"), **options)
    if options["empty"] == "zero":
        x_real = _check_mask(x_mask, "x_mask", x.shape[:2], x.device).any(-1)
        y_real = _check_mask(y_mask, "y_mask", y.shape[:2], y.device).any(-1)
        counted = (x_real & y_real).sum().clamp_min(1)
        return value.sum() / counted.to(value.dtype)
    return value.mean()
