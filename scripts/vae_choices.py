"""The multimodal VAEs' two choices, made on digits-label (the development set) with
`modalign generate`'s protocol, 3 seeds:

1. the weight of the categorical (label) modality's log-likelihood: 1 against 50 (Wu and
   Goodman 2018's value for MNIST), MVAE and WVAE;
2. WVAE's consensus weight lambda_w2 in {1, 4, 16, 64} (label weight 50).

    MODALIGN_DATA=../shared/data python scripts/vae_choices.py [--seeds 3]

Prints each setting's mean coherence (label -> image, image -> label), joint coherence and
label ELBO (-2.30 = log 1/10: the label decoder ignores the latent).
"""

from __future__ import annotations

import argparse

import numpy as np

from modalign.experiments.generate import run_generate


def mean(records, metric, source=None, target=None) -> float:
    return float(
        np.mean(
            [
                r["value"]
                for r in records
                if r["metric"] == metric
                and (source is None or r["source"] == source)
                and (target is None or r["target"] == target)
            ]
        )
    )


def report(setting: str, records, methods) -> None:
    for method in methods:
        mine = [r for r in records if r["method"] == method]
        print(
            f"{setting:24} {method:16} {mean(mine, 'coherence', [1], 0):12.3f} "
            f"{mean(mine, 'coherence', [0], 1):13.3f} {mean(mine, 'joint_coherence'):6.3f} "
            f"{mean(mine, 'elbo', [1], 1):10.3f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    seeds = range(args.seeds)
    print("setting                  method           label->image  image->label  joint  ELBO label")
    for weight in (1.0, 50.0):
        records = run_generate(
            "digits-label",
            methods=["mvae", "wvae"],
            seeds=seeds,
            config={"categorical_weight": weight, "lambda_w2": 4.0},
            plots=False,
        )
        report(f"categorical_weight {weight:g}", records, ("mvae", "wvae"))
    for lam in (1.0, 4.0, 16.0, 64.0):
        records = run_generate(
            "digits-label", methods=["wvae"], seeds=seeds, config={"lambda_w2": lam}, plots=False
        )
        report(f"lambda_w2 {lam:g}", records, ("wvae",))


if __name__ == "__main__":
    main()
