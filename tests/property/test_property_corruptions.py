"""Corruptions (unalign, drop_modalities, add_noise) on degenerate datasets: a valid dataset
(finite views, the same shapes, identities and labels that still tell the truth, every sample
observed somewhere, missing rows and padding zero) or a DataError naming the rate or the views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _degenerate import FINITE_FLAWS, Recipe, recipes
from hypothesis import given
from hypothesis import strategies as st

from modalign.data import DataError, MultiViewDataset, add_noise, drop_modalities, unalign

KINDS = ("features", "image", "audio")


@st.composite
def datasets(draw: st.DrawFn) -> tuple[MultiViewDataset, list[Recipe]]:
    """Two or three views of one row count, each with its own flaw and kind; the last view may
    be a token view with random lengths. Image and audio views of four features get a 2 x 2
    row shape, so that the blur and time masking run."""
    n = draw(st.integers(1, 6))
    n_views = draw(st.integers(1, 3))
    views, kinds, shapes, masks, found = [], [], [], [], []
    for _ in range(n_views):
        recipe = draw(recipes(rows=st.just(n), cols=st.sampled_from([1, 2, 4]), flaws=FINITE_FLAWS))
        kind = draw(st.sampled_from(KINDS))
        found.append(recipe)
        views.append(recipe.build())
        kinds.append(kind)
        shapes.append((2, 2) if recipe.cols == 4 and kind != "features" else None)
        masks.append(None)
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        t = draw(st.integers(1, 4))
        lengths = rng.integers(1, t + 1, size=n)
        tok = rng.normal(size=(n, t, 2)) * draw(st.sampled_from([1.0, 1e6, 1e-6, 0.0]))
        views.append(tok)
        kinds.append(draw(st.sampled_from(KINDS)))
        shapes.append(None)
        masks.append(np.arange(t)[None, :] < lengths[:, None])
    labels = np.arange(n) % 2
    ds = MultiViewDataset(
        views, labels, kinds=kinds, shapes=shapes, token_masks=masks, source="prop"
    )
    return ds, found


def _check_valid(out: MultiViewDataset, ds: MultiViewDataset) -> None:
    """What every corruption keeps true."""
    assert out.names == ds.names and out.n_samples == ds.n_samples
    assert torch.equal(out.labels, ds.labels)
    assert bool(out.mask.any(dim=1).all()), "a sample lost every view"
    for v, (x, old) in enumerate(zip(out.views, ds.views, strict=True)):
        name = out.names[v]
        assert x.shape == old.shape and x.dtype == old.dtype, name
        assert torch.isfinite(x).all(), f"view '{name}' has NaN or inf after the corruption"
        ids = out.ids[v]
        assert torch.equal(torch.sort(ids).values, torch.sort(ds.ids[v]).values), name
        missing = ~out.row_mask(v)
        assert torch.equal(x[missing], torch.zeros_like(x[missing])), f"missing rows of {name}"
        tm = out.token_masks[v]
        if tm is not None:
            assert torch.equal(x[~tm], torch.zeros_like(x[~tm])), f"padding of {name}"
    # Rebuilding through the validating constructor accepts the result as it is.
    MultiViewDataset(
        out.views,
        out.labels,
        names=out.names,
        ids=out.ids,
        mask=out.mask,
        paired=out.paired,
        kinds=out.kinds,
        shapes=out.shapes,
        token_masks=out.token_masks,
        n_samples=out.n_samples,
    )


@given(case=datasets(), rate=st.sampled_from([0.0, 0.3, 0.5, 1.0]), seed=st.integers(0, 99))
def test_unalign_is_valid(case, rate, seed):
    ds, _ = case
    out = unalign(ds, rate, seed)
    _check_valid(out, ds)
    for x, old, ids in zip(out.views, ds.views, out.ids, strict=True):
        assert torch.equal(x, old[ids])  # each row still holds its sample's values
    assert int((~out.paired).sum()) <= round(rate * ds.n_rows) or rate == 0


@given(
    case=datasets(),
    rate=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
    seed=st.integers(0, 99),
    one_view=st.booleans(),
)
def test_drop_modalities_is_valid_or_refused(case, rate, seed, one_view):
    ds, _ = case
    views = [ds.names[-1]] if one_view else None
    try:
        out = drop_modalities(ds, rate, seed, views=views)
    except DataError as err:
        msg = str(err)
        assert msg.startswith("prop: cannot mark") and "keeping one view per sample" in msg, msg
        assert rate > 0
        return
    _check_valid(out, ds)
    selected = [ds.n_views - 1] if one_view else list(range(ds.n_views))
    entries = int(ds.mask[:, selected].sum())
    assert int((ds.mask & ~out.mask).sum()) == round(rate * entries)


@given(
    case=datasets(),
    level=st.sampled_from([0.0, 0.1, 1.0, 3.0]),
    seed=st.integers(0, 99),
    kind=st.sampled_from(["auto", "gaussian", "image", "audio"]),
)
def test_add_noise_is_finite(case, level, seed, kind):
    ds, _ = case
    out = add_noise(ds, level, seed=seed, kind=kind)
    _check_valid(out, ds)
    if level == 0:
        for x, old in zip(out.views, ds.views, strict=True):
            assert torch.equal(x, old)
    # Deterministic given the seed.
    again = add_noise(ds, level, seed=seed, kind=kind)
    assert all(torch.equal(a, b) for a, b in zip(out.views, again.views, strict=True))


@given(case=datasets(), composed=st.permutations(["unalign", "drop", "noise"]))
def test_corruptions_compose(case, composed):
    ds, _ = case
    out = ds
    for step in composed:
        if step == "unalign":
            out = unalign(out, 0.5, seed=1)
        elif step == "drop":
            try:
                out = drop_modalities(out, 0.3, seed=2)
            except DataError as err:
                assert "keeping one view per sample" in str(err)
        else:
            out = add_noise(out, 0.5, seed=3)
    _check_valid(out, ds)


@given(
    bad=st.sampled_from([-0.1, 1.5, float("nan"), float("inf")]),
    which=st.sampled_from(["unalign", "drop", "noise"]),
    case=datasets(),
)
def test_bad_rates_and_levels_are_refused_by_name(bad, which, case):
    ds, _ = case
    if which == "noise":
        if 0 <= bad < np.inf:  # 1.5 is a valid noise level
            return
        with pytest.raises(DataError, match=r"noise level must be a finite number >= 0"):
            add_noise(ds, bad)
        return
    call = unalign if which == "unalign" else drop_modalities
    with pytest.raises(DataError, match=r"rate must lie in \[0, 1\]"):
        call(ds, bad)


@given(recipe=recipes(rows=st.integers(1, 5), cols=st.integers(1, 3)))
def test_constructor_names_the_view_with_a_non_finite_value(recipe):
    x = recipe.build()
    try:
        ds = MultiViewDataset([np.ones((recipe.rows, 1)), x], names=["ok", "odd"], source="f")
    except DataError as err:
        assert not recipe.finite
        assert str(err).startswith("f: view 'odd': 1 NaN or inf value(s) (first at row ")
        return
    assert recipe.finite and torch.isfinite(ds.views[1]).all()
