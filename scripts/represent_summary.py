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

from modalign.eval.report import mean_std_text, read_header, read_results_file
from modalign.provenance import provenance_line

DATASETS = ("avdigits", "avdigits-label", "prokaryotic", "3sources", "orl4")
ORDER = ("gmc", "gmc-renorm", "gmc-untrained", "otm", "raw", "supervised", "majority")
#: GMC's untrained network runs in a folder of its own, ``{dataset}-untrained``.
UNTRAINED = "-untrained"


def summary(root: Path) -> list[str]:
    lines = [
        "| dataset | method | complete | single modalities (each) |",
        "| --- | --- | :---: | --- |",
    ]
    for name in DATASETS:
        folder = root / name
        if not (folder / "results.json").exists():
            continue
        header, records = read_results_file(folder)
        if (root / (name + UNTRAINED) / "results.json").exists():
            extra = read_results_file(root / (name + UNTRAINED))[1]
            records = records + [r for r in extra if r["method"] == "gmc-untrained"]
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


def sections(root: Path) -> list[str]:
    out = []
    for name in [d + suffix for d in DATASETS for suffix in ("", UNTRAINED)]:
        folder = root / name
        if not (folder / "results.md").exists():
            continue
        header = read_header(folder) or {}
        body = (folder / "results.md").read_text(encoding="utf-8").split("\n")
        body = [line for line in body[1:] if not line.startswith("_Produced") and "](" not in line]
        wall = header.get("wall_seconds")
        out += [
            f"### {name}",
            "",
            provenance_line(header),
            "",
            f"Wall time {wall / 60:.1f} min." if wall else "",
            *[line.replace("## ", "#### ") for line in body],
        ]
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/represent")
    print("\n".join(summary(root) + [""] + sections(root)))
