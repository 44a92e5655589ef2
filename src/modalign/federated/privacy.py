"""Local differential privacy of released codes: clipping, Gaussian noise, RDP accounting.

What is protected, and what is not (say it plainly, docs/federated.md repeats it):

* The server sees every code an agent sends, noised or not. Noise protects the *input rows*
  behind the codes, not the codes from the server.
* Each released code is ``clip(f(x_i), C) + N(0, (z C)^2 I)``: a Gaussian mechanism of the
  row ``x_i`` with L2 sensitivity ``2 C`` for the encoder ``f`` held fixed (two rows give
  clipped codes at most ``2 C`` apart), so noise multiplier ``z / 2`` in sensitivity units.
  This per-code guarantee is reported as ``epsilon_code``.
* The encoder is trained on all of the agent's rows, so a row also moves the *other* rows'
  codes through the encoder's weights. Without DP training of the encoder (DP-SGD, not done
  here) the only sound bound for the whole release is that one row may move all ``N`` codes:
  sensitivity ``2 C sqrt(N)``. This worst case is reported as ``epsilon_dataset``.
* The accounting covers the codes, and only the codes. Under DP an agent therefore sends
  nothing else computed from its rows' features: its loss terms stay on it and
  cross-gradients are refused (:mod:`modalign.federated.protocol` lists what a reply holds).

Accounting is Rényi DP (Mironov, 2017): a Gaussian mechanism with sensitivity ``s`` and noise
standard deviation ``sigma`` is ``(alpha, alpha s^2 / (2 sigma^2))``-RDP for every order
``alpha > 1``; ``k`` releases compose by adding; and ``(alpha, r)``-RDP gives
``(r + log(1/delta) / (alpha - 1), delta)``-DP. With every order allowed the minimum over
``alpha`` has the closed form ``rho + 2 sqrt(rho log(1/delta))`` with ``rho = k s^2 /
(2 sigma^2)`` (zero-concentrated DP); on a grid of orders the result is slightly larger.
No sampling amplification is claimed: every row is released in every round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: Rényi orders for the conversion to (epsilon, delta): dense near 1, then geometric.
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1.0 + x / 20.0 for x in range(1, 100)] + [float(a) for a in np.geomspace(6, 4096, 120)]
)


def clip_codes(codes: Tensor, clip: float) -> Tensor:
    """Scale each row of ``codes`` (N, d) to L2 norm at most ``clip``; shape (N, d)."""
    if clip <= 0:
        raise ValueError(f"clip must be positive, got {clip}")
    norms = codes.norm(dim=1, keepdim=True)
    return codes * (clip / norms.clamp_min(clip))


def privatise_codes(
    codes: Tensor, clip: float, noise_multiplier: float, generator: torch.Generator
) -> Tensor:
    """Clipped codes plus Gaussian noise of standard deviation ``noise_multiplier * clip``.

    ``codes`` (N, d) -> (N, d). The noise comes from ``generator``, which the agent keeps to
    itself: a seed known to the server would let it subtract the noise.
    """
    if noise_multiplier <= 0:
        raise ValueError(f"noise_multiplier must be positive, got {noise_multiplier}")
    clipped = clip_codes(codes, clip)
    noise = torch.randn(clipped.shape, generator=generator, dtype=torch.float64)
    return clipped + (noise_multiplier * clip * noise).to(clipped.dtype)


def gaussian_rdp(orders: Sequence[float], noise_multiplier: float, count: int = 1) -> np.ndarray:
    """RDP of ``count`` Gaussian releases with noise ``noise_multiplier`` times the
    sensitivity: ``count * alpha / (2 z^2)`` for each order ``alpha``; shape (len(orders),)."""
    if noise_multiplier <= 0:
        raise ValueError(f"noise_multiplier must be positive, got {noise_multiplier}")
    a = np.asarray(orders, dtype=np.float64)
    if np.any(a <= 1):
        raise ValueError("Rényi orders must exceed 1")
    return count * a / (2.0 * noise_multiplier**2)


def rdp_to_epsilon(orders: Sequence[float], rdp: Sequence[float], delta: float) -> float:
    """Smallest ``epsilon`` over the orders with ``eps = rdp(alpha) + log(1/delta)/(alpha-1)``."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    a = np.asarray(orders, dtype=np.float64)
    r = np.asarray(rdp, dtype=np.float64)
    return float(np.min(r + math.log(1.0 / delta) / (a - 1.0)))


def gaussian_epsilon_closed_form(noise_multiplier: float, count: int, delta: float) -> float:
    """The same bound with the order optimised over all reals: ``rho + 2 sqrt(rho log(1/d))``
    with ``rho = count / (2 z^2)``. Used to check the grid computation."""
    rho = count / (2.0 * noise_multiplier**2)
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


@dataclass(frozen=True)
class PrivacyReport:
    """Budget spent by one agent after ``releases`` code releases of ``n_rows`` rows each."""

    releases: int
    n_rows: int
    clip: float
    noise_multiplier: float
    delta: float
    epsilon_code: float
    epsilon_dataset: float

    def as_dict(self) -> dict[str, float]:
        return {
            "releases": float(self.releases),
            "n_rows": float(self.n_rows),
            "clip": self.clip,
            "noise_multiplier": self.noise_multiplier,
            "delta": self.delta,
            "epsilon_code": self.epsilon_code,
            "epsilon_dataset": self.epsilon_dataset,
        }


def privacy_report(
    releases: int, n_rows: int, clip: float, noise_multiplier: float, delta: float
) -> PrivacyReport:
    """(epsilon, delta) after ``releases`` rounds in which every one of ``n_rows`` codes was
    released clipped to ``clip`` with noise ``noise_multiplier * clip`` (see the module
    docstring for the two sensitivities). ``releases = 0`` spends nothing."""
    if releases == 0:
        return PrivacyReport(0, n_rows, clip, noise_multiplier, delta, 0.0, 0.0)
    # Noise in units of the sensitivity: sigma / s.
    z_code = noise_multiplier * clip / (2.0 * clip)
    z_data = noise_multiplier * clip / (2.0 * clip * math.sqrt(n_rows))
    eps_code = rdp_to_epsilon(DEFAULT_ORDERS, gaussian_rdp(DEFAULT_ORDERS, z_code, releases), delta)
    eps_data = rdp_to_epsilon(DEFAULT_ORDERS, gaussian_rdp(DEFAULT_ORDERS, z_data, releases), delta)
    return PrivacyReport(releases, n_rows, clip, noise_multiplier, delta, eps_code, eps_data)
