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

Then (``--step``, the default; ``--no-step`` skips it) one training step of the real
transformer (modalign.methods.transformer.TransformerClassifier), with and without the
alignment loss: a fixed batch of B samples, ``--tokens`` image tokens of width ``--image-d``
(all real) and audio frames of width ``--audio-d``, of random real length ``--min-frames`` to
S (padded to S), 10 classes, model width ``--width``, late and early fusion, the robustness
protocol's defaults (modalign.experiments.robustness.TRANSFORMER_DEFAULTS: dropout 0), the
config's defaults otherwise (alpha 0.1, lr 1e-3). Three variants per fusion: alignment off,
IPOT and Sinkhorn (``--beta``, ``--n-iter``). The network and the Adam optimiser are built as
``fit`` builds them and one step is one call of the classifier's own epoch function on a
training set of exactly B rows with ``batch_size = B`` (one batch: forward, cross-entropy
(+ alpha * alignment), backward, Adam step, with the trimming and logging of a real step).
After one warm-up step each, the six (fusion, variant) steps run in turn ``--step-repeats``
times, rotating who goes first, a pause between two; the script prints the median step time
of each variant and its ratio to alignment off (goal: <= 1.3x).

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
GOAL_STEP_RATIO = 1.3
STEP_FUSIONS = ("late", "early")
STEP_VARIANTS = ("off", "ipot", "sinkhorn")
STEP_CLASSES = 10


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


def make_step_batch(args, seed: int):
    """The fixed training batch: image and audio tokens, their token masks and labels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    image = torch.randn(args.batch, args.tokens, args.image_d, generator=g)
    audio = torch.randn(args.batch, args.frames, args.audio_d, generator=g)
    lengths = torch.randint(args.min_frames, args.frames + 1, (args.batch,), generator=g)
    audio_mask = torch.arange(args.frames)[None, :] < lengths[:, None]
    y = torch.randint(0, STEP_CLASSES, (args.batch,), generator=g)
    return [image, audio], [None, audio_mask], y


def step_runner(args, fusion: str, variant: str, batch, sync):
    """One training step of the transformer (``fusion``, alignment ``variant``) on ``batch``:
    the network and optimiser built as ``TransformerClassifier.fit`` builds them, the step the
    classifier's own epoch function on exactly one batch of B rows."""
    import torch

    from modalign.experiments.robustness import TRANSFORMER_DEFAULTS
    from modalign.methods.transformer import TransformerClassifier, TransformerConfig

    align = {} if variant == "off" else {"align": True, "solver": variant}
    cfg = TransformerConfig(
        n_outputs=STEP_CLASSES,
        fusion=fusion,
        width=args.width,
        batch_size=args.batch,
        beta=args.beta,
        n_iter=args.n_iter,
        device=args.device,
        **{**TRANSFORMER_DEFAULTS, **align},
    )
    model = TransformerClassifier(cfg, random_state=args.seed)
    views, token_masks, y = batch
    xs, tms, present = model._check(views, token_masks, None, fitted=False)
    target = model._check_targets(y, xs[0].shape[0])
    model._build([x.shape[2] for x in xs], [x.shape[1] for x in xs])
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()

    def run():
        model._train_epoch(xs, tms, present, target, optimiser, 0)  # n = B rows: one step
        sync()

    return run, cfg


def time_steps(args, sync) -> dict:
    """Median step times of every (fusion, variant), interleaved; prints the table."""
    batch = make_step_batch(args, args.seed + 1)
    runs, configs = {}, {}
    for fusion in STEP_FUSIONS:
        for variant in STEP_VARIANTS:
            runs[fusion, variant], configs[fusion, variant] = step_runner(
                args, fusion, variant, batch, sync
            )
    names = list(runs)
    for name in names:  # warm-up: lazy imports, allocator, thread pools
        runs[name]()
    times = {name: [] for name in names}
    for rep in range(args.step_repeats):
        turn = names[rep % len(names) :] + names[: rep % len(names)]
        for name in turn:
            time.sleep(args.pause)
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(times[name]) for name in names}
    cfg = configs["late", "ipot"]
    record = {
        "image_d": args.image_d,
        "audio_d": args.audio_d,
        "width": args.width,
        "classes": STEP_CLASSES,
        "dropout": cfg.dropout,
        "alpha": cfg.alpha,
        "lr": cfg.lr,
        "step_repeats": args.step_repeats,
        "times": {f"{f}-{v}": times[f, v] for f, v in names},
        "median_s": {f"{f}-{v}": med[f, v] for f, v in names},
    }
    print(
        f"\ntraining step: B={args.batch} image {args.tokens}x{args.image_d}, audio "
        f"{args.min_frames}..{args.frames}x{args.audio_d} (padded to {args.frames}), "
        f"width={args.width} dropout={cfg.dropout} alpha={cfg.alpha} beta={args.beta} "
        f"n_iter={args.n_iter} step_repeats={args.step_repeats} (medians)"
    )
    print(
        f"{'fusion':>6} {'off ms':>8} {'ipot ms':>8} {'ratio':>6} {'sinkhorn ms':>11} "
        f"{'ratio':>6} {'goal':>4}"
    )
    for fusion in STEP_FUSIONS:
        off = med[fusion, "off"]
        ratios = {v: med[fusion, v] / off for v in STEP_VARIANTS[1:]}
        goal = all(r <= GOAL_STEP_RATIO for r in ratios.values())
        for v, r in ratios.items():
            record[f"ratio_{fusion}_{v}"] = r
        record[f"goal_met_{fusion}"] = goal
        print(
            f"{fusion:>6} {off * 1e3:>8.2f} {med[fusion, 'ipot'] * 1e3:>8.2f} "
            f"{ratios['ipot']:>5.2f}x {med[fusion, 'sinkhorn'] * 1e3:>11.2f} "
            f"{ratios['sinkhorn']:>5.2f}x {'yes' if goal else 'NO':>4}"
        )
    print(
        "(one step: forward, cross-entropy (+ alpha * alignment), backward, Adam; ratio = "
        f"step with alignment / step without; goal: <= {GOAL_STEP_RATIO}x)"
    )
    return record


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
    ap.add_argument(
        "--step",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time a training step of the transformer with and without alignment",
    )
    ap.add_argument("--step-repeats", type=int, default=20, help="steps per variant (median)")
    ap.add_argument("--image-d", type=int, default=16, help="image token width (step)")
    ap.add_argument("--audio-d", type=int, default=32, help="audio frame width (step)")
    ap.add_argument("--width", type=int, default=64, help="transformer width (step)")
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
    if args.step:
        record["step"] = time_steps(args, sync)
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    record["costs_agree"] = ok
    return record


if __name__ == "__main__":
    sys.exit(0 if main()["costs_agree"] else 1)
