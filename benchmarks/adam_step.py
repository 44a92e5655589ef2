"""OTM's optimiser step on wide views: torch's default CPU Adam against its fused kernel.

OTM trains one MLP autoencoder per view (:class:`modalign.nn.Autoencoder`), and all of their
weights go to one Adam. On 3-Sources (three views of 3,068-3,631 features, so about 11 M
weights), the default Adam goes through the weights one tensor at a time, and on one thread
its update is a large part of every training step.

The script gives the same random gradients to each variant and times ``optimizer.step()``.
The variants are: the default (what OTM uses), ``foreach=True`` and ``fused=True``. Each
variant takes ``--steps`` steps after one warm-up step; the variants run in turn,
``--repeats`` times. It prints each variant's median step time (thread CPU time) and its ratio
to the default.

    OMP_NUM_THREADS=1 python benchmarks/adam_step.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from modalign.nn import Autoencoder

#: 3-Sources' view widths (BBC, Reuters, Guardian after tf-idf).
WIDTHS = (3560, 3631, 3068)
VARIANTS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    params = [p for w in WIDTHS for p in Autoencoder(w, 64).parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    print(f"{sum(p.numel() for p in params) / 1e6:.1f} M weights, one thread")
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, options in VARIANTS.items():
            optimiser = torch.optim.Adam(params, lr=1e-3, **options)
            optimiser.step()  # state allocation, outside the timing
            for _ in range(args.steps):
                start = time.thread_time()
                optimiser.step()
                times[name].append(time.thread_time() - start)
    base = statistics.median(times["default"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:8s} {1000 * median:7.1f} ms per step   {base / median:4.2f}x the default")


if __name__ == "__main__":
    main()
