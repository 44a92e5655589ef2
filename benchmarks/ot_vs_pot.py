"""FGW barycenter: modalign.ot.fgw_barycenter against POT's exact ot.gromov.fgw_barycenters.

Both solve the same problems in one run: M inputs of N points in d dimensions (uniform
features in [0, 1]^d, fixed seeds), structures = squared Euclidean distances divided by
their maximum, alpha = 0.5, barycenter support N. For each size it prints the median wall time
of each solver, their ratio, both final objectives (evaluated by one shared numpy formula,
independent of either library), the couplings' marginal error and the peak extra memory.

    python benchmarks/ot_vs_pot.py --sizes 500 1000 --dtype float64 --json out.json

Each (solver, size) runs in a fresh process so that the peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time

import numpy as np


def make_problem(n: int, d: int, m: int, seed: int):
    rng = np.random.default_rng(seed)
    feats = [rng.random((n, d)) for _ in range(m)]
    structs = []
    for x in feats:
        sq = (x * x).sum(1)
        c = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
        structs.append(c / c.max())
    return feats, structs


def shared_objective(z, c_bar, feats, structs, plans, alpha: float) -> float:
    """sum_m (1/M) [alpha <M(z, X_m), T_m> + (1-alpha) sum (C[i,k]-C_m[j,l])^2 T_ij T_kl]."""
    total = 0.0
    for x, c, t in zip(feats, structs, plans):
        cost = (z * z).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2 * z @ x.T
        p, q = t.sum(1), t.sum(0)
        quad = p @ (c_bar**2) @ p + q @ (c**2) @ q - 2 * np.sum((c_bar @ t @ c.T) * t)
        total += (alpha * np.sum(cost * t) + (1 - alpha) * quad) / len(feats)
    return float(total)


def marginal_error(plans, n: int) -> float:
    return max(
        float(max(np.abs(t.sum(1) - 1 / n).max(), np.abs(t.sum(0) - 1 / t.shape[1]).max()) * n)
        for t in plans
    )


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _worker(solver: str, n: int, args: dict, out: mp.Queue) -> None:
    import torch

    torch.set_num_threads(args["threads"])
    import ot

    from modalign.ot import fgw_barycenter

    dtype = {"float32": torch.float32, "float64": torch.float64}[args["dtype"]]
    np_dtype = np.float32 if args["dtype"] == "float32" else np.float64
    device = torch.device(args["device"])

    def run(feats, structs, seed):
        if solver == "pot":
            ys = [f.astype(np_dtype) for f in feats]
            cs = [c.astype(np_dtype) for c in structs]
            z, c_bar, log = ot.gromov.fgw_barycenters(
                N=n, Ys=ys, Cs=cs, alpha=args["alpha"], log=True, random_state=seed
            )
            return z, c_bar, log["T"]
        xs = [torch.tensor(f, dtype=dtype, device=device) for f in feats]
        bary = fgw_barycenter(xs, alpha=args["alpha"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return bary.features, bary.structure_dense, bary.couplings

    def to_np(x):
        return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, float)

    # Problems are built, and objectives evaluated, outside the timed region and apart from
    # it: numpy's BLAS threads keep spinning for a while after a product and would steal the
    # cores from whichever solver runs next.
    problems = [
        make_problem(n, args["d"], args["inputs"], seed=1000 * n + k)
        for k in range(args["problems"])
    ]
    warm_feats, warm_structs = make_problem(50, args["d"], args["inputs"], 12345)
    run(warm_feats, warm_structs, 0)  # thread pools, lazy imports, CUDA context
    time.sleep(0.5)
    base = _rss_mb()
    times, outputs = [], []
    for k, (feats, structs) in enumerate(problems):
        start = time.perf_counter()
        z, c_bar, plans = run(feats, structs, k)
        times.append(time.perf_counter() - start)
        outputs.append((to_np(z), to_np(c_bar), [to_np(t) for t in plans]))
    objectives = [
        shared_objective(z, c_bar, feats, structs, plans, args["alpha"])
        for (z, c_bar, plans), (feats, structs) in zip(outputs, problems)
    ]
    errors = [marginal_error(plans, n) for _, _, plans in outputs]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    if device.type == "cuda" and solver == "modalign":
        peak = torch.cuda.max_memory_allocated() / 2**20
    out.put({"times": times, "objectives": objectives, "errors": errors, "peak_mb": peak})


def measure(solver: str, n: int, args: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(solver, n, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 500, 1000, 2000])
    ap.add_argument("--problems", type=int, default=5, help="problems per size (median)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--device", default="cpu", help="device for modalign (POT runs on CPU)")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--inputs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--pot-max", type=int, default=10**9, help="skip POT above this size")
    ap.add_argument("--json", help="write the records as JSON to this path")
    ns = ap.parse_args(argv)
    args = vars(ns)
    header = (
        f"{'n':>6} {'POT s':>9} {'modalign s':>11} {'speedup':>8} {'POT obj':>9} "
        f"{'ours obj':>9} {'obj ratio':>9} {'marg err':>9} {'POT MB':>8} {'ours MB':>8}"
    )
    print(
        f"M={ns.inputs} d={ns.d} alpha={ns.alpha} dtype={ns.dtype} device={ns.device} "
        f"problems/size={ns.problems} (medians)"
    )
    print(header)
    records = []
    for n in ns.sizes:
        ours = measure("modalign", n, args)
        pot = measure("pot", n, args) if n <= ns.pot_max else None
        rec = {
            "n": n,
            "dtype": ns.dtype,
            "device": ns.device,
            "modalign_s": statistics.median(ours["times"]),
            "modalign_objective": statistics.median(ours["objectives"]),
            "modalign_marginal_error": max(ours["errors"]),
            "modalign_peak_mb": ours["peak_mb"],
            "pot_s": statistics.median(pot["times"]) if pot else None,
            "pot_objective": statistics.median(pot["objectives"]) if pot else None,
            "pot_peak_mb": pot["peak_mb"] if pot else None,
        }
        rec["speedup"] = rec["pot_s"] / rec["modalign_s"] if pot else None
        rec["objective_ratio"] = rec["modalign_objective"] / rec["pot_objective"] if pot else None
        records.append(rec)

        def fmt(v, f):
            return format(v, f) if v is not None else "-"

        print(
            f"{n:>6} {fmt(rec['pot_s'], '9.3f')} {rec['modalign_s']:>11.4f} "
            f"{fmt(rec['speedup'], '8.1f')} {fmt(rec['pot_objective'], '9.4f')} "
            f"{rec['modalign_objective']:>9.4f} {fmt(rec['objective_ratio'], '9.3f')} "
            f"{rec['modalign_marginal_error']:>9.1e} {fmt(rec['pot_peak_mb'], '8.0f')} "
            f"{rec['modalign_peak_mb']:>8.0f}",
            flush=True,
        )
    if ns.json:
        with open(ns.json, "w") as fh:
            json.dump(records, fh, indent=2)
    return records


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
