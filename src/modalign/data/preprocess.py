"""Per-view preprocessing with scikit-learn's fit / transform convention.

Statistics are fitted on training data only and then applied unchanged to any other split. The
``auto`` choice follows the evaluation rules (DESIGN.md section 3) and looks at values, never at
labels: tf-idf then L2 rows for count views, L2 rows for histogram-like (non-negative) views and
z-scoring for dense real features, images and audio.

Token views ``(N, T, d)`` take per-feature transforms only (``none``, ``zscore``, ``minmax`` and
chains of them), fitted on the real tokens of the observed training rows and applied to real
tokens only (padded tokens stay zero); row-wise transforms (``l2``, ``tfidf``) have no meaning
for a token sequence and are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from modalign.data.dataset import MultiViewDataset, constant_columns
from modalign.data.errors import DataError

__all__ = [
    "Chain",
    "Identity",
    "L2Rows",
    "MinMax",
    "Preprocessor",
    "TfIdf",
    "ViewTransform",
    "ZScore",
    "detect_kind",
    "make_transform",
]

ValueKind = Literal["counts", "histogram", "real"]


def _as_tensor(x: Tensor | np.ndarray, what: str) -> Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise DataError(
            f"{what}: expected a 2-D (rows, features) array, got shape {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        t = t.to(torch.float64)
    # A NaN would spread through every statistic and every transformed value without a word:
    # the transforms are public, so they check their input as the dataset does.
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        r, c = (int(i) for i in bad.nonzero()[0])
        raise DataError(
            f"{what}: {int(bad.sum())} NaN or inf value(s) (first at row {r}, column {c}); "
            "preprocessing needs finite values"
        )
    return t


class ViewTransform:
    """Base class: ``fit`` on a ``(N, D)`` array, then ``transform`` arrays with the same ``D``.

    ``transform`` returns the type it was given (ndarray or tensor) with the input's float dtype;
    statistics are computed in float64.
    """

    n_features_: int | None = None

    def fit(self, x: Tensor | np.ndarray, *, what: str = "data") -> ViewTransform:
        t = _as_tensor(x, what)
        if t.shape[0] == 0:
            raise DataError(f"{what}: cannot fit on zero rows")
        self.n_features_ = int(t.shape[1])
        self._fit(t.to(torch.float64), what)
        return self

    def transform(self, x: Tensor | np.ndarray, *, what: str = "data") -> Tensor | np.ndarray:
        t = _as_tensor(x, what)
        if self.n_features_ is None:
            raise DataError(f"{what}: {type(self).__name__} is not fitted; call fit first")
        if t.shape[1] != self.n_features_:
            raise DataError(
                f"{what}: {type(self).__name__} was fitted on {self.n_features_} features, "
                f"got {t.shape[1]}"
            )
        out = self._transform(t.to(torch.float64), what).to(t.dtype)
        return out.numpy() if isinstance(x, np.ndarray) else out

    def fit_transform(self, x: Tensor | np.ndarray, *, what: str = "data") -> Tensor | np.ndarray:
        return self.fit(x, what=what).transform(x, what=what)

    def _fit(self, x: Tensor, what: str) -> None:
        """Learn statistics from float64 ``x``; stateless transforms do nothing."""

    def _transform(self, x: Tensor, what: str) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(ViewTransform):
    """Leave the view unchanged."""

    def _transform(self, x: Tensor, what: str) -> Tensor:
        return x


class ZScore(ViewTransform):
    """``(x - mean) / std`` per feature (population std); constant features are only centred.

    A feature that is constant on the training rows (standard deviation at most ``1e-12 * (1 +
    |mean|)``) is divided by 1 instead of 0, so it becomes 0 on those rows. It is kept rather
    than dropped, so that a view keeps its width and row shape (an image's 28 x 28 layout, a
    checkpoint's input size) on every split; ``constant_`` tells which features were. A view
    whose features are *all* constant is refused by :class:`Preprocessor`.
    """

    def _fit(self, x: Tensor, what: str) -> None:
        self.mean_ = x.mean(dim=0)
        std = x.std(dim=0, correction=0)
        # Rounding leaves a tiny non-zero spread on constant float features; treat it as zero.
        self.constant_ = std <= 1e-12 * (1.0 + self.mean_.abs())
        self.scale_ = torch.where(self.constant_, torch.ones_like(std), std)

    def _transform(self, x: Tensor, what: str) -> Tensor:
        return (x - self.mean_.to(x.device)) / self.scale_.to(x.device)


class MinMax(ViewTransform):
    """Map each feature's training range to ``[0, 1]``; constant features map to 0."""

    def _fit(self, x: Tensor, what: str) -> None:
        self.min_ = x.min(dim=0).values
        span = x.max(dim=0).values - self.min_
        self.scale_ = torch.where(span > 0, span, torch.ones_like(span))

    def _transform(self, x: Tensor, what: str) -> Tensor:
        return (x - self.min_.to(x.device)) / self.scale_.to(x.device)


class L2Rows(ViewTransform):
    """Divide each row by its Euclidean norm (all-zero rows stay zero). Stateless."""

    def _transform(self, x: Tensor, what: str) -> Tensor:
        norm = x.norm(dim=1, keepdim=True)
        return x / torch.where(norm > 0, norm, torch.ones_like(norm))


class TfIdf(ViewTransform):
    """Term frequency times smoothed inverse document frequency, for count views.

    ``idf_j = ln((1 + n) / (1 + df_j)) + 1`` with ``df_j`` the number of training rows where term
    ``j`` occurs (scikit-learn's ``TfidfTransformer(smooth_idf=True, norm=None)``). With
    ``sublinear_tf`` counts ``c > 0`` become ``1 + ln c``. Combine with :class:`L2Rows` for the
    usual normalised tf-idf.
    """

    def __init__(self, sublinear_tf: bool = False) -> None:
        self.sublinear_tf = sublinear_tf

    def _check(self, x: Tensor, what: str) -> None:
        if bool((x < 0).any()):
            raise DataError(f"{what}: tf-idf needs non-negative counts, found negative values")

    def _fit(self, x: Tensor, what: str) -> None:
        self._check(x, what)
        df = (x > 0).sum(dim=0).to(torch.float64)
        self.idf_ = torch.log((1.0 + x.shape[0]) / (1.0 + df)) + 1.0

    def _transform(self, x: Tensor, what: str) -> Tensor:
        self._check(x, what)
        if self.sublinear_tf:
            x = torch.where(x > 0, 1.0 + torch.log(torch.clamp(x, min=1e-300)), x)
        return x * self.idf_.to(x.device)

    def __repr__(self) -> str:
        return f"TfIdf(sublinear_tf={self.sublinear_tf})"


class Chain(ViewTransform):
    """Apply several transforms in order, each fitted on the previous one's output."""

    def __init__(self, *steps: ViewTransform) -> None:
        self.steps = list(steps)

    def _fit(self, x: Tensor, what: str) -> None:
        for step in self.steps:
            x = step.fit(x, what=what).transform(x, what=what)

    def _transform(self, x: Tensor, what: str) -> Tensor:
        for step in self.steps:
            x = step.transform(x, what=what)
        return x

    def __repr__(self) -> str:
        return " + ".join(repr(s) for s in self.steps) or "Chain()"


_NAMED = {
    "none": Identity,
    "zscore": ZScore,
    "minmax": MinMax,
    "l2": L2Rows,
    "tfidf": TfIdf,
}
_AUTO = {"counts": "tfidf+l2", "histogram": "l2", "real": "zscore"}
#: Transforms that act on whole rows, refused on token views.
_ROW_WISE = ("l2", "tfidf")


def make_transform(spec: str) -> ViewTransform:
    """Build a transform from a name: ``none``, ``zscore``, ``minmax``, ``l2``, ``tfidf``, or
    several joined by ``+`` and applied left to right (e.g. ``"tfidf+l2"``)."""
    parts = [p.strip().lower() for p in spec.split("+")]
    unknown = [p for p in parts if p not in _NAMED]
    if unknown:
        raise DataError(
            f"unknown preprocessing {unknown}; choose among {sorted(_NAMED)} or 'auto', "
            "joined with '+'"
        )
    steps = [_NAMED[p]() for p in parts]
    return steps[0] if len(steps) == 1 else Chain(*steps)


def detect_kind(x: Tensor | np.ndarray) -> ValueKind:
    """Classify a view by its values alone.

    ``"counts"``: non-negative and integer-valued; ``"histogram"``: non-negative otherwise
    (frequencies, normalised histograms, max-scaled descriptors); ``"real"``: anything with
    negative values.
    """
    t = torch.as_tensor(x)
    if bool((t < 0).any()):
        return "real"
    if not t.is_floating_point() or bool((t == torch.round(t)).all()):
        return "counts"
    return "histogram"


def _refuse_constant(x: Tensor, n_observed: int, what: str, tokens: bool, spec: str | None) -> None:
    """Raise a DataError when every row of ``x`` (``(K, d)``, a view's observed rows or real
    tokens) is the same vector, before (``spec`` None) or after the preprocessing ``spec``.

    Such a view is refused rather than dropped with a warning: dropping it would silently
    change the number of views a method is built for, the per-view results it reports and the
    views its checkpoints are keyed on, and a constant view is nearly always a mistake in how
    the file was written, best fixed there. Left in, it z-scores to zeros and turns into NaN
    inside OT (a structure matrix of zeros normalised by its maximum), far from its cause.
    Fewer than two observed rows are not judged: one row is trivially constant.
    """
    if n_observed < 2 or not bool(constant_columns(x).all()):
        return
    rows = "real token of the observed rows" if tokens else f"one of its {n_observed} observed rows"
    first = x[0]
    value = (
        f"every value is {float(first[0]):g}"
        if bool((first == first[0]).all())
        else "each feature has a single value"
    )
    if spec is None:
        raise DataError(
            f"{what} is constant: every {rows} is the same vector ({value}). A view without "
            "variation carries no information and cannot be normalised or used as an OT "
            "structure; fix the data or leave the view out (MultiViewDataset.select_views)"
        )
    raise DataError(
        f"{what} becomes constant after preprocessing '{spec}': every {rows} is then the same "
        f"vector ({value}), so the view carries no information. Choose another preprocessing "
        "for it (e.g. a mapping {view name: spec}) or leave the view out"
    )


class Preprocessor:
    """Fit one transform per view on a training :class:`MultiViewDataset`, apply it to any split.

    Args:
        methods: one spec for every view, a list with one spec per view, or a mapping from view
            name to spec (unlisted views: ``"auto"``). A spec is ``"auto"`` or a name accepted by
            :func:`make_transform`. ``"auto"`` picks, per view and without labels: z-score for
            image and audio views; otherwise by :func:`detect_kind` on the training rows:
            tf-idf then L2 rows for counts, L2 rows for histograms, z-score for real values.

    Only observed rows (not missing modalities) are used for fitting; missing rows stay zero.

    ``fit`` refuses, with a :class:`DataError` naming the dataset and the view, a view that is
    constant on its observed training rows (every row the same vector; for a token view every
    real token), or that becomes constant once its transform is applied (e.g. ``l2`` on rows
    that are multiples of one another), before any method can train on it. A constant
    *feature* inside a varying view is fine: ``zscore`` maps it to 0 and ``minmax`` to 0.

    Token views ``(N, T, d)``: the transform is fitted per token feature on the real tokens of
    the observed rows (the ``(K, d)`` matrix of those tokens) and applied to real tokens only;
    padded tokens stay zero. ``"auto"`` gives ``"none"`` for an image token view whose training
    values lie in [0, 1] (raw patch intensities, as :func:`modalign.experiments.represent
    .preprocessor` does for 2-D image views), ``"minmax"`` for any other image token view and
    ``"zscore"`` for audio and feature token views. Row-wise transforms (``l2``, ``tfidf``)
    raise a :class:`DataError` on token views.

    Attributes (after ``fit``):
        specs_: the spec chosen for each view (``auto`` resolved).
        transforms_: the fitted :class:`ViewTransform` of each view.
    """

    def __init__(self, methods: str | Sequence[str] | Mapping[str, str] = "auto") -> None:
        self.methods = methods

    def _specs(self, ds: MultiViewDataset) -> list[str]:
        m = self.methods
        if isinstance(m, str):
            return [m] * ds.n_views
        if isinstance(m, Mapping):
            unknown = set(m) - set(ds.names)
            if unknown:
                raise DataError(f"{ds.source}: preprocessing given for unknown views {unknown}")
            return [m.get(n, "auto") for n in ds.names]
        specs = list(m)
        if len(specs) != ds.n_views:
            raise DataError(f"{ds.source}: {len(specs)} preprocessing specs for {ds.n_views} views")
        return specs

    def fit(self, ds: MultiViewDataset) -> Preprocessor:
        """Fit every view's transform on the observed rows of ``ds`` (training data)."""
        self.names_ = list(ds.names)
        self.tokens_: list[bool] = [ds.is_tokens(v) for v in range(ds.n_views)]
        self.specs_: list[str] = []
        self.transforms_: list[ViewTransform] = []
        for v, spec in enumerate(self._specs(ds)):
            what = f"{ds.source}: view '{ds.names[v]}'"
            n_observed = int(ds.row_mask(v).sum())
            if n_observed == 0:
                raise DataError(f"{what}: no observed rows to fit preprocessing on")
            # Observed rows, or the real tokens of the observed rows of a token view, (K, d).
            x = ds.observed_values(v)
            _refuse_constant(x, n_observed, what, ds.is_tokens(v), None)
            if self.tokens_[v]:
                if spec == "auto":
                    unit = bool(((x >= 0) & (x <= 1)).all())
                    image = "none" if unit else "minmax"
                    spec = image if ds.kinds[v] == "image" else "zscore"
                parts = [p.strip().lower() for p in spec.split("+")]
                if any(p in _ROW_WISE for p in parts):
                    raise DataError(
                        f"{what}: '{spec}' acts on whole rows, which a token view (rows of "
                        f"{x.shape[-1]}-wide tokens) does not have; use a per-feature transform "
                        "(none, zscore, minmax) or 'auto'"
                    )
            elif spec == "auto":
                kind = "real" if ds.kinds[v] in ("image", "audio") else detect_kind(x)
                spec = _AUTO[kind]
            self.specs_.append(spec)
            transform = make_transform(spec).fit(x, what=what)
            out = transform.transform(x, what=what)
            assert isinstance(out, Tensor)
            _refuse_constant(out, n_observed, what, ds.is_tokens(v), spec)
            self.transforms_.append(transform)
        return self

    def transform(self, ds: MultiViewDataset) -> MultiViewDataset:
        """Return a new dataset with every view transformed (the input is not modified)."""
        if not hasattr(self, "transforms_"):
            raise DataError("Preprocessor is not fitted; call fit on the training data first")
        if list(ds.names) != self.names_:
            raise DataError(
                f"{ds.source}: views {ds.names} differ from the fitted views {self.names_}"
            )
        tokens = getattr(self, "tokens_", [False] * len(self.names_))
        views = []
        for v, tr in enumerate(self.transforms_):
            what = f"{ds.source}: view '{ds.names[v]}'"
            if ds.is_tokens(v) != tokens[v]:
                fitted = "a token view" if tokens[v] else "a 2-D view"
                raise DataError(f"{what}: the preprocessing was fitted on {fitted}")
            x = ds.views[v]
            if tokens[v]:
                flat = tr.transform(x.reshape(-1, x.shape[-1]), what=what)
                assert isinstance(flat, Tensor)
                out = flat.reshape(x.shape)
                keep = ds.row_mask(v)[:, None, None]
                tm = ds.token_masks[v]
                if tm is not None:
                    keep = keep & tm[..., None]
                views.append(torch.where(keep, out, torch.zeros_like(out)))
                continue
            out = tr.transform(x, what=what)
            assert isinstance(out, Tensor)
            observed = ds.row_mask(v)
            if not bool(observed.all()):
                out = torch.where(observed[:, None], out, torch.zeros_like(out))
            views.append(out)
        return ds.with_views(views)

    def fit_transform(self, ds: MultiViewDataset) -> MultiViewDataset:
        return self.fit(ds).transform(ds)

    def __repr__(self) -> str:
        if hasattr(self, "transforms_"):
            inner = ", ".join(
                f"{n}: {t!r}" for n, t in zip(self.names_, self.transforms_, strict=True)
            )
            return f"Preprocessor({inner})"
        return f"Preprocessor(methods={self.methods!r})"
