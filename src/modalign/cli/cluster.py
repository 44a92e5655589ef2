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
    setting: str = typer.Option("aligned", help="aligned | unaligned"),
    methods: str = typer.Option(DEFAULT_METHODS, help="Comma-separated methods."),
    seeds: int = typer.Option(5, min=1, help="Seeds 0..N-1; tables show mean ± std."),
    out: Path = typer.Option(Path("runs/cluster"), help="Folder for results and checkpoints."),
    data_dir: Path | None = typer.Option(None, help="Data folder (default $MODALIGN_DATA)."),
    preprocess: str = typer.Option("auto", help="auto | l2 | zscore | tfidf+l2 | minmax ..."),
    rate: float = typer.Option(1.0, help="Unaligned: fraction of each view's rows permuted."),
    epochs: int | None = typer.Option(None, help="Training epochs of the learned methods."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON instead."),
) -> None:
    """Train and evaluate clustering methods; write results.json, results.md and a plot."""
    from modalign.eval import markdown_table
    from modalign.experiments.clustering import ALIGNED_ONLY_METHODS, run_clustering

    names = [m.strip() for m in methods.split(",") if m.strip()]
    if setting == "unaligned" and methods == DEFAULT_METHODS:
        names = [m for m in names if m not in ALIGNED_ONLY_METHODS]
    start = time.perf_counter()
    with user_errors(ValueError, FileNotFoundError):
        records = run_clustering(
            dataset,
            setting=setting,
            methods=names,
            seeds=range(seeds),
            out=out,
            data_dir=data_dir,
            preprocess=preprocess,
            rate=rate,
            config=None
            if epochs is None
            else {"epochs": epochs, "warmup_epochs": max(1, epochs // 4)},
            progress=None if as_json else typer.echo,
        )
    if as_json:
        typer.echo(json.dumps(records, indent=1))
        return
    typer.echo("")
    typer.echo(markdown_table(records))
    typer.echo(
        f"\n{time.perf_counter() - start:.0f} s; results in {out}/results.json, {out}/results.md"
    )
