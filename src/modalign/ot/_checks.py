"""Input validation shared by the solvers: clear errors instead of NaNs deep inside a loop."""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def as_tensor(
    x: ArrayLike,
    name: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Convert ``x`` to a floating tensor, keeping its device and dtype unless told otherwise."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        x = x.to(torch.get_default_dtype() if dtype is None else dtype)
    return x.to(device=device if device is not None else x.device, dtype=dtype or x.dtype)


def check_finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


def check_matrix(x: torch.Tensor, name: str, rows: int | None = None, cols: int | None = None):
    if x.dim() < 2:
        raise ValueError(f"{name} must be a matrix (..., n, m), got shape {tuple(x.shape)}")
    if rows is not None and x.shape[-2] != rows:
        raise ValueError(f"{name} has {x.shape[-2]} rows, expected {rows}")
    if cols is not None and x.shape[-1] != cols:
        raise ValueError(f"{name} has {x.shape[-1]} columns, expected {cols}")
    check_finite(x, name)


def marginal(
    w: ArrayLike | None, n: int, name: str, like: torch.Tensor, *, batch: tuple[int, ...] = ()
) -> torch.Tensor:
    """Return a validated probability vector of length ``n`` (uniform when ``w`` is None).

    Marginals must be finite, non-negative and sum to one: an unnormalised marginal is almost
    always a caller's bug, and silently renormalising would hide it.
    """
    if w is None:
        return torch.full((*batch, n), 1.0 / n, dtype=like.dtype, device=like.device)
    w = as_tensor(w, name, dtype=like.dtype, device=like.device)
    if w.shape[-1] != n:
        raise ValueError(f"{name} has length {w.shape[-1]}, but the problem has {n} points")
    check_finite(w, name)
    if bool((w < 0).any()):
        raise ValueError(f"{name} has negative entries: marginals must be non-negative")
    total = w.sum(-1)
    tol = 1e-4 if w.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-8
    if bool(((total - 1).abs() > tol).any()):
        raise ValueError(
            f"{name} sums to {total.detach().flatten()[:4].tolist()}, not 1: "
            "normalise it (w / w.sum()) before calling"
        )
    return w


def float_tol(dtype: torch.dtype, f32: float, f64: float) -> float:
    """Pick a tolerance that the dtype can actually meet."""
    return f64 if dtype == torch.float64 else f32
