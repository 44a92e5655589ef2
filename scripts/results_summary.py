"""The summary and the per-table sections of docs/results.md, from the folders that
scripts/results_tables.sh writes (each one `modalign cluster` table).

    python scripts/results_summary.py runs/results > /tmp/tables.md

Prints, in Markdown: the summary (Hungarian accuracy, mean ± std over seeds, of the learned
methods beside OTM's head alone on the raw views and the label-free classical baselines), the
seed-paired differences of issue 15's goals and ablations, then every table as its folder's
results.md says it, under the command that produced it, then the known-pairs curves (folders
pairs-orl, pairs-orl4, pairs-prokaryotic, pairs-3sources, pairs-digits) as accuracy against the
share of known pairs, and their seed-paired goals and ablations.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np

from modalign.eval import markdown_table, read_results
from modalign.eval.report import read_header
from modalign.provenance import provenance_line

CURVES = ("pairs-orl", "pairs-orl4", "pairs-prokaryotic", "pairs-3sources", "pairs-digits")
TABLES = [
    f"{d}-{s}"
    for d in ("orl", "orl4", "prokaryotic", "3sources", "digits")
    for s in ("aligned", "unaligned")
]


#: The seed-paired comparisons of issue 15's goals and ablations: (column, method, reference).
PAIRED = (
    ("OTM - MWAE", "otm", "mwae"),
    ("graph fusion: OTM - OTM with code fusion", "otm", "otm-code-fusion"),
    ("structure term: OTM - OTM without it", "otm", "otm-no-structure"),
    ("structure term: MWAE - MWAE without it", "mwae", "mwae-no-structure"),
    ("OTM - head on OTM's input", "otm", "same input"),
    ("OTM - head, best view", "otm", "graph-best-view"),
    ("OTM - k-means, best view", "otm", "kmeans-best-view"),
    ("OTM - spectral", "otm", "spectral"),
)
#: OTM's head alone on what OTM clusters: the views' fused graphs when aligned, each view's own
#: rows (mean over views) when not.
SAME_INPUT = {"aligned": "graph-fused", "unaligned": "graph-each-view"}


#: The seed-paired comparisons of the known-pairs curves: (column, (method, share),
#: (reference, share)).
CURVE_PAIRED = (
    ("OTM rise, share 0 to 0.5", ("otm", 0.5), ("otm", 0.0)),
    ("OTM - MWAE at 0.5", ("otm", 0.5), ("mwae", 0.5)),
    ("graph fusion: OTM - OTM with code fusion at 0.5", ("otm", 0.5), ("otm-code-fusion", 0.5)),
    ("joined graph: OTM - OTM spreading at 0.5", ("otm", 0.5), ("otm-spread", 0.5)),
    ("OTM - head with graph fusion at 0.5", ("otm", 0.5), ("graph-fused", 0.5)),
    ("head with graph fusion: rise, 0 to 0.5", ("graph-fused", 0.5), ("graph-fused", 0.0)),
    ("OTM - k-means, best view at 0.5", ("otm", 0.5), ("kmeans-best-view", 0.5)),
)


def paired(
    records: list[dict],
    method: str,
    reference: str,
    settings: tuple[str | None, str | None] = (None, None),
) -> str:
    """``mean ± std (wins/seeds)`` of the seed-paired accuracy difference, or "-";
    ``settings``: the setting of each side's records (None: any)."""
    by_seed = [
        {
            r["seed"]: r["value"]
            for r in records
            if r["method"] == m and r["metric"] == "accuracy" and st in (None, r["setting"])
        }
        for m, st in zip((method, reference), settings)
    ]
    seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
    if not seeds:
        return "-"
    d = np.array([by_seed[0][s] - by_seed[1][s] for s in seeds])
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
    return f"{d.mean():+.3f} ± {sd:.3f} ({int((d > 0).sum())}/{len(d)})"


def paired_table(folder: Path) -> list[str]:
    """Seed-paired accuracy differences per table (issue 15's goals and ablations)."""
    out = [
        "| dataset | setting | " + " | ".join(c for c, _, _ in PAIRED) + " |",
        "| --- | --- |" + " :---: |" * len(PAIRED),
    ]
    for table in TABLES:
        if not (folder / table / "results.json").exists():
            continue
        records = read_results(folder / table)
        setting = table.rsplit("-", 1)[1]
        cells = [
            paired(records, m, SAME_INPUT.get(setting, ref))
            if ref == "same input"
            else paired(records, m, ref)
            for _, m, ref in PAIRED
        ]
        out.append(f"| {' | '.join(table.rsplit('-', 1))} | " + " | ".join(cells) + " |")
    return out


def mean_std(records: list[dict], method: str, metric: str = "accuracy") -> tuple[float, float]:
    values = [r["value"] for r in records if r["method"] == method and r["metric"] == metric]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def text(ms: tuple[float, float]) -> str:
    return "-" if np.isnan(ms[0]) else f"{ms[0]:.3f} ± {ms[1]:.3f}"


def command(header: dict) -> str:
    argv = list(header["command"])
    argv[:1] = ["modalign"]
    out = argv.index("--out")
    argv[out + 1] = "runs/" + Path(argv[out + 1]).name
    return "OMP_NUM_THREADS=1 MODALIGN_DATA=../shared/data " + shlex.join(argv)


def main(folder: Path) -> None:
    summary = [
        "| dataset | setting | OTM | MWAE | OTM without structure | MWAE without structure "
        "| OTM, code fusion | head on OTM's input | head, best view | k-means, best view "
        "| spectral | table time |",
        "| --- | --- |" + " :---: |" * 9 + " ---: |",
    ]
    sections = []
    for table in TABLES:
        path = folder / table
        if not (path / "results.json").exists():
            summary.append(f"| {table} | not run |" + " |" * 10)
            continue
        records, header = read_results(path), read_header(path)
        dataset, setting = table.rsplit("-", 1)
        same_input = SAME_INPUT[setting]
        cells = [
            text(mean_std(records, m))
            for m in (
                "otm",
                "mwae",
                "otm-no-structure",
                "mwae-no-structure",
                "otm-code-fusion",
                same_input,
                "graph-best-view",
            )
        ]
        cells += [text(mean_std(records, m)) for m in ("kmeans-best-view", "spectral")]
        summary.append(
            f"| {dataset} | {setting} | "
            + " | ".join(cells)
            + f" | {header['wall_seconds']:.0f} s |"
        )
        # results.md is a provenance line, the table, then notes; the line and the table are
        # rebuilt so that every table reads alike (methods in the command's order).
        notes = (path / "results.md").read_text(encoding="utf-8").split("\n\n")[2:]
        order = {m: i for i, m in enumerate(header["configs"])}
        table_records = sorted(records, key=lambda r: (order.get(r["method"], 99), r["seed"]))
        body = "\n\n".join([provenance_line(header), markdown_table(table_records), *notes])
        body = re.sub(r"^## ", "#### ", body, flags=re.M)
        sections.append(
            f"### {dataset}, {setting}\n\n```\n{command(header)}\n```\n\n"
            f"Run time: {header['wall_seconds']:.0f} s for the table.\n\n{body.strip()}\n"
        )
    print("\n".join(summary))
    print()
    print("Seed-paired accuracy differences, mean ± std over seeds (seeds where positive):\n")
    print("\n".join(paired_table(folder)))
    print()
    print("\n".join(sections))
    print("\n".join(curves(folder)))
    print("Known-pairs curves, seed-paired accuracy differences (seeds where positive):\n")
    print("\n".join(curve_goals(folder)))


def curve_goals(folder: Path) -> list[str]:
    """Seed-paired accuracy differences of the known-pairs curves (:data:`CURVE_PAIRED`)."""
    out = [
        "| dataset | " + " | ".join(c for c, _, _ in CURVE_PAIRED) + " |",
        "| --- |" + " :---: |" * len(CURVE_PAIRED),
    ]
    for name in CURVES:
        if not (folder / name / "results.json").exists():
            continue
        records = read_results(folder / name)
        cells = [
            paired(records, m, ref, (f"known pairs {s:g}", f"known pairs {t:g}"))
            for _, (m, s), (ref, t) in CURVE_PAIRED
        ]
        out.append(f"| {records[0]['dataset']} | " + " | ".join(cells) + " |")
    return out


def curves(folder: Path) -> list[str]:
    """Per curve folder: its command, wall time and per-view accuracy against the share."""
    out = []
    for name in CURVES:
        path = folder / name
        if not (path / "results.json").exists():
            continue
        records, header = read_results(path), read_header(path)
        shares = sorted({float(r["setting"].rsplit(" ", 1)[1]) for r in records})
        methods = list(dict.fromkeys(r["method"] for r in records))
        out += [
            f"{records[0]['dataset']} (`{command(header)}`, {header['wall_seconds']:.0f} s, "
            + (f"commit {header['git_commit'][:7]}, " if header.get("git_commit") else "")
            + f"data sha256 {header['data']['sha256'][:12]}):",
            "",
            "| method | " + " | ".join(f"{s:g}" for s in shares) + " |",
            "| --- |" + " :---: |" * len(shares),
        ]
        for method in methods:
            cells = [
                text(mean_std([r for r in records if r["setting"] == f"known pairs {s:g}"], method))
                for s in shares
            ]
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results"))
