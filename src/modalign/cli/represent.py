"""``modalign represent``: representations learned without labels, judged from every subset of
modalities."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from modalign.cli._errors import option_list, user_errors
from modalign.cli._output import print_results


def represent(
    dataset: str = typer.Option(
        "avdigits",
        help="avdigits, avdigits-label (the label as a training-only modality), mnist-label, "
        "digits-label (an image and the training-only label; fixed splits), or a labelled "
        "multi-view dataset (registry name or file; split 60/20/20 per seed).",
    ),
    methods: str = typer.Option(
        "gmc",
        help="Comma-separated: gmc, gmc-untrained (the same network, untrained), otm, mvae "
        "(product-of-experts posterior mean), wvae (W2 barycenter posterior mean), "
        "wvae-factorised (its shared part), wvae-full (full covariances), vae-untrained (an MVAE "
        "at its initial weights). "
        "majority, raw and supervised always run.",
    ),
    seeds: int = typer.Option(5, min=1, help="Seeds 0..N-1; tables show mean ± std."),
    out: Path = typer.Option(Path("runs/represent"), help="Folder for results and checkpoints."),
    data_dir: Path | None = typer.Option(None, help="Data folder (default $MODALIGN_DATA)."),
    preprocess: str = typer.Option("auto", help="auto | l2 | zscore | tfidf+l2 | minmax ..."),
    subsets: str | None = typer.Option(
        None,
        help="Test subsets, e.g. 'image+audio,audio' (view names or indices joined by '+'); "
        "default: every non-empty subset.",
    ),
    epochs: int | None = typer.Option(None, min=1, help="Training epochs of the methods."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, mps ..."),
    progress_bars: bool = typer.Option(False, "--progress", help="Show per-epoch progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON instead."),
) -> None:
    """Train each method without labels, freeze it, fit MLP and linear probes on complete
    training representations (early stopping on validation) and test them from every subset
    of modalities; measure retrieval, alignment and uniformity between single-modality and
    complete representations. Writes results.json, results.md and embedding plots."""
    from modalign.experiments.represent import run_represent

    config: dict = {"device": device}
    if epochs is not None:
        config["epochs"] = epochs
    start = time.perf_counter()
    with user_errors(ValueError, FileNotFoundError):
        records = run_represent(
            dataset,
            methods=option_list(methods, "--methods"),
            seeds=range(seeds),
            out=out,
            data_dir=data_dir,
            preprocess=preprocess,
            config=config,
            tested=subsets,
            progress=None if as_json else typer.echo,
            progress_bars=progress_bars,
        )
    print_results(records, out, as_json=as_json, started=start)
