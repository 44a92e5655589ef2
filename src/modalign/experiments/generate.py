"""The cross-modal generation protocol behind ``modalign generate`` (DESIGN.md sections 2.4, 3).

For every seed:

1. one classifier per modality, trained on the REAL training data of that modality alone
   (:class:`~modalign.eval.probe.Probe` of kind ``"encoder"``: a conv net for images and
   log-mel frames, an MLP otherwise; early-stopped on the validation split); its accuracy on
   the real test data is recorded (method ``classifier``): it bounds what any coherence can
   show. The label modality (a view named ``label``, one-hot) is read by its argmax;
2. each VAE (:data:`modalign.methods.VAES`) trained without labels on the training split
   (label-free early stopping on the validation loss), and ``vae-untrained``: MVAE's
   network at its initial weights (all three VAEs share that architecture), what the
   numbers are worth without training;
3. on the test split, for every target modality ``t``:

   * ``coherence`` from each single other modality ``s`` and from all of them: modality
     ``t`` generated from the posterior mean given the source (decoder means: Bernoulli
     probabilities, Gaussian means, class probabilities), read by ``t``'s classifier, scored
     against the sample's true class;
   * ``elbo``: the ELBO of ``t`` from ``t`` alone (``beta = 1``, one posterior draw), in
     nats per sample; ``reconstruction_mse``: the mean squared error per feature of ``t``
     decoded from ``t`` alone;

4. ``joint_coherence``: ``n_prior`` latents drawn from ``N(0, I)``, decoded into every
   modality, the share whose classes all agree, and beside it ``prior_class_spread`` (the
   normalised entropy of the classes read from the first modality's samples), because a
   model that always draws one class is perfectly "coherent";
5. beside them ``nearest-pair``, the raw-input reference: modality ``t`` of the training
   sample nearest to the test sample in the source modalities (preprocessed features,
   Euclidean), read by the same classifier, i.e. what the training pairs give with no model;
   and ``majority``: a generator that always produces the training split's most frequent
   class.

Splits: the datasets with fixed splits (``mnist-label``, ``digits-label``, ``avdigits``,
``avdigits-label``) use them; any other labelled, aligned multi-view dataset is split 60 / 20 /
20 per seed (:func:`~modalign.experiments.represent.load_represent_data`). Preprocessing is
the representation protocol's ``auto`` (images in [0, 1] kept as they are, log-mel frames
z-scored, a one-hot label kept one-hot).

Records (``results.json`` and ``--json``), one per number, with exactly the keys of
:data:`RESULT_KEYS`: ``source`` is the sorted list of the view indices given (``[]`` for
prior samples and for ``train_seconds``), ``target`` a view index or None.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalign.data import MultiViewDataset
from modalign.data.builtin import LABEL_VIEW
from modalign.eval.generation import (
    class_spread,
    coherence,
    generation_grid_figure,
    joint_coherence,
    latent_figure,
    one_per_class,
)
from modalign.eval.probe import Probe, ProbeConfig
from modalign.eval.report import (
    mean_std_text,
    read_header,
    read_protocol_records,
    save_png,
    seconds_lines,
    write_results_file,
)
from modalign.experiments.represent import load_represent_data, preprocessor, subset_mask
from modalign.experiments.robustness import Splits, labels_of, seed_splits
from modalign.methods import VAES, make_vae, vae_config
from modalign.provenance import (
    check_provenance,
    data_fingerprint,
    dataset_name,
    plain_settings,
    protocol_key,
    run_header,
)
from modalign.train import keyed_checkpoint, save_checkpoint

__all__ = [
    "LEARNED",
    "REFERENCES",
    "RESULT_KEYS",
    "markdown",
    "read_generate",
    "run_generate",
    "write_generate",
]

RESULT_KEYS = ("dataset", "method", "seed", "metric", "source", "target", "value")
#: The VAEs, trained without labels.
LEARNED = tuple(VAES)
#: What ``modalign generate`` runs unless told otherwise (``wvae-full``, full-covariance
#: posteriors, is about 4x slower to train and only on request).
DEFAULT_METHODS = ("mvae", "wvae", "wvae-factorised")
#: Always run: the untrained network, the nearest training pair (no model), the per-modality
#: classifiers, the majority class.
REFERENCES = ("vae-untrained", "nearest-pair", "classifier", "majority")
TABLE_ORDER = (*LEARNED, "vae-untrained", "nearest-pair", "majority")
#: The VAEs' training budget unless ``config`` sets ``epochs``: as many epochs as give this
#: many optimiser steps (20 epochs of mnist-label, whose five seeds of three VAEs then fit in
#: 15 minutes on 2 cores), at most :data:`MAX_EPOCHS`; the epoch of lowest validation loss is
#: kept. A budget, not a convergence criterion; counted in steps so that small training sets
#: (digits-label: 11 steps per epoch) get as many updates as large ones.
DEFAULT_STEPS = 1240
MAX_EPOCHS = 100


def budget_epochs(n_train: int, batch_size: int) -> int:
    """Epochs that give :data:`DEFAULT_STEPS` steps of ``batch_size`` over ``n_train`` rows
    (training drops the last partial batch), at most :data:`MAX_EPOCHS`."""
    steps_per_epoch = max(1, n_train // batch_size)
    return int(min(MAX_EPOCHS, -(-DEFAULT_STEPS // steps_per_epoch)))


#: The classifiers of real modality data (the reference of every coherence).
CLASSIFIER = ProbeConfig(kind="encoder", batch_size=128, epochs=100, patience=5)


# ------------------------------------------------------------------------------ helpers
def _record(dataset, method, seed, metric, source, target, value) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "method": method,
        "seed": int(seed),
        "metric": metric,
        "source": sorted(int(v) for v in source),
        "target": None if target is None else int(target),
        "value": float(value),
    }


def sources_of(target: int, n_views: int) -> list[tuple[int, ...]]:
    """The sources a target is generated from: every other single modality, then all."""
    return [(s,) for s in range(n_views) if s != target] + [tuple(range(n_views))]


class Readers:
    """Per modality, how the class of a (real or generated) sample is read: a trained
    :class:`~modalign.eval.probe.Probe` of kind ``"encoder"``, or the argmax for the label."""

    def __init__(
        self,
        train: MultiViewDataset,
        val: MultiViewDataset,
        n_classes: int,
        seed: int,
        device: str = "cpu",
    ):
        cfg = ProbeConfig(**{**asdict(CLASSIFIER), "device": device})
        self.probes: dict[int, Probe | None] = {}
        for v, name in enumerate(train.names):
            if name == LABEL_VIEW:
                self.probes[v] = None
                continue
            self.probes[v] = Probe(cfg, random_state=seed).fit(
                train.views[v],
                labels_of(train),
                val.views[v],
                labels_of(val),
                n_classes,
                view_kind=train.kinds[v],
                shape=train.shapes[v],
            )

    def __call__(self, view: int, x: torch.Tensor) -> np.ndarray:
        probe = self.probes[view]
        if probe is None:
            return x.argmax(1).cpu().numpy()
        return probe.predict(x)


def generation_records(
    dataset: str,
    method: str,
    seed: int,
    model: Any,
    test: MultiViewDataset,
    read: Readers,
    n_prior: int,
) -> list[dict]:
    """Coherence from every source to every target, joint coherence and class spread of
    prior samples, per-modality test ELBO and reconstruction error (module docstring)."""
    y = labels_of(test)
    m = test.n_views
    records = []
    for t in range(m):
        for source in sources_of(t, m):
            generated = model.generate(test, subset_mask(test, source), t)
            value = coherence(read(t, generated), y)
            records.append(_record(dataset, method, seed, "coherence", source, t, value))
        noise = torch.Generator(device=model.config.device).manual_seed(seed)
        elbo = model.unimodal_elbo(test, t, generator=noise).mean()
        own = model.generate(test, subset_mask(test, (t,)), t)
        mse = ((own.cpu() - test.views[t].cpu()) ** 2).mean()
        records.append(_record(dataset, method, seed, "elbo", (t,), t, elbo))
        records.append(_record(dataset, method, seed, "reconstruction_mse", (t,), t, mse))
    noise = torch.Generator(device=model.config.device).manual_seed(seed)
    samples = model.sample_prior(n_prior, generator=noise)
    classes = [read(v, x) for v, x in enumerate(samples)]
    n_classes = int(max(y.max() + 1, 2))
    records.append(
        _record(dataset, method, seed, "joint_coherence", (), None, joint_coherence(classes))
    )
    spread = class_spread(classes[0], n_classes)
    records.append(_record(dataset, method, seed, "prior_class_spread", (), 0, spread))
    return records


def nearest_pair(
    train: MultiViewDataset, test: MultiViewDataset, source: Sequence[int], target: int
) -> torch.Tensor:
    """Cross-modal "generation" without learning: for each test row, the training row
    nearest to it in the ``source`` views (Euclidean distance between their preprocessed
    features, concatenated), and that training row's ``target`` view, ``(N_test, D_target)``."""
    a = torch.cat([train.views[v].flatten(1) for v in source], dim=1)
    b = torch.cat([test.views[v].flatten(1) for v in source], dim=1)
    nearest = torch.cat([torch.cdist(chunk, a).argmin(1) for chunk in b.split(1024)])
    return train.views[target][nearest]


def nearest_pair_records(
    dataset: str, seed: int, train: MultiViewDataset, test: MultiViewDataset, read: Readers
) -> list[dict]:
    """The coherence of :func:`nearest_pair` from every source to every target: what the
    training pairs give with no model at all, the raw-input reference of every coherence."""
    y = labels_of(test)
    return [
        _record(
            dataset,
            "nearest-pair",
            seed,
            "coherence",
            s,
            t,
            coherence(read(t, nearest_pair(train, test, s, t)), y),
        )
        for t in range(test.n_views)
        for s in sources_of(t, test.n_views)
    ]


def majority_records(
    dataset: str, seed: int, train: MultiViewDataset, test: MultiViewDataset
) -> list[dict]:
    """The coherence of always generating the training split's most frequent class."""
    y = labels_of(test)
    guess = np.full_like(y, np.bincount(labels_of(train)).argmax())
    value = coherence(guess, y)
    return [
        _record(dataset, "majority", seed, "coherence", s, t, value)
        for t in range(test.n_views)
        for s in sources_of(t, test.n_views)
    ]


def _image_view(ds: MultiViewDataset) -> int | None:
    for v, (kind, shape) in enumerate(zip(ds.kinds, ds.shapes)):
        if kind == "image" and shape is not None and len(shape) == 2:
            return v
    return None


def plot_generations(
    out: Path, dataset: str, method: str, seed: int, model: Any, test: MultiViewDataset
) -> Path | None:
    """``grid-{method}.png``: the first image modality's real test images (two per class)
    and the images generated from all modalities and from each one alone."""
    t = _image_view(test)
    if t is None:
        return None
    cols = one_per_class(labels_of(test), per_class=2)
    part = test.subset(cols)
    rows = {}
    for source in [tuple(range(test.n_views)), *((s,) for s in range(test.n_views))]:
        label = " + ".join(test.names[s] for s in source)
        rows[f"from {label}"] = model.generate(part, subset_mask(part, source), t).cpu().numpy()
    fig = generation_grid_figure(
        part.views[t].cpu().numpy(),
        rows,
        tuple(test.shapes[t]),
        title=f"{dataset}: {method} generations of '{test.names[t]}', seed {seed}",
    )
    return save_png(fig, out / f"grid-{method}.png")


# ------------------------------------------------------------------------------ protocol
def read_generate(out: Path) -> list[dict]:
    """Records of ``out/results.json`` (``[]`` if absent), checked for the expected keys."""
    return read_protocol_records(out, RESULT_KEYS, "generate")


def _train(method: str, cfg: Any, train, val, seed: int, checkpoint, progress: bool) -> Any:
    if method == "vae-untrained":
        return make_vae("mvae", cfg, seed).fit(train, stop_after=0)
    return make_vae(method, cfg, seed).fit(
        train, validation=val, checkpoint=checkpoint, progress=progress
    )


def run_generate(
    dataset: str,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: Sequence[int] = range(5),
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    preprocess: str = "auto",
    config: Mapping[str, Any] | None = None,
    n_prior: int = 1000,
    plots: bool = True,
    progress: Callable[[str], None] | None = None,
    progress_bars: bool = False,
) -> list[dict]:
    """Run the protocol (module docstring) and return its records.

    Args:
        methods: VAEs among :data:`LEARNED`; the references (:data:`REFERENCES`) always run.
        config: overrides of the VAEs' configs where the field exists (``epochs``, by
            default :func:`budget_epochs` of the training split; ``device``, ...).
        n_prior: prior samples for the joint coherence.
        out: write ``results.json``, ``results.md`` and the pictures there after every run;
            runs already there are not repeated, and a folder produced by anything else is
            refused.
    """
    started = time.perf_counter()
    unknown = [m for m in methods if m not in LEARNED]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: choose from {list(LEARNED)}")
    if n_prior < 1:
        raise ValueError(f"n_prior must be positive, got {n_prior}")
    runs = list(dict.fromkeys([*methods, "vae-untrained"]))
    out = Path(out) if out is not None else None
    name = dataset_name(dataset)
    data = load_represent_data(dataset, data_dir, protocol="generate")
    parts0 = [data.train, data.val, data.test] if isinstance(data, Splits) else [data]
    names = parts0[0].names
    n_classes = int(max(int(p.labels.max()) for p in parts0)) + 1
    if "epochs" not in (config or {}):
        n_train = parts0[0].n_rows if isinstance(data, Splits) else round(0.6 * data.n_rows)
        batch = int((config or {}).get("batch_size", vae_config("mvae").batch_size))
        config = {**dict(config or {}), "epochs": budget_epochs(n_train, batch)}
    device = str((config or {}).get("device", "cpu"))
    sha = data_fingerprint(*parts0)
    key = protocol_key(
        "generate",
        name,
        sha,
        preprocess=preprocess,
        n_prior=n_prior,
        classifier=str(plain_settings(asdict(CLASSIFIER))),
    )
    configs = {
        m: plain_settings(asdict(vae_config("mvae" if m == "vae-untrained" else m, config)))
        for m in runs
    }
    records: list[dict] = []
    if out is not None:
        configs = check_provenance(out, read_header(out), key, configs)
        records = read_generate(out)

    def header() -> dict:
        return run_header(
            key=key,
            configs=configs,
            data={"name": name, "sha256": sha, "source": parts0[0].source, "view_names": names},
            started=started,
            device=device,
        )

    say = progress or (lambda _msg: None)
    done = {(r["method"], r["seed"]) for r in records}
    for seed in seeds:
        todo = [
            m for m in [*runs, "classifier", "nearest-pair", "majority"] if (m, seed) not in done
        ]
        if not todo:
            continue
        splits = seed_splits(data, seed)
        prep = preprocessor(preprocess, splits.train).fit(splits.train)
        train, val, test = (prep.transform(p) for p in (splits.train, splits.val, splits.test))
        start = time.perf_counter()
        read = Readers(train, val, n_classes, seed, device)
        new: list[dict] = []
        if "classifier" in todo:
            y = labels_of(test)
            for v, probe in read.probes.items():
                if probe is not None:
                    acc = coherence(probe.predict(test.views[v]), y)
                    new.append(_record(name, "classifier", seed, "accuracy", (v,), v, acc))
            new.append(
                _record(
                    name, "classifier", seed, "train_seconds", (), None, time.perf_counter() - start
                )
            )
            say(
                f"  classifiers seed {seed}: "
                + ", ".join(
                    f"{names[r['target']]} {r['value']:.3f}"
                    for r in new
                    if r["metric"] == "accuracy"
                )
            )
        if "nearest-pair" in todo:
            new += nearest_pair_records(name, seed, train, test, read)
        if "majority" in todo:
            new += majority_records(name, seed, train, test)
        records += new
        for method in runs:
            if (method, seed) in done:
                continue
            start = time.perf_counter()
            cfg = vae_config("mvae" if method == "vae-untrained" else method, config)
            ckpt = None
            if out is not None:
                ckpt = keyed_checkpoint(
                    out / "checkpoints",
                    f"{method}-{seed}",
                    {**key, "config": configs[method], "seed": seed},
                )
            model = _train(method, cfg, train, val, seed, ckpt, progress_bars)
            new = generation_records(name, method, seed, model, test, read, n_prior)
            if plots and out is not None and seed == min(seeds):
                plot_generations(out, name, method, seed, model, test)
                _latent_plot(out, name, method, seed, model, test)
            if out is not None:
                save_checkpoint(
                    out / "models" / f"{method}-{seed}.pt",
                    {"model": model.state_dict(), "settings": configs[method]},
                )
                if ckpt is not None:
                    ckpt.unlink(missing_ok=True)
            seconds = time.perf_counter() - start
            new.append(_record(name, method, seed, "train_seconds", (), None, seconds))
            records += new
            say(_summary_line(method, seed, new, names, seconds))
            if out is not None:
                write_generate(out, records, header())
    if out is not None and records:
        write_generate(out, records, header())
    return records


def _latent_plot(out: Path, dataset: str, method: str, seed: int, model: Any, test) -> Path:
    """``latent-{method}.png``: the test representations from all modalities, in 2-D."""
    z = model.transform(test).cpu().numpy()
    fig = latent_figure(
        {f"{method}: posterior mean from all modalities": z},
        labels_of(test),
        title=f"{dataset} test set, seed {seed}",
        seed=seed,
    )
    return save_png(fig, out / f"latent-{method}.png")


def _summary_line(method: str, seed: int, new: Sequence[dict], names, seconds: float) -> str:
    cells = [
        f"{'+'.join(names[s] for s in r['source'])}->{names[r['target']]} {r['value']:.3f}"
        for r in new
        if r["metric"] == "coherence" and len(r["source"]) == 1
    ]
    joint = [r["value"] for r in new if r["metric"] == "joint_coherence"]
    tail = f", joint {joint[0]:.3f}" if joint else ""
    return f"{method:>15} seed {seed}: coherence {' '.join(cells)}{tail} ({seconds:.1f} s)"


# ------------------------------------------------------------------------------ tables
def markdown(records: Sequence[dict], names: Sequence[str] | None = None) -> str:
    """The tables of ``results.md`` (mean ± std over seeds): coherence per source and
    target; joint coherence, class spread, test ELBO and reconstruction error; the
    classifiers' accuracy on real data; seconds per seed."""
    if not records:
        return "_no results_\n"
    dataset = records[0]["dataset"]
    seeds = sorted({r["seed"] for r in records})
    n_views = 1 + max(
        max([r["target"] or 0, *r["source"]]) for r in records if r["target"] is not None
    )
    names = list(names) if names is not None else [str(v) for v in range(n_views)]
    methods = list(dict.fromkeys(r["method"] for r in records))
    order = [m for m in TABLE_ORDER if m in methods] + [
        m for m in methods if m not in TABLE_ORDER and m != "classifier"
    ]

    def values(method, metric, source=None, target=None) -> list[float]:
        return [
            r["value"]
            for r in records
            if r["method"] == method
            and r["metric"] == metric
            and (source is None or r["source"] == list(source))
            and (target is None or r["target"] == target)
        ]

    def label(source) -> str:
        return (
            "all" if len(source) == n_views and n_views > 1 else "+".join(names[s] for s in source)
        )

    pairs = [(s, t) for t in range(n_views) for s in sources_of(t, n_views)]
    lines = [
        f"# Cross-modal generation on {dataset}",
        "",
        f"Test split, mean ± std over {len(seeds)} seed(s). The VAEs train without labels; a "
        "generated modality's class is read by a classifier trained on that modality's real "
        "data (its accuracy on real test data is the last table; the label modality is read "
        "by its argmax). `vae-untrained`: the VAEs' network at its initial weights; "
        "`nearest-pair`: the target modality of the training sample nearest in the source "
        "modalities (no model: what the training pairs give); "
        "`majority`: always the training split's most frequent class.",
        "",
        "## Coherence: share of generated samples of the sample's true class",
        "",
        "| method | " + " | ".join(f"{label(s)} -> {names[t]}" for s, t in pairs) + " |",
        "| --- |" + " :---: |" * len(pairs),
    ]
    for m in order:
        cells = [mean_std_text(values(m, "coherence", s, t)) for s, t in pairs]
        if any(cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    heads = ["joint coherence (prior)", f"class spread ({names[0]})"]
    heads += [f"ELBO {n} (nats)" for n in names] + [f"MSE {n}" for n in names]
    lines += [
        "",
        "## Prior samples and test likelihood",
        "",
        "Joint coherence: share of samples decoded from one prior latent whose classes agree "
        "in every modality; class spread: normalised entropy of the classes read from those "
        "samples (1: all classes equally often; a model that always draws one class has joint "
        "coherence 1 and spread 0). ELBO: of each modality from itself alone (nats per "
        "sample, higher is better); MSE: its reconstruction from itself, per feature.",
        "",
        "| method | " + " | ".join(heads) + " |",
        "| --- |" + " :---: |" * len(heads),
    ]
    for m in order:
        if m == "majority":
            continue
        cells = [
            mean_std_text(values(m, "joint_coherence")),
            mean_std_text(values(m, "prior_class_spread")),
        ]
        cells += [mean_std_text(values(m, "elbo", (t,), t)) for t in range(n_views)]
        cells += [mean_std_text(values(m, "reconstruction_mse", (t,), t)) for t in range(n_views)]
        if any(cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    accs = [(t, values("classifier", "accuracy", (t,), t)) for t in range(n_views)]
    accs = [(t, v) for t, v in accs if v]
    if accs:
        lines += [
            "",
            "## Classifiers of real data (test accuracy)",
            "",
            "| " + " | ".join(names[t] for t, _ in accs) + " |",
            "|" + " :---: |" * len(accs),
            "| " + " | ".join(mean_std_text(v) for _, v in accs) + " |",
        ]
    lines += seconds_lines(records, "training and scoring")
    return "\n".join(lines) + "\n"


def write_generate(
    out: Path, records: Sequence[dict], header: Mapping[str, Any] | None = None
) -> None:
    """Write ``results.json`` (header and records) and ``results.md`` (tables and pictures)
    atomically."""
    names = ((header or {}).get("data") or {}).get("view_names")
    md = markdown(records, names)
    for png in sorted(out.glob("grid-*.png")) + sorted(out.glob("latent-*.png")):
        md += f"\n![{png.stem}]({png.name})\n"
    write_results_file(out, records, md, header)
