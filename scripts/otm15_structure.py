"""Issue 15, experiment E1: codes that keep each view's cluster structure (digits only).

digits (scikit-learn's handwritten digits, left and right halves, preprocessed ``auto`` as
``modalign cluster`` does) is the development set; no other dataset is touched. Per seed:

* ``raw``: OTM's clustering head alone on the preprocessed views (``graph_each_view``, rows in
  content order, and ``graph_concat``), no training;
* ``mwae``: ``OTM(mixer="none")`` (the MWAE ablation of the tables), its codes through the head;
* ``struct-<lambda>``: the same per-view Wasserstein autoencoders (``modalign.nn.Autoencoder``,
  reconstruction + ``lambda_mmd`` IMQ-MMD to N(0, I), OTM's defaults) plus a graph-contrastive
  structure term of weight ``lambda``: for each batch row, a neighbour drawn from the row's
  input kNN graph (``--neighbors``, computed once per view on its own rows: no label, no
  cross-view correspondence) is its positive, the other rows' neighbours its negatives
  (InfoNCE on unit-normalised codes, temperature ``--tau``). The code's neighbourhood graph is
  pulled toward the input's.

Scores (labels read only here, after clustering): Hungarian accuracy of the head on each view's
own codes (the unaligned protocol: mean of the per-view accuracies; per-view encoders without a
mixer never see the other view, so the codes are the same whether the rows are aligned or not)
and on the concatenated codes (aligned). Also label-free: the share of each row's input kNN that
are among its code kNN (kNN preservation). Mean ± std over seeds and seed-paired differences.

    OMP_NUM_THREADS=1 MODALIGN_DATA=... python scripts/otm15_structure.py   # ~8 min, one core
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from modalign.data import Preprocessor, load_dataset
from modalign.eval import clustering_scores
from modalign.eval.baselines import graph_concat, head_clusters
from modalign.methods import OTM, OTMConfig
from modalign.nn import Autoencoder, imq_mmd, reconstruction_error

K = 10


def knn_indices(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) indices of each row's k nearest other rows (Euclidean)."""
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    return d.topk(k, largest=False).indices


def knn_preservation(x: torch.Tensor, z: torch.Tensor, k: int) -> float:
    """Mean share of each row's input kNN that are among its code kNN (label-free)."""
    a, b = knn_indices(x.double(), k), knn_indices(z.double(), k)
    hits = (a[:, :, None] == b[:, None, :]).any(-1).double()
    return float(hits.mean())


def train_structured(
    views: list[torch.Tensor],
    seed: int,
    *,
    lam: float,
    neighbors: int,
    tau: float,
    epochs: int,
    latent_dim: int = 64,
    batch_size: int = 64,
    lr: float = 1e-3,
    lambda_mmd: float = 0.001,
) -> list[torch.Tensor]:
    """Per-view WAEs with the graph-contrastive structure term; returns each view's codes."""
    torch.manual_seed(seed)
    aes = [Autoencoder(v.shape[1], latent_dim) for v in views]
    params = [p for ae in aes for p in ae.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    graphs = [knn_indices(v, neighbors) for v in views]
    gen = torch.Generator().manual_seed(seed * 7919 + 1)
    n = views[0].shape[0]
    for _epoch in range(epochs):
        perms = [torch.randperm(len(v), generator=gen) for v in views]
        for b in range(n // batch_size):
            loss = 0.0
            for v, ae, g, perm in zip(views, aes, graphs, perms):
                rows = perm[b * batch_size : (b + 1) * batch_size]
                x = v[rows]
                z = ae.encode(x)
                prior = torch.randn(z.shape, generator=gen)
                loss = loss + reconstruction_error(ae.decode(z), x) + lambda_mmd * imq_mmd(z, prior)
                if lam > 0:
                    pick = torch.randint(neighbors, (len(rows),), generator=gen)
                    zp = ae.encode(v[g[rows, pick]])
                    logits = F.normalize(z, dim=1) @ F.normalize(zp, dim=1).T / tau
                    target = torch.arange(len(rows))
                    nce = 0.5 * (
                        F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)
                    )
                    loss = loss + lam * nce
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return [ae.encode(v) for ae, v in zip(aes, views)]


def score_codes(codes: list[torch.Tensor], labels: np.ndarray, seed: int) -> dict[str, float]:
    """Head on each view's own codes (content order; mean of per-view accuracies) and on the
    concatenated codes (as OTM's fused codes: side by side, unscaled)."""
    per_view = [
        clustering_scores(labels, head_clusters(z.double().numpy(), K, seed, content_order=True))[
            "accuracy"
        ]
        for z in codes
    ]
    concat = torch.cat([z.double() for z in codes], 1).numpy()
    fused = clustering_scores(labels, head_clusters(concat, K, seed))["accuracy"]
    return {"each view": float(np.mean(per_view)), "concat": fused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[1.0])
    parser.add_argument("--neighbors", type=int, default=10)
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--no-mwae", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw = load_dataset("digits")
    ds = Preprocessor("auto").fit(raw).transform(raw)
    views = [v.float() for v in ds.views]
    labels = ds.row_labels(0).numpy()  # aligned rows: every view's rows are the same samples
    acc: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    pres: dict[str, list[float]] = defaultdict(list)
    for seed in args.seeds:
        t = time.perf_counter()
        np_views = [v.double().numpy() for v in views]
        each = [
            clustering_scores(labels, head_clusters(x, K, seed, content_order=True))["accuracy"]
            for x in np_views
        ]
        acc["raw (head alone)", "each view"][seed] = float(np.mean(each))
        acc["raw (head alone)", "concat"][seed] = clustering_scores(
            labels, graph_concat(np_views, K, seed)
        )["accuracy"]
        print(f"seed {seed} raw {time.perf_counter() - t:.0f}s", flush=True)
        runs = []
        if not args.no_mwae:
            runs.append(("mwae", None))
        runs += [(f"struct-{lam:g}", lam) for lam in args.lambdas]
        for name, lam in runs:
            t = time.perf_counter()
            if lam is None:
                model = OTM(OTMConfig(n_clusters=K, mixer="none", epochs=args.epochs), seed)
                codes = model.fit(views, aligned=True).transform(views)
            else:
                codes = train_structured(
                    views,
                    seed,
                    lam=lam,
                    neighbors=args.neighbors,
                    tau=args.tau,
                    epochs=args.epochs,
                )
            train_s = time.perf_counter() - t
            for key, value in score_codes(codes, labels, seed).items():
                acc[name, key][seed] = value
            pres[name].append(
                float(np.mean([knn_preservation(v, z, 10) for v, z in zip(views, codes)]))
            )
            print(
                f"seed {seed} {name}: train {train_s:.0f}s, total {time.perf_counter() - t:.0f}s, "
                f"each {acc[name, 'each view'][seed]:.3f} concat {acc[name, 'concat'][seed]:.3f} "
                f"kNN kept {pres[name][-1]:.3f}",
                flush=True,
            )
    print("\n| method | each view (unaligned) | concat (aligned) | input 10-NN kept in codes |")
    print("| --- | :---: | :---: | :---: |")
    methods = list(dict.fromkeys(m for m, _ in acc))
    for m in methods:
        cells = []
        for key in ("each view", "concat"):
            vals = np.array(list(acc[m, key].values()))
            cells.append(f"{vals.mean():.3f} ± {vals.std(ddof=1) if len(vals) > 1 else 0:.3f}")
        kept = f"{np.mean(pres[m]):.3f}" if m in pres else "-"
        print(f"| {m} | {cells[0]} | {cells[1]} | {kept} |")
    print("\nSeed-paired differences (mean ± std over seeds; per-seed values in brackets):")
    for ref in ("raw (head alone)", "mwae"):
        for m in methods:
            if m == ref or (ref, "each view") not in acc or m == "raw (head alone)":
                continue
            for key in ("each view", "concat"):
                d = np.array([acc[m, key][s] - acc[ref, key][s] for s in args.seeds])
                sd = d.std(ddof=1) if len(d) > 1 else 0.0
                per = ", ".join(f"{x:+.3f}" for x in d)
                print(f"  {m} - {ref} [{key}]: {d.mean():+.3f} ± {sd:.3f} ({per})")


if __name__ == "__main__":
    main()
