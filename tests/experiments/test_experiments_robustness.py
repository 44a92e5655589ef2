"""``modalign robustness`` end to end: corrupted test sets, records, summaries, files, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modalign.cli import app
from modalign.data import load_digits_views
from modalign.eval import read_header, write_results
from modalign.eval.report import write_results_file
from modalign.experiments.robustness import (
    RESULT_KEYS,
    corrupted_test_sets,
    curves,
    otm_effect,
    robustness_scores,
)
from modalign.provenance import data_fingerprint, protocol_key, run_header

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _need(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (expected ../shared/data)")
    return path


def test_corrupted_test_sets_corrupt_what_they_say():
    ds = load_digits_views().subset(np.arange(200))
    sets = corrupted_test_sets(ds, seed=3)
    names = [(c, m, lvl) for c, m, lvl, _ in sets]
    assert names[0] == ("clean", "all", 0.0)
    assert len(sets) == 1 + 2 * 3 + 3 * 3  # clean, missing per view, noise per view and all
    for condition, modality, level, part in sets[1:]:
        if condition == "missing":
            v = ds.view_index(modality)
            # Exactly that share of the samples lose that view, and only that view.
            assert int((~part.mask[:, v]).sum()) == round(level * 200)
            assert bool(part.mask[:, 1 - v].all())
            assert float(part.views[v][~part.mask[:, v]].abs().sum()) == 0.0
        else:
            for v, name in enumerate(ds.names):
                same = bool((part.views[v] == ds.views[v]).all())
                assert same == (modality not in (name, "all")), (modality, name)
    # The same seed gives the same corruptions (every model of a seed sees one test set).
    again = corrupted_test_sets(ds, seed=3)
    for (_, _, _, a), (_, _, _, b) in zip(sets, again):
        assert all(bool((x == y).all()) for x, y in zip(a.views, b.views))


def _run(tmp_path: Path, *extra: str) -> list[dict]:
    args = [
        "robustness",
        "--dataset",
        "avdigits",
        "--data-dir",
        str(SHARED_DATA),
        "--models",
        "late,lowrank",
        "--otm",
        "both",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--out",
        str(tmp_path),
        "--json",
        *extra,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.slow
def test_robustness_command_on_avdigits(tmp_path):
    _need("mnist")
    _need("fsdd", "recordings")
    records = _run(tmp_path)
    assert all(set(r) == set(RESULT_KEYS) for r in records)
    models = {r["model"] for r in records}
    assert models == {"late", "late+otm", "lowrank", "lowrank+otm", "majority"}
    for model in models - {"majority"}:
        for seed in (0, 1):
            mine = [r for r in records if r["model"] == model and r["seed"] == seed]
            # clean + 2 x 3 missing (twice: fusion head, and lone modalities by their own
            # heads) + 3 x 3 noise + 2 single modalities, two metrics each.
            assert len(mine) == 2 * (1 + 6 + 6 + 9 + 2)
    by = {
        (r["model"], r["seed"], r["condition"], r["modality"], r["level"], r["metric"]): r["value"]
        for r in records
    }
    # The majority baseline: the test share of the most frequent training class (classes are
    # balanced in avdigits: 240 of 2,400 training and 30 of 300 test rows each).
    assert by[("majority", 0, "clean", "all", 0.0, "accuracy")] == pytest.approx(0.1)
    # Two epochs already learn the task far above chance.
    assert by[("late", 0, "clean", "all", 0.0, "accuracy")] > 0.6
    assert by[("late", 0, "single", "audio", 0.0, "accuracy")] > 0.3
    # Summaries: relative robustness is the span-normalised trapezoid area of the curve;
    # effective robustness of the reference model is 0.
    levels = [0.0, 0.25, 0.5, 0.75]
    curve = [by[("lowrank", 1, "clean", "all", 0.0, "accuracy")]] + [
        by[("lowrank", 1, "noise", "image", lvl, "accuracy")] for lvl in levels[1:]
    ]
    area = sum((a + b) / 2 * 0.25 for a, b in zip(curve[:-1], curve[1:])) / 0.75
    rob = {
        (r["model"], r["condition"], r["modality"], r["seed"]): r
        for r in robustness_scores(records)
    }
    assert rob[("lowrank", "noise", "image", 1)]["relative"] == pytest.approx(area)
    assert rob[("late", "missing", "audio", 0)]["effective"] == pytest.approx(0.0, abs=1e-12)
    assert set(curves(records)) == {
        ("missing", "image"),
        ("missing", "audio"),
        ("missing+fallback", "image"),
        ("missing+fallback", "audio"),
        ("noise", "image"),
        ("noise", "audio"),
        ("noise", "all"),
    }
    effect = otm_effect(records)
    clean_gap = (
        by[("late+otm", 0, "clean", "all", 0.0, "accuracy")]
        - by[("late", 0, "clean", "all", 0.0, "accuracy")]
    )
    assert effect["late"]["clean"][0] == pytest.approx(clean_gap)
    md = (tmp_path / "results.md").read_text()
    for heading in (
        "Clean test set",
        "Missing modality",
        "Noise",
        "Relative robustness",
        "Effective robustness",
        "What OTM augmentation changes",
    ):
        assert heading in md
    assert "±" in md and (tmp_path / "robustness.png").stat().st_size > 10_000
    # Finished runs keep their weights; their training checkpoints are gone, their curves not.
    assert len(list((tmp_path / "models").glob("*.pt"))) == 8
    assert not list((tmp_path / "checkpoints").glob("*.pt"))
    assert len(list((tmp_path / "checkpoints").glob("*.history.csv"))) == 8
    # Resuming: every run is found in results.json and none is repeated.
    assert _run(tmp_path) == records


def test_robustness_refuses_bad_requests(tmp_path):
    runner = CliRunner()
    bad_model = runner.invoke(
        app,
        [
            "robustness",
            "--dataset",
            "digits",
            "--models",
            "late,transformer",
            "--out",
            str(tmp_path),
        ],
    )
    assert bad_model.exit_code == 2
    assert "transformer" in bad_model.output and "late" in bad_model.output
    bad_otm = runner.invoke(
        app, ["robustness", "--dataset", "digits", "--otm", "sometimes", "--out", str(tmp_path)]
    )
    assert bad_otm.exit_code == 2 and "--otm" in bad_otm.output
    args = ["robustness", "--dataset", "digits", "--models", "late", "--out", str(tmp_path)]
    # A folder of an older modalign (a bare list of records, no fingerprint) is not reused.
    other = dict.fromkeys(RESULT_KEYS, 0) | {"dataset": "digits", "model": "late"}
    (tmp_path / "results.json").write_text(json.dumps([other]))
    old = runner.invoke(app, args)
    assert old.exit_code == 2 and "older version of modalign" in old.output
    # Nor is one holding another command's results,
    write_results(tmp_path, [], header=run_header(key=protocol_key("cluster", "digits", "x")))
    clash = runner.invoke(app, args)
    assert clash.exit_code == 2 and "results for protocol 'cluster' and" in clash.output
    assert "not protocol 'robustness' and" in clash.output
    # or another dataset's robustness results (its runs would be skipped).
    key = protocol_key("robustness", "prokaryotic", "ab" * 32, preprocess="auto")
    write_results_file(tmp_path, [other], "", run_header(key=key))
    mixed = runner.invoke(app, args)
    assert mixed.exit_code == 2 and "results for dataset 'prokaryotic'" in mixed.output


def test_robustness_folder_is_keyed_by_data_preprocessing_and_model_configs(tmp_path):
    def run(*extra: str):
        args = ["robustness", "--dataset", "digits", "--models", "late", "--otm", "off"]
        args += ["--seeds", "1", "--epochs", "1", "--out", str(tmp_path), "--json", *extra]
        return CliRunner().invoke(app, args)

    first = run()
    assert first.exit_code == 0, first.output
    records = json.loads(first.stdout)
    header = read_header(tmp_path)
    assert header["key"]["protocol"] == "robustness" and header["key"]["preprocess"] == "auto"
    assert header["key"]["data_sha256"] == data_fingerprint(load_digits_views())
    assert header["configs"]["late"]["epochs"] == 1 and header["configs"]["late"]["otm"] is False
    assert header["data"]["name"] == "digits" and header["device"] == "cpu"
    # The training checkpoint is gone once the run is saved; its curves stay.
    curves = list((tmp_path / "checkpoints").glob("late-0-*.history.csv"))
    assert len(curves) == 1 and curves[0].read_text().startswith("epoch,")
    assert json.loads(run().stdout) == records  # resumed, nothing retrained
    for extra, named in (
        (("--epochs", "2"), "late results with epochs=1, not epochs=2"),
        (("--preprocess", "zscore"), "preprocess 'auto', not preprocess 'zscore'"),
    ):
        result = run(*extra)
        assert result.exit_code == 2 and named in result.output, result.output
    # Another model joins the folder.
    more = run("--otm", "on")
    assert more.exit_code == 0, more.output
    assert {r["model"] for r in json.loads(more.stdout)} == {"late", "late+otm", "majority"}
    assert set(read_header(tmp_path)["configs"]) == {"late", "late+otm"}


def test_robustness_on_a_multiview_dataset_uses_a_stratified_split(tmp_path):
    """The embedded digits (two views) as a classification task: 60/20/20 stratified."""
    result = CliRunner().invoke(
        app,
        [
            "robustness",
            "--dataset",
            "digits",
            "--models",
            "mi",
            "--otm",
            "on",
            "--seeds",
            "1",
            "--epochs",
            "2",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert {r["model"] for r in records} == {"mi+otm", "majority"}
    acc = {
        (r["condition"], r["modality"], r["level"]): r["value"]
        for r in records
        if r["model"] == "mi+otm" and r["metric"] == "accuracy"
    }
    assert acc[("clean", "all", 0.0)] > 0.5  # ten classes: chance is 0.1
    # Every test share is a multiple of 1 / n_test: 20 % of 1,797 digits, stratified.
    n_test = sum(c - round(0.8 * c) for c in np.bincount(load_digits_views().labels.numpy()))
    assert (
        abs(acc[("clean", "all", 0.0)] * n_test - round(acc[("clean", "all", 0.0)] * n_test)) < 1e-6
    )
