"""The head's conditional gradient, timed: terms carried along each step against recomputed.

Each restart of OTM's clustering head (:func:`modalign.ot.clustering.gw_cluster`) runs
Frank-Wolfe on ``min_T sum (C[i,k] - I_K[a,b])^2 T[i,a] T[k,b]`` with exact line search. The
objective, its gradient and the line search all need ``C T I_K`` and the marginal terms
``(C*C) T 1``; all three are linear in the plan ``T``. Since the seventh round of issue 15
the solver (:func:`modalign.ot.gromov._conditional_gradient`) carries them along each step
from the direction's, one sparse structure product per iteration. The naive reference,
:func:`textbook_conditional_gradient`, recomputes each from the plan wherever it is needed
(three structure products per iteration), as the rounds before did.

The problems are those the tables solve on digits, the development set (1,797 rows, 10
clusters): each view's kNN graph and the mean of the two (graph fusion), from the head's own
starts (k-means in the spectral embedding). Each start is solved both ways, in turn,
``--repeats`` times; the script prints the median time per restart, the ratio, how many
restarts end on the same partition and the largest difference of their final objectives.

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
from modalign.ot.gromov import _conditional_gradient, segment_minimum
from modalign.ot.lp import emd
from modalign.ot.structure import dense, sandwich, squared_matvec

K = 10


def textbook_conditional_gradient(c1, c2, p, q, plan, max_iter=100, tol_rel=1e-7):
    """Frank-Wolfe for plain GW (``alpha = 0``) with every term recomputed from the plan:
    the objective, the gradient and the line search each multiply by the structures."""
    value = float(fgw_objective(plan, None, c1, c2, 0.0))
    history = [value]
    for _ in range(max_iter):
        vertex = emd(p, q, dense(linearized_cost(plan, None, c1, c2, 0.0)))
        direction = vertex - plan
        s_plan, s_dir = sandwich(c1, plan, c2), sandwich(c1, direction, c2)
        dp, dq = direction.sum(-1), direction.sum(-2)
        f1, f2 = squared_matvec(c1, plan.sum(-1)), squared_matvec(c2, plan.sum(-2))
        lin = 2 * (f1 * dp).sum() + 2 * (f2 * dq).sum() - 4 * (s_plan * direction).sum()
        quad = (
            (squared_matvec(c1, dp) * dp).sum()
            + (squared_matvec(c2, dq) * dq).sum()
            - 2 * (s_dir * direction).sum()
        )
        step = segment_minimum(float(quad), float(lin))
        plan = plan + step * direction
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
        times: dict[str, list[float]] = {"textbook": [], "carried": []}
        same, gap = 0, 0.0
        for start in starts(graph, args.restarts):
            for _ in range(args.repeats):
                tick = time.perf_counter()
                naive, naive_history = textbook_conditional_gradient(graph, target, p, q, start)
                times["textbook"].append(time.perf_counter() - tick)
                tick = time.perf_counter()
                fast, history = _conditional_gradient(
                    None, graph, target, p, q, 0.0, start, 100, 1e-7, 0.0
                )
                times["carried"].append(time.perf_counter() - tick)
            same += bool(torch.equal(naive.argmax(1), fast.argmax(1)))
            gap = max(gap, abs(naive_history[-1] - history[-1]))
        medians = {how: statistics.median(t) for how, t in times.items()}
        print(
            f"{name:7s}: per restart, textbook median {medians['textbook']:.3f} s, carried "
            f"{medians['carried']:.3f} s, textbook / carried "
            f"{medians['textbook'] / medians['carried']:.2f}x; same partition on {same} of "
            f"{args.restarts} restarts, largest objective difference {gap:.1e}"
        )


if __name__ == "__main__":
    main()
