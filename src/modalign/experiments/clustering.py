"""The multi-view clustering protocol behind ``modalign cluster``.

For every seed: preprocess the views (fitted on the data without labels: clustering is
transductive), in the unaligned setting permute each view's rows independently with
:func:`~modalign.data.unalign`, run every method, and score its clusters against the labels
of the rows it clustered. No label is used before scoring, and model selection inside the
learned methods uses their training objective only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from modalign.data import MultiViewDataset, Preprocessor, load_dataset, unalign
from modalign.eval import (
    BASELINES,
    clustering_scores,
    coupling_quality,
    kmeans_best_view,
    mean_std_text,
    merge_records,
    plot_embedding,
    plot_robustness_curves,
    read_results,
    records_from_scores,
    write_results,
)
from modalign.eval.baselines import ALIGNED_ONLY
from modalign.methods import OTM, OTMConfig

#: Learned methods: name -> mixer of :class:`~modalign.methods.OTMConfig`.
LEARNED = {"otm": "fgw", "otm-wb": "wb", "mwae": "none"}
#: Baselines: command-line name -> name in :data:`modalign.eval.BASELINES`.
BASELINE_NAMES = {
    "majority": "majority",
    "kmeans-concat": "kmeans_concat",
    "kmeans-best-view": "kmeans_best_view",
    "spectral": "spectral_concat",
}
METHODS = (*LEARNED, *BASELINE_NAMES)
#: aligned: row i of every view is one sample; unaligned: a share ``rate`` of the rows
#: permuted per view and nothing may use the correspondence; partial: the same, but the rows
#: left in place are known pairs that the learned methods may use.
SETTINGS = ("aligned", "unaligned", "partial")
#: Shares of known pairs of the known-pairs curve (DESIGN.md 2.1), and its default methods:
#: OTM, its ablation without the mixer, and the best single view (which needs no pairs).
KNOWN_PAIRS = (0.0, 0.1, 0.3, 0.5, 1.0)
KNOWN_PAIRS_METHODS = ("otm", "mwae", "kmeans-best-view")


def known_pairs_label(share: float) -> str:
    """The setting name of a partially aligned table, e.g. ``"known pairs 0.3"``."""
    return f"known pairs {share:g}"


#: Methods that concatenate views and so need aligned rows.
ALIGNED_ONLY_METHODS = tuple(m for m, b in BASELINE_NAMES.items() if b in ALIGNED_ONLY)


def _scores(ds: MultiViewDataset, pred) -> dict[str, float]:
    """Scores of aligned predictions (N,), or the mean over views of per-view predictions
    given as ``{view index: labels of that view's rows}``."""
    if isinstance(pred, np.ndarray):
        return clustering_scores(ds.row_labels(0).cpu().numpy(), pred)
    per_view = [clustering_scores(ds.row_labels(v).cpu().numpy(), p) for v, p in pred.items()]
    return {k: float(np.mean([s[k] for s in per_view])) for k in per_view[0]}


def _coupling_diagnostic(ds: MultiViewDataset, couplings) -> dict[str, float]:
    """Quality of the cross-view coupling of views 0 and 1 through the barycenter,
    ``T_0^T diag(1/p) T_1``: for the report only (labels and true identities)."""
    t0, t1 = couplings[0], couplings[1]
    cross = t0.transpose(0, 1) @ (t1 / t0.sum(1, keepdim=True).clamp_min(1e-30))
    return coupling_quality(
        cross,
        ds.row_labels(0).cpu().numpy(),
        ds.row_labels(1).cpu().numpy(),
        ds.ids[0].cpu().numpy(),
        ds.ids[1].cpu().numpy(),
    )


def _diagnostics_markdown(diagnostics: list[dict]) -> str:
    if not diagnostics:
        return ""
    lines = [
        "## Coupling quality (views 0 and 1, through the barycenter; labels used for this "
        "report only)",
        "",
        "| method | seed | same-class mass | chance | true-pair mass |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for d in diagnostics:
        lines.append(
            f"| {d['method']} | {d['seed']} | {d['same_class']:.3f} | "
            f"{d['chance']:.3f} | {d.get('true_pairs', float('nan')):.4f} |"
        )
    return "\n".join(lines)


def run_clustering(
    dataset: str,
    *,
    setting: str = "aligned",
    methods: Sequence[str] = METHODS,
    seeds: Sequence[int] = range(5),
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    preprocess: str = "auto",
    rate: float = 1.0,
    config: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run the clustering table and return its records (see :mod:`modalign.eval.report`).

    ``out``: write ``results.json``, ``results.md``, ``embedding.png`` and per-run
    checkpoints there; runs already in ``results.json`` are not repeated (an interrupted
    table resumes), and each finished run is saved at once. ``config`` overrides fields of
    :class:`~modalign.methods.OTMConfig` for the learned methods.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: choose from {list(METHODS)}")
    aligned = setting == "aligned"
    label = setting if setting != "partial" else known_pairs_label(1.0 - rate)
    if not aligned:
        refused = [m for m in methods if m in ALIGNED_ONLY_METHODS]
        if refused:
            raise ValueError(
                f"{refused} concatenate views and need aligned rows; drop them "
                "for the unaligned setting"
            )
    raw = load_dataset(dataset, data_dir=data_dir)
    if raw.labels is None:
        raise ValueError(f"dataset {dataset!r} has no labels to score clusters against")
    name = Path(dataset).stem if Path(dataset).suffix else dataset
    ds = Preprocessor(preprocess).fit(raw).transform(raw)
    n_clusters = int(raw.labels.max()) + 1
    out = Path(out) if out is not None else None
    records = read_results(out) if out is not None and (out / "results.json").exists() else []
    done = {(r["dataset"], r["setting"], r["method"], r["seed"]) for r in records}
    say = progress or (lambda _msg: None)
    embedding = None
    diagnostics: list[dict] = []
    for seed in seeds:
        data = ds if aligned else unalign(ds, rate, seed=seed)
        views = list(data.views)
        for method in methods:
            if (name, label, method, seed) in done:
                continue
            start = time.perf_counter()
            if method in LEARNED:
                cfg = OTMConfig(n_clusters=n_clusters, mixer=LEARNED[method], **(config or {}))
                ckpt = (
                    None
                    if out is None
                    else out / "checkpoints" / f"{method}-{label.replace(' ', '-')}-{seed}.pt"
                )
                known = data.paired if setting == "partial" else None
                model = OTM(cfg, random_state=seed).fit(
                    views, aligned=aligned, known_pairs=known, checkpoint=ckpt
                )
                pred = model.predict(views, aligned=aligned)
                if embedding is None:  # the plot: fused codes, or view 0's codes if unaligned
                    codes = (
                        model.fused_codes(views, aligned=True)[0]
                        if aligned
                        else model.transform(views)[0]
                    )
                    clusters = pred if aligned else pred[0]
                    embedding = (method, codes.cpu().numpy(), clusters, data.row_labels(0))
                if not aligned:
                    pred = dict(enumerate(pred))
                    couplings = model.fused_codes(views, aligned=False)[1]
                    diagnostics.append(
                        {
                            "dataset": name,
                            "setting": label,
                            "method": method,
                            "seed": seed,
                            **_coupling_diagnostic(data, couplings),
                        }
                    )
            else:
                if method == "kmeans-best-view":
                    labels, view = kmeans_best_view(views, n_clusters, seed, aligned=aligned)
                else:
                    fn = BASELINES[BASELINE_NAMES[method]]
                    labels, view = fn(views, n_clusters, seed, aligned=aligned), 0
                # Unaligned: a single-view clustering is scored on that view's rows.
                pred = labels if aligned else {view: labels}
            seconds = time.perf_counter() - start
            scores = _scores(data, pred)
            new = records_from_scores(name, label, method, seed, scores, seconds)
            records = merge_records(records, new)
            say(
                f"{method:>16} seed {seed}: purity {scores['purity']:.3f} "
                f"accuracy {scores['accuracy']:.3f} nmi {scores['nmi']:.3f} "
                f"ari {scores['ari']:.3f} ({seconds:.1f} s)"
            )
            if out is not None:
                write_results(out, records, extra_markdown=_diagnostics_markdown(diagnostics))
    if out is not None and embedding is not None:
        method, codes, clusters, labels = embedding
        plot_embedding(
            codes,
            clusters,
            labels.cpu().numpy(),
            out / "embedding.png",
            title=f"{name}: {'fused' if aligned else 'view 0'} {method} codes",
        )
    return records


def run_known_pairs(
    dataset: str,
    *,
    shares: Sequence[float] = KNOWN_PAIRS,
    methods: Sequence[str] = KNOWN_PAIRS_METHODS,
    seeds: Sequence[int] = range(5),
    out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    **kwargs,
) -> list[dict]:
    """Clustering accuracy against the share of known pairs (DESIGN.md 2.1).

    For each share ``s`` the table of the partially aligned setting is run with ``rate = 1 - s``
    (:func:`run_clustering` with ``setting="partial"``): a share ``1 - s`` of the rows permuted
    per view, the others known pairs. Every share is scored the same way, per view (each view's
    rows clustered from its own codes, the mean over views), so the points of the curve are
    comparable; share 0 is the unaligned setting, share 1 trains on aligned rows. With ``out``,
    ``results.md`` gains a table of accuracy per share and ``known_pairs.png`` the curve.
    ``kwargs`` go to :func:`run_clustering`.
    """
    bad = [s for s in shares if not 0.0 <= float(s) <= 1.0]
    if bad or not shares:
        raise ValueError(f"shares of known pairs must lie in [0, 1], got {list(shares)}")
    records: list[dict] = []
    for share in sorted(float(s) for s in shares):
        if progress is not None:
            progress(f"-- share of known pairs {share:g}")
        records = run_clustering(
            dataset,
            setting="partial",
            methods=methods,
            seeds=seeds,
            out=out,
            rate=1.0 - share,
            progress=progress,
            **kwargs,
        )
    records = [r for r in records if r["setting"].startswith("known pairs ")]
    if out is not None:
        table, panels = _known_pairs_summary(records)
        write_results(
            out,
            records,
            extra_markdown=table + "\n\n![accuracy against known pairs](known_pairs.png)\n",
        )
        plot_robustness_curves(
            panels,
            Path(out) / "known_pairs.png",
            title=f"{records[0]['dataset']}: clustering against the share of known pairs",
            xlabel="share of known pairs",
        )
    return records


def _known_pairs_summary(records: Sequence[dict]) -> tuple[str, dict]:
    """The Markdown table (Hungarian accuracy, mean ± std per method and share) and the
    plot's panels."""
    acc: dict[str, dict[float, list[float]]] = {}
    for r in records:
        if r["metric"] == "accuracy":
            share = float(r["setting"].removeprefix("known pairs "))
            acc.setdefault(r["method"], {}).setdefault(share, []).append(r["value"])
    shares = sorted({s for per in acc.values() for s in per})
    lines = [
        "## Accuracy against the share of known pairs (per view, mean ± std over seeds)",
        "",
        "| method | " + " | ".join(f"{s:g}" for s in shares) + " |",
        "| --- |" + " :---: |" * len(shares),
    ]
    lines += [
        f"| {m} | " + " | ".join(mean_std_text(per.get(s, [])) for s in shares) + " |"
        for m, per in acc.items()
    ]
    lines_panel = {
        m: (
            sorted(per),
            [float(np.mean(per[s])) for s in sorted(per)],
            [float(np.std(per[s], ddof=1)) if len(per[s]) > 1 else 0.0 for s in sorted(per)],
        )
        for m, per in acc.items()
    }
    return "\n".join(lines), {"Hungarian accuracy": lines_panel}
