"""Finding where a CSV file goes wrong, once the fast reader has said that it does.

The fast path (pyarrow) reports problems without a reliable line number. These scans
run only on the error path: they stream the file once in Python and return a message
that names the line, the byte offset or the column, and how to fix it.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["describe_csv_problem", "open_binary"]


def open_binary(path: Path) -> gzip.GzipFile | bz2.BZ2File | io.BufferedReader:
    """Open a file for reading bytes, decompressing ``.gz`` and ``.bz2``."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def describe_csv_problem(path: Path, *, delimiter: str, max_field_bytes: int) -> str | None:
    """The first problem in a CSV file, as a message; ``None`` if none is found."""
    return _bad_utf8(path, delimiter) or _bad_record(path, delimiter, max_field_bytes)


def _bad_utf8(path: Path, delimiter: str) -> str | None:
    offset, header = 0, None
    with open_binary(path) as f:
        for lineno, line in enumerate(f, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                where = _utf8_field(line, exc.start, delimiter, header)
                return _utf8_message(path.name, lineno, where, offset + exc.start, line, exc.start)
            if lineno == 1:
                header = next(csv.reader([text.lstrip("\ufeff")], delimiter=delimiter), None)
            offset += len(line)
    return None


def _utf8_field(line: bytes, start: int, delimiter: str, header: list[str] | None) -> str:
    prefix = line[:start].decode("utf-8", "replace")
    index = len(next(csv.reader([prefix], delimiter=delimiter), [""])) - 1
    if header and index < len(header):
        return f"column {header[index].strip()!r}"
    return f"field {index + 1}"


def _utf8_message(name: str, lineno: int, where: str, offset: int, line: bytes, at: int) -> str:
    shown = line[max(0, at - 20) : at + 20].decode("utf-8", "replace").strip()
    return (
        f"{name} line {lineno:,} ({where}, byte offset {offset:,}) is not valid UTF-8: "
        f"byte 0x{line[at]:02x} in {shown!r}. keel reads text as UTF-8; re-encode the "
        f"file, e.g. `iconv -f latin1 -t utf-8 {name} > fixed.csv`, or save it as "
        f"'CSV UTF-8' from a spreadsheet"
    )


@contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    old = csv.field_size_limit()
    csv.field_size_limit(max(limit, 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _bad_record(path: Path, delimiter: str, max_field_bytes: int) -> str | None:
    name = path.name
    # Fields somewhat over the limit are read whole, to name their column.
    with open_binary(path) as raw, _csv_field_limit(max(4 * max_field_bytes, 16 << 20)):
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        row_number, start = 0, 2
        try:
            header = next(reader)
            for record in reader:
                if record:
                    row_number += 1
                    problem = _record_problem(record, header, max_field_bytes)
                    if problem:
                        sep = ", " if problem.startswith("column ") else ": "
                        return f"{name} row {row_number:,} (line {start:,}){sep}{problem}"
                start = reader.line_num + 1
        except StopIteration:
            return None
        except csv.Error as exc:
            where = f"{name} row {row_number + 1:,} (line {start:,})"
            if "field larger than field limit" in str(exc):
                return f"{where}: {_too_big(None, None, max_field_bytes)}"
            return f"{where}: not valid CSV: {exc}"
    return None


def _record_problem(record: list[str], header: list[str], limit: int) -> str | None:
    if len(record) != len(header):
        return (
            f"expected {len(header)} fields like the header, found {len(record)}; look for "
            f"an unquoted delimiter inside a value, or a missing or extra one"
        )
    if max(map(len, record)) * 4 <= limit:  # a UTF-8 character is at most 4 bytes
        return None
    for column, value in zip(header, record, strict=True):
        size = len(value.encode("utf-8"))
        if size > limit:
            return _too_big(column, size, limit)
    return None


def _too_big(column: str | None, size: int | None, limit: int) -> str:
    what = f"column {column!r}: a field of {size:,} bytes" if column else "a field"
    return (
        f"{what} is larger than the limit of {limit:,} bytes; if the value is real, raise "
        f"max_field_bytes, otherwise look for a quote that is opened and never closed"
    )
