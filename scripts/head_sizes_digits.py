"""Balanced or estimated cluster sizes for OTM's clustering head, on digits only.

digits (scikit-learn's handwritten digits, left and right halves) is the development set; no
other dataset is touched. The views are preprocessed as ``modalign cluster`` preprocesses them
(``auto``). The head (:func:`modalign.ot.clustering.graph_cluster`, through
``OTM.assign_clusters``) runs with ``cluster_sizes="balanced"`` (equal masses) and
``"estimated"`` (masses from its label-free spectral start) on

* the raw views, concatenated with each scaled by :func:`modalign.eval.baselines.scale_view`
  (the ``graph-concat`` baseline), and each view alone in content order (``graph`` per view,
  as in the unaligned setting);
* the concatenated codes of an OTM trained briefly (``--epochs``, warm-up ``epochs // 5``).

Every run prints the Hungarian accuracy and the cluster sizes found (sorted); the labels score
the runs and choose nothing inside them. Then ``mean ± std`` over seeds per block and setting.

    python scripts/head_sizes_digits.py                # about 4 minutes on one core
    python scripts/head_sizes_digits.py --otm-seeds    # the raw-view blocks only
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict

import numpy as np
import torch

from modalign.data import Preprocessor, load_digits_views
from modalign.eval import clustering_scores
from modalign.eval.baselines import graph_concat, head_clusters
from modalign.eval.report import mean_std_text
from modalign.methods import OTM, OTMConfig

COMPARED = ("balanced", "estimated")
K = 10


def head(sizes: str) -> OTMConfig:
    """The default head with the given cluster masses."""
    return OTMConfig(n_clusters=K, cluster_sizes=sizes)


def report(results: dict, block: str, sizes: str, seed: int, labels, pred) -> None:
    """Print one run and keep its accuracy for the summary."""
    accuracy = clustering_scores(labels, pred)["accuracy"]
    results[block, sizes].append(accuracy)
    found = np.sort(np.bincount(pred, minlength=K))[::-1]
    print(f"{block} | {sizes} | seed {seed} | accuracy {accuracy:.3f} | sizes {found.tolist()}")


def raw_blocks(views: list[np.ndarray], labels: np.ndarray, seeds, results: dict) -> None:
    """The head alone on the concatenated views and on each view (content order)."""
    for seed in seeds:
        for sizes in COMPARED:
            pred = graph_concat(views, K, seed, head=head(sizes))
            report(results, "raw concat", sizes, seed, labels, pred)
            for v, view in enumerate(views):
                pred = head_clusters(view, K, seed, head=head(sizes), content_order=True)
                report(results, f"raw view {v}", sizes, seed, labels, pred)


def otm_block(views: list[torch.Tensor], labels, seeds, epochs: int, results: dict) -> None:
    """OTM trained ``epochs`` epochs per seed; both heads on the same concatenated codes."""
    cfg = OTMConfig(n_clusters=K, epochs=epochs, warmup_epochs=epochs // 5)
    for seed in seeds:
        model = OTM(cfg, random_state=seed).fit(views)
        codes = model.fused_codes(views, aligned=True)[0]
        for sizes in COMPARED:
            sized = OTM(dataclasses.replace(cfg, cluster_sizes=sizes), random_state=seed)
            report(
                results, f"OTM {epochs} epochs", sizes, seed, labels, sized.assign_clusters(codes)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--otm-seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw = load_digits_views()
    ds = Preprocessor("auto").fit(raw).transform(raw)  # as `modalign cluster` does
    labels = ds.labels.numpy()
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    raw_blocks([v.numpy() for v in ds.views], labels, args.seeds, results)
    otm_block(list(ds.views), labels, args.otm_seeds, args.epochs, results)
    print("\nblock | " + " | ".join(COMPARED))
    for block in dict.fromkeys(b for b, _ in results):
        print(f"{block} | " + " | ".join(mean_std_text(results[block, s]) for s in COMPARED))


if __name__ == "__main__":
    main()
