"""Robustness to corrupted inputs: the measures of MultiBench and the score-vs-corruption plot.

A model is scored at a series of corruption levels ``l_0 < l_1 < ... < l_m``, where ``l_0`` is the
clean input (usually 0) and larger levels corrupt more (more noise, more missing modalities).
MultiBench (Liang et al., 2021, "MultiBench: Multiscale Benchmarks for Multimodal Representation
Learning") summarises such a curve by two numbers:

* :func:`relative_robustness`: the area under the curve, i.e. how well the model does over the
  whole corruption range;
* :func:`effective_robustness`: how much better the model holds up than a reference model (late
  fusion without augmentation) would if that reference had started at the model's clean score.

Both are reported here on the scale of the score (see the functions for how this differs from
MultiBench's own normalisation), so a number means the same thing whatever else is in the table.
:func:`plot_robustness_curves` draws the curves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from modalign.eval.report import save_png
from modalign.eval.supervised import Vector, real_vector

__all__ = [
    "OTM_SUFFIX",
    "effective_robustness",
    "plot_robustness_curves",
    "relative_robustness",
]

#: Labels ending with this suffix are drawn dashed, in the colour of the label without it.
OTM_SUFFIX = "+otm"

Curve = tuple[Vector, Vector, Vector | None]


def _levels(levels: Vector, what: str = "levels") -> np.ndarray:
    lv = real_vector(levels, what)
    if lv.shape[0] < 2:
        raise ValueError(
            f"{what}: need at least 2 corruption levels (the clean one and a corrupted one), "
            f"got {lv.shape[0]}"
        )
    if not np.all(np.diff(lv) > 0):
        raise ValueError(f"{what}: must be strictly increasing, starting at the clean level")
    return lv


def _scores(scores: Vector, n: int, what: str) -> np.ndarray:
    sc = real_vector(scores, what)
    if sc.shape[0] != n:
        raise ValueError(f"{what}: has {sc.shape[0]} values but there are {n} levels")
    return sc


def relative_robustness(levels: Vector, scores: Vector) -> float:
    """Mean score over the corruption range: the span-normalised area under the curve.

    With levels ``l_0 < ... < l_m`` (``l_0`` the clean level) and scores ``f(l_i)``::

        RR = sum_{i=1..m} (l_i - l_{i-1}) * (f(l_{i-1}) + f(l_i)) / 2  /  (l_m - l_0)

    the trapezoid-rule area under score-vs-level divided by the span of the levels, so it is on
    the scale of the score (a constant curve ``c`` gives ``c``; a straight line gives the mean
    of its endpoints).

    MultiBench (Liang et al., 2021) uses the area itself with a fixed level step of 0.1 and then
    min-max normalises it across the methods compared. We report the un-normalised,
    span-normalised area instead, so that a number does not depend on which other models are in
    the table.

    Args:
        levels: at least 2 finite, strictly increasing corruption levels, starting with the clean
            level (usually 0).
        scores: the score at each level (same length), higher is better.

    Raises:
        ValueError: on invalid levels or scores.
    """
    lv = _levels(levels)
    sc = _scores(scores, lv.shape[0], "scores")
    area = float(np.sum(np.diff(lv) * (sc[:-1] + sc[1:]) / 2.0))
    return area / float(lv[-1] - lv[0])


def effective_robustness(levels: Vector, scores: Vector, reference: Vector) -> float:
    """How much better the model holds up under corruption than the reference model.

    With ``f`` the model's scores and ``r`` the reference's at the same levels ``l_0 < ... < l_m``
    (``l_0`` clean; the reference is late fusion without augmentation)::

        ER = (1/m) * sum_{i=1..m} [ f(l_i) - (r(l_i) + f(l_0) - r(l_0)) ]

    i.e. the model's score minus the reference's curve shifted to start at the model's clean
    score, averaged over the corrupted levels. It is 0 for a model that degrades exactly like
    the reference, positive for one that degrades less. MultiBench (Liang et al., 2021) sums over
    the levels; we take the mean so the value is on the scale of the score and does not grow with
    the number of levels.

    Args:
        levels: at least 2 finite, strictly increasing corruption levels, starting with the clean
            level.
        scores: the model's score at each level.
        reference: the reference model's score at each level.

    Raises:
        ValueError: on invalid levels or scores.
    """
    lv = _levels(levels)
    f = _scores(scores, lv.shape[0], "scores")
    r = _scores(reference, lv.shape[0], "reference")
    gap = f[1:] - (r[1:] + f[0] - r[0])
    return float(np.mean(gap))


def _base_label(label: str) -> str:
    return label[: -len(OTM_SUFFIX)] if label.endswith(OTM_SUFFIX) else label


def _check_panels(
    panels: Mapping[str, Mapping[str, Curve]],
) -> list[tuple[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]]]:
    """Validated panels as NumPy arrays, in the given order."""
    if not isinstance(panels, Mapping) or len(panels) == 0:
        raise ValueError("panels: expected a non-empty mapping panel title -> lines")
    out = []
    for title, lines in panels.items():
        if not isinstance(lines, Mapping) or len(lines) == 0:
            raise ValueError(f"panel {title!r}: expected a non-empty mapping label -> curve")
        checked = []
        for label, curve in lines.items():
            where = f"panel {title!r}, line {label!r}"
            if not isinstance(curve, (tuple, list)) or len(curve) != 3:
                raise ValueError(f"{where}: expected a tuple (levels, means, stds or None)")
            levels, means, stds = curve
            lv = real_vector(levels, f"{where}: levels")
            if lv.shape[0] == 0:
                raise ValueError(f"{where}: levels is empty")
            mu = real_vector(means, f"{where}: means")
            if mu.shape[0] != lv.shape[0]:
                raise ValueError(
                    f"{where}: means has {mu.shape[0]} values but levels has {lv.shape[0]}"
                )
            sd = None
            if stds is not None:
                sd = real_vector(stds, f"{where}: stds")
                if sd.shape[0] != lv.shape[0]:
                    raise ValueError(
                        f"{where}: stds has {sd.shape[0]} values but levels has {lv.shape[0]}"
                    )
                if np.any(sd < 0):
                    raise ValueError(f"{where}: stds must be non-negative")
            checked.append((str(label), lv, mu, sd))
        out.append((str(title), checked))
    return out


def plot_robustness_curves(
    panels: Mapping[str, Mapping[str, Curve]],
    path: str | Path,
    *,
    title: str = "",
    ylabel: str = "accuracy",
    xlabel: str = "corruption level (0 = clean)",
) -> Path:
    """Plot score-vs-corruption curves, one subplot per panel, and save a PNG atomically.

    Args:
        panels: panel title -> (line label -> ``(levels, means, stds or None)``), with the three
            arrays of one line of equal length. Each line is drawn with markers; where ``stds``
            is given, a band ``mean ± std`` is shaded. Labels ending with ``"+otm"`` are drawn
            dashed, in the same colour as the label without the suffix (``"X"`` and ``"X+otm"``
            share a colour, in every panel).
        path: the PNG file to write; parent folders are created.
        title: an overall title (none when empty).
        ylabel: the y-axis label.

    Returns:
        The path written.

    Raises:
        ValueError: when ``panels`` is empty or a line's arrays differ in length.
    """
    # A bare Figure renders with the Agg canvas: no pyplot global state, no GUI backend needed.
    from matplotlib.figure import Figure

    checked = _check_panels(panels)
    colours: dict[str, str] = {}
    for _, lines in checked:
        for label, *_ in lines:
            base = _base_label(label)
            if base not in colours:
                colours[base] = f"C{len(colours) % 10}"

    n = len(checked)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.8 * ncols, 3.8 * nrows + (0.4 if title else 0.0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for ax, (panel_title, lines) in zip(axes, checked):
        for label, lv, mu, sd in lines:
            colour = colours[_base_label(label)]
            style = "--" if label.endswith(OTM_SUFFIX) else "-"
            ax.plot(lv, mu, linestyle=style, marker="o", markersize=4, color=colour, label=label)
            if sd is not None:
                ax.fill_between(lv, mu - sd, mu + sd, color=colour, alpha=0.15, linewidth=0)
        ax.set_title(panel_title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)

    return save_png(fig, path)
