"""Closed-form 2-Wasserstein distance between Gaussians."""

from __future__ import annotations

import torch


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root by eigendecomposition, batched (..., d, d)."""
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt()[..., None, :]) @ vecs.transpose(-1, -2)


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
