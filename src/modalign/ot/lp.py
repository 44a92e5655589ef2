"""Exact optimal transport through POT's network simplex, with torch in and out."""

from __future__ import annotations

import numpy as np
import ot as pot
import torch

from modalign.ot._checks import ArrayLike, as_tensor, check_matrix, marginal


def emd(
    a: ArrayLike | None,
    b: ArrayLike | None,
    cost: ArrayLike,
    *,
    max_iter: int = 10_000_000,
    log: bool = False,
):
    """Exact OT plan ``argmin_T <cost, T>`` s.t. ``T 1 = a``, ``T^T 1 = b``, ``T >= 0``.

    Shapes: ``cost`` (n, m), ``a`` (n,), ``b`` (m,) (uniform when None). The network simplex
    runs on the CPU in float64 (POT's C++ solver); the plan comes back on the cost's device
    and dtype, so the function is usable on any device. ``max_iter`` is the simplex's pivot
    cap, raised well above POT's default, which is reached near n = 2000. With ``log``, also
    returns a dict with the dual potentials ``u``, ``v`` and the ``cost``.
    """
    cost = as_tensor(cost, "cost")
    check_matrix(cost, "cost")
    if cost.dim() != 2:
        raise ValueError(f"emd takes one (n, m) cost matrix, got shape {tuple(cost.shape)}")
    n, m = cost.shape
    a = marginal(a, n, "a", cost)
    b = marginal(b, m, "b", cost)
    a64 = a.detach().cpu().double().numpy()
    b64 = b.detach().cpu().double().numpy()
    # The simplex needs exactly equal masses; absorb float rounding into b.
    b64 = b64 * (a64.sum() / b64.sum())
    c64 = np.ascontiguousarray(cost.detach().cpu().double().numpy())
    # POT's network simplex reports some problems with negative costs infeasible (a 1 x 1
    # cost of -5, a single row of negative costs). Adding a constant to every cost leaves the
    # optimal plan unchanged (the transported mass is fixed), so negative costs are shifted
    # to start at zero and the duals and the cost shifted back; non-negative costs are
    # passed as they are.
    shift = min(float(c64.min()), 0.0)
    plan, info = pot.emd(a64, b64, c64 - shift if shift else c64, numItermax=max_iter, log=True)
    if info.get("warning"):
        raise RuntimeError(f"emd did not converge: {info['warning']}")
    out = torch.from_numpy(plan).to(device=cost.device, dtype=cost.dtype)
    if log:
        to = {"device": cost.device, "dtype": cost.dtype}
        return out, {
            "u": torch.from_numpy(info["u"] + shift).to(**to),
            "v": torch.from_numpy(info["v"]).to(**to),
            "cost": float(info["cost"]) + shift * float(a64.sum()),
        }
    return out
