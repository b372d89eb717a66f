"""The README's benchmark tables: each lives between ``<!-- bench:NAME -->`` markers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def update_readme(name: str, table: str, readme: Path = README) -> None:
    """Put ``table`` between the README's ``bench:name`` markers (nothing if they are absent)."""
    text = readme.read_text()
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table's lines: the header, its rule, then one line per row of cells."""
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
