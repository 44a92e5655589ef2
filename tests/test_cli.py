"""The command line: help, version and the demo on the embedded digits."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modalign import __version__
from modalign.cli import app
from modalign.eval import read_results

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("demo", "data"):
        assert command in result.output


def test_help_states_the_warmup_rule_and_the_head_alone_baselines():
    for command in ("demo", "cluster"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.replace("│", " ").split())  # unwrap rich's help box
        assert "N // 5 are warm-up" in text, command
        assert "graph-best-view" in text, command  # the head alone, in the default methods


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
            "5",
            "--methods",
            "otm,majority",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    records = read_results(tmp_path)
    accuracy = {r["method"]: r["value"] for r in records if r["metric"] == "accuracy"}
    assert set(accuracy) == {"otm", "majority"}
    # Ten balanced classes: the majority class is right about 10 % of the time.
    assert accuracy["majority"] < 0.15
    assert accuracy["otm"] > 2 * accuracy["majority"]
    # The head alone scores about 0.9 here without any training, so accuracy cannot show that
    # OTM trained; its curves can. --epochs 5: warm-up 5 // 5 = 1 epoch (the same rule as
    # `modalign cluster`), then four epochs through the mixer, over which both reconstruction
    # errors must fall (measured: 58.8 -> 25.0 and 48.3 -> 29.3; with lr = 0 they stay flat).
    (path,) = (tmp_path / "checkpoints").glob("otm-*.history.csv")
    with path.open() as f:
        curve = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    assert len(curve) == 5
    assert curve[0]["mixed"] == 0.0 and all(h["mixed"] > 0 for h in curve[1:])
    assert curve[-1]["reconstruction"] < 0.7 * curve[0]["reconstruction"]
    assert curve[-1]["mixed"] < 0.8 * curve[1]["mixed"]
    assert "| otm |" in result.stdout
    assert "Balanced head" in result.stdout  # the cap, printed under the table
    png = tmp_path / "embedding.png"
    assert png.exists() and png.stat().st_size > 1000


def test_demo_refuses_an_unknown_setting(tmp_path: Path):
    result = runner.invoke(app, ["demo", "--setting", "partial", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--setting must be one of ['aligned', 'unaligned']" in result.stderr
