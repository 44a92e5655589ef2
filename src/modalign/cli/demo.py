"""``modalign demo``: the main job, multi-view clustering, on the embedded ``digits`` data.

The same protocol as ``modalign cluster`` (OTM, its ablation, the classical baselines and
OTM's clustering head alone, scored by purity, Hungarian accuracy, NMI and ARI), with fewer
seeds and epochs, on the embedded digits so that it needs no file.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from modalign.cli._errors import option_list, user_errors

#: The demo's default methods per setting: the learned ones beside the trivial and classical
#: baselines and OTM's head alone on the raw views (graph-*), as in every table.
DEMO_METHODS = {
    "aligned": "otm,mwae,majority,kmeans-concat,kmeans-best-view,spectral,graph-concat,"
    "graph-fused,graph-best-view",
    "unaligned": "otm,mwae,majority,kmeans-best-view,graph-best-view,graph-each-view",
}


def demo(
    setting: str = typer.Option("aligned", help="aligned | unaligned"),
    seeds: int = typer.Option(2, min=1, help="Seeds 0..N-1."),
    epochs: int = typer.Option(
        30,
        min=1,
        help="Training epochs N of OTM and its ablation; the first N // 5 are warm-up "
        "(plain autoencoding before mixing starts).",
    ),
    methods: str | None = typer.Option(
        None,
        help="Comma-separated methods (default per setting, aligned: "
        + DEMO_METHODS["aligned"].replace(",", ", ")
        + "; unaligned: "
        + DEMO_METHODS["unaligned"].replace(",", ", ")
        + ").",
    ),
    out: Path = typer.Option(Path("runs/demo"), help="Folder for results and the plot."),
) -> None:
    """Cluster the digits' two views (left and right image halves) with OTM and baselines."""
    from modalign.experiments.clustering import epochs_config, run_clustering

    if setting not in DEMO_METHODS:
        typer.echo(
            f"error: --setting must be one of {sorted(DEMO_METHODS)}, got {setting!r}", err=True
        )
        raise typer.Exit(2)
    chosen = DEMO_METHODS[setting] if methods is None else methods
    with user_errors(ValueError):
        names = option_list(chosen, "--methods")
    typer.echo(
        f"digits (1797 images, left and right halves as two views), {setting}, "
        f"{seeds} seed(s), {epochs} epochs"
    )
    start = time.perf_counter()
    with user_errors(ValueError):
        run_clustering(
            "digits",
            setting=setting,
            methods=names,
            seeds=range(seeds),
            out=out,
            config=epochs_config(epochs),
            progress=typer.echo,
            run_bar=True,
        )
    typer.echo("")
    typer.echo((out / "results.md").read_text(encoding="utf-8"))
    typer.echo(
        f"{time.perf_counter() - start:.0f} s; results in {out}/results.json and "
        f"{out}/results.md, plot in {out}/embedding.png"
    )
