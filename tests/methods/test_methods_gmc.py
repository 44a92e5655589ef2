"""GMC: the loss against a brute-force loop, the shared head, gradients of missing modalities,
subset encodings, resumption, and that training is what makes the representation align."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modalign.data import Preprocessor, load_digits_views
from modalign.eval.geometry import retrieval_scores
from modalign.methods import GMC, GMCConfig, gmc_loss
from modalign.nn import AudioConvEncoder, ImageConvEncoder, MLPEncoder, modality_encoder

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _brute_force_loss(joint, modalities, tau, negatives):
    """One anchor at a time: -log(exp(s_pos) / sum over the allowed rows of exp(s))."""
    b = joint.shape[0]
    total = 0.0
    for z in modalities:
        rows = torch.cat([joint, z]).double()
        per_anchor = []
        for a in range(2 * b):
            pos = a + b if a < b else a - b
            allowed = [
                c for c in range(2 * b) if c != a and (negatives == "all" or c < b or c == pos)
            ]
            sims = [float(rows[a] @ rows[c]) / tau for c in allowed]
            log_denominator = math.log(sum(math.exp(s) for s in sims))
            per_anchor.append(log_denominator - float(rows[a] @ rows[pos]) / tau)
        total += sum(per_anchor) / len(per_anchor)
    return total


@pytest.mark.parametrize("negatives", ["all", "joint"])
@pytest.mark.parametrize("tau", [0.1, 0.3])
def test_loss_matches_brute_force(negatives, tau):
    gen = torch.Generator().manual_seed(0)
    joint = F.normalize(torch.randn(7, 5, generator=gen, dtype=torch.float64), dim=1)
    mods = [
        F.normalize(torch.randn(7, 5, generator=gen, dtype=torch.float64), dim=1) for _ in range(3)
    ]
    got = float(gmc_loss(joint, mods, tau, negatives))
    assert got == pytest.approx(_brute_force_loss(joint, mods, tau, negatives), rel=1e-10)


def test_loss_rewards_alignment():
    gen = torch.Generator().manual_seed(1)
    joint = F.normalize(torch.randn(16, 8, generator=gen), dim=1)
    aligned = float(gmc_loss(joint, [joint.clone()], 0.1))
    shuffled = float(gmc_loss(joint, [joint[torch.randperm(16, generator=gen)]], 0.1))
    assert aligned < shuffled
    with pytest.raises(ValueError, match="negatives"):
        gmc_loss(joint, [joint], 0.1, negatives="none")


def test_encoders_follow_the_view_kind():
    assert isinstance(modality_encoder(784, 8, kind="image", shape=(28, 28)), ImageConvEncoder)
    assert isinstance(modality_encoder(1280, 8, kind="audio", shape=(32, 40)), AudioConvEncoder)
    assert isinstance(modality_encoder(32, 8, kind="image", shape=(8, 4)), MLPEncoder)
    assert isinstance(modality_encoder(32, 8), MLPEncoder)
    x = torch.randn(3, 1280)
    assert modality_encoder(1280, 8, kind="audio", shape=(32, 40))(x).shape == (3, 8)
    assert modality_encoder(784, 8, kind="image", shape=(28, 28))(x[:, :784]).shape == (3, 8)


def _toy(n=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, 6, generator=gen),
        torch.randn(n, 4, generator=gen),
        torch.randn(n, 5, generator=gen),
    ]


def _built(config=None, dims=(6, 4, 5), seed=0):
    model = GMC(config or GMCConfig(common_dim=8, latent_dim=4, head_width=16), random_state=seed)
    model._build(list(dims), ["features"] * len(dims), [None] * len(dims))
    return model


def test_one_head_serves_every_path():
    model = _built()
    calls = []
    model.head.register_forward_hook(lambda mod, inp, out: calls.append(out.shape[0]))
    xs = _toy(10)
    model.loss(xs, torch.ones(10, 3, dtype=torch.bool))
    assert calls == [10, 10, 10, 10]  # three modalities and the joint path, one head
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 4]
    assert heads == [model.head[-1]]
    # The same parameters: changing the head changes both the joint and a modality embedding.
    with torch.no_grad():
        before = (model.embed_joint(xs), model.embed_modality(0, xs[0]))
        model.head[-1].bias += 1.0
        after = (model.embed_joint(xs), model.embed_modality(0, xs[0]))
    assert not torch.allclose(before[0], after[0]) and not torch.allclose(before[1], after[1])


@pytest.mark.parametrize("separate_joint", [False, True])
def test_missing_modality_gets_exactly_zero_gradient(separate_joint):
    cfg = GMCConfig(common_dim=8, latent_dim=4, head_width=16, separate_joint=separate_joint)
    model = _built(cfg)
    xs = [x.clone().requires_grad_(True) for x in _toy(12)]
    present = torch.ones(12, 3, dtype=torch.bool)
    present[[1, 4, 7], 1] = False
    model.loss(xs, present).backward()
    for x in xs:
        assert torch.equal(x.grad[[1, 4, 7]], torch.zeros_like(x.grad[[1, 4, 7]]))
    assert x.grad[0].abs().sum() > 0
    got = [p.grad.clone() for p in model.encoders[1].parameters()]
    # The same gradient as a batch that never held the incomplete rows.
    model.zero_grad()
    keep = present.all(1)
    model.loss([x.detach()[keep] for x in xs], present[keep]).backward()
    for g, p in zip(got, model.encoders[1].parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)


def test_transform_takes_any_subset_per_sample():
    model = _built()
    xs = _toy(9)
    mask = torch.tensor(
        [[1, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]] * 2, dtype=torch.bool
    )[:9]
    model.dims_ = [6, 4, 5]
    z = model.transform(xs, mask)
    z_renorm = model.transform(xs, mask, renormalise=True)
    with torch.no_grad():
        joint = model.embed_joint(xs)
        singles = torch.stack([model.embed_modality(m, x) for m, x in enumerate(xs)], 1)
    for i in range(9):
        have = mask[i]
        want = joint[i] if have.all() else singles[i, have].mean(0)
        assert torch.allclose(z[i], want, atol=1e-6)
        assert torch.allclose(z_renorm[i], F.normalize(want, dim=0), atol=1e-6)
    assert torch.allclose(z_renorm.norm(dim=1), torch.ones(9), atol=1e-5)
    bad = mask.clone()
    bad[3] = False
    with pytest.raises(ValueError, match="sample 3 has no modality present"):
        model.transform(xs, bad)
    with pytest.raises(ValueError, match="modality 1: the model was trained on 4 features"):
        model.transform([xs[0], xs[0], xs[2]])


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="negatives"):
        GMCConfig(negatives="some")
    with pytest.raises(ValueError, match="tau"):
        GMCConfig(tau=0)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        GMC(GMCConfig(epochs=1)).fit([np.zeros((10, 3))])
    with pytest.raises(ValueError, match="b: NaN"):
        GMC(GMCConfig(epochs=1)).fit(
            [np.zeros((10, 3)), np.full((10, 2), np.nan)], modality_names=["a", "b"]
        )
    with pytest.raises(RuntimeError, match="fit"):
        GMC().transform([np.zeros((2, 3)), np.zeros((2, 3))])


def _digits():
    ds = load_digits_views()
    train, test = ds.split([0.7, 0.3], seed=0)
    prep = Preprocessor().fit(train)
    return prep.transform(train), prep.transform(test)


@pytest.mark.parametrize("device", DEVICES)
def test_training_aligns_single_modalities_with_complete(device):
    train, test = _digits()
    cfg = GMCConfig(epochs=8, device=device)
    untrained = GMC(cfg, random_state=0).fit(train, stop_after=0)
    trained = GMC(cfg, random_state=0).fit(train)
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    for model, low, high in ((untrained, 0.0, 0.1), (trained, 0.2, 1.0)):
        complete = model.transform(test)
        for m in range(2):
            mask = torch.zeros(test.n_rows, 2, dtype=torch.bool)
            mask[:, m] = True
            recall = retrieval_scores(model.transform(test, mask).cpu(), complete.cpu())["recall@1"]
            assert low <= recall <= high, (model is trained, m, recall)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    train, _ = _digits()
    cfg = GMCConfig(epochs=4, common_dim=16, latent_dim=8, head_width=32)
    ckpt = tmp_path / "gmc.pt"
    GMC(cfg, random_state=3).fit(train, checkpoint=ckpt, stop_after=2)
    resumed = GMC(cfg, random_state=3).fit(train, checkpoint=ckpt)
    straight = GMC(cfg, random_state=3).fit(train)
    assert len(resumed.history) == 4
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5)
    assert (tmp_path / "gmc.history.csv").exists()
    with pytest.raises(ValueError, match="other settings"):
        GMC(GMCConfig(epochs=4, common_dim=16, latent_dim=8, head_width=32, tau=0.3), 3).fit(
            train, checkpoint=ckpt
        )


def test_validation_loss_keeps_the_best_epoch():
    train, test = _digits()
    cfg = GMCConfig(epochs=6, patience=2, common_dim=16, latent_dim=8, head_width=32, lr=3e-3)
    model = GMC(cfg, random_state=0).fit(train, validation=test)
    losses = [h["val_loss"] for h in model.history]
    assert 1 <= len(losses) <= 6
    vx, vp, *_ = model._inputs(test, None, fitted=True)
    order = torch.randperm(test.n_rows, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        kept = model._validation_loss([x[order] for x in vx], vp[order])
    assert kept == pytest.approx(min(losses), rel=1e-5)
    with pytest.raises(ValueError, match="patience"):
        GMCConfig(patience=0)


def test_input_scaling_makes_training_indifferent_to_a_views_scale():
    train, _ = _digits()
    cfg = GMCConfig(epochs=2, common_dim=16, latent_dim=8, head_width=32)
    shrunk = train.with_views([v * 0.01 for v in train.views])
    a = GMC(cfg, random_state=0).fit(train)
    b = GMC(cfg, random_state=0).fit(shrunk)
    assert torch.allclose(b.input_scale, a.input_scale * 0.01, rtol=1e-5)
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-4)
    unscaled = GMC(GMCConfig(**{**cfg.__dict__, "scale_inputs": False}), 0).fit(shrunk)
    assert torch.equal(unscaled.input_scale, torch.ones(2))
    assert unscaled.history[-1]["loss"] > a.history[-1]["loss"]
    # Conv encoders (28 x 28 images) keep their input range.
    images = torch.rand(40, 784) * 0.1
    conv = GMC(cfg, 0).fit(
        [images, images[:, :10]], kinds=["image", "features"], shapes=[(28, 28), None]
    )
    assert conv.input_scale[0] == 1.0 and conv.input_scale[1] != 1.0
