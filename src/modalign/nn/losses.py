"""Losses shared by the methods: reconstruction error and latent regularisers."""

from __future__ import annotations

import torch
from torch import Tensor


def imq_mmd(z: Tensor, prior: Tensor, scales: tuple[float, ...] = (0.1, 0.2, 0.5, 1, 2, 5, 10)):
    """Unbiased MMD^2 between codes ``z`` (B, d) and prior samples ``prior`` (B', d).

    Inverse multiquadratic kernels ``k(a, b) = C / (C + |a - b|^2)`` with ``C = 2 d s`` for
    each scale ``s``, summed: the WAE-MMD regulariser of Tolstikhin et al. (2018), whose heavy
    tails keep gradients alive for codes far from the prior.
    """
    d = z.shape[1]
    both = torch.cat([z, prior])
    sq = torch.cdist(both, both).pow(2)
    n, m = len(z), len(prior)
    total = z.new_zeros(())
    off_zz = ~torch.eye(n, dtype=torch.bool, device=z.device)
    off_pp = ~torch.eye(m, dtype=torch.bool, device=z.device)
    for s in scales:
        c = 2.0 * d * s
        k = c / (c + sq)
        total = total + k[:n, :n][off_zz].mean() + k[n:, n:][off_pp].mean() - 2 * k[:n, n:].mean()
    return total


def reconstruction_error(x_hat: Tensor, x: Tensor) -> Tensor:
    """Squared error summed over features, averaged over rows: ``mean_i |x_i - x^_i|^2``.

    Summing (not averaging) over features keeps the scale of a row's norm, so views of very
    different widths weigh alike after row normalisation or per-feature z-scoring.
    """
    return ((x_hat - x) ** 2).sum(-1).mean()


def distance_stress(x: Tensor, codes: Tensor, *, reference: Tensor | None = None) -> Tensor:
    """Scale-free stress between the rows' distances in the input and in the code space.

    ``x`` (B, D) and ``codes`` (B, d) hold the same B rows. With ``D^x`` and ``D^z`` their
    Euclidean distances over the ``B (B - 1) / 2`` row pairs, the loss is the mean over pairs
    of ``(D^x / mean(D^x) - D^z / mean(D^z))^2``: zero exactly when the codes are a scaled
    isometry of the inputs on the batch, so it keeps each view's cluster structure (which rows
    are near which) without fixing the codes' scale, which the WAE prior sets. The input side
    is a constant (no gradient). A batch of fewer than two rows, or of identical inputs, has no
    structure to keep and costs zero. ``reference`` (B, B): dissimilarities to keep in place of
    the inputs' distances (e.g. fused across modalities), used the same way.
    """
    if x.shape[0] != codes.shape[0]:
        raise ValueError(f"x and codes must hold the same rows, got {len(x)} and {len(codes)}")
    n = x.shape[0]
    if n < 2:
        return codes.sum() * 0.0
    i, j = torch.triu_indices(n, n, 1, device=codes.device)
    with torch.no_grad():
        dx = (torch.cdist(x, x) if reference is None else reference.to(codes))[i, j]
        scale = dx.mean()
        # Identical inputs are masked out as a tensor, not tested in Python: no device sync
        # per batch on the training path (the division is exact whenever scale > 0).
        dx = dx / scale.clamp_min(torch.finfo(dx.dtype).tiny)
    # The small floor keeps the square root's gradient finite for coinciding codes.
    dz = ((codes[i] - codes[j]).pow(2).sum(1) + 1e-12).sqrt()
    return (dx - dz / dz.mean()).pow(2).mean() * (scale > 0)
