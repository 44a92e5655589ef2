"""How the protocol commands end: the records as JSON, or the results table and where it went."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import typer


def print_results(
    records: Sequence[dict],
    out: Path,
    *,
    as_json: bool,
    started: float,
    extra: Sequence[str] = (),
) -> None:
    """``--json``: the records; otherwise ``out/results.md``, the wall time since ``started``
    (``time.perf_counter()``) and the files written (``extra``: more names in ``out``)."""
    if as_json:
        typer.echo(json.dumps(list(records), indent=1))
        return
    typer.echo("")
    typer.echo((out / "results.md").read_text(encoding="utf-8"))
    files = ", ".join(f"{out}/{name}" for name in ("results.json", "results.md", *extra))
    typer.echo(f"{time.perf_counter() - started:.0f} s; results in {files}")
