"""Token-set OT: modalign's batched token_ot against POT solving one sample at a time.

The problem of the alignment loss (DESIGN.md 2.2): B samples, each with T image tokens and a
random number of audio frames (``--min-frames`` to S, padded to S), d-dimensional random
tokens, cost ``1 - cos`` (modalign.ot.token_cost, computed once and shared by every solver),
uniform weights over the real tokens. Two solvers, each against its per-sample reference:

* IPOT (beta = proximal step, ``--n-iter`` outer steps, 1 inner step): ``token_ot(...,
  solver="ipot")`` on the whole batch, against a loop over the samples of a plain numpy IPOT
  (Algorithm 1 of Xie et al. 2019, written below, float64);
* Sinkhorn (epsilon = beta, ``--n-iter`` iterations): ``token_ot(..., solver="sinkhorn")``
  against a loop of ``ot.sinkhorn(a, b, M, reg=beta, numItermax=n_iter, stopThr=0)`` (stopThr
  0: exactly n_iter iterations, as modalign runs).

Each repeat runs the four solvers in turn (rotating who goes first, a pause between two runs,
so that a change of load on a shared machine hits every solver alike); the script prints the
median wall time of each, the speed-up (reference loop / modalign) and the largest difference
of the per-sample costs <P, C> (which must be below 1e-5).

    python benchmarks/token_ot.py --repeats 5 --dtype float32 --json docs/bench_token_ot.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

GOAL_SPEEDUP = 20.0
COST_TOL = 1e-5


def ipot_numpy(C: np.ndarray, beta: float, n_iter: int) -> np.ndarray:
    """IPOT, one inner step, uniform marginals (the reference loop's body)."""
    n, m = C.shape
    mu, nu = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    G = np.exp(-C / beta)
    gamma = np.ones((n, m))
    sigma = np.full(m, 1.0 / m)
    for _ in range(n_iter):
        Q = G * gamma
        delta = mu / (Q @ sigma)
        sigma = nu / (Q.T @ delta)
        gamma = delta[:, None] * Q * sigma[None, :]
    return gamma


def make_problem(args, seed: int):
    import torch

    from modalign.ot import token_cost

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(args.batch, args.tokens, args.d, generator=g, dtype=torch.float64)
    y = torch.randn(args.batch, args.frames, args.d, generator=g, dtype=torch.float64)
    lengths = torch.randint(args.min_frames, args.frames + 1, (args.batch,), generator=g)
    y_mask = torch.arange(args.frames)[None, :] < lengths[:, None]
    cost = token_cost(x, y, None, y_mask)  # float64; padded columns hold 1
    per_sample = [cost[k, :, : int(lengths[k])].numpy().copy() for k in range(args.batch)]
    return cost, y_mask, per_sample


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=49, help="image tokens per sample (all real)")
    ap.add_argument("--frames", type=int, default=60, help="audio frames, padded length S")
    ap.add_argument("--min-frames", type=int, default=30, help="fewest real audio frames")
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--n-iter", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5, help="runs per solver (median)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cpu", help="device for modalign (POT runs on CPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch and numpy BLAS threads")
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between two runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the record as JSON to this path")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import ot

    from modalign.ot import token_ot

    try:  # POT's products run on numpy's BLAS
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    except ImportError:
        pass
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    cost64, y_mask, per_sample = make_problem(args, args.seed)
    cost = cost64.to(device=device, dtype=dtype)
    y_mask = y_mask.to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def ours(solver):
        def run():
            _, value = token_ot(
                cost, None, y_mask, solver=solver, beta=args.beta, n_iter=args.n_iter
            )
            sync()
            return value.cpu().double().numpy()

        return run

    def pot_ipot():
        return np.array([(ipot_numpy(c, args.beta, args.n_iter) * c).sum() for c in per_sample])

    def pot_sinkhorn():
        out = []
        for c in per_sample:
            n, m = c.shape
            plan = ot.sinkhorn(
                np.full(n, 1.0 / n),
                np.full(m, 1.0 / m),
                c,
                reg=args.beta,
                numItermax=args.n_iter,
                stopThr=0.0,
                warn=False,
            )
            out.append((plan * c).sum())
        return np.array(out)

    runs = {
        "ours-ipot": ours("ipot"),
        "numpy-ipot": pot_ipot,
        "ours-sinkhorn": ours("sinkhorn"),
        "pot-sinkhorn": pot_sinkhorn,
    }
    names = list(runs)
    values = {name: runs[name]() for name in names}  # warm-up: lazy imports, thread pools
    times = {name: [] for name in names}
    for rep in range(args.repeats):
        turn = names[rep % len(names) :] + names[: rep % len(names)]
        for name in turn:
            time.sleep(args.pause)
            start = time.perf_counter()
            values[name] = runs[name]()
            times[name].append(time.perf_counter() - start)

    med = {name: statistics.median(times[name]) for name in names}
    record = {
        "batch": args.batch,
        "tokens": args.tokens,
        "frames": args.frames,
        "min_frames": args.min_frames,
        "d": args.d,
        "beta": args.beta,
        "n_iter": args.n_iter,
        "dtype": args.dtype,
        "device": args.device,
        "threads": args.threads,
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "times": times,
        "median_s": med,
    }
    print(
        f"B={args.batch} T={args.tokens} S<={args.frames} (real {args.min_frames}..{args.frames}) "
        f"d={args.d} beta={args.beta} n_iter={args.n_iter} dtype={args.dtype} "
        f"device={args.device} threads={args.threads} repeats={args.repeats} (medians); "
        f"load average {record['load_average']:.1f}"
    )
    print(
        f"{'solver':>9} {'modalign ms':>11} {'POT loop ms':>11} {'speed-up':>8} "
        f"{'max |cost diff|':>15} {'goal':>4}"
    )
    ok = True
    for solver, ref in (("ipot", "numpy-ipot"), ("sinkhorn", "pot-sinkhorn")):
        ours_s, ref_s = med[f"ours-{solver}"], med[ref]
        diff = float(np.abs(values[f"ours-{solver}"] - values[ref]).max())
        speedup = ref_s / ours_s
        goal = speedup >= GOAL_SPEEDUP and diff <= COST_TOL
        ok &= diff <= COST_TOL
        record[f"speedup_{solver}"] = speedup
        record[f"max_cost_diff_{solver}"] = diff
        record[f"goal_met_{solver}"] = goal
        print(
            f"{solver:>9} {ours_s * 1e3:>11.2f} {ref_s * 1e3:>11.2f} {speedup:>7.1f}x "
            f"{diff:>15.2e} {'yes' if goal else 'NO':>4}"
        )
    print(
        f"(POT loop: IPOT = the numpy loop of this script, Sinkhorn = ot.sinkhorn; speed-up = "
        f"loop time / modalign time; goal: >= {GOAL_SPEEDUP:.0f}x with costs within {COST_TOL})"
    )
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    record["costs_agree"] = ok
    return record


if __name__ == "__main__":
    sys.exit(0 if main()["costs_agree"] else 1)
