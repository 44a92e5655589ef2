"""``modalign cluster`` end to end on the embedded digits: records, files and resumption."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modalign.cli import app

KEYS = {"dataset", "setting", "method", "seed", "metric", "value", "seconds"}


@pytest.mark.slow
def test_cluster_command_writes_results_and_resumes(tmp_path):
    args = [
        "cluster",
        "--dataset",
        "digits",
        "--methods",
        "otm,majority,kmeans-best-view",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert {tuple(sorted(r)) for r in records} == {tuple(sorted(KEYS))}
    assert len(records) == 3 * 2 * 4  # methods x seeds x metrics
    by = {(r["method"], r["seed"], r["metric"]): r["value"] for r in records}
    # The majority baseline's purity is the largest class share of digits (183 / 1797).
    assert by[("majority", 0, "purity")] == pytest.approx(183 / 1797)
    assert by[("kmeans-best-view", 0, "nmi")] > 0.3  # chance is about 0
    for name in ("results.json", "results.md", "embedding.png"):
        assert (tmp_path / name).exists()
    assert "±" in (tmp_path / "results.md").read_text()
    # A second call finds every run in results.json and repeats none of them.
    again = json.loads(CliRunner().invoke(app, args).output)
    assert again == records


def test_cluster_refuses_concatenation_baselines_when_unaligned(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "cluster",
            "--dataset",
            "digits",
            "--setting",
            "unaligned",
            "--methods",
            "kmeans-concat",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "need aligned rows" in result.output


def test_cluster_rejects_unknown_methods(tmp_path):
    result = CliRunner().invoke(
        app, ["cluster", "--dataset", "digits", "--methods", "dbscan", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "unknown method" in result.output


@pytest.mark.slow
def test_unaligned_run_reports_coupling_quality(tmp_path):
    args = [
        "cluster",
        "--dataset",
        "digits",
        "--setting",
        "unaligned",
        "--methods",
        "otm",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = (tmp_path / "results.md").read_text()
    assert "Coupling quality" in report
    row = next(line for line in report.splitlines() if line.startswith("| otm | 0 |"))
    same, chance, true_pairs = (float(x) for x in row.strip("|").split("|")[2:5])
    assert 0 <= same <= 1 and 0 <= true_pairs <= 1
    assert chance == pytest.approx(0.1, abs=0.01)  # ten balanced digit classes
