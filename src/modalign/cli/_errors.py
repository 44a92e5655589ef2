"""How every command reports a user's mistake: one line on stderr and exit status 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer


@contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Turn the given exceptions (default ``ValueError``) into ``error: ...`` and exit 2,
    instead of a traceback: they carry a message written for the user (what, where, why).

    ``ValueError`` covers the project's own error types: the data layer's ``DataError``
    (bad files, NaN, one class...) and training's ``NonFiniteLossError`` (a NaN or infinite
    loss, naming the method, epoch, batch and term; the last finite checkpoint is kept).
    The message is put on one line whatever it holds, so that scripts can read it.
    """
    caught = kinds or (ValueError,)
    try:
        yield
    except caught as err:
        typer.echo(f"error: {' '.join(str(err).split())}", err=True)
        raise typer.Exit(2) from err


def option_list(text: str, option: str) -> list[str]:
    """The comma-separated names of ``option`` (e.g. ``--methods``), stripped; a ValueError
    naming the option when there is none (``--methods ,`` would otherwise run nothing, or
    only the references, and report an empty table)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"{option} names nothing, got {text!r}: give one name or more")
    return names
