"""The command line: help, version and the demo on the embedded digits."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modalign import __version__
from modalign.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("demo", "data"):
        assert command in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"modalign {__version__}"


@pytest.mark.slow
def test_demo_runs_on_the_embedded_digits(tmp_path: Path):
    result = runner.invoke(app, ["demo", "--n-points", "120", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "objective ratio" in result.output
    ratio = float(result.output.split("objective ratio")[1].split()[0])
    # Our barycenter should not be worse than POT's exact solver by more than a few percent.
    assert ratio < 1.05
    png = tmp_path / "barycenter.png"
    assert png.exists() and png.stat().st_size > 1000
