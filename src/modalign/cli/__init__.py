"""The ``modalign`` command line: one typer app, one sub-app per area."""

from __future__ import annotations

import typer

from modalign import __version__
from modalign.cli.cluster import cluster
from modalign.cli.data import app as data_app
from modalign.cli.demo import demo
from modalign.cli.federated import app as federated_app
from modalign.cli.generate import generate
from modalign.cli.represent import represent
from modalign.cli.robustness import robustness

app = typer.Typer(
    name="modalign",
    help="Robust multimodal learning with optimal transport.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(federated_app, name="federated")
app.command("demo")(demo)
app.command("cluster")(cluster)
app.command("robustness")(robustness)
app.command("represent")(represent)
app.command("generate")(generate)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"modalign {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Robust multimodal learning with optimal transport."""


def main() -> None:
    app()
