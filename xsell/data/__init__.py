"""Data layer: the generic format, validation, cleaning, splits and loaders."""

from xsell.data.cleaning import CleaningReport, clean
from xsell.data.dataset import Dataset
from xsell.data.instacart import load_instacart
from xsell.data.loaders import load_dataset
from xsell.data.splits import Split, global_time_split, leave_last_basket_out, random_split
from xsell.data.synthetic import make_synthetic_shop
from xsell.data.validation import DataValidationError

__all__ = [
    "CleaningReport",
    "DataValidationError",
    "Dataset",
    "Split",
    "clean",
    "global_time_split",
    "leave_last_basket_out",
    "load_dataset",
    "load_instacart",
    "make_synthetic_shop",
    "random_split",
]
