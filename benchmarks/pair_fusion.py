"""OTM's partially aligned prediction, timed: the joined graph (sparse, and densified) against
label spreading.

All run OTM's head on raw views (no training; ``graph_fused`` does the same): scikit-learn's
digits split into two views (1,797 rows), half the rows known pairs.

* ``spread``: the known rows clustered on their mean graph, then label spreading to the others
  (``pair_fusion="spread"``);
* ``joined``: every row clustered at once on one graph joined through the known pairs (about
  2,700 nodes here; ``pair_fusion="joined"``, the default), whose dissimilarity ``1 - W`` the
  head keeps sparse (:class:`modalign.ot.SparseGraph`);
* ``joined, dense``: the naive reference, the head on the same joined graph as a dense matrix
  (the fourth round's head, ``head_sparse.dense_head``), against the head on the sparse one
  (``joined, head only``); the script also prints how far the two partitions agree
  (adjusted Rand index).

Every variant uses ``--restarts`` head restarts (``OTMConfig.pair_restarts``, 64 by default)
and runs in turn, ``--repeats`` times; the script prints medians and the ratios.

    OMP_NUM_THREADS=1 python benchmarks/pair_fusion.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from sklearn.metrics import adjusted_rand_score

from head_sparse import dense_head  # the benchmark beside this one
from modalign.data import load_digits_views, unalign
from modalign.methods import OTM, OTMConfig
from modalign.ot.clustering import graph_cluster, head_structure, joined_structure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=OTMConfig(n_clusters=10).pair_restarts)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = unalign(load_digits_views(), 0.5, seed=0)
    views = [v.double() for v in data.views]
    known = data.paired
    order = torch.cat([known.nonzero()[:, 0], (~known).nonzero()[:, 0]])
    affinities = [1 - head_structure(v[order], 10) for v in views]
    graph, _ = joined_structure(affinities, int(known.sum()))
    dense = graph.dense()
    heads = {
        "joined, head only": lambda: graph_cluster(
            None, 10, dissimilarity=graph, restarts=args.restarts
        ),
        "joined, dense": lambda: dense_head(dense, 10, args.restarts),
    }
    times: dict[str, list[float]] = {name: [] for name in ("spread", "joined", *heads)}
    for _ in range(args.repeats):
        for fusion in ("spread", "joined"):
            cfg = OTMConfig(n_clusters=10, pair_restarts=args.restarts, pair_fusion=fusion)
            start = time.perf_counter()
            OTM(cfg, random_state=0).assign_paired_clusters(views, known)
            times[fusion].append(time.perf_counter() - start)
        labels = []
        for name, head in heads.items():
            start = time.perf_counter()
            labels.append(head())
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"{graph.shape[0]} nodes in the joined graph, {args.restarts} restarts")
    for name, median in medians.items():
        print(f"{name:18s} median {median:7.2f} s over {args.repeats}")
    print(f"joined / spread: {medians['joined'] / medians['spread']:.1f}x")
    dense, sparse = medians["joined, dense"], medians["joined, head only"]
    print(f"head on the joined graph, dense / sparse: {dense / sparse:.1f}x")
    # The same problem both ways: the partitions should agree (their starts may differ a
    # little, Lanczos against a full eigendecomposition).
    agreement = adjusted_rand_score(labels[0].numpy(), labels[1].numpy())
    print(f"dense and sparse partitions, adjusted Rand index: {agreement:.3f} (last repeat)")


if __name__ == "__main__":
    main()
