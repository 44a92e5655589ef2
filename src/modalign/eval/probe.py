"""Probes: the classifiers that judge a frozen representation (DESIGN.md section 3).

A probe is trained on the representations of the training split, early-stopped on the
validation split's cross-entropy (never on test labels), and restored to its best validation
epoch. Two kinds:

* ``"mlp"``: GMC's downstream head, ``d -> 256 -> 128 -> K`` with ReLU;
* ``"linear"``: ``d -> K``;
* ``"encoder"``: a view's own encoder, :func:`~modalign.nn.modality_encoder` (a conv net for
  28 x 28 images and log-mel frames, given the view's kind and row shape; an MLP otherwise),
  then ReLU and a linear layer to ``K``: a classifier of raw modality data rather than of a
  representation (``modalign generate`` judges generated modalities with it).

Inputs are standardised with the training representations' per-feature mean and standard
deviation (label-free, from the training split only), so one learning rate suits
representations of any scale (unit-norm embeddings, autoencoder codes, z-scored features).
The ``"encoder"`` kind uses one mean and one standard deviation over all features instead:
per-pixel scaling would blow up rarely inked pixels and distort the image a conv net sees.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modalign.nn.encoders import modality_encoder
from modalign.nn.mlp import hidden_width, mlp
from modalign.train import train_epochs
from modalign.utils import check_device

__all__ = ["KINDS", "PROBES", "Probe", "ProbeConfig"]

#: The probes of representations (``modalign represent`` runs each).
PROBES = ("mlp", "linear")
#: Every kind a :class:`ProbeConfig` accepts: the probes and the raw-modality classifier.
KINDS = (*PROBES, "encoder")


@dataclass
class ProbeConfig:
    """Settings of :class:`Probe`: ``kind`` (one of :data:`KINDS`), at most ``epochs``
    epochs of Adam (``lr``, ``weight_decay``) over batches of ``batch_size``, stopping after
    ``patience`` epochs without a better validation loss."""

    kind: str = "mlp"
    hidden: tuple[int, ...] = (256, 128)
    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"probe kind must be one of {KINDS}, got {self.kind!r}")
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 1:
            raise ValueError("epochs and patience must be >= 1 and batch_size >= 2")
        check_device(self.device)


def _as_matrix(z, what: str, device: str) -> Tensor:
    t = torch.as_tensor(np.asarray(z) if not isinstance(z, Tensor) else z)
    if t.dim() != 2 or t.shape[0] == 0:
        raise ValueError(f"{what}: expected an (N, d) array, got shape {tuple(t.shape)}")
    t = t.detach().to(device, torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what}: NaN or infinite values")
    return t


class Probe(nn.Module):
    """A classifier of frozen representations, sklearn-style: ``fit(z, y, z_val, y_val)``,
    ``predict(z)``."""

    def __init__(self, config: ProbeConfig | None = None, random_state: int = 0):
        super().__init__()
        self.config = config or ProbeConfig()
        self.random_state = random_state

    def fit(
        self,
        z,
        y,
        z_val,
        y_val,
        n_classes: int | None = None,
        *,
        view_kind: str = "features",
        shape: tuple[int, ...] | None = None,
    ) -> Probe:
        """Train on ``z`` (N, d) with labels ``y`` (N,) in 0..K-1; early-stop on the
        validation pair. ``n_classes``: K (default: one more than the largest label seen).
        ``view_kind`` / ``shape``: the view's kind and row shape, which choose the network of
        the ``"encoder"`` kind (ignored by the others)."""
        cfg = self.config
        x, xv = _as_matrix(z, "z", cfg.device), _as_matrix(z_val, "z_val", cfg.device)
        if x.shape[0] < 2:
            raise ValueError(f"z: a probe needs at least 2 training rows, got {x.shape[0]}")
        if xv.shape[1] != x.shape[1]:
            raise ValueError(f"z_val has {xv.shape[1]} features, z has {x.shape[1]}")
        t = torch.as_tensor(np.asarray(y)).long().to(cfg.device).reshape(-1)
        tv = torch.as_tensor(np.asarray(y_val)).long().to(cfg.device).reshape(-1)
        if t.shape[0] != x.shape[0] or tv.shape[0] != xv.shape[0]:
            raise ValueError(
                f"labels: {t.shape[0]} and {tv.shape[0]} for {x.shape[0]} and {xv.shape[0]} rows"
            )
        k = int(n_classes) if n_classes is not None else int(max(t.max(), tv.max())) + 1
        torch.manual_seed(self.random_state)
        whole = cfg.kind == "encoder"
        mean = x.mean().expand(x.shape[1]) if whole else x.mean(0)
        std = x.std().expand(x.shape[1]) if whole else x.std(0)
        self.register_buffer("mean_", mean.clone())
        # A constant feature keeps scale 1 rather than dividing by zero.
        self.register_buffer("scale_", torch.where(std > 1e-8, std, torch.ones_like(std)))
        if whole:
            width = hidden_width(x.shape[1])
            self.net = nn.Sequential(
                modality_encoder(x.shape[1], width, kind=view_kind, shape=shape),
                nn.ReLU(),
                nn.Linear(width, k),
            ).to(cfg.device)
        else:
            sizes = [x.shape[1], *cfg.hidden, k] if cfg.kind == "mlp" else [x.shape[1], k]
            self.net = mlp(sizes).to(cfg.device)
        optimiser = torch.optim.Adam(
            self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )

        def run_epoch(epoch: int) -> dict[str, float]:
            gen = torch.Generator().manual_seed(self.random_state * 100_003 + epoch)
            order = torch.randperm(x.shape[0], generator=gen).to(cfg.device)
            total, n_batches = 0.0, max(1, x.shape[0] // cfg.batch_size)
            for b in range(n_batches):
                rows = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                loss = F.cross_entropy(self(x[rows]), t[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) / n_batches
            return {"loss": total}

        self.history = train_epochs(
            self,
            optimiser,
            run_epoch,
            epochs=cfg.epochs,
            settings={**asdict(cfg), "seed": self.random_state},
            validate=lambda: float(F.cross_entropy(self(xv), tv)),
            patience=cfg.patience,
            device=cfg.device,
        )
        self.eval()
        return self

    def forward(self, z: Tensor) -> Tensor:
        return self.net((z - self.mean_) / self.scale_)

    @torch.no_grad()
    def predict(self, z) -> np.ndarray:
        """Class labels ``(N,)`` of representations ``z`` ``(N, d)``."""
        if not hasattr(self, "net"):
            raise RuntimeError("call fit before predict")
        x = _as_matrix(z, "z", self.config.device)
        if x.shape[1] != self.mean_.shape[0]:
            raise ValueError(
                f"z has {x.shape[1]} features, the probe was fit on {self.mean_.shape[0]}"
            )
        return self(x).argmax(1).cpu().numpy()
