"""The command line: help, version and the demo on the embedded digits."""

from __future__ import annotations

import json
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
def test_demo_clusters_the_embedded_digits(tmp_path: Path):
    result = runner.invoke(
        app,
        [
            "demo",
            "--seeds",
            "1",
            "--epochs",
            "4",
            "--methods",
            "otm,majority",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "results.json").read_text())
    accuracy = {r["method"]: r["value"] for r in records if r["metric"] == "accuracy"}
    assert set(accuracy) == {"otm", "majority"}
    # Ten balanced classes: the majority class is right about 10 % of the time; OTM's clusters
    # after a few epochs already follow the digits far better than that.
    assert accuracy["majority"] < 0.15
    assert accuracy["otm"] > 2 * accuracy["majority"]
    assert "| otm |" in result.output
    png = tmp_path / "embedding.png"
    assert png.exists() and png.stat().st_size > 1000
