"""What the docs' summary scripts share: every results folder's tables under the command that
produced them (scripts/represent_summary.py, scripts/generate_summary.py)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from modalign.eval.report import read_header
from modalign.provenance import provenance_line


def sections(root: Path, names: Iterable[str]) -> list[str]:
    """Markdown: for each folder ``root / name`` holding a ``results.md``, a ``### name``
    section with its provenance line, its wall time and its tables (headings one level down;
    its title and pictures left out)."""
    out = []
    for name in names:
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
            f"Wall time of the invocation that last wrote it: {wall / 60:.1f} min." if wall else "",
            *[line.replace("## ", "#### ") for line in body],
        ]
    return out
