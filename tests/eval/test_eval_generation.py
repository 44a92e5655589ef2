"""The scores and pictures of ``modalign generate``: coherence, joint coherence and class spread
against hand computations, the grid's columns, and the figures' shapes and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy.stats import entropy

from modalign.eval.generation import (
    class_spread,
    coherence,
    generation_grid_figure,
    joint_coherence,
    latent_figure,
    one_per_class,
)


def test_coherence_is_the_share_of_matching_classes():
    assert coherence([0, 1, 2, 3], [0, 1, 0, 3]) == 0.75
    assert coherence(np.array([2, 2]), np.array([1, 0])) == 0.0
    # tensors and column vectors are read as flat class lists
    assert coherence(torch.tensor([[1], [1], [0]]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="predicted has 3 classes for 2 true ones"):
        coherence([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="no sample"):
        coherence([], [])


def test_joint_coherence_counts_samples_on_which_every_modality_agrees():
    # columns: agree, disagree (1 vs 0 vs 2), disagree (2 vs 0), agree
    assert joint_coherence([[0, 1, 2, 3], [0, 1, 0, 3], [0, 2, 2, 3]]) == 0.5
    assert joint_coherence([np.array([4, 4]), torch.tensor([4, 4])]) == 1.0
    assert joint_coherence([[0, 1, 2], [1, 2, 0]]) == 0.0
    with pytest.raises(ValueError, match="two or more modalities, got 1"):
        joint_coherence([[0, 1, 2]])
    with pytest.raises(ValueError, match="two or more modalities, got 0"):
        joint_coherence([])
    with pytest.raises(ValueError):  # modalities of different lengths
        joint_coherence([[0, 1, 2], [0, 1]])


def test_class_spread_is_the_normalised_entropy():
    assert class_spread(np.repeat(np.arange(4), 5), 4) == pytest.approx(1.0)
    assert class_spread(np.full(7, 2), 4) == 0.0
    # two of four classes, equally often: log 2 / log 4
    assert class_spread([0, 1, 0, 1], 4) == pytest.approx(math.log(2) / math.log(4))
    y = np.array([0, 0, 0, 1, 2, 2, 5, 5, 5, 5])
    counts = np.bincount(y, minlength=6)
    assert class_spread(y, 6) == pytest.approx(entropy(counts) / math.log(6), rel=1e-12)
    # n_classes is the denominator's K, not the number of classes seen
    assert class_spread([0, 1], 2) == pytest.approx(1.0)
    assert class_spread([0, 1], 10) == pytest.approx(math.log(2) / math.log(10))
    for bad in (1, 0):
        with pytest.raises(ValueError, match=f"n_classes must be >= 2, got {bad}"):
            class_spread([0, 0, 0], bad)
    with pytest.raises(ValueError, match="no sample"):
        class_spread([], 3)


def test_one_per_class_takes_the_first_of_each_class_in_sorted_order():
    y = np.array([3, 1, 1, 3, 0, 1, 3, 0])
    assert one_per_class(y, per_class=2).tolist() == [4, 7, 1, 2, 0, 3]
    assert one_per_class(y, per_class=1).tolist() == [4, 1, 0]
    assert one_per_class(torch.tensor([2, 2, 2]), per_class=5).tolist() == [0, 1, 2]
    picked = one_per_class(y)  # default: two per class
    assert sorted(y[picked].tolist()) == [0, 0, 1, 1, 3, 3]


def test_generation_grid_figure_has_one_row_per_source_under_the_real_row():
    rng = np.random.default_rng(0)
    real = rng.random((5, 12))
    rows = {"from a": rng.random((5, 12)), "from a + b": rng.random((5, 12))}
    fig = generation_grid_figure(real, rows, (3, 4), title="t")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 5
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["real", "from a", "from a + b"]
    assert len(generation_grid_figure(real, {}, (4, 3)).axes) == 5
    with pytest.raises(ValueError, match=r"real: expected \(5, 10\) images"):
        generation_grid_figure(real, rows, (2, 5))
    with pytest.raises(ValueError, match=r"from b: expected \(5, 12\) images, got \(4, 12\)"):
        generation_grid_figure(real, {"from b": real[:4]}, (3, 4))


def test_latent_figure_has_one_panel_per_code():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 6)  # 18 rows: PCA, instant
    codes = {"a": rng.normal(size=(18, 5)), "b": torch.randn(18, 3)}
    fig = latent_figure(codes, y, title="x", seed=0)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert len(latent_figure({"only": rng.normal(size=(18, 2))}, y).axes) == 1
    with pytest.raises(ValueError, match="b: 17 codes for 18 labels"):
        latent_figure({"a": codes["a"], "b": codes["a"][:17]}, y)
    with pytest.raises(ValueError, match="codes"):
        latent_figure({"a": rng.normal(size=18)}, y)
