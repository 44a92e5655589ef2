"""``modalign demo``: the main job, multi-view clustering, on the embedded ``digits`` data.

The same protocol as ``modalign cluster`` (OTM, its ablation and the classical baselines,
scored by purity, Hungarian accuracy, NMI and ARI), with fewer seeds and epochs so that it
finishes in about a minute on two CPU cores and needs no file.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from modalign.cli._errors import user_errors

DEMO_METHODS = "otm,mwae,majority,kmeans-concat,kmeans-best-view,spectral"


def demo(
    setting: str = typer.Option("aligned", help="aligned | unaligned"),
    seeds: int = typer.Option(2, min=1, help="Seeds 0..N-1."),
    epochs: int = typer.Option(30, min=1, help="Training epochs of OTM and its ablation."),
    methods: str = typer.Option(DEMO_METHODS, help="Comma-separated methods."),
    out: Path = typer.Option(Path("runs/demo"), help="Folder for results and the plot."),
) -> None:
    """Cluster the digits' two views (left and right image halves) with OTM and baselines."""
    from modalign.eval import markdown_table
    from modalign.experiments.clustering import ALIGNED_ONLY_METHODS, run_clustering

    names = [m.strip() for m in methods.split(",") if m.strip()]
    if setting == "unaligned":
        names = [m for m in names if m not in ALIGNED_ONLY_METHODS]
    typer.echo(
        f"digits (1797 images, left and right halves as two views), {setting}, "
        f"{seeds} seed(s), {epochs} epochs"
    )
    start = time.perf_counter()
    with user_errors(ValueError):
        records = run_clustering(
            "digits",
            setting=setting,
            methods=names,
            seeds=range(seeds),
            out=out,
            config={"epochs": epochs, "warmup_epochs": max(1, epochs // 5)},
            progress=typer.echo,
        )
    typer.echo("")
    typer.echo(markdown_table(records))
    typer.echo(
        f"\n{time.perf_counter() - start:.0f} s; results in {out}/results.json and "
        f"{out}/results.md, plot in {out}/embedding.png"
    )
