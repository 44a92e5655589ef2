"""``modalign generate`` end to end: the records and their keys, every source and target for
every method, the classifiers, the files, reruns into the same folder, a trained MVAE against
the untrained network, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import modalign.experiments.generate as gen
from modalign.cli import app
from modalign.experiments.generate import (
    DEFAULT_METHODS,
    REFERENCES,
    RESULT_KEYS,
    markdown,
    read_generate,
    run_generate,
    sources_of,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = {"seeds": [0], "config": {"epochs": 1}, "n_prior": 100}


def _by(records, **where):
    return [r for r in records if all(r[k] == v for k, v in where.items())]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, one_thread):
    """Every VAE for one epoch on the embedded digits-label (image (8, 8) + label), seed 0."""
    out = tmp_path_factory.mktemp("generate") / "run"
    return out, run_generate("digits-label", out=out, **RUN)


def test_sources_of_every_other_modality_then_all():
    assert sources_of(0, 2) == [(1,), (0, 1)]
    assert sources_of(1, 2) == [(0,), (0, 1)]
    assert sources_of(1, 3) == [(0,), (2,), (0, 1, 2)]


def test_nearest_pair_is_the_nearest_training_row_by_sklearn():
    from sklearn.neighbors import NearestNeighbors

    from modalign.data import MultiViewDataset

    rng = np.random.default_rng(0)
    train_views = [rng.normal(size=(40, 5)), rng.normal(size=(40, 3)), rng.normal(size=(40, 2))]
    test_views = [rng.normal(size=(12, 5)), rng.normal(size=(12, 3)), rng.normal(size=(12, 2))]
    train, test = MultiViewDataset(train_views), MultiViewDataset(test_views)
    for source, target in (((0,), 2), ((0, 1), 2), ((1,), 0)):
        a = np.hstack([train_views[v] for v in source])
        b = np.hstack([test_views[v] for v in source])
        idx = NearestNeighbors(n_neighbors=1).fit(a).kneighbors(b)[1][:, 0]
        got = gen.nearest_pair(train, test, source, target).numpy()
        np.testing.assert_allclose(got, train_views[target][idx], rtol=1e-6)


def test_nearest_pair_from_the_label_draws_images_of_that_class(digits_run):
    # A one-hot label's nearest training rows are exactly the rows of its class, so the
    # lookup's label -> image coherence is the image classifier's accuracy on training images.
    _, records = digits_run
    (rec,) = _by(records, method="nearest-pair", metric="coherence", source=[1], target=0)
    assert rec["value"] > 0.9


def test_records_have_the_keys_and_every_source_and_target(digits_run):
    out, records = digits_run
    assert records and all(tuple(r) == RESULT_KEYS for r in records)
    assert {r["method"] for r in records} == {*DEFAULT_METHODS, *REFERENCES}
    assert {(r["dataset"], r["seed"]) for r in records} == {("digits-label", 0)}
    pairs = sorted((list(s), t) for t in range(2) for s in sources_of(t, 2))
    for method in (*DEFAULT_METHODS, "vae-untrained", "nearest-pair", "majority"):
        got = _by(records, method=method, metric="coherence")
        assert sorted((r["source"], r["target"]) for r in got) == pairs, method
        assert all(0.0 <= r["value"] <= 1.0 for r in got), method
    for method in (*DEFAULT_METHODS, "vae-untrained"):
        (joint,) = _by(records, method=method, metric="joint_coherence")
        assert (joint["source"], joint["target"]) == ([], None)
        assert 0.0 <= joint["value"] <= 1.0
        (spread,) = _by(records, method=method, metric="prior_class_spread")
        assert spread["source"] == [] and 0.0 <= spread["value"] <= 1.0
        for t in range(2):
            (elbo,) = _by(records, method=method, metric="elbo", target=t)
            (mse,) = _by(records, method=method, metric="reconstruction_mse", target=t)
            assert elbo["source"] == mse["source"] == [t]
            assert np.isfinite(elbo["value"]) and elbo["value"] < 0
            assert mse["value"] >= 0
        (secs,) = _by(records, method=method, metric="train_seconds")
        assert (secs["source"], secs["target"]) == ([], None)
    # A classifier of real data for the image only: the label view is read by its argmax.
    accuracy = _by(records, method="classifier", metric="accuracy")
    assert [(r["source"], r["target"]) for r in accuracy] == [([0], 0)]
    assert accuracy[0]["value"] > 0.9  # 8 x 8 digits: about 0.97
    assert not _by(records, method="majority", metric="joint_coherence")
    # digits-label's fixed test split: ten classes, about a tenth each
    assert 0.05 < _by(records, method="majority")[0]["value"] < 0.15


def test_results_files(digits_run):
    out, records = digits_run
    assert read_generate(out) == records
    stored = json.loads((out / "results.json").read_text())
    assert stored["header"]["key"]["n_prior"] == 100
    assert stored["header"]["data"]["view_names"] == ["image", "label"]
    md = (out / "results.md").read_text()
    assert "| method | label -> image | all -> image | image -> label | all -> label |" in md
    assert "## Prior samples and test likelihood" in md
    assert "## Classifiers of real data (test accuracy)" in md
    for method in (*DEFAULT_METHODS, "vae-untrained"):
        assert f"| {method} |" in md
        for kind in ("grid", "latent"):
            png = out / f"{kind}-{method}.png"
            assert png.stat().st_size > 1000, png
            assert f"({png.name})" in md
        assert (out / "models" / f"{method}-0.pt").exists()
    assert md.startswith("# Cross-modal generation on digits-label")
    tables = markdown(records, ["image", "label"])
    assert tables.split("\n## ", 1)[1] in md  # the tables, under the provenance line
    assert markdown([]) == "_no results_\n"


def test_a_rerun_trains_nothing_and_other_settings_are_refused(digits_run, monkeypatch):
    out, records = digits_run

    def refuse(*args, **kwargs):
        raise AssertionError("a rerun must not train")

    monkeypatch.setattr(gen, "_train", refuse)
    monkeypatch.setattr(gen, "Readers", refuse)
    assert run_generate("digits-label", out=out, **RUN) == records
    with pytest.raises(ValueError, match="n_prior 100.*n_prior 50"):
        run_generate("digits-label", out=out, **{**RUN, "n_prior": 50})
    with pytest.raises(ValueError, match="epochs"):
        run_generate("digits-label", out=out, **{**RUN, "config": {"epochs": 2}})
    assert read_generate(out) == records


def test_bad_arguments(tmp_path):
    choices = r"choose from \['mvae', 'wvae', 'wvae-factorised', 'wvae-full'\]"
    with pytest.raises(ValueError, match=rf"unknown method\(s\) \['pca'\]: {choices}"):
        run_generate("digits-label", methods=["mvae", "pca"], out=tmp_path / "o")
    with pytest.raises(ValueError, match="n_prior must be positive, got 0"):
        run_generate("digits-label", n_prior=0, out=tmp_path / "o")
    assert not (tmp_path / "o" / "results.json").exists()


def _planted_npz(path, n=150, seed=0):
    """A 60/20/20-split dataset: ``signal`` (features carrying the class) and ``label``."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    signal = np.c_[np.eye(3)[y] * 4 + rng.normal(size=(n, 3)), rng.normal(size=(n, 2))]
    np.savez(path, signal=signal, label=np.eye(3)[y], y=y)
    return path


def test_a_labelled_npz_is_split_per_seed(tmp_path):
    path = _planted_npz(tmp_path / "planted.npz")
    out = tmp_path / "run"
    records = run_generate(
        str(path), methods=["mvae"], seeds=[0, 1], config={"epochs": 1}, n_prior=50, out=out
    )
    assert {r["dataset"] for r in records} == {"planted"}
    for seed in (0, 1):
        accuracy = _by(records, method="classifier", metric="accuracy", seed=seed)
        assert [(r["source"], r["target"]) for r in accuracy] == [([0], 0)]
        assert accuracy[0]["value"] > 0.9
        # stratified 20 % test split of balanced classes: the majority class is a third
        for r in _by(records, method="majority", seed=seed):
            assert r["value"] == pytest.approx(1 / 3)
        assert len(_by(records, method="mvae", metric="coherence", seed=seed)) == 4
    # the two seeds see different splits (a different test set: different test ELBOs)
    elbo = [_by(records, method="vae-untrained", metric="elbo", target=0, seed=s) for s in (0, 1)]
    assert elbo[0][0]["value"] != elbo[1][0]["value"]
    # no image view: latent plots, no generation grid
    assert not list(out.glob("grid-*.png"))
    assert (out / "latent-mvae.png").exists()


def test_a_trained_mvae_is_coherent_and_the_untrained_network_is_not():
    """Label weighted 50 (as Wu and Goodman do on MNIST): after 40 epochs the image generates
    the right label. Measured on seed 0: image -> label 0.899, label -> image 1.000; 15
    epochs: 0.531 and 0.397; the untrained network 0.101 (always one class)."""
    config = {"epochs": 40, "likelihood_weights": (1.0, 50.0)}
    records = run_generate(
        "digits-label", methods=["mvae"], seeds=[0], config=config, n_prior=100, plots=False
    )

    def value(method, source, target):
        (r,) = _by(records, method=method, metric="coherence", source=source, target=target)
        return r["value"]

    assert value("mvae", [0], 1) > 0.5
    assert value("mvae", [1], 0) > 0.5
    assert value("vae-untrained", [0], 1) < 0.3
    assert value("vae-untrained", [1], 0) < 0.3


def test_cli_prints_the_records_as_json(tmp_path):
    out = tmp_path / "cli"
    args = ["generate", "--dataset", "digits-label", "--seeds", "1", "--epochs", "1"]
    result = CliRunner().invoke(
        app, [*args, "--methods", "wvae", "--n-prior", "50", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records and all(tuple(r) == RESULT_KEYS for r in records)
    assert {r["method"] for r in records} == {"wvae", *REFERENCES}
    assert records == read_generate(out)
    bad = CliRunner().invoke(app, [*args, "--methods", "wvae,pca", "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown method(s) ['pca']")
    assert not (tmp_path / "o" / "results.json").exists()
