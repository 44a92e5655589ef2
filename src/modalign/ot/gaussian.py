"""Closed-form 2-Wasserstein distances and barycenters of Gaussians, and Gaussian KLs."""

from __future__ import annotations

import torch

from modalign.ot._checks import check_finite


class _SqrtmPSD(torch.autograd.Function):
    """Square root of a symmetric PSD matrix, batched (..., d, d), with a Sylvester backward.

    Forward: ``A = V diag(l) V^T`` (``eigh``), ``R = V diag(sqrt(l)) V^T``. Backward: ``dR``
    and ``dA`` are tied by ``R dR + dR R = dA``, so the gradient ``X`` for an output gradient
    ``G`` solves ``R X + X R = G``; in the eigenbasis ``X~_ij = G~_ij / (s_i + s_j)`` with
    ``s = sqrt(l)``. Unlike differentiating ``eigh`` (which divides by ``l_i - l_j``), this
    stays finite for repeated eigenvalues (``A = I``, ``A = cI``); it is infinite only where
    ``A`` is singular, where the square root is not differentiable, and there the divisor is
    floored at a tiny multiple of the largest root.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:
        values, vectors = torch.linalg.eigh(a)
        roots = values.clamp_min(0).sqrt()
        ctx.save_for_backward(roots, vectors)
        return (vectors * roots[..., None, :]) @ vectors.transpose(-1, -2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        roots, vectors = ctx.saved_tensors
        denominator = roots[..., :, None] + roots[..., None, :]
        info = torch.finfo(roots.dtype)
        floor = (denominator.amax(dim=(-1, -2), keepdim=True) * info.eps).clamp_min(info.tiny)
        rotated = vectors.transpose(-1, -2) @ grad @ vectors
        solved = rotated / torch.maximum(denominator, floor)
        return vectors @ solved @ vectors.transpose(-1, -2)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root (..., d, d) of ``(a + a^T) / 2``, differentiable everywhere
    ``a`` is positive definite (see :class:`_SqrtmPSD`). Symmetrising first makes the
    function, and so its gradient, depend on both triangles (``eigh`` reads only one)."""
    return _SqrtmPSD.apply(0.5 * (a + a.transpose(-1, -2)))


def gaussian_w2(
    mu1: torch.Tensor,
    cov1: torch.Tensor,
    mu2: torch.Tensor,
    cov2: torch.Tensor,
    *,
    diagonal: bool | None = None,
) -> torch.Tensor:
    """Squared 2-Wasserstein distance ``W2^2(N(mu1, S1), N(mu2, S2))``, batched, differentiable.

    ``W2^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})`` (the Bures form).
    The matrix square roots have a Sylvester-equation backward, finite also when a
    covariance has repeated eigenvalues (isotropic ``S = cI``).
    Diagonal case: pass standard deviations ``sigma`` of shape (..., d) as ``cov1``/``cov2``
    (``diagonal=True``, the default when they have the means' shape); then
    ``W2^2 = |mu1 - mu2|^2 + |sigma1 - sigma2|^2``. Full case: covariances (..., d, d).
    Returns shape (...,).
    """
    if mu1.shape != mu2.shape:
        raise ValueError(f"means have shapes {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    # A NaN would come out as a NaN distance, or stop eigh with a LinAlgError naming nothing.
    for name, t in (("mu1", mu1), ("cov1", cov1), ("mu2", mu2), ("cov2", cov2)):
        check_finite(t.detach(), name)
    if diagonal is None:
        if cov1.shape == mu1.shape and mu1.dim() >= 2 and mu1.shape[-2] == mu1.shape[-1]:
            raise ValueError(
                f"covariances of shape {tuple(cov1.shape)} could be standard deviations or "
                "square covariances: pass diagonal=True or diagonal=False"
            )
        diagonal = cov1.shape == mu1.shape
    mean_term = ((mu1 - mu2) ** 2).sum(-1)
    if diagonal:
        if cov1.shape != mu1.shape or cov2.shape != mu2.shape:
            raise ValueError("diagonal Gaussians take standard deviations shaped like the means")
        if bool((cov1 < 0).any() or (cov2 < 0).any()):
            raise ValueError("standard deviations must be non-negative")
        return mean_term + ((cov1 - cov2) ** 2).sum(-1)
    d = mu1.shape[-1]
    if cov1.shape[-2:] != (d, d) or cov2.shape[-2:] != (d, d):
        raise ValueError(f"covariances must be (..., {d}, {d})")
    root1 = _sqrtm_psd(cov1)
    cross = _sqrtm_psd(root1 @ cov2 @ root1)
    trace = torch.diagonal(cov1 + cov2 - 2 * cross, dim1=-2, dim2=-1).sum(-1)
    return mean_term + trace.clamp_min(0)


def _barycenter_weights(weights: torch.Tensor | None, k: int, like: torch.Tensor) -> torch.Tensor:
    """Validated barycentric weights (K,) in the dtype and on the device of ``like``."""
    if weights is None:
        return torch.full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
    weights = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if weights.shape != (k,):
        raise ValueError(
            f"weights must have shape ({k},) for K={k} Gaussians, got {tuple(weights.shape)}"
        )
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError("weights must be finite and non-negative")
    total = float(weights.detach().sum())
    # slack for weights normalised in float32, which sum to 1 only up to rounding
    if abs(total - 1.0) > 1e-5:
        raise ValueError(f"weights must sum to 1, got sum {total:.6g}")
    return weights


def _check_definite(covs: torch.Tensor, start: torch.Tensor) -> None:
    """Refuse covariances that are not positive semi-definite, and a start ``sum_k w_k S_k``
    that is not positive definite: the fixed-point iteration divides by its square root, and
    such input used to stop ``torch.linalg.solve`` ("the input matrix is singular")."""
    with torch.no_grad():
        eps = torch.finfo(covs.dtype).eps
        eig = torch.linalg.eigvalsh(covs.detach())
        # Generous slack: L L^T in float32 may show eigenvalues a few ulps below zero.
        floor = -16 * eig.shape[-1] * eps * eig.abs().amax(-1)
        if bool((eig[..., 0] < floor).any()):
            raise ValueError(
                f"covs are not positive semi-definite (an eigenvalue of {float(eig.min()):.3g})"
            )
        eig = torch.linalg.eigvalsh(start.detach())
        # Singular to the dtype's precision (condition number beyond 1 / eps), not merely
        # ill-conditioned: the iteration copes with the latter.
        if not bool((eig[..., 0] > eps * eig[..., -1]).all()):
            raise ValueError(
                "covs have a singular weighted sum (smallest eigenvalue "
                f"{float(eig[..., 0].min()):.3g}); the fixed-point iteration needs at least "
                "one positive definite covariance of positive weight"
            )


def gaussian_barycenter(
    means: torch.Tensor,
    covs: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    diagonal: bool | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """2-Wasserstein barycenter of K Gaussians ``N(m_k, S_k)``, batched, differentiable.

    The barycenter ``argmin_{N(m, S)} sum_k w_k W2^2(N(m, S), N(m_k, S_k))`` is Gaussian with
    ``m = sum_k w_k m_k`` and ``S`` the unique positive definite solution of
    ``S = sum_k w_k (S^{1/2} S_k S^{1/2})^{1/2}`` (Agueh and Carlier 2011).

    * Diagonal Gaussians (``covs`` holds standard deviations (..., K, d)): all covariances
      commute, so the standard deviation is closed form, ``sigma = sum_k w_k sigma_k``.
    * Full covariances (``covs`` (..., K, d, d)): the fixed-point iteration of
      Alvarez-Esteban et al. (2016),
      ``S <- S^{-1/2} (sum_k w_k (S^{1/2} S_k S^{1/2})^{1/2})^2 S^{-1/2}``,
      started at ``sum_k w_k S_k`` and stopped once ``|S_new - S|_F / |S|_F < tol`` for every
      batch element (or after ``max_iter`` steps). Gradients flow through the unrolled
      iterations; the matrix square roots use the Sylvester backward of :func:`_sqrtm_psd`,
      finite also at isotropic covariances ``S_k = c_k I``. ``tol`` is floored at
      ``100 * eps`` of the dtype (about 1.2e-5 in float32, no effect in float64): in float32
      the relative change stalls at rounding noise near 1e-6 and would never reach 1e-10.

    Args:
        means: (..., K, d) means of the K Gaussians.
        covs: (..., K, d) standard deviations (diagonal) or (..., K, d, d) covariances.
        weights: (K,) non-negative, summing to 1; uniform when omitted.
        diagonal: whether ``covs`` holds standard deviations; inferred from its number of
            dimensions when omitted (``covs.dim() == means.dim()`` means diagonal).
        max_iter: most fixed-point steps (full case).
        tol: relative Frobenius change that stops the iteration (full case).

    Returns:
        ``(mean (..., d), std (..., d))`` for diagonal Gaussians,
        ``(mean (..., d), cov (..., d, d))`` for full covariances.
    """
    if means.dim() < 2:
        raise ValueError(f"means must be (..., K, d), got shape {tuple(means.shape)}")
    k, d = means.shape[-2:]
    if k < 1 or d < 1:
        raise ValueError(
            f"means must hold at least one Gaussian of dimension >= 1, got K={k}, d={d}"
        )
    check_finite(means.detach(), "means")
    check_finite(covs.detach(), "covs")
    if diagonal is None:
        diagonal = covs.dim() == means.dim()
    if diagonal:
        if covs.shape != means.shape:
            raise ValueError(
                f"covs must be standard deviations shaped like means {tuple(means.shape)}, "
                f"got {tuple(covs.shape)}"
            )
        if bool((covs < 0).any()):
            raise ValueError("covs: standard deviations must be non-negative")
    elif covs.shape != (*means.shape, d):
        raise ValueError(
            f"covs must be covariances of shape {(*means.shape, d)} for means of shape "
            f"{tuple(means.shape)}, got {tuple(covs.shape)}"
        )
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if tol < 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    w = _barycenter_weights(weights, k, means)
    mean = (w[:, None] * means).sum(-2)
    if diagonal:
        return mean, (w[:, None] * covs).sum(-2)

    # below ~100 ulps the change is rounding noise of the eigendecompositions, not progress,
    # and every extra (unrolled) step costs memory and time in the backward
    tol = max(tol, 100 * torch.finfo(means.dtype).eps)
    w_mat = w[:, None, None]
    # symmetrise once: eigh-based roots read one triangle, the update must see both
    covs = 0.5 * (covs + covs.transpose(-1, -2))
    s = (w_mat * covs).sum(-3)
    _check_definite(covs, s)
    for _ in range(max_iter):
        root = _sqrtm_psd(s)
        r = root.unsqueeze(-3)
        middle = (w_mat * _sqrtm_psd(r @ covs @ r)).sum(-3)
        # R^{-1} M^2 R^{-1} = (R^{-1} M)(R^{-1} M)^T for symmetric M, R: symmetric PSD by
        # construction, and a solve is better conditioned than forming R^{-1}
        half = torch.linalg.solve(root, middle)
        new = half @ half.transpose(-1, -2)
        with torch.no_grad():
            scale = torch.linalg.matrix_norm(s).clamp_min(torch.finfo(s.dtype).tiny)
            change = float((torch.linalg.matrix_norm(new - s) / scale).max())
        s = new
        if change < tol:
            break
    return mean, s


def kl_normal(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    mu_prior: torch.Tensor | None = None,
    logvar_prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(mu_p, diag exp(logvar_p)))`` summed over the last dim.

    ``KL = 0.5 sum_j (logvar_p - logvar + (exp(logvar) + (mu - mu_p)^2) / exp(logvar_p) - 1)``.
    ``logvar`` and ``logvar_prior`` are log-variances (not log standard deviations). The
    prior defaults to ``N(0, I)``; the arguments broadcast against each other, e.g. ``mu``,
    ``logvar`` (..., d) with a prior (d,). Returns shape (...,).
    """
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got {tuple(mu.shape)} and "
            f"{tuple(logvar.shape)}"
        )
    mu_p = torch.zeros((), dtype=mu.dtype, device=mu.device) if mu_prior is None else mu_prior
    lv_p = (
        torch.zeros((), dtype=mu.dtype, device=mu.device) if logvar_prior is None else logvar_prior
    )
    for name, t in (("mu_prior", mu_p), ("logvar_prior", lv_p)):
        try:
            torch.broadcast_shapes(mu.shape, t.shape)
        except RuntimeError as err:
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} does not broadcast against mu {tuple(mu.shape)}"
            ) from err
    # exp(logvar - logvar_p) rather than a ratio of exponentials: no overflow for large logvars
    inv_var_p = torch.exp(-lv_p)
    terms = lv_p - logvar + torch.exp(logvar - lv_p) + (mu - mu_p) ** 2 * inv_var_p - 1
    return 0.5 * terms.sum(-1)


def kl_normal_full(mu: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, L L^T) || N(0, I))`` for a lower-triangular Cholesky factor ``L``.

    ``KL = 0.5 (tr S + |mu|^2 - d - log det S)`` with ``S = L L^T``, ``tr S = |L|_F^2`` and
    ``log det S = 2 sum_j log L_jj``; only the lower triangle of ``scale_tril`` is read and
    its diagonal must be positive. Shapes: ``mu`` (..., d), ``scale_tril`` (..., d, d);
    returns (...,). With a diagonal ``L = diag(exp(0.5 logvar))`` it is
    :func:`kl_normal` ``(mu, logvar)``.
    """
    d = mu.shape[-1]
    if scale_tril.shape != (*mu.shape, d):
        raise ValueError(
            f"scale_tril must have shape {(*mu.shape, d)} for mu of shape {tuple(mu.shape)}, "
            f"got {tuple(scale_tril.shape)}"
        )
    tril = torch.tril(scale_tril)
    log_diag = torch.log(torch.diagonal(tril, dim1=-2, dim2=-1))
    trace = (tril**2).sum((-2, -1))
    return 0.5 * (trace + (mu**2).sum(-1) - d - 2 * log_diag.sum(-1))
