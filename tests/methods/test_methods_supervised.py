"""Supervised fusion: shapes, learning, gradients under masks, OTM augmentation, regression,
validation and early stopping, checkpoint resumption, input checks and devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import modalign.methods.supervised as supervised
from modalign.methods.supervised import SupervisedConfig, SupervisedFusion, stratified_holdout

FUSIONS = ["late", "tensor", "lowrank", "mi"]
K = 3  # classes
DIMS = (6, 5)
LATENT = 8
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


pytestmark = pytest.mark.usefixtures("one_thread")


def make_views(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Two views of one class signal: a class centre per view (fixed) plus unit noise."""
    centres = np.random.default_rng(0)
    c = [centres.normal(size=(K, d)) * 1.5 for d in DIMS]
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % K)
    views = [(c_m[y] + rng.normal(size=(n, c_m.shape[1]))).astype(np.float32) for c_m in c]
    return views, y


@pytest.fixture(scope="module")
def data():
    return make_views(240, seed=1)


def small_config(**kw) -> SupervisedConfig:
    base = dict(
        n_outputs=K,
        latent_dim=LATENT,
        hidden=16,
        fusion_dim=16,
        epochs=10,
        batch_size=60,
        lr=1e-2,
        patience=None,
        val_fraction=0.0,
    )
    base.update(kw)
    return SupervisedConfig(**base)


@pytest.fixture(scope="module", params=[(f, o) for f in FUSIONS for o in (False, True)])
def fitted(request, data):
    fusion, otm = request.param
    views, y = data
    model = SupervisedFusion(small_config(fusion=fusion, otm=otm), random_state=0)
    return model.fit(views, y)


def _tensors(views, rows=slice(None)):
    # Copies: the tests write junk into them, never into the shared fixture.
    return [torch.tensor(v[rows]) for v in views]


# ---------------------------------------------------------------- shapes and learning


def test_forward_shapes_learning_and_single_modality_prediction(fitted, data):
    views, y = data
    out = fitted(_tensors(views, slice(0, 10)))
    assert tuple(out.fused.shape) == (10, K)
    assert len(out.unimodal) == 2 and all(tuple(u.shape) == (10, K) for u in out.unimodal)
    assert len(out.codes) == 2 and all(tuple(z.shape) == (10, LATENT) for z in out.codes)

    h = fitted.history
    assert len(h) == 10 and h[-1]["fused"] < 0.5 * h[0]["fused"]
    assert (h[-1]["mixed"] > 0) == fitted.config.otm
    pred = fitted.predict(views)
    assert pred.shape == (240,) and pred.dtype.kind == "i"
    assert fitted.score(views, y)["accuracy"] > 0.9  # chance is 1/3
    # Fresh samples of the same distribution.
    test_views, test_y = make_views(150, seed=2)
    assert fitted.score(test_views, test_y)["accuracy"] > 0.8
    for m in (0, 1, -1):
        single = fitted.predict(test_views, modality=m)
        assert single.shape == (150,)
        assert float((single == test_y).mean()) > 0.7
    # The modality heads are not the fused head.
    assert not torch.equal(fitted.decision(test_views, modality=0), fitted.decision(test_views))


def test_single_modality_prediction_ignores_the_other_views(fitted, data):
    views, _ = data
    junk = np.full_like(views[0], np.nan)
    ref = fitted.decision(views, modality=1)
    assert torch.equal(fitted.decision([junk, views[1]], modality=1), ref)
    # The selected view itself is still checked.
    with pytest.raises(ValueError, match="modality 1: NaN"):
        fitted.decision([views[0], np.full_like(views[1], np.nan)], modality=1)


# ---------------------------------------------------------------- gradients and masks


def _grad_is_zero(module) -> bool:
    return all(p.grad is None or not bool(p.grad.any()) for p in module.parameters())


def _every_grad_nonzero(module) -> bool:
    return all(p.grad is not None and bool(p.grad.any()) for p in module.parameters())


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_part_gets_a_gradient_and_a_missing_modality_none(fusion, data):
    views, y = data
    model = SupervisedFusion(small_config(fusion=fusion, epochs=1), random_state=3)
    model.fit(views, y)
    xs, target = _tensors(views, slice(0, 40)), torch.as_tensor(y[:40])
    present = torch.ones(40, 2, dtype=torch.bool)

    model.zero_grad(set_to_none=True)
    fused, unimodal = model.loss_terms(model(xs, present), target, present)
    (fused + unimodal).backward()
    for part in (*model.encoders, model.fusion, model.head, *model.unimodal_heads):
        assert _every_grad_nonzero(part)

    # Modality 1 missing in every row: its encoder and head get exactly zero gradient from
    # both the fused and the unimodal losses, modality 0 still learns.
    present[:, 1] = False
    model.zero_grad(set_to_none=True)
    fused, unimodal = model.loss_terms(model(xs, present), target, present)
    assert float(fused.detach()) > 0 and float(unimodal.detach()) > 0
    (fused + unimodal).backward()
    assert _grad_is_zero(model.encoders[1]) and _grad_is_zero(model.unimodal_heads[1])
    assert _every_grad_nonzero(model.encoders[0]) and _every_grad_nonzero(model.head)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_gradient_does_not_depend_on_missing_rows(fusion, data):
    views, y = data
    model = SupervisedFusion(small_config(fusion=fusion, epochs=1), random_state=3)
    model.fit(views, y)
    gen = torch.Generator().manual_seed(0)
    present = torch.rand(40, 2, generator=gen) > 0.3
    target = torch.as_tensor(y[:40])

    def grads(junk_seed: int) -> list[torch.Tensor]:
        xs = _tensors(views, slice(0, 40))
        g = torch.Generator().manual_seed(junk_seed)
        for m, x in enumerate(xs):
            x[~present[:, m]] = 100 * torch.randn(
                int((~present[:, m]).sum()), x.shape[1], generator=g
            )
        model.zero_grad(set_to_none=True)
        fused, unimodal = model.loss_terms(model(xs, present), target, present)
        (fused + unimodal).backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(1), grads(2)):
        assert torch.equal(a, b)


def test_predictions_do_not_depend_on_missing_rows(fitted, data):
    views, _ = data
    rng = np.random.default_rng(0)
    mask = rng.random((240, 2)) > 0.3
    mask[:5] = [[True, False], [False, True], [False, False], [True, True], [True, False]]
    nan_views = [np.where(mask[:, [m]], v, np.nan).astype(np.float32) for m, v in enumerate(views)]
    junk_views = [
        np.where(mask[:, [m]], v, rng.normal(size=v.shape) * 50).astype(np.float32)
        for m, v in enumerate(views)
    ]
    ref = fitted.decision(nan_views, mask)
    assert torch.isfinite(ref).all()
    assert torch.equal(fitted.decision(junk_views, mask), ref)
    assert torch.equal(fitted.decision(junk_views, torch.as_tensor(mask, dtype=torch.float32)), ref)
    for m in (0, 1):
        assert torch.equal(
            fitted.decision(nan_views, mask, modality=m),
            fitted.decision(junk_views, mask, modality=m),
        )
    # The mask matters: rows with a missing modality change against the complete views.
    full = fitted.decision(views)
    assert not torch.equal(full[~mask.all(1)], ref[~mask.all(1)])
    assert torch.equal(full[mask.all(1)], ref[mask.all(1)])
    # NaN in a present row is refused.
    with pytest.raises(ValueError, match="NaN"):
        fitted.decision(nan_views)


def test_fit_with_missing_rows_in_the_training_mask(data):
    views, y = data
    mask = np.random.default_rng(1).random((240, 2)) > 0.2
    mask[~mask.any(1), 0] = True
    nan_views = [np.where(mask[:, [m]], v, np.nan).astype(np.float32) for m, v in enumerate(views)]
    model = SupervisedFusion(small_config(), random_state=0).fit(nan_views, y, mask=mask)
    assert all(np.isfinite(h["loss"]) for h in model.history)
    assert model.score(nan_views, y, mask)["accuracy"] > 0.8


# ---------------------------------------------------------------- OTM augmentation


def test_otm_augmentation_goes_through_ot_mix(data, monkeypatch):
    views, y = data
    calls = []

    def spy(codes, generator, **kw):
        calls.append(([tuple(z.shape) for z in codes], kw))
        return real(codes, generator, **kw)

    real = supervised.ot_mix
    monkeypatch.setattr(supervised, "ot_mix", spy)
    cfg = dict(fusion="lowrank", epochs=3)
    plain = SupervisedFusion(small_config(**cfg), random_state=5).fit(views, y)
    assert calls == []
    mixed = SupervisedFusion(small_config(otm=True, mixer="wb", **cfg), random_state=5)
    mixed.fit(views, y)
    # 240 rows in batches of 60: 4 batches an epoch, each mixing both modalities' codes.
    assert len(calls) == 3 * 4
    assert all(c == ([(60, LATENT), (60, LATENT)], {"mixer": "wb", "alpha": 0.5}) for c in calls)
    assert all(h["mixed"] > 0 for h in mixed.history)
    assert all(h["mixed"] == 0 for h in plain.history)
    for h in mixed.history:  # the logged loss includes the mixed term
        total = h["fused"] + h["unimodal"] + h["mixed"]
        assert h["loss"] == pytest.approx(total, rel=1e-5)
    # Same seed, same initial weights: only the augmentation makes them differ.
    a, b = plain.state_dict(), mixed.state_dict()
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(plain.decision(views), mixed.decision(views))


def test_otm_with_zero_weight_equals_no_otm(data):
    # This holds exactly by construction, so it is asserted bit for bit: each epoch reseeds
    # its generator and draws the batch order *before* any ot_mix call, so the random numbers
    # ot_mix consumes change nothing else; and with lambda_mix=0 the mixed loss adds exact
    # zeros to every gradient (its values are finite), so Adam takes the same steps.
    views, y = data
    cfg = dict(fusion="mi", epochs=3)
    plain = SupervisedFusion(small_config(**cfg), random_state=2).fit(views, y)
    zero = SupervisedFusion(small_config(otm=True, lambda_mix=0.0, **cfg), random_state=2)
    zero.fit(views, y)
    assert all(h["mixed"] > 0 for h in zero.history)  # the mixer did run
    assert torch.equal(zero.decision(views), plain.decision(views))
    for k, v in plain.state_dict().items():
        assert torch.equal(zero.state_dict()[k], v)


# ---------------------------------------------------------------- regression


def test_regression_learns_a_linear_target(data):
    views, _ = data
    rng = np.random.default_rng(3)
    w = [rng.normal(size=d) for d in DIMS]
    target = (views[0] @ w[0] + views[1] @ w[1] + 0.1 * rng.normal(size=240)).astype(np.float32)
    target = (target - target.mean()) / target.std()
    cfg = small_config(task="regression", n_outputs=1, epochs=40, fusion="late")
    model = SupervisedFusion(cfg, random_state=0).fit(views, target)
    pred = model.predict(views)
    assert pred.shape == (240, 1) and pred.dtype == np.float32
    scores = model.score(views, target)
    assert set(scores) == {"mae", "pearson"}
    assert scores["pearson"] > 0.9
    assert scores["pearson"] == pytest.approx(np.corrcoef(pred[:, 0], target)[0, 1], abs=1e-5)
    assert scores["mae"] == pytest.approx(np.abs(pred[:, 0] - target).mean(), abs=1e-5)
    # (N, 1) targets are the same as (N,).
    again = SupervisedFusion(cfg, random_state=0).fit(views, target[:, None])
    assert np.array_equal(again.predict(views), pred)
    with pytest.raises(ValueError, match="expected 2 target"):
        SupervisedFusion(small_config(task="regression", n_outputs=2)).fit(views, target)


# ---------------------------------------------------------------- validation


def test_validation_set_records_val_loss_and_stops_early(data):
    views, y = data
    # Validation labels unrelated to the inputs: the validation loss soon rises.
    val_views, _ = make_views(90, seed=4)
    val_y = np.random.default_rng(5).integers(0, K, size=90)
    model = SupervisedFusion(small_config(epochs=30, patience=3, lr=3e-2), random_state=0)
    model.fit(views, y, validation=(val_views, val_y))
    h = model.history
    assert all("val_loss" in e for e in h)
    assert 4 <= len(h) < 30
    vals = [e["val_loss"] for e in h]
    best = int(np.argmin(vals))
    assert len(h) == best + 1 + 3  # exactly `patience` non-improving epochs after the best
    # The model holds the best epoch's weights: its validation loss is the best one.
    vx, vp = model._check_views(val_views, None, fitted=True)
    with torch.no_grad():
        fused, unimodal = model.loss_terms(model(vx, vp), torch.as_tensor(val_y), vp)
    assert float(fused + unimodal) == pytest.approx(vals[best], rel=1e-6)


def test_val_fraction_holds_out_a_stratified_split(data):
    views, y = data
    cfg = small_config(epochs=3, val_fraction=0.25)
    auto = SupervisedFusion(cfg, random_state=7).fit(views, y)
    assert all("val_loss" in e for e in auto.history)
    # The same as giving that holdout explicitly.
    tr, va = stratified_holdout(y, 0.25, seed=7)
    explicit = SupervisedFusion(cfg, random_state=7)
    explicit.fit([v[tr] for v in views], y[tr], validation=([v[va] for v in views], y[va]))
    assert explicit.history == auto.history
    assert torch.equal(explicit.decision(views), auto.decision(views))
    # No validation at all with val_fraction=0.
    none = SupervisedFusion(small_config(epochs=2), random_state=7).fit(views, y)
    assert all("val_loss" not in e for e in none.history)


def test_stratified_holdout():
    y = np.repeat(np.arange(5), [40, 20, 7, 2, 1])
    y = y[np.random.default_rng(0).permutation(len(y))]
    tr, va = stratified_holdout(y, 0.25, seed=3)
    assert len(np.intersect1d(tr, va)) == 0
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(y)))
    assert tr.dtype == np.int64 and va.dtype == np.int64
    for c, size in enumerate([40, 20, 7, 2, 1]):
        n_held = int((y[va] == c).sum())
        if size >= 2:
            assert n_held >= 1 and (y[tr] == c).sum() >= 1  # every class in both parts
            assert abs(n_held - 0.25 * size) <= 1
        else:
            assert n_held == 0  # a single row stays in training
    assert abs(len(va) - 0.25 * len(y)) <= 3
    tr2, va2 = stratified_holdout(y, 0.25, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, stratified_holdout(y, 0.25, seed=4)[1])
    _, flat = stratified_holdout(y, 0.25, seed=3, stratify=False)
    assert len(flat) == round(0.25 * len(y))


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_resume_equals_uninterrupted_run(data, tmp_path):
    views, y = data
    cfg = small_config(fusion="tensor", otm=True, epochs=5, patience=2, val_fraction=0.2)
    full = SupervisedFusion(cfg, random_state=1).fit(views, y, checkpoint=tmp_path / "full.pt")
    part = SupervisedFusion(cfg, random_state=1)
    part.fit(views, y, checkpoint=tmp_path / "resumed.pt", stop_after=2)
    assert len(part.history) == 2
    resumed = SupervisedFusion(cfg, random_state=1)
    resumed.fit(views, y, checkpoint=tmp_path / "resumed.pt")
    assert resumed.history == full.history and len(full.history) >= 3
    assert torch.equal(resumed.decision(views), full.decision(views))
    a, b = resumed.state_dict(), full.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Nothing half-written is left behind: the checkpoints and their training curves only.
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != "tensorboard")
    assert written == ["full.history.csv", "full.pt", "resumed.history.csv", "resumed.pt"]

    other = SupervisedFusion(small_config(fusion="tensor", otm=True, epochs=5, fusion_dim=8))
    with pytest.raises(ValueError, match="other settings"):
        other.fit(views, y, checkpoint=tmp_path / "full.pt")
    with pytest.raises(ValueError, match="other settings"):  # another seed
        SupervisedFusion(cfg, random_state=2).fit(views, y, checkpoint=tmp_path / "full.pt")
    with pytest.raises(ValueError, match="other settings"):  # other input widths
        SupervisedFusion(cfg, random_state=1).fit(
            [views[0], views[1][:, :4]], y, checkpoint=tmp_path / "full.pt"
        )


# ---------------------------------------------------------------- input checks


def test_bad_views_and_targets_are_refused_with_clear_messages(data):
    views, y = data
    model = SupervisedFusion(small_config(epochs=1))
    with pytest.raises(RuntimeError, match="call fit"):
        model.predict(views)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        model.fit([views[0]], y)
    with pytest.raises(ValueError, match="list"):
        model.fit(views[0], y)
    with pytest.raises(ValueError, match="row counts"):
        model.fit([views[0], views[1][:-1]], y)
    with pytest.raises(ValueError, match=r"modality 1: expected an \(N, D\)"):
        model.fit([views[0], views[1][:, 0]], y)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        model.fit(views, np.where(y == 0, 3, y))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        model.fit(views, y - 1)
    with pytest.raises(ValueError, match="integer label"):
        model.fit(views, y + 0.5)
    with pytest.raises(ValueError, match="y: 239 targets for 240"):
        model.fit(views, y[:-1])
    bad = views[1].copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="audio: NaN or infinite"):
        model.fit([views[0], bad], y, modality_names=["image", "audio"])
    with pytest.raises(ValueError, match=r"mask: expected shape \(240, 2\)"):
        model.fit(views, y, mask=np.ones((240, 3), dtype=bool))
    with pytest.raises(ValueError, match="mask: values must be 0 or 1"):
        model.fit(views, y, mask=np.full((240, 2), 0.5))
    incomplete = np.ones((240, 2), dtype=bool)
    incomplete[0, 1] = False
    with pytest.raises(ValueError, match="complete rows"):
        SupervisedFusion(small_config(otm=True)).fit(views, y, mask=incomplete)
    with pytest.raises(ValueError, match="validation audio: 4 features, training has 5"):
        model.fit(
            views,
            y,
            validation=([views[0], views[1][:, :4]], y),
            modality_names=["image", "audio"],
        )

    model.fit(views, y, modality_names=["image", "audio"])
    with pytest.raises(ValueError, match="audio: the model was trained on 5 features, got 4"):
        model.predict([views[0], views[1][:, :4]])
    with pytest.raises(ValueError, match="trained on 2 modalities, got 3"):
        model.predict([*views, views[0]])
    with pytest.raises(ValueError, match="modality must index one of 2"):
        model.predict(views, modality=2)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"fusion": "attention"}, "fusion must be one of"),
        ({"task": "ranking"}, "task must be one of"),
        ({"mixer": "sinkhorn"}, "mixer must be 'fgw' or 'wb'"),
        ({"mixer": "none"}, "mixer must be 'fgw' or 'wb'"),
        ({"n_outputs": 1}, "n_outputs must be >= 2"),
        ({"task": "regression", "n_outputs": 0}, "n_outputs must be"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 1}, "batch_size >= 2"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"patience": 0}, "patience must be >= 1"),
    ],
)
def test_bad_config_values(kw, message):
    with pytest.raises(ValueError, match=message):
        small_config(**kw)


# ---------------------------------------------------------------- devices


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=[needs_cuda, pytest.mark.cuda])]
)
def test_fit_and_predict_on_device(device, data):
    views, y = data
    cfg = small_config(fusion="lowrank", otm=True, device=device, val_fraction=0.2, patience=3)
    model = SupervisedFusion(cfg, random_state=0).fit(views, y)
    assert all(p.device.type == device for p in model.parameters())
    assert model.decision(views).device.type == device
    pred = model.predict(views)
    assert isinstance(pred, np.ndarray) and pred.shape == (240,)
    assert float((pred == y).mean()) > 0.8
    assert float((model.predict(views, modality=0) == y).mean()) > 0.6
    # Torch tensors on the device are accepted as inputs too.
    on_device = [torch.as_tensor(v, device=device) for v in views]
    assert np.array_equal(model.predict(on_device), pred)


def test_single_fallback_predicts_lone_modalities_with_their_own_heads():
    torch.manual_seed(0)
    views = [torch.randn(30, 4), torch.randn(30, 3)]
    y = torch.arange(30) % 3
    cfg = SupervisedConfig(n_outputs=3, fusion="tensor", epochs=2, val_fraction=0.0)
    model = SupervisedFusion(cfg, random_state=0).fit(views, y)
    mask = torch.ones(30, 2, dtype=torch.bool)
    mask[:10, 1] = False  # rows 0-9: modality 0 alone
    mask[10:20, 0] = False  # rows 10-19: modality 1 alone
    plain = model.decision(views, mask)
    fallback = model.decision(views, mask, single_fallback=True)
    model.config.single_fallback = True  # the config's default, used when not given
    assert torch.equal(model.decision(views, mask), fallback)
    assert torch.equal(model.decision(views, mask, single_fallback=False), plain)
    assert torch.equal(fallback[:10], model.decision(views, modality=0)[:10])
    assert torch.equal(fallback[10:20], model.decision(views, modality=1)[10:20])
    assert torch.equal(fallback[20:], plain[20:])  # both present: the fusion head
    assert not torch.allclose(fallback[:20], plain[:20])
