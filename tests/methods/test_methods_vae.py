"""MVAE and the Wasserstein VAE: losses against hand computations, exactly-zero gradients of
missing modalities, the barycentric consensus, training, every subset at inference,
resumption, and input errors; the WVAE with full-covariance posteriors at the end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg as sla
import torch
import torch.nn.functional as F

from modalign.data import MultiViewDataset, load_digits_views
from modalign.methods import MVAE, WVAE, MVAEConfig, VAEOutput, WVAEConfig, w2_consensus
from modalign.ot import kl_normal, kl_normal_full

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"latent_dim": 1, "hidden": 4, "warmup_epochs": 0}


def _tiny(cls, n_modalities=2, *, lower=0.0, **changes):
    """A built, untrained model in float64 over ``n_modalities`` modalities of 2 features:
    the first Bernoulli, the others Gaussian (with a non-trivial learned scale). Full
    covariance: ``lower`` scales random weights and bias of each strictly-lower head (0: as
    built, zero)."""
    likelihoods = ("bernoulli",) + ("gaussian",) * (n_modalities - 1)
    config_cls = MVAEConfig if cls is MVAE else WVAEConfig
    model = cls(config_cls(**{**SMALL, "likelihoods": likelihoods, **changes}), random_state=0)
    model._build(
        [2] * n_modalities, ["features"] * n_modalities, [None] * n_modalities, likelihoods
    )
    with torch.no_grad():
        for dec in model.decoders[1:]:
            dec.log_scale.copy_(torch.tensor([0.3, -0.2]))
        if lower:
            gen = torch.Generator().manual_seed(11)
            for enc in model.encoders:
                for p in enc.lower.parameters():
                    p.copy_(lower * torch.randn(p.shape, generator=gen))
    return model.double()


def _tiny_data(n=6, n_modalities=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.rand(n, 2, generator=gen, dtype=torch.float64)]
    xs += [torch.randn(n, 2, generator=gen, dtype=torch.float64) for _ in range(n_modalities - 1)]
    return xs


def _log_likelihood(model, m, z, x):
    """``log p(x_m | z)`` by hand from the decoder's output, (B,)."""
    params = model.decoders[m](z)
    if m == 0:  # Bernoulli logits
        p = torch.sigmoid(params)
        return (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(1)
    s = torch.exp(model.decoders[m].log_scale)
    return (-0.5 * ((x - params) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)).sum(1)


def _kl(mean, var):
    return 0.5 * (var + mean**2 - 1 - torch.log(var)).sum(1)


MASKS = {
    "complete": torch.ones(6, 2, dtype=torch.bool),
    "missing": torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1], [1, 0], [1, 1]], dtype=torch.bool),
}


@pytest.mark.parametrize("mask", MASKS, ids=list(MASKS))
def test_mvae_loss_matches_hand_computation(mask):
    present = MASKS[mask]
    model = _tiny(MVAE)
    xs = _tiny_data()
    beta = 0.7
    got = model.loss(xs, present, beta=beta, generator=torch.Generator().manual_seed(7))
    assert isinstance(got, VAEOutput)
    with torch.no_grad():
        enc = [model.encoders[m](x) for m, x in enumerate(xs)]
        gen = torch.Generator().manual_seed(7)
        elbos = []
        # joint, then modality 0 alone, then modality 1 alone: one noise draw each, in order
        for subset in ([0, 1], [0], [1]):
            precision = torch.ones(6, 1, dtype=torch.float64)  # the N(0, 1) prior expert
            weighted = torch.zeros(6, 1, dtype=torch.float64)
            for m in subset:
                on = present[:, m : m + 1].double()
                precision = precision + on * torch.exp(-enc[m][1])
                weighted = weighted + on * torch.exp(-enc[m][1]) * enc[m][0]
            var = 1 / precision
            mean = var * weighted
            eps = torch.randn(6, 1, generator=gen, dtype=torch.float64)
            z = mean + var.sqrt() * eps
            recon = sum(
                present[:, m].double() * _log_likelihood(model, m, z, xs[m]) for m in (0, 1)
            )
            counted = present[:, subset].any(1).double()
            elbos.append(counted * (recon - beta * _kl(mean, var)))
        want = -sum(e.mean() for e in elbos)
    assert float(got.loss.detach()) == pytest.approx(float(want), rel=1e-10)
    assert float(got.terms["joint"]) == pytest.approx(float(elbos[0].mean()), rel=1e-10)
    assert float(got.terms["unimodal"]) == pytest.approx(
        float(elbos[1].mean() + elbos[2].mean()), rel=1e-10
    )


@pytest.mark.parametrize("mask", MASKS, ids=list(MASKS))
def test_wvae_loss_matches_hand_computation(mask):
    present = MASKS[mask]
    model = _tiny(WVAE, lambda_w2=1.3)
    xs = _tiny_data()
    beta = 0.7
    got = model.loss(xs, present, beta=beta, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(7)
        per_row = torch.zeros(6, dtype=torch.float64)
        stats = []
        for m in (0, 1):
            mu, logvar = model.encoders[m](xs[m])
            std = torch.exp(0.5 * logvar)
            eps = torch.randn(6, 1, generator=gen, dtype=torch.float64)
            elbo = _log_likelihood(model, m, mu + std * eps, xs[m]) - beta * _kl(mu, std**2)
            per_row -= present[:, m].double() * elbo
            stats.append((mu, std))
        (mu_a, s_a), (mu_b, s_b) = stats
        w2 = ((mu_a - mu_b) ** 2 + (s_a - s_b) ** 2).sum(1)
        both = present.all(1).double()
        want = (per_row + 1.3 * both * w2).mean()
    assert float(got.loss.detach()) == pytest.approx(float(want), rel=1e-10)
    assert float(got.terms["w2"]) == pytest.approx(float((both * w2).mean()), rel=1e-10)


@pytest.mark.parametrize("cls", [MVAE, WVAE])
@pytest.mark.parametrize("n_modalities", [2, 3])
def test_missing_modality_gets_exactly_zero_gradient(cls, n_modalities):
    extra = {"n_subsets": 2} if cls is MVAE else {}
    _assert_missing_gets_zero_gradient(_tiny(cls, n_modalities, latent_dim=3, **extra))


def _assert_missing_gets_zero_gradient(model):
    n_modalities = len(model.encoders)
    xs = _tiny_data(8, n_modalities)
    present = torch.ones(8, n_modalities, dtype=torch.bool)
    missing = [1, 4, 6]
    present[missing, 1] = False
    present[6, 0] = False  # row 6 keeps only the last modality

    def grads(views, mask):
        model.zero_grad()
        views = [v.clone().requires_grad_(True) for v in views]
        model.loss(views, mask, generator=torch.Generator().manual_seed(3)).loss.backward()
        return views, {k: p.grad.clone() for k, p in model.named_parameters()}

    views, got = grads(xs, present)
    for m, v in enumerate(views):
        rows = ~present[:, m]
        assert torch.equal(v.grad[rows], torch.zeros_like(v.grad[rows])), m
        assert v.grad[present[:, m]].abs().sum() > 0, m
    # Whatever the missing values are, nothing changes: not the loss, not one gradient.
    noisy = [x.clone() for x in xs]
    for m in range(n_modalities):
        noisy[m][~present[:, m]] = 1e3 * torch.randn(int((~present[:, m]).sum()), 2).double()
    _, again = grads(noisy, present)
    for k in got:
        assert torch.equal(got[k], again[k]), k
    # Modality 1's encoder gets from the batch what it gets with those rows emptied entirely
    # (they then enter no term; emptying keeps the other rows' noise draws unchanged).
    emptied = present.clone()
    emptied[missing] = False
    _, without = grads(xs, emptied)
    for k in got:
        if k.startswith("encoders.1."):
            assert torch.allclose(got[k], without[k], rtol=1e-12, atol=1e-14), k
            assert got[k].abs().sum() > 0, k


def test_three_modality_consensus_is_the_barycentric_sum():
    gen = torch.Generator().manual_seed(2)
    mu = torch.randn(5, 3, 4, generator=gen, dtype=torch.float64)
    std = torch.rand(5, 3, 4, generator=gen, dtype=torch.float64) + 0.1
    present = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]]).bool()
    want = torch.zeros(5, dtype=torch.float64)
    for i in range(5):
        have = present[i].nonzero()[:, 0]
        bar_mu, bar_std = mu[i, have].mean(0), std[i, have].mean(0)
        for m in have:
            want[i] += ((mu[i, m] - bar_mu) ** 2).sum() + ((std[i, m] - bar_std) ** 2).sum()
    got = w2_consensus(mu, std, present)
    assert torch.allclose(got, want, rtol=1e-12)
    assert float(got[3]) == 0.0  # one modality present: it is its own barycenter
    pairwise = sum(
        ((mu[0, a] - mu[0, b]) ** 2).sum() + ((std[0, a] - std[0, b]) ** 2).sum()
        for a, b in ((0, 1), (0, 2), (1, 2))
    )
    assert float(got[0]) == pytest.approx(float(pairwise) / 3, rel=1e-12)  # not the pair sum
    # Two modalities: the W2 between them, twice the barycentric sum.
    two = w2_consensus(mu[:, :2], std[:, :2], torch.ones(5, 2, dtype=torch.bool))
    direct = ((mu[:, 0] - mu[:, 1]) ** 2 + (std[:, 0] - std[:, 1]) ** 2).sum(1)
    assert torch.allclose(two, direct, rtol=1e-12)

    # The model's w2 term is this consensus of its posteriors (std = exp(0.5 logvar)).
    model = _tiny(WVAE, 3, latent_dim=2)
    xs = _tiny_data(5, 3)
    with torch.no_grad():
        e_mu, e_logvar = model.encode(xs)
        e_std = torch.exp(0.5 * e_logvar)
        expected = torch.zeros(5, dtype=torch.float64)
        for i in range(5):
            have = present[i].nonzero()[:, 0]
            b_mu, b_std = e_mu[i, have].mean(0), e_std[i, have].mean(0)
            expected[i] = ((e_mu[i, have] - b_mu) ** 2).sum() + (
                (e_std[i, have] - b_std) ** 2
            ).sum()
        out = model.loss(xs, present, generator=torch.Generator().manual_seed(0))
    assert float(out.terms["w2"]) == pytest.approx(float(expected.mean()), rel=1e-10)


def test_factorised_consensus_reads_only_the_shared_part():
    model = _tiny(WVAE, latent_dim=3, factorised=True, shared_dim=1)
    xs = _tiny_data()
    present = torch.ones(6, 2, dtype=torch.bool)
    with torch.no_grad():
        mu, logvar = model.encode(xs)
        std = torch.exp(0.5 * logvar)
        w2 = ((mu[:, 0, 2:] - mu[:, 1, 2:]) ** 2 + (std[:, 0, 2:] - std[:, 1, 2:]) ** 2).sum(1)
        out = model.loss(xs, present, generator=torch.Generator().manual_seed(0))
    assert float(out.terms["w2"]) == pytest.approx(float(w2.mean()), rel=1e-10)
    # Inference takes float32 views: from here on the model is float32 too.
    model.float()
    xs = [x.float() for x in xs]
    mu = model.encode(xs)[0].detach()
    # Generating modality 0 from modality 1 alone: [prior mean (zeros); modality 1's shared]
    only_b = torch.tensor([[0, 1]] * 6, dtype=torch.bool)
    got = model.generate(xs, only_b, 0)
    with torch.no_grad():
        want = torch.sigmoid(model.decoders[0](torch.cat([torch.zeros(6, 2), mu[:, 1, 2:]], 1)))
        # with modality 0 present too, its own private part is used
        both = torch.ones(6, 2, dtype=torch.bool)
        shared = (mu[:, 0, 2:] + mu[:, 1, 2:]) / 2
        want_both = torch.sigmoid(model.decoders[0](torch.cat([mu[:, 0, :2], shared], 1)))
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(model.generate(xs, both, 0), want_both, atol=1e-6)
    assert model.transform(xs, only_b).shape == (6, 1)
    assert torch.allclose(model.transform(xs, only_b), mu[:, 1, 2:], atol=1e-6)
    assert torch.allclose(model.transform(xs, both), shared, atol=1e-6)


def _digits_with_label(n=600):
    ds = load_digits_views()
    rows = np.arange(n)
    left, right = ds.views[0][rows], ds.views[1][rows]
    labels = ds.labels[rows]
    return MultiViewDataset(
        [left, right, F.one_hot(labels, 10).float()],
        labels,
        names=["left", "right", "label"],
        kinds=["image", "image", "features"],
        shapes=[(8, 4), (8, 4), None],
    )


SUBSETS = [
    torch.tensor(bits, dtype=torch.bool)
    for bits in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1])
]
TRAIN = {"epochs": 3, "hidden": 32, "latent_dim": 4, "warmup_epochs": 0, "lr": 3e-3}


@pytest.mark.parametrize(
    "make",
    [
        lambda: MVAE(MVAEConfig(**TRAIN, n_subsets=1)),
        lambda: WVAE(WVAEConfig(**TRAIN)),
        lambda: WVAE(WVAEConfig(**TRAIN, factorised=True, shared_dim=2)),
        lambda: WVAE(WVAEConfig(**TRAIN, covariance="full")),
    ],
    ids=["mvae", "wvae", "wvae-factorised", "wvae-full"],
)
def test_training_lowers_the_loss_and_every_subset_works(make):
    model = make()
    ds = _digits_with_label()
    model.fit(ds)
    assert model.likelihoods_ == ["bernoulli", "bernoulli", "categorical"]
    assert model.history[-1]["loss"] < model.history[0]["loss"]
    width = 2 if getattr(model.config, "factorised", False) else 4
    for subset in SUBSETS:
        mask = subset.expand(ds.n_rows, 3)
        assert model.transform(ds, mask).shape == (ds.n_rows, width)
        for target, dim in enumerate((32, 32, 10)):
            assert model.generate(ds, mask, target).shape == (ds.n_rows, dim)
    # from the label alone: images, probabilities in [0, 1]
    label_only = SUBSETS[2].expand(ds.n_rows, 3)
    for sample in (False, True):
        images = model.generate(
            ds, label_only, "left", sample=sample, generator=torch.Generator().manual_seed(0)
        )
        assert images.shape == (ds.n_rows, 32)
        assert float(images.min()) >= 0 and float(images.max()) <= 1
    digits = model.generate(ds, SUBSETS[3].expand(ds.n_rows, 3), "label")
    assert torch.allclose(digits.sum(1), torch.ones(ds.n_rows), atol=1e-5)
    priors = model.sample_prior(5, torch.Generator().manual_seed(0))
    assert [p.shape for p in priors] == [(5, 32), (5, 32), (5, 10)]
    # per-row subsets in one call agree with constant masks
    mixed = torch.stack([SUBSETS[i % 7] for i in range(ds.n_rows)])
    z = model.transform(ds, mixed)
    for i in (0, 4, 6):
        assert torch.allclose(z[i], model.transform(ds, SUBSETS[i].expand(ds.n_rows, 3))[i])


def test_posterior_of_one_modality():
    xs = [x.float() for x in _tiny_data()]
    one = torch.tensor([[1, 0]] * 6, dtype=torch.bool)
    wvae = _tiny(WVAE, latent_dim=2).float()
    mvae = _tiny(MVAE, latent_dim=2).float()
    with torch.no_grad():
        mu, logvar = wvae.encoders[0](xs[0])
        assert torch.allclose(wvae.transform(xs, one), mu, atol=1e-6)  # no fusion: itself
        mu, logvar = mvae.encoders[0](xs[0])
        var = 1 / (1 + torch.exp(-logvar))  # with the prior expert
        assert torch.allclose(mvae.transform(xs, one), var * torch.exp(-logvar) * mu, atol=1e-6)


@pytest.mark.parametrize("cls", [MVAE, WVAE])
def test_interrupted_training_resumes_to_the_same_weights(cls, tmp_path):
    ds = load_digits_views().subset(np.arange(300))
    config_cls = MVAEConfig if cls is MVAE else WVAEConfig
    cfg = config_cls(epochs=4, hidden=16, latent_dim=3, warmup_epochs=2, batch_size=64)
    ckpt = tmp_path / "vae.pt"
    cls(cfg, random_state=3).fit(ds, checkpoint=ckpt, stop_after=2)
    resumed = cls(cfg, random_state=3).fit(ds, checkpoint=ckpt)
    straight = cls(cfg, random_state=3).fit(ds)
    assert len(resumed.history) == 4
    assert [h["beta"] for h in straight.history] == [0.0, 0.5, 1.0, 1.0]
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="other settings"):
        cls(config_cls(epochs=4, hidden=16, latent_dim=3, beta=0.5), random_state=3).fit(
            ds, checkpoint=ckpt
        )


def test_validation_keeps_the_best_epoch():
    ds = load_digits_views()
    train, held = ds.subset(np.arange(300)), ds.subset(np.arange(300, 400))
    cfg = WVAEConfig(epochs=4, patience=2, hidden=16, latent_dim=3, warmup_epochs=0)
    model = WVAE(cfg).fit(train, validation=held)
    losses = [h["val_loss"] for h in model.history]
    xs, present, *_ = model._inputs(held, None, fitted=True)
    with torch.no_grad():
        assert model._validation_loss(xs, present) == pytest.approx(min(losses), rel=1e-5)


def test_input_errors():
    left = np.random.default_rng(0).random((20, 4))
    right = np.random.default_rng(1).random((20, 3))
    names = ["left", "right"]
    with pytest.raises(ValueError, match=r"left: Bernoulli likelihood needs values in \[0, 1\]"):
        MVAE(MVAEConfig(epochs=1, likelihoods=("bernoulli", "gaussian"))).fit(
            [left * 2 - 0.5, right], modality_names=names
        )
    with pytest.raises(ValueError, match=r"right: Bernoulli likelihood .* got max"):
        WVAE(WVAEConfig(epochs=1, likelihoods=("gaussian", "bernoulli"))).fit(
            [left, right + 1], modality_names=names
        )
    choices = r"expected one of \['bernoulli', 'categorical', 'gaussian'\]"
    with pytest.raises(ValueError, match=f"unknown likelihood 'poisson'; {choices}"):
        MVAEConfig(likelihoods=("bernoulli", "poisson"))
    with pytest.raises(ValueError, match="likelihoods: need one per modality"):
        MVAE(MVAEConfig(epochs=1, likelihoods=("gaussian",))).fit([left, right])
    with pytest.raises(ValueError, match="label: categorical likelihood"):
        MVAE(MVAEConfig(epochs=1)).fit([left, right], modality_names=["left", "label"])
    with pytest.raises(ValueError, match="right: no sample has this modality present"):
        mask = np.ones((20, 2), dtype=bool)
        mask[:, 1] = False
        WVAE(WVAEConfig(epochs=1)).fit([left, right], mask=mask, modality_names=names)
    with pytest.raises(ValueError, match="covariance"):
        WVAEConfig(covariance="spherical")
    with pytest.raises(ValueError, match="shared_dim"):
        WVAEConfig(latent_dim=4, factorised=True, shared_dim=4)
    with pytest.raises(ValueError, match="n_subsets"):
        MVAEConfig(n_subsets=-1)
    with pytest.raises(RuntimeError, match="fit"):
        MVAE().transform([left, right])
    model = WVAE(WVAEConfig(epochs=1, hidden=8, latent_dim=2)).fit([left, right])
    mask = np.ones((20, 2), dtype=bool)
    mask[2] = False
    with pytest.raises(ValueError, match="sample 2 has no modality present"):
        model.transform([left, right], mask)
    with pytest.raises(ValueError, match="target must be a modality index"):
        model.generate([left, right], None, 2)
    with pytest.raises(ValueError, match="modality 1: the model was trained on 3 features"):
        model.transform([left, left])


# ------------------------------------------------------------------ likelihood weights
def test_likelihood_weights_are_checked():
    with pytest.raises(ValueError, match=r"likelihood_weights must be >= 0, got \(1.0, -0.5\)"):
        MVAEConfig(likelihood_weights=(1.0, -0.5))
    with pytest.raises(ValueError, match="one weight per modality"):
        WVAEConfig(likelihood_weights=2.0)
    assert MVAEConfig(likelihood_weights=[1, 50]).likelihood_weights == (1.0, 50.0)
    left = np.random.default_rng(0).random((20, 4))
    right = np.random.default_rng(1).random((20, 3))
    for cls, config in ((MVAE, MVAEConfig), (WVAE, WVAEConfig)):
        model = cls(config(epochs=1, likelihood_weights=(1.0, 2.0, 3.0)))
        with pytest.raises(ValueError, match=r"need one per modality \(2\), got 3"):
            model.fit([left, right])


def test_weights_scale_each_log_likelihood_in_the_elbo():
    present = MASKS["missing"]
    xs = _tiny_data()
    weighted = _tiny(MVAE, latent_dim=2, likelihood_weights=(1.0, 3.0))
    with torch.no_grad():
        mu = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        logvar = 0.3 * mu.flip(1)
        recon, kl = weighted.elbo(mu, logvar, xs, present, [0, 1], torch.Generator().manual_seed(5))
        plain, kl_plain = weighted.elbo(
            mu, logvar, xs, present, [0, 1], torch.Generator().manual_seed(5), weighted=False
        )
        eps = torch.randn(6, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        z = mu + torch.exp(0.5 * logvar) * eps
        ll = [present[:, m].double() * _log_likelihood(weighted, m, z, xs[m]) for m in (0, 1)]
    assert torch.allclose(recon, ll[0] + 3.0 * ll[1], rtol=1e-12)
    assert torch.allclose(plain, ll[0] + ll[1], rtol=1e-12)
    assert torch.equal(kl, kl_plain)
    assert torch.allclose(kl, _kl(mu, torch.exp(logvar)), rtol=1e-12)
    # weights of one are no weights at all
    ones = _tiny(MVAE, latent_dim=2, likelihood_weights=(1.0, 1.0))
    none = _tiny(MVAE, latent_dim=2)
    with torch.no_grad():
        a = ones.loss(xs, present, generator=torch.Generator().manual_seed(2)).loss
        b = none.loss(xs, present, generator=torch.Generator().manual_seed(2)).loss
    assert float(a) == float(b)


@pytest.mark.parametrize("cls", [MVAE, WVAE])
def test_training_loss_weighs_each_log_likelihood(cls):
    """The loss with weights (1, 3) minus the unweighted loss is -2 times modality 1's
    log-likelihood terms; a zero weight leaves that decoder without any gradient."""
    present = MASKS["missing"]
    xs = _tiny_data()
    extra = {"n_subsets": 0} if cls is MVAE else {}

    def terms(weights):
        model = _tiny(cls, latent_dim=2, likelihood_weights=weights, **extra)
        out = model.loss(xs, present, beta=0.7, generator=torch.Generator().manual_seed(4))
        return model, out

    _, plain = terms(None)
    model, tripled = terms((1.0, 3.0))
    # modality 1's log-likelihood terms, by hand, with the same noise draws in the same order
    with torch.no_grad():
        gen = torch.Generator().manual_seed(4)
        ll1 = torch.zeros((), dtype=torch.float64)
        if cls is MVAE:
            mu, logvar = model.encode(xs)
            for subset in ([0, 1], [0], [1]):  # joint, then each modality alone
                have = present.clone()
                have[:, [m for m in (0, 1) if m not in subset]] = False
                precision = 1 + (have.double()[:, :, None] * torch.exp(-logvar)).sum(1)
                var = 1 / precision
                mean = var * (have.double()[:, :, None] * torch.exp(-logvar) * mu).sum(1)
                z = mean + var.sqrt() * torch.randn(6, 2, generator=gen, dtype=torch.float64)
                counted = have.any(1) & present[:, 1]
                ll1 = ll1 + (counted * _log_likelihood(model, 1, z, xs[1])).mean()
        else:
            for m in (0, 1):
                mu, logvar = model.encoders[m](xs[m])
                z = mu + torch.exp(0.5 * logvar) * torch.randn(
                    6, 2, generator=gen, dtype=torch.float64
                )
                if m == 1:
                    ll1 = (present[:, 1] * _log_likelihood(model, 1, z, xs[1])).mean()
    assert abs(float(ll1)) > 0.1
    assert float((tripled.loss - plain.loss).detach()) == pytest.approx(-2 * float(ll1), rel=1e-9)
    # weight 0: modality 1's decoder gets exactly zero gradient, modality 0's does not
    model, _ = terms((1.0, 0.0))
    model.zero_grad()
    model.loss(xs, present, generator=torch.Generator().manual_seed(4)).loss.backward()
    for p in model.decoders[1].parameters():
        assert p.grad is None or torch.equal(p.grad, torch.zeros_like(p.grad))
    assert sum(float(p.grad.abs().sum()) for p in model.decoders[0].parameters()) > 0


@pytest.mark.parametrize("cls", [MVAE, WVAE])
def test_unimodal_elbo_is_recon_minus_kl_of_one_modality_unweighted(cls):
    xs = [x.float() for x in _tiny_data()]
    model = _tiny(cls, latent_dim=2, likelihood_weights=(5.0, 7.0)).float()
    for m in (0, 1):
        got = model.unimodal_elbo(xs, m, generator=torch.Generator().manual_seed(9))
        with torch.no_grad():
            mu, logvar = model.encoders[m](xs[m])
            if cls is MVAE:  # the expert of m times the N(0, I) prior expert
                var = 1 / (1 + torch.exp(-logvar))
                mu, logvar = var * torch.exp(-logvar) * mu, torch.log(var)
            eps = torch.randn(6, 2, generator=torch.Generator().manual_seed(9))
            z = mu + torch.exp(0.5 * logvar) * eps
            decoder = model.decoders[m]
            want = decoder.log_likelihood(decoder(z), xs[m]) - kl_normal(mu, logvar)
            # the hand log-likelihood agrees with the decoder's
            assert torch.allclose(
                decoder.log_likelihood(decoder(z), xs[m]),
                _log_likelihood(model, m, z, xs[m]),
                atol=1e-5,
            )
        assert got.shape == (6,)
        assert torch.allclose(got, want, atol=1e-5), m
    # by name, too; and the other modality's values do not enter
    again = model.unimodal_elbo(xs, 1, generator=torch.Generator().manual_seed(9))
    other = [xs[0].flip(0), xs[1]]
    same = model.unimodal_elbo(other, 1, generator=torch.Generator().manual_seed(9))
    assert torch.allclose(again, same)
    with pytest.raises(RuntimeError, match="call fit"):
        cls().unimodal_elbo(xs, 0)
    with pytest.raises(ValueError, match="target must be a modality index"):
        model.unimodal_elbo(xs, 2)


def test_validation_values_outside_the_bernoulli_support_name_the_modality():
    rng = np.random.default_rng(0)
    left, right = rng.random((20, 4)), rng.random((20, 3))
    held = left[:5].copy()
    held[2, 1] = 1.5
    config = MVAEConfig(epochs=1, likelihoods=("bernoulli", "gaussian"))
    with pytest.raises(ValueError, match=r"validation left: Bernoulli .*\[0, 1\], got max 1.5"):
        MVAE(config).fit(
            [left, right], modality_names=["left", "right"], validation=[held, right[:5]]
        )


# ------------------------------------------------------------------ full covariances
def _full_posterior_by_hand(model, m, x):
    """``(mu (B, 2), L (B, 2, 2))`` of modality ``m`` from its encoder's heads, latent_dim 2."""
    enc = model.encoders[m]
    h = enc.body(x)
    low, high = enc.LOGVAR_RANGE
    diag = torch.exp(0.5 * enc.logvar(h).clamp(low, high))
    tril = torch.zeros(x.shape[0], 2, 2, dtype=x.dtype)
    tril[:, 0, 0], tril[:, 1, 1], tril[:, 1, 0] = diag[:, 0], diag[:, 1], enc.lower(h)[:, 0]
    return enc.mu(h), tril


def _bures(mu_a, cov_a, mu_b, cov_b) -> float:
    """W2^2 between two Gaussians with scipy's matrix square root (the reference)."""
    root = sla.sqrtm(cov_a)
    cross = sla.sqrtm(root @ cov_b @ root).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * cross))


@pytest.mark.parametrize("mask", MASKS, ids=list(MASKS))
def test_full_wvae_loss_matches_hand_computation(mask):
    present = MASKS[mask]
    model = _tiny(WVAE, latent_dim=2, covariance="full", lambda_w2=1.3, lower=0.7)
    xs = _tiny_data()
    beta = 0.7
    got = model.loss(xs, present, beta=beta, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(7)
        per_row = torch.zeros(6, dtype=torch.float64)
        stats = []
        for m in (0, 1):
            mu, tril = _full_posterior_by_hand(model, m, xs[m])
            cov = tril @ tril.transpose(1, 2)
            eps = torch.randn(6, 2, generator=gen, dtype=torch.float64)
            z = torch.stack(
                [
                    mu[:, 0] + tril[:, 0, 0] * eps[:, 0],
                    mu[:, 1] + tril[:, 1, 0] * eps[:, 0] + tril[:, 1, 1] * eps[:, 1],
                ],
                1,
            )
            trace = cov[:, 0, 0] + cov[:, 1, 1]
            kl = 0.5 * (trace + (mu**2).sum(1) - 2 - torch.logdet(cov))
            per_row -= present[:, m].double() * (_log_likelihood(model, m, z, xs[m]) - beta * kl)
            stats.append((mu.numpy(), cov.numpy()))
        assert float(np.abs(stats[0][1][:, 1, 0]).min()) > 0.01  # really not diagonal
        (mu_a, cov_a), (mu_b, cov_b) = stats
        w2 = torch.tensor(
            [_bures(mu_a[i], cov_a[i], mu_b[i], cov_b[i]) for i in range(6)], dtype=torch.float64
        )
        both = present.all(1).double()
        want = (per_row + 1.3 * both * w2).mean()
    assert float(got.loss.detach()) == pytest.approx(float(want), rel=1e-10)
    assert float(got.terms["w2"]) == pytest.approx(float((both * w2).mean()), rel=1e-10)


@pytest.mark.parametrize("n_modalities", [2, 3])
def test_full_wvae_missing_modality_gets_exactly_zero_gradient(n_modalities):
    model = _tiny(WVAE, n_modalities, latent_dim=3, covariance="full", lower=0.5)
    _assert_missing_gets_zero_gradient(model)


@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("isotropic", [False, True], ids=["as-built", "isotropic"])
def test_full_wvae_gradients_are_finite_at_initialisation(n_modalities, isotropic):
    """As built (float32, like training) the posteriors are diagonal and near-isotropic;
    with the log-variance heads at zero every covariance is exactly ``I``: repeated
    eigenvalues, where differentiating ``eigh`` would give NaN."""
    likelihoods = ("gaussian",) * n_modalities
    model = WVAE(WVAEConfig(latent_dim=4, hidden=8, covariance="full", likelihoods=likelihoods))
    model._build(
        [3] * n_modalities, ["features"] * n_modalities, [None] * n_modalities, likelihoods
    )
    if isotropic:
        with torch.no_grad():
            for enc in model.encoders:
                enc.logvar.weight.zero_()
                enc.logvar.bias.zero_()
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(16, 3, generator=gen) for _ in range(n_modalities)]
    present = torch.ones(16, n_modalities, dtype=torch.bool)
    present[::4, 0] = False
    out = model.loss(xs, present, generator=torch.Generator().manual_seed(1))
    out.loss.backward()
    assert bool(torch.isfinite(out.loss)) and float(out.terms["w2"]) >= 0
    for name, p in model.named_parameters():
        assert bool(torch.isfinite(p.grad).all()), name
    # the strictly-lower heads start at zero and learn from the first step
    for enc in model.encoders:
        assert float(enc.lower.weight.detach().abs().max()) == 0.0
        assert float(enc.lower.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("n_modalities", [2, 3])
def test_full_with_zero_lower_heads_is_the_diagonal_model(n_modalities):
    diag = _tiny(WVAE, n_modalities, latent_dim=3)
    full = _tiny(WVAE, n_modalities, latent_dim=3, covariance="full")
    # built from the same seed: the same weights, plus strictly-lower heads at zero
    diag_state, full_state = diag.state_dict(), full.state_dict()
    for key, value in diag_state.items():
        assert torch.equal(value, full_state[key]), key
    extra = {k: v for k, v in full_state.items() if k not in diag_state}
    assert sorted(extra) == sorted(
        f"encoders.{m}.lower.{p}" for m in range(n_modalities) for p in ("weight", "bias")
    )
    assert all(float(v.abs().max()) == 0 for v in extra.values())
    xs = _tiny_data(8, n_modalities)
    present = torch.ones(8, n_modalities, dtype=torch.bool)
    present[[1, 5], 0] = False
    present[2, 1:] = False
    a = diag.loss(xs, present, beta=0.6, generator=torch.Generator().manual_seed(4))
    b = full.loss(xs, present, beta=0.6, generator=torch.Generator().manual_seed(4))
    for key in ("recon", "kl", "w2"):
        assert float(b.terms[key]) == pytest.approx(float(a.terms[key]), rel=1e-9, abs=1e-12)
    assert float(b.loss.detach()) == pytest.approx(float(a.loss.detach()), rel=1e-9)
    # inference (float32): the same representation, posterior and generated samples
    diag.float(), full.float()
    xs = [x.float() for x in xs]
    present[2] = True
    assert torch.allclose(diag.transform(xs, present), full.transform(xs, present), atol=1e-5)
    with torch.no_grad():
        (_, logvar), (_, tril) = diag.posterior(xs, present), full.posterior(xs, present)
    assert torch.allclose(torch.diag_embed(torch.exp(0.5 * logvar)), tril, atol=1e-5)
    for target in range(n_modalities):
        draws = [
            model.generate(
                xs, present, target, sample=True, generator=torch.Generator().manual_seed(2)
            )
            for model in (diag, full)
        ]
        assert torch.allclose(*draws, atol=1e-5)


def test_full_wvae_unimodal_elbo_and_own_posterior():
    model = _tiny(WVAE, latent_dim=2, covariance="full", lower=0.7).float()
    xs = [x.float() for x in _tiny_data()]
    one = torch.tensor([[1, 0]] * 6, dtype=torch.bool)
    for m in (0, 1):
        got = model.unimodal_elbo(xs, m, generator=torch.Generator().manual_seed(9))
        with torch.no_grad():
            mu, tril = model.encoders[m](xs[m])
            eps = torch.randn(6, 2, generator=torch.Generator().manual_seed(9))
            z = mu + (tril @ eps[:, :, None])[:, :, 0]
            decoder = model.decoders[m]
            want = decoder.log_likelihood(decoder(z), xs[m]) - kl_normal_full(mu, tril)
        assert torch.allclose(got, want, atol=1e-4), m
    with torch.no_grad():
        mu, tril = model.encoders[0](xs[0])
        post_mu, post_tril = model.posterior(xs, one)
    assert torch.equal(post_mu, mu)  # one modality: its own posterior
    assert torch.allclose(post_tril, tril, atol=1e-5)


def _planted(n=240, seed=0):
    """Three Gaussian views of one correlated 2-d latent, with some modalities missing."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=gen) @ torch.tensor([[1.0, 0.8], [0.0, 0.6]])
    views = [
        z @ torch.randn(2, d, generator=gen) + 0.1 * torch.randn(n, d, generator=gen)
        for d in (5, 4, 3)
    ]
    mask = torch.rand(n, 3, generator=gen) > 0.25
    mask[~mask.any(1), 0] = True
    return views, mask


def test_full_wvae_trains_on_a_planted_dataset_and_every_subset_works():
    views, mask = _planted()
    cfg = WVAEConfig(
        latent_dim=2,
        hidden=16,
        covariance="full",
        epochs=6,
        warmup_epochs=0,
        batch_size=60,
        lr=1e-2,
        likelihoods=("gaussian",) * 3,
    )
    model = WVAE(cfg).fit(views, mask=mask.numpy())
    assert model.history[-1]["loss"] < model.history[0]["loss"]
    assert all(float(enc.lower.weight.detach().abs().max()) > 0 for enc in model.encoders)
    n = views[0].shape[0]
    for subset in SUBSETS:
        sub = subset.expand(n, 3)
        z = model.transform(views, sub)
        assert z.shape == (n, 2) and bool(torch.isfinite(z).all())
        for target, dim in enumerate((5, 4, 3)):
            for sample in (False, True):
                out = model.generate(
                    views, sub, target, sample=sample, generator=torch.Generator().manual_seed(0)
                )
                assert out.shape == (n, dim) and bool(torch.isfinite(out).all())
    full_mask = torch.ones(n, 3, dtype=torch.bool)
    for m in range(3):
        elbo = model.unimodal_elbo(views, m, generator=torch.Generator().manual_seed(0))
        assert elbo.shape == (n,) and bool(torch.isfinite(elbo).all())
    assert [p.shape for p in model.sample_prior(4)] == [(4, 5), (4, 4), (4, 3)]
    assert model.transform(views, full_mask).shape == (n, 2)


def test_full_covariance_is_not_factorised():
    assert WVAEConfig(covariance="full").covariance == "full"
    with pytest.raises(ValueError, match=r"factorised=True needs covariance='diagonal'.*cross"):
        WVAEConfig(covariance="full", factorised=True)
