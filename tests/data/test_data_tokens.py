"""Token views ``(N, T, d)`` with token masks, and the avdigits-tokens dataset."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from modalign.data import (
    AudioFeatures,
    DataError,
    MultiViewBatch,
    MultiViewDataset,
    Preprocessor,
    add_noise,
    avdigits_pairs,
    drop_modalities,
    frame_count,
    fsdd_max_frames,
    image_patches,
    load_avdigits,
    load_avdigits_tokens,
    load_dataset,
    load_wav,
    log_mel_frames,
    log_mel_spectrogram,
    unalign,
    waves_to_frames,
)
from modalign.provenance import _update, data_fingerprint

N = 40
T = (5, 7, 3)
D = (4, 3, 2)


def lengths(n: int = N) -> list[np.ndarray]:
    """Real-token counts per row: variable for views 0 and 1, all real for view 2."""
    return [1 + np.arange(n) % T[0], 1 + (3 * np.arange(n)) % T[1], np.full(n, T[2])]


def make(n: int = N, *, junk: float = 7.0) -> MultiViewDataset:
    """Three token views (M = 3). Token feature 0 holds the sample number (traceable rows);
    padded tokens are filled with ``junk`` so that zeroing on construction is visible."""
    rng = np.random.default_rng(0)
    views, masks = [], []
    for v, (t, d, lens) in enumerate(zip(T, D, lengths(n), strict=True)):
        x = rng.normal(size=(n, t, d)) + v
        x[:, :, 0] = np.arange(n)[:, None]
        m = np.arange(t)[None, :] < lens[:, None]
        x[~m] = junk
        views.append(x)
        masks.append(None if v == 2 else m)
    return MultiViewDataset(
        views,
        np.arange(n) % 4,
        names=["a", "b", "c"],
        kinds=["features", "audio", "image"],
        token_masks=masks,
    )


def real(ds: MultiViewDataset, v: int) -> torch.Tensor:
    tm = ds.token_masks[v]
    assert tm is not None
    return tm


def check_padding_zero(ds: MultiViewDataset) -> None:
    for v, x in enumerate(ds.views):
        if x.ndim == 3:
            assert bool((x[~real(ds, v)] == 0).all()), ds.names[v]


# ---------------------------------------------------------------------------- construction
def test_construction_shapes_and_accessors():
    ds = make()
    assert [tuple(x.shape) for x in ds.views] == [(N, t, d) for t, d in zip(T, D, strict=True)]
    assert ds.dims == list(D) and ds.n_tokens == list(T) and ds.has_tokens
    assert all(ds.is_tokens(v) for v in range(3)) and ds.is_tokens("b")
    for v in range(3):
        tm = ds.token_masks[v]
        assert tm is not None and tm.dtype == torch.bool and tuple(tm.shape) == (N, T[v])
        assert ds.token_lengths(v).tolist() == lengths()[v].tolist()
    assert bool(ds.token_masks[2].all())  # default: every token real
    assert ds.token_mask("a") is ds.token_masks[0]
    check_padding_zero(ds)  # the junk on padded tokens is gone
    assert len(ds) == N and ds.is_aligned


def test_mixed_2d_and_token_views():
    rng = np.random.default_rng(1)
    flat = rng.normal(size=(N, 6))
    ds = MultiViewDataset([flat, make().views[0]], token_masks=[None, make().token_masks[0]])
    assert ds.token_masks[0] is None and not ds.is_tokens(0) and ds.is_tokens(1)
    assert ds.n_tokens == [None, T[0]] and ds.dims == [6, D[0]]
    with pytest.raises(DataError, match="not a token view"):
        ds.token_lengths(0)
    b = ds.batch([0, 3])
    assert b.token_masks[0] is None and tuple(b.token_masks[1].shape) == (2, T[0])
    # 2-D only datasets are as before: no token masks anywhere.
    plain = MultiViewDataset([flat, flat])
    assert plain.token_masks == [None, None] and not plain.has_tokens
    assert plain.batch([1]).token_masks == [None, None] and plain[0]["token_masks"] == {}


def test_token_mask_validation():
    x = np.zeros((4, 3, 2))
    x[..., 0] = 1.0
    with pytest.raises(DataError, match=r"view 'tok'.*token mask.*shape \(4, 3\)"):
        MultiViewDataset([x], names=["tok"], token_masks=[np.ones((4, 2), bool)])
    with pytest.raises(DataError, match="2-D view"):
        MultiViewDataset([np.ones((4, 2))], token_masks=[np.ones((4, 2), bool)])
    with pytest.raises(DataError, match="2 token masks for 1 views"):
        MultiViewDataset([x], token_masks=[None, None])
    with pytest.raises(DataError, match="bool"):
        MultiViewDataset([x], token_masks=[np.full((4, 3), 2)])
    with pytest.raises(DataError, match="2-D .* or a 3-D"):
        MultiViewDataset([np.ones((4, 3, 2, 1))])
    with pytest.raises(DataError, match="features per token"):
        MultiViewDataset([x], shapes=[(3, 2)])
    MultiViewDataset([x], shapes=[(2, 1)])  # a token's own shape is fine
    # An observed row without any real token is refused, naming the view and the row.
    m = np.ones((4, 3), bool)
    m[2] = False
    with pytest.raises(DataError, match=r"view 'tok' row 2 \(sample 2\).*no real token"):
        MultiViewDataset([x], names=["tok"], token_masks=[m])
    # ... unless the sample is missing in that view.
    other = np.ones((4, 2))
    miss = np.ones((4, 2), bool)
    miss[2, 0] = False
    ok = MultiViewDataset([x, other], mask=miss, token_masks=[m, None])
    assert not bool(ok.token_masks[0][2].any())


def test_nan_on_real_token_refused_and_padding_zeroed():
    x = np.ones((3, 4, 2))
    m = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    x[0, 2] = np.nan  # padded: fine, zeroed
    x[1, 1:] = np.inf
    x[0, 3] = 123.0
    ds = MultiViewDataset([x], token_masks=[m])
    assert bool(torch.isfinite(ds.views[0]).all())
    assert bool((ds.views[0][~ds.token_masks[0]] == 0).all())
    assert bool((ds.views[0][ds.token_masks[0]] == 1).all())
    bad = x.copy()
    bad[2, 3, 1] = np.nan
    with pytest.raises(DataError, match=r"NaN or inf value\(s\) on real tokens.*row 2, token 3"):
        MultiViewDataset([bad], token_masks=[m])


# ---------------------------------------------------------------------------- row indexing
def test_subset_select_split_to_carry_masks():
    ds = make()
    samples = [7, 3, 22, 0]
    sub = ds.subset(samples)
    for v in range(3):
        rows = sub.views[v][:, 0, 0].long()  # feature 0 of token 0 = the original sample
        assert sorted(rows.tolist()) == sorted(samples)
        assert torch.equal(sub.token_masks[v], ds.token_masks[v][rows])
        assert torch.equal(sub.views[v], ds.views[v][rows])
        assert torch.equal(torch.tensor(samples)[sub.ids[v]], rows)
    sel = ds.select_views(["c", "a"])
    assert sel.names == ["c", "a"]
    assert sel.token_masks[0] is ds.token_masks[2] and sel.token_masks[1] is ds.token_masks[0]
    parts = ds.split([0.5, 0.5], seed=0)
    for part in parts:
        for v in range(3):
            ids = part.views[v][:, 0, 0].long()  # feature 0 of token 0 = the sample number
            assert torch.equal(part.token_masks[v], ds.token_masks[v][ids])
        check_padding_zero(part)
    moved = ds.to("cpu")
    assert all(torch.equal(a, b) for a, b in zip(moved.token_masks, ds.token_masks, strict=True))
    # Copies own their lists.
    sub.token_masks[0] = None
    assert ds.token_masks[0] is not None


def test_batches_getitem_dataloader_carry_masks():
    ds = make()
    rows = [5, 1, 9]
    b = ds.batch(rows)
    assert isinstance(b, MultiViewBatch)
    for v in range(3):
        assert torch.equal(b.token_masks[v], ds.token_masks[v][rows])
    moved = b.to("cpu")
    assert all(torch.equal(a, c) for a, c in zip(moved.token_masks, b.token_masks, strict=True))
    seen = torch.cat([bb.index for bb in ds.batches(16, shuffle=True, seed=3)])
    for bb in ds.batches(16, shuffle=True, seed=3):
        assert torch.equal(bb.token_masks[1], ds.token_masks[1][bb.index])
    assert sorted(seen.tolist()) == list(range(N))
    for bb in ds.dataloader(8, shuffle=True, seed=1):
        assert torch.equal(bb.token_masks[0], ds.token_masks[0][bb.index])
    item = ds[4]
    assert set(item["token_masks"]) == {0, 1, 2}
    assert torch.equal(item["token_masks"][0], ds.token_masks[0][4])
    stacked = next(iter(DataLoader(ds, batch_size=6)))
    assert torch.equal(stacked["token_masks"][1], ds.token_masks[1][:6])
    assert tuple(stacked["views"][1].shape) == (6, T[1], D[1])
    # A batch built without token masks (2-D code paths) gets None per view.
    assert MultiViewBatch(b.views, b.mask, b.labels, b.index).token_masks == [None] * 3


def test_with_views_tokens():
    ds = make()
    new = [x * 2 + 1 for x in ds.views]  # padded tokens become 1: zeroed again
    out = ds.with_views(new)
    check_padding_zero(out)
    assert torch.equal(out.views[0][real(ds, 0)], new[0][real(ds, 0)])
    pooled = ds.with_views([x.mean(dim=1) for x in ds.views])  # token -> 2-D
    assert pooled.token_masks == [None] * 3 and not pooled.has_tokens
    with pytest.raises(DataError, match="replacement has shape"):
        ds.with_views([ds.views[0][:, :2], ds.views[1], ds.views[2]])


# ---------------------------------------------------------------------------- corruptions
@pytest.mark.parametrize("kind", ["auto", "gaussian", "image", "audio"])
def test_add_noise_real_tokens_only(kind):
    ds = make()
    out = add_noise(ds, 0.5, seed=0, kind=kind)
    check_padding_zero(out)
    for v in range(3):
        assert out.token_masks[v] is ds.token_masks[v] or torch.equal(
            out.token_masks[v], ds.token_masks[v]
        )
        changed = out.views[v][real(ds, v)] != ds.views[v][real(ds, v)]
        assert float(changed.float().mean()) > 0.5, (kind, v)
    again = add_noise(ds, 0.5, seed=0, kind=kind)
    assert all(torch.equal(a, b) for a, b in zip(out.views, again.views, strict=True))
    same = add_noise(ds, 0.0, seed=0, kind=kind)
    assert all(torch.equal(a, b) for a, b in zip(same.views, ds.views, strict=True))


def test_add_noise_token_gaussian_scale_and_audio_masking():
    ds = make(2000)
    out = add_noise(ds, 0.5, views=["c"], seed=1)  # kind image on tokens: Gaussian noise
    diff = (out.views[2] - ds.views[2])[real(ds, 2)]
    std = ds.views[2][real(ds, 2)].double().std(dim=0, correction=0)
    ratio = diff.double().std(dim=0, correction=0) / (0.5 * std)
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.1)
    assert torch.equal(out.views[0], ds.views[0])  # other views untouched
    # Audio tokens: a block of round(level * n / 2) real frames per row set to the floor.
    loud = add_noise(ds, 1.0, views=["b"], seed=2)
    floor = float(ds.views[1][real(ds, 1)].min())
    hit = (loud.views[1] == floor).all(dim=2)
    expected = np.minimum(np.round(0.5 * lengths(2000)[1]), lengths(2000)[1])
    assert hit.sum(dim=1).tolist() == expected.astype(int).tolist()
    assert not bool((hit & ~real(ds, 1)).any())


def test_add_noise_keeps_missing_rows_zero():
    ds = drop_modalities(make(), 0.3, seed=0, views=["a"])
    out = add_noise(ds, 0.75, seed=4)
    missing = ~out.row_mask("a")
    assert int(missing.sum()) == 12
    assert bool((out.views[0][missing] == 0).all())
    check_padding_zero(out)


def test_unalign_keeps_masks_with_rows():
    ds = make()
    out = unalign(ds, 0.8, seed=0)
    assert not out.is_aligned
    for v in range(3):
        ids = out.ids[v]
        assert torch.equal(out.token_masks[v], ds.token_masks[v][ids])
        assert torch.equal(out.views[v], ds.views[v][ids])
        assert torch.equal(out.views[v][:, 0, 0].long(), ids)
    check_padding_zero(out)


def test_drop_modalities_on_tokens():
    ds = make()
    out = drop_modalities(ds, 0.5, seed=0)
    assert 1 - float(out.mask.float().mean()) == pytest.approx(0.5, abs=0.01)
    for v in range(3):
        assert torch.equal(out.token_masks[v], ds.token_masks[v])  # unchanged
        missing = ~out.row_mask(v)
        assert bool((out.views[v][missing] == 0).all())
        kept = ~missing
        assert torch.equal(out.views[v][kept], ds.views[v][kept])
    assert bool(out.mask.any(dim=1).all())


def test_corruptions_compose_on_three_token_views():
    ds = make()
    out = add_noise(drop_modalities(unalign(ds, 0.5, seed=0), 0.25, seed=1), 0.5, seed=2)
    sub = out.subset(np.arange(0, N, 2))
    check_padding_zero(out)
    check_padding_zero(sub)
    for v in range(3):
        missing = ~sub.row_mask(v)
        assert bool((sub.views[v][missing] == 0).all())


# ---------------------------------------------------------------------------- preprocessing
def _real_rows(ds: MultiViewDataset, v: int) -> np.ndarray:
    x = ds.views[v].double().numpy()
    keep = real(ds, v).numpy() & ds.row_mask(v).numpy()[:, None]
    return x[keep]


def test_preprocessor_fits_on_real_tokens_only():
    ds = drop_modalities(make(), 0.25, seed=0, views=["a"])
    train, test = ds.subset(np.arange(30)), ds.subset(np.arange(30, N))
    prep = Preprocessor({"a": "zscore", "b": "minmax", "c": "none"}).fit(train)
    xa = _real_rows(train, 0)  # numpy over the real tokens of observed rows only
    mean, std = xa.mean(axis=0), xa.std(axis=0)
    assert np.allclose(prep.transforms_[0].mean_.numpy(), mean)
    assert np.allclose(prep.transforms_[0].scale_.numpy(), std)
    xb = _real_rows(train, 1)
    assert np.allclose(prep.transforms_[1].min_.numpy(), xb.min(axis=0))
    out = prep.transform(test)
    check_padding_zero(out)
    keep = real(test, 0) & test.row_mask(0)[:, None]
    got = out.views[0][keep].double().numpy()
    assert np.allclose(got, (test.views[0][keep].double().numpy() - mean) / std, atol=1e-5)
    assert bool((out.views[0][~test.row_mask(0)] == 0).all())
    assert torch.equal(out.views[2], test.views[2])
    assert out.token_masks[1] is test.token_masks[1] or torch.equal(
        out.token_masks[1], test.token_masks[1]
    )


def test_preprocessor_auto_and_row_wise_refused():
    ds = make()
    unit = ds.with_views([ds.views[0], ds.views[1], torch.rand(N, T[2], D[2])])
    prep = Preprocessor("auto").fit(unit)
    # features tokens: z-score; audio tokens: z-score; image tokens in [0, 1]: none.
    assert prep.specs_ == ["zscore", "zscore", "none"]
    assert Preprocessor("auto").fit(ds).specs_[2] == "minmax"  # image tokens outside [0, 1]
    for spec in ("l2", "tfidf", "zscore+l2"):
        with pytest.raises(DataError, match="whole rows"):
            Preprocessor({"a": spec}).fit(ds)
    flat = ds.with_views([x.mean(dim=1) for x in ds.views])
    with pytest.raises(DataError, match="fitted on a token view"):
        prep.transform(flat)


# ---------------------------------------------------------------------------- fingerprint
def _old_fingerprint(ds: MultiViewDataset) -> str:
    """data_fingerprint as it was before token views, for one dataset."""
    h = hashlib.sha256()
    h.update(f"dataset 0 views {json.dumps(list(ds.names))}\n".encode())
    for v, x in enumerate(ds.views):
        _update(h, f"view {v}", x)
    _update(h, "labels", ds.labels)
    for v, ids in enumerate(ds.ids):
        _update(h, f"ids {v}", ids)
    _update(h, "mask", ds.mask)
    return h.hexdigest()


def test_fingerprint_includes_token_masks():
    x = np.zeros((5, 4, 2))
    m1 = np.ones((5, 4), bool)
    m2 = m1.copy()
    m2[0, 3] = False  # the padded token was zero anyway: only the mask differs
    a = MultiViewDataset([x], token_masks=[m1])
    b = MultiViewDataset([x], token_masks=[m2])
    assert torch.equal(a.views[0], b.views[0])
    assert data_fingerprint(a) != data_fingerprint(b)
    assert data_fingerprint(a) == data_fingerprint(MultiViewDataset([x], token_masks=[None]))
    plain = MultiViewDataset([np.arange(12.0).reshape(6, 2)], np.arange(6) % 2)
    assert data_fingerprint(plain) == _old_fingerprint(plain)  # 2-D hashes as before


# ---------------------------------------------------------------------------- audio frames
def test_waves_to_frames_match_the_spectrogram():
    rng = np.random.default_rng(0)
    cfg = AudioFeatures()
    waves = [rng.normal(size=n).astype(np.float32) for n in (3000, 200, 5000, 256, 383, 384)]
    frames = waves_to_frames(waves, 8000, cfg)
    assert [f.shape for f in frames] == [(frame_count(len(w)), 32) for w in waves]
    assert [frame_count(n) for n in (200, 256, 383, 384)] == [1, 1, 1, 2]
    for w, f in zip(waves, frames, strict=True):
        # Each recording alone (zero-padded to one window when shorter), peak-normalised.
        alone = np.zeros(max(len(w), 256), dtype=np.float32)
        alone[: len(w)] = w / np.abs(w).max()
        ref = log_mel_spectrogram(torch.from_numpy(alone).reshape(1, -1), 8000)[0].T.numpy()
        assert np.allclose(f, ref, atol=1e-5)
        assert np.allclose(f, log_mel_frames(w, 8000, cfg), atol=1e-5)
    mfcc = waves_to_frames(waves[:1], 8000, AudioFeatures(kind="mfcc"))
    assert mfcc[0].shape == (frame_count(3000), 13)


def test_image_patches_row_major():
    img = np.arange(2 * 28 * 28).reshape(2, 28, 28)
    p = image_patches(img)
    assert p.shape == (2, 49, 16)
    for k in (0, 6, 7, 30, 48):
        i, j = k // 7, k % 7
        assert np.array_equal(p[1, k], img[1, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].ravel())
    with pytest.raises(DataError, match="patches"):
        image_patches(np.zeros((1, 10, 10)))


# ---------------------------------------------------------------------------- avdigits-tokens
@pytest.fixture(scope="module")
def tokens_test(avdata: Path) -> MultiViewDataset:
    return load_dataset("avdigits-tokens", avdata, split="test")


def test_avdigits_tokens_shapes(tokens_test: MultiViewDataset, avdata: Path):
    ds = tokens_test
    t_max = fsdd_max_frames(avdata)
    assert t_max == 141
    assert [tuple(x.shape) for x in ds.views] == [(300, 49, 16), (300, t_max, 32)]
    assert ds.names == ["image", "audio"] and ds.kinds == ["image", "audio"]
    assert ds.token_masks[0] is not None and bool(ds.token_masks[0].all())
    assert float(ds.views[0].min()) >= 0 and float(ds.views[0].max()) <= 1
    assert ds.source == "avdigits-tokens[test]" and ds.is_aligned
    val = load_avdigits_tokens("val", avdata)
    assert val.n_tokens == [49, t_max]  # the same T_max for every split
    check_padding_zero(ds)


def test_avdigits_tokens_same_pairs_as_avdigits(tokens_test: MultiViewDataset, avdata: Path):
    ds = tokens_test
    av = load_avdigits("test", avdata)
    assert torch.equal(ds.labels, av.labels)
    images = av.views[0].reshape(-1, 28, 28)
    r = 17
    for k in range(49):  # by hand, patch k of row r
        i, j = k // 7, k % 7
        block = images[r, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].reshape(-1)
        assert torch.equal(ds.views[0][r, k], block)
    back = ds.views[0].reshape(-1, 7, 7, 4, 4).permute(0, 1, 3, 2, 4).reshape(-1, 28, 28)
    assert torch.equal(back, images)


def test_avdigits_tokens_masks_match_frame_counts(tokens_test: MultiViewDataset, avdata: Path):
    ds = tokens_test
    pairs = avdigits_pairs("test", avdata)
    tm = real(ds, 1)
    for r in (0, 1, 57, 150, 299):
        rate, wave = load_wav(pairs[r][0])
        n = frame_count(len(wave))
        assert tm[r, :n].all() and not tm[r, n:].any()
        assert np.allclose(ds.views[1][r, :n].numpy(), log_mel_frames(wave, rate), atol=1e-5)
    counts = ds.token_lengths("audio")
    assert int(counts.min()) >= 1 and int(counts.max()) <= 141


def test_avdigits_tokens_per_image_pairing(avdata: Path):
    ds = load_avdigits_tokens("val", avdata, pairing="images")
    av = load_avdigits("val", avdata, pairing="images")
    assert torch.equal(ds.labels, av.labels) and ds.source == "avdigits-tokens[val, per image]"
    back = ds.views[0].reshape(-1, 7, 7, 4, 4).permute(0, 1, 3, 2, 4).reshape(len(ds), -1)
    assert torch.equal(back, av.views[0])
    pairs = avdigits_pairs("val", avdata, pairing="images")
    same = [r for r in range(len(pairs)) if pairs[r][0] == pairs[0][0]]
    assert len(same) > 1 and all(torch.equal(ds.views[1][r], ds.views[1][0]) for r in same)
