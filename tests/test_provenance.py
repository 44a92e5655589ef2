"""Results are never stale: fingerprints, folder keys, headers, and the stale-reuse scenario of
issue 11 through the real ``modalign cluster`` command."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import modalign
from modalign.cli import app
from modalign.data import MultiViewDataset, load_dataset, unalign
from modalign.eval import read_header, read_results
from modalign.experiments.clustering import run_known_pairs
from modalign.provenance import (
    check_provenance,
    data_fingerprint,
    dataset_name,
    git_state,
    protocol_key,
    short_hash,
    versions,
)
from modalign.train import keyed_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def make_npz(path: Path, seed: int, *, scale: float = 1.5) -> Path:
    """Two views (96 x 6 and 96 x 5) of three classes, 32 rows each; the same shapes for
    every seed, other values."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 32)
    views = {}
    for name, dim in (("left", 6), ("right", 5)):
        centres = rng.normal(size=(3, dim)) * scale
        views[name] = centres[y] + rng.normal(size=(96, dim))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, labels=y, **views)
    return path


# ---------------------------------------------------------------------------- names and hashes
def test_dataset_name_is_a_files_stem_or_the_registry_name():
    assert dataset_name("prokaryotic") == "prokaryotic"
    assert dataset_name("Prokaryotic") == "prokaryotic"  # names are read case-insensitively
    assert dataset_name("AVDigits") == "avdigits"
    assert dataset_name("/data/runs/My.Data.npz") == "My.Data"
    assert dataset_name(Path("x/orl.mat")) == "orl"


def test_data_fingerprint_follows_the_contents_not_the_file(tmp_path):
    a = load_dataset(make_npz(tmp_path / "a.npz", 0))
    copy = shutil.copy(tmp_path / "a.npz", tmp_path / "elsewhere.npz")
    assert data_fingerprint(a) == data_fingerprint(load_dataset(copy))
    # The documented layout, recomputed with hashlib: names, views, labels, ids, mask.
    h = hashlib.sha256()
    h.update(b'dataset 0 views ["left", "right"]\n')
    for tag, arr in [
        ("view 0", a.views[0].numpy()),
        ("view 1", a.views[1].numpy()),
        ("labels", a.labels.numpy()),
        ("ids 0", a.ids[0].numpy()),
        ("ids 1", a.ids[1].numpy()),
        ("mask", a.mask.numpy()),
    ]:
        h.update(f"{tag} {arr.dtype.str} {list(arr.shape)}\n".encode())
        h.update(arr.tobytes())
    assert data_fingerprint(a) == h.hexdigest()

    views = [v.clone() for v in a.views]
    views[1][5, 2] += 1e-3
    changed = [
        MultiViewDataset(views, a.labels, names=a.names),  # one value
        MultiViewDataset(a.views, a.labels.flip(0), names=a.names),  # labels
        MultiViewDataset(a.views, a.labels, names=["l", "r"]),  # view names
        unalign(a, 1.0, seed=0),  # rows permuted: other ids
        load_dataset(tmp_path / "a.npz", dtype=torch.float64),  # same values, float64
        load_dataset(make_npz(tmp_path / "b.npz", 1)),  # same shapes, other data
    ]
    prints = {data_fingerprint(d) for d in changed} | {data_fingerprint(a)}
    assert len(prints) == len(changed) + 1
    # Several datasets (fixed splits) hash in order.
    assert data_fingerprint(a, changed[-1]) != data_fingerprint(changed[-1], a)


def test_short_hash_and_keyed_checkpoints(tmp_path):
    key = {"data_sha256": "ab", "epochs": 2, "rate": None}
    assert short_hash(key) == short_hash(dict(reversed(key.items())))  # order-free
    assert len(short_hash(key)) == 10
    first = keyed_checkpoint(tmp_path, "otm-aligned-0", key)
    assert first.parent == tmp_path and first.name.startswith("otm-aligned-0-")
    assert first.suffix == ".pt"
    for other in ({**key, "data_sha256": "cd"}, {**key, "epochs": 3}, {**key, "rate": 0.5}):
        assert keyed_checkpoint(tmp_path, "otm-aligned-0", other) != first


# ---------------------------------------------------------------------------- environment
def test_versions_and_git_state_never_fail(monkeypatch):
    v = versions()
    assert {"python", "modalign", "torch", "numpy", "pot"} <= set(v)
    assert ("flwr" in v) == ("flwr" in sys.modules)  # only when used
    package = Path(__file__).resolve().parents[1] / "src" / "modalign"
    expected = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    git_state.cache_clear()
    try:
        commit, dirty = git_state()
        if expected.returncode == 0 and Path(modalign.__file__).resolve().parent == package:
            assert commit == expected.stdout.strip() and isinstance(dirty, bool)
        # No git at all: None, not an error.
        git_state.cache_clear()
        monkeypatch.setenv("PATH", "")
        assert git_state() == (None, None)
    finally:
        git_state.cache_clear()


# ---------------------------------------------------------------------------- checks
def test_check_provenance_names_what_differs_and_merges_configs():
    key = protocol_key("cluster", "a", "11" * 32, preprocess="auto", setting="aligned", rate=None)
    header = {"key": key, "configs": {"otm": {"epochs": 2, "lr": 1e-3}}}
    assert check_provenance("runs/x", None, key, {"otm": {"epochs": 2}}) == {"otm": {"epochs": 2}}
    # Another method or the same config: accepted, and the folder's configs grow.
    merged = check_provenance("runs/x", header, key, {"mwae": {"epochs": 2}})
    assert merged == {"otm": {"epochs": 2, "lr": 1e-3}, "mwae": {"epochs": 2}}
    other_data = {**key, "dataset": "b", "data_sha256": "22" * 32}
    with pytest.raises(ValueError) as err:
        check_provenance("runs/x", header, other_data, {})
    assert str(err.value) == (
        "runs/x holds results for dataset 'a' and data sha256 111111111111.. (a), not "
        "dataset 'b' and data sha256 222222222222.. (b): use another --out or remove it"
    )
    with pytest.raises(ValueError, match=r"for rate None, not rate 0\.5: use another --out"):
        check_provenance("runs/x", header, {**key, "rate": 0.5}, {})
    with pytest.raises(ValueError, match=r"holds otm results with epochs=2, not epochs=3"):
        check_provenance("runs/x", header, key, {"otm": {"epochs": 3, "lr": 1e-3}})
    with pytest.raises(ValueError, match="no fingerprint"):
        check_provenance("runs/x", {"key": None}, key, {})


# ---------------------------------------------------------------------------- the scenario
def cluster(data: Path, out: Path, *extra: str, methods: str = "otm,kmeans-best-view"):
    """``modalign cluster`` as a user types it: few epochs, one seed unless ``extra`` says."""
    args = ["cluster", "--dataset", str(data), "--methods", methods, "--epochs", "2"]
    args += ["--seeds", "1", "--out", str(out), "--json", *extra]
    # Later options win in click: `extra` may override the defaults above.
    return CliRunner().invoke(app, args)


def refused(result, *phrases: str) -> str:
    assert result.exit_code == 2, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("error: "))
    for phrase in (*phrases, "use another --out or remove it"):
        assert phrase in line, (phrase, line)
    return line


def values(records: list[dict]) -> dict:
    return {(r["method"], r["seed"], r["metric"]): r["value"] for r in records}


def checkpoints(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")}


@pytest.mark.slow
def test_a_shared_out_folder_is_never_stale(tmp_path):
    a, b = make_npz(tmp_path / "a.npz", 0), make_npz(tmp_path / "b.npz", 1)
    x = tmp_path / "X"
    first = cluster(a, x)
    assert first.exit_code == 0, first.output
    records = json.loads(first.stdout)
    saved = checkpoints(x)
    assert len(saved) == 1  # otm, seed 0
    header = read_header(x)
    assert header["key"]["data_sha256"] == data_fingerprint(load_dataset(a))
    assert header["configs"]["otm"]["epochs"] == 2 and header["data"]["name"] == "a"
    assert header["command"] == sys.argv  # the CLI ran in this process

    # An identical rerun resumes: the same records (their wall times too: not recomputed) and
    # the checkpoint untouched.
    again = cluster(a, x)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == records and checkpoints(x) == saved

    # Issue 11: another file of the same shapes into the same folder is refused ...
    refused(cluster(b, x), "data sha256", "(a), not", "(b)")
    # ... as is a file with the same name and other contents,
    (tmp_path / "other").mkdir()
    same_name = shutil.copy(b, tmp_path / "other" / "a.npz")
    line = refused(cluster(same_name, x), "data sha256", "(a), not")
    assert "dataset" not in line.split("holds results for")[1].split("data sha256")[0]
    # ... and other epochs, preprocessing, setting,
    refused(cluster(a, x, "--epochs", "3"), "otm results with epochs=2", "not epochs=3")
    refused(cluster(a, x, "--preprocess", "l2"), "preprocess 'auto', not preprocess 'l2'")
    refused(cluster(a, x, "--setting", "unaligned", methods="kmeans-best-view"), "setting")
    assert checkpoints(x) == saved and read_results(x) == records

    # Another seed (or method) under the same data and settings adds its records.
    more = cluster(a, x, "--seeds", "2")
    assert more.exit_code == 0, more.output
    grown = json.loads(more.stdout)
    assert [r for r in grown if r["seed"] == 0] == records
    assert {r["seed"] for r in grown} == {0, 1} and len(checkpoints(x)) == 2

    # A checkpoint is keyed by its data too: with results.json gone (an interrupted first run
    # leaves the same state), b trains afresh instead of resuming a's finished checkpoint.
    (x / "results.json").unlink()
    stale = cluster(b, x)
    assert stale.exit_code == 0, stale.output
    fresh = cluster(b, tmp_path / "fresh")
    assert values(json.loads(stale.stdout)) == pytest.approx(values(json.loads(fresh.stdout)))
    assert len(checkpoints(x)) == 3 and all(checkpoints(x)[k] == t for k, t in saved.items())
    # b's training curves equal those of the fresh run (a's would not).
    curves = sorted((x / "checkpoints").glob("*.history.csv"))
    fresh_curve = next((tmp_path / "fresh" / "checkpoints").glob("*.history.csv")).read_text()
    assert sum(c.read_text() == fresh_curve for c in curves) == 1


def test_unaligned_rate_and_known_pairs_shares_share_a_folder_rightly(tmp_path):
    a = make_npz(tmp_path / "a.npz", 0)
    u = tmp_path / "U"
    args = ("--setting", "unaligned", "--rate", "0.5")
    assert cluster(a, u, *args, methods="kmeans-best-view").exit_code == 0
    refused(
        cluster(a, u, "--setting", "unaligned", "--rate", "1.0", methods="kmeans-best-view"),
        "rate 0.5, not rate 1.0",
    )
    # The known-pairs curve runs one table per share into one folder: every share is added,
    # and a rerun resumes them all.
    k = tmp_path / "K"
    common = dict(methods=("kmeans-best-view",), seeds=range(1), out=k)
    records = run_known_pairs(str(a), shares=(0.0, 0.5, 1.0), **common)
    assert {r["setting"] for r in records} == {f"known pairs {s:g}" for s in (0.0, 0.5, 1.0)}
    assert run_known_pairs(str(a), shares=(0.0, 0.5, 1.0), **common) == records
    assert read_header(k)["key"]["setting"] == "partial"
    with pytest.raises(ValueError, match="preprocess 'auto', not preprocess 'l2'"):
        run_known_pairs(str(a), shares=(0.5,), preprocess="l2", **common)


def test_provenance_line_names_the_program_not_its_path():
    from modalign.provenance import provenance_line

    line = provenance_line({"command": ["/opt/venv/bin/modalign", "cluster", "--dataset", "orl"]})
    assert line.startswith("_Produced by `modalign cluster --dataset orl`")
    module = provenance_line({"command": ["/src/modalign/__main__.py", "demo"]})
    assert module.startswith("_Produced by `python -m modalign demo`")
    other = provenance_line({"command": ["/venv/lib/pytest/__main__.py", "-q"]})
    assert other.startswith("_Produced by `__main__.py -q`")
