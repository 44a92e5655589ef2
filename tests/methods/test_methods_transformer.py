"""Transformer classifiers with Wasserstein modality alignment, on a planted synthetic token
task with M = 3 modalities: learning (and an untrained model at chance), no new parameters
with alignment, alignment off bit-identical, the alignment gradient (plan fixed), modality
dropout, missing modalities at prediction, interruption and resumption, input checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import modalign.methods.transformer as transformer
from modalign.methods.transformer import (
    TransformerClassifier,
    TransformerConfig,
    check_token_views,
    length_sorted_batches,
    modality_dropout,
)
from modalign.ot.token import token_cost, token_ot

pytestmark = pytest.mark.usefixtures("one_thread")

K = 3  # classes
DIMS = (4, 5, 3)
LENS = (6, 8, 5)
KINDS = ["late", "early"]


def make_tokens(n: int, seed: int):
    """M = 3 token views of one class signal: every real token is its class centre (fixed per
    modality) plus unit noise; variable lengths, NaN in the padding; balanced classes."""
    centres = np.random.default_rng(0)
    c = [centres.normal(size=(K, d)) for d in DIMS]
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % K)
    views, masks = [], []
    for c_m, t in zip(c, LENS):
        x = c_m[y][:, None, :] + rng.normal(size=(n, t, c_m.shape[1]))
        mask = np.arange(t)[None, :] < rng.integers(2, t + 1, size=n)[:, None]
        x[~mask] = np.nan
        views.append(x.astype(np.float32))
        masks.append(mask)
    return views, masks, y


@pytest.fixture(scope="module")
def data():
    return make_tokens(180, seed=1), make_tokens(150, seed=2)


def small_config(**kw) -> TransformerConfig:
    base = dict(
        n_outputs=K,
        width=16,
        heads=2,
        layers=1,
        dropout=0.0,
        epochs=5,
        batch_size=36,
        lr=3e-3,
        patience=None,
        val_fraction=0.0,
        n_iter=20,
    )
    base.update(kw)
    return TransformerConfig(**base)


def tensors(views, masks, rows=slice(None)):
    return [torch.tensor(v[rows]) for v in views], [torch.tensor(m[rows]) for m in masks]


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- learning


@pytest.mark.parametrize("kind", KINDS)
def test_learns_the_planted_task_and_an_untrained_model_does_not(kind, data):
    (views, masks, y), (tv, tm, ty) = data
    cfg = small_config(fusion=kind, align=True, alpha=0.5)
    model = TransformerClassifier(cfg, random_state=0).fit(views, y, masks)
    h = model.history
    assert len(h) == 5 and h[-1]["ce"] < 0.5 * h[0]["ce"] and h[-1]["align"] > 0
    scores = model.score(tv, ty, tm)
    assert set(scores) == {"accuracy", "macro_f1"}
    # The same threshold fails for the same model untrained (stop_after=0: initial weights).
    untrained = TransformerClassifier(cfg, random_state=0).fit(views, y, masks, stop_after=0)
    chance = untrained.score(tv, ty, tm)["accuracy"]
    assert scores["accuracy"] >= 0.85 and chance < 0.6
    # Single-modality inference and missing modalities at prediction.
    alone = model.score(tv, ty, tm, modality=1)["accuracy"]
    assert alone > 0.6
    mask = np.ones((150, 3), dtype=bool)
    mask[:, 0] = False
    assert model.score(tv, ty, tm, mask)["accuracy"] > 0.7


def test_one_step_lowers_the_aligned_objective(data):
    (views, masks, y), _ = data
    cfg = small_config(align=True, alpha=1.0, lr=1e-3)
    model = TransformerClassifier(cfg, random_state=0)
    model._build(DIMS, LENS)
    xs, tms, present = check_token_views(views, masks)
    target = torch.as_tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def objective():
        out = model(xs, tms, present)
        return F.cross_entropy(out.logits, target) + cfg.alpha * model.alignment_loss(out)

    before = objective()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        assert float(objective()) < float(before)


# ---------------------------------------------------------------- alignment: no parameter, off


@pytest.mark.parametrize("kind", KINDS)
def test_alignment_adds_no_parameter(kind):
    on = TransformerClassifier(small_config(fusion=kind, align=True, alpha=5.0), random_state=3)
    off = TransformerClassifier(small_config(fusion=kind, align=False), random_state=3)
    on._build(DIMS, LENS)
    off._build(DIMS, LENS)
    count = [sum(p.numel() for p in m.parameters()) for m in (on, off)]
    assert count[0] == count[1] > 0
    assert list(on.state_dict()) == list(off.state_dict())
    assert state_equal(on, off)  # the same initial weights too


@pytest.mark.parametrize("kind", KINDS)
def test_alignment_off_is_the_plain_model_to_the_bit(kind, data, monkeypatch):
    """align=False runs no alignment code at all; it trains exactly as align=True with
    alpha=0 (which runs the whole alignment path, with weight 0): alignment leaves the
    forward pass, the random streams and the optimiser untouched."""
    (views, masks, y), _ = data
    kw = dict(fusion=kind, epochs=2, dropout=0.1, modality_dropout=0.3)
    on = TransformerClassifier(small_config(align=True, alpha=0.0, **kw), random_state=5)
    on.fit(views, y, masks)
    assert on.history[0]["align"] > 0  # it did run

    def forbidden(*args, **kwargs):
        raise AssertionError("alignment computed with align=False")

    monkeypatch.setattr(transformer, "token_alignment_loss", forbidden)
    off = TransformerClassifier(small_config(align=False, **kw), random_state=5)
    off.fit(views, y, masks)
    assert state_equal(on, off)
    assert [h["ce"] for h in on.history] == [h["ce"] for h in off.history]
    xs, tms = tensors(views, masks, slice(0, 20))
    assert torch.equal(on.decision(xs, tms), off.decision(xs, tms))


# ---------------------------------------------------------------- alignment gradient


@pytest.mark.parametrize("kind", KINDS)
def test_alignment_gradient_reaches_the_encoders_through_the_cost_only(kind, data):
    (views, masks, y), _ = data
    cfg = small_config(
        fusion=kind, layers=2, align=True, **({"align_layer": 1} if kind == "early" else {})
    )
    model = TransformerClassifier(cfg, random_state=0)
    model._build(DIMS, LENS)
    xs, tms, present = check_token_views(views, masks)
    present[:40, 0] = False  # pairs over different subsets of rows
    present[40:60, 2] = False
    xs, tms, present = [x[:80] for x in xs], [t[:80] for t in tms], present[:80]
    out = model(xs, tms, present)
    model.zero_grad()
    model.alignment_loss(out).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    net = model.net
    if kind == "late":
        shaped = [f"net.encoders.{m}." for m in range(3)]
        unused = ["net.fusion.", "net.head.", "net.cls", "net.modality_embedding"]
    else:
        shaped = ["net.embeddings.", "net.encoder.layers.0.", "net.modality_embedding"]
        # ([CLS] is a key of layer 1, so it shapes the aligned tokens too.)
        unused = ["net.encoder.layers.1.", "net.encoder.norm.", "net.head."]
    for prefix in shaped:
        assert any(n.startswith(prefix) and float(g.abs().sum()) > 0 for n, g in got.items())
    assert not any(n.startswith(tuple(unused)) and float(g.abs().sum()) > 0 for n, g in got.items())
    # By hand: the plan of each pair solved on the detached cost and held fixed; the gradient
    # is that of <P, C(tokens)>, averaged over each pair's rows and over the pairs.
    out = model(xs, tms, present)
    terms = []
    for a, b in itertools.combinations(range(3), 2):
        rows = out.masks[a].any(1) & out.masks[b].any(1)
        ta, tb, ma, mb = (
            out.tokens[a][rows],
            out.tokens[b][rows],
            out.masks[a][rows],
            out.masks[b][rows],
        )
        cost = token_cost(ta, tb, ma, mb)
        plan, _ = token_ot(cost.detach(), ma, mb, n_iter=cfg.n_iter, beta=cfg.beta)
        terms.append((plan * cost).sum((1, 2)).mean())
    model.zero_grad()
    torch.stack(terms).mean().backward()
    assert set(got) == {n for n, p in net.named_parameters(prefix="net") if p.grad is not None}
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- modality dropout


def test_modality_dropout_never_drops_every_modality():
    g = torch.Generator().manual_seed(0)
    present = torch.rand(4000, 3, generator=g) < 0.8
    present[present.sum(1) == 0, 0] = True
    kept = modality_dropout(present, 0.6, torch.Generator().manual_seed(1))
    assert bool(kept.any(1).all())  # never all
    assert not bool((kept & ~present).any())  # never adds a modality
    single = present.sum(1) == 1
    assert torch.equal(kept[single], present[single])  # a lone modality is always kept
    several = present.sum(1) == 3
    rate = 1 - float(kept[several].float().mean())
    assert 0.5 < rate < 0.6  # about 0.6 but for the rescued samples (0.6 ** 3 of them)
    again = modality_dropout(present, 0.6, torch.Generator().manual_seed(1))
    assert torch.equal(kept, again)
    assert torch.equal(modality_dropout(present, 0.0, g), present)


def test_training_applies_modality_dropout(data):
    (views, masks, y), _ = data
    model = TransformerClassifier(small_config(epochs=1, modality_dropout=0.5), random_state=0)
    seen = []
    real_build = model._build

    def build(*args):
        real_build(*args)
        model.net.register_forward_pre_hook(lambda mod, args: seen.append(args[2].clone()))

    model._build = build
    model.fit(views, y, masks)
    assert len(seen) == 5
    masks_seen = torch.cat(seen)
    assert bool(masks_seen.any(1).all())
    assert 0.3 < 1 - float(masks_seen.float().mean()) < 0.5


# ---------------------------------------------------------------- missing modalities, resume


def test_predictions_ignore_missing_modalities_values(data):
    (views, masks, y), (tv, tm, ty) = data
    model = TransformerClassifier(small_config(epochs=1), random_state=0).fit(views, y, masks)
    xs, tms = tensors(tv, tm, slice(0, 30))
    mask = torch.ones(30, 3, dtype=torch.bool)
    mask[::2, 1] = False
    base = model.decision(xs, tms, mask)
    junk = [x.clone() for x in xs]
    junk[1][::2] = float("nan")
    assert torch.equal(model.decision(junk, tms, mask), base)
    alone = model.decision(junk, tms, modality=0)  # only modality 0 is read
    assert torch.equal(alone, model.decision(xs, tms, torch.tensor([[1, 0, 0]] * 30)))


def test_interrupted_training_resumes_to_the_same_weights(data, tmp_path):
    (views, masks, y), _ = data
    cfg = small_config(
        epochs=3, dropout=0.1, modality_dropout=0.3, align=True, val_fraction=0.2, patience=2
    )
    full = TransformerClassifier(cfg, random_state=1).fit(
        views, y, masks, checkpoint=tmp_path / "a.pt"
    )
    part = TransformerClassifier(cfg, random_state=1)
    part.fit(views, y, masks, checkpoint=tmp_path / "b.pt", stop_after=2)
    assert len(part.history) == 2
    resumed = TransformerClassifier(cfg, random_state=1)
    resumed.fit(views, y, masks, checkpoint=tmp_path / "b.pt")
    assert resumed.history == full.history and len(full.history) == 3
    assert all("val_loss" in h for h in full.history)
    assert state_equal(resumed, full)
    with pytest.raises(ValueError, match="other settings"):
        TransformerClassifier(small_config(epochs=3, alpha=0.2), random_state=1).fit(
            views, y, masks, checkpoint=tmp_path / "a.pt"
        )


def test_validation_set_and_early_stopping(data):
    (views, masks, y), (tv, tm, ty) = data
    cfg = small_config(epochs=6, lr=0.05, patience=1)
    model = TransformerClassifier(cfg, random_state=0)
    model.fit(views, y, masks, validation=(tv, ty, tm, np.ones((150, 3))))
    losses = [h["val_loss"] for h in model.history]
    best = int(np.argmin(losses))
    assert len(losses) <= 6 and (len(losses) == 6 or best == len(losses) - 2)
    xs, tms = tensors(tv, tm)
    logits = model.decision(xs, tms)
    assert abs(float(F.cross_entropy(logits, torch.as_tensor(ty))) - losses[best]) < 1e-5


# ---------------------------------------------------------------- checks


def test_config_and_input_errors(data):
    (views, masks, y), _ = data
    for bad, match in [
        (dict(fusion="middle"), "fusion"),
        (dict(width=20, heads=2), "multiple of the heads"),  # 8 fusion heads
        (dict(solver="emd"), "solver"),
        (dict(beta=0.0), "beta"),
        (dict(alpha=-1.0), "alpha"),
        (dict(align_layer=1), "early fusion only"),
        (dict(fusion="early", layers=2, align_layer=3), "align_layer"),
        (dict(modality_dropout=1.0), "modality_dropout"),
        (dict(n_outputs=1), "n_outputs"),
    ]:
        with pytest.raises(ValueError, match=match):
            small_config(**bad)
    model = TransformerClassifier(small_config(epochs=1), random_state=0)
    with pytest.raises(RuntimeError, match="call fit"):
        model.predict(views, masks)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        model.fit(views[:1], y, masks[:1])
    with pytest.raises(ValueError, match=r"modality 1: expected \(N, T, d\)"):
        model.fit([views[0], views[1][:, 0], views[2]], y, masks)
    with pytest.raises(ValueError, match="token mask of shape"):
        model.fit(views, y, [masks[0], masks[1][:, :3], masks[2]])
    nan = [v.copy() for v in views]
    nan[2][0, 0] = np.nan  # a real token (every sample has >= 2)
    with pytest.raises(ValueError, match="modality 2: NaN"):
        model.fit(nan, y, masks)
    none = np.ones((180, 3))
    none[7] = 0
    with pytest.raises(ValueError, match="sample 7 has no present modality"):
        model.fit(views, y, masks, mask=none)
    with pytest.raises(ValueError, match="labels must lie"):
        model.fit(views, np.full(180, K), masks)
    model.fit(views, y, masks)
    longer = [np.concatenate([views[0], views[0]], 1), views[1], views[2]]
    with pytest.raises(ValueError, match="longer than the 6"):
        model.predict(longer, [np.concatenate([masks[0], masks[0]], 1), masks[1], masks[2]])
    with pytest.raises(ValueError, match="trained on d=5"):
        model.predict([views[0], views[1][..., :2], views[2]], masks)


# ---------------------------------------------------------------- length-sorted batches


def test_length_sorted_batches_cover_random_rows_with_less_padding():
    lengths = torch.randint(1, 200, (1000,), generator=torch.Generator().manual_seed(0))

    def draw(pool: int, seed: int = 3) -> list[torch.Tensor]:
        return length_sorted_batches(lengths, 64, pool, torch.Generator().manual_seed(seed))

    for pool in (1, 4, 100):
        batches = draw(pool)
        rows = torch.cat(batches)
        assert len(batches) == 1000 // 64 and all(len(b) == 64 for b in batches)
        assert len(rows.unique()) == len(rows)  # no row twice; 1000 - 960 sit out
        assert all(torch.equal(a, b) for a, b in zip(batches, draw(pool)))  # seeded
    # pool 1: the plain shuffled batches of the generator's permutation.
    plain = torch.randperm(1000, generator=torch.Generator().manual_seed(3))[:960]
    assert torch.equal(torch.cat(draw(1)), plain)
    # Sorted pools: the padding (longest minus mean length per batch) shrinks; the batches'
    # order is shuffled (not ascending), and another seed leaves other rows out.
    waste = {
        pool: float(sum(lengths[b].max() - lengths[b].float().mean() for b in draw(pool)))
        for pool in (1, 4, 100)
    }
    assert waste[100] < waste[4] < 0.5 * waste[1]
    longest = torch.stack([lengths[b].max() for b in draw(100)])
    assert not torch.equal(longest, longest.sort().values)
    assert not torch.equal(
        torch.cat(draw(100)).sort().values, torch.cat(draw(100, 4)).sort().values
    )
    with pytest.raises(ValueError, match="sort_pool"):
        TransformerConfig(n_outputs=2, sort_pool=0)
