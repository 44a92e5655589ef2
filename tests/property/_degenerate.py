"""Hypothesis strategies for degenerate inputs, shared by the property tests of this folder.

A matrix is drawn as a *recipe* (rows, columns, a flaw and a seed) and built with NumPy, which
keeps generation cheap and shrinking meaningful: a failure shrinks to the smallest rows and
columns and to the first flaw in :data:`FLAWS` that still fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

#: Degenerate ways of filling a matrix, the plain case first (what a failure shrinks towards).
FLAWS = (
    "random",
    "constant",  # zero variance: every value the same
    "zeros",
    "duplicate_rows",  # every row the same vector (zero variance per column)
    "constant_column",  # one zero-variance column inside a varying matrix
    "huge",  # scale 1e6
    "tiny",  # scale 1e-6
    "nan",  # one NaN cell
    "inf",  # one +inf cell
    "neg_inf",  # one -inf cell
)
FINITE_FLAWS = tuple(f for f in FLAWS if f not in ("nan", "inf", "neg_inf"))


@dataclass(frozen=True)
class Recipe:
    """How to build one matrix: its shape, its flaw and the seed of its random values."""

    rows: int
    cols: int
    flaw: str
    seed: int

    @property
    def finite(self) -> bool:
        return self.flaw in FINITE_FLAWS

    @property
    def row_constant(self) -> bool:
        """Whether every row is the same vector (so no column varies) though there are several
        rows: what the data layer refuses as a constant view. One row is never judged."""
        whole = self.flaw in ("constant", "zeros", "duplicate_rows")
        return self.rows > 1 and (whole or (self.flaw == "constant_column" and self.cols == 1))

    def build(self, dtype: type = np.float64) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        x = rng.normal(size=(self.rows, self.cols))
        if self.flaw == "constant":
            x = np.full_like(x, rng.normal())
        elif self.flaw == "zeros":
            x = np.zeros_like(x)
        elif self.flaw == "duplicate_rows":
            x = np.broadcast_to(x[:1], x.shape).copy()
        elif self.flaw == "constant_column" and self.cols:
            x[:, rng.integers(self.cols)] = 3.0
        elif self.flaw == "huge":
            x = x * 1e6
        elif self.flaw == "tiny":
            x = x * 1e-6
        elif self.flaw in ("nan", "inf", "neg_inf") and x.size:
            value = {"nan": np.nan, "inf": np.inf, "neg_inf": -np.inf}[self.flaw]
            x[rng.integers(self.rows), rng.integers(self.cols)] = value
        return x.astype(dtype)


def recipes(
    rows: st.SearchStrategy[int] | None = None,
    cols: st.SearchStrategy[int] | None = None,
    flaws: tuple[str, ...] = FLAWS,
) -> st.SearchStrategy[Recipe]:
    """Recipes with 1 to 6 rows and 1 to 4 columns by default (tiny N and N = 1 included)."""
    return st.builds(
        Recipe,
        rows=rows if rows is not None else st.integers(1, 6),
        cols=cols if cols is not None else st.integers(1, 4),
        flaw=st.sampled_from(flaws),
        seed=st.integers(0, 2**16),
    )


#: Marginal kinds: valid ones first, then the ones a solver must refuse.
MARGINALS = (
    "uniform",
    "none",
    "random",
    "sparse",  # a valid marginal with zero entries
    "unnormalised",
    "all_zero",
    "negative",
    "nan",
)
VALID_MARGINALS = ("uniform", "none", "random", "sparse")


def marginal(kind: str, n: int, seed: int) -> np.ndarray | None:
    """A length-``n`` weight vector of the given kind (None for ``"none"``)."""
    rng = np.random.default_rng(seed)
    if kind == "none":
        return None
    if kind == "uniform":
        return np.full(n, 1.0 / n)
    w = rng.uniform(0.1, 1.0, size=n)
    if kind == "sparse":
        w[rng.random(n) < 0.5] = 0.0
        w[rng.integers(n)] = 1.0  # never all zero
    if kind in ("random", "sparse"):
        return w / w.sum()
    if kind == "unnormalised":
        return w / w.sum() * 3.0
    if kind == "all_zero":
        return np.zeros(n)
    if kind == "negative":
        w = w / w.sum()
        w[0] -= 2.0
        w[-1] += 2.0 if n > 1 else 0.0
        return w
    w = w / w.sum()
    w[rng.integers(n)] = np.nan
    return w


def is_project_error(exc: BaseException) -> bool:
    """The error types the project raises for bad input: ``ValueError`` and its subclasses
    (``modalign.data.DataError`` among them) and ``TypeError`` for an argument of the wrong
    type. Anything else (an ``IndexError``, a ``RuntimeError`` from deep inside torch, a
    ``ZeroDivisionError``) is a crash, not a refusal."""
    return isinstance(exc, (ValueError, TypeError))
