"""OTM's partially aligned prediction: the joined graph against label spreading, timed.

Both are OTM's head on raw views (no training; ``graph_fused`` does the same): scikit-learn's
digits split into two views (1,797 rows), half the rows known pairs. ``spread`` clusters the
known rows on their mean graph and label-spreads to the others; ``joined`` clusters every row
at once on one graph joined through the known pairs (about 2,700 nodes here). Both use
``--restarts`` head restarts (``OTMConfig.pair_restarts``, 64 by default). The variants run in
turn, ``--repeats`` times; the script prints each one's median wall time and the ratio.

    OMP_NUM_THREADS=1 python benchmarks/pair_fusion.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from modalign.data import load_digits_views, unalign
from modalign.methods import OTM, OTMConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=OTMConfig(n_clusters=10).pair_restarts)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = unalign(load_digits_views(), 0.5, seed=0)
    views = [v.double() for v in data.views]
    times: dict[str, list[float]] = {"spread": [], "joined": []}
    for _ in range(args.repeats):
        for fusion in times:
            cfg = OTMConfig(n_clusters=10, pair_restarts=args.restarts, pair_fusion=fusion)
            start = time.perf_counter()
            OTM(cfg, random_state=0).assign_paired_clusters(views, data.paired)
            times[fusion].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name:7s} median {median:7.2f} s over {args.repeats}")
    print(f"joined / spread: {medians['joined'] / medians['spread']:.1f}x")


if __name__ == "__main__":
    main()
