"""Issue 15, known pairs at prediction: three ways to let them reach the loose rows, on digits.

All three start from OTM's codes of the digits known-pairs curve (its checkpoints) at one share
of known pairs, and score the per-view Hungarian accuracy (mean over views), as the curve does:

* block: the default (``OTMConfig.fusion="graphs"``): each view's kNN structure with the block
  between known pairs averaged over the views, clustered by the head;
* spread: the known rows clustered once on the mean of the views' structures over them, then
  every view's loose rows labelled by label spreading (Zhou et al. 2004, alpha 0.99) from
  them on the view's own kNN graph;
* transported: every other view's graph carried onto this view's rows (identity on the known
  pairs, an exact OT coupling between the loose rows' anchor profiles, their squared
  distances to the known pairs, elsewhere), averaged, and clustered by the head.

    OMP_NUM_THREADS=1 MODALIGN_DATA=../shared/data \\
        python scripts/pair_fusion_variants_digits.py runs/results/pairs-digits 0.5

Measured (1 December 2026, the checkpoints of docs/results.md's digits curve), per seed 0-4:

    share 0.5  codes: block  0.748 0.750 0.774 0.739 0.729  (mean 0.748)
                      spread 0.751 0.851 0.763 0.844 0.863  (mean 0.814)
               raw:   block  0.770 0.709 0.706 0.744 0.741  (mean 0.734)
                      transported 0.651 0.704 0.687 0.698 0.647  (mean 0.677)
    share 0.3  codes: block  0.761 0.744 0.711 0.736 0.721  (mean 0.735)
                      spread 0.820 0.716 0.624 0.745 0.678  (mean 0.717)
               raw:   block  0.699 0.691 0.724 0.723 0.705  (mean 0.708)
                      transported 0.631 0.604 0.648 0.600 0.611  (mean 0.619)

The script also prints the head's accuracy on the known rows alone (the seeds spreading starts
from) and the share of the view 0 -> view 1 coupling of the loose rows on same-class pairs:

    share 0.5  known rows alone 0.772 0.930 0.814 0.913 0.917; same-class mass 0.380 0.389
               0.420 0.408 0.391 (chance 0.100-0.101)
    share 0.3  known rows alone 0.896 0.776 0.638 0.801 0.699; same-class mass 0.393 0.399
               0.393 0.401 0.374 (chance 0.100)

Spreading gains at share 0.5 and loses at 0.3: it inherits the head's clusters of the known
rows alone, which swing between seeds (0.64 to 0.93). Carrying graphs through the
anchor-profile couplings loses at both shares: the couplings put 0.37-0.42 of their mass on
same-class pairs (chance 0.10), too little to carry a graph. The block fusion stays.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from modalign.data import Preprocessor, load_dataset, unalign
from modalign.eval.metrics import clustering_scores
from modalign.methods import OTM, OTMConfig
from modalign.methods.otm import anchor_profiles
from modalign.ot import emd
from modalign.ot.clustering import head_structure


def spread_labels(affinity: torch.Tensor, seeds: torch.Tensor, seed_labels, k: int) -> np.ndarray:
    """Label spreading's ``argmax (I - 0.99 S)^-1 Y`` on a graph ``affinity`` (N, N), the
    ``seeds`` rows keeping ``seed_labels``."""
    w = affinity.clone().fill_diagonal_(0)
    d = w.sum(1).clamp_min(1e-12).rsqrt()
    s = d[:, None] * w * d[None, :]
    y = torch.zeros(len(w), k, dtype=torch.float64)
    y[seeds, torch.as_tensor(seed_labels)] = 1
    f = torch.linalg.solve(torch.eye(len(w), dtype=torch.float64) - 0.99 * s, y)
    labels = f.argmax(1).numpy()
    labels[seeds.numpy()] = seed_labels
    return labels


def spread(model: OTM, points: list[torch.Tensor], known: torch.Tensor, k: int):
    """Per view, the clusters of spreading; and the known rows' own clusters (from which
    every view spreads) with their row positions."""
    pairs = known.nonzero().reshape(-1)
    mean = torch.stack([head_structure(p[pairs], k) for p in points]).mean(0)
    seed_labels = model.assign_clusters(None, dissimilarity=mean)
    labels = [spread_labels(1 - head_structure(p, k), pairs, seed_labels, k) for p in points]
    return labels, seed_labels, pairs


def transported(model: OTM, points: list[torch.Tensor], known: torch.Tensor, k: int):
    """Per view, the clusters of the transported graphs; and the coupling of view 0's loose
    rows to view 1's (rows in position order) with those rows' positions."""
    loose = (~known).nonzero().reshape(-1)
    order = torch.cat([known.nonzero().reshape(-1), loose])
    n, n_known = len(order), int(known.sum())
    profiles = [anchor_profiles(p[order], n_known) for p in points]
    graphs = [1 - head_structure(p[order], k) for p in points]
    couplings = {}
    out = []
    for m in range(len(points)):
        total = graphs[m].clone()
        for v in range(len(points)):
            if v == m:
                continue
            cost = torch.cdist(profiles[m][n_known:], profiles[v][n_known:]).pow(2)
            couplings[m, v] = emd(None, None, cost)
            carry = torch.zeros(n, n, dtype=torch.float64)
            carry[:n_known, :n_known] = torch.eye(n_known, dtype=torch.float64)
            carry[n_known:, n_known:] = couplings[m, v] * (n - n_known)
            total += carry @ graphs[v] @ carry.T
        labels = np.empty(n, dtype=np.int64)
        labels[order.numpy()] = model.assign_clusters(None, dissimilarity=1 - total / len(points))
        out.append(labels)
    return out, couplings[0, 1], loose


def main(folder: Path, share: float, seeds: int = 5) -> None:
    raw = load_dataset("digits")
    ds = Preprocessor("auto").fit(raw).transform(raw)
    k = int(raw.labels.max()) + 1
    for seed in range(seeds):
        data = unalign(ds, 1 - share, seed=seed)
        views, known = list(data.views), data.paired.cpu()
        model = OTM(OTMConfig(n_clusters=k), random_state=seed)
        checkpoint = next((folder / "checkpoints").glob(f"otm-known-pairs-{share:g}-{seed}-*.pt"))
        model.fit(views, aligned=False, known_pairs=known, checkpoint=checkpoint)  # loads it
        codes = [z.double() for z in model.transform(views)]
        rows = [data.row_labels(v).numpy() for v in range(len(views))]

        def accuracy(labels, rows=rows) -> float:
            return float(
                np.mean([clustering_scores(y, c)["accuracy"] for y, c in zip(rows, labels)])
            )

        block = accuracy(model.assign_paired_clusters(codes, known))
        spread_clusters, seed_labels, pairs = spread(model, codes, known, k)
        spreading = accuracy(spread_clusters)
        pairs_alone = clustering_scores(rows[0][pairs.numpy()], seed_labels)["accuracy"]
        raw_views = [v.double() for v in views]
        raw_block = accuracy(model.assign_paired_clusters(raw_views, known))
        carried_clusters, coupling, loose = transported(model, raw_views, known, k)
        carried = accuracy(carried_clusters)
        same = rows[0][loose.numpy()][:, None] == rows[1][loose.numpy()][None, :]
        same_class = float(coupling[torch.from_numpy(same)].sum() / coupling.sum())
        print(
            f"seed {seed} share {share:g}: codes block {block:.3f} spread {spreading:.3f} "
            f"(known rows alone {pairs_alone:.3f}); raw views block {raw_block:.3f} "
            f"transported {carried:.3f} (same-class mass {same_class:.3f}, chance "
            f"{same.mean():.3f})",
            flush=True,
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 5)
