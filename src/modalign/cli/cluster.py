"""``modalign cluster``: the multi-view clustering table, from one command."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from modalign.cli._errors import user_errors

DEFAULT_METHODS = "otm,otm-wb,mwae,majority,kmeans-concat,kmeans-best-view,spectral"


def cluster(
    dataset: str = typer.Option(..., help="Registry name (see `modalign data list`) or a file."),
    setting: str = typer.Option(
        "aligned",
        help="aligned | unaligned | partial (accuracy against the share of known pairs).",
    ),
    methods: str = typer.Option(DEFAULT_METHODS, help="Comma-separated methods."),
    seeds: int = typer.Option(5, min=1, help="Seeds 0..N-1; tables show mean ± std."),
    out: Path = typer.Option(Path("runs/cluster"), help="Folder for results and checkpoints."),
    data_dir: Path | None = typer.Option(None, help="Data folder (default $MODALIGN_DATA)."),
    preprocess: str = typer.Option("auto", help="auto | l2 | zscore | tfidf+l2 | minmax ..."),
    rate: float = typer.Option(1.0, help="Unaligned: fraction of each view's rows permuted."),
    known_pairs: str = typer.Option(
        "0,0.1,0.3,0.5,1", help="Partial: the shares of known pairs, comma-separated."
    ),
    epochs: int | None = typer.Option(None, help="Training epochs of the learned methods."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON instead."),
) -> None:
    """Train and evaluate clustering methods; write results.json, results.md and a plot."""
    from modalign.eval import markdown_table
    from modalign.experiments.clustering import (
        ALIGNED_ONLY_METHODS,
        KNOWN_PAIRS_METHODS,
        run_clustering,
        run_known_pairs,
    )

    names = [m.strip() for m in methods.split(",") if m.strip()]
    if methods == DEFAULT_METHODS and setting == "unaligned":
        names = [m for m in names if m not in ALIGNED_ONLY_METHODS]
    elif methods == DEFAULT_METHODS and setting == "partial":
        names = list(KNOWN_PAIRS_METHODS)
    common = dict(
        methods=names,
        seeds=range(seeds),
        out=out,
        data_dir=data_dir,
        preprocess=preprocess,
        config=None if epochs is None else {"epochs": epochs, "warmup_epochs": max(1, epochs // 4)},
        progress=None if as_json else typer.echo,
    )
    start = time.perf_counter()
    with user_errors(ValueError, FileNotFoundError):
        if setting == "partial":
            try:
                shares = [float(s) for s in known_pairs.split(",") if s.strip()]
            except ValueError:
                raise ValueError(
                    f"--known-pairs must be numbers separated by commas, got {known_pairs!r}"
                ) from None
            records = run_known_pairs(dataset, shares=shares, **common)
        else:
            records = run_clustering(dataset, setting=setting, rate=rate, **common)
    if as_json:
        typer.echo(json.dumps(records, indent=1))
        return
    typer.echo("")
    typer.echo(markdown_table(records))
    typer.echo(
        f"\n{time.perf_counter() - start:.0f} s; results in {out}/results.json, {out}/results.md"
    )
