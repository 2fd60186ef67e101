"""Reading a source (a CSV or Parquet file, or a DuckDB query over files) into Arrow.

CSV cells are read as text: the schema decides the types later, so that validation can
name the row and the raw value that does not fit. Problems with the file itself (missing,
empty, not UTF-8, ragged, a huge field, duplicate column names) raise ``InvalidInput``
naming the file and the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from keel.data._diagnose import describe_csv_problem, open_binary
from keel.errors import InvalidInput

__all__ = ["DEFAULT_MAX_FIELD_BYTES", "DELIMITERS", "FORMATS", "SourceInfo", "read_source"]

#: The largest CSV field accepted, in bytes; a larger one is usually an unclosed quote.
DEFAULT_MAX_FIELD_BYTES = 1 << 20

#: Formats ``read_source`` reads, and the file suffixes that name them.
FORMATS = ("csv", "tsv", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_LINE_FORMATS = ("csv", "tsv")
#: The delimiters a CSV file's first lines are sniffed for, comma first.
DELIMITERS = (",", "\t", ";", "|")
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_SNIFF_BYTES = 64 << 10
_SNIFF_LINES = 20
_BLOCK_SIZE = 4 << 20
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceInfo:
    """Where a table came from, for lineage: the files read and their content hashes."""

    uri: str
    """The source as given: a file path, or for a query the file or glob it reads."""
    path: list[str]
    """Every file read, as absolute paths, sorted."""
    format: str
    """``csv``, ``tsv``, ``parquet``, or ``sql`` for a DuckDB query."""
    sha256: list[str]
    """The sha256 of each file in ``path``, in the same order."""
    size: int
    """Bytes read, all files together."""
    sizes: list[int]
    """The size in bytes of each file in ``path``."""
    rows: int = 0
    """Rows in the table read."""
    sql: str | None = None
    """The query, for a DuckDB source."""

    @property
    def paths(self) -> list[str]:
        """Alias of ``path``."""
        return self.path

    @property
    def sha256s(self) -> list[str]:
        """Alias of ``sha256``."""
        return self.sha256

    @property
    def line_offset(self) -> int | None:
        """Lines before the first data row (the header), or ``None`` where rows are not
        lines of a text file (Parquet, query results)."""
        return 1 if self.format in _LINE_FORMATS else None

    @property
    def name(self) -> str:
        """A short name for messages: the file name, or which query."""
        if self.format != "sql":
            return Path(self.uri).name
        return "SQL query" if self.uri == "sql" else f"SQL query over {Path(self.uri).name}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_source(
    source: str | Path | None,
    *,
    format: str | None = None,
    sql: str | None = None,
    delimiter: str | None = None,
    strip: bool = True,
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
) -> tuple[pa.Table, SourceInfo]:
    """Read ``source`` into an Arrow table and describe what was read.

    ``format`` is ``csv``, ``tsv`` or ``parquet``; by default it comes from the suffix
    (``.csv``, ``.tsv``, ``.parquet``, ``.pq``, optionally followed by ``.gz`` or ``.bz2``
    for text). CSV columns come back as strings, with the spaces around each field
    removed when ``strip``.

    ``delimiter`` is one character (``tab`` and ``\\t`` name a tab). By default a TSV
    file is split on tabs and a CSV file on the one of :data:`DELIMITERS` that splits its
    first lines into the same number (2+) of fields, comma when several or none do; a
    file that then reads as one column whose name holds another delimiter is refused.

    With ``sql``, one DuckDB ``SELECT`` runs over files: ``source`` (optional) is a file
    or glob that the query can read as the table ``source``, and the query may also name
    files by path (``FROM 'a.csv'``, ``read_parquet('b/*.parquet')``). Lineage is exact:
    the query runs sandboxed and may read only those files, which ``SourceInfo.path``
    lists.
    """
    if sql is not None:
        from keel.data._sql import read_sql

        return read_sql(source or None, sql)
    if source is None or str(source) == "":
        raise InvalidInput("read_source: give a file to read, or a SQL query (sql=...)")
    path = _existing_file(source)
    fmt = _format_of(path, format)
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(file_sha256, path)
        if fmt == "parquet":
            table = _read_parquet(path)
        else:
            sep = _check_delimiter(delimiter)
            if sep is None:
                sep = "\t" if fmt == "tsv" else _sniff_delimiter(path)
            table = _read_csv(path, sep, strip=strip, max_field_bytes=max_field_bytes)
            if delimiter is None:
                _refuse_one_hidden_column(path, table, sep)
        info = SourceInfo(
            uri=str(path),
            path=[str(path)],
            format=fmt,
            sha256=[digest.result()],
            size=path.stat().st_size,
            sizes=[path.stat().st_size],
            rows=table.num_rows,
        )
    return table, info


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_column_names(names: list[str], where: str) -> None:
    """Refuse empty and repeated column names, naming their positions."""
    first: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if not name.strip():
            raise InvalidInput(
                f"{where}: column {i} has no name; give it one (a CSV written from pandas "
                f"with its index has an empty first header: write it with index=False)"
            )
        if name in first:
            raise InvalidInput(
                f"{where}: column name {name!r} appears twice (columns {first[name]} and "
                f"{i}); rename one of them"
            )
        first[name] = i


def _existing_file(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise InvalidInput(f"{str(source)!r}: no such file; check the path")
    if not path.is_file():
        raise InvalidInput(f"{str(source)!r} is not a file; name a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path.name} is empty (0 bytes); expected a header and rows")
    return path.resolve()


def _format_of(path: Path, format: str | None) -> str:
    if format is not None:
        fmt = format.lower().lstrip(".")
        if fmt not in FORMATS:
            raise InvalidInput(
                f"unknown format {format!r} for {path.name}; expected one of {', '.join(FORMATS)}"
            )
        return fmt
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in (".gz", ".bz2"):
        suffixes.pop()
    guessed = _SUFFIXES.get(suffixes[-1] if suffixes else "")
    if guessed is None:
        raise InvalidInput(
            f"cannot tell the format of {path.name} from its suffix; pass format= one of "
            f"{', '.join(FORMATS)} (known suffixes: {', '.join(_SUFFIXES)})"
        )
    return guessed


def _check_delimiter(delimiter: str | None) -> str | None:
    if delimiter is None:
        return None
    sep = _DELIMITER_NAMES.get(delimiter.lower(), delimiter) if isinstance(delimiter, str) else ""
    if not isinstance(sep, str) or len(sep) != 1 or sep in '\r\n"':
        raise InvalidInput(
            f"delimiter: expected one character such as ',' ';' '|' or 'tab', got {delimiter!r}"
        )
    return sep


def _sniff_delimiter(path: Path) -> str:
    """The delimiter that splits the first lines into one width of 2+ fields: comma if it
    does, else the one giving the most fields; comma when none does."""
    try:
        with open_binary(path) as raw:
            sample = raw.read(_SNIFF_BYTES)
    except (OSError, EOFError):
        return ","  # the reader says what is wrong with the file
    text = sample.decode("utf-8-sig", errors="replace")
    lines = text.split("\n")
    if len(sample) == _SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # cut mid-line
    sample_text = "\n".join(line for line in lines[:_SNIFF_LINES] if line.strip())
    widths: dict[str, int] = {}
    for sep in DELIMITERS:
        try:
            seen = {len(row) for row in csv.reader(io.StringIO(sample_text), delimiter=sep)}
        except csv.Error:
            continue
        if len(seen) == 1 and (width := seen.pop()) > 1:
            widths[sep] = width
    if not widths or "," in widths:
        return ","
    return max(widths, key=lambda sep: (widths[sep], -DELIMITERS.index(sep)))


def _refuse_one_hidden_column(path: Path, table: pa.Table, sep: str) -> None:
    """A one-column read whose header holds another delimiter is a wrong delimiter."""
    if table.num_columns != 1:
        return
    header = table.column_names[0]
    others = [d for d in DELIMITERS if d != sep and d in header]
    if others:
        raise InvalidInput(
            f"{path.name}: the header {header!r} reads as one column when split on {sep!r}, "
            f"but it holds {others[0]!r}; if the file is separated by {others[0]!r}, pass "
            f"--delimiter {others[0]!r} (delimiter={others[0]!r} in Python)"
        )


def _read_parquet(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"{path.name} cannot be read as Parquet: {exc}") from exc
    check_column_names(table.column_names, path.name)
    if table.num_rows == 0:
        raise InvalidInput(f"{path.name} has columns but no rows")
    return table


def _read_csv(path: Path, delimiter: str, *, strip: bool, max_field_bytes: int) -> pa.Table:
    header = _read_header(path, delimiter, max_field_bytes)
    if strip:
        header = [name.strip() for name in header]
    check_column_names(header, f"{path.name} line 1")
    table = _parse_csv(path, header, delimiter, max_field_bytes)
    if table.num_rows == 0:
        raise InvalidInput(f"{path.name} has a header but no rows")
    _check_field_sizes(table, path, delimiter, max_field_bytes)
    if strip:
        table = pa.table({n: pc.ascii_trim_whitespace(table[n]) for n in header})
    return table


def _read_header(path: Path, delimiter: str, max_field_bytes: int) -> list[str]:
    try:
        with open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            header = next(csv.reader(text, delimiter=delimiter), None)
    except (UnicodeDecodeError, csv.Error, OSError, EOFError) as exc:
        message = describe_csv_problem(path, delimiter=delimiter, max_field_bytes=max_field_bytes)
        raise InvalidInput(message or f"{path.name} cannot be read: {exc}") from exc
    if header is None:
        raise InvalidInput(f"{path.name} has no header line and no rows")
    if not header:
        raise InvalidInput(f"{path.name} line 1 is empty; expected the header (column names)")
    return header


def _parse_csv(path: Path, header: list[str], delimiter: str, max_field_bytes: int) -> pa.Table:
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    block_size = max(_BLOCK_SIZE, 2 * max_field_bytes)
    for attempt in range(2):
        read = pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=block_size)
        try:
            return pacsv.read_csv(
                path, read_options=read, parse_options=parse, convert_options=convert
            )
        except pa.ArrowInvalid as exc:
            if "straddl" in str(exc) and attempt == 0:  # a row longer than a block
                block_size = min(max(path.stat().st_size + 1, block_size), (1 << 31) - 1)
                continue
            message = describe_csv_problem(
                path, delimiter=delimiter, max_field_bytes=max_field_bytes
            )
            raise InvalidInput(message or f"{path.name} cannot be read as CSV: {exc}") from exc
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(f"{path.name} cannot be read as CSV: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _check_field_sizes(table: pa.Table, path: Path, delimiter: str, limit: int) -> None:
    for name in table.column_names:
        longest = pc.max(pc.binary_length(table[name])).as_py() or 0
        if longest > limit:
            message = describe_csv_problem(path, delimiter=delimiter, max_field_bytes=limit)
            raise InvalidInput(
                message
                or f"{path.name} column {name!r}: a field of {longest:,} bytes is larger than "
                f"the limit of {limit:,} bytes; raise max_field_bytes if the value is real"
            )
