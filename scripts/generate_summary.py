"""The summary and the per-dataset sections of docs/generate.md, from the folders that
scripts/generate_tables.sh writes (each one `modalign generate` run).

    python scripts/generate_summary.py runs/generate > /tmp/generate.md

Prints, in Markdown: the summary (coherence from each single modality to each other one, and
joint coherence with its class spread, mean ± std over seeds, for every method), then every
folder's results.md under the command that produced it and its wall time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from modalign.eval.report import mean_std_text, read_results_file
from summary_sections import sections

DATASETS = ("mnist-label", "avdigits", "digits-label")
ORDER = ("mvae", "wvae", "wvae-factorised", "vae-untrained", "nearest-pair", "majority")


def summary(root: Path) -> list[str]:
    lines = [
        "| dataset | method | cross-modal coherence (source -> target) | joint coherence | "
        "class spread |",
        "| --- | --- | --- | :---: | :---: |",
    ]
    for name in DATASETS:
        folder = root / name
        if not (folder / "results.json").exists():
            continue
        header, records = read_results_file(folder)
        names = (header.get("data") or {}).get("view_names") or []

        def cell(method, metric, source=None, target=None, records=records) -> str:
            return mean_std_text(
                r["value"]
                for r in records
                if r["method"] == method
                and r["metric"] == metric
                and (source is None or r["source"] == source)
                and (target is None or r["target"] == target)
            )

        pairs = sorted(
            {
                (r["source"][0], r["target"])
                for r in records
                if r["metric"] == "coherence" and len(r["source"]) == 1
            }
        )
        for method in ORDER:
            cross = "; ".join(
                f"{names[s]} -> {names[t]} {cell(method, 'coherence', [s], t)}" for s, t in pairs
            )
            joint = cell(method, "joint_coherence")
            spread = cell(method, "prior_class_spread")
            lines.append(f"| {name} | {method} | {cross} | {joint} | {spread} |")
    return lines


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/generate")
    print("\n".join(summary(root) + [""] + sections(root, DATASETS)))
