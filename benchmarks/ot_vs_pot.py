"""FGW barycenter: modalign.ot.fgw_barycenter against POT's exact ot.gromov.fgw_barycenters.

All solvers work on the same problems in one run: M inputs of N points in d dimensions (uniform
features in [0, 1]^d, fixed seeds), structures = squared Euclidean distances divided by their
maximum, alpha = 0.5, barycenter support N. POT runs in two configurations:

* "POT same start": ``init_X`` and ``init_C`` are input 0's features and structure, the
  start modalign uses (a copy of its first largest input);
* "POT default": POT's own start (zero features, a random distance matrix as structure).

The speed-up that counts is against the faster of the two. For each size the script prints
the median wall time of every solver, the speed-ups, the final objectives (evaluated by one
shared numpy formula, independent of either library) and their ratios, modalign's marginal
error and each solver's peak extra memory.

    python benchmarks/ot_vs_pot.py --sizes 500 1000 --json docs/bench_{dtype}.json

Each (solver, size, dtype) has its own process (so that its peak memory is its own), and the
three processes take turns problem by problem (rotating who goes first), so that a change of
load on a shared machine hits every solver alike. Between two runs the script pauses: BLAS
threads keep spinning for a while after a product and would steal the cores from the next run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

import numpy as np

SOLVERS = ("modalign", "pot-same", "pot-default")
GOAL_SPEEDUP = 20.0  # against the faster POT configuration
GOAL_OBJECTIVE = 1.02  # at most this times POT's objective (both configurations)


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


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset the process's peak resident set (Linux >= 4.0), so each run's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _worker(solver: str, n: int, args: dict, conn) -> None:
    import torch

    torch.set_num_threads(args["threads"])
    import ot

    from modalign.ot import fgw_barycenter

    blas_threads = args["blas_threads"] or args["threads"]
    try:  # POT's dense products run on numpy's BLAS: by default as many threads as torch's
        from threadpoolctl import threadpool_limits

        threadpool_limits(blas_threads, user_api="blas")
        blas = f"{blas_threads}"
    except ImportError:
        blas = "default"
    dtype = {"float32": torch.float32, "float64": torch.float64}[args["dtype"]]
    np_dtype = np.float32 if args["dtype"] == "float32" else np.float64
    device = torch.device(args["device"])
    alpha = args["alpha"]  # modalign's alpha weights the features, POT's the structure

    def run(feats, structs, seed):
        if solver != "modalign":
            ys = [f.astype(np_dtype) for f in feats]
            cs = [c.astype(np_dtype) for c in structs]
            start = {}
            if solver == "pot-same":
                start = {"init_X": ys[0].copy(), "init_C": cs[0].copy()}
            z, c_bar, log = ot.gromov.fgw_barycenters(
                N=len(ys[0]), Ys=ys, Cs=cs, alpha=1 - alpha, log=True, random_state=seed, **start
            )
            return z, c_bar, log["T"]
        xs = [torch.tensor(f, dtype=dtype, device=device) for f in feats]
        bary = fgw_barycenter(xs, alpha=alpha)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return bary.features, bary.structure_dense, bary.couplings

    def to_np(x):
        return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, float)

    problems = [
        make_problem(n, args["d"], args["inputs"], seed=1000 * n + k)
        for k in range(args["problems"])
    ]
    warm_feats, warm_structs = make_problem(50, args["d"], args["inputs"], 12345)
    run(warm_feats, warm_structs, 0)  # thread pools, lazy imports, CUDA context
    conn.send({"ready": True, "blas_threads": blas})
    records = []
    while (k := conn.recv()) is not None:
        feats, structs = problems[k]
        reset = _reset_peak()
        base = _status_mb("VmRSS")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        z, c_bar, plans = run(feats, structs, k)
        elapsed = time.perf_counter() - start
        peak = (_status_mb("VmHWM") - base) if reset else float("nan")
        if device.type == "cuda" and solver == "modalign":
            peak = torch.cuda.max_memory_allocated() / 2**20
        z, c_bar, plans = to_np(z), to_np(c_bar), [to_np(t) for t in plans]
        records.append(
            {
                "time": elapsed,
                "objective": shared_objective(z, c_bar, feats, structs, plans, alpha),
                "error": marginal_error(plans, n),
                "peak_mb": peak,
            }
        )
        del z, c_bar, plans
        conn.send(records[-1])
    conn.send(records)


def measure(n: int, solvers: list[str], args: dict) -> dict[str, list[dict]]:
    """Run every problem of size n with every solver, taking turns (see module docstring)."""
    ctx = mp.get_context("spawn")
    procs, conns, info = {}, {}, {}
    for solver in solvers:
        parent, child = ctx.Pipe()
        # Daemonic: should one fail, the others do not keep the run alive.
        procs[solver] = ctx.Process(target=_worker, args=(solver, n, args, child), daemon=True)
        procs[solver].start()
        conns[solver] = parent
    for solver in solvers:  # wait until every process has warmed up
        info[solver] = conns[solver].recv()
    for k in range(args["problems"]):
        turn = solvers[k % len(solvers) :] + solvers[: k % len(solvers)]
        for solver in turn:
            time.sleep(args["pause"])
            conns[solver].send(k)
            conns[solver].recv()
    out = {}
    for solver in solvers:
        conns[solver].send(None)
        out[solver] = conns[solver].recv()
        procs[solver].join()
    out["blas_threads"] = info[solvers[-1]]["blas_threads"]
    return out


def _median(runs: list[dict] | None, key: str) -> float | None:
    return statistics.median(r[key] for r in runs) if runs else None


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 500, 1000, 2000])
    ap.add_argument("--problems", type=int, default=5, help="problems per size (median)")
    ap.add_argument(
        "--dtype", nargs="+", choices=["float32", "float64"], default=["float32", "float64"]
    )
    ap.add_argument("--device", default="cpu", help="device for modalign (POT runs on CPU)")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of the features")
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--inputs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (and BLAS threads)")
    ap.add_argument(
        "--blas-threads", type=int, default=None, help="numpy BLAS threads (default: --threads)"
    )
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between two runs")
    ap.add_argument("--pot-max", type=int, default=10**9, help="skip POT above this size")
    ap.add_argument(
        "--json", help="write the records as JSON to this path ('{dtype}' is filled in)"
    )
    ns = ap.parse_args(argv)
    records = []
    for dtype in ns.dtype:
        args = dict(vars(ns), dtype=dtype)
        print(
            f"\nM={ns.inputs} d={ns.d} alpha={ns.alpha} dtype={dtype} device={ns.device} "
            f"problems/size={ns.problems} (medians); torch threads={ns.threads}, load "
            f"average {os.getloadavg()[0]:.1f}"
        )
        header = (
            f"{'n':>5} {'ours s':>7} {'same s':>7} {'dflt s':>7} {'x same':>7} {'x dflt':>7} "
            f"{'x fast':>7} {'ours obj':>8} {'same obj':>8} {'dflt obj':>8} {'r same':>6} "
            f"{'r dflt':>6} {'marg err':>8} {'MB ours':>7} {'same':>5} {'dflt':>5} {'goal':>4}"
        )
        print(header, flush=True)
        part = []
        for n in ns.sizes:
            solvers = list(SOLVERS) if n <= ns.pot_max else ["modalign"]
            runs = measure(n, solvers, args)
            ours = runs["modalign"]
            rec = {
                "n": n,
                "dtype": dtype,
                "device": ns.device,
                "threads": ns.threads,
                "blas_threads": runs["blas_threads"],
                "load_average": os.getloadavg()[0],  # 1-minute, right after the runs
                "modalign_s": _median(ours, "time"),
                "modalign_objective": _median(ours, "objective"),
                "modalign_marginal_error": max(r["error"] for r in ours),
                "modalign_peak_mb": _median(ours, "peak_mb"),
                "modalign_times": [r["time"] for r in ours],
            }
            for solver in SOLVERS[1:]:
                key = solver.replace("-", "_")
                pot = runs.get(solver)
                rec[f"{key}_s"] = _median(pot, "time")
                rec[f"{key}_objective"] = _median(pot, "objective")
                rec[f"{key}_peak_mb"] = _median(pot, "peak_mb")
                rec[f"{key}_times"] = [r["time"] for r in pot] if pot else None
                rec[f"speedup_{key}"] = rec[f"{key}_s"] / rec["modalign_s"] if pot else None
                rec[f"objective_ratio_{key}"] = (
                    rec["modalign_objective"] / rec[f"{key}_objective"] if pot else None
                )
            if "pot-same" in runs:
                fast = min(SOLVERS[1:], key=lambda s: rec[f"{s.replace('-', '_')}_s"])
                rec["faster_pot"] = fast
                rec["speedup_faster"] = rec[f"speedup_{fast.replace('-', '_')}"]
                worst = max(rec["objective_ratio_pot_same"], rec["objective_ratio_pot_default"])
                rec["goal_met"] = rec["speedup_faster"] >= GOAL_SPEEDUP and worst <= GOAL_OBJECTIVE
            part.append(rec)

            def fmt(v, f):
                return format(v, f) if v is not None else "-"

            goal = rec.get("goal_met")
            print(
                f"{n:>5} {rec['modalign_s']:>7.4f} {fmt(rec['pot_same_s'], '7.3f')} "
                f"{fmt(rec['pot_default_s'], '7.3f')} {fmt(rec['speedup_pot_same'], '7.1f')} "
                f"{fmt(rec['speedup_pot_default'], '7.1f')} "
                f"{fmt(rec.get('speedup_faster'), '7.1f')} {rec['modalign_objective']:>8.4f} "
                f"{fmt(rec['pot_same_objective'], '8.4f')} "
                f"{fmt(rec['pot_default_objective'], '8.4f')} "
                f"{fmt(rec['objective_ratio_pot_same'], '6.3f')} "
                f"{fmt(rec['objective_ratio_pot_default'], '6.3f')} "
                f"{rec['modalign_marginal_error']:>8.1e} {rec['modalign_peak_mb']:>7.0f} "
                f"{fmt(rec['pot_same_peak_mb'], '5.0f')} {fmt(rec['pot_default_peak_mb'], '5.0f')} "
                f"{'-' if goal is None else ('yes' if goal else 'NO'):>4}",
                flush=True,
            )
        print(
            f"(same = POT from modalign's start, dflt = POT's own start; x = POT time / ours; "
            f"x fast = against the faster POT; r = our objective / POT's; numpy BLAS threads "
            f"{runs['blas_threads']}, POT's network simplex 1 thread)"
        )
        records += part
        if ns.json:  # one file per dtype, or one file with every record so far
            path = ns.json.replace("{dtype}", dtype)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as fh:
                json.dump(part if "{dtype}" in ns.json else records, fh, indent=2)
    return records


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
