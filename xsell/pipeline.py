"""The main job behind ``xsell run``: load, validate, clean, split, report.

Later chapters add training and evaluation to the same pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from xsell.data.cleaning import CleaningReport, clean
from xsell.data.dataset import Dataset
from xsell.data.loaders import describe_source
from xsell.data.splits import Split, global_time_split, leave_last_basket_out, random_split


@dataclass
class RunResult:
    """Everything one run produced, ready to print or save."""

    source: str
    summary: dict
    cleaning: CleaningReport
    splits: dict[str, Split]
    summary_text: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable view."""
        return {
            "source": self.source,
            "summary": self.summary,
            "cleaning": self.cleaning.to_frame().to_dict(orient="records"),
            "splits": {name: s.sizes().reset_index().to_dict(orient="records")
                       for name, s in self.splits.items()},
            "seconds": self.seconds,
        }

    def report(self) -> str:
        """Human-readable report."""
        out = [f"data: {self.source}", "", self.summary_text, "", "cleaning:", str(self.cleaning)]
        for name, s in self.splits.items():
            out += ["", f"split {name}:", s.sizes().to_string(float_format=lambda x: f"{x:.3f}")]
        out += ["", "time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())]
        return "\n".join(out)


def run(dataset: Dataset, *, min_user_baskets: int = 3, max_user_mad: float | None = 5.0,
        seed: int = 0) -> RunResult:
    """Clean a loaded dataset and build the three splits.

    Parameters
    ----------
    dataset : Dataset
        Validated data (from :func:`xsell.data.loaders.load_dataset`).
    min_user_baskets : int
        Users need this many baskets (train + validation + test) to stay.
    max_user_mad : float, optional
        Outlier threshold of :func:`xsell.data.cleaning.clean`.
    seed : int
        Seed of the random split.
    """
    seconds = {}
    t = time.perf_counter()
    cleaned, report = clean(dataset, min_user_baskets=min_user_baskets, max_user_mad=max_user_mad)
    seconds["clean"] = time.perf_counter() - t
    t = time.perf_counter()
    splits = {"random 7:1:2": random_split(cleaned, seed=seed),
              "leave-last-basket-out": leave_last_basket_out(cleaned)}
    if "timestamp" in cleaned.interactions:
        splits["global time"] = global_time_split(cleaned)
    seconds["split"] = time.perf_counter() - t
    return RunResult(describe_source(dataset), cleaned.summary(), report, splits,
                     summary_text=cleaned.summary_text(), seconds=seconds)
