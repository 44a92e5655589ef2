"""GMC, geometric multimodal contrastive learning (Poklukar, Vasco et al., ICML 2022).

DESIGN.md 2.3.

A representation that is the same point whether it is computed from every modality or from any
one of them, learned without labels. With ``M`` modalities:

* modality encoders ``f_m`` (:func:`~modalign.nn.modality_encoder`: a conv net for 28 x 28
  images, a 1-D conv net over log-mel frames, an MLP otherwise), ``(B, D_m) -> (B, common_dim)``;
* a joint encoder over the concatenated modality features: ``f_joint(x) = W [f_1(x_1); ...;
  f_M(x_M)] + b`` to ``common_dim``. The official code gives the joint path its own copies of
  the feature networks; sharing them (the default, ``separate_joint=False``) computes every
  modality's features once per batch, which halves the cost of a step on the CPU;
* ONE projection head ``g`` (``common_dim -> 512 -> 512 -> latent_dim``, GELU), shared by every
  path, its output L2-normalised: ``z_m = g(f_m(x_m)) / |.|``, ``z_joint = g(f_joint(x)) / |.|``.

The loss, as the official code computes it: for each modality ``m`` stack the batch's joint and
modality-``m`` embeddings, ``Z = [z_joint; z_m]`` (2B rows), logits ``Z Z^T / tau`` without the
diagonal; anchor ``a``'s positive is its pair (joint ``i`` <-> modality-``m`` ``i``) and the other
2B - 2 rows are its negatives:

    L = sum_m mean_a [ logsumexp_{b != a} (Z_a . Z_b / tau) - Z_a . Z_pos(a) / tau ]

With ``negatives="joint"`` (the ablation) an anchor's negatives are only the other samples'
JOINT embeddings (B - 1 rows), so modality embeddings never repel each other.

Missing modalities: the joint path needs every modality, so a training row with a modality
missing enters no term of the loss (its values are zero-filled first, so no encoder gets any
gradient from it). At inference a sample with every modality present gets ``z_joint``; any
other non-empty subset gets the mean of its modalities' ``z_m`` (GMC's choice, not
re-normalised; ``renormalise=True`` projects it back onto the sphere).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modalign.methods._views import dataset_inputs, fit_epochs
from modalign.nn.encoders import MLPEncoder, modality_encoder
from modalign.train.loop import check_finite_loss
from modalign.utils import check_device

__all__ = ["NEGATIVES", "GMC", "GMCConfig", "gmc_loss"]

NEGATIVES = ("all", "joint")


@dataclass
class GMCConfig:
    """Settings of :class:`GMC`; the defaults are the official MHD settings (64-d features
    and latent, 100 epochs, Adam 1e-3, tau 0.1; their MOSEI and pendulum runs use tau 0.3)
    except the batch: 128, not 64. On avdigits the validation split's retrieval recall@1
    (label-free) was 0.56 with batch 64, 0.64 with 128 and 0.65 with 256 (seed 0, mean over
    the two modalities, scripts/gmc_choices.py); 128 keeps two or more steps per epoch on
    small datasets.

    ``common_dim``: width of every encoder's output (the head's input). ``latent_dim``: width
    of the representation. ``tau``: the temperature. ``negatives``: ``"all"`` (GMC) or
    ``"joint"`` (the joints-as-negatives ablation). ``head_width``: hidden width of the shared
    projection head. ``hidden``: hidden width of MLP encoders (default
    :func:`~modalign.nn.hidden_width` of the input). ``separate_joint``: give the joint path its
    own feature networks, as the official code does (twice the encoder cost; a lower validation
    retrieval on avdigits, 0.51 / 0.58 against 0.56 / 0.56 image / audio at batch 64).
    ``patience``: with a validation split given to :meth:`GMC.fit`, stop after that many
    epochs without a lower validation loss (the training objective on held-out rows:
    label-free) and keep the best epoch's weights; None trains every epoch (the best epoch is
    still kept).

    ``scale_inputs``: divide each view that an MLP encodes by the root mean square of its
    training entries (one number per view, stored with the model), so that the MLP starts with
    activations of order 1 whatever the preprocessing. tf-idf + L2 rows of a few thousand terms
    have entries near 0.017; unscaled, GMC barely left the chance-level loss in 100 epochs on
    3-Sources (training loss 16.07 -> 11.72, best validation loss 9.36, validation recall@1
    0.06-0.18; scaled: 0.45, 4.08 and 0.76-0.85; seed 0, label-free; `scripts/gmc_choices.py
    3sources defaults "unscaled MLP inputs"`). Conv encoders keep the ranges they are built for
    (pixels in [0, 1], z-scored log-mel): scaling avdigits' images too (commit c789f64)
    lowered the validation retrieval recall@1 from 0.65 / 0.63 to 0.59 / 0.51 (image / audio,
    seed 0, scripts/gmc_choices.py).
    """

    common_dim: int = 64
    latent_dim: int = 64
    tau: float = 0.1
    negatives: str = "all"
    head_width: int = 512
    hidden: int | None = None
    separate_joint: bool = False
    scale_inputs: bool = True
    epochs: int = 100
    patience: int | None = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if not self.tau > 0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if min(self.common_dim, self.latent_dim, self.head_width) < 1:
            raise ValueError("common_dim, latent_dim and head_width must be positive")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        check_device(self.device)


def gmc_loss(
    joint: Tensor, modalities: Sequence[Tensor], tau: float = 0.1, negatives: str = "all"
) -> Tensor:
    """GMC's contrastive loss (see the module docstring), summed over modalities.

    Args:
        joint: ``(B, d)`` joint embeddings, rows L2-normalised.
        modalities: per modality ``(B, d)`` embeddings of the same samples, L2-normalised.
        tau: temperature.
        negatives: ``"all"`` (the other 2B - 2 rows) or ``"joint"`` (the other B - 1 joints).

    Returns:
        A scalar: ``sum_m`` of the mean over the 2B anchors.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    b = joint.shape[0]
    idx = torch.arange(2 * b, device=joint.device)
    positive = (idx + b) % (2 * b)
    excluded = torch.eye(2 * b, dtype=torch.bool, device=joint.device)
    if negatives == "joint":
        # Columns of modality rows are excluded, except each anchor's own positive.
        modality_column = (idx >= b)[None, :].expand(2 * b, 2 * b)
        excluded = excluded | (modality_column & (idx[None, :] != positive[:, None]))
    total = joint.new_zeros(())
    for z in modalities:
        both = torch.cat([joint, z])
        logits = (both @ both.T / tau).masked_fill(excluded, float("-inf"))
        total = total + (torch.logsumexp(logits, 1) - logits[idx, positive]).mean()
    return total


class GMC(nn.Module):
    """GMC, sklearn-style: ``fit(views)`` without labels; ``transform(views, mask)`` gives the
    ``(N, latent_dim)`` representation from any per-sample subset of modalities.

    ``views`` is a list of aligned ``(N, D_m)`` arrays (with ``kinds`` and ``shapes`` to choose
    conv encoders) or a :class:`~modalign.data.MultiViewDataset`, which carries them.
    """

    def __init__(self, config: GMCConfig | None = None, random_state: int = 0):
        super().__init__()
        self.config = config or GMCConfig()
        self.random_state = random_state
        self.dims_: list[int] = []
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ set-up
    def _build(self, dims: Sequence[int], kinds: Sequence[str], shapes: Sequence) -> None:
        cfg = self.config
        torch.manual_seed(self.random_state)  # weights initialise from the seed alone
        self.dims_ = [int(d) for d in dims]
        self.kinds_, self.shapes_ = list(kinds), [None if s is None else tuple(s) for s in shapes]

        def encoders() -> nn.ModuleList:
            return nn.ModuleList(
                modality_encoder(d, cfg.common_dim, kind=k, shape=s, hidden=cfg.hidden)
                for d, k, s in zip(self.dims_, self.kinds_, self.shapes_)
            )

        self.encoders = encoders()
        self.joint_encoders = encoders() if cfg.separate_joint else None
        self.joint_fusion = nn.Linear(len(dims) * cfg.common_dim, cfg.common_dim)
        # One divisor per view, set from the training data by fit (1 = unscaled).
        self.register_buffer("input_scale", torch.ones(len(dims)))
        self.head = nn.Sequential(
            nn.Linear(cfg.common_dim, cfg.head_width),
            nn.GELU(),
            nn.Linear(cfg.head_width, cfg.head_width),
            nn.GELU(),
            nn.Linear(cfg.head_width, cfg.latent_dim),
        )
        self.to(cfg.device)

    def _inputs(self, views, mask, *, fitted: bool, kinds=None, shapes=None, names=None):
        """``(views, mask, kinds, shapes, names)`` from a dataset or a list of arrays."""
        return dataset_inputs(
            "GMC",
            views,
            mask,
            device=self.config.device,
            dims=self.dims_ if fitted else None,
            kinds=kinds,
            shapes=shapes,
            names=names if names is not None else getattr(self, "modality_names_", None),
        )

    # ------------------------------------------------------------------ embeddings
    def _features(self, xs: Sequence[Tensor]) -> list[Tensor]:
        """``f_m(x_m / scale_m)`` of every modality (see ``scale_inputs``)."""
        return [enc(x / s) for enc, x, s in zip(self.encoders, xs, self.input_scale)]

    def embed_modality(self, m: int, x: Tensor) -> Tensor:
        """``z_m``: modality ``m``'s rows ``(B, D_m)`` through ``f_m`` and the shared head,
        L2-normalised, ``(B, latent_dim)``."""
        return F.normalize(self.head(self.encoders[m](x / self.input_scale[m])), dim=1)

    def embed_joint(self, xs: Sequence[Tensor], features: Sequence[Tensor] | None = None) -> Tensor:
        """``z_joint`` of complete rows (every modality present), ``(B, latent_dim)``;
        ``features``: the rows' ``f_m(x_m)`` when already computed (shared feature networks)."""
        if self.joint_encoders is not None:
            features = [enc(x / s) for enc, x, s in zip(self.joint_encoders, xs, self.input_scale)]
        elif features is None:
            features = self._features(xs)
        return F.normalize(self.head(self.joint_fusion(torch.cat(list(features), dim=1))), dim=1)

    def loss(self, xs: Sequence[Tensor], present: Tensor) -> Tensor:
        """GMC's loss on one batch (list of ``(B, D_m)``, mask ``(B, M)``): only rows with every
        modality present enter it (the joint path needs them all)."""
        complete = present.all(1)
        if int(complete.sum()) < 2:
            return xs[0].new_zeros(())
        rows = [x[complete] for x in xs]
        features = self._features(rows)
        singles = [F.normalize(self.head(h), dim=1) for h in features]
        joint = self.embed_joint(rows, features)
        cfg = self.config
        return gmc_loss(joint, singles, cfg.tau, cfg.negatives)

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
    ) -> GMC:
        """Train without labels on aligned ``views`` (see the class docstring).

        ``mask`` ``(N, M)``: present modalities (rows missing one do not enter the loss).
        ``validation``: held-out views of the same modalities (a dataset, or a list of arrays):
        the loss on them, in fixed batches of ``batch_size``, picks the epoch kept and stops
        training after ``patience`` epochs without improvement. Label-free.
        ``kinds`` / ``shapes``: per view, as in :class:`~modalign.data.MultiViewDataset`.
        ``checkpoint``: written after every epoch and resumed from when it exists.
        ``stop_after``: end after that many epochs of this call (to test interruption).
        """
        cfg = self.config
        xs, present, kinds, shapes, names = self._inputs(
            views, mask, fitted=False, kinds=kinds, shapes=shapes, names=modality_names
        )
        self.modality_names_ = names
        if int(present.all(1).sum()) < 2:
            raise ValueError(
                "GMC contrasts every modality with the joint embedding of complete rows: "
                f"need at least 2 rows with every modality present, got {int(present.all(1).sum())}"
            )
        self._build([x.shape[1] for x in xs], kinds, shapes)
        if cfg.scale_inputs:
            for m, (x, enc) in enumerate(zip(xs, self.encoders)):
                rms = x[present[:, m]].pow(2).mean().sqrt()
                if isinstance(enc, MLPEncoder) and rms > 0:
                    self.input_scale[m] = rms
        validate = None
        if validation is not None:
            vx, vp, *_ = self._inputs(validation, None, fitted=True)
            # One fixed shuffle: held-out files often come sorted by class, and batches of one
            # class would make the negatives unlike training's.
            order = torch.randperm(vx[0].shape[0], generator=torch.Generator().manual_seed(0))
            order = order.to(vp.device)
            vx, vp = [x[order] for x in vx], vp[order]
            if int(vp.all(1).sum()) < 2:
                raise ValueError("validation: need at least 2 rows with every modality present")
            validate = lambda: self._validation_loss(vx, vp)  # noqa: E731
        self.history = fit_epochs(
            self,
            lambda epoch, optimiser: self._train_epoch(xs, present, optimiser, epoch),
            settings={},
            validate=validate,
            checkpoint=checkpoint,
            progress=progress,
            stop_after=stop_after,
            desc=f"gmc seed {self.random_state}",
        )
        return self

    def _validation_loss(self, xs, present) -> float:
        """The loss on held-out rows in fixed consecutive batches (the loss depends on the
        batch size through its negatives, so it is measured as in training)."""
        size = self.config.batch_size
        n_batches = max(1, xs[0].shape[0] // size)
        total = 0.0
        for b in range(n_batches):
            rows = slice(b * size, (b + 1) * size)
            total += float(self.loss([x[rows] for x in xs], present[rows])) / n_batches
        return total

    def _train_epoch(self, xs, present, optimiser, epoch: int) -> dict[str, float]:
        cfg = self.config
        # Every epoch draws from its own seeded generator, so a resumed run repeats exactly.
        gen = torch.Generator().manual_seed(self.random_state * 100_003 + epoch)
        n = xs[0].shape[0]
        order = torch.randperm(n, generator=gen).to(cfg.device)
        n_batches = max(1, n // cfg.batch_size)
        total = 0.0
        for b in range(n_batches):
            rows = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            loss = self.loss([x[rows] for x in xs], present[rows])
            value = check_finite_loss(loss, epoch, b)  # before backward: weights stay finite
            if loss.requires_grad:
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            total += value / n_batches
        return {"loss": total}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def transform(
        self, views, mask=None, *, renormalise: bool = False, batch_size: int = 1024
    ) -> Tensor:
        """The representation ``(N, latent_dim)`` of every sample from the modalities its
        ``mask`` row marks present (default: all): ``z_joint`` when all are, else the mean of
        the present modalities' ``z_m`` (re-normalised with ``renormalise``).

        Raises:
            ValueError: a sample with no modality present, or views unlike the training ones.
        """
        if not self.dims_:
            raise RuntimeError("call fit before transform")
        xs, present, _, _, names = self._inputs(views, mask, fitted=True)
        empty = ~present.any(1)
        if bool(empty.any()):
            raise ValueError(
                f"sample {int(empty.nonzero()[0])} has no modality present: nothing to represent"
            )
        self.eval()
        parts = []
        for start in range(0, xs[0].shape[0], batch_size):
            batch = [x[start : start + batch_size] for x in xs]
            have = present[start : start + batch_size]
            weight = have.to(batch[0].dtype)
            features = self._features(batch)
            singles = torch.stack([F.normalize(self.head(h), dim=1) for h in features], 1)
            mean = (singles * weight[..., None]).sum(1) / weight.sum(1, keepdim=True)
            if renormalise:
                mean = F.normalize(mean, dim=1)
            complete = have.all(1)
            if bool(complete.any()):
                joint = self.embed_joint(
                    [x[complete] for x in batch], [h[complete] for h in features]
                )
                mean = mean.index_put((complete.nonzero()[:, 0],), joint)
            parts.append(mean)
        return torch.cat(parts)
