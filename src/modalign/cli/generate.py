"""``modalign generate``: multimodal VAEs judged by what they generate across modalities."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from modalign.cli._errors import option_list, user_errors
from modalign.cli._output import print_results


def generate(
    dataset: str = typer.Option(
        "mnist-label",
        help="mnist-label (MNIST image + one-hot label), digits-label (embedded), avdigits "
        "(image + audio), or a labelled multi-view dataset (split 60/20/20 per seed).",
    ),
    methods: str = typer.Option(
        "mvae,wvae,wvae-factorised",
        help="Comma-separated VAEs: mvae, wvae, wvae-factorised, wvae-full (full covariances). "
        "vae-untrained, the "
        "classifiers of real data and majority always run.",
    ),
    seeds: int = typer.Option(5, min=1, help="Seeds 0..N-1; tables show mean ± std."),
    out: Path = typer.Option(Path("runs/generate"), help="Folder for results and checkpoints."),
    data_dir: Path | None = typer.Option(None, help="Data folder (default $MODALIGN_DATA)."),
    epochs: int | None = typer.Option(
        None,
        min=1,
        help="Training epochs of the VAEs (default: 1,240 optimiser steps, at most 100 epochs; "
        "the best validation epoch is kept).",
    ),
    n_prior: int = typer.Option(1000, min=1, help="Prior samples for the joint coherence."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, mps ..."),
    progress_bars: bool = typer.Option(False, "--progress", help="Show per-epoch progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON instead."),
) -> None:
    """Train each VAE without labels; generate every modality from each other one and from
    all, read the generations' classes with classifiers trained on real data (coherence);
    decode prior samples into every modality (joint coherence); test ELBO and reconstruction
    per modality. Writes results.json, results.md, generation grids and latent plots."""
    from modalign.experiments.generate import run_generate

    config: dict = {"device": device}
    if epochs is not None:
        config["epochs"] = epochs
    start = time.perf_counter()
    with user_errors(ValueError, FileNotFoundError):
        records = run_generate(
            dataset,
            methods=option_list(methods, "--methods"),
            seeds=range(seeds),
            out=out,
            data_dir=data_dir,
            config=config,
            n_prior=n_prior,
            progress=None if as_json else typer.echo,
            progress_bars=progress_bars,
        )
    print_results(records, out, as_json=as_json, started=start)
