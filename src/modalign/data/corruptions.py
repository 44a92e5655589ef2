"""The robustness protocol: unaligned rows, missing modalities and noise.

Every function returns a new :class:`MultiViewDataset` (the input is never modified), is
deterministic given ``seed`` (NumPy ``default_rng``), and composes with the others, e.g.
``add_noise(drop_modalities(unalign(ds, 0.5, seed=0), 0.25, seed=1), 0.5, seed=2)``.

Token views ``(N, T, d)`` (see :class:`~modalign.data.MultiViewDataset`) are handled by all
three: ``unalign`` moves each row's token mask with the row, ``drop_modalities`` acts on the
missing-view mask alone (a missing row is zeroed; its token mask is kept), and ``add_noise``
corrupts real tokens only; padded tokens stay zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from modalign.data.dataset import MultiViewDataset
from modalign.data.errors import DataError

__all__ = ["NoiseKind", "add_noise", "drop_modalities", "unalign"]

NoiseKind = Literal["auto", "gaussian", "image", "audio"]


def _check_rate(rate: float, name: str = "rate") -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise DataError(f"{name} must lie in [0, 1], got {rate}")
    return rate


def _view_indices(ds: MultiViewDataset, views: Sequence[int | str] | None) -> list[int]:
    if views is None:
        return list(range(ds.n_views))
    idx = [ds.view_index(v) for v in views]
    if len(set(idx)) != len(idx):
        raise DataError(f"{ds.source}: a view is listed twice in {list(views)}")
    return idx


def _zero_missing(ds: MultiViewDataset, views: list[Tensor]) -> list[Tensor]:
    """Missing rows set to zero, and padded tokens of token views set to zero."""
    out = []
    for v, x in enumerate(views):
        observed = ds.row_mask(v)
        keep = observed.reshape(-1, *([1] * (x.ndim - 1)))
        if x.ndim == 3 and ds.token_masks[v] is not None:
            keep = keep & ds.token_masks[v][..., None]
        out.append(x if bool(keep.all()) else x * keep.to(x.dtype))
    return out


def unalign(ds: MultiViewDataset, rate: float, seed: int = 0) -> MultiViewDataset:
    """Break the row correspondence of a fraction ``rate`` of the rows.

    ``round(rate * N)`` row positions are drawn once; within them, every view's rows are permuted
    independently (rate 1: no known correspondence at all; a few rows may still match by chance).
    The permuted positions are marked not ``paired``; the per-view identities (``ds.ids``) follow
    the rows, so the truth stays available for evaluation, and labels and missing-view mask, being
    indexed by identity, are unaffected. The token mask of a token view moves with its rows.
    Needs views with equal row counts.
    """
    rate = _check_rate(rate)
    n = ds.n_rows
    rng = np.random.default_rng(seed)
    k = int(round(rate * n))
    chosen = np.sort(rng.choice(n, size=k, replace=False))
    views, ids, token_masks = [], [], []
    for x, idv, tm in zip(ds.views, ds.ids, ds.token_masks, strict=True):
        rows = np.arange(n)
        rows[chosen] = chosen[rng.permutation(k)]
        r = torch.from_numpy(rows).to(x.device)
        views.append(x[r])
        ids.append(idv[r])
        token_masks.append(None if tm is None else tm[r])
    shuffled = torch.zeros(n, dtype=torch.bool, device=ds.device)
    shuffled[torch.from_numpy(chosen).to(ds.device)] = True
    assert ds.paired is not None  # equal row counts, checked by n_rows
    return ds._copy(views=views, ids=ids, paired=ds.paired & ~shuffled, token_masks=token_masks)


def drop_modalities(
    ds: MultiViewDataset,
    rate: float,
    seed: int = 0,
    *,
    views: Sequence[int | str] | None = None,
) -> MultiViewDataset:
    """Mark a fraction ``rate`` of the observed (sample, view) entries as missing.

    Exactly ``round(rate * E)`` entries become missing, where ``E`` counts the observed entries
    of the selected ``views`` (default: all), drawn uniformly among the entries that may go:
    every sample keeps at least one observed view (for a sample observed only in selected views,
    one of them, chosen at random, is protected). Missing rows are zeroed so that no model can
    read them (all tokens of a token view's row; its token mask is left as it was: whether a
    row is observed is the missing-view mask's business alone). With all of ``V`` views
    selected the largest possible rate is about ``(V-1)/V``; to make one modality missing for
    75 % of the samples pass ``views=[name]``.

    Raises:
        DataError: if ``rate`` cannot be reached while keeping one view per sample.
    """
    rate = _check_rate(rate)
    sel = _view_indices(ds, views)
    rng = np.random.default_rng(seed)
    mask = ds.mask.cpu().numpy().copy()
    cand = mask[:, sel]
    others = np.delete(mask, sel, axis=1).any(axis=1)
    needs_guard = ~others & cand.any(axis=1)
    scores = np.where(cand, rng.random(cand.shape), -1.0)
    guard = np.zeros_like(cand)
    guard[np.flatnonzero(needs_guard), scores[needs_guard].argmax(axis=1)] = True
    droppable = np.flatnonzero(cand & ~guard)
    k = int(round(rate * cand.sum()))
    if k > droppable.size:
        names = [ds.names[v] for v in sel]
        raise DataError(
            f"{ds.source}: cannot mark {rate:.0%} of the entries of views {names} missing while "
            f"keeping one view per sample: at most {droppable.size / max(cand.sum(), 1):.1%} can "
            "go (select fewer views with views=[...] for a per-modality rate)"
        )
    drop = np.zeros(cand.size, dtype=bool)
    drop[rng.choice(droppable, size=k, replace=False)] = True
    cand = cand & ~drop.reshape(cand.shape)
    mask[:, sel] = cand
    new = ds._copy(mask=torch.from_numpy(mask).to(ds.device))
    return new._copy(views=_zero_missing(new, new.views))


def _box_blur(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    h, w = shape[-2], shape[-1]
    imgs = x.reshape(-1, 1, h, w)
    # count_include_pad=False keeps border pixels an average of real neighbours only.
    blurred = F.avg_pool2d(imgs, 3, stride=1, padding=1, count_include_pad=False)
    return blurred.reshape(x.shape)


def _gaussian_noise(x: Tensor, obs: Tensor, level: float, rng: np.random.Generator) -> Tensor:
    std = x[obs].to(torch.float64).std(dim=0, correction=0).to(x.dtype) if obs.any() else 0
    eps = torch.from_numpy(rng.standard_normal(tuple(x.shape))).to(x)
    return x + level * std * eps


def _image_noise(
    x: Tensor, obs: Tensor, level: float, rng: np.random.Generator, shape: tuple[int, ...] | None
) -> Tensor:
    lo, hi = (float(x[obs].min()), float(x[obs].max())) if obs.any() else (0.0, 1.0)
    span = hi - lo
    if shape is not None and len(shape) >= 2:
        weight = min(level, 1.0)
        x = (1.0 - weight) * x + weight * _box_blur(x, shape)
    x = x + torch.from_numpy(rng.normal(0.0, 0.25 * level * span, tuple(x.shape))).to(x)
    u = torch.from_numpy(rng.random(tuple(x.shape))).to(x.device)
    p = min(level, 1.0) / 10.0
    x = torch.where(u < p / 2, torch.full_like(x, lo), x)
    x = torch.where((u >= p / 2) & (u < p), torch.full_like(x, hi), x)
    return x.clamp(lo, hi)


def _token_gaussian_noise(
    x: Tensor, real: Tensor, level: float, rng: np.random.Generator
) -> Tensor:
    """``x + level * std_j * N(0, 1)`` on the real tokens ``real`` ``(N, T)`` of observed rows,
    ``std_j`` the spread of feature ``j`` over those tokens."""
    sub = x[real].to(torch.float64)
    std = sub.std(dim=0, correction=0).to(x.dtype) if sub.shape[0] else 0
    eps = torch.from_numpy(rng.standard_normal(tuple(x.shape))).to(x)
    return x + level * std * eps


def _token_audio_noise(x: Tensor, real: Tensor, level: float, rng: np.random.Generator) -> Tensor:
    """Audio noise on frame tokens: white noise of ``level`` times the spread of the real
    tokens' values, then per row a block of ``round(level * n / 2)`` consecutive real frames
    (``n`` the row's real-frame count) set to the real tokens' minimum."""
    sub = x[real].to(torch.float64)
    spread = float(sub.std(correction=0)) if sub.numel() else 0.0
    floor = float(sub.min()) if sub.numel() else 0.0
    x = x + torch.from_numpy(rng.normal(0.0, level * spread, tuple(x.shape))).to(x)
    n_real = real.sum(dim=1).cpu().numpy()
    width = np.minimum(np.round(0.5 * level * n_real).astype(np.int64), n_real)
    # One draw per row, in [0, n - width]; rows of a right-padded view keep their real frames
    # first, so the block lies inside them.
    start = np.floor(rng.random(x.shape[0]) * (n_real - width + 1)).astype(np.int64)
    t = torch.arange(x.shape[1])
    s, w = torch.from_numpy(start), torch.from_numpy(width)
    hit = (t[None, :] >= s[:, None]) & (t[None, :] < (s + w)[:, None])
    hit = hit.to(x.device) & real
    return torch.where(hit[..., None], torch.full_like(x, floor), x)


def _audio_noise(
    x: Tensor, obs: Tensor, level: float, rng: np.random.Generator, shape: tuple[int, ...] | None
) -> Tensor:
    sub = x[obs].to(torch.float64)
    spread = float(sub.std(correction=0)) if sub.numel() else 0.0
    floor = float(sub.min()) if sub.numel() else 0.0
    x = x + torch.from_numpy(rng.normal(0.0, level * spread, tuple(x.shape))).to(x)
    if shape is not None and len(shape) >= 2:
        frames = shape[-1]
        width = min(int(round(0.5 * level * frames)), frames)
        if width > 0:
            start = torch.from_numpy(rng.integers(0, frames - width + 1, size=x.shape[0]))
            t = torch.arange(frames)
            hit = (t[None, :] >= start[:, None]) & (t[None, :] < start[:, None] + width)
            # Frames are the last axis of each row's (bands, frames) layout.
            hit = hit[:, None, :].expand(x.shape[0], int(np.prod(shape[:-1])), frames)
            x = torch.where(hit.reshape(x.shape).to(x.device), torch.full_like(x, floor), x)
    return x


def add_noise(
    ds: MultiViewDataset,
    level: float,
    views: Sequence[int | str] | None = None,
    seed: int = 0,
    *,
    kind: NoiseKind = "auto",
) -> MultiViewDataset:
    """Corrupt views with noise whose strength grows with ``level`` (0: no change).

    Noise by view kind (``kind="auto"`` uses ``ds.kinds``; any other value forces one kind):

    * ``gaussian`` (feature views): ``x + level * std_j * N(0, 1)``, ``std_j`` the spread of
      feature ``j`` over the observed rows;
    * ``image``: with ``r`` the view's value range ``[lo, hi]``: a 3x3 box blur mixed in with
      weight ``min(level, 1)`` (when the row shape is known), Gaussian pixel noise of standard
      deviation ``0.25 * level * r``, salt-and-pepper on a fraction ``min(level, 1) / 10`` of the
      pixels, then clipping to ``[lo, hi]``;
    * ``audio``: additive white noise of standard deviation ``level`` times the view's overall
      spread, and time masking: a random block of ``round(level * T / 2)`` consecutive frames of
      each row (``T`` the last axis of the row shape) set to the view's minimum (silence in
      log-mel features).

    Token views ``(N, T, d)`` are corrupted on their real tokens only (padded tokens stay zero),
    with statistics over the real tokens of the observed rows:

    * ``gaussian`` and ``image``: ``x + level * std_j * N(0, 1)``, ``std_j`` the spread of token
      feature ``j``. An image token view holds patches, not an image row, so the blur,
      salt-and-pepper and clipping of 2-D image views do not apply: it gets this Gaussian noise;
    * ``audio`` (frame tokens): white noise of standard deviation ``level`` times the real
      tokens' overall spread, and time masking: a random block of ``round(level * n / 2)``
      consecutive real frames of each row (``n`` its number of real frames) set to the real
      tokens' minimum.

    Each view draws from its own generator seeded with ``(seed, view index)``, so a view's noise
    does not depend on which other views are corrupted. Missing rows stay zero.
    """
    level = float(level)
    if not np.isfinite(level) or level < 0:
        raise DataError(f"noise level must be a finite number >= 0, got {level}")
    if kind not in ("auto", "gaussian", "image", "audio"):
        raise DataError(f"noise kind must be auto, gaussian, image or audio, got {kind!r}")
    sel = _view_indices(ds, views)
    out = list(ds.views)
    for v in sel:
        x, obs = ds.views[v], ds.row_mask(v)
        rng = np.random.default_rng([seed, v])
        k = (
            kind
            if kind != "auto"
            else {"image": "image", "audio": "audio"}.get(ds.kinds[v], "gaussian")
        )
        tm = ds.token_masks[v]
        if x.ndim == 3:
            real = obs[:, None] & (
                tm if tm is not None else torch.ones(x.shape[:2], dtype=torch.bool)
            ).to(x.device)
            if k == "audio":
                out[v] = _token_audio_noise(x, real, level, rng)
            else:
                out[v] = _token_gaussian_noise(x, real, level, rng)
        elif k == "gaussian":
            out[v] = _gaussian_noise(x, obs, level, rng)
        elif k == "image":
            out[v] = _image_noise(x, obs, level, rng, ds.shapes[v])
        else:
            out[v] = _audio_noise(x, obs, level, rng, ds.shapes[v])
    return ds._copy(views=_zero_missing(ds, out))
