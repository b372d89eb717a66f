"""xsell: cross-category cross-selling with pre-trained language models.

The package behind the xsell book. Chapters import from here; nothing lives only in a
notebook.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xsell")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
