"""Degenerate views (issue 16): a constant view is refused, naming the file and the view, before
any training; a constant feature inside a varying view is kept at 0, never divided by zero."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from modalign.data import (
    DataError,
    MinMax,
    MultiViewDataset,
    Preprocessor,
    ZScore,
    drop_modalities,
    load_dataset,
)


def _npz(tmp_path: Path, **views: np.ndarray) -> Path:
    path = tmp_path / "degenerate.npz"
    n = next(iter(views.values())).shape[0]
    np.savez(path, labels=np.arange(n) % 3, **views)
    return path


@pytest.fixture
def varying() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(60, 5))


@pytest.mark.parametrize("spec", ["auto", "none", "zscore", "minmax", "l2"])
def test_constant_view_in_a_file_is_refused_naming_file_and_view(tmp_path, varying, spec):
    path = _npz(tmp_path, a=varying, b=np.ones((60, 4)))
    ds = load_dataset(path)  # loading is fine: the container holds any finite values
    assert ds.constant_views() == ["b"]
    with pytest.raises(DataError) as err:
        Preprocessor(spec).fit(ds)
    msg = str(err.value)
    assert msg.startswith(f"{path}: view 'b' is constant: ")
    assert "every one of its 60 observed rows is the same vector (every value is 1)" in msg


def test_rows_all_equal_but_features_different_is_constant(varying):
    ds = MultiViewDataset([varying, np.tile([1.0, 2.0, 3.0], (60, 1))], names=["a", "same"])
    with pytest.raises(DataError, match=r"view 'same' is constant: .*each feature has a single"):
        Preprocessor("zscore").fit(ds)


def test_view_constant_after_preprocessing_names_the_spec(varying):
    # Every row a positive multiple of one vector: varying, but identical once L2-normalised
    # (the "auto" choice for non-negative, non-integer values).
    scale = np.random.default_rng(1).uniform(0.5, 2.0, size=(60, 1))
    ds = MultiViewDataset([varying, scale * [0.2, 0.3, 0.5]], names=["a", "hist"], source="f.mat")
    assert ds.constant_views() == []
    with pytest.raises(DataError) as err:
        Preprocessor("auto").fit(ds)
    assert str(err.value).startswith(
        "f.mat: view 'hist' becomes constant after preprocessing 'l2': every one of its 60 "
        "observed rows is then the same vector"
    )
    # Another preprocessing for that view is accepted.
    prep = Preprocessor({"hist": "zscore"}).fit(ds)
    assert torch.isfinite(prep.transform(ds).views[1]).all()


def test_only_observed_rows_count(varying):
    # Varying on rows that are then marked missing (and zeroed): the observed rows are constant.
    b = np.ones((60, 2))
    b[:3] = [[5.0, -1.0], [2.0, 7.0], [0.0, 3.0]]
    mask = np.ones((60, 2), dtype=bool)
    mask[:3, 1] = False
    ds = MultiViewDataset([varying, b], names=["a", "b"], mask=mask)
    assert ds.constant_views() == ["b"]
    with pytest.raises(DataError, match=r"'b' is constant: every one of its 57 observed rows"):
        Preprocessor().fit(ds)
    # The reverse: missing rows (zeros) do not make a constant view look varying, and a view
    # made constant by drop_modalities' zeroing is not refused for those zeros.
    ok = drop_modalities(MultiViewDataset([varying, varying[:, :2]]), 0.3, seed=0)
    Preprocessor("zscore").fit(ok)


def test_one_observed_row_is_not_judged():
    ds = MultiViewDataset([np.ones((1, 3)), np.zeros((1, 2))])
    assert ds.constant_views() == []
    Preprocessor("zscore").fit(ds)


def test_constant_feature_inside_a_varying_view_is_zero_not_nan(varying):
    x = varying.copy()
    x[:, 2] = 3.0
    z = ZScore().fit(x)
    out = z.transform(x)
    assert np.isfinite(out).all()
    assert z.constant_.tolist() == [False, False, True, False, False]
    assert np.all(out[:, 2] == 0.0)
    others = out[:, [0, 1, 3, 4]]
    assert np.allclose(others.mean(0), 0.0) and np.allclose(others.std(0), 1.0)
    assert np.all(MinMax().fit_transform(x)[:, 2] == 0.0)
    # The same through the Preprocessor, in float32 and at a large offset.
    x[:, 2] = 1e6
    ds = Preprocessor("zscore").fit_transform(MultiViewDataset([x]))
    assert torch.equal(ds.views[0][:, 2], torch.zeros(60))


def test_tiny_but_varying_scale_is_not_constant():
    x = np.random.default_rng(2).normal(size=(40, 3)) * 1e-6
    ds = MultiViewDataset([x])
    assert ds.constant_views() == []
    out = Preprocessor("zscore").fit_transform(ds).views[0]
    assert torch.allclose(out.std(0, correction=0), torch.ones(3), atol=1e-3)


def _tokens(value: float | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 6, size=30)
    mask = np.arange(6)[None, :] < lengths[:, None]
    x = rng.normal(size=(30, 6, 4)) if value is None else np.full((30, 6, 4), value)
    x[~mask] = np.nan  # padding holds anything; it is zeroed on construction
    return x, mask


def test_constant_token_view_is_refused_though_padding_differs():
    x, mask = _tokens(2.5)
    ds = MultiViewDataset([x], names=["frames"], token_masks=[mask], source="tok.npz")
    # Padding is zero and real tokens are 2.5: the view's values differ, its real tokens do not.
    assert ds.constant_views() == ["frames"]
    with pytest.raises(DataError) as err:
        Preprocessor("auto").fit(ds)
    assert str(err.value).startswith(
        "tok.npz: view 'frames' is constant: every real token of the observed rows is the "
        "same vector (every value is 2.5)"
    )


def test_constant_token_feature_is_zero_and_padding_stays_zero():
    x, mask = _tokens(None)
    x[..., 1] = np.where(mask, -4.0, x[..., 1])
    ds = MultiViewDataset([x], names=["frames"], token_masks=[mask])
    out = Preprocessor("zscore").fit_transform(ds).views[0]
    assert torch.isfinite(out).all()
    assert torch.equal(out[..., 1], torch.zeros(30, 6))
    assert torch.equal(out[torch.from_numpy(~mask)], torch.zeros(int((~mask).sum()), 4))


def test_cluster_command_refuses_before_training(tmp_path, varying):
    """The issue's reproduction: one clear line, exit code 2, no results written."""
    typer_testing = pytest.importorskip("typer.testing")
    from modalign.cli import app

    path = _npz(tmp_path, a=varying, b=np.ones((60, 4)))
    out = tmp_path / "out"
    result = typer_testing.CliRunner().invoke(
        app,
        ["cluster", "--dataset", str(path), "--seeds", "1", "--epochs", "1", "--out", str(out)],
    )
    assert result.exit_code == 2, result.output
    text = re.sub(r"\s+", " ", result.output)
    assert f"{path}: view 'b' is constant" in text
    assert "Traceback" not in result.output
    assert not (out / "results.json").exists()
