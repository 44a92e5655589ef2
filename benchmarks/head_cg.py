"""The head's conditional gradient, timed: the plan's terms shared against recomputed.

Each restart of OTM's clustering head (:func:`modalign.ot.clustering.gw_cluster`) runs
Frank-Wolfe on ``min_T sum (C[i,k] - I_K[a,b])^2 T[i,a] T[k,b]`` with exact line search. The
objective at a plan, the gradient at that plan and the line search from it all need the
plan's terms ``C T I_K`` and ``(C*C) T 1`` (:func:`modalign.ot.gromov.plan_terms`). Since the
seventh round of issue 15 the solver (:func:`modalign.ot.gromov._conditional_gradient`)
computes them once per plan and shares them: two sparse structure products per iteration.
The naive reference, :func:`textbook_conditional_gradient` (the solver of the rounds
before), computes them wherever they are needed: three products per iteration. The
arithmetic is the same, so both must return the same plan to the bit.

The problems are those the tables solve on digits, the development set (1,797 rows, 10
clusters): each view's kNN graph and the mean of the two (graph fusion), from the head's own
starts (k-means in the spectral embedding). Each start is solved both ways, in turn,
``--repeats`` times; the script prints the median time per restart, the ratio, and on how
many restarts the two plans are equal to the bit.

    OMP_NUM_THREADS=1 python benchmarks/head_cg.py --restarts 6 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from modalign.data import Preprocessor, load_digits_views
from modalign.ot import SparseGraph, fgw_objective, linearized_cost
from modalign.ot.clustering import (
    _feasible_start,
    _hard_start,
    cluster_structure,
    head_structure,
    spectral_embedding,
    structure_mean,
)
from modalign.ot.gromov import _conditional_gradient, _line_search
from modalign.ot.lp import emd
from modalign.ot.structure import dense, sandwich

K = 10


def textbook_conditional_gradient(c1, c2, p, q, plan, max_iter=100, tol_rel=1e-7):
    """Frank-Wolfe for plain GW (``alpha = 0``) as the rounds before solved it: the
    objective, the gradient and the line search each compute the plan's terms themselves
    (``C1 T C2^T`` is carried along each step for the line search only)."""
    value = float(fgw_objective(plan, None, c1, c2, 0.0))
    history = [value]
    s_plan = sandwich(c1, plan, c2)
    for _ in range(max_iter):
        vertex = emd(p, q, dense(linearized_cost(plan, None, c1, c2, 0.0)))
        direction = vertex - plan
        step, s_dir = _line_search(None, c1, c2, plan, direction, 0.0, s_plan)
        plan = plan + step * direction
        s_plan = s_plan + step * s_dir
        new_value = float(fgw_objective(plan, None, c1, c2, 0.0))
        history.append(new_value)
        delta = abs(new_value - value)
        value = new_value
        if delta / max(abs(value), 1e-300) < tol_rel:
            break
    return plan, history


def starts(graph: SparseGraph, restarts: int) -> list[torch.Tensor]:
    """The head's feasible starts: k-means++ and Lloyd steps in the spectral embedding."""
    n = graph.shape[-1]
    p = torch.full((n,), 1.0 / n, dtype=torch.float64)
    q = torch.full((K,), 1.0 / K, dtype=torch.float64)
    embedding = spectral_embedding(graph, K)
    gen = torch.Generator().manual_seed(0)
    plans = []
    for _ in range(restarts):
        assign, _ = _hard_start(graph, embedding, K, gen)
        hard = torch.zeros(n, K, dtype=torch.float64).scatter_(1, assign[:, None], p[:, None])
        plans.append(_feasible_start(hard, p, q))
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw = load_digits_views()
    views = [v.double() for v in Preprocessor("auto").fit(raw).transform(raw).views]
    graphs = {f"view {v}": head_structure(x, K) for v, x in enumerate(views)}
    graphs["mean"] = (graphs["view 0"] + graphs["view 1"]) / 2
    for name, structure in graphs.items():
        graph = SparseGraph.from_dense(1 - structure)
        n = graph.shape[-1]
        p = torch.full((n,), 1.0 / n, dtype=torch.float64)
        q = torch.full((K,), 1.0 / K, dtype=torch.float64)
        off = structure_mean(graph) * K / (K - 1)
        target = cluster_structure(K, off, p)
        times: dict[str, list[float]] = {"textbook": [], "shared": []}
        same = 0
        for start in starts(graph, args.restarts):
            for _ in range(args.repeats):
                tick = time.perf_counter()
                naive, naive_history = textbook_conditional_gradient(graph, target, p, q, start)
                times["textbook"].append(time.perf_counter() - tick)
                tick = time.perf_counter()
                fast, history = _conditional_gradient(
                    None, graph, target, p, q, 0.0, start, 100, 1e-7, 0.0
                )
                times["shared"].append(time.perf_counter() - tick)
            same += bool(torch.equal(naive, fast)) and naive_history == history
        medians = {how: statistics.median(t) for how, t in times.items()}
        print(
            f"{name:7s}: per restart, textbook median {medians['textbook']:.3f} s, shared "
            f"{medians['shared']:.3f} s, textbook / shared "
            f"{medians['textbook'] / medians['shared']:.2f}x; the same plan to the bit on {same} "
            f"of {args.restarts} restarts"
        )


if __name__ == "__main__":
    main()
