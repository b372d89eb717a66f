"""Reading a generic-format CSV file, with an error a person can act on for every way a
file can be unreadable: missing, a folder, no permission, empty, header only, compressed
under the wrong name, not UTF-8, UTF-16, another delimiter, a repeated column name, a row
with too many fields.

Valid files are read exactly as :func:`pandas.read_csv` reads them, with the given
``dtype``; only text columns (ids, titles) that pandas would turn into missing values
(``NA``, ``None``, ``null``, ...) are read again as the literal text they are.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from xsell.errors import InputError

#: Bytes sniffed at the start of a file.
SNIFF_BYTES = 64 * 1024

#: Compression pandas infers from a file name, with the magic bytes that file must start with.
COMPRESSION = {
    ".gz": ("gzip", b"\x1f\x8b"),
    ".zip": ("zip", b"PK\x03\x04"),
    ".bz2": ("bzip2", b"BZh"),
    ".xz": ("xz", b"\xfd7zXZ\x00"),
    ".zst": ("zstandard", b"\x28\xb5\x2f\xfd"),
}

_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
         (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))

_DELIMITERS = {";": "';' (semicolon)", "\t": "a tab", "|": "'|' (pipe)"}


def _cannot_read(path: Path, err: OSError) -> InputError:
    if isinstance(err, PermissionError):
        why = "permission denied; make it readable (chmod u+r) or run as its owner"
    else:
        why = err.strerror or str(err)
    return InputError(f"{path}: cannot read the file: {why}")


def _open_binary(path: Path):
    """Open for reading bytes (a seam tests replace to simulate an unreadable file)."""
    return open(path, "rb")


def _head(path: Path) -> bytes:
    try:
        with _open_binary(path) as f:
            return f.read(SNIFF_BYTES)
    except OSError as err:
        raise _cannot_read(path, err) from None


def _decompressed_head(path: Path, kind: str) -> bytes | None:
    try:
        if kind == "gzip":
            with gzip.open(path, "rb") as f:
                return f.read(SNIFF_BYTES)
        if kind == "bzip2":
            with bz2.open(path, "rb") as f:
                return f.read(SNIFF_BYTES)
        if kind == "xz":
            with lzma.open(path, "rb") as f:
                return f.read(SNIFF_BYTES)
        if kind == "zip":
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if len(names) != 1:
                    raise InputError(f"{path}: a zip archive must hold exactly one CSV file; "
                                     f"it holds {len(names)} ({', '.join(names[:5])})")
                with z.open(names[0]) as f:
                    return f.read(SNIFF_BYTES)
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as err:
        raise InputError(f"{path}: cannot decompress the {kind} file ({err})") from None
    return None  # zstandard: left to pandas


def _first_line(head: bytes) -> bytes:
    return head.split(b"\n", 1)[0].rstrip(b"\r")


def _not_utf8(path: Path, compressed: bool) -> InputError:
    """Find the first line that is not UTF-8 and describe it."""
    openers = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    suffix = path.suffix.lower()
    if compressed and suffix not in openers:
        return InputError(f"{path}: bytes that are not UTF-8; xsell reads UTF-8 text")
    offset = 0
    with (openers[suffix](path, "rb") if compressed else _open_binary(path)) as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start:err.start + 1]
                shown = raw.decode("utf-8", errors="replace").rstrip("\r\n")[:80]
                return InputError(
                    f"{path}, line {lineno}: bytes that are not UTF-8 (byte 0x{bad.hex()} at "
                    f"byte offset {offset + err.start} of the file: {shown!r}); xsell reads "
                    "UTF-8 text: convert the file, e.g. `iconv -f latin1 -t utf-8 IN > OUT` "
                    "for a Latin-1 / Windows-1252 export")
            offset += len(raw)
    return InputError(f"{path}: bytes that are not UTF-8; xsell reads UTF-8 text")


def read_generic_csv(path: str | os.PathLike, *, role: str, required: Sequence[str],
                     dtype: dict, text_columns: Sequence[str]) -> pd.DataFrame:
    """Read one generic-format CSV file, or raise :class:`~xsell.errors.InputError`.

    Parameters
    ----------
    path : path-like
        The file.
    role : str
        What the file should hold, for messages (``"interactions"``, ``"items"``).
    required : sequence of str
        Its required columns, named in the messages about empty files and delimiters.
    dtype : dict
        Column types passed to :func:`pandas.read_csv`.
    text_columns : sequence of str
        Columns whose values are text that must never become missing (ids, titles):
        ``NA``, ``None`` or ``null`` there is that literal text.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected the {role} CSV file "
                         f"(e.g. {path / (role + '.csv')})")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected the generic format, see "
                                "xsell.data.schema)")
    head = _head(path)
    expected = f"a header line naming the columns ({', '.join(required)}, ...)"
    suffix = path.suffix.lower()
    compressed = suffix in COMPRESSION
    magic_kind = next((kind for kind, magic in COMPRESSION.values() if head.startswith(magic)),
                      None)
    if compressed:
        kind, magic = COMPRESSION[suffix]
        if not head.startswith(magic):
            raise InputError(f"{path}: the name ends in {suffix}, so it is read as a {kind} "
                             f"file, but it is not {kind}-compressed; rename it to end in .csv "
                             f"or compress it with {kind}")
        inner = _decompressed_head(path, kind)
        head = inner if inner is not None else b""
    elif magic_kind is not None:
        ext = next(s for s, (k, _) in COMPRESSION.items() if k == magic_kind)
        raise InputError(f"{path}: is a {magic_kind}-compressed file, not CSV text; decompress "
                         f"it (e.g. `{'gunzip -c' if magic_kind == 'gzip' else 'unzip -p'} "
                         f"{path} > {role}.csv`) or give it a name ending in .csv{ext}")
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            raise InputError(f"{path}: is {encoding} text (byte-order mark 0x{bom.hex()} at the "
                             f"start); xsell reads UTF-8: convert it, e.g. `iconv -f {encoding} "
                             f"-t utf-8 {path} > {role}-utf8.csv`")
    if head and not head.strip():
        raise InputError(f"{path}: the file holds only blank lines; expected {expected}")
    if not head and not compressed:
        raise InputError(f"{path}: the file is empty (0 bytes); expected {expected}")
    try:
        line1 = _first_line(head).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _not_utf8(path, compressed) from None
    names = next(csv.reader([line1])) if line1 else []
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{path}, line 1: the header names column(s) "
                         f"{', '.join(repr(n) for n in repeated)} more than once ({line1!r}); "
                         "every column name must be unique: rename or remove the repeated "
                         "column")
    if len(names) == 1:
        found = [d for d in _DELIMITERS if d in line1]
        if found:
            raise InputError(f"{path}, line 1: the header is a single column {line1!r}: the "
                             f"delimiter looks like {_DELIMITERS[found[0]]}. xsell reads "
                             "comma-separated files: save the file with ',' between fields "
                             "(e.g. pandas' to_csv(path, index=False))")
    try:
        frame = pd.read_csv(path, dtype=dtype)
        missing_text = [c for c in text_columns if c in frame and frame[c].isna().any()]
        if missing_text:  # NA / None / null are ids and titles too: read them as text
            literal = pd.read_csv(path, usecols=missing_text, dtype=str, na_filter=False)
            for c in missing_text:
                frame[c] = literal[c].astype(frame[c].dtype)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty; expected {expected}") from None
    except pd.errors.ParserError as err:
        raise _tokenizer_error(path, err, len(names)) from None
    except UnicodeDecodeError:
        raise _not_utf8(path, compressed) from None
    except OSError as err:
        raise _cannot_read(path, err) from None
    if frame.empty:
        raise InputError(f"{path}: the file has a header but no data rows (line 1 only); "
                         f"expected one row per {'purchase' if role == 'interactions' else 'item'}"
                         " after the header")
    return frame


def _tokenizer_error(path: Path, err: Exception, n_header: int) -> InputError:
    text = str(err)
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if m:
        want, line, saw = m.groups()
        return InputError(f"{path}, line {line}: {saw} fields where the header has {want}; "
                          "quote a field that contains a comma (\"like, this\") or remove the "
                          "extra commas")
    m = re.search(r"line (\d+)", text)
    where = f", line {m.group(1)}" if m else ""
    detail = text.split("C error: ")[-1].strip().rstrip(".")
    return InputError(f"{path}{where}: not valid CSV ({detail}); check the quoting of that line")
