"""What the multimodal VAEs (:mod:`modalign.methods.mvae`, :mod:`modalign.methods.wvae`) share.

* :class:`VAEConfig`: the settings common to both (networks, likelihoods, KL weight and its
  warm-up, optimisation), validated on construction.
* :func:`choose_likelihoods`: one likelihood per modality, given or chosen from the data.
* :class:`MultimodalVAE`: the base model. Per modality ``m`` a Gaussian encoder
  ``x_m (B, D_m) -> (mu_m, scale_m)`` (``mu_m`` ``(B, latent_dim)``; ``scale_m`` see below),
  whose feature network is
  :func:`~modalign.nn.modality_encoder` (conv nets for images and log-mel frames, an MLP
  otherwise), and a likelihood decoder ``z (B, latent_dim) -> params`` on an MLP body
  (:func:`~modalign.nn.make_decoder`). It holds the input checks, the ELBO of a posterior,
  the epoch loop (through :func:`modalign.train.train_epochs`) and inference
  (``transform``, ``generate``, ``sample_prior``); a subclass defines only its loss and how a
  subset of modalities is fused into one posterior.
* :class:`VAEOutput`: what a loss returns.
* :class:`DiagonalPosterior`, :class:`FullPosterior`: the two posterior families
  (:data:`POSTERIORS`), each with its encoder, sampler, KL and W2 form; a model reads its
  family from ``posterior_family`` (MVAE: diagonal; WVAE: ``config.covariance``).

Conventions: a posterior is ``(mu, scale)``, ``mu`` ``(..., latent_dim)`` and ``scale`` as
its family has it: ``logvar`` ``(..., latent_dim)`` for diagonal posteriors (a log-variance
everywhere, std ``exp(0.5 logvar)``), the Cholesky factor ``L``
``(..., latent_dim, latent_dim)`` of the covariance ``L L^T`` for full ones; the KL weight
``beta`` warms up linearly from 0 at epoch 0 to ``beta`` at epoch ``warmup_epochs``; a modality
missing from a row is zero-filled before its encoder sees it and every term that reads it is
removed with ``torch.where``, so its encoder and decoder get exactly zero gradient from that
row whatever its values.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from modalign.methods._views import dataset_inputs, fit_epochs, modality_names
from modalign.nn.encoders import modality_encoder
from modalign.nn.gaussian import (
    DECODERS,
    FullGaussianEncoder,
    GaussianEncoder,
    make_decoder,
    reparameterise,
    reparameterise_tril,
)
from modalign.nn.mlp import hidden_width, mlp
from modalign.ot.gaussian import kl_normal, kl_normal_full
from modalign.train.loop import check_finite_loss
from modalign.utils import check_device

__all__ = [
    "LIKELIHOODS",
    "POSTERIORS",
    "DiagonalPosterior",
    "FullPosterior",
    "MultimodalVAE",
    "VAEConfig",
    "VAEOutput",
    "choose_likelihoods",
]

LIKELIHOODS = tuple(sorted(DECODERS))


class DiagonalPosterior:
    """Posteriors ``N(mu, diag exp(logvar))`` as ``(mu, logvar)``, each ``(..., d)``.

    ``encoder``: the encoder class (:class:`~modalign.nn.GaussianEncoder`); ``sample``: a
    reparameterised draw (:func:`~modalign.nn.reparameterise`); ``kl``: ``KL(q || N(0, I))``
    (:func:`~modalign.ot.kl_normal`); ``w2_form``: the spread as the W2 closed forms take it
    with ``diagonal=True`` (standard deviations ``(..., d)``); ``from_w2_form``: back to
    ``logvar``.
    """

    diagonal = True
    encoder = GaussianEncoder
    sample = staticmethod(reparameterise)
    kl = staticmethod(kl_normal)

    @staticmethod
    def w2_form(logvar: Tensor) -> Tensor:
        return torch.exp(0.5 * logvar)

    @staticmethod
    def from_w2_form(std: Tensor) -> Tensor:
        return 2 * torch.log(std)


class FullPosterior:
    """Posteriors ``N(mu, L L^T)`` as ``(mu (..., d), L (..., d, d))``, ``L`` lower-triangular
    with a positive diagonal; the members of :class:`DiagonalPosterior`, for full
    covariances: :class:`~modalign.nn.FullGaussianEncoder`,
    :func:`~modalign.nn.reparameterise_tril`, :func:`~modalign.ot.kl_normal_full`, and the
    covariance ``L L^T`` ``(..., d, d)`` as the W2 form (``diagonal=False``), whose
    Cholesky factor is the way back.
    """

    diagonal = False
    encoder = FullGaussianEncoder
    sample = staticmethod(reparameterise_tril)
    kl = staticmethod(kl_normal_full)

    @staticmethod
    def w2_form(scale_tril: Tensor) -> Tensor:
        return scale_tril @ scale_tril.transpose(-1, -2)

    @staticmethod
    def from_w2_form(cov: Tensor) -> Tensor:
        return torch.linalg.cholesky(cov)


POSTERIORS: dict[str, type] = {"diagonal": DiagonalPosterior, "full": FullPosterior}


@dataclass
class VAEOutput:
    """A loss on one batch: ``loss`` (scalar, minimised; its graph reaches the parameters)
    and ``terms``: named detached scalars for logging (batch means)."""

    loss: Tensor
    terms: dict[str, Tensor]


@dataclass
class VAEConfig:
    """Settings shared by the multimodal VAEs.

    ``latent_dim``: width of ``z``. ``hidden``: width of every encoder's feature output and of
    the decoders' MLP bodies (default :func:`~modalign.nn.hidden_width` of each view).
    ``likelihoods``: one of :data:`LIKELIHOODS` per modality, or None to choose per view
    (:func:`choose_likelihoods`). ``learn_scale``: Gaussian likelihoods learn a per-feature
    scale (else 1). ``likelihood_weights``: one weight ``lambda_m >= 0`` per modality on its
    log-likelihood in the training loss (Wu and Goodman 2018 weigh MNIST's label 50 against
    its 784-pixel image, whose log-likelihood is hundreds of times larger); None:
    ``categorical_weight`` for categorical modalities (a label), 1 for the others. Without it
    a label's 2.3 nats are not worth a latent: on digits-label (the development set) both
    MVAE and WVAE collapsed to ``KL = 0`` and chance coherence with weight 1, and reached
    label -> image coherence 1.0 with 50 (``scripts/vae_choices.py``). Evaluation
    (:meth:`MultimodalVAE.unimodal_elbo`) never weighs. ``beta``: KL weight after the
    warm-up; ``warmup_epochs``: epochs over which it grows linearly from 0 (0: ``beta`` from
    the start). ``patience``: epochs without a
    validation improvement before stopping (only with ``validation``).
    """

    latent_dim: int = 20
    hidden: int | None = None
    likelihoods: tuple[str, ...] | None = None
    learn_scale: bool = True
    likelihood_weights: tuple[float, ...] | None = None
    categorical_weight: float = 50.0
    beta: float = 1.0
    warmup_epochs: int = 10
    epochs: int = 100
    patience: int | None = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"hidden must be positive or None, got {self.hidden}")
        if self.likelihoods is not None:
            if isinstance(self.likelihoods, str):
                raise ValueError("likelihoods must be a tuple with one name per modality")
            self.likelihoods = tuple(self.likelihoods)
            for m, name in enumerate(self.likelihoods):
                if not isinstance(name, str) or name.lower() not in DECODERS:
                    raise ValueError(
                        f"likelihoods[{m}]: unknown likelihood {name!r}; expected one of "
                        f"{list(LIKELIHOODS)}"
                    )
            self.likelihoods = tuple(name.lower() for name in self.likelihoods)
        if self.likelihood_weights is not None:
            if isinstance(self.likelihood_weights, (str, int, float)):
                raise ValueError("likelihood_weights must be a tuple with one weight per modality")
            self.likelihood_weights = tuple(float(w) for w in self.likelihood_weights)
            if not all(w >= 0 for w in self.likelihood_weights):
                raise ValueError(f"likelihood_weights must be >= 0, got {self.likelihood_weights}")
        if not self.categorical_weight >= 0:
            raise ValueError(f"categorical_weight must be >= 0, got {self.categorical_weight}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        check_device(self.device)


def choose_likelihoods(
    likelihoods: Sequence[str] | None,
    xs: Sequence[Tensor],
    present: Tensor,
    kinds: Sequence[str],
    names: Sequence[str],
) -> list[str]:
    """One likelihood name per modality.

    Given ``likelihoods`` are checked (one per modality, each among :data:`LIKELIHOODS`).
    Otherwise, per view: ``"categorical"`` for a view named ``"label"`` (one-hot rows),
    ``"bernoulli"`` for a view of kind ``"image"`` whose present values all lie in [0, 1],
    ``"gaussian"`` for anything else. Whether the data fit the choice is checked later, by
    each decoder's ``check``.

    Args:
        xs: the ``(N, D_m)`` views; present: ``(N, M)`` bool; kinds, names: per view.
    """
    if likelihoods is not None:
        if len(likelihoods) != len(xs):
            raise ValueError(
                f"likelihoods: need one per modality ({len(xs)}: {', '.join(names)}), "
                f"got {len(likelihoods)}"
            )
        chosen = [str(name).lower() for name in likelihoods]
        for name, lik in zip(names, chosen):
            if lik not in DECODERS:
                raise ValueError(
                    f"{name}: unknown likelihood {lik!r}; expected one of {list(LIKELIHOODS)}"
                )
        return chosen
    chosen = []
    for m, (x, kind, name) in enumerate(zip(xs, kinds, names)):
        rows = x[present[:, m]]
        if name == "label":
            chosen.append("categorical")
        elif kind == "image" and rows.numel() and bool(((rows >= 0) & (rows <= 1)).all()):
            chosen.append("bernoulli")
        else:
            chosen.append("gaussian")
    return chosen


class MultimodalVAE(nn.Module):
    """Base of the multimodal VAEs, sklearn-style: ``fit(views)`` without labels;
    ``transform(views, mask)`` gives a representation from any per-sample subset of
    modalities; ``generate`` decodes a subset into one modality; ``sample_prior`` decodes
    the prior into every modality.

    ``views`` is a list of aligned ``(N, D_m)`` arrays (with ``kinds`` and ``shapes`` to choose
    conv encoders) or a :class:`~modalign.data.MultiViewDataset`, which carries them.
    Subclasses define :meth:`loss` and :meth:`posterior`. ``posterior_family`` (a member of
    :data:`POSTERIORS`) decides what a posterior ``(mu, scale)`` is; every method here goes
    through it.
    """

    config: VAEConfig
    posterior_family: type = DiagonalPosterior

    def __init__(self, config: VAEConfig, random_state: int = 0):
        super().__init__()
        self.config = config
        self.random_state = random_state
        self.dims_: list[int] = []
        self.likelihoods_: list[str] = []
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ set-up
    def _build(
        self,
        dims: Sequence[int],
        kinds: Sequence[str],
        shapes: Sequence,
        likelihoods: Sequence[str],
    ) -> None:
        """Create one Gaussian encoder (of ``posterior_family``) and one likelihood decoder
        per modality."""
        cfg = self.config
        torch.manual_seed(self.random_state)  # weights initialise from the seed alone
        self.dims_ = [int(d) for d in dims]
        weights = cfg.likelihood_weights
        if weights is not None and len(weights) != len(self.dims_):
            raise ValueError(
                f"likelihood_weights: need one per modality ({len(self.dims_)}), got {len(weights)}"
            )
        self.weights_ = (
            list(weights)
            if weights is not None
            else [
                cfg.categorical_weight if str(lik).lower() == "categorical" else 1.0
                for lik in likelihoods
            ]
        )
        self.kinds_ = list(kinds)
        self.shapes_ = [None if s is None else tuple(s) for s in shapes]
        self.likelihoods_ = [str(lik).lower() for lik in likelihoods]
        encoders, decoders = [], []
        for d, kind, shape, lik in zip(self.dims_, self.kinds_, self.shapes_, self.likelihoods_):
            h = cfg.hidden or hidden_width(d)
            # modality_encoder ends on a linear layer; a nonlinearity before the mu/logvar
            # heads keeps the two linear maps from collapsing into one.
            body = nn.Sequential(
                modality_encoder(d, h, kind=kind, shape=shape, hidden=cfg.hidden), nn.GELU()
            )
            encoders.append(self.posterior_family.encoder(body, h, cfg.latent_dim))
            extra = {"learn_scale": cfg.learn_scale} if lik == "gaussian" else {}
            decoder_body = mlp([cfg.latent_dim, h, h], final_activation=True)
            decoders.append(make_decoder(lik, decoder_body, h, d, **extra))
        self.encoders = nn.ModuleList(encoders)
        self.decoders = nn.ModuleList(decoders)
        self.to(cfg.device)

    def _inputs(self, views, mask, *, fitted: bool, kinds=None, shapes=None, names=None):
        """``(views, mask, kinds, shapes, names)`` from a dataset or a list of arrays."""
        return dataset_inputs(
            type(self).__name__,
            views,
            mask,
            device=self.config.device,
            dims=self.dims_ if fitted else None,
            kinds=kinds,
            shapes=shapes,
            names=names if names is not None else getattr(self, "modality_names_", None),
        )

    def _check_data(self, xs: Sequence[Tensor], present: Tensor, names: Sequence[str]) -> None:
        """Every modality has present rows, and they lie in its likelihood's support."""
        for m, (x, decoder) in enumerate(zip(xs, self.decoders)):
            rows = present[:, m]
            if not bool(rows.any()):
                raise ValueError(f"{names[m]}: no sample has this modality present")
            decoder.check(x[rows], names[m])

    def _fitted_inputs(self, views, mask) -> tuple[list[Tensor], Tensor]:
        """Checked views and mask for inference; every row needs a present modality."""
        if not self.dims_:
            raise RuntimeError(f"call fit before using the {type(self).__name__}")
        xs, present, *_ = self._inputs(views, mask, fitted=True)
        empty = ~present.any(1)
        if bool(empty.any()):
            raise ValueError(
                f"sample {int(empty.nonzero()[0])} has no modality present: nothing to encode"
            )
        return xs, present

    def _target(self, target: int | str) -> int:
        names = getattr(self, "modality_names_", modality_names(None, len(self.dims_)))
        if isinstance(target, str):
            if target not in names:
                raise ValueError(f"target {target!r} is not a modality; expected one of {names}")
            return names.index(target)
        if not 0 <= int(target) < len(self.dims_):
            raise ValueError(
                f"target must be a modality index in 0..{len(self.dims_) - 1} or a name "
                f"among {names}, got {target!r}"
            )
        return int(target)

    # ------------------------------------------------------------------ model pieces
    def encode(self, xs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Every modality's posterior ``(mu, scale)``: ``mu`` ``(B, M, latent_dim)``, ``scale``
        ``(B, M, ...)`` (``logvar`` or ``L``, see the module docstring), computed on every row
        (missing rows are zero-filled; callers mask them)."""
        pairs = [enc(x) for enc, x in zip(self.encoders, xs)]
        return torch.stack([p[0] for p in pairs], 1), torch.stack([p[1] for p in pairs], 1)

    def elbo(
        self,
        mu: Tensor,
        scale: Tensor,
        xs: Sequence[Tensor],
        present: Tensor,
        targets: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        weighted: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """The two parts of the ELBO of a posterior ``q`` given as ``(mu, scale)`` (diagonal:
        ``N(mu, diag exp(logvar))``; full: ``N(mu, L L^T)``):
        ``recon = sum_{j in targets, present} lambda_j log p(x_j | z)`` (``lambda_j`` the
        modality's weight, see ``VAEConfig.likelihood_weights``; 1 with ``weighted=False``)
        with one reparameterised
        sample ``z ~ q`` (one draw from ``generator``, shape of ``mu``), and
        ``kl = KL(q || N(0, I))``; ELBO ``= recon - beta * kl``.

        Args:
            mu: ``(B, latent_dim)``; scale: ``logvar`` ``(B, latent_dim)`` or ``L``
                ``(B, latent_dim, latent_dim)``.
            xs: the ``(B, D_m)`` views; present: ``(B, M)`` bool.
            targets: the modalities reconstructed from ``z``.

        Returns:
            ``(recon (B,), kl (B,))``; a target missing from a row adds exactly nothing there.
        """
        z = self.posterior_family.sample(mu, scale, generator)
        recon = mu.new_zeros(mu.shape[0])
        for j in targets:
            ll = self.decoders[j].log_likelihood(self.decoders[j](z), xs[j])
            if weighted and self.weights_[j] != 1.0:
                ll = self.weights_[j] * ll
            recon = recon + torch.where(present[:, j], ll, 0.0)
        return recon, self.posterior_family.kl(mu, scale)

    def loss(
        self,
        xs: Sequence[Tensor],
        present: Tensor,
        *,
        beta: float | None = None,
        generator: torch.Generator | None = None,
    ) -> VAEOutput:
        """The loss on one batch (list of ``(B, D_m)``, mask ``(B, M)``); ``beta`` defaults to
        ``config.beta``; reparameterisation noise from ``generator``."""
        raise NotImplementedError

    def posterior(self, xs: Sequence[Tensor], present: Tensor) -> tuple[Tensor, Tensor]:
        """The inference posterior ``(mu, scale)`` (``mu`` ``(B, latent_dim)``) of each row
        from its present modalities (checked inputs: every row has one)."""
        raise NotImplementedError

    def _representation(self, xs: Sequence[Tensor], present: Tensor) -> Tensor:
        return self.posterior(xs, present)[0]

    def _generation_latent(
        self,
        xs: Sequence[Tensor],
        present: Tensor,
        target: int,
        sample: bool,
        generator: torch.Generator | None,
    ) -> Tensor:
        """The ``z (B, latent_dim)`` decoded into ``target``: the posterior mean, or a sample."""
        mu, scale = self.posterior(xs, present)
        return self.posterior_family.sample(mu, scale, generator) if sample else mu

    def _prior_latents(self, n: int, generator: torch.Generator | None) -> list[Tensor]:
        """One ``z ~ N(0, I)`` ``(n, latent_dim)``, shared by every modality."""
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self.config.device)
        return [z] * len(self.dims_)

    def beta_at(self, epoch: int) -> float:
        """The KL weight of ``epoch`` (0-based): ``beta * min(1, epoch / warmup_epochs)``."""
        cfg = self.config
        if cfg.warmup_epochs == 0:
            return cfg.beta
        return cfg.beta * min(1.0, epoch / cfg.warmup_epochs)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        views,
        *,
        mask=None,
        kinds: Sequence[str] | None = None,
        shapes: Sequence | None = None,
        modality_names: Sequence[str] | None = None,
        validation=None,
        checkpoint: str | Path | None = None,
        progress: bool = False,
        stop_after: int | None = None,
    ) -> MultimodalVAE:
        """Train without labels on aligned ``views`` (see the class docstring).

        ``mask`` ``(N, M)``: present modalities (a missing one is left out of every term of
        its row). ``validation``: held-out views of the same modalities: the loss on them
        (full ``beta``, fixed noise) picks the epoch kept and stops training after
        ``patience`` epochs without improvement. Label-free.
        ``kinds`` / ``shapes``: per view, as in :class:`~modalign.data.MultiViewDataset`.
        ``checkpoint``: written after every epoch and resumed from when it exists.
        ``stop_after``: end after that many epochs of this call (to test interruption).

        Raises:
            ValueError: a modality never present, or with values outside its likelihood's
                support (the message names it), or an unknown likelihood.
        """
        cfg = self.config
        xs, present, kinds, shapes, names = self._inputs(
            views, mask, fitted=False, kinds=kinds, shapes=shapes, names=modality_names
        )
        self.modality_names_ = names
        likelihoods = choose_likelihoods(cfg.likelihoods, xs, present, kinds, names)
        self._build([x.shape[1] for x in xs], kinds, shapes, likelihoods)
        self._check_data(xs, present, names)
        validate = None
        if validation is not None:
            vx, vp, *_ = self._inputs(validation, None, fitted=True)
            self._check_data(vx, vp, [f"validation {n}" for n in names])
            validate = lambda: self._validation_loss(vx, vp)  # noqa: E731
        self.history = fit_epochs(
            self,
            lambda epoch, optimiser: self._train_epoch(xs, present, optimiser, epoch),
            settings={
                "method": type(self).__name__,
                "likelihoods_chosen": str(self.likelihoods_),
            },
            validate=validate,
            checkpoint=checkpoint,
            progress=progress,
            stop_after=stop_after,
            desc=f"{type(self).__name__.lower()} seed {self.random_state}",
        )
        return self

    def _generators(self, seed: int) -> tuple[torch.Generator, torch.Generator]:
        """``(order, noise)``: a CPU generator for the shuffle and one on the model's device
        for the reparameterisation (the same one on the CPU)."""
        order = torch.Generator().manual_seed(seed)
        device = torch.device(self.config.device)
        if device.type == "cpu":
            return order, order
        return order, torch.Generator(device=device).manual_seed(seed)

    def _batches(
        self, xs: Sequence[Tensor], present: Tensor, step: Callable, order: Tensor | None = None
    ) -> dict[str, float]:
        """``step(batch_views, batch_mask) -> VAEOutput`` over consecutive batches of
        ``batch_size`` rows (of ``order`` when given); row-weighted means of the outputs."""
        n, size = xs[0].shape[0], self.config.batch_size
        rows_all = order if order is not None else torch.arange(n, device=present.device)
        # Training drops the last partial batch (as GMC does); evaluation keeps every row.
        n_batches = max(1, n // size) if order is not None else -(-n // size)
        sums: dict[str, float] = {}
        seen = 0
        for b in range(n_batches):
            rows = rows_all[b * size : (b + 1) * size]
            out = step([x[rows] for x in xs], present[rows])
            k = len(rows)
            seen += k
            for key, value in {"loss": out.loss, **out.terms}.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * k
        return {key: value / seen for key, value in sums.items()}

    def _train_epoch(self, xs, present, optimiser, epoch: int) -> dict[str, float]:
        # Every epoch draws from its own seeded generators, so a resumed run repeats exactly.
        order_gen, noise_gen = self._generators(self.random_state * 100_003 + epoch)
        order = torch.randperm(xs[0].shape[0], generator=order_gen).to(self.config.device)
        beta = self.beta_at(epoch)
        count = itertools.count()  # the batch number, for the error of a non-finite loss

        def step(batch: list[Tensor], have: Tensor) -> VAEOutput:
            out = self.loss(batch, have, beta=beta, generator=noise_gen)
            # Before backward: a NaN never reaches the weights; the error names the term.
            check_finite_loss(out.loss, epoch, next(count), parts=out.terms)
            optimiser.zero_grad()
            out.loss.backward()  # one loss, one backward per step
            optimiser.step()
            return out

        log = self._batches(xs, present, step, order)
        log["beta"] = beta
        return log

    def _validation_loss(self, xs, present) -> float:
        """The loss on held-out rows with the full ``beta`` and fixed noise (seed 0), so that
        epochs compare on one objective; mean per row."""
        _, noise_gen = self._generators(0)
        return self._batches(
            xs, present, lambda b, p: self.loss(b, p, beta=self.config.beta, generator=noise_gen)
        )["loss"]

    # ------------------------------------------------------------------ inference
    def _chunks(self, xs: Sequence[Tensor], present: Tensor, batch_size: int):
        for start in range(0, xs[0].shape[0], batch_size):
            yield [x[start : start + batch_size] for x in xs], present[start : start + batch_size]

    @torch.no_grad()
    def transform(self, views, mask=None, *, batch_size: int = 1024) -> Tensor:
        """The representation of every sample from the modalities its ``mask`` row marks
        present (default: all): the posterior mean of :meth:`posterior`, ``(N, latent_dim)``
        (see the subclass for variants).

        Raises:
            ValueError: a sample with no modality present, or views unlike the training ones.
        """
        xs, present = self._fitted_inputs(views, mask)
        self.eval()
        parts = [self._representation(b, p) for b, p in self._chunks(xs, present, batch_size)]
        return torch.cat(parts)

    @torch.no_grad()
    def generate(
        self,
        views,
        mask,
        target: int | str,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        batch_size: int = 1024,
    ) -> Tensor:
        """Modality ``target`` (index or name) generated from each sample's present
        modalities: the posterior mean (or, with ``sample``, a draw from ``generator`` on the
        model's device) decoded into the target decoder's mean, ``(N, D_target)`` (Bernoulli:
        probabilities in [0, 1]; categorical: class probabilities).

        Raises:
            ValueError: an unknown target, a sample with no modality present, or views unlike
                the training ones.
        """
        xs, present = self._fitted_inputs(views, mask)
        t = self._target(target)
        self.eval()
        decoder = self.decoders[t]
        parts = []
        for b, p in self._chunks(xs, present, batch_size):
            z = self._generation_latent(b, p, t, sample, generator)
            parts.append(decoder.mean(decoder(z)))
        return torch.cat(parts)

    @torch.no_grad()
    def unimodal_elbo(
        self,
        views,
        modality: int | str,
        *,
        generator: torch.Generator | None = None,
        batch_size: int = 1024,
    ) -> Tensor:
        """Per sample, the ELBO of modality ``m`` from its inference posterior given ``m``
        alone (:meth:`posterior` with only ``m`` present; MVAE: ``m``'s expert times the
        prior), with ``beta = 1``: ``log p(x_m | z) - KL(q(z | x_m) || N(0, I))``, one draw
        ``z ~ q`` from ``generator``. A lower bound on ``log p(x_m)``, in nats, ``(N,)``;
        comparable across models with the same likelihood of ``m``.
        """
        if not self.dims_:
            raise RuntimeError(f"call fit before using the {type(self).__name__}")
        m = self._target(modality)
        xs, present = self._fitted_inputs(views, None)
        if not bool(present[:, m].all()):
            raise ValueError(f"{self.modality_names_[m]}: missing in some rows, so no ELBO there")
        self.eval()
        only = torch.zeros_like(present)
        only[:, m] = True
        parts = []
        for b, have in self._chunks(xs, only, batch_size):
            mu, scale = self.posterior(b, have)
            recon, kl = self.elbo(mu, scale, b, have, [m], generator, weighted=False)
            parts.append(recon - kl)
        return torch.cat(parts)

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        """``n`` samples of every modality decoded from ``z ~ N(0, I)`` (``generator`` on the
        model's device): one ``(n, D_m)`` decoder mean per modality."""
        if not self.dims_:
            raise RuntimeError(f"call fit before using the {type(self).__name__}")
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        self.eval()
        zs = self._prior_latents(int(n), generator)
        return [dec.mean(dec(z)) for dec, z in zip(self.decoders, zs)]
