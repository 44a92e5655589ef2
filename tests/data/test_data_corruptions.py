"""The robustness corruptions: determinism, exact rates, the kept-one-view rule, no mutation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalign.data import (
    DataError,
    MultiViewDataset,
    add_noise,
    drop_modalities,
    load_digits_views,
    unalign,
)

N = 200


def make(n_views: int = 3) -> MultiViewDataset:
    rng = np.random.default_rng(0)
    # Column 0 of every view holds the sample number, so each row can be traced to its sample.
    views = [np.column_stack([np.arange(N), rng.normal(size=(N, 3 + v))]) for v in range(n_views)]
    return MultiViewDataset(views, np.arange(N) % 5, names=[f"m{v}" for v in range(n_views)])


def snapshot(ds: MultiViewDataset) -> list[torch.Tensor]:
    return [t.clone() for t in (*ds.views, *ds.ids, ds.mask, ds.paired)]


def unchanged(ds: MultiViewDataset, snap: list[torch.Tensor]) -> bool:
    now = (*ds.views, *ds.ids, ds.mask, ds.paired)
    return all(torch.equal(a, b) for a, b in zip(now, snap, strict=True))


# ---------------------------------------------------------------------------- unalign
@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_unalign_rate_truth_and_no_mutation(rate):
    ds = make()
    snap = snapshot(ds)
    out = unalign(ds, rate, seed=1)
    assert unchanged(ds, snap)
    assert int((~out.paired).sum()) == round(rate * N)
    for v in range(3):
        # Each row's data still belongs to the identity recorded for it.
        assert torch.equal(out.views[v][:, 0].long(), out.ids[v])
        assert torch.equal(out.row_labels(v), out.labels[out.ids[v]])
        assert sorted(out.ids[v].tolist()) == list(range(N))
    # Known pairs are true pairs; shuffled rows are mostly not.
    same = (out.ids[0] == out.ids[1]) & (out.ids[1] == out.ids[2])
    assert bool(same[out.paired].all())
    if rate > 0:
        assert float(same[~out.paired].float().mean()) < 0.1
    assert out.is_aligned == (rate == 0.0)


def test_unalign_is_deterministic_and_views_independent():
    ds = make()
    a, b, c = unalign(ds, 0.5, seed=7), unalign(ds, 0.5, seed=7), unalign(ds, 0.5, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a.ids, b.ids, strict=True))
    assert not torch.equal(a.ids[1], c.ids[1])
    assert not torch.equal(a.ids[1], a.ids[2])  # each view has its own permutation


def test_unalign_composes():
    ds = make()
    twice = unalign(unalign(ds, 0.5, seed=1), 0.5, seed=2)
    assert int((~twice.paired).sum()) > round(0.5 * N)
    assert torch.equal(twice.views[2][:, 0].long(), twice.ids[2])
    with pytest.raises(DataError, match=r"rate must lie in \[0, 1\]"):
        unalign(ds, 1.5)


# ---------------------------------------------------------------------------- drop_modalities
@pytest.mark.parametrize("rate", [0.1, 0.4, 0.6])
def test_drop_exact_count_keeps_one_view_and_zeroes_rows(rate):
    ds = make()
    snap = snapshot(ds)
    out = drop_modalities(ds, rate, seed=3)
    assert unchanged(ds, snap)
    assert int((~out.mask).sum()) == round(rate * N * 3)
    assert bool(out.mask.any(dim=1).all())  # every sample keeps at least one view
    for v in range(3):
        gone = ~out.row_mask(v)
        assert torch.all(out.views[v][gone] == 0)
        assert torch.equal(out.views[v][~gone], ds.views[v][~gone])


def test_drop_is_deterministic():
    ds = make()
    assert torch.equal(drop_modalities(ds, 0.5, seed=4).mask, drop_modalities(ds, 0.5, seed=4).mask)
    assert not torch.equal(drop_modalities(ds, 0.5, seed=4).mask, drop_modalities(ds, 0.5, 5).mask)


def test_drop_impossible_rate_is_a_clear_error():
    ds = make(n_views=2)
    drop_modalities(ds, 0.5, seed=0)  # the largest possible rate with two views
    with pytest.raises(DataError, match="keeping one view per sample: at most 50.0%"):
        drop_modalities(ds, 0.75, seed=0)


def test_drop_one_modality_for_most_samples():
    ds = make(n_views=2)
    out = drop_modalities(ds, 0.75, seed=0, views=["m1"])
    assert int((~out.mask[:, 1]).sum()) == 150 and bool(out.mask[:, 0].all())


def test_drop_composes_with_itself_and_unalign():
    ds = unalign(make(), 0.5, seed=0)
    once = drop_modalities(ds, 0.3, seed=1)
    twice = drop_modalities(once, 0.3, seed=2)
    assert int((~twice.mask).sum()) == 180 + round(0.3 * 420)
    assert bool(twice.mask.any(dim=1).all())
    for v in range(3):  # on unaligned data the right rows are zeroed: those of missing identities
        assert torch.all(twice.views[v][~twice.row_mask(v)] == 0)
        kept = twice.row_mask(v)
        assert torch.equal(twice.views[v][kept, 0].long(), twice.ids[v][kept])


# ---------------------------------------------------------------------------- add_noise
def test_gaussian_noise_scale_determinism_and_no_mutation():
    ds = make()
    snap = snapshot(ds)
    out = add_noise(ds, 0.5, seed=0)
    assert unchanged(ds, snap)
    noise = (out.views[1] - ds.views[1]).double()
    ratio = noise.std(dim=0) / ds.views[1].double().std(dim=0, correction=0)
    assert torch.allclose(ratio, torch.full_like(ratio, 0.5), atol=0.08)
    assert torch.equal(out.views[2], add_noise(ds, 0.5, seed=0).views[2])
    assert not torch.equal(out.views[2], add_noise(ds, 0.5, seed=1).views[2])
    assert all(torch.equal(a, b) for a, b in zip(add_noise(ds, 0.0).views, ds.views, strict=True))


def test_noise_of_a_view_does_not_depend_on_the_other_views():
    ds = make()
    only = add_noise(ds, 0.3, views=["m1"], seed=2)
    both = add_noise(ds, 0.3, views=["m0", "m1"], seed=2)
    assert torch.equal(only.views[1], both.views[1])
    assert torch.equal(only.views[0], ds.views[0]) and not torch.equal(both.views[0], ds.views[0])


def test_noise_keeps_missing_rows_zero():
    ds = drop_modalities(make(), 0.3, seed=0)
    out = add_noise(ds, 1.0, seed=0)
    for v in range(3):
        assert torch.all(out.views[v][~ds.row_mask(v)] == 0)


def test_image_noise_stays_in_range_and_grows_with_level():
    ds = load_digits_views().subset(np.arange(300))
    errors = []
    for level in (0.25, 0.5, 0.75):
        out = add_noise(ds, level, seed=0)
        assert float(out.views[0].min()) >= 0.0 and float(out.views[0].max()) <= 1.0
        errors.append(float((out.views[0] - ds.views[0]).abs().mean()))
    assert errors[0] < errors[1] < errors[2]


def test_salt_and_pepper_fraction():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.7, size=(200, 100))
    x[0, :2] = [0.0, 1.0]  # sets the value range to [0, 1]
    ds = MultiViewDataset([x], kinds=["image"])  # no row shape: no blur
    out = add_noise(ds, 0.2, seed=0).views[0][1:]
    # Gaussian noise of std 0.05 never reaches 0 or 1 from [0.3, 0.7]: only salt and pepper do,
    # on a fraction 0.2 / 10 of the pixels, half each.
    assert 0.016 < float((out == 1).float().mean()) * 2 < 0.024
    assert 0.016 < float((out == 0).float().mean()) * 2 < 0.024


def test_audio_noise_masks_a_block_of_frames():
    rng = np.random.default_rng(0)
    bands, frames = 4, 20
    x = rng.normal(size=(30, bands * frames)) + 5.0
    ds = MultiViewDataset([x], kinds=["audio"], shapes=[(bands, frames)])
    out = add_noise(ds, 0.5, seed=3).views[0].reshape(30, bands, frames)
    floor = float(ds.views[0].min())
    masked = (out == floor).all(dim=1)  # (rows, frames): whole frames set to the floor
    assert torch.all(masked.sum(dim=1) == 5)  # round(0.5 * 20 / 2) consecutive frames
    starts = masked.float().argmax(dim=1)
    for r in range(30):
        s = int(starts[r])
        assert bool(masked[r, s : s + 5].all())
    assert torch.equal(out, add_noise(ds, 0.5, seed=3).views[0].reshape(30, bands, frames))
    with pytest.raises(DataError, match="noise level"):
        add_noise(ds, -1.0)
