"""MVAE, the multimodal variational autoencoder (Wu and Goodman, NeurIPS 2018).

One Gaussian encoder and one likelihood decoder per modality (see
:mod:`modalign.methods._vae`). The posterior given any subset ``S`` of modalities is the
product of the present experts and the prior expert ``N(0, I)``
(:func:`~modalign.nn.product_of_experts`: precision-weighted, so precisions add and the mean is
the precision-weighted mean; a modality missing from a row is masked out of the product):

    q(z | x_S) ∝ N(0, I) prod_{m in S} q_m(z | x_m)

For a subset ``S``, with one reparameterised sample ``z ~ q(z | x_S)``:

    ELBO(S) = sum_{j present} log p(x_j | z) - beta KL(q(z | x_S) || N(0, I))

(every present modality is reconstructed, whatever ``S``). The loss minimised on a batch is
the negative of the sum of the joint ELBO (``S`` = all present modalities), the ``M``
unimodal ELBOs (``S = {m}``) and ``n_subsets`` random subsets, averaged over the rows:

    L = -(1/B) sum_i [ ELBO_i(all) + sum_m ELBO_i({m}) + sum_{k < n_subsets} ELBO_i(S_k) ]

A subset term counts only in the rows where some modality of the subset is present, and a
missing modality's reconstruction term is dropped from its row, so its encoder and decoder get
exactly zero gradient from that row. ``beta`` warms up linearly from 0 over
``warmup_epochs`` (KL annealing, as in the paper's experiments).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from modalign.methods._vae import MultimodalVAE, VAEConfig, VAEOutput
from modalign.nn.gaussian import product_of_experts

__all__ = ["MVAE", "MVAEConfig"]


@dataclass
class MVAEConfig(VAEConfig):
    """Settings of :class:`MVAE` (the shared ones: :class:`~modalign.methods._vae.VAEConfig`).

    ``n_subsets``: random subsets per batch added to the joint and unimodal ELBOs, each drawn
    uniformly among the ``2^M - 1`` non-empty subsets (the paper's sub-sampling for many
    modalities; 0 for two modalities, where joint + unimodal is every subset already).
    """

    n_subsets: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_subsets < 0:
            raise ValueError(f"n_subsets must be >= 0, got {self.n_subsets}")


class MVAE(MultimodalVAE):
    """MVAE (see the module docstring), sklearn-style: ``fit(views)`` without labels;
    ``transform(views, mask)`` the ``(N, latent_dim)`` mean of the product of the present
    experts; ``generate(views, mask, target)`` decodes it into ``target``;
    ``sample_prior(n)`` decodes ``z ~ N(0, I)`` into every modality.
    """

    config: MVAEConfig

    def __init__(self, config: MVAEConfig | None = None, random_state: int = 0):
        super().__init__(config or MVAEConfig(), random_state)

    def subsets(self, generator: torch.Generator | None, device) -> list[Tensor]:
        """The subsets of one batch as ``(M,)`` bool masks: all modalities, each modality
        alone, then ``n_subsets`` random non-empty ones (drawn from ``generator``)."""
        m = len(self.encoders)
        eye = torch.eye(m, dtype=torch.bool, device=device)
        chosen = [torch.ones(m, dtype=torch.bool, device=device), *eye]
        if self.config.n_subsets:
            codes = torch.randint(
                1, 2**m, (self.config.n_subsets,), generator=generator, device=device
            )
            bits = (codes[:, None] >> torch.arange(m, device=device)) & 1
            chosen.extend(bits.bool())
        return chosen

    def loss(
        self,
        xs: Sequence[Tensor],
        present: Tensor,
        *,
        beta: float | None = None,
        generator: torch.Generator | None = None,
    ) -> VAEOutput:
        """The MVAE loss ``L`` of the module docstring on one batch.

        Args:
            xs: the ``(B, D_m)`` views (missing rows zero-filled); present: ``(B, M)`` bool.
            beta: KL weight (default ``config.beta``).
            generator: the randomness: first the random subsets' choice (only when
                ``n_subsets > 0``), then one ``(B, latent_dim)`` reparameterisation draw per
                subset in the order joint, modality 0 .. M-1, random subsets.

        Returns:
            :class:`~modalign.methods._vae.VAEOutput` with terms ``recon`` and ``kl`` (summed
            over the subsets), ``joint``, ``unimodal`` (summed over modalities) and, with
            random subsets, ``subsets``: batch means of the ELBOs.
        """
        beta = self.config.beta if beta is None else float(beta)
        mu, logvar = self.encode(xs)
        m, b = len(xs), mu.shape[0]
        chosen = self.subsets(generator, mu.device)
        recon_total = kl_total = mu.new_zeros(())
        elbos = []
        for subset in chosen:
            have = present & subset[None, :]
            counted = have.any(1)
            post_mu, post_logvar = product_of_experts(mu, logvar, have)
            recon, kl = self.elbo(post_mu, post_logvar, xs, present, range(m), generator)
            recon = torch.where(counted, recon, 0.0)
            kl = torch.where(counted, kl, 0.0)
            recon_total = recon_total + recon.sum() / b
            kl_total = kl_total + kl.sum() / b
            elbos.append((recon - beta * kl).sum() / b)
        terms = {"joint": elbos[0], "unimodal": torch.stack(elbos[1 : m + 1]).sum()}
        if len(elbos) > m + 1:
            terms["subsets"] = torch.stack(elbos[m + 1 :]).sum()
        terms = {"recon": recon_total, "kl": kl_total, **terms}
        return VAEOutput(
            loss=-torch.stack(elbos).sum(),
            terms={k: v.detach() for k, v in terms.items()},
        )

    def posterior(self, xs: Sequence[Tensor], present: Tensor) -> tuple[Tensor, Tensor]:
        """The product of the present experts and ``N(0, I)``: ``(mu, logvar)``, each
        ``(B, latent_dim)``."""
        mu, logvar = self.encode(xs)
        return product_of_experts(mu, logvar, present)
