"""The multi-view clustering protocol behind ``modalign cluster``.

For every seed: preprocess the views (fitted on the data without labels: clustering is
transductive), in the unaligned setting permute each view's rows independently with
:func:`~modalign.data.unalign`, run every method, and score its clusters against the labels
of the rows it clustered. No label is used before scoring, and model selection inside the
learned methods uses their training objective only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from modalign.data import MultiViewDataset, Preprocessor, load_dataset, unalign
from modalign.data.builtin import refuse_label_view
from modalign.data.load import check_classes
from modalign.eval import (
    balanced_accuracy_cap,
    coupling_quality,
    mean_std_text,
    merge_records,
    plot_embedding,
    plot_robustness_curves,
    read_header,
    read_results,
    records_from_scores,
    run_baseline,
    score_prediction,
    write_results,
)
from modalign.eval.baselines import ALIGNED_ONLY, Prediction
from modalign.eval.metrics import LabelVector
from modalign.experiments.parallel import run_tasks
from modalign.methods import OTM, OTMConfig
from modalign.provenance import (
    check_provenance,
    data_fingerprint,
    dataset_name,
    plain_settings,
    protocol_key,
    run_header,
)
from modalign.train import keyed_checkpoint

#: Learned methods: name -> the :class:`~modalign.methods.OTMConfig` fields that define it
#: (they win over the caller's overrides). ``*-no-structure``: the ablations of the
#: structure term (``lambda_structure`` 0), whatever the caller sets; ``otm-code-fusion``:
#: of the graph fusion of OTM's prediction (``fusion="codes"``: aligned views' codes side by
#: side, and each view's own codes when not aligned); ``otm-spread``: OTM whose partially
#: aligned prediction clusters the known pairs alone and label-spreads to the other rows
#: (``pair_fusion="spread"``, against the default's one joined graph).
LEARNED: dict[str, dict[str, Any]] = {
    "otm": {"mixer": "fgw"},
    "otm-wb": {"mixer": "wb"},
    "mwae": {"mixer": "none"},
    "otm-no-structure": {"mixer": "fgw", "lambda_structure": 0.0},
    "mwae-no-structure": {"mixer": "none", "lambda_structure": 0.0},
    "otm-code-fusion": {"mixer": "fgw", "fusion": "codes"},
    "otm-spread": {"mixer": "fgw", "pair_fusion": "spread"},
}
#: The learned methods of the default tables: OTM, its mixer ablation, and both without the
#: structure term (every table shows what each component adds); OTM(WB) is run by name.
DEFAULT_LEARNED = ("otm", "otm-no-structure", "mwae", "mwae-no-structure")
#: Baselines: command-line name -> name in :data:`modalign.eval.BASELINES`.
BASELINE_NAMES = {
    "majority": "majority",
    "kmeans-concat": "kmeans_concat",
    "kmeans-best-view": "kmeans_best_view",
    "spectral": "spectral_concat",
    # OTM's clustering head alone on the raw views (no training): what learning must beat.
    "graph-concat": "graph_concat",
    "graph-best-view": "graph_best_view",
    "graph-each-view": "graph_each_view",
    # The head alone with the graph fusion of OTM's prediction (aligned: graph averaging;
    # partially aligned: over the known pairs).
    "graph-fused": "graph_fused",
}
METHODS = (*LEARNED, *BASELINE_NAMES)
#: Methods that cluster through OTM's head (and so share its cluster-size setting).
HEAD_METHODS = (*LEARNED, *(m for m in BASELINE_NAMES if m.startswith("graph-")))
#: aligned: row i of every view is one sample; unaligned: a share ``rate`` of the rows
#: permuted per view and nothing may use the correspondence; partial: the same, but the rows
#: left in place are known pairs that the learned methods may use.
SETTINGS = ("aligned", "unaligned", "partial")
#: Shares of known pairs of the known-pairs curve (DESIGN.md 2.1), and its default methods:
#: OTM, its ablations without the graph fusion, with label spreading instead of the joined
#: graph (both predict from OTM's checkpoints) and without the mixer, the best single view,
#: OTM's head alone on each view (no pairs needed) and OTM's head alone with the graph
#: fusion over the known pairs on the raw views (what learning must beat at every share).
KNOWN_PAIRS = (0.0, 0.1, 0.3, 0.5, 1.0)
KNOWN_PAIRS_METHODS = (
    "otm",
    "otm-code-fusion",
    "otm-spread",
    "mwae",
    "kmeans-best-view",
    "graph-each-view",
    "graph-fused",
)
#: The default methods of ``modalign cluster`` per setting: every table shows the trivial
#: baselines, the classical ones and OTM's head alone beside the learned methods.
DEFAULT_METHODS = {
    "aligned": (
        *DEFAULT_LEARNED,
        "otm-code-fusion",
        "majority",
        "kmeans-concat",
        "kmeans-best-view",
        "spectral",
        "graph-concat",
        "graph-fused",
        "graph-best-view",
    ),
    "unaligned": (
        *DEFAULT_LEARNED,
        "majority",
        "kmeans-best-view",
        "graph-best-view",
        "graph-each-view",
    ),
    "partial": KNOWN_PAIRS_METHODS,
}


def epochs_config(epochs: int | None) -> dict[str, int]:
    """The OTMConfig overrides of ``--epochs N`` (``cluster`` and ``demo``): ``N`` epochs of
    which the first ``N // 5`` are warm-up, the rule of the defaults (20 of 100); ``{}`` (the
    defaults) for None."""
    if epochs is None:
        return {}
    if epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {epochs}")
    return {"epochs": epochs, "warmup_epochs": epochs // 5}


def head_config(n_clusters: int, config: Mapping[str, Any] | None) -> OTMConfig:
    """The OTMConfig whose clustering head the graph baselines use: the learned methods' own
    (the caller's overrides), so that the head alone is the same head."""
    return OTMConfig(n_clusters=n_clusters, **(config or {}))


def head_is_balanced(config: OTMConfig) -> bool:
    """Whether the head forces clusters of equal size (``cluster_sizes="balanced"``)."""
    return config.cluster_sizes == "balanced"


def balanced_cap_note(
    labels: LabelVector,
    n_clusters: int,
    config: OTMConfig,
    methods: Iterable[str],
    *,
    all_rows_known: bool = False,
) -> str:
    """The line under a table whose methods cluster through a balanced head: the best accuracy
    reachable with equal cluster sizes (:func:`~modalign.eval.balanced_accuracy_cap`), or ""
    when no method of the table uses such a head. ``all_rows_known``: some of the table's
    runs cluster views whose rows are all known pairs (aligned, or a known-pairs share of 1),
    whose mean graph the head may refine the sizes of (``config.aligned_size_refinement``)."""
    if not head_is_balanced(config) or not any(m in HEAD_METHODS for m in methods):
        return ""
    cap = balanced_accuracy_cap(labels, n_clusters)
    where = "the learned methods and the graph-* baselines force"
    refined = ""
    if all_rows_known and config.aligned_size_refinement:
        where = "the head forces"
        refined = (
            " wherever it clusters one view, the views side by side or a share of known pairs;"
            " on the mean graph of views whose rows are all known pairs (the learned methods"
            " with graph fusion, graph-fused) it lets the sizes follow the graph after matching"
            " (aligned_size_refinement), and the cap does not bind"
        )
    return (
        f"Balanced head: {where} {n_clusters} clusters of equal size, so Hungarian accuracy can "
        f"reach at most {cap:.3f} on this data{refined} (labels used for this report only, "
        "never for a choice)."
    )


def known_pairs_label(share: float) -> str:
    """The setting name of a partially aligned table, e.g. ``"known pairs 0.3"``."""
    return f"known pairs {share:g}"


#: Methods that concatenate views and so need aligned rows.
ALIGNED_ONLY_METHODS = tuple(m for m, b in BASELINE_NAMES.items() if b in ALIGNED_ONLY)


def otm_config(method: str, n_clusters: int, config: Mapping[str, Any] | None) -> OTMConfig:
    """The :class:`~modalign.methods.OTMConfig` of a learned method: ``K``, the caller's
    overrides, and the fields that define the method (:data:`LEARNED`) over them."""
    return OTMConfig(n_clusters=n_clusters, **{**(config or {}), **LEARNED[method]})


def training_config(
    method: str, n_clusters: int, config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What a learned method's checkpoints depend on besides the data, setting and seed: its
    config without the prediction-only fields
    (:meth:`~modalign.methods.OTMConfig.training_settings`)."""
    return plain_settings(otm_config(method, n_clusters, config).training_settings())


def trained_as(method: str, n_clusters: int, config: Mapping[str, Any] | None) -> str:
    """The first learned method in :data:`LEARNED` that trains exactly as ``method`` does
    (equal :func:`training_config`): the name of the checkpoints they share, so that an
    ablation of prediction alone (``otm-code-fusion``, ``otm-spread``) reuses OTM's models
    instead of training a copy. Run one after the other (``--jobs 1``, or different tables)
    they train once; side by side in one table, both may train the same file (written
    atomically, so the last one wins whole)."""
    wanted = training_config(method, n_clusters, config)
    return next(m for m in LEARNED if training_config(m, n_clusters, config) == wanted)


def method_config(method: str, n_clusters: int, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a method's records depend on besides the data, preprocessing, setting and seed:
    every OTMConfig field of a learned method (epochs, learning rate, device...); the number
    of clusters of a baseline, and the head settings of a graph baseline. Results and
    checkpoints are keyed by it."""
    if method in LEARNED:
        return plain_settings(asdict(otm_config(method, n_clusters, config)))
    if method in HEAD_METHODS:  # a graph baseline: OTM's head settings (and where it ran)
        head = asdict(head_config(n_clusters, config))
        used = {
            k: v
            for k, v in head.items()
            if k.startswith(("cluster_", "aligned_", "pair_")) or k == "device"
        }
        return plain_settings({"n_clusters": n_clusters, **used})
    return {"n_clusters": n_clusters}


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
    run_bar: bool = False,
    progress_bars: bool = False,
    jobs: int = 1,
) -> list[dict]:
    """Run the clustering table and return its records (see :mod:`modalign.eval.report`).

    ``out``: write ``results.json``, ``results.md``, ``embedding.png`` and per-run
    checkpoints there; runs already in ``results.json`` are not repeated (an interrupted
    table resumes), and each finished run is saved at once. A folder written for other data,
    preprocessing, setting, rate or method configs is refused with a message naming what
    differs (:func:`modalign.provenance.check_provenance`); checkpoints are keyed by all of
    it. ``config`` overrides fields of :class:`~modalign.methods.OTMConfig` for the learned
    methods (e.g. ``device``, :func:`epochs_config`), and sets the head of the graph
    baselines (:func:`head_config`). ``progress``: called with one line per finished run;
    ``run_bar``: a progress bar over the (method, seed) runs; ``progress_bars``: a bar per
    training epoch of each learned method (on stderr; with ``jobs == 1`` only). ``jobs``:
    runs (method, seed) in that many worker processes of one thread each; records do not
    depend on it.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        what = f"unknown method(s) {unknown}" if unknown else "no method given"
        raise ValueError(f"{what}: choose from {list(METHODS)}")
    # Checked before loading: unalign would refuse it only once the runs have started.
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate (the share of rows permuted) must lie in [0, 1], got {rate}")
    aligned = setting == "aligned"
    label = setting if setting != "partial" else known_pairs_label(1.0 - rate)
    if not aligned:
        refused = [m for m in methods if m in ALIGNED_ONLY_METHODS]
        if refused:
            raise ValueError(
                f"{refused} concatenate views and need aligned rows; drop them "
                "for the unaligned setting"
            )
    raw = refuse_label_view(load_dataset(dataset, data_dir=data_dir), "clustering")
    if raw.labels is None:
        raise ValueError(f"dataset {dataset!r} has no labels to score clusters against")
    check_classes(raw, "clustering")
    learned = [m for m in methods if m in LEARNED]
    if raw.n_views < 2 and learned:
        raise ValueError(
            f"{raw.source}: one view; {learned} mix modalities and need two or more views"
        )
    started = time.perf_counter()
    name = dataset_name(dataset)
    ds = Preprocessor(preprocess).fit(raw).transform(raw)
    n_clusters = int(raw.labels.max()) + 1
    out = Path(out) if out is not None else None
    # Records and checkpoints are reused only when everything that produced them is the same:
    # the folder's key (data, preprocessing, setting) and each method's full config.
    sha = data_fingerprint(raw)
    key = protocol_key(
        "cluster",
        name,
        sha,
        preprocess=preprocess,
        setting=setting,
        rate=rate if setting == "unaligned" else None,
    )
    configs = {m: method_config(m, n_clusters, config) for m in methods}
    records = []
    if out is not None:
        configs = check_provenance(out, read_header(out), key, configs)
        records = read_results(out)
    done = {(r["dataset"], r["setting"], r["method"], r["seed"]) for r in records}
    head = head_config(n_clusters, config)
    todo = sum((name, label, m, s) not in done for s in seeds for m in methods)
    bar = tqdm(total=todo, desc=f"{name} {label}", unit="run", leave=False, disable=not run_bar)
    say = _writer(progress)
    if todo and learned and min(raw.rows) < head.batch_size:
        say(
            f"note: {min(raw.rows)} rows, fewer than the batch size {head.batch_size}: each "
            "epoch of the learned methods is one batch of all rows"
        )
    embedding = None
    diagnostics: list[dict] = []
    tasks = []
    for seed in seeds:
        data = ds if aligned else unalign(ds, rate, seed=seed)
        for method in methods:
            if (name, label, method, seed) in done:
                continue
            ckpt = None
            if out is not None and method in LEARNED:
                ckpt = keyed_checkpoint(
                    out / "checkpoints",
                    f"{trained_as(method, n_clusters, config)}-{label.replace(' ', '-')}-{seed}",
                    {
                        **key,
                        "label": label,
                        "config": training_config(method, n_clusters, config),
                        "seed": seed,
                    },
                )
            tasks.append(
                dict(
                    method=method,
                    seed=seed,
                    data=data,
                    setting=setting,
                    n_clusters=n_clusters,
                    config=config,
                    checkpoint=ckpt,
                    progress_bars=progress_bars and jobs == 1,
                )
            )
    # A task whose checkpoint an earlier task trains goes last, so that with several jobs it
    # usually finds that checkpoint finished rather than training a copy beside it.
    claimed: set = set()
    first, sharing = [], []
    for task in tasks:
        ckpt = task["checkpoint"]
        (sharing if ckpt is not None and ckpt in claimed else first).append(task)
        claimed.add(ckpt)
    tasks = first + sharing
    # The plot shows the first learned run of the table, whichever process finishes first.
    plotted = next((i for i, t in enumerate(tasks) if t["method"] in LEARNED), None)
    for i, task in enumerate(tasks):
        task["embed"] = i == plotted
    # The table's methods are known up front: the ones asked for and those already in the folder.
    in_table = {*methods, *(r["method"] for r in records)}
    cap_note = balanced_cap_note(
        raw.labels, n_clusters, head, in_table, all_rows_known=aligned or rate == 0.0
    )
    # Closed on the way out, error included: the error line then starts on a clean line
    # instead of after the bar's last state.
    try:
        for task, result in run_tasks(_run_one, tasks, jobs):
            method, seed, data = task["method"], task["seed"], task["data"]
            scores, seconds = result["scores"], result["seconds"]
            if result["embedding"] is not None:
                embedding = result["embedding"]
            if result["diagnostic"] is not None:
                diagnostics.append(
                    {"dataset": name, "setting": label, "method": method, "seed": seed}
                    | result["diagnostic"]
                )
            new = records_from_scores(name, label, method, seed, scores, seconds)
            records = _in_table_order(merge_records(records, new), methods)
            say(
                f"{method:>16} seed {seed}: purity {scores['purity']:.3f} "
                f"accuracy {scores['accuracy']:.3f} nmi {scores['nmi']:.3f} "
                f"ari {scores['ari']:.3f} ({seconds:.1f} s)"
            )
            bar.update(1)
            if out is not None:
                header = run_header(
                    key=key,
                    configs=configs,
                    data={"name": name, "sha256": sha, "source": raw.source},
                    started=started,
                    device=str((config or {}).get("device", "cpu")),
                )
                write_results(
                    out,
                    records,
                    extra_markdown="\n\n".join(
                        t for t in (cap_note, _diagnostics_markdown(diagnostics)) if t
                    ),
                    header=header,
                )
    finally:
        bar.close()
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


def _run_one(
    method: str,
    seed: int,
    data: MultiViewDataset,
    *,
    setting: str,
    n_clusters: int,
    config: Mapping[str, Any] | None,
    checkpoint: Path | None,
    progress_bars: bool,
    embed: bool,
) -> dict[str, Any]:
    """One (method, seed) run of the table on its seed's data: fit (learned methods) or run
    the baseline, then score. Returns the scores, the wall time, the codes to plot when
    ``embed``, and the coupling diagnostic of an unaligned learned run."""
    aligned = setting == "aligned"
    views = list(data.views)
    start = time.perf_counter()
    embedding = diagnostic = None
    # The known pairs of the partially aligned setting (learned methods and graph-fused use them).
    known = data.paired.cpu() if setting == "partial" else None
    if method in LEARNED:
        model = OTM(otm_config(method, n_clusters, config), random_state=seed).fit(
            views, aligned=aligned, known_pairs=known, checkpoint=checkpoint, progress=progress_bars
        )
        pred = model.predict(views, aligned=aligned, known_pairs=known)
        if embed:  # the plot: fused codes, or view 0's codes if unaligned
            codes = (
                model.fused_codes(views, aligned=True)[0] if aligned else model.transform(views)[0]
            )
            clusters = pred if aligned else pred[0]
            embedding = (method, codes.cpu().numpy(), clusters, data.row_labels(0))
        prediction: Prediction = {0: pred} if aligned else dict(enumerate(pred))
        if not aligned:
            couplings = model.fused_codes(views, aligned=False)[1]
            diagnostic = _coupling_diagnostic(data, couplings)
    else:
        # Single-view clusterings come back keyed by their view and are scored on that
        # view's rows (the same protocol as eval.evaluate_baselines).
        head = head_config(n_clusters, config)
        prediction = run_baseline(
            BASELINE_NAMES[method],
            views,
            n_clusters,
            seed,
            aligned=aligned,
            head=head,
            known=None if known is None else known.numpy(),
        )
    seconds = time.perf_counter() - start
    return {
        "scores": score_prediction(data, prediction),
        "seconds": seconds,
        "embedding": embedding,
        "diagnostic": diagnostic,
    }


def _in_table_order(records: list[dict], methods: Sequence[str]) -> list[dict]:
    """Records ordered by method as asked, then seed (a stable sort: metrics keep their
    order), so that tables list methods the same way whatever order parallel runs end in."""
    rank = {m: i for i, m in enumerate(methods)}
    return sorted(records, key=lambda r: (rank.get(r["method"], len(rank)), r["seed"]))


def _writer(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    """``progress`` wrapped so that its lines do not break the progress bars (tqdm clears
    and redraws them around each line); a no-op for None."""
    if progress is None:
        return lambda _msg: None

    def say(msg: str) -> None:
        with tqdm.external_write_mode():
            progress(msg)

    return say


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
    started = time.perf_counter()
    bad = [s for s in shares if not 0.0 <= float(s) <= 1.0]
    if bad or not shares:
        raise ValueError(f"shares of known pairs must lie in [0, 1], got {list(shares)}")
    records: list[dict] = []
    for share in sorted(float(s) for s in shares):
        _writer(progress)(f"-- share of known pairs {share:g}")
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
        # The header of the last share's write (same key and configs), timed for all shares.
        header = read_header(out)
        if header is not None:
            header["wall_seconds"] = round(time.perf_counter() - started, 3)
        labels = load_dataset(dataset, data_dir=kwargs.get("data_dir")).labels
        k = int(labels.max()) + 1
        note = balanced_cap_note(
            labels,
            k,
            head_config(k, kwargs.get("config")),
            methods,
            all_rows_known=any(float(s) == 1.0 for s in shares),
        )
        write_results(
            out,
            records,
            extra_markdown="\n\n".join(
                t for t in (table, note, "![accuracy against known pairs](known_pairs.png)") if t
            ),
            header=header,
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
