"""Supervised multimodal fusion, with or without OTM latent augmentation (DESIGN.md 2.1).

Each modality ``m`` has an encoder ``f_m`` (an MLP, ``(B, D_m) -> (B, d)``). A fusion layer of
:mod:`modalign.nn.fusion` (late, tensor, low-rank tensor or multiplicative interactions) combines
the codes under a per-sample mask of present modalities and a head predicts the target; beside
it, one head per modality predicts from that modality's code alone (single-modality inference,
the paper's "selected modality" setting). The objective per batch is

    L = l(h(fuse(Z)), y) + lambda_unimodal * mean_m l(h_m(Z_m), y)

with ``l`` the cross-entropy (classification) or squared error (regression). With ``otm=True``
the OTM mixer (:func:`modalign.methods.otm.ot_mix`, the same function OTM trains with) turns the
batch's codes into mixed codes ``Z~_m`` and the same loss on them is added with weight
``lambda_mix``: the supervised loss on both the codes and the augmented codes. The mixer uses
each modality's codes as an unordered cloud (its couplings, not the row pairing, carry samples
across modalities); row ``i`` of ``Z~_m`` keeps the label of row ``i`` of ``Z_m``.

A modality missing for a sample (mask 0) is zero-filled before its encoder and again before the
fusion, so it influences nothing and its encoder receives exactly zero gradient from that row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modalign.eval.supervised import classification_scores, regression_scores
from modalign.methods._views import check_views, modality_names
from modalign.methods.otm import MIXERS, ot_mix
from modalign.nn import FUSIONS, hidden_width, make_fusion, mlp
from modalign.train import train_epochs
from modalign.train.loop import check_finite_loss
from modalign.utils import check_device

TASKS = ("classification", "regression")


@dataclass
class SupervisedConfig:
    """Settings of :class:`SupervisedFusion`.

    ``n_outputs``: number of classes (classification) or of regression targets.
    ``fusion``: ``"late"``, ``"tensor"``, ``"lowrank"`` or ``"mi"`` (see :mod:`modalign.nn.fusion`).
    ``otm``: add the OTM-augmented loss (``mixer`` ``"fgw"`` or ``"wb"``, FGW weight ``alpha``).
    ``latent_dim``: width ``d`` of every modality's code. ``hidden``: encoders' hidden width
    (default :func:`~modalign.nn.hidden_width` of the input). ``fusion_dim``: width of the fused
    vector fed to the head. ``rank``: rank of the low-rank tensor fusion.
    ``lambda_unimodal``: weight of the per-modality heads' loss. ``lambda_mix``: weight of the
    loss on mixed codes. ``patience``: epochs without validation improvement before stopping
    (None: train all ``epochs``, keep the best validation epoch). ``val_fraction``: share of the
    training rows held out for validation when no validation set is given (stratified by class).
    ``single_fallback``: at prediction, a sample with exactly one modality present is predicted
    by that modality's own head instead of the fusion head (which then sees zero-filled codes
    for every other modality, an input it never trained on); off by default, so that the
    fusions are measured as they are.
    """

    n_outputs: int
    fusion: str = "late"
    task: str = "classification"
    otm: bool = False
    mixer: str = "fgw"
    alpha: float = 0.5
    latent_dim: int = 32
    hidden: int | None = None
    fusion_dim: int = 64
    rank: int = 4
    lambda_unimodal: float = 1.0
    lambda_mix: float = 1.0
    single_fallback: bool = False
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int | None = 5
    val_fraction: float = 0.15
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {sorted(FUSIONS)}, got {self.fusion!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.mixer not in MIXERS or self.mixer == "none":
            raise ValueError(f"mixer must be 'fgw' or 'wb', got {self.mixer!r}")
        if self.n_outputs < (2 if self.task == "classification" else 1):
            raise ValueError(f"n_outputs must be >= 2 classes or >= 1 target, got {self.n_outputs}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        check_device(self.device)
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")


@dataclass
class FusionOutput:
    """What a forward pass returns: ``fused`` (B, n_outputs) from the fusion head,
    ``unimodal[m]`` (B, n_outputs) from modality ``m``'s own head, ``codes[m]`` (B, d)."""

    fused: Tensor
    unimodal: list[Tensor]
    codes: list[Tensor]


def stratified_holdout(
    y: np.ndarray, fraction: float, seed: int, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held_out)``: about ``fraction`` of each class (of all rows when not
    stratified) held out, at least one row per class with two or more rows."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    held = []
    for g in groups:
        k = int(round(fraction * g.size))
        k = min(max(k, 1 if g.size > 1 else 0), g.size - 1)
        held.append(rng.permutation(g)[:k])
    held_out = np.sort(np.concatenate(held)).astype(np.int64)
    train = np.setdiff1d(np.arange(len(y)), held_out)
    return train, held_out


class SupervisedFusion(nn.Module):
    """Per-modality encoders, a fusion layer and heads, sklearn-style.

    ``fit(views, y)`` trains (views: list of ``(N, D_m)`` arrays or tensors, rows aligned);
    ``predict(views, mask=None, modality=None)`` gives class labels (or values) from the fusion,
    or from one modality's own head; ``score`` the metrics.
    """

    def __init__(self, config: SupervisedConfig, random_state: int = 0):
        super().__init__()
        self.config = config
        self.random_state = random_state
        self.history: list[dict[str, float]] = []
        self.dims_: list[int] = []

    # ------------------------------------------------------------------ set-up and checks
    def _build(self, dims: Sequence[int]) -> None:
        cfg = self.config
        torch.manual_seed(self.random_state)  # weights initialise from the seed alone
        d = cfg.latent_dim
        self.dims_ = [int(x) for x in dims]
        self.encoders = nn.ModuleList(mlp([D, cfg.hidden or hidden_width(D), d]) for D in dims)
        self.fusion = make_fusion(cfg.fusion, [d] * len(dims), cfg.fusion_dim, rank=cfg.rank)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(self.fusion.out_dim, cfg.n_outputs))
        self.unimodal_heads = nn.ModuleList(mlp([d, cfg.fusion_dim, cfg.n_outputs]) for _ in dims)
        self.to(cfg.device)

    def _names(self, n: int) -> list[str]:
        return modality_names(getattr(self, "modality_names_", None), n)

    def _check_views(
        self, views: Sequence, mask, *, fitted: bool, only: int | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """Views as float tensors (missing rows zero-filled) and the bool mask (N, M), checked
        by :func:`modalign.methods._views.check_views`."""
        if fitted and not self.dims_:
            raise RuntimeError("call fit before predict")
        return check_views(
            views,
            mask,
            device=self.config.device,
            names=self._names(len(views)) if isinstance(views, Sequence) else None,
            dims=self.dims_ if fitted else None,
            only=only,
        )

    def _check_targets(self, y, n: int) -> Tensor:
        cfg = self.config
        t = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
        if t.shape[0] != n:
            raise ValueError(f"y: {t.shape[0]} targets for {n} samples")
        if cfg.task == "classification":
            if t.dim() != 1 or t.is_floating_point() and not bool((t == t.round()).all()):
                raise ValueError("y: classification needs one integer label per sample")
            t = t.long()
            if int(t.min()) < 0 or int(t.max()) >= cfg.n_outputs:
                raise ValueError(
                    f"y: labels must lie in 0..{cfg.n_outputs - 1} (n_outputs), got "
                    f"{int(t.min())}..{int(t.max())}"
                )
        else:
            t = t.to(torch.float32).reshape(n, -1)
            if t.shape[1] != cfg.n_outputs:
                raise ValueError(
                    f"y: expected {cfg.n_outputs} target(s) per sample, got {t.shape[1]}"
                )
            if not bool(torch.isfinite(t).all()):
                raise ValueError("y: NaN or infinite targets")
        return t.to(cfg.device)

    # ------------------------------------------------------------------ model
    def forward(self, views: Sequence[Tensor], mask: Tensor | None = None) -> FusionOutput:
        """Outputs for already-checked views (list of (B, D_m) tensors) and mask (B, M)."""
        codes = [enc(x) for enc, x in zip(self.encoders, views)]
        return self.heads(codes, mask)

    def heads(self, codes: Sequence[Tensor], mask: Tensor | None = None) -> FusionOutput:
        """Fusion head and per-modality heads applied to codes (list of (B, d))."""
        return FusionOutput(
            fused=self.head(self.fusion(list(codes), mask)),
            unimodal=[h(z) for h, z in zip(self.unimodal_heads, codes)],
            codes=list(codes),
        )

    def _criterion(self, out: Tensor, y: Tensor) -> Tensor:
        if self.config.task == "classification":
            return F.cross_entropy(out, y)
        return F.mse_loss(out, y)

    def loss_terms(self, out: FusionOutput, y: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """``(fused loss, mean per-modality loss)``; a modality's head is scored on the rows
        where it is present."""
        fused = self._criterion(out.fused, y)
        unimodal = []
        for m, logits in enumerate(out.unimodal):
            rows = present[:, m]
            if bool(rows.any()):
                unimodal.append(self._criterion(logits[rows], y[rows]))
        return fused, torch.stack(unimodal).mean() if unimodal else fused.new_zeros(())

    # ------------------------------------------------------------------ training
    def fit(
        self,
        views: Sequence,
        y,
        *,
        mask=None,
        validation: tuple[Sequence, object] | tuple[Sequence, object, object] | None = None,
        modality_names: Sequence[str] | None = None,
        checkpoint: str | Path | None = None,
        progress: bool = False,
        stop_after: int | None = None,
    ) -> SupervisedFusion:
        """Train on aligned ``views`` (list of (N, D_m)) and targets ``y`` (N,) or (N, k).

        ``validation``: ``(views, y)`` or ``(views, y, mask)`` for early stopping; without it a
        stratified ``val_fraction`` of the training rows is held out (none when 0: then no early
        stopping). ``checkpoint``: written every epoch, resumed from if present.
        ``stop_after``: end after that many epochs of this call (used to test interruption).
        """
        cfg = self.config
        self.modality_names_ = list(modality_names) if modality_names is not None else None
        xs, present = self._check_views(views, mask, fitted=False)
        target = self._check_targets(y, xs[0].shape[0])
        if cfg.otm and not bool(present.all()):
            raise ValueError(
                "OTM augmentation mixes every modality's codes: train on complete rows "
                "(missing modalities are for evaluation)"
            )
        if validation is not None:
            vx, vp = self._check_views(
                validation[0], validation[2] if len(validation) > 2 else None, fitted=False
            )
            vy = self._check_targets(validation[1], vx[0].shape[0])
            names = self._names(len(xs))
            if len(vx) != len(xs):
                raise ValueError(f"validation: {len(vx)} modalities, training has {len(xs)}")
            for m, (v, x) in enumerate(zip(vx, xs)):
                if v.shape[1] != x.shape[1]:
                    raise ValueError(
                        f"validation {names[m]}: {v.shape[1]} features, training has {x.shape[1]}"
                    )
        elif cfg.val_fraction > 0:
            labels = target.cpu().numpy() if cfg.task == "classification" else None
            tr, va = stratified_holdout(
                labels if labels is not None else np.zeros(len(target)),
                cfg.val_fraction,
                self.random_state,
            )
            tr_t, va_t = torch.from_numpy(tr).to(cfg.device), torch.from_numpy(va).to(cfg.device)
            vx, vp, vy = [x[va_t] for x in xs], present[va_t], target[va_t]
            xs, present, target = [x[tr_t] for x in xs], present[tr_t], target[tr_t]
        else:
            vx = vp = vy = None
        self._build([x.shape[1] for x in xs])
        optimiser = torch.optim.Adam(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def validate() -> float:
            fused, unimodal = self.loss_terms(self(vx, vp), vy, vp)
            return float(fused + cfg.lambda_unimodal * unimodal)

        self.history = train_epochs(
            self,
            optimiser,
            lambda epoch: self._train_epoch(xs, present, target, optimiser, epoch),
            epochs=cfg.epochs,
            settings={**asdict(cfg), "seed": self.random_state, "dims": str(self.dims_)},
            validate=validate if vx is not None else None,
            patience=cfg.patience,
            checkpoint=checkpoint,
            progress=progress,
            desc=f"{cfg.fusion}{'+otm' if cfg.otm else ''} seed {self.random_state}",
            stop_after=stop_after,
            device=cfg.device,
        )
        self.eval()
        return self

    def _train_epoch(self, xs, present, target, optimiser, epoch: int) -> dict[str, float]:
        cfg = self.config
        # Every epoch draws from its own seeded generator, so a resumed run repeats exactly.
        gen = torch.Generator().manual_seed(self.random_state * 100_003 + epoch)
        n = xs[0].shape[0]
        order = torch.randperm(n, generator=gen).to(cfg.device)
        n_batches = max(1, n // cfg.batch_size)
        totals = {"loss": 0.0, "fused": 0.0, "unimodal": 0.0, "mixed": 0.0}
        for b in range(n_batches):
            rows = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            batch, mask, y = [x[rows] for x in xs], present[rows], target[rows]
            out = self(batch, mask)
            fused, unimodal = self.loss_terms(out, y, mask)
            loss = fused + cfg.lambda_unimodal * unimodal
            mixed_loss = torch.zeros(())
            if cfg.otm:
                mixed, _ = ot_mix(out.codes, gen, mixer=cfg.mixer, alpha=cfg.alpha)
                m_fused, m_unimodal = self.loss_terms(self.heads(mixed, mask), y, mask)
                mixed_loss = m_fused + cfg.lambda_unimodal * m_unimodal
                loss = loss + cfg.lambda_mix * mixed_loss
            # Before backward: a NaN never reaches the weights; the error names the term.
            check_finite_loss(
                loss,
                epoch,
                b,
                parts={"fused": fused, "unimodal": unimodal, "mixed": mixed_loss},
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            for key, value in zip(totals, (loss, fused, unimodal, mixed_loss)):
                totals[key] += float(value.detach()) / n_batches
        return totals

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def decision(
        self,
        views: Sequence,
        mask=None,
        *,
        modality: int | None = None,
        single_fallback: bool | None = None,
    ) -> Tensor:
        """Raw outputs (N, n_outputs): logits or values, from the fusion head, or from
        ``modality``'s own head (single-modality inference; the other views are ignored and
        may be anything of the right shape). With ``single_fallback`` (default: the config's),
        rows with one modality present take that modality's head's output."""
        if (
            modality is not None
            and self.dims_
            and not -len(self.dims_) <= modality < len(self.dims_)
        ):
            raise ValueError(
                f"modality must index one of {len(self.dims_)} modalities, got {modality}"
            )
        xs, present = self._check_views(views, mask, fitted=True, only=modality)
        self.eval()
        if modality is None:
            out = self(xs, present)
            fallback = self.config.single_fallback if single_fallback is None else single_fallback
            if not fallback:
                return out.fused
            alone = present.sum(1) == 1
            which = present.long().argmax(1)
            fused = out.fused.clone()
            for m, logits in enumerate(out.unimodal):
                rows = alone & (which == m)
                fused[rows] = logits[rows]
            return fused
        return self.unimodal_heads[modality](self.encoders[modality](xs[modality]))

    def predict(
        self,
        views: Sequence,
        mask=None,
        *,
        modality: int | None = None,
        single_fallback: bool | None = None,
    ) -> np.ndarray:
        """Class labels (N,) or values (N, k) as a numpy array (see :meth:`decision`)."""
        out = self.decision(views, mask, modality=modality, single_fallback=single_fallback)
        if self.config.task == "classification":
            return out.argmax(1).cpu().numpy()
        return out.cpu().numpy()

    def score(
        self,
        views: Sequence,
        y,
        mask=None,
        *,
        modality: int | None = None,
        single_fallback: bool | None = None,
    ) -> dict:
        """Accuracy and macro F1 (classification) or MAE and Pearson correlation (regression,
        over all targets flattened); arguments as in :meth:`decision`."""
        pred = self.predict(views, mask, modality=modality, single_fallback=single_fallback)
        truth = np.asarray(y.cpu() if isinstance(y, Tensor) else y)
        if self.config.task == "classification":
            return classification_scores(truth, pred)
        return regression_scores(truth.reshape(-1), pred.reshape(-1))
