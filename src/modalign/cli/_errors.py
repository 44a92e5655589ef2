"""How every command reports a user's mistake: one line on stderr and exit status 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer


@contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Turn the given exceptions (default ``ValueError``) into ``error: ...`` and exit 2,
    instead of a traceback: they carry a message written for the user (what, where, why)."""
    caught = kinds or (ValueError,)
    try:
        yield
    except caught as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
