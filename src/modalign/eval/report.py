"""Result records, summaries, Markdown tables, atomic result files and embedding plots.

A *record* is one number: a flat dict with exactly the keys of :data:`RECORD_KEYS`::

    {"dataset": "prokaryotic", "setting": "aligned", "method": "kmeans_concat", "seed": 0,
     "metric": "nmi", "value": 0.41, "seconds": 0.37}

``seconds`` is the wall time of the whole run (fit and predict) that produced the value, so the
four records of one run share it. Flat records append, filter and merge without any schema
migration; tables are always derived from them.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from modalign.eval.metrics import METRICS
from modalign.provenance import provenance_line, run_header
from modalign.utils import atomic_write

__all__ = [
    "METRIC_LABELS",
    "RECORD_KEYS",
    "atomic_write",
    "embed_2d",
    "markdown_table",
    "mean_std_text",
    "merge_records",
    "plot_embedding",
    "read_header",
    "read_results",
    "read_results_file",
    "save_png",
    "seconds_lines",
    "records_from_scores",
    "summarise",
    "with_provenance",
    "write_results",
    "write_results_file",
]

#: The keys of every record, in this order.
RECORD_KEYS: tuple[str, ...] = (
    "dataset",
    "setting",
    "method",
    "seed",
    "metric",
    "value",
    "seconds",
)
#: Column titles of the metrics in tables.
METRIC_LABELS: dict[str, str] = {
    "purity": "Purity",
    "accuracy": "Accuracy",
    "nmi": "NMI",
    "ari": "ARI",
}

_GROUP = ("dataset", "setting", "method")
_IDENTITY = ("dataset", "setting", "method", "seed", "metric")


# ---------------------------------------------------------------------------------- records
def _finite(x: Any, what: str) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {x!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value}; records hold finite numbers only")
    return value


def _check_record(rec: Mapping[str, Any], i: int) -> dict[str, Any]:
    if not isinstance(rec, Mapping) or set(rec) != set(RECORD_KEYS):
        keys = sorted(rec) if isinstance(rec, Mapping) else type(rec).__name__
        raise ValueError(f"record {i}: expected exactly the keys {list(RECORD_KEYS)}, got {keys}")
    if rec["metric"] not in METRICS:
        raise ValueError(f"record {i}: unknown metric {rec['metric']!r}; expected one of {METRICS}")
    seed = rec["seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"record {i}: seed must be an integer, got {seed!r}")
    return {
        "dataset": str(rec["dataset"]),
        "setting": str(rec["setting"]),
        "method": str(rec["method"]),
        "seed": int(seed),
        "metric": str(rec["metric"]),
        "value": _finite(rec["value"], f"record {i}: value"),
        "seconds": _finite(rec["seconds"], f"record {i}: seconds"),
    }


def _checked(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = [_check_record(r, i) for i, r in enumerate(records)]
    seen: set[tuple] = set()
    for r in out:
        key = tuple(r[k] for k in _IDENTITY)
        if key in seen:
            # Two values for one run would silently bias the mean: make the caller choose
            # (merge_records keeps the newer one).
            raise ValueError(
                f"duplicate record for {dict(zip(_IDENTITY, key))}; use merge_records(old, new) "
                "to replace earlier runs"
            )
        seen.add(key)
    return out


def records_from_scores(
    dataset: str,
    setting: str,
    method: str,
    seed: int,
    scores: Mapping[str, float],
    seconds: float,
) -> list[dict[str, Any]]:
    """One record per metric of ``scores`` (e.g. the dict of :func:`clustering_scores`).

    Returns:
        Records in :data:`~modalign.eval.METRICS` order, values as plain Python floats.

    Raises:
        ValueError: unknown metric names, non-finite values or a non-integer seed.
    """
    unknown = sorted(set(scores) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; expected some of {list(METRICS)}")
    recs = [
        {
            "dataset": dataset,
            "setting": setting,
            "method": method,
            "seed": seed,
            "metric": m,
            "value": scores[m],
            "seconds": seconds,
        }
        for m in METRICS
        if m in scores
    ]
    return _checked(recs)


def merge_records(
    old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Earlier records plus new ones; a new record replaces an old one for the same
    dataset, setting, method, seed and metric. Order: surviving old records, then new ones."""
    fresh = _checked(new)
    replaced = {tuple(r[k] for k in _IDENTITY) for r in fresh}
    kept = [r for r in _checked(old) if tuple(r[k] for k in _IDENTITY) not in replaced]
    return kept + fresh


def read_results_file(out_dir: str | Path) -> tuple[dict[str, Any] | None, list[Any]]:
    """``(header, records)`` of ``out_dir/results.json`` as stored, any record layout (the
    robustness protocol has its own); ``(None, [])`` when there is no file yet.

    Raises:
        ValueError: a file of an older modalign (a bare list of records, with no fingerprint
            of what produced them: it cannot be resumed safely) or not a results file.
    """
    path = Path(out_dir) / "results.json"
    if not path.exists():
        return None, []
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not a JSON results file ({err})") from None
    if isinstance(data, list):
        raise ValueError(
            f"{path} was written by an older version of modalign, with no fingerprint of what "
            "produced it: rerun into another --out folder or remove it"
        )
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("header"), dict)
        or not isinstance(data.get("records"), list)
    ):
        raise ValueError(f"{path}: expected an object with a header and a list of records")
    return data["header"], data["records"]


def read_protocol_records(
    out_dir: str | Path, keys: Sequence[str], protocol: str
) -> list[dict[str, Any]]:
    """The records of ``out_dir/results.json`` (``[]`` if absent) of a protocol with its own
    record layout, each checked to have exactly ``keys``.

    Raises:
        ValueError: a file of another protocol, naming ``protocol`` and the expected keys.
    """
    records = read_results_file(out_dir)[1]
    if any(not isinstance(r, dict) or set(r) != set(keys) for r in records):
        raise ValueError(
            f"{Path(out_dir) / 'results.json'}: not a {protocol} results file (records with "
            f"keys {list(keys)}); use another --out folder"
        )
    return records


def read_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``out_dir/results.json`` (validated), or ``[]`` when there is none yet;
    :func:`read_header` gives what produced them."""
    return _checked(read_results_file(out_dir)[1])


def read_header(out_dir: str | Path) -> dict[str, Any] | None:
    """The header of ``out_dir/results.json`` (see :func:`modalign.provenance.run_header`),
    or None when there is no file yet."""
    return read_results_file(out_dir)[0]


# ---------------------------------------------------------------------------------- summaries
def summarise(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds, per dataset, setting and method.

    Returns:
        One dict per (dataset, setting, method), in order of first appearance, with keys
        ``dataset``, ``setting``, ``method``, ``n_seeds``, ``seconds_mean`` and, for each metric
        present, ``{metric}_mean`` and ``{metric}_std``. The std is the sample standard deviation
        over seeds (``ddof=1``) and None with a single seed, where it is undefined.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in _checked(records):
        groups.setdefault(tuple(r[k] for k in _GROUP), []).append(r)
    rows = []
    for key, recs in groups.items():
        row: dict[str, Any] = dict(zip(_GROUP, key))
        seeds = sorted({r["seed"] for r in recs})
        row["n_seeds"] = len(seeds)
        # One run per seed: its seconds appear once per metric, count it once.
        per_seed = {r["seed"]: r["seconds"] for r in recs}
        row["seconds_mean"] = float(np.mean([per_seed[s] for s in seeds]))
        for m in METRICS:
            vals = np.asarray([r["value"] for r in recs if r["metric"] == m], dtype=np.float64)
            if vals.size == 0:
                continue
            row[f"{m}_mean"] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else None
        rows.append(row)
    return rows


def mean_std_text(values: Iterable[float]) -> str:
    """``"mean ± std"`` over seeds with 3 decimals (sample std; ``–`` for one value, ``""``
    for none). Rounded before printing, so a tiny negative mean shows as 0.000, not -0.000."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return ""
    mean = round(float(v.mean()), 3) + 0.0
    return f"{mean:.3f} ± " + (f"{round(float(v.std(ddof=1)), 3) + 0.0:.3f}" if v.size > 1 else "–")


def seconds_lines(records: Iterable[Mapping[str, Any]], what: str) -> list[str]:
    """The Markdown section of a protocol's ``results.md`` giving each method's median
    ``train_seconds`` per seed (``what``: what the seconds cover); ``[]`` when none."""
    secs: dict[str, list[float]] = {}
    for r in records:
        if r["metric"] == "train_seconds":
            secs.setdefault(r["method"], []).append(r["value"])
    if not secs:
        return []
    return [
        "",
        f"## Seconds per seed ({what}; median)",
        "",
        "| method | seconds |",
        "| --- | ---: |",
        *(f"| {m} | {np.median(v):.1f} |" for m, v in secs.items()),
    ]


def _table(rows: list[dict[str, Any]]) -> str:
    metrics = [m for m in METRICS if any(f"{m}_mean" in r for r in rows)]
    best = {}
    for m in metrics:
        means = [r[f"{m}_mean"] for r in rows if f"{m}_mean" in r]
        # Compare at the printed precision so that a bolded tie looks like one.
        best[m] = round(max(means), 3)
    head = ["method", *(METRIC_LABELS[m] for m in metrics), "seconds", "seeds"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| --- | " + " | ".join([":---:"] * len(metrics)) + " | ---: | ---: |",
    ]
    for r in rows:
        cells = [r["method"]]
        for m in metrics:
            if f"{m}_mean" not in r:
                cells.append("")
                continue
            mean, std = r[f"{m}_mean"], r[f"{m}_std"]
            text = f"{mean:.3f} ± " + ("–" if std is None else f"{std:.3f}")
            cells.append(f"**{text}**" if round(mean, 3) == best[m] else text)
        cells += [f"{r['seconds_mean']:.2f}", str(r["n_seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table(records: Iterable[Mapping[str, Any]]) -> str:
    """Markdown table(s): one row per method, ``mean ± std`` over seeds (3 decimals) for purity,
    accuracy, NMI and ARI, then mean seconds per run and the number of seeds.

    The best mean of each metric column is in bold (ties all bold). Records of several datasets or
    settings give one table each, under a ``### dataset (setting)`` heading, since methods are
    only comparable on the same data. With a single seed the std shows as ``–``.
    """
    rows = summarise(records)
    if not rows:
        return "_no results_\n"
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["setting"]), []).append(r)
    if len(groups) == 1:
        return _table(rows) + "\n"
    parts = [f"### {d} ({s})\n\n{_table(g)}\n" for (d, s), g in groups.items()]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------- files
def _write_text(path: Path, text: str) -> Path:
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def with_provenance(markdown: str, header: Mapping[str, Any]) -> str:
    """``markdown`` with the header's one-line provenance (command, version, commit, data
    sha256) under its leading ``# title``, or first when it has none."""
    line = provenance_line(header)
    title, _, rest = markdown.partition("\n")
    if title.startswith("# "):
        body = rest.lstrip("\n")
        return f"{title}\n\n{line}\n\n{body}"
    return f"{line}\n\n{markdown}"


def write_results_file(
    out_dir: str | Path,
    records: Sequence[Mapping[str, Any]],
    markdown: str,
    header: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``results.json`` as ``{"header": header, "records": records}`` (strict JSON) and
    ``results.md`` (``markdown`` with the provenance line), each atomically; any record
    layout. ``header`` None: :func:`modalign.provenance.run_header` with no key (a folder no
    protocol will resume)."""
    out = Path(out_dir)
    header = run_header() if header is None else dict(header)
    # allow_nan=False: the file must be strict JSON that any reader accepts.
    text = json.dumps({"header": header, "records": list(records)}, indent=1, allow_nan=False)
    return (
        _write_text(out / "results.json", text + "\n"),
        _write_text(out / "results.md", with_provenance(markdown, header)),
    )


def write_results(
    out_dir: str | Path,
    records: Sequence[Mapping[str, Any]],
    extra_markdown: str = "",
    *,
    header: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``results.json`` (the header and the records, as given) and ``results.md`` (the
    provenance line and the records' table).

    Each file is replaced atomically. The function writes exactly what it is given: to add a new
    run to earlier results pass ``merge_records(read_results(out_dir), new_records)`` (and, to
    add to a protocol's folder, first :func:`modalign.provenance.check_provenance` against
    :func:`read_header`).

    Args:
        out_dir: the folder (created if needed).
        records: the records; validated (exact keys, known metrics, finite values, no duplicates).
        extra_markdown: appended after the table (notes, coupling diagnostics, plots).
        header: what produced them (:func:`modalign.provenance.run_header`); None: a header
            with the command line, versions and date but no key.

    Returns:
        ``(json_path, markdown_path)``.
    """
    recs = _checked(records)
    md = markdown_table(recs)
    if extra_markdown:
        md = md.rstrip("\n") + "\n\n" + extra_markdown.strip("\n") + "\n"
    return write_results_file(out_dir, recs, md, header)


# ---------------------------------------------------------------------------------- plots
def _as_array(x: Any, what: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if np.issubdtype(arr.dtype, np.number) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: contains NaN or inf")
    return arr


def embed_2d(
    codes: np.ndarray | torch.Tensor, *, method: str = "auto", seed: int = 0
) -> np.ndarray:
    """A 2-D embedding of ``(N, d)`` codes for plotting.

    ``method``: ``"tsne"`` (PCA to at most 50 dimensions, then scikit-learn's Barnes-Hut t-SNE
    with PCA initialisation, ``random_state=seed`` and 500 iterations: about 3 s for N = 2000 on
    two cores), ``"pca"`` (the first two principal components, instant), or ``"auto"``: t-SNE for
    30 <= N <= 2500, PCA otherwise (t-SNE is meaningless on a handful of points and slow on many).

    Returns:
        ``(N, 2)`` float64 array.
    """
    from sklearn.decomposition import PCA

    x = _as_array(codes, "codes").astype(np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"codes: expected an (N, d) array, got shape {x.shape}")
    n, d = x.shape
    if method == "auto":
        method = "tsne" if 30 <= n <= 2500 else "pca"
    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'auto', 'tsne' or 'pca', got {method!r}")
    if d <= 2 or n < 3:
        # Nothing to reduce: pad to two columns so a 1-D code still plots.
        return np.pad(x[:, :2], ((0, 0), (0, max(0, 2 - d))))
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(50, d, n), random_state=seed).fit_transform(x)
    # scikit-learn renamed n_iter to max_iter in 1.5; accept both so that >= 1.2 works.
    iters = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    tsne = TSNE(
        n_components=2,
        perplexity=min(30.0, (n - 1) / 3.0),
        init="pca",
        random_state=seed,
        **{iters: 500},
    )
    return tsne.fit_transform(reduced)


def match_clusters_to_classes(clusters: Any, classes: Any) -> dict[Any, int]:
    """The colour index of every cluster value, for the picture only: clusters take the
    colours of the classes they overlap most.

    ``clusters``, ``classes``: ``(N,)`` labels. Class ``j`` (in sorted order of the class
    values) has colour index ``j``. The clusters are matched one to one to classes by the
    Hungarian method on the ``(clusters, classes)`` contingency table (maximum total overlap,
    :func:`scipy.optimize.linear_sum_assignment`); a matched cluster gets its class's index.
    With more clusters than classes, the ``k``-th unmatched cluster (in sorted order) gets
    index ``n_classes + k``: a colour no class has, so no cluster claims a class it was not
    matched to. Never used for scores (the matching here is not the evaluation's).
    """
    from scipy.optimize import linear_sum_assignment

    cluster_values, cluster_idx = np.unique(np.asarray(clusters).reshape(-1), return_inverse=True)
    class_values, class_idx = np.unique(np.asarray(classes).reshape(-1), return_inverse=True)
    if cluster_idx.shape != class_idx.shape:
        raise ValueError(f"{cluster_idx.size} cluster labels for {class_idx.size} class labels")
    table = np.zeros((len(cluster_values), len(class_values)), dtype=np.int64)
    np.add.at(table, (cluster_idx.reshape(-1), class_idx.reshape(-1)), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    colour = dict(zip(rows.tolist(), cols.tolist()))
    unmatched = [i for i in range(len(cluster_values)) if i not in colour]
    colour.update({i: len(class_values) + k for k, i in enumerate(unmatched)})
    return {cluster_values[i].item(): colour[i] for i in range(len(cluster_values))}


def _palette(n: int) -> np.ndarray:
    """``n`` distinct RGBA colours, ``(n, 4)``: tab10 up to 10; tab20 up to 20, its dark
    shades first so that the first ten stay far apart; evenly spaced turbo beyond."""
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"](np.arange(n))
    if n <= 20:
        return colormaps["tab20"](np.r_[0:20:2, 1:20:2][:n])
    return colormaps["turbo"](np.linspace(0.0, 1.0, n))


def _scatter(
    ax: Any,
    xy: np.ndarray,
    groups: np.ndarray,
    colour_of: Mapping[Any, int],
    palette: np.ndarray,
    title: str,
) -> None:
    """Scatter ``xy`` (N, 2) with each point in ``palette[colour_of[its group]]``; the legend
    (up to 20 groups) lists groups in colour order, so the two panels' legends line up."""
    values, idx = np.unique(groups, return_inverse=True)
    index = np.array([colour_of[v.item()] for v in values], dtype=np.int64)
    colours = palette[index[idx.reshape(-1)]]
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=6, linewidths=0, alpha=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(values) <= 20:
        for i in np.argsort(index, kind="stable"):
            ax.scatter([], [], color=palette[index[i]], s=12, label=str(values[i]))
        ax.legend(fontsize=6, markerscale=1.5, loc="best", frameon=False, ncols=2)


def embedding_figure(
    codes: np.ndarray | torch.Tensor,
    clusters: Any,
    classes: Any | None,
    title: str = "",
    *,
    method: str = "auto",
    seed: int = 0,
) -> Any:
    """The figure :func:`plot_embedding` saves (a matplotlib ``Figure``): one panel coloured
    by cluster and, when ``classes`` is given, one by class, clusters in the colours of their
    Hungarian-matched classes (:func:`match_clusters_to_classes`)."""
    # A bare Figure renders with the Agg canvas: no pyplot global state, no GUI backend needed.
    from matplotlib.figure import Figure

    xy = embed_2d(codes, method=method, seed=seed)
    n = xy.shape[0]
    groups = _as_array(clusters, "clusters").reshape(-1)
    labels = None if classes is None else _as_array(classes, "classes").reshape(-1)
    for name, g in (("clusters", groups), ("classes", labels)):
        if g is not None and g.shape[0] != n:
            raise ValueError(f"{name}: {g.shape[0]} labels for {n} codes")
    if labels is None:
        colour_of = {v.item(): i for i, v in enumerate(np.unique(groups))}
        panels = [("clusters", groups, colour_of)]
    else:
        class_colour = {v.item(): i for i, v in enumerate(np.unique(labels))}
        colour_of = match_clusters_to_classes(groups, labels)
        panels = [("clusters", groups, colour_of), ("true classes", labels, class_colour)]
    palette = _palette(max(max(c.values()) for _, _, c in panels) + 1)
    fig = Figure(figsize=(5.0 * len(panels), 4.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, g, colours) in zip(axes, panels):
        _scatter(ax, xy, g, colours, palette, f"coloured by {name}")
    if title:
        fig.suptitle(title)
    return fig


def save_png(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write a matplotlib ``Figure`` to ``path`` as PNG, atomically (a run killed mid-write
    leaves the previous picture, never a truncated one); returns ``path``."""

    def save(f: IO[bytes]) -> None:
        fig.savefig(f, format="png", dpi=dpi)

    return atomic_write(path, save)


def plot_embedding(
    codes: np.ndarray | torch.Tensor,
    clusters: Any,
    classes: Any | None,
    path: str | Path,
    title: str = "",
    *,
    method: str = "auto",
    seed: int = 0,
) -> Path:
    """Plot a 2-D embedding of ``(N, d)`` codes coloured by cluster and, beside it, by class.

    Clusters are drawn in the colours of the classes they are Hungarian-matched to (for the
    picture only, :func:`match_clusters_to_classes`), so the two panels compare at a glance;
    clusters left without a class get colours no class has.

    Args:
        codes: ``(N, d)`` array or tensor (learned codes, or a preprocessed view).
        clusters: ``(N,)`` predicted clusters.
        classes: ``(N,)`` true classes, or None to draw the cluster panel only.
        path: the PNG file, written atomically.
        title: the figure title.
        method, seed: see :func:`embed_2d`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    fig = embedding_figure(codes, clusters, classes, title, method=method, seed=seed)

    return save_png(fig, path)
