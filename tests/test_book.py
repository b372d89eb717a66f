"""The book's chapters: each executed chapter says at its top how long it takes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_each_chapter_states_its_runtime_under_its_title(path):
    first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
    lines = "".join(first["source"]).splitlines()
    assert first["cell_type"] == "markdown" and lines[0].startswith("# ")
    runtime = next((line for line in lines[1:4] if line.startswith("*Runtime:")), None)
    assert runtime is not None, f"{path.name}: no '*Runtime: ...*' line under the title"
    assert re.search(r"\d+(\.\d+)? (min|s)\b", runtime), runtime
