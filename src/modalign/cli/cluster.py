"""``modalign cluster``: the multi-view clustering table, from one command."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from modalign.cli._errors import option_list, user_errors
from modalign.cli._output import print_results


def cluster(
    dataset: str = typer.Option(..., help="Registry name (see `modalign data list`) or a file."),
    setting: str = typer.Option(
        "aligned",
        help="aligned | unaligned | partial (accuracy against the share of known pairs).",
    ),
    methods: str | None = typer.Option(
        None,
        help="Comma-separated methods. Default per setting: aligned otm, otm-no-structure, "
        "mwae, mwae-no-structure, otm-code-fusion, majority, kmeans-concat, kmeans-best-view, "
        "spectral, graph-concat, graph-fused, graph-best-view; unaligned otm, "
        "otm-no-structure, mwae, mwae-no-structure, majority, kmeans-best-view, "
        "graph-best-view, graph-each-view; partial otm, otm-code-fusion, otm-spread, mwae, "
        "kmeans-best-view, graph-each-view, graph-fused (graph-*: OTM's clustering head alone "
        "on the raw views, no training; graph-fused: with OTM's graph fusion; "
        "*-no-structure: without the structure term; otm-code-fusion: OTM predicting from "
        "the codes side by side, or each view's own, instead of the fused graphs; otm-spread: "
        "OTM with pair_fusion spread; otm-wb: OTM with the Wasserstein barycenter, by name).",
    ),
    seeds: int = typer.Option(5, min=1, help="Seeds 0..N-1; tables show mean ± std."),
    out: Path = typer.Option(Path("runs/cluster"), help="Folder for results and checkpoints."),
    data_dir: Path | None = typer.Option(None, help="Data folder (default $MODALIGN_DATA)."),
    preprocess: str = typer.Option("auto", help="auto | l2 | zscore | tfidf+l2 | minmax ..."),
    rate: float | None = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Unaligned only: fraction of each view's rows permuted (default 1).",
    ),
    known_pairs: str = typer.Option(
        "0,0.1,0.3,0.5,1", help="Partial: the shares of known pairs, comma-separated."
    ),
    epochs: int | None = typer.Option(
        None,
        min=1,
        help="Training epochs N of the learned methods (default 100); the first N // 5 are "
        "warm-up (plain autoencoding before mixing starts), 20 of the default 100.",
    ),
    lambda_structure: float | None = typer.Option(
        None,
        min=0.0,
        help="Weight of the learned methods' structure term (codes keep each view's input "
        "distances; OTMConfig.lambda_structure, default 4); the *-no-structure ablations "
        "ignore it.",
    ),
    fusion: str | None = typer.Option(
        None,
        help="How the learned methods' views meet when they predict (OTMConfig.fusion): graphs "
        "(default: their kNN graphs averaged over the rows known to be the same sample) or "
        "codes (aligned codes side by side, otherwise each view's own); otm-code-fusion "
        "always uses codes. Training does not depend on it: checkpoints are reused.",
    ),
    pair_fusion: str | None = typer.Option(
        None,
        help="Partial: how the known pairs reach the other rows (OTMConfig.pair_fusion), "
        "joined (default: every row clustered at once on one graph joined through the known "
        "pairs) or spread (the known pairs clustered alone, then label spreading on each "
        "view's graph); otm-spread always uses spread. Prediction only; the graph-fused "
        "baseline follows it.",
    ),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, mps ..."),
    progress_bars: bool = typer.Option(
        False, "--progress", help="Show per-epoch progress bars (with --jobs 1)."
    ),
    jobs: int = typer.Option(
        1,
        min=1,
        help="Runs (method, seed) in this many processes at once, one thread each; the "
        "records do not depend on it.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON instead."),
) -> None:
    """Train and evaluate clustering methods; write results.json, results.md and a plot."""
    from modalign.experiments.clustering import (
        DEFAULT_METHODS,
        epochs_config,
        run_clustering,
        run_known_pairs,
    )
    from modalign.utils import check_device

    start = time.perf_counter()
    with user_errors(ValueError, FileNotFoundError):
        if rate is not None and setting != "unaligned":
            raise ValueError(
                f"--rate applies to --setting unaligned only, not {setting!r} (partial takes "
                "the shares of known pairs from --known-pairs)"
            )
        names = (
            list(DEFAULT_METHODS.get(setting, ()))
            if methods is None
            else option_list(methods, "--methods")
        )
        common = dict(
            methods=names,
            seeds=range(seeds),
            out=out,
            data_dir=data_dir,
            preprocess=preprocess,
            config={
                "device": check_device(device),
                **epochs_config(epochs),
                **({} if lambda_structure is None else {"lambda_structure": lambda_structure}),
                **({} if fusion is None else {"fusion": fusion}),
                **({} if pair_fusion is None else {"pair_fusion": pair_fusion}),
            },
            progress=None if as_json else typer.echo,
            run_bar=True,  # on stderr: --json's stdout stays plain JSON
            progress_bars=progress_bars,
            jobs=jobs,
        )
        if setting == "partial":
            records = run_known_pairs(dataset, shares=_shares(known_pairs), **common)
        else:
            records = run_clustering(
                dataset, setting=setting, rate=1.0 if rate is None else rate, **common
            )
    print_results(records, out, as_json=as_json, started=start)


def _shares(known_pairs: str) -> list[float]:
    """The shares of ``--known-pairs``; a ValueError that names the option otherwise."""
    try:
        return [float(s) for s in known_pairs.split(",") if s.strip()]
    except ValueError:
        raise ValueError(
            f"--known-pairs must be numbers separated by commas, got {known_pairs!r}"
        ) from None
