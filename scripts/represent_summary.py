"""The summary and the per-dataset sections of docs/represent.md, from the folders that
scripts/represent_tables.sh writes (each one `modalign represent` run).

    python scripts/represent_summary.py runs/represent > /tmp/represent.md

Prints, in Markdown: the summary (MLP-probe accuracy from the complete test rows and from each
single modality, mean ± std over seeds, for every method), then every folder's results.md
under the command that produced it and its wall time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from modalign.eval.report import mean_std_text, read_results_file
from modalign.experiments.represent import TABLE_ORDER
from summary_sections import sections

DATASETS = ("avdigits", "avdigits-label", "mnist-label", "prokaryotic", "3sources", "orl4")
ORDER = TABLE_ORDER
#: Folders of one dataset: ``{dataset}`` (GMC, OTM and the references), GMC's untrained
#: network in ``{dataset}-untrained``, the multimodal VAEs in ``{dataset}-vae``.
SUFFIXES = ("", "-untrained", "-vae")


def summary(root: Path) -> list[str]:
    lines = [
        "| dataset | method | complete | single modalities (each) |",
        "| --- | --- | :---: | --- |",
    ]
    for name in DATASETS:
        folders = [
            root / (name + s) for s in SUFFIXES if (root / (name + s) / "results.json").exists()
        ]
        if not folders:
            continue
        header, records = read_results_file(folders[0])
        for folder in folders[1:]:
            # The references run in every folder; each method is taken from its first folder.
            have = {r["method"] for r in records}
            records = records + [r for r in read_results_file(folder)[1] if r["method"] not in have]
        names = (header.get("data") or {}).get("view_names") or []
        tested = [tuple(r["subset"]) for r in records if r["probe"] == "mlp"]
        full = max(tested, key=len)
        for method in ORDER:
            probe = "none" if method in ("supervised", "majority") else "mlp"

            def acc(subset, method=method, probe=probe, records=records):
                return mean_std_text(
                    r["value"]
                    for r in records
                    if r["method"] == method
                    and r["probe"] == probe
                    and r["metric"] == "accuracy"
                    and tuple(r["subset"]) == subset
                )

            complete = acc(full)
            if not complete:
                continue
            singles = "; ".join(
                f"{names[v] if v < len(names) else v} {acc((v,))}" for v in full if acc((v,))
            )
            lines.append(f"| {name} | {method} | {complete} | {singles} |")
    return lines


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/represent")
    print(
        "\n".join(
            summary(root) + [""] + sections(root, [d + s for d in DATASETS for s in SUFFIXES])
        )
    )
