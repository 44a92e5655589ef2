"""OTM's clustering head on one view's kNN graph, timed: sparse products against dense ones.

The head (:func:`modalign.ot.clustering.graph_cluster`) matches a graph's dissimilarity
``1 - W`` to K clusters by GW. Since the sixth round of issue 15 it keeps every graph's ``W``
sparse (:class:`modalign.ot.SparseGraph`), as the fifth round did for the joined graph only.
The naive reference is the head on the same dissimilarity as a dense matrix
(:func:`dense_head`, the head of the rounds before). The graphs are those the tables cluster
on digits, the development set (1,797 rows, 10 clusters, the default 6 restarts):

* ``view 0``, ``view 1``: each view's own graph (the unaligned setting, and the head-alone
  baselines);
* ``mean``: the mean of the two views' graphs (graph fusion, the aligned setting).

Each graph is clustered both ways, in turn, ``--repeats`` times; the script prints the medians,
their ratio, and how far the two partitions agree (adjusted Rand index): the problem is the
same, but the sparse head's spectral starts come from Lanczos instead of a full
eigendecomposition, which may start a restart elsewhere.

    OMP_NUM_THREADS=1 python benchmarks/head_sparse.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from sklearn.metrics import adjusted_rand_score

from modalign.data import Preprocessor, load_digits_views
from modalign.methods import OTMConfig
from modalign.ot.clustering import graph_cluster, gw_cluster, head_structure, spectral_embedding


def dense_head(structure: torch.Tensor, n_clusters: int, restarts: int) -> torch.Tensor:
    """The head with dense products: GW matching of a dense (N, N) ``1 - W`` from the starts
    of its dense spectral embedding; labels (N,)."""
    embedding = spectral_embedding(1 - structure, n_clusters)
    labels, _, _ = gw_cluster(
        structure=structure,
        n_clusters=n_clusters,
        embedding=embedding,
        restarts=restarts,
        sizes="balanced",
    )
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=OTMConfig(n_clusters=10).cluster_restarts)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw = load_digits_views()
    views = [v.double() for v in Preprocessor("auto").fit(raw).transform(raw).views]
    graphs = {f"view {v}": head_structure(x, 10) for v, x in enumerate(views)}
    graphs["mean"] = (graphs["view 0"] + graphs["view 1"]) / 2
    for name, structure in graphs.items():
        times: dict[str, list[float]] = {"dense": [], "sparse": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            dense = dense_head(structure, 10, args.restarts)
            times["dense"].append(time.perf_counter() - start)
            start = time.perf_counter()
            sparse = graph_cluster(None, 10, dissimilarity=structure, restarts=args.restarts)
            times["sparse"].append(time.perf_counter() - start)
        medians = {how: statistics.median(t) for how, t in times.items()}
        density = float((structure < 1).double().mean())
        agreement = adjusted_rand_score(dense.numpy(), sparse.numpy())
        print(
            f"{name:7s} ({density:.1%} non-zeros): dense median {medians['dense']:6.2f} s, "
            f"sparse {medians['sparse']:6.2f} s, dense / sparse "
            f"{medians['dense'] / medians['sparse']:.1f}x, partitions' ARI {agreement:.3f}"
        )


if __name__ == "__main__":
    main()
