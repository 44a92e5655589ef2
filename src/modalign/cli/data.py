"""``modalign data``: list and fetch the named datasets."""

from __future__ import annotations

from pathlib import Path

import typer

# modalign.data (and so torch) is imported inside the commands: `modalign --help` stays fast.

app = typer.Typer(
    help="List, fetch and inspect the named multi-view datasets.", no_args_is_help=True
)

_DATA_DIR_HELP = "Data directory (default: $MODALIGN_DATA, else ~/.cache/modalign)."


def _file_status(name: str, data_dir: Path) -> tuple[str, str]:
    """(presence, checksum note) of a registry dataset."""
    from modalign.data.downloads import expected_sha256
    from modalign.data.errors import MissingDataError
    from modalign.data.registry import REGISTRY, locate_file

    info = REGISTRY[name]
    found, missing = [], []
    for file in info.files:
        try:
            found.append(locate_file(info, file, data_dir))
        except MissingDataError:
            missing.append(file.name)
    if missing:
        presence = "missing: " + ", ".join(missing)
    else:
        presence = "present: " + ", ".join(str(p) for p in found)
    notes = []
    for file in info.files:
        expected, origin = expected_sha256(file, data_dir)
        if origin == "none":
            notes.append(f"{file.name}: sha256 unknown, recorded at first download")
        elif origin == "recorded":
            notes.append(f"{file.name}: sha256 recorded at first download {expected[:12]}...")
    return presence, "; ".join(notes)


@app.command("list")
def list_datasets(
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
) -> None:
    """Show the named datasets and whether each is present in the data directory."""
    from modalign.data.builtin import find_fsdd
    from modalign.data.errors import MissingDataError
    from modalign.data.load import BUILTIN
    from modalign.data.registry import REGISTRY, data_home

    root = data_home(data_dir)
    typer.echo(f"data directory: {root}")
    rows = []
    for name, info in REGISTRY.items():
        presence, note = _file_status(name, root)
        size = f"{info.n_views} x {info.n_samples}, {info.n_classes} classes"
        rows.append((name, size, presence, note, info.description))
    needs = []
    mnist = "present (mnist)"
    if not _file_status("mnist", root)[0].startswith("present"):
        needs.append("mnist (`modalign data fetch mnist`)")
        mnist = "missing: needs mnist (`modalign data fetch mnist`)"
    try:
        find_fsdd(root)
    except MissingDataError:
        needs.append("the FSDD recordings in fsdd/recordings")
    av = "missing: needs " + " and ".join(needs) if needs else "present (mnist + fsdd)"
    rows.append(("digits", "2 x 1797, 10 classes", "built in", "", BUILTIN["digits"]))
    rows.append(("avdigits", "2 x 2400/300/300, 10 classes", av, "", BUILTIN["avdigits"]))
    rows.append(
        ("avdigits-label", "3 x 2400/300/300, 10 classes", av, "", BUILTIN["avdigits-label"])
    )
    rows.append(
        ("avdigits-tokens", "2 x 2400/300/300, 10 classes", av, "", BUILTIN["avdigits-tokens"])
    )
    rows.append(("mnist-label", "2 x 8000/1001/999, 10 classes", mnist, "", BUILTIN["mnist-label"]))
    rows.append(
        ("digits-label", "2 x 1438/180/179, 10 classes", "built in", "", BUILTIN["digits-label"])
    )
    width = max(len(r[0]) for r in rows)
    size_width = max(len(r[1]) for r in rows)
    for name, size, presence, note, desc in rows:
        typer.echo(f"{name:<{width}}  {size:<{size_width}}  {desc}")
        typer.echo(f"{'':<{width}}  {presence}")
        if note:
            typer.echo(f"{'':<{width}}  {note}")


@app.command("fetch")
def fetch_datasets(
    names: list[str] = typer.Argument(..., help="Dataset names (see `modalign data list`)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
    mirror: str | None = typer.Option(
        None,
        "--mirror",
        envvar="MODALIGN_MIRROR",
        help="Fetch BASE_URL/<file name> instead of each file's public address.",
    ),
    force: bool = typer.Option(False, "--force", help="Download again even if present."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    timeout: float = typer.Option(60.0, "--timeout", help="Network timeout in seconds."),
) -> None:
    """Download datasets into the data directory and verify their sha256."""
    from modalign.data.downloads import fetch
    from modalign.data.errors import DataError
    from modalign.data.load import BUILTIN
    from modalign.data.registry import data_home

    if not timeout > 0:  # a timeout of 0 or less would make every request fail at once
        typer.echo(
            f"error: --timeout must be a positive number of seconds, got {timeout}", err=True
        )
        raise typer.Exit(code=2)
    root = data_home(data_dir)
    for name in names:
        if name.lower() in BUILTIN:
            typer.echo(
                f"error: '{name}' is built in, not fetched"
                + (
                    " (fetch mnist and copy FSDD recordings for it)"
                    if name.lower().startswith("avdigits")
                    else " (fetch mnist for it)"
                    if name.lower() == "mnist-label"
                    else ""
                ),
                err=True,
            )
            raise typer.Exit(code=2)
        try:
            paths = fetch(
                name,
                root,
                mirror=mirror,
                force=force,
                progress=progress,
                timeout=timeout,
                echo=typer.echo,
            )
        except DataError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from exc
        typer.echo(f"{name}: ok ({', '.join(str(p) for p in paths)})")
