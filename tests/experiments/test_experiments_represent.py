"""``modalign represent`` end to end: records, probes from subsets, label leakage, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from modalign.cli import app
from modalign.data import MultiViewDataset, Preprocessor
from modalign.experiments.represent import (
    RESULT_KEYS,
    Representation,
    input_views,
    load_represent_data,
    parse_subsets,
    probe_records,
    subsets,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _cli(*args: str):
    return CliRunner().invoke(app, ["represent", *args])


def _by(records, **where):
    return [r for r in records if all(r[k] == v for k, v in where.items())]


def test_represent_end_to_end_on_digits(tmp_path):
    out = tmp_path / "rep"
    args = ["--dataset", "digits", "--methods", "gmc,otm", "--seeds", "2", "--epochs", "2"]
    result = _cli(*args, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert records == json.loads((out / "results.json").read_text())["records"]
    assert all(set(r) == set(RESULT_KEYS) for r in records)
    assert {r["method"] for r in records} == {"gmc", "otm", "raw", "supervised", "majority"}
    assert {r["seed"] for r in records} == {0, 1}
    # Every learned method and raw: both probes, both metrics, every subset.
    for method in ("gmc", "otm", "raw"):
        for probe in ("mlp", "linear"):
            for metric in ("accuracy", "macro_f1"):
                got = _by(records, method=method, probe=probe, metric=metric, seed=0)
                assert sorted(r["subset"] for r in got) == [[0], [0, 1], [1]]
                assert all(0.0 <= r["value"] <= 1.0 for r in got)
    assert sorted(
        r["subset"] for r in _by(records, method="supervised", metric="accuracy", seed=1)
    ) == [
        [0],
        [0, 1],
        [1],
    ]
    # Geometry for GMC only; digits has two views, so no re-normalised variant.
    geo = _by(records, method="gmc", metric="recall@1", seed=0)
    assert sorted(r["subset"] for r in geo) == [[0], [1]]
    assert not _by(records, method="otm", metric="recall@1")
    assert not _by(records, method="gmc-renorm")
    # The untrained head would be near chance; the raw features through an MLP probe are not.
    raw = _by(records, method="raw", probe="mlp", metric="accuracy", subset=[0, 1])
    majority = _by(records, method="majority", metric="accuracy")
    assert min(r["value"] for r in raw) > 0.9 > 0.2 > max(r["value"] for r in majority)
    md = (out / "results.md").read_text()
    assert "| complete | left only | right only |" in md and "recall@1" in md
    assert (out / "embedding-gmc.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        "gmc-0.pt",
        "gmc-1.pt",
        "otm-0.pt",
        "otm-1.pt",
    ]
    # An identical rerun trains nothing and changes nothing; other epochs are refused.
    again = _cli(*args, "--out", str(out), "--json")
    assert again.exit_code == 0 and json.loads(again.output) == records
    other = _cli(*args[:-1], "3", "--out", str(out))
    assert other.exit_code == 2 and "epochs" in other.output


def _planted(n=300, seed=0):
    """View 0 carries the class, view 1 is pure noise, view 2 is the one-hot label."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    informative = np.eye(3)[y] * 6 + rng.normal(size=(n, 3))
    noise = rng.normal(size=(n, 4))
    return MultiViewDataset(
        [informative, noise, np.eye(3)[y]], y, names=["signal", "noise", "label"]
    )


def test_probe_trained_on_complete_rows_is_scored_from_each_subset():
    ds = _planted()
    parts = tuple(
        Preprocessor("zscore").fit(p).transform(p) for p in ds.split([0.6, 0.2, 0.2], seed=0)
    )
    views = input_views(ds.names)
    assert views == [0, 1]  # the label modality is never a probe or test input
    rep = Representation("raw", None, views)
    assert rep(parts[0], (0, 1)).shape[1] == 7  # signal + noise features, no label
    records = probe_records("planted", "raw", 0, rep, parts, subsets(views))
    acc = {
        (tuple(r["subset"]), r["probe"]): r["value"] for r in records if r["metric"] == "accuracy"
    }
    for probe in ("mlp", "linear"):
        assert acc[((0, 1), probe)] > 0.9
        assert acc[((0,), probe)] > 0.9  # the noise view zero-filled: nothing lost
        assert acc[((1,), probe)] < 0.6  # the signal view zero-filled: near chance (1/3)


def test_subsets_and_their_errors():
    names = ["image", "audio", "label"]
    assert subsets([0, 1]) == [(0, 1), (0,), (1,)]
    assert subsets([0, 1, 2])[:4] == [(0, 1, 2), (0,), (1,), (2,)]
    assert parse_subsets("image+audio, audio", names) == [(0, 1), (1,)]
    assert parse_subsets("1+0", names) == [(0, 1)]
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        parse_subsets("video", names)
    with pytest.raises(ValueError, match="label modality is never a test input"):
        parse_subsets("image+label", names)


def test_bad_datasets_get_one_clear_line(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 3))
    np.savez(tmp_path / "nolabels.npz", X1=x, X2=x)
    with pytest.raises(ValueError, match="no labels"):
        load_represent_data(str(tmp_path / "nolabels.npz"))
    result = _cli("--dataset", "digits", "--subsets", "middle", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: unknown modality 'middle'")
    result = _cli("--dataset", "digits", "--methods", "pca", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "unknown method" in result.output
    assert not (tmp_path / "o" / "results.json").exists()


def test_avdigits_test_split_is_paired_per_image():
    if not (SHARED_DATA / "fsdd").exists() or not (SHARED_DATA / "mnist").exists():
        pytest.skip("avdigits data not available in ../shared/data")
    data = load_represent_data("avdigits-label", SHARED_DATA)
    assert (data.train.n_rows, data.val.n_rows) == (2400, 300)
    assert 950 <= data.test.n_rows <= 1050
    assert data.test.names == ["image", "audio", "label"]
    assert input_views(data.test.names) == [0, 1]
    assert torch.equal(data.test.views[2].argmax(1), data.test.labels)


def test_other_protocols_refuse_the_label_modality(tmp_path):
    from modalign.data import DataError
    from modalign.data.builtin import refuse_label_view

    ds = _planted(30)
    with pytest.raises(DataError, match="view 'label' holds the labels themselves"):
        refuse_label_view(ds, "clustering")
    assert refuse_label_view(ds.select_views([0, 1]), "clustering").names == ["signal", "noise"]
    if not (SHARED_DATA / "fsdd").exists() or not (SHARED_DATA / "mnist").exists():
        pytest.skip("avdigits data not available in ../shared/data")
    for command in ("robustness", "cluster"):
        result = CliRunner().invoke(
            app,
            [command, "--dataset", "avdigits-label", "--data-dir", str(SHARED_DATA)]
            + ["--out", str(tmp_path / command)],
        )
        assert result.exit_code == 2 and "holds the labels themselves" in result.output, command


def test_label_modality_trains_gmc_but_is_never_tested(tmp_path):
    from modalign.experiments.represent import run_represent

    ds = _planted(150)
    np.savez(
        tmp_path / "planted.npz",
        signal=ds.views[0].numpy(),
        noise=ds.views[1].numpy(),
        label=ds.views[2].numpy(),
        y=ds.labels.numpy(),
    )
    records = run_represent(
        str(tmp_path / "planted.npz"), methods=["gmc"], seeds=[0], config={"epochs": 2}
    )
    assert {tuple(r["subset"]) for r in records} == {(0, 1), (0,), (1,)}
    # Complete = signal + noise, not the joint path: the re-normalised mean is a variant.
    assert _by(records, method="gmc-renorm", probe="mlp", metric="accuracy")
    assert not _by(records, method="gmc-renorm", metric="recall@1")
    assert len(_by(records, method="gmc", metric="recall@1")) == 2


def test_training_is_what_aligns_gmc_beside_its_untrained_network():
    from modalign.experiments.represent import run_represent

    records = run_represent(
        "digits", methods=["gmc", "gmc-untrained"], seeds=[0], config={"epochs": 20}
    )
    for view in (0, 1):
        trained = _by(records, method="gmc", metric="recall@1", subset=[view])[0]["value"]
        untrained = _by(records, method="gmc-untrained", metric="recall@1", subset=[view])
        assert trained > 0.2 > 0.1 > untrained[0]["value"]


def _planted_file(tmp_path, n=150):
    ds = _planted(n)
    path = tmp_path / "planted.npz"
    np.savez(
        path,
        signal=ds.views[0].numpy(),
        noise=ds.views[1].numpy(),
        label=ds.views[2].numpy(),
        y=ds.labels.numpy(),
    )
    return str(path)


def test_vaes_run_through_represent_and_never_see_the_label(tmp_path, monkeypatch):
    from modalign.experiments.represent import VAE_METHODS, run_represent
    from modalign.methods import MVAE, WVAE

    # Every representation the protocol asks of a VAE: the masks it passes.
    masks = []
    for cls in (MVAE, WVAE):
        original = cls.transform

        def spy(self, views, mask=None, *, _original=original, **kw):
            masks.append((views.names, mask.clone()))
            return _original(self, views, mask, **kw)

        monkeypatch.setattr(cls, "transform", spy)
    records = run_represent(
        _planted_file(tmp_path), methods=list(VAE_METHODS), seeds=[0], config={"epochs": 1}
    )
    assert all(set(r) == set(RESULT_KEYS) for r in records)
    assert {r["method"] for r in records} == {*VAE_METHODS, "raw", "supervised", "majority"}
    for method in VAE_METHODS:  # vae-untrained included
        for probe in ("mlp", "linear"):
            for metric in ("accuracy", "macro_f1"):
                got = _by(records, method=method, probe=probe, metric=metric)
                assert sorted(r["subset"] for r in got) == [[0], [0, 1], [1]]
                assert all(0.0 <= r["value"] <= 1.0 for r in got)
        assert len(_by(records, method=method, metric="train_seconds")) == 1
        assert not _by(records, method=method, metric="recall@1")  # geometry: GMC only
    # Train, val and test, each from every subset; the label view (index 2) never present.
    assert len(masks) >= 4 * (2 + 3)
    for names, mask in masks:
        assert names == ["signal", "noise", "label"] and mask.shape[1] == 3
        assert mask[:, :2].any(1).all() and not mask[:, 2].any()


def test_vae_representation_widths(tmp_path):
    from modalign.experiments.represent import Representation, _train, method_config

    ds = _planted(90)
    train, val, _ = ds.split([0.6, 0.2, 0.2], seed=0, stratify=True)
    widths = {}
    for method in ("mvae", "wvae", "wvae-factorised", "vae-untrained"):
        cfg = method_config(method, 3, {"epochs": 1, "latent_dim": 8, "unknown_field": 1})
        assert cfg.epochs == 1 and cfg.latent_dim == 8
        model = _train(method, cfg, train, val, 0, None, False)
        z = Representation(method, model, [0, 1])(val, (0,))
        assert z.shape[0] == val.n_rows and torch.isfinite(z).all()
        widths[method] = z.shape[1]
    # factorised: the shared part only (latent_dim // 2 by default).
    assert widths == {"mvae": 8, "wvae": 8, "wvae-factorised": 4, "vae-untrained": 8}
    assert method_config("wvae-factorised", 3, None).factorised
    assert not method_config("wvae", 3, None).factorised
    # vae-untrained: no epoch trained.
    assert (
        _train(
            "vae-untrained", method_config("vae-untrained", 3, None), train, val, 0, None, False
        ).history
        == []
    )


def test_auto_preprocessing_keeps_unit_images_and_scales_the_others():
    from modalign.experiments.represent import preprocessor

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 20)
    unit, wide = rng.uniform(size=(40, 6)), rng.uniform(0, 16, size=(40, 6))
    ds = MultiViewDataset(
        [unit, wide, rng.normal(size=(40, 3))],
        y,
        names=["a", "b", "c"],
        kinds=["image", "image", "features"],
    )
    train, test = ds.split([0.5, 0.5], seed=0)
    prep = preprocessor("auto", train).fit(train)
    assert prep.specs_ == ["none", "minmax", "zscore"]
    out = prep.transform(test)
    assert torch.equal(out.views[0], test.views[0])  # raw [0, 1] intensities, on every split
    scaled = prep.transform(train).views[1]
    assert float(scaled.min()) == 0.0 and float(scaled.max()) == pytest.approx(1.0)
    assert not torch.equal(out.views[1], test.views[1])
    assert preprocessor("zscore", train).fit(train).specs_ == ["zscore"] * 3


def test_represent_on_digits_label_end_to_end(tmp_path):
    from modalign.experiments.represent import SUPERVISED_SKIPPED, run_represent

    out = tmp_path / "rep"
    records = run_represent(
        "digits-label", methods=["mvae", "wvae"], seeds=[0], config={"epochs": 1}, out=out
    )
    # One input view, the image: the label trains the VAEs and is never a test input.
    assert {tuple(r["subset"]) for r in records} == {(0,)}
    assert {r["method"] for r in records} == {"mvae", "wvae", "raw", "majority"}
    for method in ("mvae", "wvae", "raw"):
        acc = _by(records, method=method, probe="mlp", metric="accuracy")
        assert len(acc) == 1 and 0.0 <= acc[0]["value"] <= 1.0
    md = (out / "results.md").read_text()
    assert SUPERVISED_SKIPPED in md and "| mvae |" in md and "| complete |" in md


def test_geometry_with_a_single_input_view_is_only_uniformity():
    from modalign.experiments.represent import geometry_records

    one = _planted(30).select_views([0, 2])  # signal + label: one input view
    records = geometry_records("planted", "raw", 0, Representation("raw", None, [0]), one)
    assert [(r["metric"], r["subset"]) for r in records] == [("uniformity", [0])]
    two = geometry_records("planted", "raw", 0, Representation("raw", None, [0, 1]), _planted(30))
    assert {r["metric"] for r in two} >= {"recall@1", "alignment", "uniformity"}
