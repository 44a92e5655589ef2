"""Robustness measures in closed form, and the robustness-curve plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from modalign.eval.robustness import (
    effective_robustness,
    plot_robustness_curves,
    relative_robustness,
)

# NumPy < 2 has only trapz.
_trapezoid = np.trapezoid if hasattr(np, "trapezoid") else np.trapz  # noqa: NPY201


# ----------------------------------------------------------------------------------------------
# relative robustness


@pytest.mark.parametrize("a, b", [(0.9, 0.3), (0.5, 0.5), (0.2, 0.8), (-1.0, 2.0)])
@pytest.mark.parametrize(
    "levels", [[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [0.0, 1.0], [0, 0.05, 0.7, 1.0]]
)
def test_linear_curve_gives_mean_of_endpoints(a: float, b: float, levels: list[float]) -> None:
    lv = np.asarray(levels, dtype=float)
    scores = a + (b - a) * (lv - lv[0]) / (lv[-1] - lv[0])
    assert relative_robustness(lv, scores) == pytest.approx((a + b) / 2, abs=1e-12)


@pytest.mark.parametrize("c", [0.0, 0.37, 1.0])
def test_constant_curve_gives_constant(c: float) -> None:
    levels = [0.0, 0.2, 0.3, 0.9]
    assert relative_robustness(levels, [c] * 4) == pytest.approx(c, abs=1e-15)


def test_non_uniform_levels_by_hand() -> None:
    levels = [0.0, 0.1, 0.4, 1.0]
    scores = [0.9, 0.8, 0.5, 0.2]
    # Trapezoids: 0.1*(0.9+0.8)/2 + 0.3*(0.8+0.5)/2 + 0.6*(0.5+0.2)/2 = 0.085 + 0.195 + 0.21
    by_hand = (0.085 + 0.195 + 0.21) / 1.0
    assert relative_robustness(levels, scores) == pytest.approx(by_hand, abs=1e-12)
    assert by_hand == pytest.approx(_trapezoid(scores, levels), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_random_curves_match_numpy_trapezoid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    levels = np.cumsum(rng.uniform(0.01, 1.0, size=7)) + rng.normal()
    scores = rng.uniform(0, 1, size=7)
    expected = _trapezoid(scores, levels) / (levels[-1] - levels[0])
    assert relative_robustness(levels, scores) == pytest.approx(expected, abs=1e-12)
    # Tensors and lists give the same number.
    got = relative_robustness(torch.from_numpy(levels), scores.tolist())
    assert got == pytest.approx(expected, abs=1e-12)


def test_relative_robustness_is_the_mean_not_the_area() -> None:
    # MultiBench's raw area with step 0.1 over [0, 0.5] would be 0.5 * 0.8 = 0.4; ours is 0.8.
    assert relative_robustness([0, 0.1, 0.2, 0.3, 0.4, 0.5], [0.8] * 6) == pytest.approx(0.8)


# ----------------------------------------------------------------------------------------------
# effective robustness


@pytest.mark.parametrize("shift", [-0.3, 0.0, 0.05, 0.25])
def test_shifted_reference_gives_zero(shift: float) -> None:
    levels = [0.0, 0.1, 0.2, 0.3, 0.5]
    reference = np.array([0.5, 0.375, 0.25, 0.125, 0.0])  # exact in binary
    scores = reference + shift
    assert effective_robustness(levels, scores, reference) == pytest.approx(0.0, abs=1e-15)


def test_shifted_reference_gives_exact_zero_for_dyadic_values() -> None:
    reference = [0.75, 0.5, 0.25]
    scores = [1.0, 0.75, 0.5]
    assert effective_robustness([0, 1, 2], scores, reference) == 0.0


def test_model_that_loses_nothing_by_hand() -> None:
    levels = [0.0, 0.1, 0.2, 0.3]
    reference = [0.8, 0.7, 0.6, 0.5]  # drops 0.1 per level
    scores = [0.9, 0.9, 0.9, 0.9]  # loses nothing
    # Shifted reference: 0.9, 0.8, 0.7, 0.6 -> gaps at the corrupted levels 0.1, 0.2, 0.3.
    assert effective_robustness(levels, scores, reference) == pytest.approx(0.2, abs=1e-12)
    # Swapping the roles gives the opposite sign.
    assert effective_robustness(levels, reference, scores) == pytest.approx(-0.2, abs=1e-12)


def test_effective_robustness_random_by_formula() -> None:
    rng = np.random.default_rng(11)
    f = rng.uniform(size=6)
    r = rng.uniform(size=6)
    expected = np.mean([f[i] - (r[i] + f[0] - r[0]) for i in range(1, 6)])
    got = effective_robustness(np.arange(6) * 0.1, f, r)
    assert got == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# invalid input


BAD_LEVELS = [
    ([0.0, 0.2, 0.1], "strictly increasing"),
    ([0.0, 0.1, 0.1], "strictly increasing"),
    ([0.0], "at least 2"),
    ([0.0, np.nan, 0.2], "NaN or inf"),
    ([0.0, 0.1, np.inf], "NaN or inf"),
    ([[0.0, 0.1, 0.2]], "1-D"),
]


@pytest.mark.parametrize("levels, message", BAD_LEVELS)
def test_invalid_levels_raise(levels, message: str) -> None:
    n = np.asarray(levels).reshape(-1).shape[0]
    with pytest.raises(ValueError, match=f"levels: .*{message}"):
        relative_robustness(levels, [0.5] * n)
    with pytest.raises(ValueError, match=f"levels: .*{message}"):
        effective_robustness(levels, [0.5] * n, [0.4] * n)


def test_invalid_scores_raise() -> None:
    levels = [0.0, 0.1, 0.2]
    with pytest.raises(ValueError, match="scores: has 2 values but there are 3 levels"):
        relative_robustness(levels, [0.9, 0.8])
    with pytest.raises(ValueError, match="scores: has 4 values but there are 3 levels"):
        effective_robustness(levels, [0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7])
    with pytest.raises(ValueError, match="reference: has 2 values but there are 3 levels"):
        effective_robustness(levels, [0.9, 0.8, 0.7], [0.9, 0.8])
    with pytest.raises(ValueError, match="scores: contains NaN or inf"):
        relative_robustness(levels, [0.9, np.nan, 0.7])
    with pytest.raises(ValueError, match="reference: contains NaN or inf"):
        effective_robustness(levels, [0.9, 0.8, 0.7], [0.9, np.nan, 0.7])


# ----------------------------------------------------------------------------------------------
# the plot


def _panels() -> dict:
    lv = np.array([0.0, 0.1, 0.2, 0.3])
    return {
        "Gaussian noise": {
            "late fusion": (lv, np.array([0.9, 0.8, 0.6, 0.4]), np.array([0.01, 0.02, 0.03, 0.02])),
            "late fusion+otm": (lv, [0.9, 0.85, 0.75, 0.6], None),
        },
        "missing modality": {
            "late fusion": (lv.tolist(), torch.tensor([0.9, 0.7, 0.5, 0.3]), None),
            "tensor fusion": (lv, [0.88, 0.8, 0.7, 0.65], [0.0, 0.01, 0.01, 0.02]),
            "tensor fusion+otm": (lv, [0.88, 0.84, 0.8, 0.77], [0.0, 0.01, 0.01, 0.02]),
        },
        "masking": {"late fusion": (lv, [0.9, 0.9, 0.85, 0.8], None)},
        "shuffle": {"late fusion": (lv[:2], [0.9, 0.5], None)},
    }


def test_plot_writes_a_png_in_new_folders(tmp_path) -> None:
    path = tmp_path / "a" / "b" / "robustness.png"
    out = plot_robustness_curves(_panels(), path, title="robustness", ylabel="macro F1")
    assert out == path
    assert path.is_file() and path.stat().st_size > 0
    img = imread(path)
    # 4 panels -> 2 rows of 3 columns: wider than tall, and non-trivial.
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > img.shape[0]
    assert float(img[..., :3].std()) > 0  # not a blank image
    # No temporary file left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["robustness.png"]


def test_plot_single_panel(tmp_path) -> None:
    path = tmp_path / "one.png"
    plot_robustness_curves({"noise": {"m": ([0, 1], [1.0, 0.5], None)}}, str(path))
    img = imread(path)
    assert img.shape[0] > 50 and img.shape[1] > 50


def test_plot_refuses_bad_input(tmp_path) -> None:
    path = tmp_path / "x.png"
    lv = [0.0, 0.1, 0.2]
    with pytest.raises(ValueError, match="panels: expected a non-empty mapping"):
        plot_robustness_curves({}, path)
    with pytest.raises(ValueError, match="panel 'p': expected a non-empty mapping"):
        plot_robustness_curves({"p": {}}, path)
    with pytest.raises(ValueError, match="line 'm': means has 2 values but levels has 3"):
        plot_robustness_curves({"p": {"m": (lv, [0.9, 0.8], None)}}, path)
    with pytest.raises(ValueError, match="line 'm': stds has 4 values but levels has 3"):
        plot_robustness_curves({"p": {"m": (lv, [0.9, 0.8, 0.7], [0.1] * 4)}}, path)
    with pytest.raises(ValueError, match="line 'm': expected a tuple"):
        plot_robustness_curves({"p": {"m": (lv, [0.9, 0.8, 0.7])}}, path)
    with pytest.raises(ValueError, match="stds must be non-negative"):
        plot_robustness_curves({"p": {"m": (lv, [0.9, 0.8, 0.7], [0.1, -0.1, 0.1])}}, path)
    assert not path.exists()
