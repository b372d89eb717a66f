"""The README's benchmark tables: each lives between ``<!-- bench:NAME -->`` markers."""

from __future__ import annotations

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
