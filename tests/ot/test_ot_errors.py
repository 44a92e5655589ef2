"""Input validation: clear errors, with the message naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalign.ot import (
    LowRank,
    emd,
    fgw_barycenter,
    fused_gromov_wasserstein,
    sinkhorn,
    sqeuclidean_lowrank,
)


def _with_nan(t: torch.Tensor, idx=(0, 1)) -> torch.Tensor:
    t = t.clone()
    t[idx] = float("nan")
    return t


@pytest.fixture(scope="module")
def pb():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    y = torch.randn(4, 2, generator=g, dtype=torch.float64)
    sq = lambda a, b: ((a[:, None] - b[None]) ** 2).sum(-1)  # noqa: E731
    return {"x": x, "y": y, "M": sq(x, y), "C1": sq(x, x), "C2": sq(y, y)}


def _fgw(pb, **over):
    args = {"M": pb["M"], "C1": pb["C1"], "C2": pb["C2"], "p": None, "q": None, "alpha": 0.5}
    args.update(over)
    return fused_gromov_wasserstein(
        args.pop("M"), args.pop("C1"), args.pop("C2"), args.pop("p"), args.pop("q"), **args
    )


FGW_CASES = {
    "M rows": (
        lambda pb: _fgw(pb, M=pb["M"][:3]),
        r"M has shape \(3, 4\), expected \(\.\.\., 5, 4\)",
    ),
    "M cols": (lambda pb: _fgw(pb, M=pb["M"].T), r"M has shape \(4, 5\), expected"),
    "C1 not square": (lambda pb: _fgw(pb, C1=pb["C1"][:, :3]), "C1 must be square"),
    "C2 not square": (lambda pb: _fgw(pb, C2=pb["C2"][:2]), "C2 must be square"),
    "C1 asymmetric": (
        lambda pb: _fgw(pb, C1=pb["C1"] + torch.triu(torch.ones(5, 5, dtype=torch.float64), 1)),
        "C1 is not symmetric",
    ),
    "C2 asymmetric low rank": (
        lambda pb: _fgw(
            pb,
            C2=LowRank(
                torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)),
                torch.eye(4, 2, dtype=torch.float64),
            ),
        ),
        "C2 is not symmetric",
    ),
    "negative p": (
        lambda pb: _fgw(pb, p=torch.tensor([0.5, 0.4, 0.3, -0.1, -0.1], dtype=torch.float64)),
        "p has negative entries",
    ),
    "unnormalised q": (
        lambda pb: _fgw(pb, q=torch.full((4,), 0.3, dtype=torch.float64)),
        r"q sums to \[1\.2",
    ),
    "q length": (
        lambda pb: _fgw(pb, q=torch.full((5,), 0.2, dtype=torch.float64)),
        "q has length 5, but the problem has 4 points",
    ),
    "NaN in p": (
        lambda pb: _fgw(pb, p=torch.tensor([np.nan, 0.25, 0.25, 0.25, 0.25])),
        "p contains 1 NaN",
    ),
    "NaN in M": (lambda pb: _fgw(pb, M=_with_nan(pb["M"])), r"M contains 1 NaN"),
    "NaN in C1": (lambda pb: _fgw(pb, C1=_with_nan(pb["C1"])), r"C1 contains 1 NaN"),
    "inf in C2": (
        lambda pb: _fgw(pb, C2=pb["C2"].clone().fill_(float("inf"))),
        r"C2 contains 16 NaN or infinite",
    ),
    "NaN in low-rank C1": (
        lambda pb: _fgw(
            pb,
            C1=LowRank(
                _with_nan(sqeuclidean_lowrank(pb["x"]).left), sqeuclidean_lowrank(pb["x"]).right
            ),
        ),
        "C1 contains 1 NaN",
    ),
    "unknown solver": (
        lambda pb: _fgw(pb, solver="sinkhorn"),
        r"unknown solver 'sinkhorn': choose one of",
    ),
    "entropic without epsilon": (
        lambda pb: _fgw(pb, solver="entropic"),
        "the entropic solver needs a positive epsilon, got None",
    ),
    "proximal with epsilon 0": (
        lambda pb: _fgw(pb, solver="proximal", epsilon=0.0),
        "the proximal solver needs a positive epsilon, got 0.0",
    ),
    "alpha above 1": (lambda pb: _fgw(pb, alpha=1.5), r"alpha must lie in \[0, 1\], got 1.5"),
    "alpha below 0": (lambda pb: _fgw(pb, alpha=-0.1), r"alpha must lie in \[0, 1\], got -0.1"),
    "alpha NaN": (lambda pb: _fgw(pb, alpha=float("nan")), r"alpha must lie in \[0, 1\]"),
    "structures missing": (lambda pb: _fgw(pb, C2=None), "structures C1 and C2 are needed"),
    "nothing given": (lambda pb: _fgw(pb, M=None, C1=None, C2=None), "give a feature cost M"),
    "exact batched start": (
        lambda pb: _fgw(pb, T0=torch.full((2, 5, 4), 0.05, dtype=torch.float64)),
        "the exact solver takes one problem at a time",
    ),
    "list input": (
        lambda pb: _fgw(pb, M=pb["M"].tolist()),
        "M must be a torch.Tensor or numpy array, got list",
    ),
}


@pytest.mark.parametrize("case", list(FGW_CASES))
def test_fused_gromov_wasserstein_errors(pb, case):
    call, match = FGW_CASES[case]
    with pytest.raises((ValueError, TypeError), match=match):
        call(pb)


def test_missing_feature_cost_with_fused_alpha(pb):
    with pytest.raises(ValueError, match="M"):
        _fgw(pb, M=None, alpha=0.5)


def test_exact_solver_rejects_batched_structures(pb):
    with pytest.raises(ValueError, match="the exact solver takes one problem at a time"):
        _fgw(
            pb, M=pb["M"].expand(2, 5, 4), C1=pb["C1"].expand(2, 5, 5), C2=pb["C2"].expand(2, 4, 4)
        )


BARY_CASES = {
    "different dimensions": (
        lambda pb: fgw_barycenter([pb["x"], torch.randn(6, 3, dtype=torch.float64)]),
        r"features\[1\] has dimension 3, features\[0\] has 2",
    ),
    "NaN in features": (
        lambda pb: fgw_barycenter([pb["x"], _with_nan(pb["y"], (2, 0))]),
        r"features\[1\] contains 1 NaN",
    ),
    "NaN in structures": (
        lambda pb: fgw_barycenter([pb["x"], pb["y"]], [pb["C1"], _with_nan(pb["C2"])]),
        r"structures\[1\] contains 1 NaN",
    ),
    "structure shape": (
        lambda pb: fgw_barycenter([pb["x"], pb["y"]], [pb["C1"], pb["C1"]]),
        r"structures\[1\] has shape \(5, 5\), expected 4\^2",
    ),
    "structure count": (
        lambda pb: fgw_barycenter([pb["x"], pb["y"]], [pb["C1"]]),
        "got 1 structures for 2 inputs",
    ),
    "features not a matrix": (
        lambda pb: fgw_barycenter([pb["x"], pb["y"][None]]),
        r"features\[1\] must be \(n, d\)",
    ),
    "no input": (lambda pb: fgw_barycenter([]), "give at least one input"),
    "unknown solver": (
        lambda pb: fgw_barycenter([pb["x"]], solver="entropic"),
        "unknown solver 'entropic': use 'proximal' or 'exact'",
    ),
    "alpha": (lambda pb: fgw_barycenter([pb["x"]], alpha=2.0), r"alpha must lie in \[0, 1\]"),
    "lambdas sum": (
        lambda pb: fgw_barycenter([pb["x"], pb["y"]], lambdas=[0.7, 0.7]),
        "lambdas must be 2 non-negative weights summing to one",
    ),
    "lambdas negative": (
        lambda pb: fgw_barycenter([pb["x"], pb["y"]], lambdas=[1.5, -0.5]),
        "lambdas must be 2 non-negative",
    ),
    "weights unnormalised": (
        lambda pb: fgw_barycenter(
            [pb["x"], pb["y"]], weights=[None, torch.full((4,), 0.5, dtype=torch.float64)]
        ),
        r"weights\[1\] sums to",
    ),
    "p negative": (
        lambda pb: fgw_barycenter([pb["x"]], p=torch.tensor([0.6, 0.6, -0.2, 0.0, 0.0])),
        "p has negative entries",
    ),
    "n_points": (lambda pb: fgw_barycenter([pb["x"]], n_points=0), "n_points must be positive"),
    "init": (lambda pb: fgw_barycenter([pb["x"], pb["y"]], init=2), "init=2 does not name"),
}


@pytest.mark.parametrize("case", list(BARY_CASES))
def test_fgw_barycenter_errors(pb, case):
    call, match = BARY_CASES[case]
    with pytest.raises(ValueError, match=match):
        call(pb)


LINEAR_CASES = {
    "sinkhorn reg 0": (
        lambda pb: sinkhorn(None, None, pb["M"], 0.0),
        "reg must be positive, got 0.0",
    ),
    "sinkhorn NaN cost": (
        lambda pb: sinkhorn(None, None, _with_nan(pb["M"]), 0.1),
        "cost contains 1 NaN",
    ),
    "sinkhorn vector cost": (
        lambda pb: sinkhorn(None, None, pb["M"][0], 0.1),
        r"cost must be a matrix \(\.\.\., n, m\), got shape \(4,\)",
    ),
    "sinkhorn unnormalised a": (
        lambda pb: sinkhorn(torch.full((5,), 0.3, dtype=torch.float64), None, pb["M"], 0.1),
        r"a sums to \[1\.5",
    ),
    "sinkhorn negative b": (
        lambda pb: sinkhorn(
            None, torch.tensor([0.5, 0.5, 0.5, -0.5], dtype=torch.float64), pb["M"], 0.1
        ),
        "b has negative entries",
    ),
    "emd batched cost": (
        lambda pb: emd(None, None, pb["M"][None]),
        r"emd takes one \(n, m\) cost matrix",
    ),
    "emd NaN cost": (lambda pb: emd(None, None, _with_nan(pb["M"])), "cost contains 1 NaN"),
    "emd a length": (
        lambda pb: emd(torch.full((4,), 0.25, dtype=torch.float64), None, pb["M"]),
        "a has length 4, but the problem has 5 points",
    ),
}


@pytest.mark.parametrize("case", list(LINEAR_CASES))
def test_linear_ot_errors(pb, case):
    call, match = LINEAR_CASES[case]
    with pytest.raises(ValueError, match=match):
        call(pb)


def test_float32_marginal_tolerance_is_looser_than_float64():
    """A float32 marginal summing to 1 up to float32 rounding is accepted; the same error is
    rejected in float64, where it is a real mistake."""
    cost = torch.rand(4, 3, generator=torch.Generator().manual_seed(2))
    a = torch.full((4,), 0.25) + torch.tensor([2e-5, 0.0, 0.0, 0.0])
    assert sinkhorn(a, None, cost, 0.5).dtype == torch.float32
    with pytest.raises(ValueError, match="a sums to"):
        sinkhorn(a.double(), None, cost.double(), 0.5)
