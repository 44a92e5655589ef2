"""``modalign robustness``: supervised fusion models under missing modalities and noise."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from modalign.cli._errors import user_errors
from modalign.cli._output import print_results


def robustness(
    dataset: str = typer.Option(
        "avdigits", help="avdigits, or a labelled multi-view dataset (registry name or file)."
    ),
    models: str = typer.Option("late,tensor,lowrank,mi", help="Comma-separated fusions."),
    otm: str = typer.Option("both", help="OTM augmentation: off | on | both."),
    seeds: int = typer.Option(5, min=1, help="Seeds 0..N-1; tables show mean ± std."),
    out: Path = typer.Option(Path("runs/robustness"), help="Folder for results and checkpoints."),
    data_dir: Path | None = typer.Option(None, help="Data folder (default $MODALIGN_DATA)."),
    preprocess: str = typer.Option("auto", help="auto | l2 | zscore | tfidf+l2 | minmax ..."),
    epochs: int | None = typer.Option(None, min=1, help="Maximum training epochs."),
    patience: int | None = typer.Option(None, min=1, help="Early-stopping patience (epochs)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, mps ..."),
    progress_bars: bool = typer.Option(False, "--progress", help="Show per-epoch progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON instead."),
) -> None:
    """Train fusion models with and without OTM; test them clean, with modalities missing,
    with noise and from single modalities; write results.json, results.md, robustness.png."""
    from modalign.experiments.robustness import run_robustness

    config: dict = {"device": device}
    if epochs is not None:
        config["epochs"] = epochs
    if patience is not None:
        config["patience"] = patience
    start = time.perf_counter()
    with user_errors(ValueError, FileNotFoundError):
        records = run_robustness(
            dataset,
            models=[m.strip() for m in models.split(",") if m.strip()],
            otm=otm,
            seeds=range(seeds),
            out=out,
            data_dir=data_dir,
            preprocess=preprocess,
            config=config,
            progress=None if as_json else typer.echo,
            progress_bars=progress_bars,
        )
    print_results(records, out, as_json=as_json, started=start, extra=("robustness.png",))
