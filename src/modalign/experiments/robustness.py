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
without OTM; for the transformers, against ``transformer-late`` without alignment) per
corruption family, the seed-paired effect of OTM per fusion and of alignment per transformer,
and a PNG of the robustness curves.

Two families of models, each on its kind of data:

* the supervised fusion MLPs (``late``, ``tensor``, ``lowrank``, ``mi``;
  :class:`~modalign.methods.SupervisedFusion`) on 2-D feature views, with ``otm`` naming
  ``late`` and ``late+otm``;
* the multimodal transformers ``transformer-late`` and ``transformer-early``
  (:class:`~modalign.methods.TransformerClassifier`, late or early fusion) on token views
  ``(N, T, d)`` (``avdigits-tokens``), with ``align`` naming ``transformer-late`` and
  ``transformer-late+align`` (the Wasserstein alignment loss ``alpha * OT_beta``), and the
  baseline ``transformer-late+dropout``: the same transformer trained with modality dropout
  (:data:`MODALITY_DROPOUT`), the common robust-training recipe. The transformers take
  :data:`TRANSFORMER_DEFAULTS` unless ``config`` says otherwise.

  ``alpha`` and ``beta`` of a ``+align`` model are chosen per seed on the validation split,
  never on test: one model is trained per pair of the grid (``alphas`` x ``betas``, default
  the paper's alpha grid :data:`ALPHAS` and UNITER's IPOT step :data:`BETAS`), each early-
  stopped on its validation cross-entropy, and the one with the highest validation accuracy
  is kept (ties: the lower validation cross-entropy, then the earlier pair of the grid;
  :func:`choose_alignment`). Only that one is tested. ``results.json`` holds every pair's
  validation scores (records with condition ``"validation"``, modality ``"alpha=A beta=B"``,
  metrics ``accuracy`` and ``cross_entropy``) and the chosen pair (condition ``"chosen"``,
  metrics ``alpha`` and ``beta``); the header's config of the model holds the grids. Its
  ``seconds`` count the whole search.

The families do not mix: a fusion MLP on token data (or a transformer on 2-D views) is refused
with a message naming the dataset to use (``avdigits`` has the same pairs and splits as
``avdigits-tokens``).

avdigits and avdigits-tokens use their fixed train / val / test splits; any other dataset is
split 60 / 20 / 20, stratified by class, with a different split per seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from modalign.data import MultiViewDataset, Preprocessor, add_noise, drop_modalities, load_dataset
from modalign.data.builtin import refuse_label_view
from modalign.data.load import check_classes
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
from modalign.experiments.parallel import run_tasks
from modalign.methods.supervised import SupervisedConfig, SupervisedFusion
from modalign.methods.transformer import TransformerClassifier, TransformerConfig
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
ALIGN_CHOICES = ("off", "on", "both")
#: The transformers of :class:`~modalign.methods.TransformerClassifier` and their fusions.
TRANSFORMERS = {"transformer-late": "late", "transformer-early": "early"}
#: The alignment weights tried on the validation split: the paper's grid (Zhi et al., 2025).
ALPHAS = (0.1, 0.2, 1.0, 5.0)
#: The IPOT proximal steps tried: UNITER's default alone, a CPU-sized subset of the paper's grid.
BETAS = (0.5,)
#: The modality dropout of the ``+dropout`` baselines: each training sample drops each modality
#: with this probability (never all). No documented default was found; 0.3 is our choice.
MODALITY_DROPOUT = 0.3
#: The transformers' protocol settings over :class:`~modalign.methods.TransformerConfig`'s
#: defaults (``config`` overrides both): a CPU budget. Without dropout a late-fusion epoch on
#: avdigits-tokens is 2.5x faster (attention dropout takes PyTorch's slower CPU path); at most
#: 10 epochs with patience 3 (validation accuracies of 0.98-0.99 for both fusions: the
#: chosen-alpha tables of docs/transformer.md; validation split only).
TRANSFORMER_DEFAULTS: dict[str, Any] = {"dropout": 0.0, "epochs": 10, "patience": 3}
#: How the alignment weights are chosen (stored in the header's config of every +align model).
SELECTION = "validation accuracy; ties: lower validation cross-entropy, then grid order"
#: Missing modalities again, with ``single_fallback``: a sample left with one modality is
#: predicted by that modality's own head rather than by the fusion of zero-filled codes.
FALLBACK = "missing+fallback"
#: The reference of effective robustness: late fusion without augmentation (MultiBench's LF).
REFERENCE_MODEL = "late"
#: The transformers' reference: the late-fusion transformer without alignment or dropout.
TRANSFORMER_REFERENCE = "transformer-late"
#: The datasets with fixed train / val / test splits.
FIXED_SPLITS = ("avdigits", "avdigits-tokens")
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


def _check_whole(full: MultiViewDataset, name: str) -> MultiViewDataset:
    """``full`` if it can be split per seed for the protocol (labelled, aligned, complete)."""
    full = refuse_label_view(full, "the robustness protocol")
    if full.labels is None:
        raise ValueError(f"dataset {name!r} has no labels: robustness needs a classification task")
    check_classes(full, "the robustness protocol")
    if not full.is_aligned or full.missing_rate > 0:
        raise ValueError(f"dataset {name!r} must be aligned and complete to train fusion models")
    return full


def load_data(
    dataset: str | Path | MultiViewDataset | Splits, data_dir: str | Path | None = None
) -> Splits | MultiViewDataset:
    """avdigits' (and avdigits-tokens') fixed splits, or any other dataset whole (checked:
    labelled, aligned and complete), to be split per seed by :func:`seed_splits`.
    ``dataset`` may also be a :class:`MultiViewDataset` (used whole, checked) or a
    :class:`Splits` (used as they are, every part labelled)."""
    if isinstance(dataset, Splits):
        for part in _parts(dataset):
            refuse_label_view(part, "the robustness protocol")
            if part.labels is None:
                raise ValueError(f"{part.source}: robustness needs labels in every split")
        return dataset
    if isinstance(dataset, MultiViewDataset):
        return _check_whole(dataset, dataset.source)
    if str(dataset).lower() in FIXED_SPLITS:
        parts = [
            load_dataset(str(dataset).lower(), data_dir=data_dir, split=s)
            for s in ("train", "val", "test")
        ]
        return Splits(*parts)
    return _check_whole(load_dataset(dataset, data_dir=data_dir), str(dataset))


def seed_splits(data: Splits | MultiViewDataset, seed: int) -> Splits:
    """The splits of ``seed``: fixed ones as they are, else 60 / 20 / 20 stratified by class."""
    if isinstance(data, Splits):
        return data
    return Splits(*data.split([0.6, 0.2, 0.2], seed=seed, stratify=True))


def _parts(data: Splits | MultiViewDataset) -> list[MultiViewDataset]:
    return [data.train, data.val, data.test] if isinstance(data, Splits) else [data]


@dataclass(frozen=True)
class ModelRun:
    """One model of the table: its ``name`` (``late+otm``, ``transformer-late+align``...),
    ``family`` (``"fusion"``: :class:`~modalign.methods.SupervisedFusion` on 2-D views;
    ``"transformer"``: :class:`~modalign.methods.TransformerClassifier` on token views), its
    ``fusion``, and whether it adds OTM, alignment or modality dropout."""

    name: str
    family: str
    fusion: str
    otm: bool = False
    align: bool = False
    dropout: float = 0.0


def model_config(
    fusion: str, otm: bool, n_classes: int, config: Mapping[str, Any] | None
) -> SupervisedConfig:
    """The :class:`~modalign.methods.SupervisedConfig` of one fusion MLP of the table."""
    return SupervisedConfig(n_outputs=n_classes, fusion=fusion, otm=otm, **(config or {}))


#: TransformerConfig fields the protocol sets per model, never through ``config``.
_PER_MODEL = {
    "n_outputs": "the data",
    "fusion": "--models",
    "align": "--align",
    "alpha": "--alphas",
    "beta": "--betas",
    "modality_dropout": "the +dropout baseline",
}


def transformer_config(
    run: ModelRun,
    n_classes: int,
    config: Mapping[str, Any] | None,
    *,
    alpha: float | None = None,
    beta: float | None = None,
) -> TransformerConfig:
    """The :class:`~modalign.methods.TransformerConfig` of one transformer of the table:
    :data:`TRANSFORMER_DEFAULTS`, then ``config``, then the model's own fields (with
    ``alpha`` and ``beta``, one pair of the grid, for a ``+align`` model)."""
    clash = sorted(set(config or {}) & set(_PER_MODEL))
    if clash:
        raise ValueError(
            f"config sets {clash}, which the protocol sets per model (from "
            f"{', '.join(_PER_MODEL[k] for k in clash)})"
        )
    own: dict[str, Any] = {"align": run.align, "modality_dropout": run.dropout}
    if alpha is not None:
        own["alpha"] = alpha
    if beta is not None:
        own["beta"] = beta
    settings = {**TRANSFORMER_DEFAULTS, **(config or {}), **own}
    return TransformerConfig(n_outputs=n_classes, fusion=run.fusion, **settings)


def run_settings(
    run: ModelRun,
    n_classes: int,
    config: Mapping[str, Any] | None,
    alphas: Sequence[float] = ALPHAS,
    betas: Sequence[float] = BETAS,
) -> dict[str, Any]:
    """The full config of one model as the header of ``results.json`` stores it (a folder
    holding the model with another config is refused). A ``+align`` model's ``alpha`` and
    ``beta`` are its grids, with the ``selection`` rule: the chosen pair, per seed, is in the
    records."""
    if run.family == "fusion":
        return plain_settings(asdict(model_config(run.fusion, run.otm, n_classes, config)))
    cfg = asdict(transformer_config(run, n_classes, config))
    if run.align:
        cfg.update(alpha=list(alphas), beta=list(betas), selection=SELECTION)
    return plain_settings(cfg)


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


def labels_of(ds: MultiViewDataset) -> np.ndarray:
    """The class of every row of an aligned dataset, ``(N,)`` numpy."""
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
        labels_of(train),
        validation=(list(val.views), labels_of(val)),
        modality_names=train.names,
        checkpoint=checkpoint,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    records = []
    for condition, modality, level, raw in corrupted_test_sets(splits.test, seed):
        test = prep.transform(raw)
        scores = model.score(list(test.views), labels_of(test), mask=test.mask)
        records += _records(dataset, model_name, seed, condition, modality, level, scores, seconds)
        if condition == "missing":
            # The same model, with lone modalities predicted by their own heads.
            scores = model.score(
                list(test.views), labels_of(test), mask=test.mask, single_fallback=True
            )
            records += _records(
                dataset, model_name, seed, FALLBACK, modality, level, scores, seconds
            )
    test = prep.transform(splits.test)
    for m, name in enumerate(test.names):
        scores = model.score(list(test.views), labels_of(test), modality=m)
        records += _records(dataset, model_name, seed, "single", name, 0.0, scores, seconds)
    return records, model


def _token_inputs(ds: MultiViewDataset) -> tuple[list, list]:
    return list(ds.views), list(ds.token_masks)


def choose_alignment(candidates: Sequence[Mapping[str, float]]) -> int:
    """The index of the pair kept among ``candidates`` (one ``{"accuracy", "cross_entropy"}``
    of validation scores per pair, in grid order): the highest validation accuracy; ties, the
    lower validation cross-entropy, then the earlier pair (:data:`SELECTION`)."""
    if not candidates:
        raise ValueError("no candidate to choose from")
    return min(
        range(len(candidates)),
        key=lambda i: (-candidates[i]["accuracy"], candidates[i]["cross_entropy"], i),
    )


def validation_scores(model: TransformerClassifier, val: MultiViewDataset) -> dict[str, float]:
    """Accuracy and cross-entropy of a trained transformer on the (preprocessed) validation
    split: what :func:`choose_alignment` compares."""
    views, token_masks = _token_inputs(val)
    logits = model.decision(views, token_masks, val.mask).cpu()
    y = torch.as_tensor(labels_of(val))
    return {
        "accuracy": float((logits.argmax(1) == y).double().mean()),
        "cross_entropy": float(F.cross_entropy(logits.double(), y)),
    }


def _candidate(alpha: float, beta: float) -> str:
    return f"alpha={alpha:g} beta={beta:g}"


def alignment_grid(
    run: ModelRun, alphas: Sequence[float], betas: Sequence[float]
) -> list[tuple[float | None, float | None]]:
    """The ``(alpha, beta)`` pairs a model trains one candidate for, in grid order:
    ``alphas`` x ``betas`` for a ``+align`` transformer, ``[(None, None)]`` for any other."""
    if run.family == "transformer" and run.align:
        return [(a, b) for a in alphas for b in betas]
    return [(None, None)]


def fit_transformer(
    run: ModelRun,
    splits: Splits,
    seed: int,
    alpha: float | None = None,
    beta: float | None = None,
    *,
    preprocess: str = "auto",
    config: Mapping[str, Any] | None = None,
    checkpoint: Path | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], TransformerClassifier]:
    """Train one transformer (one ``(alpha, beta)`` candidate of a ``+align`` model, or the
    model itself) on one seed's training split, early-stopped on its validation split.

    Returns ``{"alpha", "beta", "seconds", "accuracy", "cross_entropy"}`` (the validation
    scores :func:`choose_alignment` compares) and the trained model; the test split is not
    read."""
    prep = Preprocessor(preprocess).fit(splits.train)
    train, val = prep.transform(splits.train), prep.transform(splits.val)
    cfg = transformer_config(
        run, int(splits.train.labels.max()) + 1, config, alpha=alpha, beta=beta
    )
    views, token_masks = _token_inputs(train)
    val_views, val_token_masks = _token_inputs(val)
    start = time.perf_counter()
    model = TransformerClassifier(cfg, random_state=seed).fit(
        views,
        labels_of(train),
        token_masks,
        mask=train.mask,
        validation=(val_views, labels_of(val), val_token_masks, val.mask),
        checkpoint=checkpoint,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    fit = {"alpha": alpha, "beta": beta, "seconds": seconds, **validation_scores(model, val)}
    return fit, model


def transformer_records(
    run: ModelRun,
    dataset: str,
    splits: Splits,
    seed: int,
    fits: Sequence[Mapping[str, Any]],
    models: Sequence[TransformerClassifier],
    *,
    preprocess: str = "auto",
) -> tuple[list[dict], TransformerClassifier]:
    """The records of one transformer on one seed from its trained candidates (``fits`` and
    ``models`` of :func:`fit_transformer`, in grid order), and the model kept.

    A ``+align`` model keeps the candidate :func:`choose_alignment` picks from the validation
    scores alone; its records add the validation scores of every pair and the chosen pair.
    Only then is the test split read: the kept model is evaluated under every condition."""
    best = choose_alignment(fits)
    model = models[best]
    seconds = sum(f["seconds"] for f in fits)  # a +align model's cost: its whole search
    records: list[dict] = []
    if run.align:
        for f in fits:
            records += _records(
                dataset,
                run.name,
                seed,
                "validation",
                _candidate(f["alpha"], f["beta"]),
                0.0,
                {"accuracy": f["accuracy"], "cross_entropy": f["cross_entropy"]},
                f["seconds"],
            )
        chosen = {"alpha": fits[best]["alpha"], "beta": fits[best]["beta"]}
        records += _records(dataset, run.name, seed, "chosen", "all", 0.0, chosen, seconds)
    prep = Preprocessor(preprocess).fit(splits.train)
    for condition, modality, level, raw in corrupted_test_sets(splits.test, seed):
        test = prep.transform(raw)
        scores = model.score(list(test.views), labels_of(test), list(test.token_masks), test.mask)
        records += _records(dataset, run.name, seed, condition, modality, level, scores, seconds)
    test = prep.transform(splits.test)
    for m, name in enumerate(test.names):
        scores = model.score(list(test.views), labels_of(test), list(test.token_masks), modality=m)
        records += _records(dataset, run.name, seed, "single", name, 0.0, scores, seconds)
    return records, model


def _fit_task(
    run: ModelRun,
    seed: int,
    alpha: float | None,
    beta: float | None,
    name: str,
    preprocess: str,
    config: Mapping[str, Any] | None,
    checkpoint: Path | None,
    progress: bool,
    context: Splits | MultiViewDataset,
) -> tuple[Any, Any]:
    """One training run of the protocol (:func:`~modalign.experiments.parallel.run_tasks`
    task; ``context`` is the data): a transformer candidate (:func:`fit_transformer`) or a
    whole fusion MLP (:func:`run_model`: its records and model)."""
    splits = seed_splits(context, seed)
    if run.family == "transformer":
        return fit_transformer(
            run,
            splits,
            seed,
            alpha,
            beta,
            preprocess=preprocess,
            config=config,
            checkpoint=checkpoint,
            progress=progress,
        )
    return run_model(
        run.name,
        run.fusion,
        run.otm,
        name,
        splits,
        seed,
        preprocess=preprocess,
        config=config,
        checkpoint=checkpoint,
        progress=progress,
    )


def majority_records(dataset: str, splits: Splits, seed: int) -> list[dict]:
    """The trivial baseline: the most frequent training class, for every test sample."""
    y_train, y_test = labels_of(splits.train), labels_of(splits.test)
    guess = np.full_like(y_test, np.bincount(y_train).argmax())
    return _records(
        dataset, "majority", seed, "clean", "all", 0.0, classification_scores(y_test, guess), 0.0
    )


def check_grids(alphas: Sequence[float], betas: Sequence[float]) -> None:
    """Refuse empty grids, non-positive or repeated values."""
    for flag, grid in (("--alphas", alphas), ("--betas", betas)):
        if not grid:
            raise ValueError(f"{flag} needs at least one value")
        if not all(np.isfinite(v) and v > 0 for v in grid):
            raise ValueError(f"{flag} values must be positive numbers, got {list(grid)}")
        if len(set(grid)) != len(grid):
            raise ValueError(f"{flag} lists a value twice: {list(grid)}")


def model_names(
    models: Sequence[str],
    otm: str = "both",
    align: str = "both",
    baselines: bool = True,
) -> list[ModelRun]:
    """Every requested model: fusion MLPs named ``late`` and ``late+otm`` (``otm``),
    transformers named ``transformer-late`` and ``transformer-late+align`` (``align``), and,
    with ``baselines``, ``transformer-late+dropout`` for every transformer asked for."""
    known = [*FUSIONS, *TRANSFORMERS]
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}: choose from {sorted(known)}")
    if otm not in OTM_CHOICES:
        raise ValueError(f"--otm must be one of {OTM_CHOICES}, got {otm!r}")
    if align not in ALIGN_CHOICES:
        raise ValueError(f"--align must be one of {ALIGN_CHOICES}, got {align!r}")
    flags = {"off": (False,), "on": (True,), "both": (False, True)}
    runs: list[ModelRun] = []
    for m in dict.fromkeys(models):
        if m in FUSIONS:
            runs += [
                ModelRun(m + ("+otm" if flag else ""), "fusion", m, otm=flag) for flag in flags[otm]
            ]
            continue
        fusion = TRANSFORMERS[m]
        runs += [
            ModelRun(m + ("+align" if flag else ""), "transformer", fusion, align=flag)
            for flag in flags[align]
        ]
        if baselines:
            runs.append(ModelRun(f"{m}+dropout", "transformer", fusion, dropout=MODALITY_DROPOUT))
    return runs


def check_models_fit_data(runs: Sequence[ModelRun], name: str, train: MultiViewDataset) -> None:
    """Refuse fusion MLPs on token views and transformers on 2-D views, naming what to run
    instead."""
    tokens = [train.is_tokens(v) for v in range(train.n_views)]
    mlps = [r.name for r in runs if r.family == "fusion"]
    transformers = [r.name for r in runs if r.family == "transformer"]
    if mlps and any(tokens):
        instead = (
            "run them on avdigits, which has the same pairs and splits"
            if name == "avdigits-tokens"
            else "run them on a 2-D (e.g. pooled) version of the data"
        )
        raise ValueError(
            f"model(s) {mlps} fuse 2-D feature views, but {name!r} holds token views "
            f"{[n for n, t in zip(train.names, tokens) if t]}: {instead}, or use "
            f"{' / '.join(TRANSFORMERS)} here"
        )
    if transformers and not all(tokens):
        raise ValueError(
            f"model(s) {transformers} need token views (N, T, d) in every modality, but "
            f"{name!r} has 2-D views {[n for n, t in zip(train.names, tokens) if not t]}: "
            "use avdigits-tokens (or another dataset of token views)"
        )


def read_robustness(out: Path) -> list[dict]:
    """Records of ``out/results.json`` (``[]`` if absent), checked for the expected keys."""
    return read_protocol_records(out, RESULT_KEYS, "robustness")


def run_robustness(
    dataset: str | Path | MultiViewDataset | Splits,
    *,
    models: Sequence[str] | None = None,
    otm: str = "both",
    align: str = "both",
    alphas: Sequence[float] = ALPHAS,
    betas: Sequence[float] = BETAS,
    baselines: bool = True,
    seeds: Sequence[int] = range(5),
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    preprocess: str = "auto",
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
    progress_bars: bool = False,
    jobs: int = 1,
) -> list[dict]:
    """Run the benchmark and return its records.

    ``dataset``: a name or file (:func:`load_data`), a :class:`MultiViewDataset` (split per
    seed) or :class:`Splits` (used as they are); ``name``: what the records and folder file it
    under (default: the name, the file's stem, or the dataset object's ``source``).
    ``models``: fusion MLPs and / or transformers (see the module docstring); None: the four
    fusion MLPs on 2-D data, both transformers on token data. ``otm`` (MLPs) and ``align``
    (transformers): ``"off"``, ``"on"`` or ``"both"``; ``alphas`` x ``betas``: the grid a
    ``+align`` model is chosen from on validation; ``baselines``: add ``+dropout`` for every
    transformer. ``config``: settings of every model (e.g. ``epochs``, ``device``).

    With ``out``: write ``results.json``, ``results.md`` and ``robustness.png`` there after
    every run, a training checkpoint per epoch under ``checkpoints/`` (an interrupted run
    resumes from it; its curves stay in ``*.history.csv``), and each finished model's weights
    under ``models/``. Runs already in ``results.json`` are not repeated (an interrupted
    benchmark resumes), and a folder written for other data, preprocessing or model configs is
    refused (:func:`modalign.provenance.check_provenance`).

    ``jobs``: train that many models at once, in worker processes of one thread each (every
    candidate of a ``+align`` model's grid is a run of its own); the records do not depend on
    it (their ``seconds`` do: each counts its own run, on a shared machine). ``progress_bars``
    (per-epoch bars) needs ``jobs == 1``."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    started = time.perf_counter()
    alphas, betas = [float(a) for a in alphas], [float(b) for b in betas]
    check_grids(alphas, betas)
    model_names(models or [], otm, align, baselines)  # refuse bad requests before loading data
    out = Path(out) if out is not None else None
    data = load_data(dataset, data_dir)
    parts = _parts(data)
    if name is None:
        name = dataset_name(parts[0].source if not isinstance(dataset, (str, Path)) else dataset)
    if models is None:
        tokens = all(parts[0].is_tokens(v) for v in range(parts[0].n_views))
        models = list(TRANSFORMERS) if tokens else list(FUSIONS)
    runs = model_names(models, otm, align, baselines)
    check_models_fit_data(runs, name, parts[0])
    # Records and checkpoints are reused only when everything that produced them is the same:
    # the folder's key (data, preprocessing) and each model's full config.
    sha = data_fingerprint(*parts)
    key = protocol_key("robustness", name, sha, preprocess=preprocess)
    n_classes = int(parts[0].labels.max()) + 1
    configs = {r.name: run_settings(r, n_classes, config, alphas, betas) for r in runs}
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

    def checkpoint(stem: str, settings: Mapping[str, Any], seed: int) -> Path | None:
        if out is None:
            return None
        fingerprint = {**key, "config": plain_settings(dict(settings)), "seed": seed}
        return keyed_checkpoint(out / "checkpoints", stem, fingerprint)

    # Records in the order of a sequential run (per seed: majority, then the models as
    # asked), whatever order parallel runs finish in.
    rank = {"majority": -1, **{run.name: i for i, run in enumerate(runs)}}

    def table_order(r: dict) -> tuple[int, int]:
        return r["seed"], rank.get(r["model"], len(runs))

    done = {(r["model"], r["seed"]) for r in records}
    say = progress or (lambda _msg: None)
    tasks: list[dict] = []
    for seed in seeds:
        if ("majority", seed) not in done:
            records += majority_records(name, seed_splits(data, seed), seed)
        for run in runs:
            if (run.name, seed) in done:
                continue
            for alpha, beta in alignment_grid(run, alphas, betas):
                if run.family == "transformer":
                    settings = asdict(
                        transformer_config(run, n_classes, config, alpha=alpha, beta=beta)
                    )
                    stem = f"{run.name}-{seed}" + (
                        "" if alpha is None else f"-alpha{alpha:g}-beta{beta:g}"
                    )
                else:
                    settings, stem = configs[run.name], f"{run.name}-{seed}"
                tasks.append(
                    dict(
                        run=run,
                        seed=seed,
                        alpha=alpha,
                        beta=beta,
                        name=name,
                        preprocess=preprocess,
                        config=config,
                        checkpoint=checkpoint(stem, settings, seed),
                        progress=progress_bars and jobs == 1,
                    )
                )
    finished: dict[tuple[str, int], list[tuple[dict, Any]]] = {}
    for task, result in run_tasks(_fit_task, tasks, jobs, context=data):
        run, seed = task["run"], task["seed"]
        grid = alignment_grid(run, alphas, betas)
        got = finished.setdefault((run.name, seed), [])
        got.append((task, result))
        if run.align:
            fit = result[0]
            say(
                f"{run.name:>24} seed {seed}: {_candidate(fit['alpha'], fit['beta'])}: "
                f"validation accuracy {fit['accuracy']:.3f} cross-entropy "
                f"{fit['cross_entropy']:.3f} ({fit['seconds']:.1f} s)"
            )
        if len(got) < len(grid):
            continue
        del finished[(run.name, seed)]
        if run.family == "transformer":
            got.sort(key=lambda tr: grid.index((tr[0]["alpha"], tr[0]["beta"])))
            new, model = transformer_records(
                run,
                name,
                seed_splits(data, seed),
                seed,
                [r[0] for _, r in got],
                [r[1] for _, r in got],
                preprocess=preprocess,
            )
        else:
            new, model = result
        records += new
        clean = {r["metric"]: r["value"] for r in new if r["condition"] == "clean"}
        chosen = {r["metric"]: r["value"] for r in new if r["condition"] == "chosen"}
        pick = "".join(f" {k} {v:g}" for k, v in chosen.items())
        say(
            f"{run.name:>24} seed {seed}: clean accuracy {clean['accuracy']:.3f} "
            f"macro F1 {clean['macro_f1']:.3f} ({new[-1]['seconds']:.1f} s)"
            + (f"; chosen on validation:{pick}" if pick else "")
        )
        if out is not None:
            records.sort(key=table_order)
            write_robustness(out, records, header())
            # The run is in results.json now: keep its trained weights (a few MB) and drop
            # the training checkpoints (optimiser state and best-epoch copy: several times
            # larger, only needed to resume an interrupted run).
            save_checkpoint(
                out / "models" / f"{run.name}-{seed}.pt",
                {"model": model.state_dict(), "settings": plain_settings(asdict(model.config))},
            )
            for t, _ in got:
                if t["checkpoint"] is not None:
                    t["checkpoint"].unlink(missing_ok=True)
    records.sort(key=table_order)
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


#: Model-name suffixes of the variants of one base model, in table order after the base.
_VARIANTS = ("+otm", "+align", "+dropout")


def _base(model: str) -> str:
    """``late`` for ``late+otm``, ``transformer-late`` for ``transformer-late+align`` ..."""
    for suffix in _VARIANTS:
        if model.endswith(suffix):
            return model.removesuffix(suffix)
    return model


def _models(records: Sequence[dict]) -> list[str]:
    """Models in the order they were run, each followed by its variants (+OTM or +align,
    then +dropout), majority last."""
    seen: list[str] = []
    for r in records:
        if r["model"] not in seen:
            seen.append(r["model"])
    bases = list(dict.fromkeys(_base(m) for m in seen))

    def rank(m: str) -> int:
        suffix = m.removeprefix(_base(m))
        return {"": 0, "+otm": 1, "+align": 1, "+dropout": 2}[suffix]

    return sorted(seen, key=lambda m: (m == "majority", bases.index(_base(m)), rank(m)))


def reference_model(model: str) -> str:
    """The reference of ``model``'s effective robustness: :data:`TRANSFORMER_REFERENCE` for a
    transformer, :data:`REFERENCE_MODEL` otherwise."""
    return TRANSFORMER_REFERENCE if model.startswith("transformer-") else REFERENCE_MODEL


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

    Effective robustness is measured against :func:`reference_model` (late fusion without
    augmentation; for a transformer, the late-fusion transformer without alignment) of the
    same seed and is absent when that model was not run."""
    rows = []
    for family, per_model in curves(records).items():
        for model, c in per_model.items():
            ref = per_model.get(reference_model(model))
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
    if chosen_alignment(records):
        lines[2] += (
            " The alignment weights of a `+align` model are chosen on the validation split too; "
            "its train seconds count that whole search (one model per pair of the grid)."
        )
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
        refs = list(dict.fromkeys(reference_model(m) for m in models if m != "majority"))
        ref = " / ".join(f"`{r}`" for r in refs) + (" (per family)" if len(refs) > 1 else "")
        intro = {
            "relative": "the area under accuracy against corruption level (clean = 0) divided "
            "by the level range, i.e. the mean accuracy over the range",
            "effective": "the mean, over the corrupted levels, of accuracy minus that of "
            f"{ref} shifted to start at the model's clean accuracy (0 for the reference "
            "itself; above 0: degrades more gracefully)",
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
    for effect, title, first in (
        (
            otm_effect(records),
            "What OTM augmentation changes (accuracy, +OTM minus without, paired by seed)",
            "fusion",
        ),
        (
            align_effect(records),
            "What alignment changes (accuracy, +align minus without, paired by seed)",
            "transformer",
        ),
        (
            align_effect(records, "+dropout"),
            "Alignment against the modality-dropout baseline (accuracy, +align minus +dropout, "
            "paired by seed)",
            "transformer",
        ),
    ):
        if not effect:
            continue
        lines += [
            "",
            f"## {title}",
            "",
            *_head(
                [first, "clean", "mean over missing", "mean over noise"]
                + [f"{m} only" for m in modalities]
            ),
        ]
        for fusion, diffs in effect.items():
            cells = [mean_std_text(diffs[k]) for k in ("clean", "missing", "noise")]
            cells += [mean_std_text(diffs.get(f"single {m}", [])) for m in modalities]
            lines.append(_row(fusion, cells))
    lines += _selection_table(records)
    return "\n".join(lines) + "\n"


def chosen_alignment(records: Sequence[dict]) -> dict[str, dict[int, dict[str, float]]]:
    """``{model: {seed: {"alpha": a, "beta": b}}}``: the pairs chosen on validation."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for r in records:
        if r["condition"] == "chosen":
            out.setdefault(r["model"], {}).setdefault(r["seed"], {})[r["metric"]] = r["value"]
    return out


def _selection_table(records: Sequence[dict]) -> list[str]:
    """The alignment weights chosen per seed and every pair's validation accuracy."""
    chosen = chosen_alignment(records)
    if not chosen:
        return []
    val = {
        (r["model"], r["seed"], r["modality"]): r["value"]
        for r in records
        if r["condition"] == "validation" and r["metric"] == "accuracy"
    }
    pairs = list(dict.fromkeys(k[2] for k in val))
    lines = [
        "",
        "## Alignment weights chosen on the validation split",
        "",
        f"Per seed, one model per pair of the grid; kept: the best {SELECTION}. Validation "
        "accuracy of each pair (the test split plays no part).",
        "",
        *_head(["model", "seed", "alpha", "beta"] + [f"val. accuracy {p}" for p in pairs]),
    ]
    for model, per_seed in chosen.items():
        for seed, pick in sorted(per_seed.items()):
            cells = [str(seed), f"{pick.get('alpha', float('nan')):g}"]
            cells.append(f"{pick.get('beta', float('nan')):g}")
            cells += [
                f"{val[(model, seed, p)]:.3f}" if (model, seed, p) in val else "" for p in pairs
            ]
            lines.append(_row(model, cells))
    return lines


def _mean_condition(acc: dict, model: str, seed: int, condition: str) -> float:
    vals = [v[seed] for k, v in acc.items() if k[0] == model and k[1] == condition and seed in v]
    return float(np.mean(vals))


def paired_effect(records: Sequence[dict], model: str, base: str) -> dict[str, list[float]]:
    """Seed-paired accuracy differences, ``model`` minus ``base``, over the seeds both ran:
    clean, the mean over the missing and over the noise conditions, and each single
    modality (``"single NAME"``)."""
    acc = _by(records, "accuracy")
    clean, base_clean = acc[(model, "clean", "all", 0.0)], acc[(base, "clean", "all", 0.0)]
    diffs: dict[str, list[float]] = {"clean": [], "missing": [], "noise": []}
    for s in sorted(set(clean) & set(base_clean)):
        diffs["clean"].append(clean[s] - base_clean[s])
        for condition in ("missing", "noise"):
            diffs[condition].append(
                _mean_condition(acc, model, s, condition) - _mean_condition(acc, base, s, condition)
            )
        for k in acc:
            if k[0] == model and k[1] == "single" and s in acc[k]:
                diffs.setdefault(f"single {k[2]}", []).append(acc[k][s] - acc[(base, *k[1:])][s])
    return diffs


def _variant_effect(
    records: Sequence[dict], suffix: str, against: str = ""
) -> dict[str, dict[str, list[float]]]:
    """:func:`paired_effect` of every ``base+suffix`` model against ``base + against``,
    keyed by ``base``."""
    models = _models(records)
    out: dict[str, dict[str, list[float]]] = {}
    for model in models:
        if not model.endswith(suffix):
            continue
        base = model.removesuffix(suffix)
        if base + against in models:
            out[base] = paired_effect(records, model, base + against)
    return out


def otm_effect(records: Sequence[dict]) -> dict[str, dict[str, list[float]]]:
    """Seed-paired accuracy differences (+OTM minus without) per fusion: clean, the mean over
    the missing and noise conditions, and each single modality."""
    return _variant_effect(records, "+otm")


def align_effect(records: Sequence[dict], against: str = "") -> dict[str, dict[str, list[float]]]:
    """Seed-paired accuracy differences per transformer, ``+align`` minus the same
    transformer without alignment (``against=""``) or trained with modality dropout
    (``against="+dropout"``): clean, the mean over the missing and noise conditions, and each
    single modality."""
    return _variant_effect(records, "+align", against)


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
