"""GMC settings compared by label-free criteria.

For each variant: train GMC on the training split, keep the epoch of lowest contrastive loss
on the validation split, and print that loss and the validation split's retrieval recall@1
from each modality to the complete representation: both need no label, so they may choose
settings on any dataset (losses compare only at equal tau). Measured on avdigits, seed 0:
z-scored pixels 2.901 / recall@1 image 0.497 audio 0.460; min-max pixels 2.298 / 0.563, 0.560;
min-max with tau 0.3: recall@1 0.393, 0.303; min-max with batch 128: 0.653, 0.630; batch 256:
0.723, 0.583 (still improving at 100 epochs); weight decay 1e-4: 0.617, 0.553; the joint path
with its own feature networks: 0.510, 0.583 (the current code reproduces them: its one later
change, `scale_inputs`, leaves conv-encoded views alone). Hence min-max images, tau 0.1,
batch 128 and shared feature networks by default. At commit c789f64, where `scale_inputs`
scaled every view to unit RMS entries (`git checkout c789f64`, then the same command):
z-scored 0.507, 0.463; min-max 0.530, 0.557; batch 128 0.590, 0.513, below the unscaled
0.653, 0.630: since f077655 conv-encoded views are not scaled.

    MODALIGN_DATA=../shared/data python scripts/gmc_choices.py 3sources \
        defaults "unscaled MLP inputs"

gives the training and validation losses quoted in GMCConfig's ``scale_inputs``.

    MODALIGN_DATA=../shared/data python scripts/gmc_choices.py avdigits
"""

from __future__ import annotations

import sys
import time

import torch

from modalign.data import Preprocessor
from modalign.eval.geometry import retrieval_scores
from modalign.experiments.represent import load_represent_data, seed_splits
from modalign.methods import GMC, GMCConfig

VARIANTS = {
    "zscore": ("auto", {"batch_size": 64}),
    "minmax images": ({"image": "minmax"}, {"batch_size": 64}),
    "minmax images, tau 0.3": ({"image": "minmax"}, {"tau": 0.3, "batch_size": 64}),
    "minmax, weight decay 1e-4": ({"image": "minmax"}, {"weight_decay": 1e-4, "batch_size": 64}),
    "minmax, batch 128": ({"image": "minmax"}, {"batch_size": 128}),
    "minmax, separate joint": ({"image": "minmax"}, {"separate_joint": True, "batch_size": 64}),
    "minmax, batch 256": ({"image": "minmax"}, {"batch_size": 256}),
    # Datasets without image views (3-Sources: tf-idf + L2 rows), GMC's defaults with and
    # without scaling the MLP-encoded views' inputs.
    "defaults": ("auto", {}),
    "unscaled MLP inputs": ("auto", {"scale_inputs": False}),
}


def main(dataset: str, only: list[str], seed: int = 0) -> None:
    torch.set_num_threads(1)
    splits = seed_splits(load_represent_data(dataset), seed)
    for name, (prep_spec, overrides) in VARIANTS.items():
        if only and name not in only:
            continue
        if isinstance(prep_spec, dict) and "image" not in splits.train.names:
            continue
        prep = Preprocessor(prep_spec).fit(splits.train)
        train, val = prep.transform(splits.train), prep.transform(splits.val)
        start = time.perf_counter()
        model = GMC(GMCConfig(**overrides), random_state=seed).fit(train, validation=val)
        best = min(h["val_loss"] for h in model.history)
        complete = model.transform(val)
        recalls = []
        for v in range(val.n_views):
            mask = torch.zeros(val.n_rows, val.n_views, dtype=torch.bool)
            mask[:, v] = True
            recalls.append(retrieval_scores(model.transform(val, mask), complete)["recall@1"])
        print(
            f"{name:>24}: training loss {model.history[0]['loss']:.2f} -> "
            f"{model.history[-1]['loss']:.2f}, best val loss {best:.3f} after "
            f"{len(model.history)} epochs, val recall@1 "
            + " ".join(f"{n} {r:.3f}" for n, r in zip(val.names, recalls))
            + f" ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    # python scripts/gmc_choices.py DATASET ["variant name" ...]
    main(sys.argv[1] if len(sys.argv) > 1 else "digits", sys.argv[2:])
