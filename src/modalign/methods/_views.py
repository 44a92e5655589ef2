"""Shared by the methods that take aligned views and a mask of present modalities: input checks
and the fit plumbing around :func:`modalign.train.train_epochs`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor


def modality_names(names: Sequence[str] | None, n: int) -> list[str]:
    """``names`` when they name ``n`` modalities, else ``modality 0``, ``modality 1``, ..."""
    return (
        list(names)
        if names is not None and len(names) == n
        else [f"modality {m}" for m in range(n)]
    )


def check_views(
    views: Sequence,
    mask,
    *,
    device: str | torch.device,
    names: Sequence[str] | None = None,
    dims: Sequence[int] | None = None,
    min_views: int = 2,
    only: int | None = None,
) -> tuple[list[Tensor], Tensor]:
    """Aligned views as float32 tensors on ``device`` (missing rows zero-filled) and the bool
    mask ``(N, M)`` of present modalities.

    Args:
        views: one ``(N, D_m)`` array or tensor per modality, row ``i`` the same sample in all.
        mask: ``(N, M)`` 0/1 or bool, 1 where the modality is present; None: all present.
        names: the modalities' names for the messages.
        dims: the feature counts the model was trained on (None before fitting: then at least
            ``min_views`` modalities are required).
        only: the one modality that will be used; the others' values are not checked.

    Raises:
        ValueError: one line naming the modality and what is wrong.
    """
    if isinstance(views, (Tensor, np.ndarray)) or not isinstance(views, Sequence):
        raise ValueError("views must be a list with one (N, D_m) array per modality")
    names = modality_names(names, len(views))
    if dims is not None:
        if len(views) != len(dims):
            raise ValueError(f"the model was trained on {len(dims)} modalities, got {len(views)}")
    elif len(views) < min_views:
        raise ValueError(f"this method needs at least {min_views} modalities, got {len(views)}")
    out = []
    for m, v in enumerate(views):
        t = torch.as_tensor(np.asarray(v) if not isinstance(v, Tensor) else v)
        if t.dim() != 2:
            raise ValueError(f"{names[m]}: expected an (N, D) array, got shape {tuple(t.shape)}")
        if dims is not None and t.shape[1] != dims[m]:
            raise ValueError(
                f"{names[m]}: the model was trained on {dims[m]} features, got {t.shape[1]}"
            )
        out.append(t.to(device, torch.float32))
    if len({t.shape[0] for t in out}) != 1:
        raise ValueError(
            f"modalities must have one row per sample; got row counts "
            f"{dict(zip(names, [t.shape[0] for t in out]))}"
        )
    rows = out[0].shape[0]
    if mask is None:
        present = torch.ones(rows, len(out), dtype=torch.bool, device=device)
    else:
        present = torch.as_tensor(mask).to(device)
        if tuple(present.shape) != (rows, len(out)):
            raise ValueError(
                f"mask: expected shape ({rows}, {len(out)}), got {tuple(present.shape)}"
            )
        if present.dtype != torch.bool and not bool(((present == 0) | (present == 1)).all()):
            raise ValueError("mask: values must be 0 or 1 (1 = modality present)")
        present = present.bool()
    for m, t in enumerate(out):
        if only is not None and m != only % len(out):
            continue
        if not bool(torch.isfinite(t[present[:, m]]).all()):
            raise ValueError(f"{names[m]}: NaN or infinite values in present rows")
    # Missing rows are replaced before any encoder sees them, so they cost nothing downstream
    # and their encoder receives exactly zero gradient from them.
    out = [torch.where(present[:, m : m + 1], t, torch.zeros_like(t)) for m, t in enumerate(out)]
    return out, present


def dataset_inputs(
    model_name: str,
    views,
    mask,
    *,
    device: str | torch.device,
    dims: Sequence[int] | None,
    kinds: Sequence[str] | None = None,
    shapes: Sequence | None = None,
    names: Sequence[str] | None = None,
) -> tuple[list[Tensor], Tensor, list[str], list, list[str]]:
    """``(views, mask, kinds, shapes, names)`` for a method that takes a
    :class:`~modalign.data.MultiViewDataset` (which carries its mask, kinds, shapes and names)
    or a list of aligned arrays with those given separately; checked by :func:`check_views`.

    ``dims``: the feature counts the fitted model expects (None before fitting)."""
    from modalign.data import MultiViewDataset

    if isinstance(views, MultiViewDataset):
        if not views.is_aligned:
            raise ValueError(f"{views.source}: {model_name} needs aligned views (row i = sample i)")
        ds = views
        views, mask = list(ds.views), ds.mask if mask is None else mask
        kinds, shapes, names = ds.kinds, ds.shapes, ds.names
    names = modality_names(names, len(views) if isinstance(views, Sequence) else 0)
    xs, present = check_views(views, mask, device=device, names=names, dims=dims)
    kinds = list(kinds) if kinds is not None else ["features"] * len(xs)
    shapes = list(shapes) if shapes is not None else [None] * len(xs)
    if len(kinds) != len(xs) or len(shapes) != len(xs):
        raise ValueError(f"kinds and shapes need one entry per modality ({len(xs)})")
    return xs, present, kinds, shapes, names


def fit_epochs(
    model: torch.nn.Module,
    run_epoch: Callable[[int, torch.optim.Optimizer], dict[str, float]],
    *,
    settings: Mapping[str, Any],
    validate: Callable[[], float] | None,
    checkpoint: str | Path | None,
    progress: bool,
    stop_after: int | None,
    desc: str,
) -> list[dict[str, float]]:
    """Train ``model`` with Adam (``config.lr``, ``config.weight_decay``) for ``config.epochs``
    through :func:`~modalign.train.train_epochs` (early stopping with ``config.patience`` when
    ``validate`` is given), then put it in eval mode; return the history.

    ``model`` has ``config`` (a dataclass with those fields and ``device``), ``random_state``
    and ``dims_``, ``kinds_``, ``shapes_`` once built; the checkpoint's settings are the full
    config, the seed, the built shapes and ``settings``. ``run_epoch(epoch, optimiser)``
    trains one epoch.
    """
    from modalign.train import train_epochs

    cfg = model.config
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = train_epochs(
        model,
        optimiser,
        lambda epoch: run_epoch(epoch, optimiser),
        epochs=cfg.epochs,
        settings={
            **asdict(cfg),
            "seed": model.random_state,
            "dims": str(model.dims_),
            "kinds": str(model.kinds_),
            "shapes": str(model.shapes_),
            **settings,
        },
        validate=validate,
        patience=cfg.patience,
        checkpoint=checkpoint,
        progress=progress,
        desc=desc,
        stop_after=stop_after,
        device=cfg.device,
    )
    model.eval()
    return history
