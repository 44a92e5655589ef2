"""A multimodal VAE whose modalities agree through the 2-Wasserstein distance (WVAE).

One Gaussian encoder and one likelihood decoder per modality (see
:mod:`modalign.methods._vae`); modality ``m`` has its own posterior ``q_m`` and its own ELBO,
with one reparameterised sample ``z_m ~ q_m``:

    ELBO_m = log p(x_m | z_m) - beta KL(q_m || N(0, I))

The posteriors' covariance (``WVAEConfig.covariance``):

* ``"diagonal"`` (default): ``q_m = N(mu_m, diag sigma_m^2)``, ``sigma_m = exp(0.5 logvar_m)``;
* ``"full"``: ``q_m = N(mu_m, S_m)``, ``S_m = L_m L_m^T`` with ``L_m`` lower-triangular: its
  diagonal ``exp(0.5 s_m)`` (``s_m`` clamped like a log-variance), its strictly-lower entries
  from a head that starts at zero (:class:`~modalign.nn.FullGaussianEncoder`), so training
  starts from the diagonal model's posteriors. ``z_m = mu_m + L_m eps`` and
  ``KL = 0.5 (tr S_m + |mu_m|^2 - d - log det S_m)``, ``log det S_m = 2 sum_j log L_m,jj``
  (:func:`~modalign.ot.kl_normal_full`). It costs ``d (d - 1) / 2`` more encoder outputs and
  ``d x d`` eigendecompositions in the consensus. With the strictly-lower entries at zero it
  is the diagonal model (the same loss and inference, up to rounding).

The modalities are pulled together by a consensus term on the posteriors (closed forms
:func:`~modalign.ot.gaussian_w2` and :func:`~modalign.ot.gaussian_barycenter`):

* two modalities: ``C = W2^2(q_a, q_b)``: diagonal, ``|mu_a - mu_b|^2 + |sigma_a - sigma_b|^2``;
  full, the Bures form ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})``;
* ``M > 2``: ``C = sum_{m present} W2^2(q_m, q_bar)`` with ``q_bar`` the W2 barycenter of the
  row's present posteriors (uniform weights; its mean is the mean of the means; diagonal: its
  standard deviation is the mean of the standard deviations; full: its covariance is the
  fixed point ``S = (1/K) sum_k (S^{1/2} S_k S^{1/2})^{1/2}``, iterated). This is not the sum
  over pairs, which would weigh each modality by ``M - 1``. (With both modalities present,
  the two-modality ``C`` equals twice this barycentric sum.)

The loss minimised on a batch of ``B`` rows:

    L = (1/B) sum_i [ -sum_{m present in i} ELBO_{i,m} + lambda_w2 C_i ]

A modality missing from a row is left out of its ELBOs, of the barycenter and of ``C``
(selected away with ``torch.where`` / by mask pattern), so its encoder and decoder get exactly
zero gradient from that row. Cross-reconstruction (decoding one modality from another's
posterior during training) is not part of this model.

Factorised variant (``factorised=True``, diagonal posteriors only): each modality's latent is
``[private; shared]`` (``latent_dim - shared_dim`` then ``shared_dim`` coordinates); the KL is
over the whole latent, the consensus only over the shared coordinates. A full covariance is
refused there: its private/shared cross-covariance ties the parts together, so neither the
consensus on the shared marginal alone nor ``generate``'s mixing of one posterior's private
part with the barycenter's shared part would be the same model.

Inference from a subset: one present modality gives its own posterior; several give the W2
barycenter of their posteriors (a posterior of the subset that every member is closest to on
average in W2). ``transform`` returns its mean ``(N, latent_dim)`` (factorised: the shared
part only, ``(N, shared_dim)``, since private coordinates of different modalities do not
describe the same thing). ``generate`` decodes it (or, with ``sample=True``, a draw from it,
through ``L`` when full); factorised: the target's private part comes from its own posterior
where the target is present in the row, otherwise from the prior: its mean (zeros) by
default, a draw from ``N(0, I)`` with ``sample=True``.

Defects of a public notebook of this model that are avoided here:

* its "product of experts" multiplied the means and the variances; here no product is used
  (subsets fuse through the W2 barycenter), and MVAE's product
  (:func:`~modalign.nn.product_of_experts`) adds precisions;
* its W2 term summed over the batch, had an exponent typo and an unsquared mean term; here
  :func:`~modalign.ot.gaussian_w2` gives ``|mu_a - mu_b|^2 + |sigma_a - sigma_b|^2`` per row
  (diagonal) and the loss is averaged over the rows, like the ELBOs;
* it used one network output as a standard deviation when sampling and as a log-variance in
  the KL; here it is a log-variance everywhere (sampling through
  :func:`~modalign.nn.reparameterise`, KL through :func:`~modalign.ot.kl_normal`, and
  ``sigma = exp(0.5 logvar)`` for the W2 terms; full: ``s`` is the log of ``L_jj^2`` in the
  sampler, the KL and the covariance alike);
* it called ``backward`` twice per step; here the whole loss is one scalar with one backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from modalign.methods._vae import POSTERIORS, MultimodalVAE, VAEConfig, VAEOutput
from modalign.nn.gaussian import reparameterise
from modalign.ot.gaussian import gaussian_barycenter, gaussian_w2

__all__ = ["COVARIANCES", "WVAE", "WVAEConfig", "masked_barycenter", "w2_consensus"]

COVARIANCES = tuple(POSTERIORS)


@dataclass
class WVAEConfig(VAEConfig):
    """Settings of :class:`WVAE` (the shared ones: :class:`~modalign.methods._vae.VAEConfig`).

    ``lambda_w2``: weight of the W2 consensus (4, chosen among 1, 4, 16 and 64 by coherence on
    digits-label, the development set; 64 collapsed the posteriors: ``scripts/vae_choices.py``).
    ``covariance``: the posteriors' covariance, ``"diagonal"`` or ``"full"``
    (:data:`COVARIANCES`). ``factorised``: split each latent into
    private and shared parts (diagonal only); ``shared_dim``: width of the shared part
    (default ``latent_dim // 2``; ignored when not factorised).
    """

    lambda_w2: float = 4.0
    covariance: str = "diagonal"
    factorised: bool = False
    shared_dim: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lambda_w2 >= 0:
            raise ValueError(f"lambda_w2 must be >= 0, got {self.lambda_w2}")
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {self.covariance!r}")
        if self.factorised and self.covariance == "full":
            raise ValueError(
                "factorised=True needs covariance='diagonal': a full covariance has "
                "private/shared cross terms, so its private and shared parts are not separate "
                "posteriors"
            )
        if self.factorised:
            if self.shared_dim is None:
                self.shared_dim = max(1, self.latent_dim // 2)
            if not 1 <= self.shared_dim < self.latent_dim:
                raise ValueError(
                    f"shared_dim must be in 1..latent_dim - 1 = {self.latent_dim - 1} (the "
                    f"rest is private), got {self.shared_dim}"
                )


def masked_barycenter(
    mu: Tensor, cov: Tensor, present: Tensor, *, diagonal: bool = True
) -> tuple[Tensor, Tensor]:
    """Per row, the W2 barycenter (uniform weights) of the present Gaussians.

    Rows are grouped by their pattern of present modalities and each group goes through
    :func:`~modalign.ot.gaussian_barycenter` with only its present Gaussians, so a missing one
    is never read (exactly zero gradient, whatever its values). A row with one present
    Gaussian gets that Gaussian itself (exactly; no fixed-point iteration).

    Args:
        mu: ``(B, M, d)`` means.
        cov: ``(B, M, d)`` standard deviations (``diagonal=True``) or ``(B, M, d, d)``
            covariances (``diagonal=False``).
        present: ``(B, M)`` bool.

    Returns:
        ``(mean (B, d), cov)`` with ``cov`` ``(B, d)`` standard deviations or ``(B, d, d)``
        covariances, as given; zeros in rows with nothing present.
    """
    b, _, d = mu.shape
    mean_out, cov_out = mu.new_zeros(b, d), cov.new_zeros(b, *cov.shape[2:])
    for pattern in torch.unique(present, dim=0):
        if not bool(pattern.any()):
            continue
        rows = (present == pattern).all(1).nonzero()[:, 0]
        cols = pattern.nonzero()[:, 0]
        if len(cols) == 1:
            mean, spread = mu[rows, cols[0]], cov[rows, cols[0]]
        else:
            mean, spread = gaussian_barycenter(
                mu[rows][:, cols], cov[rows][:, cols], diagonal=diagonal
            )
        mean_out = mean_out.index_put((rows,), mean)
        cov_out = cov_out.index_put((rows,), spread)
    return mean_out, cov_out


def w2_consensus(mu: Tensor, cov: Tensor, present: Tensor, *, diagonal: bool = True) -> Tensor:
    """The consensus ``C`` of the module docstring, per row.

    Args:
        mu: ``(B, M, d)`` means of the posteriors.
        cov: ``(B, M, d)`` their standard deviations (``diagonal=True``) or ``(B, M, d, d)``
            their covariances (``diagonal=False``).
        present: ``(B, M)`` bool.

    Returns:
        ``(B,)``: with ``M = 2``, ``W2^2(q_0, q_1)`` where both are present, else 0; with
        ``M > 2``, ``sum_{m present} W2^2(q_m, barycenter of the present)``.
    """
    m = mu.shape[1]
    if m < 2:
        raise ValueError(f"the consensus needs at least 2 modalities, got {m}")
    if not (bool(torch.isfinite(mu).all()) and bool(torch.isfinite(cov).all())):
        # Posteriors overflowed in training (extreme inputs or steps), not bad input to the
        # solver: a NaN consensus lets the epoch loop's guard name the term, epoch and batch.
        return torch.full(mu.shape[:1], float("nan"), dtype=mu.dtype, device=mu.device)
    if m == 2:
        w2 = gaussian_w2(mu[:, 0], cov[:, 0], mu[:, 1], cov[:, 1], diagonal=diagonal)
        return torch.where(present.all(1), w2, 0.0)
    bar_mu, bar_cov = masked_barycenter(mu, cov, present, diagonal=diagonal)
    w2 = gaussian_w2(
        mu, cov, bar_mu[:, None].expand_as(mu), bar_cov[:, None].expand_as(cov), diagonal=diagonal
    )
    return torch.where(present, w2, 0.0).sum(1)


class WVAE(MultimodalVAE):
    """The Wasserstein multimodal VAE (see the module docstring), sklearn-style:
    ``fit(views)`` without labels; ``transform(views, mask)`` the barycenter mean of the
    present posteriors, ``(N, latent_dim)`` (factorised: ``(N, shared_dim)``);
    ``generate(views, mask, target)``; ``sample_prior(n)``.
    """

    config: WVAEConfig

    def __init__(self, config: WVAEConfig | None = None, random_state: int = 0):
        if config is not None and not isinstance(config, WVAEConfig):
            raise TypeError(f"WVAE takes a WVAEConfig, got {type(config).__name__}")
        super().__init__(config or WVAEConfig(), random_state)

    @property
    def posterior_family(self) -> type:
        """Diagonal or full posteriors, from ``config.covariance`` (see :data:`POSTERIORS`)."""
        return POSTERIORS[self.config.covariance]

    def _shared(self) -> slice:
        """The latent coordinates the consensus compares (all, unless factorised)."""
        cfg = self.config
        return slice(cfg.latent_dim - cfg.shared_dim, None) if cfg.factorised else slice(None)

    def loss(
        self,
        xs: Sequence[Tensor],
        present: Tensor,
        *,
        beta: float | None = None,
        generator: torch.Generator | None = None,
    ) -> VAEOutput:
        """The WVAE loss ``L`` of the module docstring on one batch.

        Args:
            xs: the ``(B, D_m)`` views (missing rows zero-filled); present: ``(B, M)`` bool.
            beta: KL weight (default ``config.beta``).
            generator: reparameterisation noise, one ``(B, latent_dim)`` draw per modality in
                order.

        Returns:
            :class:`~modalign.methods._vae.VAEOutput` with terms ``recon``, ``kl`` (summed
            over modalities) and ``w2`` (the consensus), batch means.
        """
        beta = self.config.beta if beta is None else float(beta)
        family = self.posterior_family
        mu, scale = self.encode(xs)
        b = mu.shape[0]
        recon_total = kl_total = mu.new_zeros(b)
        for m in range(len(xs)):
            recon, kl = self.elbo(mu[:, m], scale[:, m], xs, present, [m], generator)
            recon_total = recon_total + recon  # already 0 where m is missing
            kl_total = kl_total + torch.where(present[:, m], kl, 0.0)
        # only diagonal posteriors are ever factorised: for full ones this is slice(None)
        shared = self._shared()
        consensus = w2_consensus(
            mu[..., shared], family.w2_form(scale[..., shared]), present, diagonal=family.diagonal
        )
        per_row = -(recon_total - beta * kl_total) + self.config.lambda_w2 * consensus
        terms = {"recon": recon_total.mean(), "kl": kl_total.mean(), "w2": consensus.mean()}
        return VAEOutput(loss=per_row.mean(), terms={k: v.detach() for k, v in terms.items()})

    def posterior(self, xs: Sequence[Tensor], present: Tensor) -> tuple[Tensor, Tensor]:
        """The W2 barycenter of the present posteriors (one present: its own posterior):
        ``(mu (B, latent_dim), scale)``, ``scale`` its ``logvar`` ``(B, latent_dim)`` or, full,
        the Cholesky factor ``(B, latent_dim, latent_dim)`` of its covariance. Factorised, the
        private coordinates are averaged too and mean little; see :meth:`transform` and
        :meth:`generate`."""
        family = self.posterior_family
        mu, scale = self.encode(xs)
        bar_mu, bar = masked_barycenter(
            mu, family.w2_form(scale), present, diagonal=family.diagonal
        )
        return bar_mu, family.from_w2_form(bar)

    def _representation(self, xs: Sequence[Tensor], present: Tensor) -> Tensor:
        return self.posterior(xs, present)[0][:, self._shared()]

    def _generation_latent(
        self,
        xs: Sequence[Tensor],
        present: Tensor,
        target: int,
        sample: bool,
        generator: torch.Generator | None,
    ) -> Tensor:
        if not self.config.factorised:
            return super()._generation_latent(xs, present, target, sample, generator)
        mu, logvar = self.encode(xs)
        bar_mu, bar_std = masked_barycenter(mu, torch.exp(0.5 * logvar), present)
        shared = self._shared()
        private = slice(0, shared.start)
        own_mu, own_logvar = mu[:, target, private], logvar[:, target, private]
        if sample:
            shared_z = bar_mu[:, shared] + bar_std[:, shared] * torch.randn(
                bar_mu[:, shared].shape, generator=generator, device=bar_mu.device
            )
            own = reparameterise(own_mu, own_logvar, generator)
            prior = torch.randn(own_mu.shape, generator=generator, device=own_mu.device)
        else:
            shared_z, own, prior = bar_mu[:, shared], own_mu, torch.zeros_like(own_mu)
        private_z = torch.where(present[:, target, None], own, prior)
        return torch.cat([private_z, shared_z], 1)

    def _prior_latents(self, n: int, generator: torch.Generator | None) -> list[Tensor]:
        """One shared ``z ~ N(0, I)``; factorised, each modality also draws its own private
        part (the shared coordinates are common to all, as in training)."""
        zs = super()._prior_latents(n, generator)
        if not self.config.factorised:
            return zs
        shared = self._shared()
        out = []
        for z in zs:
            private = torch.randn(
                n, shared.start, generator=generator, device=z.device, dtype=z.dtype
            )
            out.append(torch.cat([private, z[:, shared]], 1))
        return out
