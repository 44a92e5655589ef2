"""Loaders and preprocessors on degenerate views: a finite, valid dataset or a DataError that
names the file and the view."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from _degenerate import FINITE_FLAWS, Recipe, recipes
from hypothesis import given
from hypothesis import strategies as st

from modalign.data import (
    Chain,
    DataError,
    L2Rows,
    MinMax,
    MultiViewDataset,
    Preprocessor,
    TfIdf,
    ZScore,
    load_file,
)

FORMATS = ("npz", "mat")
SPECS = ("auto", "none", "zscore", "minmax", "l2", "tfidf+l2", "zscore+minmax")


def _write(folder: Path, fmt: str, views: dict[str, np.ndarray], labels: np.ndarray) -> Path:
    """One file per call: Hypothesis reuses the test's tmp folder across examples."""
    path = folder / f"views-{len(list(folder.iterdir()))}.{fmt}"
    if fmt == "npz":
        np.savez(path, labels=labels, **views)
    else:
        scipy.io.savemat(path, {**views, "y": labels.reshape(-1, 1)})
    return path


def _check_error(err: DataError, source: str, names: list[str]) -> None:
    msg = str(err)
    assert msg.startswith(source), msg
    assert any(f"'{n}'" in msg for n in names), f"no view named in: {msg}"


@given(
    fmt=st.sampled_from(FORMATS),
    first=recipes(rows=st.integers(1, 6)),
    second_flaw=st.sampled_from(FINITE_FLAWS),
    second_cols=st.integers(1, 3),
    spec=st.sampled_from(SPECS),
)
def test_loaded_file_is_valid_or_refused(
    tmp_path_factory, fmt, first, second_flaw, second_cols, spec
):
    """A file with one degenerate view (and one more, maybe degenerate too) loads into finite,
    unchanged views, or is refused naming the file and the view; so does its preprocessing."""
    second = Recipe(first.rows, second_cols, second_flaw, first.seed + 1)
    views = {"alpha": first.build(), "beta": second.build()}
    labels = np.arange(first.rows) % 2
    path = _write(tmp_path_factory.mktemp("files"), fmt, views, labels)
    # A 1 x 1 variable of a .mat file is a scalar (metadata such as a class count), never a
    # view: the documented rule of the named layout, which one sample with one feature meets.
    kept = {k: v for k, v in views.items() if fmt == "npz" or v.shape != (1, 1)}
    try:
        ds = load_file(path)
    except DataError as err:
        msg = str(err)
        assert msg.startswith(str(path)), msg
        if not kept:
            assert "unknown .mat layout" in msg and "alpha: (1, 1)" in msg, msg
            return
        assert "alpha" in kept and not first.finite, f"a finite view was refused: {msg}"
        _check_error(err, str(path), ["alpha"])
        assert "NaN or inf" in msg
        return
    assert "alpha" not in kept or first.finite, "a NaN or inf value was loaded"
    assert ds.names == list(kept)
    for x, (name, raw) in zip(ds.views, kept.items(), strict=True):
        assert torch.isfinite(x).all(), name
        assert tuple(x.shape) == raw.shape
        assert np.allclose(x.numpy(), raw.astype(np.float32), rtol=1e-6, atol=0)

    try:
        out = Preprocessor(spec).fit(ds).transform(ds)
    except DataError as err:
        _check_error(err, str(path), ["alpha", "beta"])
        msg = str(err)
        constant = [n for n, r in (("alpha", first), ("beta", second)) if r.row_constant]
        named = re.search(r"view '(\w+)'", msg)
        assert named is not None
        if "tf-idf needs non-negative counts" in msg:
            return
        # A view constant as loaded is reported as such; another may become constant through
        # its preprocessing (l2 on a one-column view of positive values, say), never silently.
        expected = "is constant" if named.group(1) in constant else "becomes constant after"
        assert expected in msg, msg
        return
    assert not any(r.row_constant for r in (first, second)), "a constant view was accepted"
    for x in out.views:
        assert torch.isfinite(x).all()
    assert [tuple(x.shape) for x in out.views] == [tuple(x.shape) for x in ds.views]


@given(
    recipe=recipes(rows=st.integers(0, 5), cols=st.integers(0, 3)),
    fmt=st.sampled_from(FORMATS),
)
def test_empty_or_odd_views_are_refused_by_name(tmp_path_factory, recipe, fmt):
    """Empty views (no rows or no columns) never load; others load iff they are finite."""
    x = recipe.build()
    folder = tmp_path_factory.mktemp("empty")
    path = _write(folder, fmt, {"solo": x}, np.arange(x.shape[0]) % 2)
    scalar = fmt == "mat" and x.shape == (1, 1)  # a 1 x 1 .mat variable is never a view
    try:
        ds = load_file(path)
    except DataError as err:
        assert x.size == 0 or not recipe.finite or scalar, err
        assert str(err).startswith(str(path))
        return
    assert x.size > 0 and recipe.finite and not scalar
    assert tuple(ds.views[0].shape) == x.shape


TRANSFORMS = {
    "zscore": ZScore,
    "minmax": MinMax,
    "l2": L2Rows,
    "tfidf": TfIdf,
    "zscore+l2": lambda: Chain(ZScore(), L2Rows()),
}


@given(
    recipe=recipes(),
    name=st.sampled_from(sorted(TRANSFORMS)),
    dtype=st.sampled_from([np.float32, np.float64]),
    nonneg=st.booleans(),
)
def test_transforms_are_finite_or_refuse(recipe, name, dtype, nonneg):
    """Every transform maps finite data to finite data of the same shape with its defining
    property, refuses what it cannot take with a DataError naming ``what``, and never lets a
    NaN or inf through."""
    x = recipe.build(dtype)
    if nonneg:
        x = np.abs(x)
    tr = TRANSFORMS[name]()
    try:
        out = tr.fit_transform(x, what="view 'probe'")
    except DataError as err:
        assert "view 'probe'" in str(err)
        assert not recipe.finite or (name == "tfidf" and (x < 0).any()), err
        return
    assert recipe.finite, f"{name} let a non-finite input through"
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == x.shape
    assert np.isfinite(out).all()
    tol = 1e-4 if dtype == np.float32 else 1e-9
    if name == "zscore":
        std = x.astype(np.float64).std(0)
        varying = std > 1e-12 * (1 + np.abs(x.astype(np.float64).mean(0)))
        assert np.all(out[:, ~varying] == out[:, ~varying][0])  # centred, not divided by 0
        assert np.all(np.abs(out[:, ~varying]) <= tol * (1 + np.abs(x).max()))
        if x.shape[0] > 1:
            assert np.allclose(out[:, varying].std(0), 1.0, atol=1e3 * tol)
    elif name == "minmax":
        assert out.min() >= -tol and out.max() <= 1 + tol
    elif name in ("l2", "zscore+l2"):
        norms = np.linalg.norm(out.astype(np.float64), axis=1)
        assert np.all((np.abs(norms - 1) <= 1e3 * tol) | (norms == 0))


@given(recipe=recipes(flaws=FINITE_FLAWS), rows=st.integers(1, 4))
def test_transform_of_other_split_checks_width(recipe, rows):
    """A fitted transform applied to another split with another width is refused by name."""
    x = recipe.build()
    z = ZScore().fit(x, what="view 'a'")
    other = np.zeros((rows, x.shape[1] + 1))
    with pytest.raises(DataError, match=r"view 'a': ZScore was fitted on \d+ features"):
        z.transform(other, what="view 'a'")


@given(
    first=recipes(rows=st.integers(1, 6), flaws=FINITE_FLAWS),
    tokens=st.integers(1, 4),
    constant_tokens=st.booleans(),
    seed=st.integers(0, 2**16),
    spec=st.sampled_from(["auto", "zscore", "minmax", "none"]),
)
def test_token_views_preprocess_finite_or_refuse(first, tokens, constant_tokens, seed, spec):
    """A dataset with a 2-D view and a token view with random lengths (maybe all-constant real
    tokens): the preprocessed token view is finite with zero padding, or the constant view is
    refused by name."""
    rng = np.random.default_rng(seed)
    n = first.rows
    lengths = rng.integers(1, tokens + 1, size=n)
    mask = np.arange(tokens)[None, :] < lengths[:, None]
    tok = np.full((n, tokens, 2), 0.5) if constant_tokens else rng.normal(size=(n, tokens, 2))
    tok[~mask] = np.nan  # padding may hold anything
    ds = MultiViewDataset(
        [first.build(), tok], names=["flat", "tok"], token_masks=[None, mask], source="mem"
    )
    try:
        out = Preprocessor(spec).fit_transform(ds)
    except DataError as err:
        msg = str(err)
        _check_error(err, "mem", ["flat", "tok"])
        if "view 'tok'" in msg:
            assert constant_tokens and "is constant" in msg, msg
        else:
            assert ("is constant" in msg) == first.row_constant, msg
            assert first.row_constant or "becomes constant after" in msg, msg
        return
    assert not first.row_constant and (n == 1 or not constant_tokens)
    t = out.views[1]
    assert torch.isfinite(t).all()
    assert torch.equal(t[torch.from_numpy(~mask)], torch.zeros(int((~mask).sum()), 2))
