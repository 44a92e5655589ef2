"""The multi-view container shared by every loader, corruption and method.

A :class:`MultiViewDataset` holds ``V >= 1`` views. View ``v`` is a dense float tensor of shape
``(N_v, D_v)`` whose row ``r`` observes the sample with identity ``ids[v][r]`` (an integer in
``[0, n_samples)``). Labels, when known, are indexed by sample identity, and ``mask[i, v]`` says
whether sample ``i`` is observed in view ``v``. This one representation covers:

* aligned data: every view has the same rows in the same order (``ids[v] == arange(N)``);
* unaligned data: rows of different views are not in correspondence; the identities are the hidden
  truth kept for evaluation, and ``paired`` tells which row positions are *known* correspondences
  (the only pairing information a method may use);
* missing modalities: ``mask[i, v] = False``; the row is kept (zeroed by
  :func:`~modalign.data.drop_modalities`) so that batches stay rectangular.

A view may also be a *token view*: a ``(N_v, T_v, d_v)`` tensor, each row a sequence of ``T_v``
tokens of width ``d_v`` (image patches, audio frames), with a ``(N_v, T_v)`` bool *token mask*
``token_masks[v]`` (True = a real token, False = padding; variable-length rows are right-padded).
Padded token values are zeroed on construction and stay zero through every corruption and
preprocessing step, so nothing downstream can read them. ``token_masks[v]`` is None for the usual
2-D views; :meth:`MultiViewDataset.is_tokens` tells which views hold tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from modalign.data.errors import DataError

__all__ = [
    "ViewKind",
    "MultiViewBatch",
    "MultiViewDataset",
    "as_dense_array",
    "constant_columns",
]

ViewKind = Literal["features", "image", "audio"]
_KINDS = ("features", "image", "audio")


def as_dense_array(x: Any, *, what: str) -> np.ndarray:
    """Return ``x`` (array, tensor or scipy sparse matrix of any numeric dtype) as a dense ndarray.

    ``what`` names the input in error messages (e.g. ``"view 'bbc' in 3-sources.mat"``).
    """
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    if sp.issparse(x):
        x = x.toarray()
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise DataError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise DataError(f"{what}: complex values are not supported")
    return arr


def constant_columns(x: Tensor) -> Tensor:
    """``(D,)`` bool: which columns of a ``(K, D)`` matrix have no spread over its rows.

    Column ``j`` is constant when its population standard deviation (in float64) is at most
    ``rtol * max_i |x_ij|``, with ``rtol = max(1e-12, 16 * eps)`` for the machine epsilon of
    ``x``'s dtype (``1e-12`` in float64, about ``2e-6`` in float32). Relative to the column's own
    magnitude, so that a column of tiny but varying values (``1e-6 * N(0, 1)``) is not constant;
    with a dtype-sized slack, so that values equal up to the rounding of the dtype they are
    stored in are (rows that are multiples of one vector, once L2-normalised in float32, differ
    in their last bits). An all-zero column is constant.
    """
    rtol = max(1e-12, 16 * torch.finfo(x.dtype).eps) if x.is_floating_point() else 1e-12
    x = x.to(torch.float64)
    return x.std(dim=0, correction=0) <= rtol * x.abs().amax(dim=0)


def _check_finite(x: Tensor, what: str) -> None:
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        count = int(bad.sum())
        pos = [int(i) for i in bad.nonzero()[0]]
        where = (
            f"row {pos[0]}, token {pos[1]}, column {pos[2]}"
            if len(pos) == 3
            else f"row {pos[0]}, column {pos[1]}"
        )
        kind = " on real tokens" if len(pos) == 3 else ""
        raise DataError(
            f"{what}: {count} NaN or inf value(s){kind} (first at {where}); "
            "remove or impute them before loading"
        )


def _as_token_mask(m: Any, n: int, t: int, what: str) -> Tensor:
    """A ``(n, t)`` bool tensor from a bool or 0/1 array; DataError otherwise."""
    arr = as_dense_array(m, what=what)
    if arr.shape != (n, t):
        raise DataError(f"{what}: expected shape ({n}, {t}) (rows, tokens), got {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.all((arr == 0) | (arr == 1)):
            raise DataError(f"{what}: a token mask must be bool (or 0/1), True = real token")
        arr = arr != 0
    return torch.from_numpy(np.ascontiguousarray(arr))


def _zero_padding(x: Tensor, token_mask: Tensor | None) -> Tensor:
    """``x`` with the values of padded tokens set to 0 (NaN / inf there included)."""
    if token_mask is None or bool(token_mask.all()):
        return x
    return torch.where(token_mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))


@dataclass
class MultiViewBatch:
    """A batch of rows: the same row positions taken from every view.

    Attributes:
        views: ``V`` tensors of shape ``(B, D_v)``, or ``(B, T_v, d_v)`` for token views.
        mask: ``(B, V)`` bool, False where that view of the row's sample is missing.
        labels: ``(B, V)`` long, the label of each view's row (``-1`` when labels are unknown);
            the columns agree when the dataset is aligned.
        index: ``(B,)`` long, the row positions in the dataset.
        token_masks: per view a ``(B, T_v)`` bool token mask (True = real token) for token
            views, None for 2-D views (default: None for every view).
    """

    views: list[Tensor]
    mask: Tensor
    labels: Tensor
    index: Tensor
    token_masks: list[Tensor | None] | None = None

    def __post_init__(self) -> None:
        if self.token_masks is None:
            self.token_masks = [None] * len(self.views)

    def to(self, device: torch.device | str) -> MultiViewBatch:
        """Return the batch with every tensor moved to ``device``."""
        return MultiViewBatch(
            views=[x.to(device) for x in self.views],
            mask=self.mask.to(device),
            labels=self.labels.to(device),
            index=self.index.to(device),
            token_masks=[None if m is None else m.to(device) for m in self.token_masks or []],
        )

    @property
    def y(self) -> Tensor:
        """``(B,)`` labels of the rows; only defined when every view's row has the same label."""
        if self.labels.shape[1] > 1 and not bool((self.labels == self.labels[:, :1]).all()):
            raise DataError(
                "the rows of this batch have different labels in different views (unaligned data); "
                "use batch.labels[:, v] for view v"
            )
        return self.labels[:, 0]

    def __len__(self) -> int:
        return int(self.index.shape[0])


def _collate_prebatched(batch: MultiViewBatch) -> MultiViewBatch:
    # The DataLoader built by MultiViewDataset.dataloader() fetches whole batches at once.
    return batch


class _BatchFetcher(Dataset):
    """Adapter so that a DataLoader with a BatchSampler fetches a batch with one indexing op."""

    def __init__(self, ds: MultiViewDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, rows: list[int]) -> MultiViewBatch:
        return self.ds.batch(rows)


class MultiViewDataset(Dataset):
    """Views of shape ``(N_v, D_v)``, per-row sample identities, labels and a missing-view mask.

    Args:
        views: ``V >= 1`` arrays of shape ``(N_v, D_v)``: tensors, ndarrays or scipy sparse
            matrices of any numeric dtype (stored dense, as ``dtype``); or token views
            ``(N_v, T_v, d_v)`` (tensors or ndarrays): ``T_v`` tokens of width ``d_v`` per row.
        labels: ``(n_samples,)`` non-negative integer labels indexed by sample identity, or None.
        names: one name per view (default ``view0``, ``view1``, ...), used in every error message.
        ids: per view, the ``(N_v,)`` sample identity of each row (distinct within a view). When
            omitted, rows are *claimed aligned*: row ``r`` of every view is sample ``r``, and views
            must have the same number of rows.
        mask: ``(n_samples, V)`` bool, True where the view of that sample is observed. Defaults to
            True wherever a row exists.
        paired: ``(N,)`` bool over row positions (views with equal row counts only): the rows
            whose cross-view correspondence is known and may be used by a method. Defaults to the
            rows where every view has the same identity.
        kinds: per view ``"features"``, ``"image"`` or ``"audio"`` (chooses the noise of
            :func:`~modalign.data.add_noise`).
        shapes: per view the shape of one row before flattening (e.g. ``(28, 28)``), or None;
            for a token view, the shape of one token (its product is ``d_v``), or None.
        token_masks: one entry per view: for a token view a ``(N_v, T_v)`` bool (or 0/1) array,
            True where the token is real and False where it is padding, or None (every token
            real); None for every 2-D view. Omitted: every token of every token view is real.
            Padded token values are zeroed (whatever they were, NaN included); every observed
            row of a token view must have at least one real token.
        n_samples: number of sample identities; defaults to ``len(labels)`` or ``max(ids) + 1``.
        source: where the data came from (file or dataset name), quoted in error messages.
        dtype: floating dtype of the stored views.

    Raises:
        DataError: on inconsistent shapes, NaN/inf values (on real tokens), bad labels, bad
            identities or bad token masks.
    """

    def __init__(
        self,
        views: Sequence[Any],
        labels: Any | None = None,
        *,
        names: Sequence[str] | None = None,
        ids: Sequence[Any] | None = None,
        mask: Any | None = None,
        paired: Any | None = None,
        kinds: Sequence[str] | None = None,
        shapes: Sequence[tuple[int, ...] | None] | None = None,
        n_samples: int | None = None,
        source: str = "<memory>",
        dtype: torch.dtype = torch.float32,
        token_masks: Sequence[Any | None] | None = None,
    ) -> None:
        self.source = str(source)
        if isinstance(views, (np.ndarray, Tensor)) or sp.issparse(views):
            raise DataError(f"{self.source}: views must be a list of 2-D arrays, one per view")
        n_views = len(views)
        if n_views == 0:
            raise DataError(f"{self.source}: a dataset needs at least one view")
        if not dtype.is_floating_point:
            raise DataError(f"{self.source}: dtype must be a floating dtype, got {dtype}")

        self.names: list[str] = (
            [f"view{v}" for v in range(n_views)] if names is None else [str(n) for n in names]
        )
        if len(self.names) != n_views:
            raise DataError(f"{self.source}: {len(self.names)} names for {n_views} views")
        if len(set(self.names)) != n_views:
            raise DataError(f"{self.source}: view names must be distinct, got {self.names}")

        if token_masks is not None and len(token_masks) != n_views:
            raise DataError(f"{self.source}: {len(token_masks)} token masks for {n_views} views")
        self.views: list[Tensor] = []
        self.token_masks: list[Tensor | None] = []
        for v, (name, x) in enumerate(zip(self.names, views, strict=True)):
            what = f"{self.source}: view '{name}'"
            if isinstance(x, Tensor):
                if x.is_complex():
                    raise DataError(f"{what}: complex values are not supported")
                t = x.detach().to(dtype)
            else:
                t = torch.from_numpy(np.ascontiguousarray(as_dense_array(x, what=what))).to(dtype)
            if t.ndim not in (2, 3):
                raise DataError(
                    f"{what}: expected a 2-D (rows, features) array or a 3-D (rows, tokens, "
                    f"features) token array, got shape {tuple(t.shape)}"
                )
            if 0 in t.shape:
                raise DataError(f"{what}: empty view of shape {tuple(t.shape)}")
            given = None if token_masks is None else token_masks[v]
            tm: Tensor | None = None
            if t.ndim == 3:
                n, n_tok = int(t.shape[0]), int(t.shape[1])
                if given is None:
                    tm = torch.ones(n, n_tok, dtype=torch.bool, device=t.device)
                else:
                    tm = _as_token_mask(given, n, n_tok, f"{what}: token mask").to(t.device)
                t = _zero_padding(t, tm)
            elif given is not None:
                raise DataError(
                    f"{what}: a token mask was given for a 2-D view; token masks belong to "
                    "3-D (rows, tokens, features) views only (pass None for this view)"
                )
            _check_finite(t, what)
            self.views.append(t)
            self.token_masks.append(tm)
        device = self.views[0].device

        rows = [x.shape[0] for x in self.views]
        if ids is None:
            if len(set(rows)) != 1:
                detail = ", ".join(f"'{n}' has {r}" for n, r in zip(self.names, rows, strict=True))
                raise DataError(
                    f"{self.source}: views are claimed aligned (no per-view sample ids given) but "
                    f"have different numbers of rows: {detail}"
                )
            self.ids = [torch.arange(rows[0], device=device) for _ in range(n_views)]
        else:
            if len(ids) != n_views:
                raise DataError(f"{self.source}: {len(ids)} id arrays for {n_views} views")
            self.ids = []
            for name, r, idv in zip(self.names, rows, ids, strict=True):
                what = f"{self.source}: ids of view '{name}'"
                arr = as_dense_array(idv, what=what)
                if arr.shape != (r,):
                    raise DataError(f"{what}: expected shape ({r},), got {arr.shape}")
                if not np.issubdtype(arr.dtype, np.integer) and not np.all(arr == np.round(arr)):
                    raise DataError(f"{what}: sample ids must be integers")
                arr = arr.astype(np.int64)
                if arr.min() < 0:
                    raise DataError(f"{what}: sample ids must be non-negative")
                if np.unique(arr).size != r:
                    raise DataError(f"{what}: a sample appears more than once in the view")
                self.ids.append(torch.from_numpy(arr).to(device))

        max_id = max(int(i.max()) for i in self.ids) + 1
        if labels is not None:
            lab = as_dense_array(labels, what=f"{self.source}: labels")
            lab = np.squeeze(lab) if lab.ndim > 1 else lab
            if lab.ndim != 1:
                raise DataError(f"{self.source}: labels must be a vector, got shape {lab.shape}")
            if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)) or lab.min() < 0:
                raise DataError(
                    f"{self.source}: labels must be non-negative integers "
                    "(use modalign.data.encode_labels to map arbitrary values to 0..K-1)"
                )
            if ids is None and lab.shape[0] != rows[0]:
                raise DataError(
                    f"{self.source}: label vector has length {lab.shape[0]} but the views have "
                    f"{rows[0]} rows"
                )
            total = lab.shape[0] if n_samples is None else int(n_samples)
            if lab.shape[0] != total:
                raise DataError(
                    f"{self.source}: label vector has length {lab.shape[0]} but n_samples={total}"
                )
            self.labels: Tensor | None = torch.from_numpy(lab.astype(np.int64)).to(device)
        else:
            self.labels = None
            default = rows[0] if ids is None else max_id
            total = default if n_samples is None else int(n_samples)
        if total < max_id:
            what = "label vector has length" if labels is not None else "n_samples is"
            raise DataError(
                f"{self.source}: {what} {total} but the views refer to sample id {max_id - 1}"
            )
        self.n_samples = int(total)

        present = torch.zeros(self.n_samples, n_views, dtype=torch.bool, device=device)
        for v, idv in enumerate(self.ids):
            present[idv, v] = True
        if mask is None:
            self.mask = present
        else:
            m = torch.as_tensor(as_dense_array(mask, what=f"{self.source}: mask")).to(device)
            if tuple(m.shape) != (self.n_samples, n_views):
                raise DataError(
                    f"{self.source}: mask must have shape ({self.n_samples}, {n_views}), "
                    f"got {tuple(m.shape)}"
                )
            m = m.bool()
            orphan = m & ~present
            if bool(orphan.any()):
                i, v = (int(k) for k in orphan.nonzero()[0])
                raise DataError(
                    f"{self.source}: mask says sample {i} is observed in view '{self.names[v]}' "
                    "but that view has no row for it"
                )
            self.mask = m

        for v, tm in enumerate(self.token_masks):
            if tm is None:
                continue
            empty = self.mask[self.ids[v], v] & ~tm.any(dim=1)
            if bool(empty.any()):
                r = int(empty.nonzero()[0, 0])
                raise DataError(
                    f"{self.source}: view '{self.names[v]}' row {r} (sample "
                    f"{int(self.ids[v][r])}) is observed but has no real token (its token mask "
                    f"is all False; {int(empty.sum())} such row(s)): give it at least one real "
                    "token or mark the sample missing in 'mask'"
                )

        if len(set(rows)) == 1:
            if paired is None:
                agree = torch.ones(rows[0], dtype=torch.bool, device=device)
                for idv in self.ids[1:]:
                    agree &= idv == self.ids[0]
                self.paired: Tensor | None = agree
            else:
                p = torch.as_tensor(as_dense_array(paired, what=f"{self.source}: paired")).bool()
                if tuple(p.shape) != (rows[0],):
                    raise DataError(
                        f"{self.source}: paired must have shape ({rows[0]},), got {tuple(p.shape)}"
                    )
                self.paired = p.to(device)
        else:
            if paired is not None:
                raise DataError(
                    f"{self.source}: 'paired' needs views with equal numbers of rows, got {rows}"
                )
            self.paired = None

        self.kinds: list[str] = ["features"] * n_views if kinds is None else list(kinds)
        if len(self.kinds) != n_views or any(k not in _KINDS for k in self.kinds):
            raise DataError(f"{self.source}: kinds must be {n_views} values among {_KINDS}")
        self.shapes: list[tuple[int, ...] | None] = (
            [None] * n_views
            if shapes is None
            else [None if s is None else tuple(s) for s in shapes]
        )
        if len(self.shapes) != n_views:
            raise DataError(f"{self.source}: {len(self.shapes)} shapes for {n_views} views")
        for name, s, x in zip(self.names, self.shapes, self.views, strict=True):
            if s is not None and int(np.prod(s)) != x.shape[-1]:
                unit = "features per token" if x.ndim == 3 else "features"
                raise DataError(
                    f"{self.source}: view '{name}' has {x.shape[-1]} {unit} but shape {s}"
                )

    # ------------------------------------------------------------------ construction helpers
    def _copy(self, **changes: Any) -> MultiViewDataset:
        """A shallow copy with some attributes replaced, skipping validation (internal use)."""
        new = object.__new__(MultiViewDataset)
        new.__dict__.update(self.__dict__)
        if "token_masks" not in new.__dict__:  # a dataset pickled before token views existed
            new.token_masks = [None] * len(new.views)
        for key, value in changes.items():
            if key not in new.__dict__:
                raise AttributeError(key)
            setattr(new, key, value)
        if len(new.token_masks) != len(new.views):
            if any(m is not None for m in new.token_masks):
                raise DataError(
                    f"{new.source}: internal error: {len(new.token_masks)} token masks for "
                    f"{len(new.views)} views"
                )
            new.token_masks = [None] * len(new.views)
        # Lists are copied so that editing one dataset's list never alters another's.
        for key in ("views", "ids", "names", "kinds", "shapes", "token_masks"):
            setattr(new, key, list(getattr(new, key)))
        return new

    def with_views(self, views: Sequence[Tensor], *, source: str | None = None) -> MultiViewDataset:
        """Return a dataset with the same rows, identities, labels and mask but new view values.

        Each new view must have the same number of rows as the old one (features may change).
        A token view may be replaced by a token view with the same number of tokens (its token
        mask is kept and padded tokens are zeroed) or by a 2-D view (e.g. pooled embeddings: it
        then has no token mask); a 2-D view may only be replaced by a 2-D view. Shapes are kept
        only where the feature count (per token for token views) is unchanged.
        """
        if len(views) != self.n_views:
            raise DataError(f"{self.source}: {len(views)} new views for {self.n_views} views")
        new_views, shapes, masks = [], [], []
        for name, old, new, shape, tm in zip(
            self.names, self.views, views, self.shapes, self.token_masks, strict=True
        ):
            what = f"{self.source}: view '{name}'"
            t = torch.as_tensor(new)
            token_ok = tm is not None and t.ndim == 3 and t.shape[1] == old.shape[1]
            if t.shape[:1] != old.shape[:1] or not (t.ndim == 2 or token_ok):
                expected = (
                    f"({old.shape[0]}, D) or ({old.shape[0]}, {old.shape[1]}, d)"
                    if tm is not None
                    else f"({old.shape[0]}, D)"
                )
                raise DataError(
                    f"{what}: replacement has shape {tuple(t.shape)}, expected {expected}"
                )
            if not t.is_floating_point():
                t = t.to(old.dtype)
            mask = tm if t.ndim == 3 else None
            t = _zero_padding(t.to(old.device), mask)
            _check_finite(t, what)
            new_views.append(t)
            masks.append(mask)
            same = t.ndim == old.ndim and t.shape[-1] == old.shape[-1]
            shapes.append(shape if same else None)
        return self._copy(
            views=new_views, shapes=shapes, token_masks=masks, source=source or self.source
        )

    # ------------------------------------------------------------------ basic properties
    @property
    def n_views(self) -> int:
        """Number of views ``V``."""
        return len(self.views)

    @property
    def dims(self) -> list[int]:
        """Feature count ``D_v`` of each view; for a token view, the token width ``d_v``."""
        return [int(x.shape[-1]) for x in self.views]

    @property
    def n_tokens(self) -> list[int | None]:
        """Token count ``T_v`` (real and padded) of each token view, None for 2-D views."""
        return [int(x.shape[1]) if x.ndim == 3 else None for x in self.views]

    @property
    def has_tokens(self) -> bool:
        """True when at least one view is a token view."""
        return any(x.ndim == 3 for x in self.views)

    def is_tokens(self, view: int | str) -> bool:
        """Whether a view (by index or name) is a ``(N_v, T_v, d_v)`` token view."""
        return self.views[self.view_index(view)].ndim == 3

    def token_mask(self, view: int | str) -> Tensor | None:
        """The ``(N_v, T_v)`` bool token mask of a token view (True = real token), else None."""
        return self.token_masks[self.view_index(view)]

    def observed_values(self, view: int | str) -> Tensor:
        """The values of a view that a method may read, as a ``(K, D_v)`` matrix.

        For a 2-D view, its observed rows (missing modalities left out); for a token view, the
        real tokens of its observed rows, one token per row of the result (padding left out).
        """
        v = self.view_index(view)
        observed = self.row_mask(v)
        x = self.views[v][observed]
        tm = self.token_masks[v]
        if x.ndim == 3:
            return x[tm[observed]] if tm is not None else x.reshape(-1, x.shape[-1])
        return x

    def constant_views(self) -> list[str]:
        """Names of the views that carry no information: every observed row is the same vector
        (for a token view, every real token of the observed rows is), judged by
        :func:`constant_columns`. A view with fewer than two observed rows is not judged: one
        row is trivially constant, and whether so few rows are enough is the caller's call.
        """
        out = []
        for v, name in enumerate(self.names):
            if int(self.row_mask(v).sum()) >= 2 and bool(
                constant_columns(self.observed_values(v)).all()
            ):
                out.append(name)
        return out

    def token_lengths(self, view: int | str) -> Tensor:
        """``(N_v,)`` number of real tokens of each row of a token view (DataError otherwise)."""
        v = self.view_index(view)
        tm = self.token_masks[v]
        if tm is None:
            raise DataError(f"{self.source}: view '{self.names[v]}' is not a token view")
        return tm.sum(dim=1)

    @property
    def rows(self) -> list[int]:
        """Row count ``N_v`` of each view."""
        return [int(x.shape[0]) for x in self.views]

    @property
    def n_rows(self) -> int:
        """The common row count of the views; DataError if the views differ."""
        rows = self.rows
        if len(set(rows)) != 1:
            raise DataError(
                f"{self.source}: views have different numbers of rows "
                f"{dict(zip(self.names, rows, strict=True))}; row-wise access needs equal counts"
            )
        return rows[0]

    @property
    def n_classes(self) -> int:
        """``max(label) + 1``, or 0 without labels."""
        return 0 if self.labels is None else int(self.labels.max()) + 1

    @property
    def device(self) -> torch.device:
        return self.views[0].device

    @property
    def is_aligned(self) -> bool:
        """True when every row position is a known correspondence across views."""
        return self.paired is not None and bool(self.paired.all())

    @property
    def missing_rate(self) -> float:
        """Fraction of (sample, view) entries marked missing."""
        return 1.0 - float(self.mask.float().mean())

    def view_index(self, view: int | str) -> int:
        """Position of a view given by index or name."""
        if isinstance(view, str):
            if view not in self.names:
                raise DataError(f"{self.source}: no view named '{view}' (views: {self.names})")
            return self.names.index(view)
        if not -self.n_views <= view < self.n_views:
            raise DataError(
                f"{self.source}: view index {view} out of range for {self.n_views} views"
            )
        return view % self.n_views

    def view(self, view: int | str) -> Tensor:
        """The ``(N_v, D_v)`` (or ``(N_v, T_v, d_v)``) tensor of a view by index or name."""
        return self.views[self.view_index(view)]

    def row_labels(self, view: int | str) -> Tensor:
        """``(N_v,)`` label of each row of a view (``-1`` everywhere when labels are unknown)."""
        v = self.view_index(view)
        if self.labels is None:
            return torch.full((self.views[v].shape[0],), -1, dtype=torch.long, device=self.device)
        return self.labels[self.ids[v]]

    def row_mask(self, view: int | str) -> Tensor:
        """``(N_v,)`` bool: whether each row of a view is observed (not a missing modality)."""
        v = self.view_index(view)
        return self.mask[self.ids[v], v]

    # ------------------------------------------------------------------ indexing and batching
    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, row: int) -> dict[str, Any]:
        """Row ``row`` of every view, as a dict that the default DataLoader collation stacks.

        Keys: ``views`` (list of ``(D_v,)`` or ``(T_v, d_v)`` tensors), ``mask`` ``(V,)``,
        ``labels`` ``(V,)``, ``index`` (int) and ``token_masks``, a dict from the index of each
        token view to its ``(T_v,)`` token mask (empty without token views; a dict so that the
        default collation stacks it).
        """
        n = self.n_rows
        if not isinstance(row, (int, np.integer)) or isinstance(row, bool):
            raise TypeError(f"rows are indexed by int, got {type(row).__name__}; use batch()")
        if not -n <= row < n:
            raise IndexError(f"row {row} out of range for {n} rows")
        row = int(row) % n
        b = self.batch([row])
        return {
            "views": [x[0] for x in b.views],
            "mask": b.mask[0],
            "labels": b.labels[0],
            "index": row,
            "token_masks": {v: m[0] for v, m in enumerate(b.token_masks or []) if m is not None},
        }

    def batch(self, rows: Sequence[int] | Tensor | np.ndarray) -> MultiViewBatch:
        """Rows ``rows`` (positions, not sample ids) of every view, as a :class:`MultiViewBatch`."""
        n = self.n_rows
        idx = torch.as_tensor(np.asarray(rows) if not isinstance(rows, Tensor) else rows)
        idx = idx.to(device=self.device, dtype=torch.long).reshape(-1)
        if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
            raise IndexError(f"row index out of range for {n} rows")
        idx = idx % n
        views = [x[idx] for x in self.views]
        mask = torch.stack([self.mask[self.ids[v][idx], v] for v in range(self.n_views)], dim=1)
        if self.labels is None:
            shape = (idx.numel(), self.n_views)
            labels = torch.full(shape, -1, dtype=torch.long, device=self.device)
        else:
            labels = torch.stack([self.labels[i[idx]] for i in self.ids], dim=1)
        token_masks = [None if m is None else m[idx] for m in self.token_masks]
        return MultiViewBatch(
            views=views, mask=mask, labels=labels, index=idx, token_masks=token_masks
        )

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
    ) -> Iterator[MultiViewBatch]:
        """Iterate over the rows in batches (fast path: one indexing op per batch).

        With ``shuffle`` the order is a permutation drawn from ``torch.Generator`` seeded with
        ``seed`` (fresh entropy when ``seed`` is None).
        """
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        n = self.n_rows
        if shuffle:
            gen = torch.Generator()
            if seed is None:
                gen.seed()
            else:
                gen.manual_seed(seed)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size])

    def dataloader(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> DataLoader:
        """A ``torch.utils.data.DataLoader`` yielding :class:`MultiViewBatch` objects.

        Batches are fetched with one indexing op each (no per-row Python work); ``kwargs`` go to
        the DataLoader (e.g. ``num_workers``, ``pin_memory``).
        """
        from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

        if shuffle:
            base = RandomSampler(range(len(self)), generator=torch.Generator().manual_seed(seed))
        else:
            base = SequentialSampler(range(len(self)))
        sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
        return DataLoader(
            _BatchFetcher(self),
            sampler=sampler,
            batch_size=None,
            collate_fn=_collate_prebatched,
            **kwargs,
        )

    # ------------------------------------------------------------------ derived datasets
    def to(self, device: torch.device | str) -> MultiViewDataset:
        """Return a dataset whose tensors all live on ``device`` (the input is not modified)."""
        return self._copy(
            views=[x.to(device) for x in self.views],
            ids=[i.to(device) for i in self.ids],
            labels=None if self.labels is None else self.labels.to(device),
            mask=self.mask.to(device),
            paired=None if self.paired is None else self.paired.to(device),
            token_masks=[None if m is None else m.to(device) for m in self.token_masks],
        )

    def select_views(self, views: Sequence[int | str]) -> MultiViewDataset:
        """Keep only the given views (by index or name), in the given order."""
        idx = [self.view_index(v) for v in views]
        if not idx:
            raise DataError(f"{self.source}: select at least one view")
        if len(set(idx)) != len(idx):
            raise DataError(f"{self.source}: a view is selected twice: {list(views)}")
        sub = [self.ids[v] for v in idx]
        rows = {int(i.shape[0]) for i in sub}
        paired = None
        if len(rows) == 1:
            paired = torch.ones(sub[0].shape[0], dtype=torch.bool, device=self.device)
            if self.paired is not None:
                paired = self.paired.clone()
            for i in sub[1:]:
                paired &= i == sub[0]
        return self._copy(
            views=[self.views[v] for v in idx],
            ids=sub,
            names=[self.names[v] for v in idx],
            kinds=[self.kinds[v] for v in idx],
            shapes=[self.shapes[v] for v in idx],
            mask=self.mask[:, idx].clone(),
            paired=paired,
            token_masks=[self.token_masks[v] for v in idx],
        )

    def subset(self, samples: Sequence[int] | Tensor | np.ndarray) -> MultiViewDataset:
        """Keep the given sample identities, renumbered ``0..k-1`` in the order given.

        Each view keeps the rows of those samples. Known-correspondence rows (``paired``) come
        first, in their original order, so that they stay in correspondence; the other rows keep
        their relative order (which therefore reveals nothing about the hidden pairing).
        """
        s = torch.as_tensor(np.asarray(samples) if not isinstance(samples, Tensor) else samples)
        s = s.to(device=self.device, dtype=torch.long).reshape(-1)
        if s.numel() == 0:
            raise DataError(f"{self.source}: subset needs at least one sample")
        if int(s.min()) < 0 or int(s.max()) >= self.n_samples:
            raise DataError(f"{self.source}: sample ids must lie in [0, {self.n_samples})")
        if torch.unique(s).numel() != s.numel():
            raise DataError(f"{self.source}: subset got duplicate sample ids")
        new_id = torch.full((self.n_samples,), -1, dtype=torch.long, device=self.device)
        new_id[s] = torch.arange(s.numel(), device=self.device)
        reorder = self.paired is not None and not bool(self.paired.all())
        views, ids, kept_rows, token_masks = [], [], [], []
        for name, x, idv, tm in zip(
            self.names, self.views, self.ids, self.token_masks, strict=True
        ):
            rows = (new_id[idv] >= 0).nonzero().reshape(-1)
            if reorder:
                assert self.paired is not None
                rows = rows[torch.argsort((~self.paired[rows]).to(torch.int8), stable=True)]
            if rows.numel() == 0:
                raise DataError(f"{self.source}: the subset leaves view '{name}' empty")
            views.append(x[rows])
            ids.append(new_id[idv[rows]])
            kept_rows.append(rows)
            token_masks.append(None if tm is None else tm[rows])
        paired = None
        if len({int(r.numel()) for r in kept_rows}) == 1 and self.paired is not None:
            n_known = int(self.paired[kept_rows[0]].sum())
            paired = torch.zeros(kept_rows[0].numel(), dtype=torch.bool, device=self.device)
            paired[:n_known] = True
        return self._copy(
            views=views,
            ids=ids,
            labels=None if self.labels is None else self.labels[s],
            mask=self.mask[s].clone(),
            paired=paired,
            n_samples=int(s.numel()),
            token_masks=token_masks,
        )

    def split(
        self, fractions: Sequence[float], *, seed: int = 0, stratify: bool = True
    ) -> list[MultiViewDataset]:
        """Split the samples into disjoint subsets of the given fractions (summing to 1).

        Stratified by label when labels are known and ``stratify`` is True; deterministic given
        ``seed`` (NumPy ``default_rng``). Split an aligned dataset first and corrupt each part
        afterwards.
        """
        fr = np.asarray(fractions, dtype=float)
        if fr.ndim != 1 or fr.size < 1 or np.any(fr < 0) or abs(fr.sum() - 1.0) > 1e-6:
            raise DataError(f"split fractions must be non-negative and sum to 1, got {fractions}")
        rng = np.random.default_rng(seed)
        groups: list[np.ndarray]
        if stratify and self.labels is not None:
            lab = self.labels.cpu().numpy()
            groups = [np.flatnonzero(lab == c) for c in np.unique(lab)]
        else:
            groups = [np.arange(self.n_samples)]
        parts: list[list[np.ndarray]] = [[] for _ in fr]
        for g in groups:
            g = rng.permutation(g)
            bounds = np.round(np.cumsum(fr) * g.size).astype(int)
            bounds[-1] = g.size
            start = 0
            for k, stop in enumerate(bounds):
                parts[k].append(g[start:stop])
                start = stop
        out = []
        for k, chunks in enumerate(parts):
            ids = np.sort(np.concatenate(chunks))
            if ids.size == 0:
                raise DataError(f"{self.source}: split part {k} (fraction {fr[k]}) is empty")
            out.append(self.subset(ids))
        return out

    def __repr__(self) -> str:
        views = ", ".join(
            f"{n}:{tuple(x.shape)}" for n, x in zip(self.names, self.views, strict=True)
        )
        state = "aligned" if self.is_aligned else "unaligned"
        return (
            f"MultiViewDataset(source={self.source!r}, n_samples={self.n_samples}, "
            f"views=[{views}], classes={self.n_classes}, {state}, "
            f"missing={100 * self.missing_rate:.1f}%)"
        )
