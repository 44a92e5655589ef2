"""Gaussian building blocks of multimodal VAEs: experts, encoders, likelihood decoders.

Convention: ``logvar`` is a LOG-VARIANCE everywhere in this module (and in
:func:`modalign.ot.kl_normal`): the variance is ``exp(logvar)`` and the standard deviation is
``exp(0.5 * logvar)``. A known defect of a public MVAE notebook used the same network output
as a standard deviation when sampling and as a log-variance in the KL term; keeping one
meaning throughout, and sampling only through :func:`reparameterise`, rules that out.

* :func:`product_of_experts` fuses per-modality Gaussian posteriors (MVAE, Wu and Goodman
  2018), skipping missing modalities.
* :class:`GaussianEncoder` puts ``mu`` and ``logvar`` heads on any feature network;
  :class:`FullGaussianEncoder` adds the strictly-lower entries of a Cholesky factor ``L``
  (full covariance ``L L^T``, sampled by :func:`reparameterise_tril`).
* :class:`BernoulliDecoder`, :class:`GaussianDecoder`, :class:`CategoricalDecoder` (built by
  name with :func:`make_decoder`) share one interface: ``decoder(z) -> params``,
  ``log_likelihood(params, x) -> (B,)``, ``mean(params) -> (B, D)`` and ``check(x, what)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DECODERS",
    "BernoulliDecoder",
    "CategoricalDecoder",
    "FullGaussianEncoder",
    "GaussianDecoder",
    "GaussianEncoder",
    "LikelihoodDecoder",
    "make_decoder",
    "product_of_experts",
    "reparameterise",
    "reparameterise_tril",
]


def reparameterise(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A differentiable sample of ``N(mu, diag exp(logvar))``: ``mu + exp(0.5 logvar) * eps``.

    ``eps ~ N(0, I)`` has the shape of ``mu`` and is drawn from ``generator`` when given (it
    must live on ``mu``'s device). ``logvar`` is a log-variance, the same number the KL term
    (:func:`modalign.ot.kl_normal`) reads, never a standard deviation. Shapes: ``mu`` and
    ``logvar`` (...,), returns (...,).
    """
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got {tuple(mu.shape)} and "
            f"{tuple(logvar.shape)}"
        )
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def reparameterise_tril(
    mu: Tensor, scale_tril: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """A differentiable sample of ``N(mu, L L^T)``: ``mu + L eps``, ``L = scale_tril``.

    ``eps ~ N(0, I)`` is drawn exactly as in :func:`reparameterise` (shape of ``mu``, from
    ``generator``), so a diagonal ``L = diag(exp(0.5 logvar))`` gives the same sample.
    Shapes: ``mu`` (..., d), ``scale_tril`` (..., d, d) lower-triangular; returns (..., d).
    """
    d = mu.shape[-1]
    if scale_tril.shape != (*mu.shape, d):
        raise ValueError(
            f"scale_tril must have shape {(*mu.shape, d)} for mu of shape {tuple(mu.shape)}, "
            f"got {tuple(scale_tril.shape)}"
        )
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + (scale_tril @ eps[..., None])[..., 0]


def product_of_experts(
    mu: Tensor, logvar: Tensor, mask: Tensor | None = None, *, prior_expert: bool = True
) -> tuple[Tensor, Tensor]:
    """Product of Gaussian experts (MVAE, Wu and Goodman 2018), in log space.

    With precisions ``T_m = exp(-logvar_m)`` of the present experts and, when
    ``prior_expert``, the prior expert ``N(0, I)`` (precision 1, mean 0):
    ``T = 1 + sum_{m present} T_m``, ``var = 1 / T``, ``mu = var * sum_{m present} T_m mu_m``.
    Computed as ``log T = logsumexp({0} u {-logvar_m : m present})`` and
    ``mu = sum_m softmax(...)_m mu_m``, so precisions from ``exp(-30)`` to ``exp(30)`` give
    finite results. A masked-out expert enters as ``-inf`` through ``torch.where``: it adds
    exactly nothing and receives exactly zero gradient, whatever its values (even inf/NaN).

    Args:
        mu: (B, M, d) means of the M modality experts.
        logvar: (B, M, d) their log-variances.
        mask: (B, M) bool, True where the modality is present; all present when omitted.
        prior_expert: include the ``N(0, I)`` expert. Without it every row needs at least
            one present expert.

    Returns:
        ``(mu (B, d), logvar (B, d))`` of the product.
    """
    if mu.dim() != 3 or mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must both be (B, M, d), got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    b, m, d = mu.shape
    if mask is None:
        mask = torch.ones(b, m, dtype=torch.bool, device=mu.device)
    elif mask.dtype != torch.bool or mask.shape != (b, m):
        raise ValueError(
            f"mask must be a bool tensor of shape ({b}, {m}), got {mask.dtype} {tuple(mask.shape)}"
        )
    if not prior_expert and not bool(mask.any(dim=1).all()):
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(
            f"mask: rows {empty[:10]} have no expert present; without prior_expert the "
            "product is undefined there"
        )
    present = mask[:, :, None]
    log_precision = torch.where(present, -logvar, float("-inf"))
    if prior_expert:
        log_precision = torch.cat([log_precision.new_zeros(b, 1, d), log_precision], dim=1)
    log_total = torch.logsumexp(log_precision, dim=1)
    # T_m / T, computed without forming either; the prior's share multiplies a zero mean
    share = torch.exp(log_precision - log_total[:, None, :])[:, -m:]
    mu_product = (share * torch.where(present, mu, 0.0)).sum(dim=1)
    return mu_product, -log_total


class GaussianEncoder(nn.Module):
    """``x (B, D) -> (mu, logvar)``, each (B, latent_dim): two linear heads on ``body``.

    ``body`` maps (B, D) to (B, body_dim). ``logvar`` is a log-variance clamped to
    ``LOGVAR_RANGE = [-12, 12]`` (standard deviations from 2.5e-3 to 400): an unbounded head
    can overflow ``exp`` early in training, and a variance below ``e^-12`` only lets the KL
    term blow up without improving reconstructions.
    """

    LOGVAR_RANGE: tuple[float, float] = (-12.0, 12.0)

    def __init__(self, body: nn.Module, body_dim: int, latent_dim: int):
        super().__init__()
        if body_dim < 1 or latent_dim < 1:
            raise ValueError(
                f"body_dim and latent_dim must be positive, got {body_dim} and {latent_dim}"
            )
        self.body = body
        self.latent_dim = latent_dim
        self.mu = nn.Linear(body_dim, latent_dim)
        self.logvar = nn.Linear(body_dim, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._heads(self.body(x))

    def _heads(self, h: Tensor) -> tuple[Tensor, Tensor]:
        low, high = self.LOGVAR_RANGE
        return self.mu(h), self.logvar(h).clamp(low, high)


class FullGaussianEncoder(GaussianEncoder):
    """``x (B, D) -> (mu (B, d), L (B, d, d))``: a full-covariance posterior ``N(mu, L L^T)``.

    ``L`` is lower-triangular with diagonal ``exp(0.5 s)``, where ``s`` is the clamped output
    of the inherited ``logvar`` head (the log of ``L_jj^2``; the variance ``S_jj`` itself is
    ``sum_k L_jk^2``), and strictly-lower entries from a linear head ``lower`` with
    ``d (d - 1) / 2`` outputs, filled row by row (``torch.tril_indices(d, d, -1)``). That
    head starts at zero (weights and bias, drawing nothing from the random stream), so a new
    encoder gives diagonal, near-isotropic posteriors and, built from the same seed, the same
    ``mu`` and ``s`` as a :class:`GaussianEncoder`.
    """

    def __init__(self, body: nn.Module, body_dim: int, latent_dim: int):
        super().__init__(body, body_dim, latent_dim)
        n_lower = latent_dim * (latent_dim - 1) // 2
        self.lower = nn.utils.skip_init(nn.Linear, body_dim, n_lower)
        nn.init.zeros_(self.lower.weight)
        nn.init.zeros_(self.lower.bias)
        self.register_buffer(
            "lower_index", torch.tril_indices(latent_dim, latent_dim, -1), persistent=False
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        mu, s = self._heads(h)
        rows, cols = self.lower_index
        strict = mu.new_zeros(*mu.shape, self.latent_dim)
        strict[..., rows, cols] = self.lower(h)
        return mu, torch.diag_embed(torch.exp(0.5 * s)) + strict


class LikelihoodDecoder(nn.Module):
    """Base class: ``z (B, latent) -> body -> (B, body_dim) -> linear head -> params``.

    Subclasses define ``log_likelihood(params, x) -> (B,)`` (summed over features),
    ``mean(params) -> (B, n_features)`` (the reconstruction to show) and ``check(x, what)``
    (ValueError naming ``what`` when ``x`` is outside the likelihood's support). ``check``
    reads the data's values and so synchronises with the device: call it once per data set,
    not per batch; ``log_likelihood`` only checks shapes.
    """

    likelihood: str = ""

    def __init__(self, body: nn.Module, body_dim: int, n_features: int):
        super().__init__()
        if body_dim < 1 or n_features < 1:
            raise ValueError(
                f"body_dim and n_features must be positive, got {body_dim} and {n_features}"
            )
        self.body = body
        self.n_features = n_features
        self.head = nn.Linear(body_dim, n_features)

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self.body(z))

    def log_likelihood(self, params: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def check(self, x: Tensor, what: str = "x") -> None:
        raise NotImplementedError

    def _check_shape(self, x: Tensor, what: str) -> None:
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"{what}: {self.likelihood} likelihood expects (B, {self.n_features}) data, "
                f"got shape {tuple(x.shape)}"
            )

    def _check_pair(self, params: Tensor, x: Tensor) -> None:
        if params.shape != x.shape:
            raise ValueError(
                f"x of shape {tuple(x.shape)} does not match the decoder's output "
                f"{tuple(params.shape)}"
            )


class BernoulliDecoder(LikelihoodDecoder):
    """Independent Bernoulli features; ``params`` are logits ``l`` (B, D).

    ``log p(x | l) = sum_j x_j log sigmoid(l_j) + (1 - x_j) log sigmoid(-l_j)``
    ``= -sum_j BCEWithLogits(l_j, x_j)``; also defined for ``x`` in [0, 1] (grey levels, the
    usual relaxation for MNIST). ``mean = sigmoid(l)``.
    """

    likelihood = "bernoulli"

    def log_likelihood(self, params: Tensor, x: Tensor) -> Tensor:
        self._check_pair(params, x)
        bce = F.binary_cross_entropy_with_logits(params, x.to(params.dtype), reduction="none")
        return -bce.sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def check(self, x: Tensor, what: str = "x") -> None:
        self._check_shape(x, what)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{what}: Bernoulli likelihood needs finite values in [0, 1]")
        low, high = float(x.min()), float(x.max())
        if low < 0:
            raise ValueError(
                f"{what}: Bernoulli likelihood needs values in [0, 1], got min {low:.3g}"
            )
        if high > 1:
            raise ValueError(
                f"{what}: Bernoulli likelihood needs values in [0, 1], got max {high:.3g}"
            )


class GaussianDecoder(LikelihoodDecoder):
    """Independent Gaussian features; ``params`` are the means ``m`` (B, D).

    ``log p(x | m) = sum_j -0.5 ((x_j - m_j) / s_j)^2 - log s_j - 0.5 log(2 pi)`` with a
    per-feature scale ``s = exp(log_scale)``: a learned parameter (D,) when ``learn_scale``,
    else fixed at 1 (then the log-likelihood is a shifted, halved squared error). The
    log-scale is clamped to ``LOG_SCALE_RANGE = [-7, 7]``: a perfectly fitted feature would
    otherwise drive its scale to 0 and the log-likelihood to infinity. ``mean = m``.
    """

    likelihood = "gaussian"
    LOG_SCALE_RANGE: tuple[float, float] = (-7.0, 7.0)

    def __init__(self, body: nn.Module, body_dim: int, n_features: int, learn_scale: bool = True):
        super().__init__(body, body_dim, n_features)
        self.learn_scale = learn_scale
        if learn_scale:
            self.log_scale = nn.Parameter(torch.zeros(n_features))
        else:
            self.register_buffer("log_scale", torch.zeros(n_features))

    def scale(self) -> Tensor:
        """The per-feature standard deviation ``exp(clamped log_scale)``, shape (D,)."""
        return torch.exp(self._log_scale())

    def _log_scale(self) -> Tensor:
        low, high = self.LOG_SCALE_RANGE
        return self.log_scale.clamp(low, high)

    def log_likelihood(self, params: Tensor, x: Tensor) -> Tensor:
        self._check_pair(params, x)
        log_scale = self._log_scale().to(params.dtype)
        z = (x.to(params.dtype) - params) * torch.exp(-log_scale)
        return (-0.5 * z**2 - log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return params

    def check(self, x: Tensor, what: str = "x") -> None:
        self._check_shape(x, what)
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(
                f"{what}: Gaussian likelihood needs finite values, got {bad} non-finite"
            )


class CategoricalDecoder(LikelihoodDecoder):
    """One categorical variable over ``n_classes`` classes; ``params`` are logits (B, K).

    ``log p(x = c | l) = log softmax(l)_c``. ``x`` is either one-hot (B, K) or class indices
    (B,) (integers, or floats holding whole numbers); both give the same numbers.
    ``mean = softmax(l)`` (B, K), the class probabilities.
    """

    likelihood = "categorical"

    def __init__(self, body: nn.Module, body_dim: int, n_classes: int):
        super().__init__(body, body_dim, n_classes)

    @property
    def n_classes(self) -> int:
        return self.n_features

    def _indices(self, x: Tensor, n_rows: int) -> Tensor:
        if x.dim() == 2 and x.shape == (n_rows, self.n_classes):
            # the position of the 1; check() verifies that rows really are one-hot
            return x.argmax(dim=-1)
        if x.dim() == 1 and x.shape[0] == n_rows:
            return x.long()
        raise ValueError(
            f"x must be one-hot ({n_rows}, {self.n_classes}) or class indices ({n_rows},), "
            f"got shape {tuple(x.shape)}"
        )

    def log_likelihood(self, params: Tensor, x: Tensor) -> Tensor:
        if params.dim() != 2 or params.shape[1] != self.n_classes:
            raise ValueError(
                f"params must be logits (B, {self.n_classes}), got {tuple(params.shape)}"
            )
        index = self._indices(x, params.shape[0])
        return F.log_softmax(params, dim=-1).gather(-1, index[:, None]).squeeze(-1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.softmax(params, dim=-1)

    def check(self, x: Tensor, what: str = "x") -> None:
        k = self.n_classes
        support = f"one-hot rows (B, {k}) or class indices in 0..{k - 1}"
        if x.dim() == 2:
            if x.shape[1] != k:
                raise ValueError(
                    f"{what}: categorical likelihood needs {support}, got shape {tuple(x.shape)}"
                )
            values = x.to(torch.float64)
            binary = bool(((values == 0) | (values == 1)).all())
            if not binary or not bool((values.sum(-1) == 1).all()):
                raise ValueError(
                    f"{what}: categorical likelihood needs {support}; some rows are not "
                    "one-hot (exactly one 1, the rest 0)"
                )
        elif x.dim() == 1:
            if x.is_floating_point():
                if not bool(torch.isfinite(x).all()) or not bool((x == x.round()).all()):
                    raise ValueError(
                        f"{what}: categorical likelihood needs {support}, got non-integer values"
                    )
            elif x.dtype == torch.bool:
                raise ValueError(f"{what}: categorical likelihood needs {support}, got bool")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) > k - 1):
                raise ValueError(
                    f"{what}: categorical likelihood needs {support}, got values from "
                    f"{int(x.min())} to {int(x.max())}"
                )
        else:
            raise ValueError(
                f"{what}: categorical likelihood needs {support}, got shape {tuple(x.shape)}"
            )


DECODERS: dict[str, type[LikelihoodDecoder]] = {
    "bernoulli": BernoulliDecoder,
    "gaussian": GaussianDecoder,
    "categorical": CategoricalDecoder,
}


def make_decoder(
    likelihood: str, body: nn.Module, body_dim: int, n_features: int, **kwargs
) -> LikelihoodDecoder:
    """Build a decoder by likelihood name: ``"bernoulli"``, ``"gaussian"`` or
    ``"categorical"`` (``n_features`` is then the number of classes). Extra keyword arguments
    go to the class (``learn_scale`` for ``"gaussian"``)."""
    key = likelihood.lower()
    if key not in DECODERS:
        raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {sorted(DECODERS)}")
    return DECODERS[key](body, body_dim, n_features, **kwargs)
