"""Where the repository and the shared data are (imported by tests; not a conftest, whose
module name ``conftest`` the repository's root conftest.py also has)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def real_data_dir() -> Path | None:
    """The Instacart sample: $XSELL_DATA_DIR, else ../shared/data beside the repo."""
    env = os.environ.get("XSELL_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [SHARED_DATA]:
        if (cand / "instacart" / "products.csv").is_file() or (cand / "products.csv").is_file():
            return cand
    return None
