"""Issue 15, experiment E2: cross-view correspondence learned, not assumed (digits only).

digits (left and right halves, preprocessed ``auto`` as ``modalign cluster`` does) is the
development set; no other dataset is touched. Per seed the views are unaligned at rate 1
(:func:`modalign.data.unalign`, seed = the seed), and a cross-view coupling of view 0's rows
with view 1's is estimated without labels and without the true pairing:

1. ``cluster-match``: OTM's head clusters each view's rows alone (content order, as
   ``graph-each-view``); the K clusters of view 0 are matched to those of view 1 by exact GW
   between K x K cluster-level structures (a permutation maximising ``tr(A P B P^T)``:
   scipy's FAQ from many random starts, then 2-opt), with ``A, B`` either the clusters'
   centroid distances (``centroids``) or the share of kNN-graph edges joining two clusters
   (``graph``); rows are then coupled uniformly within matched clusters.
2. ``anchors``: self-anchoring. In each matched pair of clusters the ``--anchors`` most
   confident rows per view (the largest share of their kNN in their own cluster, then the
   closest to its centroid) are paired by rank; every row's
   :func:`modalign.methods.otm.anchor_profiles` (squared distances to its view's anchors), averaged
   per anchor group (K columns, comparable across views), and an exact OT plan between the two
   views' profiles with uniform marginals (``anchors-r1``); then one refinement round that
   takes the plan's lowest-cost tenth as new anchor pairs (``anchors-r2``, profiles on the
   individual pairs).
3. (``--otm``) OTM trained with the most confident ``--share`` of the ``anchors-r2`` pairs as
   ``known_pairs`` (view 1's rows reordered so that each pseudo-pair shares a position), against
   OTM without pairs; per-view accuracy, each view's rows clustered from their own codes.

Reported (labels and true identities read only here): the coupling's same-class mass against
chance (the sum of squared class shares under uniform marginals, :func:`coupling_quality`),
its true-pair mass, and ``oracle match``: the same block coupling with the clusters matched by
their labels (the best any cluster matching can do given the per-view clusterings).

    OMP_NUM_THREADS=1 MODALIGN_DATA=... python scripts/otm15_correspondence.py [--otm]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import ot
import torch
from scipy.optimize import linear_sum_assignment, quadratic_assignment

from modalign.data import Preprocessor, load_dataset, unalign
from modalign.eval import clustering_scores
from modalign.eval.baselines import head_clusters
from modalign.eval.diagnostics import coupling_quality
from modalign.methods import OTM, OTMConfig
from modalign.methods.otm import anchor_profiles

K = 10


def knn(x: np.ndarray, k: int) -> np.ndarray:
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1)[:, :k]


def cluster_structures(x: np.ndarray, labels: np.ndarray, nn: np.ndarray) -> dict[str, np.ndarray]:
    """K x K structures of one view's clusters: centroid distances and kNN-edge shares."""
    cent = np.stack([x[labels == a].mean(0) for a in range(K)])
    dist = np.sqrt(((cent[:, None] - cent[None]) ** 2).sum(-1))
    edges = np.zeros((K, K))
    np.add.at(edges, (np.repeat(labels, nn.shape[1]), labels[nn.ravel()]), 1.0)
    edges = edges / edges.sum(1, keepdims=True)
    edges = 0.5 * (edges + edges.T)
    np.fill_diagonal(edges, 0.0)
    return {"centroids": dist / dist.max(), "graph": edges / edges.max()}


def gw_match(
    a: np.ndarray, b: np.ndarray, seed: int, starts: int = 100
) -> tuple[np.ndarray, float]:
    """Permutation ``perm`` (cluster a of view 0 -> perm[a] of view 1) minimising
    ``sum (A_ij - B_perm(i)perm(j))^2``, i.e. maximising ``tr(A P B P^T)``; best of FAQ starts
    refined by 2-opt, ranked by the GW objective (no label)."""
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(starts):
        res = quadratic_assignment(
            a, b, method="faq", options={"maximize": True, "P0": "randomized", "rng": rng}
        )
        res = quadratic_assignment(
            a,
            b,
            method="2opt",
            options={
                "maximize": True,
                "partial_guess": np.column_stack([np.arange(K), res.col_ind]),
            },
        )
        perm = res.col_ind
        value = float(((a - b[np.ix_(perm, perm)]) ** 2).sum())
        if best is None or value < best[1]:
            best = (perm, value)
    return best


def block_coupling(c0: np.ndarray, c1: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Uniform coupling within matched clusters: mass 1/K per pair of clusters (a, perm[a])."""
    t = np.zeros((len(c0), len(c1)))
    for a in range(K):
        r, c = c0 == a, c1 == perm[a]
        if r.any() and c.any():
            t[np.ix_(r, c)] = 1.0 / (K * r.sum() * c.sum())
    return t


def confident(x: np.ndarray, labels: np.ndarray, nn: np.ndarray, a: int, m: int) -> np.ndarray:
    """The m rows of cluster a with the largest share of kNN in a, then closest to its centroid."""
    rows = np.flatnonzero(labels == a)
    agree = (labels[nn[rows]] == a).mean(1)
    dist = np.sqrt(((x[rows] - x[rows].mean(0)) ** 2).sum(1))
    order = np.lexsort((dist, -agree))
    return rows[order[:m]]


def profiles(x: np.ndarray, anchors: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """anchor_profiles of every row (anchors first), averaged per group when groups given."""
    z = torch.from_numpy(np.concatenate([x[anchors], x]))
    prof = anchor_profiles(z, len(anchors))[len(anchors) :].numpy()
    if groups is None:
        return prof
    return np.stack([prof[:, groups == g].mean(1) for g in np.unique(groups)], 1)


def profile_plan(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact OT plan between the two views' profiles (uniform marginals) and its cost matrix."""
    cost = ot.dist(p0, p1)
    n0, n1 = len(p0), len(p1)
    plan = ot.emd(np.full(n0, 1 / n0), np.full(n1, 1 / n1), cost / cost.max(), numItermax=10**7)
    return plan, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--neighbors", type=int, default=10)
    parser.add_argument("--anchors", type=int, default=10, help="anchor pairs per cluster pair")
    parser.add_argument("--otm", action="store_true", help="also train OTM with the pseudo-pairs")
    parser.add_argument("--share", type=float, default=0.3, help="share of rows given as pairs")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw = load_dataset("digits")
    ds = Preprocessor("auto").fit(raw).transform(raw)
    quality: dict[str, list[dict]] = defaultdict(list)
    acc: dict[str, dict[int, float]] = defaultdict(dict)
    for seed in args.seeds:
        t0 = time.perf_counter()
        data = unalign(ds, 1.0, seed=seed)
        xs = [v.double().numpy() for v in data.views]
        y = [data.row_labels(v).numpy() for v in range(2)]
        ids = [data.ids[v].numpy() for v in range(2)]

        def report(name: str, plan: np.ndarray, seed=seed, y=y, ids=ids) -> None:
            q = coupling_quality(plan, y[0], y[1], ids[0], ids[1])
            quality[name].append(q)
            print(
                f"seed {seed} {name}: same-class {q['same_class']:.3f} (chance {q['chance']:.3f}) "
                f"true pairs {q['true_pairs']:.4f}",
                flush=True,
            )

        c = [head_clusters(x, K, seed, content_order=True) for x in xs]
        acc["graph-each-view (raw)"][seed] = float(
            np.mean([clustering_scores(yv, cv)["accuracy"] for yv, cv in zip(y, c)])
        )
        nns = [knn(x, args.neighbors) for x in xs]
        structs = [cluster_structures(x, cv, nn) for x, cv, nn in zip(xs, c, nns)]
        # Oracle matching (labels, report only): each cluster to its majority class, then
        # the classes' clusters across views.
        cont = [
            np.array([[np.sum((cv == a) & (yv == k)) for k in range(K)] for a in range(K)])
            for cv, yv in zip(c, y)
        ]
        overlap = cont[0] @ cont[1].T  # same-class pairs between cluster a and cluster b
        _, oracle = linear_sum_assignment(-overlap)
        report("oracle match (labels)", block_coupling(c[0], c[1], oracle))
        perms = {}
        for kind in ("centroids", "graph", "both"):
            if kind == "both":
                a = structs[0]["centroids"] + structs[0]["graph"]
                b = structs[1]["centroids"] + structs[1]["graph"]
            else:
                a, b = structs[0][kind], structs[1][kind]
            perm, value = gw_match(a, b, seed)
            perms[kind] = perm
            print(
                f"seed {seed} match[{kind}] GW {value:.4f} (at the oracle matching "
                f"{((a - b[np.ix_(oracle, oracle)]) ** 2).sum():.4f}); clusters matched as "
                f"the oracle: {int((perm == oracle).sum())}/{K}",
                flush=True,
            )
            report(f"cluster-match[{kind}]", block_coupling(c[0], c[1], perm))
        # Self-anchoring from the label-free match with the lower GW objective is not
        # comparable across structures; use the combined structure ('both').
        perm = perms["both"]
        anchors0 = np.concatenate(
            [confident(xs[0], c[0], nns[0], a, args.anchors) for a in range(K)]
        )
        anchors1 = np.concatenate(
            [confident(xs[1], c[1], nns[1], perm[a], args.anchors) for a in range(K)]
        )
        groups = np.repeat(np.arange(K), args.anchors)
        plan, cost = profile_plan(
            profiles(xs[0], anchors0, groups), profiles(xs[1], anchors1, groups)
        )
        report("anchors-r1", plan)
        # Refinement: the plan's lowest-cost tenth of pairs become the anchors.
        i, j = np.nonzero(plan > 0)
        keep = np.argsort(cost[i, j])[: len(xs[0]) // 10]
        plan2, cost2 = profile_plan(profiles(xs[0], i[keep], None), profiles(xs[1], j[keep], None))
        report("anchors-r2", plan2)
        print(f"seed {seed} correspondence {time.perf_counter() - t0:.0f}s", flush=True)
        if not args.otm:
            continue
        # Pseudo-pairs: the most confident share of the r2 plan's pairs (lowest cost).
        i, j = np.nonzero(plan2 > 0)
        order = np.argsort(cost2[i, j])
        n = len(xs[0])
        take = order[: int(round(args.share * n))]
        pi, pj = i[take], j[take]
        same = float(np.mean(y[0][pi] == y[1][pj]))
        print(f"seed {seed} pseudo-pairs: {len(pi)}, same-class share {same:.3f}", flush=True)
        rng = np.random.default_rng(seed)
        pos = np.full(n, -1)
        pos[pi] = pj
        free_pos = np.flatnonzero(pos < 0)
        free_rows = rng.permutation(np.setdiff1d(np.arange(n), pj))
        pos[free_pos] = free_rows
        known = np.zeros(n, dtype=bool)
        known[pi] = True
        v1 = data.views[1][torch.from_numpy(pos)]
        views_p = [data.views[0], v1]
        y1p = y[1][pos]
        cfg = OTMConfig(n_clusters=K, epochs=args.epochs)
        for name, kwargs, vs, ys in (
            ("otm (no pairs)", {}, list(data.views), y),
            (
                f"otm + pseudo-pairs {args.share:g}",
                {"known_pairs": torch.from_numpy(known)},
                views_p,
                [y[0], y1p],
            ),
        ):
            t = time.perf_counter()
            model = OTM(cfg, random_state=seed).fit(vs, aligned=False, **kwargs)
            pred = model.predict(vs, aligned=False)
            acc[name][seed] = float(
                np.mean([clustering_scores(yv, p)["accuracy"] for yv, p in zip(ys, pred)])
            )
            print(
                f"seed {seed} {name}: per-view accuracy {acc[name][seed]:.3f} "
                f"({time.perf_counter() - t:.0f}s)",
                flush=True,
            )
    print("\n| coupling | same-class mass | chance | true-pair mass |")
    print("| --- | :---: | :---: | :---: |")
    for name, qs in quality.items():
        cells = []
        for key in ("same_class", "chance", "true_pairs"):
            vals = np.array([q[key] for q in qs])
            sd = vals.std(ddof=1) if len(vals) > 1 else 0.0
            digits = 4 if key == "true_pairs" else 3
            cells.append(f"{vals.mean():.{digits}f} ± {sd:.{digits}f}")
        print(f"| {name} | {' | '.join(cells)} |")
    print("\n| method | per-view accuracy |")
    print("| --- | :---: |")
    for name, vals in acc.items():
        v = np.array(list(vals.values()))
        print(f"| {name} | {v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f} |")
    ref = "graph-each-view (raw)"
    for name in acc:
        if name == ref:
            continue
        for base in (ref, "otm (no pairs)"):
            if base == name or base not in acc:
                continue
            d = np.array([acc[name][s] - acc[base][s] for s in acc[name]])
            sd = d.std(ddof=1) if len(d) > 1 else 0.0
            per = ", ".join(f"{x:+.3f}" for x in d)
            print(f"  {name} - {base}: {d.mean():+.3f} ± {sd:.3f} ({per})")


if __name__ == "__main__":
    main()
