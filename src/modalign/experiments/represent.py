"""The representation protocol behind ``modalign represent`` (DESIGN.md sections 2.3 and 3).

For every seed and method:

1. train the method on the training split WITHOUT labels and freeze it;
2. fit each probe (:mod:`modalign.eval.probe`: GMC's MLP head ``d -> 256 -> 128 -> K`` and a
   linear probe) on the representations of the complete training rows, early-stopped on the
   validation split;
3. score the probe on the test split represented from every non-empty subset of the modalities
   (accuracy and macro F1);
4. for GMC and its untrained network (one space for every subset), measure without labels
   how a sample's single-modality representation lines up with its complete one on the test
   split: retrieval (recall@1, recall@10, median rank of the complete representation queried
   with the single-modality one, :func:`modalign.eval.geometry.retrieval_scores`), alignment
   and uniformity (Wang and Isola 2020), and a 2-D picture (UMAP or t-SNE) for the first seed.

Beside the methods, always: the majority class; ``raw``, the preprocessed features
concatenated through the same probes (a missing modality's features are zero-filled, i.e. set
to their training mean after z-scoring); and ``supervised``, the late-fusion model of
``modalign robustness`` trained with labels, predicting from the complete test rows with its
fusion head and from one modality with that modality's own head: the supervised reference
(skipped, with a note in ``results.md``, when there is a single input modality: the late-fusion
model needs two).

Methods that join: ``gmc`` (complete rows take the joint embedding, other subsets the mean of
their modalities' embeddings; ``gmc-renorm`` re-normalises that mean and is recorded whenever
an evaluated subset of two or more modalities is not every modality), ``gmc-untrained`` (the
same network at its initial weights: what the probe gets from the architecture alone) and
``otm`` (its per-view
autoencoder codes, concatenated; per-view codes are not comparable across views, so a missing
view's code is zero-filled, as for ``raw``).

The multimodal VAEs (:mod:`modalign.methods.mvae`, :mod:`modalign.methods.wvae`) give the
mean of their inference posterior from the present modalities, ``model.transform(ds, mask)``:
``mvae`` the mean of the product of the present experts and the prior expert ``N(0, I)``
(``latent_dim`` wide); ``wvae`` the mean of the W2 barycenter of the present modalities'
posteriors (one present modality: its own posterior mean; ``latent_dim`` wide);
``wvae-factorised`` (``WVAEConfig(factorised=True)``) the shared part of that mean only
(``shared_dim`` wide, by default ``latent_dim // 2``: the private coordinates of different
modalities describe different things). The trained ones keep the epoch of lowest loss on the
validation split (label-free). ``vae-untrained`` is an MVAE at its initial weights: what the
probe gets from the VAE's encoders alone, the reference that tells what training adds.

Label modality: a view named ``label`` (:data:`modalign.data.builtin.LABEL_VIEW`, as in
``avdigits-label``) is a modality for unsupervised training only. No probe and no test input
ever contains it: "complete" means every other modality, and the subsets are drawn from those,
so the test label is never an input.

Splits: avdigits and avdigits-label use their fixed train (2,400 pairs) and val (300) splits
and a test split of about 1,000 pairs built per MNIST test image (each of the 300 test
recordings paired with 3 or 4 distinct images of its digit; see
:func:`modalign.data.avdigits_pairs`); mnist-label and digits-label (an ``image`` view and the
label modality, so the image is the only test input) use their fixed train / val / test
splits; every other labelled multi-view dataset is split 60 / 20 / 20, stratified by class,
with a different split per seed.

Records (``results.json`` and ``--json``), one per number, with exactly the keys of
:data:`RESULT_KEYS`: ``subset`` is the sorted list of the view indices present; ``probe`` is
``"mlp"`` or ``"linear"``, or ``"none"`` for numbers no probe produced (majority, the
supervised reference, the geometric measures and ``train_seconds``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalign.data import MultiViewDataset, Preprocessor, load_dataset
from modalign.data.builtin import LABEL_VIEW
from modalign.data.load import check_classes
from modalign.eval.geometry import alignment, plot_modality_embeddings, retrieval_scores, uniformity
from modalign.eval.probe import PROBES, Probe, ProbeConfig
from modalign.eval.report import (
    mean_std_text,
    read_header,
    read_protocol_records,
    seconds_lines,
    write_results_file,
)
from modalign.eval.supervised import classification_scores
from modalign.experiments.robustness import Splits, labels_of, seed_splits
from modalign.methods import (
    GMC,
    OTM,
    VAES,
    GMCConfig,
    MVAEConfig,
    OTMConfig,
    SupervisedConfig,
    SupervisedFusion,
    WVAEConfig,
    make_vae,
    vae_config,
)
from modalign.provenance import (
    check_provenance,
    data_fingerprint,
    dataset_name,
    plain_settings,
    protocol_key,
    run_header,
)
from modalign.train import keyed_checkpoint, save_checkpoint

RESULT_KEYS = ("dataset", "method", "seed", "subset", "probe", "metric", "value")
#: Methods trained without labels, judged through the probes.
LEARNED = ("gmc", "gmc-untrained", "otm", *VAES, "vae-untrained")
#: GMC and its untrained reference (the same network at its initial weights): one space for
#: every subset of modalities, so the geometric measures apply.
GMC_METHODS = ("gmc", "gmc-untrained")
#: The multimodal VAEs and their untrained reference (an MVAE at its initial weights): the
#: posterior mean from the present modalities (module docstring).
VAE_METHODS = (*VAES, "vae-untrained")
#: Always in the table: trivial, raw-feature and supervised references.
REFERENCES = ("majority", "raw", "supervised")
METHODS = (*LEARNED, "raw")
#: Datasets with fixed train / val / test splits.
FIXED_SPLITS = ("avdigits", "avdigits-label", "mnist-label", "digits-label")
#: Those whose test split is paired per MNIST image (``pairing="images"``).
PAIRED_PER_IMAGE = ("avdigits", "avdigits-label")
#: Rows of the tables: learned methods, then the references.
TABLE_ORDER = (
    "gmc",
    "gmc-renorm",
    "gmc-untrained",
    "mvae",
    "wvae",
    "wvae-factorised",
    "wvae-full",
    "vae-untrained",
    "otm",
    "raw",
    "supervised",
    "majority",
)
#: Why ``supervised`` is absent with a single input view (e.g. digits-label: image + label).
SUPERVISED_SKIPPED = (
    "the late-fusion model (SupervisedFusion) needs two or more input modalities, and this "
    "dataset has one besides the label modality"
)
GEOMETRY_METRICS = ("recall@1", "recall@10", "median_rank", "alignment", "uniformity")


# ------------------------------------------------------------------------------ data
def load_represent_data(
    dataset: str, data_dir: str | Path | None = None, *, protocol: str = "represent"
) -> Splits | MultiViewDataset:
    """The fixed splits of :data:`FIXED_SPLITS` (avdigits' test split paired per image), or a
    labelled, aligned and complete dataset to be split per seed by
    :func:`~modalign.experiments.robustness.seed_splits`, with two classes or more
    (:func:`~modalign.data.load.check_classes`). ``protocol`` names the command in errors
    (``modalign generate`` loads its data here too).
    """
    name = dataset.lower()
    if name in FIXED_SPLITS:
        test = {"pairing": "images"} if name in PAIRED_PER_IMAGE else {}
        return Splits(
            load_dataset(name, data_dir=data_dir, split="train"),
            load_dataset(name, data_dir=data_dir, split="val"),
            load_dataset(name, data_dir=data_dir, split="test", **test),
        )
    full = load_dataset(dataset, data_dir=data_dir)
    if full.labels is None:
        raise ValueError(
            f"{full.source}: no labels, so no split can be stratified and no probe trained: "
            f"{protocol} needs a labelled dataset"
        )
    if not full.is_aligned or full.missing_rate > 0:
        raise ValueError(
            f"{full.source}: {protocol} trains on complete, aligned rows; this dataset is "
            f"{'unaligned' if not full.is_aligned else 'incomplete'}"
        )
    if full.n_views < 2:
        raise ValueError(f"{full.source}: one view; {protocol} needs two or more modalities")
    check_classes(full, protocol)
    counts = np.bincount(full.labels.cpu().numpy())
    if counts[counts > 0].min() < 5:
        raise ValueError(
            f"{full.source}: a class has {int(counts[counts > 0].min())} sample(s); a stratified "
            "60/20/20 split needs at least 5 per class"
        )
    return full


def preprocessor(spec: str, ds: MultiViewDataset) -> Preprocessor:
    """The protocol's preprocessing for the training split ``ds`` (raw), unfitted.

    ``"auto"`` is :class:`~modalign.data.Preprocessor`'s except for image views: one whose
    training values already lie in [0, 1] is passed through unchanged (``"none"``): raw [0, 1]
    intensities are what conv encoders and a Bernoulli likelihood (the multimodal VAEs') expect,
    and they stay in [0, 1] on every split. Per-pixel min-max scaling, used before for every
    image view, maps only the training range to [0, 1]: a pixel never inked in training but
    inked in a test image came out far above 1 (2.67 on digits), which a Bernoulli likelihood
    refuses. Any other image view is min-max scaled (each pixel's training range to [0, 1]).
    Images stay off z-scoring, which blows up rarely inked pixels (z-scored pixels gave a
    higher validation contrastive loss and lower validation retrieval for GMC on avdigits,
    label-free criteria: scripts/gmc_choices.py). For GMC (and raw, otm) this changes the
    inputs of a [0, 1] image view only in pixels whose training range was not exactly [0, 1]
    (now raw intensities, before rescaled); views outside [0, 1] are unchanged. Any other spec
    applies as given. A view named ``label`` (the one-hot label modality) is kept as it is.
    Every method and the raw baseline get the same inputs."""
    if spec != "auto":
        return Preprocessor(spec)
    # The one-hot label modality stays one-hot (a categorical likelihood reads it).
    specs = {LABEL_VIEW: "none"} if LABEL_VIEW in ds.names else {}
    for v, (name, kind) in enumerate(zip(ds.names, ds.kinds)):
        if kind != "image":
            continue
        x = ds.views[v][ds.row_mask(v)]
        unit = x.numel() > 0 and bool(((x >= 0) & (x <= 1)).all())
        specs[name] = "none" if unit else "minmax"
    return Preprocessor(specs)


def input_views(names: Sequence[str]) -> list[int]:
    """The views a probe and a test may see: all but the label modality."""
    views = [v for v, n in enumerate(names) if n != LABEL_VIEW]
    if len(views) < 1:
        raise ValueError("no view left once the label modality is set aside")
    return views


def subsets(views: Sequence[int]) -> list[tuple[int, ...]]:
    """Every non-empty subset of ``views``: all of them first, then by size (1, 2, ...)."""
    full = tuple(sorted(views))
    rest = [c for k in range(1, len(full)) for c in itertools.combinations(full, k)]
    return [full, *rest]


def parse_subsets(text: str | None, names: Sequence[str]) -> list[tuple[int, ...]] | None:
    """``"image+audio,image"`` -> ``[(0, 1), (0,)]`` for the names ``["image", "audio"]``;
    None for None. Each subset is ``+``-joined view names (or indices)."""
    if text is None:
        return None
    allowed = input_views(names)
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        idx = []
        for item in (i.strip() for i in part.split("+")):
            v = int(item) if item.isdigit() and item not in names else None
            v = names.index(item) if item in names else v
            if v is None or v not in allowed:
                raise ValueError(
                    f"unknown modality {item!r} in subset {part!r}: choose among "
                    f"{[names[a] for a in allowed]}"
                    + (" (the label modality is never a test input)" if item == LABEL_VIEW else "")
                )
            idx.append(v)
        out.append(tuple(sorted(set(idx))))
    if not out:
        raise ValueError(f"no subset in {text!r}")
    return list(dict.fromkeys(out))


def subset_mask(ds: MultiViewDataset, subset: Sequence[int]) -> torch.Tensor:
    """``(N, M)`` bool: every row of ``ds`` with exactly the views of ``subset`` present."""
    mask = torch.zeros(ds.n_rows, ds.n_views, dtype=torch.bool)
    mask[:, list(subset)] = True
    return mask


# ------------------------------------------------------------------------------ methods
def method_config(
    method: str, n_classes: int, config: Mapping[str, Any] | None
) -> GMCConfig | OTMConfig | MVAEConfig | WVAEConfig | SupervisedConfig | None:
    """The config of one method (None for those without training: majority, raw);
    ``config`` overrides fields where they apply (``epochs``, ``device``)."""
    extra = dict(config or {})
    if method in GMC_METHODS:
        return GMCConfig(**{k: v for k, v in extra.items() if k in GMCConfig.__dataclass_fields__})
    if method in VAE_METHODS:
        return vae_config("mvae" if method == "vae-untrained" else method, extra)
    if method == "otm":
        return OTMConfig(
            n_clusters=n_classes,
            **{k: v for k, v in extra.items() if k in OTMConfig.__dataclass_fields__},
        )
    if method == "supervised":
        fields = SupervisedConfig.__dataclass_fields__
        return SupervisedConfig(
            n_outputs=n_classes, fusion="late", **{k: v for k, v in extra.items() if k in fields}
        )
    return None


class Representation:
    """A frozen representation ``(N, d)`` of a split from any subset of its input views.

    Each (split, subset) is computed once: the probes and the geometric measures ask for the
    same ones, and OTM's per-view codes of a split serve every subset. GMC and the VAEs
    encode a subset through a mask over all the split's views (the label modality, never in a
    subset, is masked out)."""

    def __init__(self, method: str, model: Any, views: Sequence[int], renormalise: bool = False):
        self.method, self.model, self.views, self.renormalise = method, model, views, renormalise
        self._cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
        self._parts: dict[int, list[torch.Tensor]] = {}

    def __call__(self, ds: MultiViewDataset, subset: Sequence[int]) -> torch.Tensor:
        key = (id(ds), tuple(subset))
        if key not in self._cache:
            self._cache[key] = self._compute(ds, tuple(subset))
        return self._cache[key]

    def _compute(self, ds: MultiViewDataset, subset: tuple[int, ...]) -> torch.Tensor:
        if self.method in GMC_METHODS:
            return self.model.transform(
                ds, subset_mask(ds, subset), renormalise=self.renormalise
            ).cpu()
        if self.method in VAE_METHODS:
            return self.model.transform(ds, subset_mask(ds, subset)).cpu()
        # otm: its per-view codes (of every view, computed once per split); raw: the features.
        if id(ds) not in self._parts:
            views = list(ds.views)
            parts = self.model.transform(views) if self.method == "otm" else views
            self._parts[id(ds)] = [p.cpu() for p in parts]
        parts = self._parts[id(ds)]
        return torch.cat(
            [parts[v] if v in subset else torch.zeros_like(parts[v]) for v in self.views], dim=1
        )


def _train(
    method: str,
    cfg: Any,
    train: MultiViewDataset,
    val: MultiViewDataset,
    seed: int,
    checkpoint: Path | None,
    progress: bool,
) -> Any:
    """Train ``method`` on the training split, without labels (GMC keeps the epoch of lowest
    contrastive loss on the validation split, the VAEs the epoch of lowest VAE loss there:
    negative ELBOs at the full KL weight, plus WVAE's W2 consensus; label-free too).
    ``gmc-untrained`` is built and its input scales set, with no epoch trained: what the probe
    gets from GMC's architecture alone; ``vae-untrained`` likewise for an MVAE."""
    if method == "gmc-untrained":
        return GMC(cfg, random_state=seed).fit(train, stop_after=0)
    if method == "vae-untrained":
        return make_vae("mvae", cfg, seed).fit(train, stop_after=0)
    if method in VAES:
        return make_vae(method, cfg, seed).fit(
            train, validation=val, checkpoint=checkpoint, progress=progress
        )
    if method == "gmc":
        return GMC(cfg, random_state=seed).fit(
            train, validation=val, checkpoint=checkpoint, progress=progress
        )
    if method == "otm":
        return OTM(cfg, random_state=seed).fit(
            list(train.views), aligned=True, checkpoint=checkpoint, progress=progress
        )
    return None


def _record(dataset, method, seed, subset, probe, metric, value) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "method": method,
        "seed": int(seed),
        "subset": [int(v) for v in subset],
        "probe": probe,
        "metric": metric,
        "value": float(value),
    }


def probe_records(
    dataset: str,
    method: str,
    seed: int,
    rep: Callable[[MultiViewDataset, Sequence[int]], torch.Tensor],
    parts: tuple[MultiViewDataset, MultiViewDataset, MultiViewDataset],
    tested: Sequence[tuple[int, ...]],
    probe_config: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Fit each probe on the complete training representations (early stopping on val) and
    score it on the test split from every subset in ``tested``."""
    train, val, test = parts
    complete = subsets(input_views(train.names))[0]
    z_train, z_val = rep(train, complete), rep(val, complete)
    y_train, y_val, y_test = labels_of(train), labels_of(val), labels_of(test)
    n_classes = int(max(y_train.max(), y_val.max(), y_test.max())) + 1
    reps = {s: rep(test, s) for s in tested}
    records = []
    for kind in PROBES:
        cfg = ProbeConfig(kind=kind, **dict(probe_config or {}))
        probe = Probe(cfg, random_state=seed).fit(z_train, y_train, z_val, y_val, n_classes)
        for s, z in reps.items():
            scores = classification_scores(y_test, probe.predict(z))
            records += [_record(dataset, method, seed, s, kind, m, v) for m, v in scores.items()]
    return records


def geometry_records(
    dataset: str,
    method: str,
    seed: int,
    rep: Callable[[MultiViewDataset, Sequence[int]], torch.Tensor],
    test: MultiViewDataset,
) -> list[dict]:
    """Label-free alignment of each single modality's test representation with the complete
    one: retrieval, alignment; and the complete representations' uniformity. With a single
    input view (digits-label) the two are the same, so only the uniformity is recorded."""
    views = input_views(test.names)
    complete = rep(test, tuple(views))
    records = [_record(dataset, method, seed, views, "none", "uniformity", uniformity(complete))]
    for v in views if len(views) > 1 else []:
        single = rep(test, (v,))
        scores = {**retrieval_scores(single, complete), "alignment": alignment(single, complete)}
        records += [_record(dataset, method, seed, [v], "none", m, x) for m, x in scores.items()]
    return records


def supervised_records(
    dataset: str,
    model: SupervisedFusion,
    seed: int,
    test: MultiViewDataset,
    tested: Sequence[tuple[int, ...]],
    views: Sequence[int],
) -> list[dict]:
    """The supervised late-fusion reference: fusion head on complete rows and on subsets of
    two or more modalities (with the mask), a modality's own head on that modality alone."""
    y = labels_of(test)
    xs = [test.views[v] for v in views]
    records = []
    for s in tested:
        local = [views.index(v) for v in s]
        if len(s) == 1:
            scores = model.score(xs, y, modality=local[0])
        else:
            mask = torch.zeros(len(y), len(views), dtype=torch.bool)
            mask[:, local] = True
            scores = model.score(xs, y, mask=mask)
        records += [
            _record(dataset, "supervised", seed, s, "none", m, v) for m, v in scores.items()
        ]
    return records


def read_represent(out: Path) -> list[dict]:
    """Records of ``out/results.json`` (``[]`` if absent), checked for the expected keys."""
    return read_protocol_records(out, RESULT_KEYS, "represent")


def run_represent(
    dataset: str,
    *,
    methods: Sequence[str] = ("gmc",),
    seeds: Sequence[int] = range(5),
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    preprocess: str = "auto",
    config: Mapping[str, Any] | None = None,
    probe_config: Mapping[str, Any] | None = None,
    tested: str | None = None,
    plots: bool = True,
    progress: Callable[[str], None] | None = None,
    progress_bars: bool = False,
) -> list[dict]:
    """Run the protocol (module docstring) and return its records.

    Args:
        methods: learned methods among :data:`LEARNED` (and ``raw``); the references
            (:data:`REFERENCES`) always run.
        config: overrides of the methods' configs where the field exists (``epochs``,
            ``device``, ...).
        probe_config: overrides of :class:`~modalign.eval.probe.ProbeConfig` (not ``kind``).
        tested: the test subsets as ``"image+audio,audio"`` (default: every non-empty subset).
        out: write ``results.json``, ``results.md`` and the plots there after every run; runs
            already there are not repeated, and a folder produced by anything else is refused.
    """
    started = time.perf_counter()
    unknown = [m for m in methods if m not in METHODS and m not in REFERENCES]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: choose from {list(METHODS)}")
    runs = list(dict.fromkeys([*methods, *REFERENCES]))
    out = Path(out) if out is not None else None
    name, data = dataset_name(dataset), load_represent_data(dataset, data_dir)
    parts0 = [data.train, data.val, data.test] if isinstance(data, Splits) else [data]
    names = parts0[0].names
    views = input_views(names)
    chosen = parse_subsets(tested, names) or subsets(views)
    n_classes = int(max(int(p.labels.max()) for p in parts0)) + 1
    device = str((config or {}).get("device", "cpu"))
    probe_settings = {**dict(probe_config or {}), "device": device}
    sha = data_fingerprint(*parts0)
    key = protocol_key(
        "represent",
        name,
        sha,
        preprocess=preprocess,
        subsets=str(chosen),
        probe=str(plain_settings(asdict(ProbeConfig(**probe_settings)))),
    )
    configs = {
        m: plain_settings(asdict(c))
        for m in runs
        if (c := method_config(m, n_classes, config)) is not None
    }
    records: list[dict] = []
    if out is not None:
        configs = check_provenance(out, read_header(out), key, configs)
        records = read_represent(out)

    def header() -> dict:
        return run_header(
            key=key,
            configs=configs,
            data={
                "name": name,
                "sha256": sha,
                "source": parts0[0].source,
                "view_names": list(names),
            },
            started=started,
            device=device,
        )

    say = progress or (lambda _msg: None)
    done = {(r["method"], r["seed"]) for r in records}
    renorm = any(1 < len(s) < len(names) for s in chosen)
    for seed in seeds:
        splits = seed_splits(data, seed)
        prep = preprocessor(preprocess, splits.train).fit(splits.train)
        parts = (
            prep.transform(splits.train),
            prep.transform(splits.val),
            prep.transform(splits.test),
        )
        train, val, test = parts
        for method in runs:
            if (method, seed) in done:
                continue
            if method == "supervised" and len(views) < 2:
                say(f"{method:>12} seed {seed}: skipped ({SUPERVISED_SKIPPED})")
                continue
            start = time.perf_counter()
            new: list[dict] = []
            if method == "majority":
                guess = np.full(test.n_rows, np.bincount(labels_of(train)).argmax())
                scores = classification_scores(labels_of(test), guess)
                new = [
                    _record(name, method, seed, chosen[0], "none", m, v) for m, v in scores.items()
                ]
            elif method == "supervised":
                cfg = method_config(method, n_classes, config)
                model = SupervisedFusion(cfg, random_state=seed).fit(
                    [train.views[v] for v in views],
                    labels_of(train),
                    validation=([val.views[v] for v in views], labels_of(val)),
                    modality_names=[names[v] for v in views],
                    progress=progress_bars,
                )
                new = supervised_records(name, model, seed, test, chosen, views)
            else:
                cfg = method_config(method, n_classes, config)
                ckpt = None
                if out is not None and cfg is not None:
                    ckpt = keyed_checkpoint(
                        out / "checkpoints",
                        f"{method}-{seed}",
                        {**key, "config": configs[method], "seed": seed},
                    )
                model = _train(method, cfg, train, val, seed, ckpt, progress_bars)
                variants = [(method, False)] + (
                    [("gmc-renorm", True)] if method == "gmc" and renorm else []
                )
                for label, flag in variants:
                    rep = Representation(method, model, views, renormalise=flag)
                    new += probe_records(name, label, seed, rep, parts, chosen, probe_config)
                    if method in GMC_METHODS and not flag:
                        # Re-normalising changes no cosine measure: gmc's geometry is its too.
                        new += geometry_records(name, label, seed, rep, test)
                        if plots and out is not None and seed == min(seeds) and not flag:
                            plot_modality_embeddings(
                                rep(test, tuple(views)),
                                {names[v]: rep(test, (v,)) for v in views},
                                labels_of(test),
                                out / f"embedding-{method}.png",
                                title=f"{name}: {method} test representations, seed {seed}",
                                seed=seed,
                            )
                if out is not None and model is not None:
                    save_checkpoint(
                        out / "models" / f"{method}-{seed}.pt",
                        {"model": model.state_dict(), "settings": configs[method]},
                    )
                    ckpt.unlink(missing_ok=True)
            seconds = time.perf_counter() - start
            new.append(_record(name, method, seed, chosen[0], "none", "train_seconds", seconds))
            records += new
            say(_summary_line(method, seed, new, chosen[0], seconds))
            if out is not None:
                write_represent(out, records, header())
    if out is not None and records:
        write_represent(out, records, header())
    return records


def _summary_line(method: str, seed: int, new: Sequence[dict], full, seconds: float) -> str:
    acc = {
        (tuple(r["subset"]), r["probe"]): r["value"]
        for r in new
        if r["metric"] == "accuracy" and r["method"] == method
    }
    probe = "mlp" if any(p == "mlp" for _, p in acc) else "none"
    cells = " ".join(f"{'+'.join(map(str, s))}:{v:.3f}" for (s, p), v in acc.items() if p == probe)
    return f"{method:>12} seed {seed}: accuracy ({probe}) {cells} ({seconds:.1f} s)"


# ------------------------------------------------------------------------------ tables
def _subset_label(subset: Sequence[int], names: Sequence[str], full: Sequence[int]) -> str:
    if list(subset) == list(full):
        return "complete"
    return " + ".join(names[v] for v in subset) + " only" * (len(subset) == 1)


def markdown(records: Sequence[dict], names: Sequence[str] | None = None) -> str:
    """The tables of ``results.md``: per probe and metric, methods against test subsets
    (mean ± std over seeds); the geometric measures; training seconds."""
    if not records:
        return "_no results_\n"
    dataset = records[0]["dataset"]
    seeds = sorted({r["seed"] for r in records})
    methods = list(dict.fromkeys(r["method"] for r in records))
    order = [m for m in TABLE_ORDER if m in methods]
    order += [m for m in methods if m not in order]
    tested = list(dict.fromkeys(tuple(r["subset"]) for r in records if r["probe"] in PROBES))
    full = max(tested, key=len) if tested else ()
    n_views = max((max(s) for s in tested if s), default=-1) + 1
    given_names = names
    names = list(names) if names is not None else [str(v) for v in range(n_views)]

    def cell(method, subset, probe, metric) -> str:
        vals = [
            r["value"]
            for r in records
            if r["method"] == method
            and tuple(r["subset"]) == subset
            and r["probe"] == probe
            and r["metric"] == metric
        ]
        return mean_std_text(vals)

    lines = [
        f"# Representations on {dataset}",
        "",
        f"Test-set scores, mean ± std over {len(seeds)} seed(s). Methods train without labels; "
        "probes train on complete training representations, early-stopped on the validation "
        "split; `supervised` is the late-fusion model trained with labels (its own heads), "
        "`raw` the preprocessed features through the same probes.",
    ]
    if given_names is not None and sum(n != LABEL_VIEW for n in given_names) < 2:
        lines += ["", f"`supervised` is not in the tables: {SUPERVISED_SKIPPED}."]
    for probe, metric, title in (
        ("mlp", "accuracy", "MLP probe (d -> 256 -> 128 -> K): accuracy"),
        ("linear", "accuracy", "Linear probe: accuracy"),
        ("mlp", "macro_f1", "MLP probe: macro F1"),
    ):
        heads = [_subset_label(s, names, full) for s in tested]
        lines += ["", f"## {title}", "", "| method | " + " | ".join(heads) + " |"]
        lines.append("| --- |" + " :---: |" * len(heads))
        for m in order:
            p = probe if m not in ("supervised", "majority") else "none"
            cells = [cell(m, s, p, metric) for s in tested]
            if any(cells):
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
    # gmc-renorm only rescales gmc's vectors: the same cosine geometry (older folders hold it).
    geo = [r for r in records if r["metric"] in GEOMETRY_METRICS and r["method"] != "gmc-renorm"]
    if geo:
        lines += [
            "",
            "## Geometric alignment of single-modality and complete test representations",
            "",
            "Retrieval: each test sample's representation from one modality queries the complete "
            "representations of every test sample; its rank is 1 + the number of other samples at "
            "least as similar (cosine) as its own (chance recall@1 = 1/N). Alignment: mean squared "
            "distance between a sample's unit-normalised single and complete representations "
            "(lower is better); uniformity: log mean exp(-2 d^2) over pairs of complete ones "
            "(lower is more uniform). Wang and Isola (2020).",
            "",
            "| method | modality | recall@1 | recall@10 | median rank | alignment |",
            "| --- | --- | :---: | :---: | :---: | :---: |",
        ]
        for m in dict.fromkeys(r["method"] for r in geo):
            singles = sorted(
                {tuple(r["subset"]) for r in geo if r["method"] == m and len(r["subset"]) == 1}
            )
            for s in singles:
                cells = [
                    cell(m, s, "none", k)
                    for k in ("recall@1", "recall@10", "median_rank", "alignment")
                ]
                lines.append(f"| {m} | {names[s[0]]} | " + " | ".join(cells) + " |")
            uni = [r["value"] for r in geo if r["method"] == m and r["metric"] == "uniformity"]
            lines.append(f"| {m} | uniformity (complete) | {mean_std_text(uni)} | | | |")
    lines += seconds_lines(records, "training, probes and scoring")
    return "\n".join(lines) + "\n"


def write_represent(
    out: Path, records: Sequence[dict], header: Mapping[str, Any] | None = None
) -> None:
    """Write ``results.json`` (header and records) and ``results.md`` atomically."""
    names = None
    source = (header or {}).get("data") or {}
    if "view_names" in source:
        names = source["view_names"]
    md = markdown(records, names)
    pngs = sorted(p.name for p in out.glob("embedding-*.png")) if out.exists() else []
    for png in pngs:
        md += f"\n![{png.removesuffix('.png')}]({png})\n"
    write_results_file(out, records, md, header)
