"""Closed-form 2-Wasserstein distance between Gaussians."""

from __future__ import annotations

import torch


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
