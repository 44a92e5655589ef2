"""Result records, summaries, Markdown tables, atomic files and the embedding plot."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import ot
import pytest
import torch

import modalign
from modalign.eval import (
    RECORD_KEYS,
    atomic_write,
    embed_2d,
    markdown_table,
    merge_records,
    plot_embedding,
    read_header,
    read_results,
    records_from_scores,
    summarise,
    write_results,
)
from modalign.eval.report import embedding_figure, match_clusters_to_classes, write_results_file
from modalign.provenance import run_header

pytestmark = pytest.mark.usefixtures("one_thread")


def scores(base: float) -> dict[str, float]:
    return {"purity": base, "accuracy": base - 0.1, "nmi": base - 0.2, "ari": base - 0.3}


def make_records() -> list[dict]:
    recs = []
    for seed in range(3):
        recs += records_from_scores("toy", "aligned", "ours", seed, scores(0.8 + 0.01 * seed), 2.0)
        recs += records_from_scores("toy", "aligned", "kmeans", seed, scores(0.7), 1.0 + seed)
    return recs


def test_records_have_exact_keys() -> None:
    recs = records_from_scores("toy", "aligned", "ours", np.int64(4), scores(0.5), 1.5)
    assert [r["metric"] for r in recs] == ["purity", "accuracy", "nmi", "ari"]
    for r in recs:
        assert tuple(r) == RECORD_KEYS
        assert r["seed"] == 4 and type(r["seed"]) is int
        assert type(r["value"]) is float and r["seconds"] == 1.5
    with pytest.raises(ValueError, match="unknown metrics"):
        records_from_scores("toy", "aligned", "ours", 0, {"f1": 0.3}, 1.0)
    with pytest.raises(ValueError, match="finite"):
        records_from_scores("toy", "aligned", "ours", 0, {"nmi": float("nan")}, 1.0)


def test_summarise_mean_std_seconds() -> None:
    rows = summarise(make_records())
    assert [r["method"] for r in rows] == ["ours", "kmeans"]
    ours, km = rows
    assert ours["n_seeds"] == 3 and km["n_seeds"] == 3
    assert ours["purity_mean"] == pytest.approx(0.81)
    assert ours["purity_std"] == pytest.approx(np.std([0.8, 0.81, 0.82], ddof=1))
    assert km["ari_std"] == pytest.approx(0.0)
    # seconds are per run (shared by its 4 records), averaged over seeds.
    assert km["seconds_mean"] == pytest.approx(2.0)
    single = summarise(records_from_scores("toy", "aligned", "x", 0, scores(0.5), 1.0))
    assert single[0]["n_seeds"] == 1 and single[0]["nmi_std"] is None


def test_markdown_table() -> None:
    md = markdown_table(make_records())
    lines = md.strip().splitlines()
    assert lines[0] == "| method | Purity | Accuracy | NMI | ARI | seconds | seeds |"
    assert len(lines) == 4
    assert "±" in md
    ours = next(line for line in lines if line.startswith("| ours"))
    km = next(line for line in lines if line.startswith("| kmeans"))
    assert "**0.810 ± 0.010**" in ours and "**" not in km
    assert ours.rstrip().endswith("| 2.00 | 3 |")
    # Several datasets: one table each.
    other = records_from_scores("other", "unaligned", "ours", 0, scores(0.5), 1.0)
    md2 = markdown_table(make_records() + other)
    assert "### toy (aligned)" in md2 and "### other (unaligned)" in md2
    assert "0.500 ± –" in md2


def test_duplicates_are_refused_and_merge_replaces() -> None:
    old = make_records()
    rerun = records_from_scores("toy", "aligned", "ours", 1, scores(0.9), 3.0)
    with pytest.raises(ValueError, match="duplicate"):
        summarise(old + rerun)
    merged = merge_records(old, rerun)
    assert len(merged) == len(old)
    ours1 = [r for r in merged if r["method"] == "ours" and r["seed"] == 1]
    assert {r["value"] for r in ours1} == set(scores(0.9).values())


def test_write_results_roundtrip_and_no_temp_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    recs = make_records()
    json_path, md_path = write_results(out, recs, extra_markdown="Notes here.")
    data = json.loads(json_path.read_text())
    assert set(data) == {"header", "records"}
    assert data["records"] == recs and all(tuple(r) == RECORD_KEYS for r in data["records"])
    assert read_results(out) == recs
    md = md_path.read_text()
    assert "±" in md and md.rstrip().endswith("Notes here.")
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]
    # Appending a new run: the caller passes old and new, and nothing is lost.
    new = records_from_scores("toy", "aligned", "ours", 7, scores(0.6), 1.0)
    write_results(out, merge_records(read_results(out), new))
    assert len(read_results(out)) == len(recs) + 4
    assert read_results(tmp_path / "absent") == []


def test_results_file_carries_its_header_and_results_md_its_provenance(tmp_path: Path) -> None:
    header = run_header(
        key={"protocol": "cluster", "data_sha256": "ab" * 32},
        configs={"ours": {"epochs": 3}},
        data={"name": "toy", "sha256": "ab" * 32, "source": "toy.npz"},
        started=time.perf_counter() - 2.0,
        device="cpu",
    )
    write_results(tmp_path, make_records(), header=header)
    assert read_header(tmp_path) == header  # a JSON round trip that loses nothing
    assert read_header(tmp_path / "absent") is None
    assert header["wall_seconds"] >= 2.0
    assert header["command"] == sys.argv
    assert header["versions"]["torch"] == torch.__version__
    assert header["versions"]["numpy"] == np.__version__
    assert header["versions"]["pot"] == ot.__version__
    assert header["versions"]["modalign"] == modalign.__version__
    first = (tmp_path / "results.md").read_text().splitlines()[0]
    assert first.startswith(f"_Produced by `{Path(sys.argv[0]).name} ")
    assert f"modalign {modalign.__version__}" in first and "data sha256 abababababab" in first
    if header["git_commit"]:
        assert f"commit {header['git_commit'][:10]}" in first
    # A title stays first: the line goes under it.
    path = write_results_file(tmp_path / "titled", [], "# Title\n\nBody\n", header)[1]
    assert path.read_text().splitlines()[:4] == ["# Title", "", first, ""]
    # Without a header: one with the command line and versions, but no key.
    write_results(tmp_path / "bare", make_records())
    bare = read_header(tmp_path / "bare")
    assert bare["key"] is None and bare["versions"]["modalign"] == modalign.__version__


def test_results_of_an_older_version_are_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(make_records()))
    for read in (read_results, read_header):
        with pytest.raises(ValueError, match="older version of modalign, with no fingerprint"):
            read(tmp_path)
    (tmp_path / "results.json").write_text('{"records": []}')
    with pytest.raises(ValueError, match="expected"):
        read_results(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_results_files_get_the_permissions_of_the_umask(tmp_path: Path, umask: int) -> None:
    """Not mkstemp's 0600: a colleague must be able to read a shared results folder."""
    before = os.umask(umask)
    try:
        json_path, md_path = write_results(tmp_path, make_records())
        png = atomic_write(tmp_path / "x.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(before)
    for path in (json_path, md_path, png):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")

    def explode(f) -> None:
        f.write(b"half a fi")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(path, explode)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    with pytest.raises(ValueError, match="exactly the keys"):
        write_results(tmp_path, [{"dataset": "x"}])
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def blob_codes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    return rng.normal(size=(5, 16))[y] * 4 + rng.normal(size=(n, 16)), y


def test_plot_embedding_writes_png(tmp_path: Path) -> None:
    codes, y = blob_codes(200)
    path = plot_embedding(codes, (y + 1) % 5, y, tmp_path / "figs" / "emb.png", title="toy")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["emb.png"]
    # Clusters only, PCA, tiny inputs and 1-D codes all plot.
    plot_embedding(codes[:, :1], y, None, tmp_path / "one.png", method="pca")
    with pytest.raises(ValueError, match="labels for"):
        plot_embedding(codes, y[:10], y, tmp_path / "bad.png")


def test_clusters_take_the_colours_of_their_matched_classes() -> None:
    codes, y = blob_codes(200)
    perm = np.array([3, 0, 4, 1, 2])
    clusters = perm[y]  # the classes under other names
    colour = match_clusters_to_classes(clusters, y)
    assert [colour[c] for c in clusters.tolist()] == y.tolist()  # class j has colour j
    # A few points in the wrong cluster: each cluster still matches its majority class.
    noisy = clusters.copy()
    noisy[:15] = (noisy[:15] + 1) % 5
    assert match_clusters_to_classes(noisy, y) == colour
    # A sixth cluster (a third of class 2) has no class: it gets a colour no class has.
    split = np.where((y == 2) & (np.arange(200) % 3 == 0), 7, clusters)
    assert match_clusters_to_classes(split, y) == {**colour, 7: 5}
    # String classes: colour j is the j-th class in sorted order ("e" for class 0 is last).
    names = np.array(["e", "d", "c", "b", "a"])[y]
    assert match_clusters_to_classes(clusters, names)[int(perm[0])] == 4
    # The picture: both panels draw every point in the same colour.
    fig = embedding_figure(codes, clusters, y, method="pca")
    by_cluster, by_class = (ax.collections[0].get_facecolors() for ax in fig.axes[:2])
    assert by_cluster.shape == (200, 4)
    np.testing.assert_array_equal(by_cluster, by_class)
    # Relabelled, the same clusters give the same picture.
    again = embedding_figure(codes, (clusters + 2) * 10, y, method="pca")
    np.testing.assert_array_equal(again.axes[0].collections[0].get_facecolors(), by_class)


def test_embedding_is_deterministic() -> None:
    # Speed (N = 2000 in about 3 s with t-SNE) is measured in docs/evaluation.md, not asserted
    # here: wall time on a shared machine is too noisy for a test.
    codes, _ = blob_codes(400)
    a = embed_2d(codes, seed=1)
    assert a.shape == (400, 2) and np.all(np.isfinite(a))
    assert np.array_equal(a, embed_2d(codes, seed=1))
    assert embed_2d(codes, method="pca").shape == (400, 2)
    assert embed_2d(codes[:10]).shape == (10, 2)  # auto: PCA for a handful of points
    with pytest.raises(ValueError, match="method"):
        embed_2d(codes, method="umap")


def test_plot_accepts_string_classes(tmp_path: Path) -> None:
    codes, y = blob_codes(60)
    names = np.array(["a", "b", "c", "d", "e"])[y]
    path = plot_embedding(codes, y, names, tmp_path / "s.png", method="pca")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="NaN"):
        plot_embedding(np.full((5, 3), np.nan), y[:5], None, tmp_path / "n.png")


def test_mean_std_text_rounds_and_marks_single_seeds():
    from modalign.eval import mean_std_text

    assert mean_std_text([0.1, 0.3]) == f"0.200 ± {np.std([0.1, 0.3], ddof=1):.3f}"
    assert mean_std_text([-1e-9, 1e-9 / 2]) == "0.000 ± 0.000"  # no "-0.000"
    assert mean_std_text([0.5]) == "0.500 ± –"
    assert mean_std_text([]) == ""
