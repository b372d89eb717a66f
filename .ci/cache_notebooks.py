"""Store the chapters executed by the tests in the book's jupyter-cache.

Usage: python .ci/cache_notebooks.py EXECUTED_DIR [CACHE_DIR]

``pytest`` (with ``XSELL_EXECUTED_NOTEBOOKS=EXECUTED_DIR``, see ``conftest.py``) writes
every chapter whose cells all passed, with its outputs. This script adds each of them to
the jupyter-cache that ``jupyter-book build`` reads in ``execute_notebooks: cache`` mode
(``_build/.jupyter_cache`` by default), so the build renders those outputs instead of
executing the chapters a second time. A chapter of the table of contents that has no
executed copy is an error: the build would silently execute it again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

ROOT = Path(__file__).resolve().parents[1]


def toc_notebooks() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found: list[str] = [toc["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return [ROOT / f"{name}.ipynb" for name in found if (ROOT / f"{name}.ipynb").is_file()]


def main(executed: Path, cache_path: Path) -> int:
    cache = get_cache(str(cache_path))
    missing = []
    for source in toc_notebooks():
        copy = executed / source.relative_to(ROOT)
        if not copy.is_file():
            missing.append(str(source.relative_to(ROOT)))
            continue
        stamp = copy.with_suffix(".json")
        data = json.loads(stamp.read_text()) if stamp.is_file() else {}
        nb = nbformat.read(str(copy), as_version=4)
        record = cache.cache_notebook_bundle(CacheBundleIn(nb, str(source), data=data),
                                             check_validity=True, overwrite=True)
        print(f"cached {source.relative_to(ROOT)} (executed in "
              f"{data.get('execution_seconds', '?')} s by the tests): record {record.pk}")
    if missing:
        print(f"error: no executed copy in {executed} of: {', '.join(missing)} "
              "(did pytest run them with XSELL_EXECUTED_NOTEBOOKS set?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().splitlines()[2])
    sys.exit(main(Path(sys.argv[1]),
                  Path(sys.argv[2]) if len(sys.argv) == 3 else ROOT / "_build" / ".jupyter_cache"))
