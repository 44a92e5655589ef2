"""``modalign cluster`` end to end on a digits subset: records, files, resumption, training that
runs past the warm-up, the balanced cap, the coupling diagnostic and the command-line rules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from modalign.cli import app
from modalign.data import MultiViewDataset, load_dataset, unalign
from modalign.eval import read_results
from modalign.experiments.clustering import (
    DEFAULT_METHODS,
    HEAD_METHODS,
    _coupling_diagnostic,
    epochs_config,
)
from modalign.methods import OTMConfig

pytestmark = pytest.mark.usefixtures("one_thread")

KEYS = {"dataset", "setting", "method", "seed", "metric", "value", "seconds"}


@pytest.fixture(scope="module")
def digits400(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """400 random digits (two image halves) as an .npz file, and their labels: small enough
    that OTM trains past its warm-up in seconds."""
    ds = load_dataset("digits")
    rows = np.random.default_rng(0).choice(ds.n_samples, 400, replace=False)
    sub = ds.subset(rows)
    labels = sub.row_labels(0).numpy()
    path = tmp_path_factory.mktemp("data") / "digits400.npz"
    np.savez(path, left=sub.views[0].numpy(), right=sub.views[1].numpy(), labels=labels)
    return path, labels


def cluster(*args: str):
    return CliRunner().invoke(app, ["cluster", *args])


def history(out: Path, method: str) -> list[dict[str, float]]:
    """The per-epoch losses the epoch loop wrote beside the run's checkpoint."""
    (path,) = (out / "checkpoints").glob(f"{method}-*.history.csv")
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_cluster_writes_results_resumes_and_trains_past_the_warmup(tmp_path, digits400):
    data, labels = digits400
    args = [
        "--dataset",
        str(data),
        "--methods",
        "otm,majority,kmeans-best-view,graph-concat",
        "--seeds",
        "2",
        "--epochs",
        "5",
        "--out",
        str(tmp_path),
        "--json",
    ]
    result = cluster(*args)
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert {tuple(sorted(r)) for r in records} == {tuple(sorted(KEYS))}
    assert len(records) == 4 * 2 * 4  # methods x seeds x metrics
    by = {(r["method"], r["seed"], r["metric"]): r["value"] for r in records}
    # The majority baseline's purity is the largest class share.
    assert by[("majority", 0, "purity")] == pytest.approx(np.bincount(labels).max() / 400)
    assert by[("kmeans-best-view", 0, "nmi")] > 0.3  # chance is about 0
    assert by[("graph-concat", 0, "accuracy")] > 0.6  # the head alone, no training
    for name in ("results.json", "results.md", "embedding.png"):
        assert (tmp_path / name).exists()
    # --epochs 5: warm-up 5 // 5 = 1 epoch of plain autoencoding, then four with the mixer.
    curve = history(tmp_path, "otm-aligned-0")
    assert len(curve) == 5
    assert curve[0]["mixed"] == 0.0 and all(h["mixed"] > 0 for h in curve[1:])
    # What training earns (measured: reconstruction about 60 -> 50 and mixed 61 -> 52 in five
    # epochs; with lr = 0 both stay within 3 % of where they start).
    assert curve[-1]["reconstruction"] < 0.9 * curve[0]["reconstruction"]
    assert curve[-1]["mixed"] < 0.95 * curve[1]["mixed"]
    # Balanced head: 400 rows in 10 clusters of 40, so each class counts at most 40 correct.
    report = (tmp_path / "results.md").read_text()
    cap = np.minimum(np.bincount(labels), 40).sum() / 400
    assert f"can reach at most {cap:.3f} on this data" in report
    assert "±" in report
    # A second call finds every run in results.json and repeats none of them.
    again = cluster(*args)
    assert json.loads(again.stdout) == records
    assert read_results(tmp_path) == records


def test_cluster_shows_progress_bars(tmp_path, digits400):
    data, _ = digits400
    args = ["--dataset", str(data), "--methods", "otm,majority", "--seeds", "1"]
    result = cluster(*args, "--epochs", "2", "--out", str(tmp_path / "a"), "--progress")
    assert result.exit_code == 0, result.output
    assert "digits400 aligned" in result.stderr and "2/2" in result.stderr  # runs
    assert "otm[fgw] seed 0" in result.stderr  # epochs, with --progress only
    assert "| otm |" in result.stdout  # the table, printed from results.md
    quiet = cluster(*args, "--epochs", "2", "--out", str(tmp_path / "b"))
    assert "digits400 aligned" in quiet.stderr and "otm[fgw]" not in quiet.stderr


def test_unaligned_run_reports_coupling_quality(tmp_path, digits400):
    data, labels = digits400
    args = ["--dataset", str(data), "--setting", "unaligned", "--methods", "otm"]
    result = cluster(*args, "--seeds", "1", "--epochs", "2", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    report = (tmp_path / "results.md").read_text()
    assert "Coupling quality" in report
    row = next(line for line in report.splitlines() if line.startswith("| otm | 0 |"))
    same, chance, true_pairs = (float(x) for x in row.strip("|").split("|")[2:5])
    # The cross coupling has uniform marginals over each view's rows, so the same-class mass
    # of the independent coupling is the sum of squared class shares.
    assert chance == pytest.approx(np.sum((np.bincount(labels) / 400) ** 2), abs=1e-3)
    assert 0 < same < 1 and 0 <= true_pairs <= 1


def test_coupling_diagnostic_against_a_hand_computed_case():
    # Six samples in two views, rows permuted per view; a barycenter of three points with
    # unequal weights p. The cross coupling is T0^T diag(1/p) T1: mass moves from row i of
    # view 0 to barycenter point b, then on to row j of view 1 in proportion T1[b, j] / p[b].
    rng = np.random.default_rng(4)
    y = np.array([0, 0, 1, 1, 2, 2])
    ds = unalign(MultiViewDataset([rng.normal(size=(6, 2)), rng.normal(size=(6, 3))], y), 1.0, 0)
    p = np.array([0.5, 0.3, 0.2])
    t0, t1 = rng.random((3, 6)), rng.random((3, 6))
    t0, t1 = (t / t.sum(1, keepdims=True) * p[:, None] for t in (t0, t1))
    l0, l1 = ds.row_labels(0).numpy(), ds.row_labels(1).numpy()
    i0, i1 = ds.ids[0].numpy(), ds.ids[1].numpy()
    cross = np.zeros((6, 6))
    for b in range(3):
        for i in range(6):
            for j in range(6):
                cross[i, j] += t0[b, i] * t1[b, j] / p[b]
    same_class = l0[:, None] == l1[None, :]
    # The masses total 1 (every T_m has total mass 1), so no normalisation is needed here.
    assert cross.sum() == pytest.approx(1.0)
    got = _coupling_diagnostic(ds, [torch.from_numpy(t0), torch.from_numpy(t1)])
    assert got["same_class"] == pytest.approx(cross[same_class].sum(), abs=1e-12)
    assert got["true_pairs"] == pytest.approx(cross[i0[:, None] == i1[None, :]].sum(), abs=1e-12)
    # Chance: the independent coupling with the same marginals.
    independent = np.outer(cross.sum(1), cross.sum(0))
    assert got["chance"] == pytest.approx(independent[same_class].sum(), abs=1e-12)


def test_epochs_rule_is_one_fifth_warmup_as_the_defaults():
    defaults = OTMConfig(n_clusters=2)
    assert epochs_config(defaults.epochs) == {
        "epochs": defaults.epochs,
        "warmup_epochs": defaults.warmup_epochs,
    }
    assert epochs_config(5)["warmup_epochs"] == 1 and epochs_config(None) == {}
    with pytest.raises(ValueError, match="at least 1"):
        epochs_config(0)


def test_default_methods_show_the_head_alone():
    assert {"graph-concat", "graph-best-view"} <= set(DEFAULT_METHODS["aligned"])
    assert {"graph-best-view", "graph-each-view"} <= set(DEFAULT_METHODS["unaligned"])
    assert "graph-each-view" in DEFAULT_METHODS["partial"]
    assert "graph-concat" not in DEFAULT_METHODS["unaligned"]
    assert {"otm", "graph-concat"} <= set(HEAD_METHODS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--setting", "aligned", "--rate", "0.5"], "--rate applies to --setting unaligned only"),
        (["--setting", "partial", "--rate", "0.5"], "--rate applies to --setting unaligned only"),
        (["--device", "gpu"], "not a torch device name"),
        (["--setting", "unaligned", "--methods", "kmeans-concat"], "need aligned rows"),
        (["--setting", "unaligned", "--methods", "graph-concat"], "need aligned rows"),
        (["--methods", "dbscan"], "unknown method"),
    ],
)
def test_cluster_refuses_bad_options(tmp_path, args, message):
    # Cheap settings first (a later option wins), so that a refusal that breaks fails fast.
    base = ["--dataset", "digits", "--methods", "majority", "--seeds", "1"]
    result = cluster(*base, "--out", str(tmp_path), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path / "results.json").exists()


def test_parallel_runs_give_the_records_of_serial_runs(tmp_path, digits400):
    """``jobs=2`` runs (method, seed) in two one-thread processes; each run draws from its own
    seed, so the scores are those of the serial table (same machine, same thread count)."""
    from modalign.experiments.clustering import run_clustering

    data, _ = digits400
    common = dict(
        setting="unaligned",
        methods=["mwae", "graph-each-view"],
        seeds=[0, 1],
        config=epochs_config(2),
    )
    serial = run_clustering(str(data), out=tmp_path / "serial", **common)
    parallel = run_clustering(str(data), out=tmp_path / "parallel", jobs=2, **common)

    def values(records):
        return {(r["method"], r["seed"], r["metric"]): r["value"] for r in records}

    assert len(serial) == 2 * 2 * 4
    assert values(parallel) == pytest.approx(values(serial), abs=1e-9)
    # Every run was saved, and the parallel folder resumes like the serial one.
    assert values(read_results(tmp_path / "parallel")) == values(parallel)
    with pytest.raises(ValueError, match="jobs"):
        run_clustering(str(data), jobs=0, **common)


def test_structure_ablations_keep_their_zero_weight():
    from modalign.experiments.clustering import method_config, otm_config

    caller = {"lambda_structure": 4.0, "epochs": 7}
    assert otm_config("otm", 3, caller).lambda_structure == 4.0
    assert otm_config("mwae", 3, caller).mixer == "none"
    for method, mixer in (("otm-no-structure", "fgw"), ("mwae-no-structure", "none")):
        config = otm_config(method, 3, caller)
        assert (config.lambda_structure, config.mixer, config.epochs) == (0.0, mixer, 7)
    # Records and checkpoints are keyed by the weight: an ablation never reuses otm's.
    assert method_config("otm", 3, caller) != method_config("otm-no-structure", 3, caller)


def test_fusion_ablation_shares_training_but_not_records():
    from modalign.experiments.clustering import (
        method_config,
        otm_config,
        trained_as,
        training_config,
    )

    assert otm_config("otm-code-fusion", 3, {"fusion": "graphs"}).fusion == "codes"
    # The same training (a checkpoint of one serves the other), other predictions (records).
    assert training_config("otm", 3, None) == training_config("otm-code-fusion", 3, None)
    assert method_config("otm", 3, None) != method_config("otm-code-fusion", 3, None)
    assert training_config("otm", 3, None) != training_config("otm-no-structure", 3, None)
    # The known pairs' restarts change every prediction with known pairs, the head alone's too.
    few = {"pair_restarts": 2}
    assert training_config("otm", 3, few) == training_config("otm", 3, None)
    assert method_config("otm", 3, few) != method_config("otm", 3, None)
    assert method_config("graph-fused", 3, few) != method_config("graph-fused", 3, None)
    # So does how the known pairs reach the other rows.
    assert training_config("otm", 3, None) == training_config("otm-spread", 3, None)
    assert method_config("otm", 3, None) != method_config("otm-spread", 3, None)
    spread = {"pair_fusion": "spread"}
    assert method_config("graph-fused", 3, spread) != method_config("graph-fused", 3, None)
    # Ablations of the prediction alone share OTM's checkpoint files; the others train theirs.
    assert trained_as("otm-code-fusion", 3, None) == trained_as("otm-spread", 3, None) == "otm"
    assert trained_as("mwae", 3, None) == "mwae"
    assert trained_as("otm-no-structure", 3, None) == "otm-no-structure"
    assert trained_as("otm-no-structure", 3, {"lambda_structure": 0.0}) == "otm"


@pytest.mark.parametrize(
    ("setting", "rate", "methods"),
    [("unaligned", 1.0, ["otm", "mwae"]), ("partial", 0.5, ["otm", "graph-fused"])],
)
def test_learned_methods_never_read_the_labels(
    tmp_path, digits400, monkeypatch, setting, rate, methods
):
    """The clusters of the learned methods (structure term on) and of the known-pair head do
    not change when the labels are permuted: labels reach only the scoring."""
    import modalign.experiments.clustering as clustering

    path, labels = digits400
    views = dict(np.load(path))
    shuffled = tmp_path / "shuffled.npz"
    np.savez(shuffled, **{**views, "labels": np.random.default_rng(1).permutation(labels)})
    seen: dict[str, list] = {"true": [], "shuffled": []}
    labelled = {"as": "true"}

    def recording(data, prediction):
        seen[labelled["as"]].append({k: np.asarray(v) for k, v in prediction.items()})
        return score(data, prediction)

    score = clustering.score_prediction
    monkeypatch.setattr(clustering, "score_prediction", recording)
    for labelled["as"], data in (("true", path), ("shuffled", shuffled)):
        clustering.run_clustering(
            str(data),
            setting=setting,
            rate=rate,
            methods=methods,
            seeds=[0],
            config={"epochs": 2, "warmup_epochs": 1, "lambda_structure": 4.0},
        )
    assert len(seen["true"]) == len(seen["shuffled"]) == 2
    for a, b in zip(seen["true"], seen["shuffled"]):
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_fusion_option_sets_how_every_learned_method_predicts(tmp_path, digits400):
    """``config={"fusion": "codes"}`` (``--fusion codes``) makes OTM predict as its ablation
    otm-code-fusion does; the default (graphs) differs from it."""
    from modalign.experiments.clustering import run_clustering

    data, _ = digits400

    def accuracy(records):
        return {r["method"]: r["value"] for r in records if r["metric"] == "accuracy"}

    common = dict(methods=["otm", "otm-code-fusion"], seeds=[0])
    codes = accuracy(
        run_clustering(str(data), config={**epochs_config(2), "fusion": "codes"}, **common)
    )
    graphs = accuracy(run_clustering(str(data), config=epochs_config(2), **common))
    assert codes["otm"] == codes["otm-code-fusion"] == graphs["otm-code-fusion"]
    assert graphs["otm"] != graphs["otm-code-fusion"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_prediction_ablations_predict_from_otms_checkpoints(tmp_path, digits400, jobs):
    """otm, otm-code-fusion and otm-spread train alike: one checkpoint per seed, named for otm,
    serves all three (with two jobs the sharing runs wait at the end of the queue); mwae, which
    trains otherwise, has its own."""
    from modalign.experiments.clustering import run_clustering

    data, _ = digits400
    run_clustering(
        str(data),
        setting="partial",
        rate=0.5,
        methods=["otm", "otm-code-fusion", "otm-spread", "mwae"],
        seeds=[0],
        config=epochs_config(2),
        out=tmp_path,
        jobs=jobs,
    )
    names = sorted(p.name.split("-known")[0] for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert names == ["mwae", "otm"]
