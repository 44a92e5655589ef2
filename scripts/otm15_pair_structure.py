"""Issue 15 experiment: a structure term fused over known pairs, on digits (development set).

OTM's structure term makes each view's codes keep that view's input distances. Here, on every
batch, the distances among the rows known to be the same sample in every view (the known
pairs; aligned, every row) are replaced by their mean over the views, after each view's
distances are divided by their mean over the batch
(:func:`modalign.ot.clustering.pair_fused_structures`). A weak view's encoder then learns to
place the known pairs as all the views together do, and, where that mapping generalises, its
other rows too. It needs other views' distances, so it is centralised only.

It trains OTM with and without it (everything else the defaults) on digits at a share of known
pairs, as ``modalign cluster --setting partial`` does (``unalign(ds, 1 - share, seed)``), and
prints the per-view accuracy of OTM's prediction (graph fusion over the known pairs):

    OMP_NUM_THREADS=1 MODALIGN_DATA=../shared/data \\
        python scripts/otm15_pair_structure.py 0.5 [seeds] [out folder for checkpoints]

Share 1 is the aligned setting (every row a known pair).

Measured (1 December 2026, 100 epochs, seeds 0-4; "own" reproduces the digits curve's `otm`
records in docs/results.md exactly):

    share 0.5  own    0.748 0.750 0.774 0.739 0.729   fused 0.732 0.719 0.755 0.768 0.741
               fused - own -0.005 ± 0.025 (2 of 5 seeds positive)
    share 0.3  own    0.761 0.744 0.711 0.736 0.721   fused 0.742 0.738 0.751 0.699 0.705
               fused - own -0.008 ± 0.029 (1 of 5)

It does not help on digits, so it is not adopted: the known pairs' fused distances do not
teach a view's encoder a geometry that carries to its other rows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from modalign.data import Preprocessor, load_dataset, unalign
from modalign.eval import score_prediction
from modalign.methods import OTM, OTMConfig
from modalign.ot.clustering import pair_fused_structures


class PairStructureOTM(OTM):
    """OTM whose structure term keeps the known pairs' distances fused over the views."""

    def _structure_references(self, batch: Sequence[torch.Tensor], n_known: int):
        if n_known < 2:
            return [None] * len(batch)
        own = []
        for x in batch:
            d = torch.cdist(x, x)
            own.append(d / d.mean().clamp_min(torch.finfo(d.dtype).tiny))
        known = torch.zeros(len(batch[0]), dtype=torch.bool, device=batch[0].device)
        known[:n_known] = True
        return pair_fused_structures(own, known)


def run(share: float, seed: int, fused: bool, out: Path | None) -> float:
    raw = load_dataset("digits")
    ds = Preprocessor("auto").fit(raw).transform(raw)
    aligned = share >= 1.0
    data = ds if aligned else unalign(ds, 1.0 - share, seed=seed)
    views = list(data.views)
    known = None if aligned else data.paired
    cls = PairStructureOTM if fused else OTM
    model = cls(OTMConfig(n_clusters=int(raw.labels.max()) + 1), random_state=seed)
    ckpt = None
    if out is not None:
        ckpt = out / f"{'fused' if fused else 'own'}-{share:g}-{seed}.pt"
    model.fit(views, aligned=aligned, known_pairs=known, checkpoint=ckpt)
    pred = model.predict(views, aligned=aligned, known_pairs=known)
    prediction = {0: pred} if aligned else dict(enumerate(pred))
    return score_prediction(data, prediction)["accuracy"]


def main(share: float, seeds: int, out: Path | None) -> None:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows = {False: [], True: []}
    for seed in range(seeds):
        for fused in (False, True):
            start = time.perf_counter()
            rows[fused].append(run(share, seed, fused, out))
            print(
                f"share {share:g} seed {seed} {'fused' if fused else 'own  '} structure: "
                f"accuracy {rows[fused][-1]:.3f} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    diff = np.array(rows[True]) - np.array(rows[False])
    print(
        f"share {share:g}: own {np.mean(rows[False]):.3f}, fused {np.mean(rows[True]):.3f}, "
        f"fused - own {diff.mean():+.3f} ± {diff.std(ddof=1) if len(diff) > 1 else 0:.3f} "
        f"({int((diff > 0).sum())}/{len(diff)})"
    )


if __name__ == "__main__":
    main(
        float(sys.argv[1]),
        int(sys.argv[2]) if len(sys.argv) > 2 else 5,
        Path(sys.argv[3]) if len(sys.argv) > 3 else None,
    )
