"""The error a person can act on: bad input files, bad arguments, unwritable outputs.

Anything raised as :class:`InputError` is printed by the ``xsell`` command as one
``xsell: error: <message>`` line (exit status 2), without a traceback. Its message names
what is wrong (file, column, line, value) and what would be accepted instead.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input -- a file, an argument or an output path -- described for a person."""
