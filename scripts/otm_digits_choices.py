"""The development runs behind OTM's defaults, on digits only (docs/results.md).

digits (scikit-learn's handwritten digits, left and right halves) is the development set: each
setting of :class:`modalign.methods.OTMConfig` below is trained on it with seeds 0 and 1 and
scored by Hungarian accuracy, together with the evaluation choices (structure of the clustering
head, mean or concatenated fused codes, unaligned clusters from own codes or through the
barycenter) on the same trained models. The views are preprocessed as ``modalign cluster``
preprocesses them (``auto``). No other dataset is touched.

    python scripts/otm_digits_choices.py                 # every row (about 20 minutes, 1 core)
    python scripts/otm_digits_choices.py --only defaults  # one row
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from modalign.data import Preprocessor, load_digits_views, unalign
from modalign.eval import clustering_scores
from modalign.methods import OTM, OTMConfig

VARIANTS = {
    "defaults": {},
    "lambda_mmd=0.01": {"lambda_mmd": 0.01},
    "lambda_mmd=0.1": {"lambda_mmd": 0.1},
    "latent_dim=16": {"latent_dim": 16},
    "epochs=50": {"epochs": 50, "warmup_epochs": 10},
    "epochs=200": {"epochs": 200, "warmup_epochs": 40},
    "lambda_cluster=0.1": {"lambda_cluster": 0.1},
    "mixer=none (MWAE)": {"mixer": "none"},
}


def accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    return clustering_scores(labels, pred)["accuracy"]


def aligned_row(model: OTM, views, labels) -> dict[str, float]:
    """Accuracy of the default head and fusion, and of the alternatives on the same model."""
    codes = [z.double() for z in model.transform(views)]
    concat, mean = torch.cat(codes, 1), torch.stack(codes).mean(0)
    by_distance = dataclasses.replace(model.config, cluster_structure="sqeuclidean")
    distance_head = OTM(by_distance, random_state=model.random_state)
    return {
        "concat, graph head (default)": accuracy(labels, model.assign_clusters(concat)),
        "mean, graph head": accuracy(labels, model.assign_clusters(mean)),
        "concat, distance head": accuracy(labels, distance_head.assign_clusters(concat)),
    }


def unaligned_row(model: OTM, data) -> dict[str, float]:
    """Per-view accuracy (mean over views): own codes (default) or through the barycenter."""
    views = list(data.views)
    labels = [data.row_labels(v).numpy() for v in range(len(views))]
    own = model.predict(views, aligned=False)
    bary, couplings = model.fused_codes(views, aligned=False)
    bary_labels = model.assign_clusters(bary)
    through = [bary_labels[t.argmax(0).cpu().numpy()] for t in couplings]
    return {
        "own codes (default)": float(np.mean([accuracy(y, p) for y, p in zip(labels, own)])),
        "through barycenter": float(np.mean([accuracy(y, p) for y, p in zip(labels, through)])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=[*VARIANTS, "unaligned"], action="append")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw = load_digits_views()
    ds = Preprocessor("auto").fit(raw).transform(raw)  # as `modalign cluster` does
    views, labels = list(ds.views), ds.labels.numpy()
    for name in args.only or [*VARIANTS, "unaligned"]:
        for seed in args.seeds:
            if name == "unaligned":
                data = unalign(ds, 1.0, seed=seed)
                model = OTM(OTMConfig(n_clusters=10), random_state=seed)
                row = unaligned_row(model.fit(list(data.views), aligned=False), data)
            else:
                model = OTM(OTMConfig(n_clusters=10, **VARIANTS[name]), random_state=seed)
                row = aligned_row(model.fit(views), views, labels)
            cells = ", ".join(f"{k}: {v:.3f}" for k, v in row.items())
            print(f"{name} | seed {seed} | {cells}", flush=True)


if __name__ == "__main__":
    main()
