"""Length-sorted training batches (``TransformerConfig.sort_pool``) against plain shuffling.

On avdigits-tokens' training split (seed 0, preprocessed as ``modalign robustness`` does):

* padding: over ``--epochs-drawn`` epochs of batches of 64 drawn by
  :func:`modalign.methods.transformer.length_sorted_batches`, the mean of each batch's longest
  audio sequence (what :func:`~modalign.methods.transformer.trim_padding` leaves to compute)
  and the mean number of classes per batch, for ``sort_pool`` 1 (plain shuffling) and 16,
  the pools sorted by the row's longest counting sequence (the classifier's key) and, for
  comparison, by its total number of counting tokens;
* cost: one training epoch (with the validation pass) of each transformer, alignment off and
  on, with ``sort_pool`` 1 and 16, timed as the thread's CPU time (one torch thread; less
  sensitive than wall time to other jobs on a shared machine). The variants run in turn,
  ``--repeats`` times; the script prints the medians and the ratio sorted / shuffled.

    OMP_NUM_THREADS=1 MODALIGN_DATA=../shared/data python benchmarks/sort_pool.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from modalign.data import Preprocessor
from modalign.experiments.robustness import (
    TRANSFORMER_DEFAULTS,
    _token_inputs,
    labels_of,
    load_data,
    seed_splits,
)
from modalign.methods.transformer import (
    TransformerClassifier,
    TransformerConfig,
    length_sorted_batches,
    longest_sequence,
)

POOLS = (1, 16)


def padding_table(train, epochs: int, batch_size: int = 64) -> None:
    audio = train.token_masks[1].bool()
    masks = [m.bool() for m in train.token_masks]
    keys = {
        "longest": longest_sequence(masks, train.mask),
        "total": sum((m & train.mask[:, i : i + 1]).sum(1) for i, m in enumerate(masks)),
    }
    y = torch.as_tensor(labels_of(train))
    print("| sort_pool | key | longest audio sequence per batch (mean) | classes per batch |")
    print("| ---: | --- | ---: | ---: |")
    for pool, key in ((1, "longest"), (16, "longest"), (16, "total")):
        lengths = keys[key]
        longest, classes = [], []
        for epoch in range(epochs):
            gen = torch.Generator().manual_seed(epoch)
            for rows in length_sorted_batches(lengths, batch_size, pool, gen):
                longest.append(float(audio[rows].sum(1).max()))
                classes.append(len(torch.unique(y[rows])))
        mean_longest, mean_classes = statistics.fmean(longest), statistics.fmean(classes)
        print(f"| {pool} | {key} | {mean_longest:.1f} | {mean_classes:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs-drawn", type=int, default=20)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--padding-only", action="store_true", help="Skip the timing.")
    args = parser.parse_args()
    torch.set_num_threads(1)

    splits = seed_splits(load_data("avdigits-tokens", args.data_dir), 0)
    prep = Preprocessor("auto").fit(splits.train)
    train, val = prep.transform(splits.train), prep.transform(splits.val)
    padding_table(train, args.epochs_drawn)
    if args.padding_only:
        return

    views, masks = _token_inputs(train)
    val_views, val_masks = _token_inputs(val)
    validation = (val_views, labels_of(val), val_masks, val.mask)
    settings = {**TRANSFORMER_DEFAULTS, "epochs": 1, "patience": None}
    variants = [(f, a, p) for f in ("late", "early") for a in (False, True) for p in POOLS]
    seconds: dict[tuple, list[float]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for fusion, align, pool in variants[r % len(variants) :] + variants[: r % len(variants)]:
            cfg = TransformerConfig(
                n_outputs=10, fusion=fusion, align=align, sort_pool=pool, **settings
            )
            start = time.thread_time()
            TransformerClassifier(cfg, random_state=0).fit(
                views, labels_of(train), masks, mask=train.mask, validation=validation
            )
            seconds[(fusion, align, pool)].append(time.thread_time() - start)

    print()
    print("| fusion | alignment | shuffled (CPU s / epoch) | sorted, pool 16 | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for fusion in ("late", "early"):
        for align in (False, True):
            plain = statistics.median(seconds[(fusion, align, 1)])
            pooled = statistics.median(seconds[(fusion, align, 16)])
            on = "on" if align else "off"
            print(f"| {fusion} | {on} | {plain:.2f} | {pooled:.2f} | {pooled / plain:.2f}x |")


if __name__ == "__main__":
    main()
