"""``modalign robustness``: supervised fusion models and multimodal transformers under missing
modalities and noise."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from modalign.cli._errors import option_list, user_errors
from modalign.cli._output import print_results


def _grid(text: str, flag: str) -> list[float]:
    """``"0.1,0.2,1"`` as numbers; a ValueError naming ``flag`` otherwise."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def robustness(
    dataset: str = typer.Option(
        "avdigits",
        help="avdigits, avdigits-tokens (token views, for the transformers), or a labelled "
        "multi-view dataset (registry name or file).",
    ),
    models: str | None = typer.Option(
        None,
        help="Comma-separated models. Fusion MLPs on 2-D views (avdigits ...): late, tensor, "
        "lowrank, mi. Transformers on token views (avdigits-tokens): transformer-late, "
        "transformer-early. Default: the four fusions, or both transformers on token data.",
    ),
    otm: str = typer.Option("both", help="OTM augmentation of the fusion MLPs: off | on | both."),
    align: str = typer.Option(
        "both", help="Wasserstein alignment of the transformers: off | on | both."
    ),
    alphas: str = typer.Option(
        "0.1,0.2,1,5",
        help="Alignment weights tried per seed; the best on the validation split is kept.",
    ),
    betas: str = typer.Option(
        "0.5", help="IPOT proximal steps tried per seed (with every alpha), chosen likewise."
    ),
    baselines: bool = typer.Option(
        True,
        "--baselines/--no-baselines",
        help="Add transformer-X+dropout (modality dropout 0.3) for every transformer.",
    ),
    seeds: int = typer.Option(5, min=1, help="Seeds 0..N-1; tables show mean ± std."),
    out: Path = typer.Option(Path("runs/robustness"), help="Folder for results and checkpoints."),
    data_dir: Path | None = typer.Option(None, help="Data folder (default $MODALIGN_DATA)."),
    preprocess: str = typer.Option("auto", help="auto | l2 | zscore | tfidf+l2 | minmax ..."),
    epochs: int | None = typer.Option(None, min=1, help="Maximum training epochs."),
    patience: int | None = typer.Option(None, min=1, help="Early-stopping patience (epochs)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, mps ..."),
    progress_bars: bool = typer.Option(
        False, "--progress", help="Show per-epoch progress bars (with --jobs 1)."
    ),
    jobs: int = typer.Option(
        1,
        min=1,
        help="Train this many models at once (each alpha of a +align model is one), in "
        "processes of one thread each; the records do not depend on it.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON instead."),
) -> None:
    """Train fusion models with and without OTM, or transformers with and without alignment
    (and with modality dropout); test them clean, with modalities missing, with noise and from
    single modalities; write results.json, results.md, robustness.png."""
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
            models=None if models is None else option_list(models, "--models"),
            otm=otm,
            align=align,
            alphas=_grid(alphas, "--alphas"),
            betas=_grid(betas, "--betas"),
            baselines=baselines,
            seeds=range(seeds),
            out=out,
            data_dir=data_dir,
            preprocess=preprocess,
            config=config,
            progress=None if as_json else typer.echo,
            progress_bars=progress_bars,
            jobs=jobs,
        )
    print_results(records, out, as_json=as_json, started=start, extra=("robustness.png",))
