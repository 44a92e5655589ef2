"""Diagnostics of cross-view couplings, computed with labels for reports only (never selection)."""

from __future__ import annotations

import numpy as np
import torch


def coupling_quality(
    plan: torch.Tensor | np.ndarray,
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    ids_a: np.ndarray | None = None,
    ids_b: np.ndarray | None = None,
) -> dict[str, float]:
    """How much of a coupling's mass joins rows that belong together.

    ``plan`` (n_a, n_b) couples the rows of view a with those of view b (for OTM through its
    barycenter: ``T_a^T diag(1/p) T_b``). Returns ``same_class`` (share of mass on pairs of one
    class), ``chance`` (that share for the independent coupling with the same marginals) and,
    when the rows' sample identities are given, ``true_pairs`` (share on pairs of one sample).
    """
    t = torch.as_tensor(plan, dtype=torch.float64).cpu().numpy()
    if t.shape != (len(labels_a), len(labels_b)):
        raise ValueError(
            f"plan has shape {t.shape}, labels have {len(labels_a)} and {len(labels_b)} rows"
        )
    mass = t.sum()
    if not mass > 0:
        raise ValueError("the coupling has no mass")
    t = t / mass
    same = labels_a[:, None] == labels_b[None, :]
    row, col = t.sum(1), t.sum(0)
    out = {"same_class": float(t[same].sum()), "chance": float((row[:, None] * col)[same].sum())}
    if ids_a is not None and ids_b is not None:
        out["true_pairs"] = float(t[ids_a[:, None] == ids_b[None, :]].sum())
    return out
