"""The label-likelihood weight of the multimodal VAEs, chosen on digits-label (the development
set): coherence with the categorical (label) modality weighted 1 and 50 (Wu and Goodman 2018).

    MODALIGN_DATA=../shared/data python scripts/vae_choices.py [--seeds 3]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print("categorical_weight method           label->image  image->label  joint  ELBO label")
    for weight in (1.0, 50.0):
        records = run_generate(
            "digits-label",
            seeds=range(args.seeds),
            config={"categorical_weight": weight},
            plots=False,
        )
        for method in ("mvae", "wvae", "wvae-factorised"):
            mine = [r for r in records if r["method"] == method]
            print(
                f"{weight:18.0f} {method:16} {mean(mine, 'coherence', [1], 0):12.3f} "
                f"{mean(mine, 'coherence', [0], 1):13.3f} {mean(mine, 'joint_coherence'):6.3f} "
                f"{mean(mine, 'elbo', [1], 1):8.3f}"
            )


if __name__ == "__main__":
    main()
