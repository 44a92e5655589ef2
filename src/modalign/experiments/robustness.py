"""The robustness protocol behind ``modalign robustness`` (DESIGN.md section 3, MultiBench's).

For every seed and model: train on clean training data (early stopping on a validation split,
never on test labels), then evaluate on the test split

* clean;
* with one modality missing for 25 / 50 / 75 % of the test samples
  (:func:`~modalign.data.drop_modalities` with ``views=[name]``; the model gets the mask);
* with noise of level 0.25 / 0.5 / 0.75 on one modality, and on all at once
  (:func:`~modalign.data.add_noise`, applied to the raw features before preprocessing);
* from each single modality, through that modality's own head.

Corruptions are drawn from the seed, so every model of a seed sees the same corrupted test set.
Summaries: mean ± std over seeds of accuracy and macro F1 per condition, relative robustness
(normalised area under accuracy against level) and effective robustness (against late fusion
without OTM) per corruption family, the seed-paired effect of OTM per fusion, and a PNG of the
robustness curves.

avdigits uses its fixed train / val / test splits; any other dataset is split 60 / 20 / 20,
stratified by class, with a different split per seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modalign.data import MultiViewDataset, Preprocessor, add_noise, drop_modalities, load_dataset
from modalign.data.builtin import refuse_label_view
from modalign.eval.report import (
    mean_std_text,
    read_header,
    read_protocol_records,
    write_results_file,
)
from modalign.eval.robustness import (
    effective_robustness,
    plot_robustness_curves,
    relative_robustness,
)
from modalign.eval.supervised import classification_scores
from modalign.methods.supervised import SupervisedConfig, SupervisedFusion
from modalign.nn import FUSIONS
from modalign.provenance import (
    check_provenance,
    data_fingerprint,
    dataset_name,
    plain_settings,
    protocol_key,
    run_header,
)
from modalign.train import keyed_checkpoint, save_checkpoint

MISSING_RATES = (0.25, 0.5, 0.75)
NOISE_LEVELS = (0.25, 0.5, 0.75)
OTM_CHOICES = ("off", "on", "both")
#: Missing modalities again, with ``single_fallback``: a sample left with one modality is
#: predicted by that modality's own head rather than by the fusion of zero-filled codes.
FALLBACK = "missing+fallback"
#: The reference of effective robustness: late fusion without augmentation (MultiBench's LF).
REFERENCE_MODEL = "late"
RESULT_KEYS = (
    "dataset",
    "model",
    "seed",
    "condition",
    "modality",
    "level",
    "metric",
    "value",
    "seconds",
)


@dataclass
class Splits:
    """Raw (unpreprocessed) train, validation and test parts of one seed."""

    train: MultiViewDataset
    val: MultiViewDataset
    test: MultiViewDataset


def load_data(dataset: str, data_dir: str | Path | None = None) -> Splits | MultiViewDataset:
    """avdigits' fixed splits, or any other dataset whole (checked: labelled, aligned and
    complete), to be split per seed by :func:`seed_splits`."""
    if dataset.lower() == "avdigits":
        parts = [
            load_dataset("avdigits", data_dir=data_dir, split=s) for s in ("train", "val", "test")
        ]
        return Splits(*parts)
    full = refuse_label_view(load_dataset(dataset, data_dir=data_dir), "the robustness protocol")
    if full.labels is None:
        raise ValueError(
            f"dataset {dataset!r} has no labels: robustness needs a classification task"
        )
    if not full.is_aligned or full.missing_rate > 0:
        raise ValueError(f"dataset {dataset!r} must be aligned and complete to train fusion models")
    return full


def seed_splits(data: Splits | MultiViewDataset, seed: int) -> Splits:
    """The splits of ``seed``: fixed ones as they are, else 60 / 20 / 20 stratified by class."""
    if isinstance(data, Splits):
        return data
    return Splits(*data.split([0.6, 0.2, 0.2], seed=seed, stratify=True))


def _parts(data: Splits | MultiViewDataset) -> list[MultiViewDataset]:
    return [data.train, data.val, data.test] if isinstance(data, Splits) else [data]


def model_config(
    fusion: str, otm: bool, n_classes: int, config: Mapping[str, Any] | None
) -> SupervisedConfig:
    """The :class:`~modalign.methods.SupervisedConfig` of one model of the table."""
    return SupervisedConfig(n_outputs=n_classes, fusion=fusion, otm=otm, **(config or {}))


def corrupted_test_sets(
    test: MultiViewDataset, seed: int
) -> list[tuple[str, str, float, MultiViewDataset]]:
    """``(condition, modality, level, raw test set)`` for every corrupted evaluation."""
    out: list[tuple[str, str, float, MultiViewDataset]] = [("clean", "all", 0.0, test)]
    for name in test.names:
        for rate in MISSING_RATES:
            out.append(("missing", name, rate, drop_modalities(test, rate, seed, views=[name])))
    for name in [*test.names, "all"]:
        views = None if name == "all" else [name]
        for level in NOISE_LEVELS:
            out.append(("noise", name, level, add_noise(test, level, views, seed=seed)))
    return out


def _records(dataset, model, seed, condition, modality, level, scores, seconds) -> list[dict]:
    return [
        {
            "dataset": dataset,
            "model": model,
            "seed": int(seed),
            "condition": condition,
            "modality": modality,
            "level": float(level),
            "metric": metric,
            "value": float(value),
            "seconds": float(seconds),
        }
        for metric, value in scores.items()
    ]


def _labels(ds: MultiViewDataset) -> np.ndarray:
    return ds.row_labels(0).cpu().numpy()


def run_model(
    model_name: str,
    fusion: str,
    otm: bool,
    dataset: str,
    splits: Splits,
    seed: int,
    *,
    preprocess: str = "auto",
    config: Mapping[str, Any] | None = None,
    checkpoint: Path | None = None,
    progress: bool = False,
) -> tuple[list[dict], SupervisedFusion]:
    """Train one model on one seed's splits and evaluate it under every condition; return
    the records and the trained model."""
    prep = Preprocessor(preprocess).fit(splits.train)
    train, val = prep.transform(splits.train), prep.transform(splits.val)
    cfg = model_config(fusion, otm, int(splits.train.labels.max()) + 1, config)
    start = time.perf_counter()
    model = SupervisedFusion(cfg, random_state=seed).fit(
        list(train.views),
        _labels(train),
        validation=(list(val.views), _labels(val)),
        modality_names=train.names,
        checkpoint=checkpoint,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    records = []
    for condition, modality, level, raw in corrupted_test_sets(splits.test, seed):
        test = prep.transform(raw)
        scores = model.score(list(test.views), _labels(test), mask=test.mask)
        records += _records(dataset, model_name, seed, condition, modality, level, scores, seconds)
        if condition == "missing":
            # The same model, with lone modalities predicted by their own heads.
            scores = model.score(
                list(test.views), _labels(test), mask=test.mask, single_fallback=True
            )
            records += _records(
                dataset, model_name, seed, FALLBACK, modality, level, scores, seconds
            )
    test = prep.transform(splits.test)
    for m, name in enumerate(test.names):
        scores = model.score(list(test.views), _labels(test), modality=m)
        records += _records(dataset, model_name, seed, "single", name, 0.0, scores, seconds)
    return records, model


def majority_records(dataset: str, splits: Splits, seed: int) -> list[dict]:
    """The trivial baseline: the most frequent training class, for every test sample."""
    y_train, y_test = _labels(splits.train), _labels(splits.test)
    guess = np.full_like(y_test, np.bincount(y_train).argmax())
    return _records(
        dataset, "majority", seed, "clean", "all", 0.0, classification_scores(y_test, guess), 0.0
    )


def model_names(models: Sequence[str], otm: str) -> list[tuple[str, str, bool]]:
    """``(name, fusion, otm)`` for every requested model; names ``late`` and ``late+otm``."""
    unknown = [m for m in models if m not in FUSIONS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}: choose from {sorted(FUSIONS)}")
    if otm not in OTM_CHOICES:
        raise ValueError(f"--otm must be one of {OTM_CHOICES}, got {otm!r}")
    flags = {"off": (False,), "on": (True,), "both": (False, True)}[otm]
    return [(f + ("+otm" if flag else ""), f, flag) for f in models for flag in flags]


def read_robustness(out: Path) -> list[dict]:
    """Records of ``out/results.json`` (``[]`` if absent), checked for the expected keys."""
    return read_protocol_records(out, RESULT_KEYS, "robustness")


def run_robustness(
    dataset: str,
    *,
    models: Sequence[str] = tuple(FUSIONS),
    otm: str = "both",
    seeds: Sequence[int] = range(5),
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    preprocess: str = "auto",
    config: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    progress_bars: bool = False,
) -> list[dict]:
    """Run the benchmark and return its records.

    With ``out``: write ``results.json``, ``results.md`` and ``robustness.png`` there after
    every run, a training checkpoint per epoch under ``checkpoints/`` (an interrupted run
    resumes from it; its curves stay in ``*.history.csv``), and each finished model's weights
    under ``models/``. Runs already in ``results.json`` are not repeated (an interrupted
    benchmark resumes), and a folder written for other data, preprocessing or model configs is
    refused (:func:`modalign.provenance.check_provenance`)."""
    started = time.perf_counter()
    runs = model_names(models, otm)
    out = Path(out) if out is not None else None
    name, data = dataset_name(dataset), load_data(dataset, data_dir)
    parts = _parts(data)
    # Records and checkpoints are reused only when everything that produced them is the same:
    # the folder's key (data, preprocessing) and each model's full config.
    sha = data_fingerprint(*parts)
    key = protocol_key("robustness", name, sha, preprocess=preprocess)
    n_classes = int(parts[0].labels.max()) + 1
    configs = {
        m: plain_settings(asdict(model_config(f, flag, n_classes, config))) for m, f, flag in runs
    }
    records: list[dict] = []
    if out is not None:
        configs = check_provenance(out, read_header(out), key, configs)
        records = read_robustness(out)

    def header() -> dict:
        return run_header(
            key=key,
            configs=configs,
            data={"name": name, "sha256": sha, "source": parts[0].source},
            started=started,
            device=str((config or {}).get("device", "cpu")),
        )

    done = {(r["model"], r["seed"]) for r in records}
    say = progress or (lambda _msg: None)
    for seed in seeds:
        splits = seed_splits(data, seed)
        todo = [r for r in runs if (r[0], seed) not in done]
        if ("majority", seed) not in done:
            records += majority_records(name, splits, seed)
        for model_name, fusion, flag in todo:
            ckpt = (
                None
                if out is None
                else keyed_checkpoint(
                    out / "checkpoints",
                    f"{model_name}-{seed}",
                    {**key, "config": configs[model_name], "seed": seed},
                )
            )
            new, model = run_model(
                model_name,
                fusion,
                flag,
                name,
                splits,
                seed,
                preprocess=preprocess,
                config=config,
                checkpoint=ckpt,
                progress=progress_bars,
            )
            records += new
            clean = {r["metric"]: r["value"] for r in new if r["condition"] == "clean"}
            say(
                f"{model_name:>12} seed {seed}: clean accuracy {clean['accuracy']:.3f} "
                f"macro F1 {clean['macro_f1']:.3f} ({new[0]['seconds']:.1f} s)"
            )
            if out is not None:
                write_robustness(out, records, header())
                # The run is in results.json now: keep its trained weights (a few MB) and drop
                # the training checkpoint (optimiser state and best-epoch copy: several times
                # larger, only needed to resume an interrupted run).
                save_checkpoint(
                    out / "models" / f"{model_name}-{seed}.pt",
                    {"model": model.state_dict(), "settings": plain_settings(asdict(model.config))},
                )
                ckpt.unlink(missing_ok=True)
    if out is not None and records:
        write_robustness(out, records, header())
    return records


# ------------------------------------------------------------------------------ summaries
def _by(records: Sequence[dict], metric: str = "accuracy") -> dict[tuple, dict[int, float]]:
    """``{(model, condition, modality, level): {seed: value}}`` for one metric."""
    table: dict[tuple, dict[int, float]] = {}
    for r in records:
        if r["metric"] == metric:
            key = (r["model"], r["condition"], r["modality"], r["level"])
            table.setdefault(key, {})[r["seed"]] = r["value"]
    return table


def _models(records: Sequence[dict]) -> list[str]:
    """Models in the order they were run, each followed by its +OTM variant, majority last."""
    seen: list[str] = []
    for r in records:
        if r["model"] not in seen:
            seen.append(r["model"])
    bases = list(dict.fromkeys(m.removesuffix("+otm") for m in seen))
    return sorted(
        seen,
        key=lambda m: (m == "majority", bases.index(m.removesuffix("+otm")), m.endswith("+otm")),
    )


def _families(records: Sequence[dict]) -> list[tuple[str, str]]:
    fam: list[tuple[str, str]] = []
    for r in records:
        key = (r["condition"], r["modality"])
        if r["condition"] in ("missing", FALLBACK, "noise") and key not in fam:
            fam.append(key)
    return fam


def curves(records: Sequence[dict], metric: str = "accuracy") -> dict[tuple, dict[str, Any]]:
    """Per corruption family ``(condition, modality)`` and model: levels (0 = clean first)
    and the per-seed values ``{seed: [value per level]}`` (seeds with every level only)."""
    by = _by(records, metric)
    out: dict[tuple, dict[str, Any]] = {}
    for family in _families(records):
        for model in _models(records):
            clean = by.get((model, "clean", "all", 0.0))
            if clean is None:
                continue
            levels = sorted(k[3] for k in by if k[0] == model and (k[1], k[2]) == family)
            if not levels:
                continue
            cols = [clean] + [by[(model, *family, lvl)] for lvl in levels]
            seeds = sorted(set.intersection(*(set(c) for c in cols)))
            out.setdefault(family, {})[model] = {
                "levels": [0.0, *levels],
                "values": {s: [c[s] for c in cols] for s in seeds},
            }
    return out


def robustness_scores(records: Sequence[dict]) -> list[dict]:
    """Relative and effective robustness (accuracy) per model, family and seed.

    Effective robustness is measured against :data:`REFERENCE_MODEL` of the same seed and is
    absent when that model was not run."""
    rows = []
    for family, per_model in curves(records).items():
        ref = per_model.get(REFERENCE_MODEL)
        for model, c in per_model.items():
            for seed, values in c["values"].items():
                row = {
                    "model": model,
                    "condition": family[0],
                    "modality": family[1],
                    "seed": seed,
                    "relative": relative_robustness(c["levels"], values),
                }
                if ref is not None and seed in ref["values"]:
                    row["effective"] = effective_robustness(
                        c["levels"], values, ref["values"][seed]
                    )
                rows.append(row)
    return rows


def _head(columns: Sequence[str]) -> list[str]:
    """A Markdown table's header: names, then a rule centring every column but the first."""
    return ["| " + " | ".join(columns) + " |", "| --- |" + " :---: |" * (len(columns) - 1)]


def _row(name: str, cells: Sequence[str]) -> str:
    return "| " + " | ".join([name, *cells]) + " |"


def _family_label(family: tuple[str, str]) -> str:
    condition, modality = family
    return f"{condition} {modality}" if modality != "all" else f"{condition} (all modalities)"


def markdown(records: Sequence[dict]) -> str:
    """The tables of ``results.md`` (see the module docstring)."""
    if not records:
        return "_no results_\n"
    acc, f1 = _by(records, "accuracy"), _by(records, "macro_f1")
    models = _models(records)
    dataset = records[0]["dataset"]
    n_seeds = len({r["seed"] for r in records})
    modalities = [r["modality"] for r in records if r["condition"] == "single"]
    modalities = list(dict.fromkeys(modalities))
    lines = [
        f"# Robustness on {dataset}",
        "",
        f"Test-set scores, mean ± std over {n_seeds} seed(s). Models train on clean data; "
        "early stopping uses a validation split, never the test labels.",
        "",
        "## Clean test set and single-modality inference",
        "",
        *_head(
            ["model", "accuracy", "macro F1"]
            + [f"{m} only (accuracy)" for m in modalities]
            + ["train seconds (median)"]
        ),
    ]
    seconds: dict[str, list[float]] = {}
    for r in records:
        if r["condition"] == "clean" and r["metric"] == "accuracy":
            seconds.setdefault(r["model"], []).append(r["seconds"])
    for model in models:
        cells = [
            mean_std_text(acc.get((model, "clean", "all", 0.0), {}).values()),
            mean_std_text(f1.get((model, "clean", "all", 0.0), {}).values()),
            *(mean_std_text(acc.get((model, "single", m, 0.0), {}).values()) for m in modalities),
            f"{np.median(seconds.get(model, [0.0])):.1f}",
        ]
        lines.append(_row(model, cells))
    for condition, title in (
        ("missing", "Missing modality (share of test samples)"),
        (
            FALLBACK,
            "Missing modality, samples left with one modality predicted by its own head",
        ),
        ("noise", "Noise (level)"),
    ):
        fams = [f for f in _families(records) if f[0] == condition]
        if not fams:
            continue
        levels = NOISE_LEVELS if condition == "noise" else MISSING_RATES
        cols = [(f, lvl) for f in fams for lvl in levels]
        lines += [
            "",
            f"## {title}: accuracy",
            "",
            *_head(["model"] + [f"{f[1]} {lvl:g}" for f, lvl in cols]),
        ]
        for model in models:
            if model == "majority":
                continue
            cells = [mean_std_text(acc.get((model, *f, lvl), {}).values()) for f, lvl in cols]
            lines.append(_row(model, cells))
    rob = robustness_scores(records)
    if rob:
        fams = _families(records)
        intro = {
            "relative": "the area under accuracy against corruption level (clean = 0) divided "
            "by the level range, i.e. the mean accuracy over the range",
            "effective": "the mean, over the corrupted levels, of accuracy minus that of "
            f"`{REFERENCE_MODEL}` shifted to start at the model's clean accuracy (0 for "
            f"`{REFERENCE_MODEL}` itself; above 0: degrades more gracefully)",
        }
        for kind in ("relative", "effective"):
            if not any(kind in r for r in rob):
                continue
            lines += [
                "",
                f"## {kind.capitalize()} robustness (accuracy)",
                "",
                f"MultiBench's definition, {intro[kind]}; without MultiBench's min-max "
                "normalisation across the models of a table, so a number does not depend on "
                "which other models ran.",
                "",
                *_head(["model"] + [_family_label(f) for f in fams]),
            ]
            for model in models:
                if model == "majority":
                    continue
                cells = [
                    mean_std_text(
                        [
                            r[kind]
                            for r in rob
                            if r["model"] == model
                            and (r["condition"], r["modality"]) == f
                            and kind in r
                        ]
                    )
                    for f in fams
                ]
                lines.append(_row(model, cells))
    effect = otm_effect(records)
    if effect:
        lines += [
            "",
            "## What OTM augmentation changes (accuracy, +OTM minus without, paired by seed)",
            "",
            *_head(
                ["fusion", "clean", "mean over missing", "mean over noise"]
                + [f"{m} only" for m in modalities]
            ),
        ]
        for fusion, diffs in effect.items():
            cells = [mean_std_text(diffs[k]) for k in ("clean", "missing", "noise")]
            cells += [mean_std_text(diffs[f"single {m}"]) for m in modalities]
            lines.append(_row(fusion, cells))
    return "\n".join(lines) + "\n"


def _mean_condition(acc: dict, model: str, seed: int, condition: str) -> float:
    vals = [v[seed] for k, v in acc.items() if k[0] == model and k[1] == condition and seed in v]
    return float(np.mean(vals))


def otm_effect(records: Sequence[dict]) -> dict[str, dict[str, list[float]]]:
    """Seed-paired accuracy differences (+OTM minus without) per fusion: clean, the mean over
    the missing and noise conditions, and each single modality."""
    acc = _by(records, "accuracy")
    models = _models(records)
    out: dict[str, dict[str, list[float]]] = {}
    for model in models:
        base = model.removesuffix("+otm")
        if model == base or base not in models:
            continue
        clean, base_clean = acc[(model, "clean", "all", 0.0)], acc[(base, "clean", "all", 0.0)]
        diffs: dict[str, list[float]] = {"clean": [], "missing": [], "noise": []}
        for s in sorted(set(clean) & set(base_clean)):
            diffs["clean"].append(clean[s] - base_clean[s])
            for condition in ("missing", "noise"):
                diffs[condition].append(
                    _mean_condition(acc, model, s, condition)
                    - _mean_condition(acc, base, s, condition)
                )
            for k in acc:
                if k[0] == model and k[1] == "single":
                    diffs.setdefault(f"single {k[2]}", []).append(
                        acc[k][s] - acc[(base, *k[1:])][s]
                    )
        out[base] = diffs
    return out


def write_robustness(
    out: Path, records: Sequence[dict], header: Mapping[str, Any] | None = None
) -> None:
    """Write ``results.json`` (``header`` and records), ``results.md`` and ``robustness.png``
    atomically."""
    md = markdown(records)
    panels = {}
    for family, per_model in curves(records).items():
        lines = {}
        for model, c in per_model.items():
            if model == "majority":
                continue
            vals = np.asarray(list(c["values"].values()), dtype=float)
            std = vals.std(0, ddof=1) if len(vals) > 1 else None
            lines[model] = (c["levels"], vals.mean(0), std)
        if lines:
            panels[_family_label(family)] = lines
    if panels:
        plot_robustness_curves(
            panels,
            out / "robustness.png",
            title=f"{records[0]['dataset']}: accuracy under corruption",
        )
        md += "\n![robustness curves](robustness.png)\n"
    write_results_file(out, records, md, header)
