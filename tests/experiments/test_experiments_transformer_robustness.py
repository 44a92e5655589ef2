"""``modalign robustness`` with the transformers on token data: models and names, the
alignment weights chosen on the validation split alone, records and tables, refusals, and the
per-batch trimming of padding."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from modalign.cli import app
from modalign.data import MultiViewDataset, Preprocessor
from modalign.eval import read_header
from modalign.experiments.robustness import (
    RESULT_KEYS,
    SELECTION,
    Splits,
    align_effect,
    choose_alignment,
    chosen_alignment,
    model_names,
    robustness_scores,
    run_robustness,
    validation_scores,
)
from modalign.methods.transformer import TransformerClassifier, TransformerConfig, trim_padding
from modalign.train import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
K = 3  # classes
SMALL = {
    "epochs": 1,
    "width": 16,
    "heads": 2,
    "fusion_heads": 2,
    "n_iter": 10,
    "batch_size": 16,
    "patience": None,
}
MODELS = ("transformer-late", "transformer-late+align", "transformer-late+dropout")


def token_part(n: int, seed: int, source: str) -> MultiViewDataset:
    """Two token views of a class signal: ``image`` (6 patch tokens of 4 values in [0, 1],
    every token real) and ``audio`` (up to 10 frames of 3 values, variable length, NaN in the
    padding); balanced classes."""
    centres = np.random.default_rng(0)
    c_img, c_aud = centres.uniform(0.2, 0.8, size=(K, 4)), centres.normal(size=(K, 3))
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % K)
    image = np.clip(c_img[y][:, None, :] + 0.15 * rng.normal(size=(n, 6, 4)), 0.0, 1.0)
    audio = c_aud[y][:, None, :] + rng.normal(size=(n, 10, 3))
    lengths = rng.integers(2, 8, size=n)
    lengths[0] = 10  # one full-length row: T_max is reached
    frames = np.arange(10)[None, :] < lengths[:, None]
    audio[~frames] = np.nan
    return MultiViewDataset(
        [image.astype(np.float32), audio.astype(np.float32)],
        y,
        names=["image", "audio"],
        kinds=["image", "audio"],
        token_masks=[None, frames],
        source=source,
    )


def token_splits(test_labels: np.ndarray | None = None) -> Splits:
    test = token_part(30, 3, "tokens[test]")
    if test_labels is not None:
        test = MultiViewDataset(
            list(test.views),
            test_labels,
            names=test.names,
            kinds=test.kinds,
            token_masks=test.token_masks,
            source=test.source,
        )
    return Splits(token_part(90, 1, "tokens[train]"), token_part(30, 2, "tokens[val]"), test)


def by_key(records):
    return {
        (r["model"], r["seed"], r["condition"], r["modality"], r["level"], r["metric"]): r["value"]
        for r in records
    }


def test_transformer_table_chooses_alignment_on_validation(tmp_path):
    splits = token_splits()
    kwargs = dict(
        name="tokens",
        models=["transformer-late", "transformer-early"],
        align="both",
        alphas=[0.1, 1.0],
        seeds=[0],
        config=SMALL,
    )
    records = run_robustness(splits, out=tmp_path, **kwargs)
    assert all(set(r) == set(RESULT_KEYS) for r in records)
    names = {r["model"] for r in records}
    early = {m.replace("late", "early") for m in MODELS}
    assert names == {*MODELS, *early, "majority"}
    # Every condition of the protocol, for every transformer (no fallback: no own heads).
    expected = {("clean", "all", 0.0)}
    expected |= {("missing", m, r) for m in ("image", "audio") for r in (0.25, 0.5, 0.75)}
    expected |= {("noise", m, r) for m in ("image", "audio", "all") for r in (0.25, 0.5, 0.75)}
    expected |= {("single", m, 0.0) for m in ("image", "audio")}
    tested = {"clean", "missing", "noise", "single"}
    for model in names - {"majority"}:
        mine = [r for r in records if r["model"] == model and r["condition"] in tested]
        assert {(r["condition"], r["modality"], r["level"]) for r in mine} == expected
        assert len(mine) == 2 * len(expected)  # accuracy and macro F1
        assert {r["metric"] for r in mine} == {"accuracy", "macro_f1"}

    # The chosen pair is the validation argmax (accuracy, then cross-entropy, then grid order).
    by = by_key(records)
    pairs = ["alpha=0.1 beta=0.5", "alpha=1 beta=0.5"]
    for model in ("transformer-late+align", "transformer-early+align"):
        scores = [
            {m: by[(model, 0, "validation", p, 0.0, m)] for m in ("accuracy", "cross_entropy")}
            for p in pairs
        ]
        best = max(range(2), key=lambda i: (scores[i]["accuracy"], -scores[i]["cross_entropy"], -i))
        assert choose_alignment(scores) == best
        assert chosen_alignment(records)[model][0] == {"alpha": [0.1, 1.0][best], "beta": 0.5}
    # The validation scores are those of the model kept: recomputed from its saved weights.
    saved = load_checkpoint(tmp_path / "models" / "transformer-late+align-0.pt")
    settings = {f.name: saved["settings"][f.name] for f in fields(TransformerConfig)}
    model = TransformerClassifier(TransformerConfig(**settings), random_state=0)
    model._build([4, 3], [6, 10])
    model.load_state_dict(saved["model"])
    prep = Preprocessor("auto").fit(splits.train)
    again = validation_scores(model, prep.transform(splits.val))
    pick = f"alpha={settings['alpha']:g} beta={settings['beta']:g}"
    for metric, value in again.items():
        stored = by[("transformer-late+align", 0, "validation", pick, 0.0, metric)]
        assert value == pytest.approx(stored, abs=1e-6)

    # The header: the grids and the rule for +align, the dropout baseline's p.
    configs = read_header(tmp_path)["configs"]
    assert configs["transformer-late+align"]["alpha"] == "[0.1, 1.0]"
    assert configs["transformer-late+align"]["beta"] == "[0.5]"
    assert configs["transformer-late+align"]["selection"] == SELECTION
    assert configs["transformer-late+dropout"]["modality_dropout"] == 0.3
    assert configs["transformer-late"]["align"] is False
    assert configs["transformer-early"]["fusion"] == "early"

    # Effects and robustness: seed-paired, against transformer-late.
    effect = align_effect(records)
    gap = (
        by[("transformer-late+align", 0, "clean", "all", 0.0, "accuracy")]
        - by[("transformer-late", 0, "clean", "all", 0.0, "accuracy")]
    )
    assert effect["transformer-late"]["clean"] == [pytest.approx(gap)]
    assert set(effect) == {"transformer-late", "transformer-early"}
    assert set(align_effect(records, "+dropout")) == {"transformer-late", "transformer-early"}
    rob = {(r["model"], r["condition"], r["modality"]): r for r in robustness_scores(records)}
    assert rob[("transformer-late", "noise", "audio")]["effective"] == pytest.approx(0.0)
    assert "effective" in rob[("transformer-early+align", "missing", "image")]
    md = (tmp_path / "results.md").read_text()
    for heading in (
        "Effective robustness",
        "`transformer-late` shifted",
        "What alignment changes",
        "Alignment against the modality-dropout baseline",
        "Alignment weights chosen on the validation split",
    ):
        assert heading in md
    assert "What OTM" not in md and "fallback" not in md
    # Finished runs keep only their weights; resuming retrains nothing.
    assert len(list((tmp_path / "models").glob("*.pt"))) == 6
    assert not list((tmp_path / "checkpoints").glob("*.pt"))
    assert len(list((tmp_path / "checkpoints").glob("*alpha*.history.csv"))) == 4
    assert run_robustness(splits, out=tmp_path, **kwargs) == records

    # The test labels play no part in the choice: other test labels, the same selection.
    flipped = (splits.test.labels.numpy() + 1) % K
    other = run_robustness(
        token_splits(flipped),
        **{**kwargs, "models": ["transformer-late"], "alphas": [0.1, 1.0]},
        baselines=False,
    )
    selection = {"validation", "chosen"}
    mine = [r for r in records if r["condition"] in selection and "late" in r["model"]]
    theirs = [r for r in other if r["condition"] in selection]
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in mine]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in theirs]
    tests = {"clean", "missing", "noise", "single"}
    assert any(by[k] != v for k, v in by_key(other).items() if k[2] in tests and k[0] != "majority")


def test_choose_alignment_breaks_ties_by_cross_entropy_then_grid_order():
    c = [
        {"accuracy": 0.9, "cross_entropy": 0.3},
        {"accuracy": 0.95, "cross_entropy": 0.5},
        {"accuracy": 0.95, "cross_entropy": 0.4},
        {"accuracy": 0.95, "cross_entropy": 0.4},
    ]
    assert choose_alignment(c) == 2
    with pytest.raises(ValueError):
        choose_alignment([])


def test_model_names_and_refusals():
    names = [r.name for r in model_names(["transformer-late", "late"], otm="on", align="both")]
    assert names == [
        "transformer-late",
        "transformer-late+align",
        "transformer-late+dropout",
        "late+otm",
    ]
    runs = model_names(["transformer-early"], align="on", baselines=False)
    assert [(r.name, r.fusion, r.align) for r in runs] == [
        ("transformer-early+align", "early", True)
    ]
    with pytest.raises(ValueError, match="--align"):
        model_names(["transformer-late"], align="sometimes")
    # A fusion MLP on token data is refused before any training, naming what to run instead.
    with pytest.raises(ValueError, match="run them on avdigits, which has the same pairs"):
        run_robustness(token_splits(), name="avdigits-tokens", models=["late"], seeds=[0])
    with pytest.raises(ValueError, match="fuse 2-D feature views"):
        run_robustness(token_splits(), models=["transformer-late", "mi"], seeds=[0])
    # And a transformer on 2-D views.
    with pytest.raises(ValueError, match="need token views"):
        run_robustness("digits", models=["transformer-early"], seeds=[0])
    with pytest.raises(ValueError, match="sets per model"):
        run_robustness(token_splits(), models=["transformer-late"], config={"alpha": 1.0})
    with pytest.raises(ValueError, match="--alphas values must be positive"):
        run_robustness(token_splits(), models=["transformer-late"], alphas=[0.0, 1.0])


def test_cli_refuses_bad_values_in_one_line(tmp_path):
    runner = CliRunner()
    base = ["robustness", "--dataset", "digits", "--out", str(tmp_path)]
    for extra, named in (
        (["--align", "bogus"], "--align must be one of"),
        (["--alphas", "0.1,x"], "--alphas takes comma-separated numbers"),
        (["--betas", "-1"], "--betas values must be positive"),
        (["--models", "transformer-late"], "need token views"),
    ):
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and named in result.output, result.output
    help_text = runner.invoke(app, ["robustness", "--help"]).output
    assert "transformer-late" in help_text and "--no-baselines" in help_text


def test_cli_sends_fusion_mlps_on_avdigits_tokens_to_avdigits(tmp_path):
    if not (SHARED_DATA / "mnist").exists() or not (SHARED_DATA / "fsdd").exists():
        pytest.skip(f"real data not available under {SHARED_DATA}")
    args = ["robustness", "--dataset", "avdigits-tokens", "--data-dir", str(SHARED_DATA)]
    result = CliRunner().invoke(app, args + ["--models", "late", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "run them on avdigits, which has the same pairs and splits" in result.output


def test_trimming_padding_changes_no_output():
    ds = token_part(40, 5, "t")
    views, masks = list(ds.views), [torch.ones(40, 6, dtype=torch.bool), ds.token_masks[1]]
    cfg = TransformerConfig(n_outputs=K, width=16, heads=2, fusion_heads=2, dropout=0.0)
    for fusion in ("late", "early"):
        model = TransformerClassifier(TransformerConfig(**{**cfg.__dict__, "fusion": fusion}))
        model._build([4, 3], [6, 10])
        model.eval()
        present = torch.ones(40, 2, dtype=torch.bool)
        present[::3, 1] = False
        rows = torch.arange(1, 40)  # without the full-length row: the batch is cut
        xs, tms = [v[rows] for v in views], [m[rows] for m in masks]
        cut_x, cut_t = trim_padding(xs, tms, present[rows])
        longest = int((tms[1] & present[rows, 1:]).sum(1).max())
        assert cut_x[0].shape[1] == 6 and cut_x[1].shape[1] == longest < 10
        with torch.no_grad():
            full = model.net(xs, tms, present[rows])
            cut = model.net(cut_x, cut_t, present[rows])
            # _logits sorts the rows by length and cuts each chunk; the order is restored.
            chunked = model._logits(views, masks, present)
        torch.testing.assert_close(cut.logits, full.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(chunked[rows], full.logits, atol=1e-5, rtol=1e-5)
        n = cut_t[1].shape[1]
        torch.testing.assert_close(cut.tokens[1], full.tokens[1][:, :n], atol=1e-5, rtol=1e-5)
        assert float(full.tokens[1][:, n:].abs().sum()) == 0.0
    # A modality absent from the whole batch keeps one (masked) position.
    none = torch.zeros(40, 2, dtype=torch.bool)
    none[:, 0] = True
    assert trim_padding(views, masks, none)[0][1].shape[1] == 1


def test_cli_runs_the_transformers_on_token_data(tmp_path, monkeypatch):
    """The command end to end on the synthetic tokens (saved as the only dataset it reads)."""
    import modalign.experiments.robustness as protocol

    real = protocol.load_data
    monkeypatch.setattr(
        protocol, "load_data", lambda dataset, data_dir=None: real(token_splits(), data_dir)
    )
    args = ["robustness", "--dataset", "tokens", "--models", "transformer-early", "--align"]
    args += ["on", "--alphas", "1", "--no-baselines", "--seeds", "1", "--epochs", "1"]
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert {r["model"] for r in records} == {"transformer-early+align", "majority"}
    assert chosen_alignment(records) == {
        "transformer-early+align": {0: {"alpha": 1.0, "beta": 0.5}}
    }


@pytest.mark.slow
def test_parallel_jobs_give_the_records_of_one_process(tmp_path):
    """``jobs = 2`` trains the grid's candidates in two worker processes: the same records
    (all but their seconds), in the same order, as one process; resuming retrains nothing."""
    kwargs = dict(
        name="tokens",
        models=["transformer-late"],
        align="both",
        alphas=[0.1, 1.0],
        seeds=[0, 1],
        config=SMALL,
        baselines=False,
    )
    one = run_robustness(token_splits(), **kwargs)
    two = run_robustness(token_splits(), out=tmp_path, jobs=2, **kwargs)

    def strip(records):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert strip(two) == strip(one)
    assert len(list((tmp_path / "models").glob("*.pt"))) == 4
    assert run_robustness(token_splits(), out=tmp_path, jobs=2, **kwargs) == two
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        run_robustness(token_splits(), jobs=0, **kwargs)
