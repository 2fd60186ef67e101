"""Validating a raw table against a schema: good rows cast to the schema's types, bad
rows kept raw with the reason, and every problem named by row, line and column.

Everything is vectorised per column; rows are only visited one by one for the few
problems that end up in a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from keel.data._cast import cast_column
from keel.data._read import SourceInfo, check_column_names
from keel.data._schema import ColumnSchema, Schema
from keel.errors import ValidationFailed

__all__ = ["MAX_REPORTED_PROBLEMS", "ValidationResult", "validate"]

#: How many problems a ``ValidationFailed`` carries in ``problems`` (the message shows fewer).
MAX_REPORTED_PROBLEMS = 1000
_SHOWN_CHARS = 60
_LINE_SUFFIXES = (".csv", ".tsv", ".txt")


@dataclass
class ValidationResult:
    """What validation found. ``good`` holds the rows that fit, cast to the schema's
    types; ``bad`` the raw rows that do not, with ``_row`` (1-based data row),
    ``_column`` and ``_problem``; ``problem_table`` one row per problem cell."""

    good: pa.Table
    bad: pa.Table | None
    source: str
    rows: int
    line_offset: int | None
    problem_table: pa.Table = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.bad is None

    @property
    def bad_rows(self) -> int:
        return 0 if self.bad is None else self.bad.num_rows

    @cached_property
    def problems(self) -> list[dict[str, Any]]:
        """Each problem as ``{file, row, line, column, expected, got, problem, message}``;
        ``problem`` is one of wrong_type, missing_value, out_of_range, unknown_category,
        too_long. ``line`` is ``None`` where the source has no lines (Parquet, SQL)."""
        return self._problem_dicts(self.problem_table.num_rows)

    def raise_if_bad(self, limit: int = 20) -> None:
        """Raise ``ValidationFailed`` listing the first ``limit`` problems, if any."""
        if self.ok:
            return
        shown = self._problem_dicts(limit)
        lines = [f"{self._where(p)}, {p['message']}" for p in shown]
        more_rows = self.bad_rows - len({p["row"] for p in shown})
        more_problems = self.problem_table.num_rows - len(shown)
        if more_rows:
            lines.append(f"... and {more_rows:,} more rows")
        elif more_problems:
            lines.append(f"... and {more_problems:,} more problems in these rows")
        head = f"{self.source}: {self.bad_rows:,} of {self.rows:,} rows break the schema"
        raise ValidationFailed(
            head + ":\n  " + "\n  ".join(lines),
            problems=self._problem_dicts(MAX_REPORTED_PROBLEMS),
        )

    def _where(self, problem: dict[str, Any]) -> str:
        line = f" (line {problem['line']:,})" if problem["line"] is not None else ""
        return f"{problem['file']} row {problem['row']:,}{line}"

    def _problem_dicts(self, limit: int) -> list[dict[str, Any]]:
        rows = self.problem_table.slice(0, limit).to_pylist()
        offset = self.line_offset
        for p in rows:
            p["file"] = self.source
            p["line"] = None if offset is None else p["row"] + offset
        keys = ("file", "row", "line", "column", "expected", "got", "problem", "message")
        return [{k: p[k] for k in keys} for p in rows]


def validate(
    table: pa.Table,
    schema: Schema,
    *,
    source: str | SourceInfo,
    line_offset: int | None | Literal["auto"] = "auto",
) -> ValidationResult:
    """Check ``table`` against ``schema`` and split it into good and bad rows.

    ``source`` names the data in messages (a ``SourceInfo`` from ``read_source`` or a
    name). ``line_offset`` is the number of lines before the first data row, so that
    messages give the line in the file as well as the row; by default 1 (the header)
    for CSV and TSV sources and none for Parquet and SQL. Missing columns, or columns
    the schema does not list when ``schema.extra_columns`` is ``error``, raise
    ``ValidationFailed`` at once; row problems are returned in the result.
    """
    name, offset = _name_and_offset(source, line_offset)
    check_column_names(table.column_names, name)
    _check_columns(table, schema, name)
    checked = [_check_column(table[c.name], c, schema.null_values) for c in schema.columns]
    good = pa.Table.from_arrays([c.values for c in checked], schema=schema.arrow_schema())
    masks = [mask for c in checked for _, mask in c.findings]
    if not masks:
        return ValidationResult(good, None, name, table.num_rows, offset, _no_problems())
    bad_mask = masks[0]
    for mask in masks[1:]:
        bad_mask = pc.or_(bad_mask, mask)
    problems = _problem_table(table, schema.columns, checked)
    return ValidationResult(
        good=good.filter(pc.invert(bad_mask)),
        bad=_bad_rows(table, problems),
        source=name,
        rows=table.num_rows,
        line_offset=offset,
        problem_table=problems,
    )


@dataclass
class _Checked:
    values: pa.ChunkedArray
    findings: list[tuple[str, pa.ChunkedArray]]


def _check_column(raw: pa.ChunkedArray, col: ColumnSchema, nulls: Sequence[str]) -> _Checked:
    if col.type == "tensor":
        from keel.data._tensor import check_tensor_column

        return _Checked(values=check_tensor_column(raw, col), findings=[])
    cast = cast_column(raw, col, nulls)
    found = [("unknown_category" if col.type == "category" else "wrong_type", cast.bad)]
    if not col.nullable:
        found.append(("missing_value", cast.missing))
    values = cast.values
    if col.min is not None:
        found.append(("out_of_range", pc.less(values, col.min)))
    if col.max is not None:
        found.append(("out_of_range", pc.greater(values, col.max)))
    if col.max_length is not None:
        found.append(("too_long", pc.greater(pc.utf8_length(values), col.max_length)))
    findings = []
    for kind, mask in found:
        mask = pc.fill_null(mask, False)
        if pc.any(mask).as_py():
            findings.append((kind, mask))
    return _Checked(values=values, findings=findings)


def _name_and_offset(
    source: str | SourceInfo, line_offset: int | None | Literal["auto"]
) -> tuple[str, int | None]:
    if isinstance(source, SourceInfo):
        auto = source.line_offset
        name = source.name
    else:
        name = str(source)
        suffixes = [s.lower() for s in Path(name).suffixes[-2:] if s.lower() not in (".gz", ".bz2")]
        auto = 1 if suffixes and suffixes[-1] in _LINE_SUFFIXES else None
    return name, auto if line_offset == "auto" else line_offset


def _check_columns(table: pa.Table, schema: Schema, name: str) -> None:
    have = table.column_names
    missing = [n for n in schema.names if n not in set(have)]
    extra = [n for n in have if n not in set(schema.names)]
    if schema.extra_columns == "drop":
        extra = []
    if not missing and not extra:
        return
    parts, problems = [], []
    if missing:
        parts.append(f"is missing column(s) {_names(missing)} that the schema requires")
        problems += [_column_problem(name, n, "missing_column", "the column") for n in missing]
    if extra:
        parts.append(
            f"has column(s) {_names(extra)} that the schema does not list (add them to the "
            f"schema, or set extra_columns: drop)"
        )
        problems += [_column_problem(name, n, "extra_column", "no such column") for n in extra]
    raise ValidationFailed(f"{name} {'; and '.join(parts)}; it has {_names(have)}", problems)


def _column_problem(file: str, column: str, problem: str, expected: str) -> dict[str, Any]:
    got = "nothing" if problem == "missing_column" else "the column"
    return {
        "file": file,
        "row": None,
        "line": None,
        "column": column,
        "expected": expected,
        "got": got,
        "problem": problem,
        "message": f"column {column!r}: {problem.replace('_', ' ')}",
    }


def _names(names: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


_PROBLEM_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("order", pa.int32()),
        ("column", pa.string()),
        ("problem", pa.string()),
        ("expected", pa.string()),
        ("got", pa.string()),
        ("message", pa.string()),
    ]
)


def _no_problems() -> pa.Table:
    return _PROBLEM_SCHEMA.empty_table()


def _problem_table(
    table: pa.Table, columns: list[ColumnSchema], checked: list[_Checked]
) -> pa.Table:
    parts = []
    for order, (col, check) in enumerate(zip(columns, checked, strict=True)):
        if not check.findings:
            continue
        text = _as_text(table[col.name])
        for kind, mask in check.findings:
            parts.append(_problems_of(text, col, order, kind, mask))
    problems = pa.concat_tables(parts)
    return problems.sort_by([("row", "ascending"), ("order", "ascending")])


def _problems_of(
    text: pa.ChunkedArray, col: ColumnSchema, order: int, kind: str, mask: pa.ChunkedArray
) -> pa.Table:
    index = pc.indices_nonzero(mask)
    n = len(index)
    got = pc.take(text, index)
    expected = describe_expected(col, kind)
    shown = _shown(got)
    prefix = f"column {col.name!r}: expected {expected}, got "
    message = pc.binary_join_element_wise(prefix, shown, "")
    return pa.table(
        [
            pc.add(pc.cast(index, pa.int64()), 1),
            pa.repeat(pa.scalar(order, pa.int32()), n),
            pa.repeat(col.name, n),
            pa.repeat(kind, n),
            pa.repeat(expected, n),
            got,
            message,
        ],
        schema=_PROBLEM_SCHEMA,
    )


def _as_text(raw: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        return raw.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array([pa.array([str(v) for v in raw.to_pylist()], pa.string())])


def _shown(got: pa.Array) -> pa.Array:
    cut = pc.utf8_slice_codeunits(got, 0, _SHOWN_CHARS)
    long = pc.greater(pc.utf8_length(got), _SHOWN_CHARS)
    cut = pc.if_else(long, pc.binary_join_element_wise(cut, "...", ""), cut)
    quoted = pc.binary_join_element_wise("'", cut, "'", "")
    return pc.fill_null(quoted, "null")


def describe_expected(col: ColumnSchema, kind: str) -> str:
    """What a column expects, for messages: ``int in [17, 90]``."""
    if kind == "missing_value":
        return "a value (the column is not nullable)"
    if kind == "unknown_category":
        cats = col.categories or []
        listed = ", ".join(repr(c) for c in cats[:12])
        return f"one of {listed}" + (f", ... ({len(cats)} categories)" if len(cats) > 12 else "")
    if kind == "too_long":
        return f"a string of at most {col.max_length:,} characters"
    base = {
        "bool": "bool (true/false, yes/no, 1/0)",
        "datetime": f"datetime ({col.format or 'ISO 8601, like 2024-01-31 or 2024-01-31 12:00'})",
    }.get(col.type, col.type)
    if col.min is not None and col.max is not None:
        return f"{base} in [{col.min}, {col.max}]"
    if col.min is not None:
        return f"{base} >= {col.min}"
    if col.max is not None:
        return f"{base} <= {col.max}"
    return base


def _bad_rows(table: pa.Table, problems: pa.Table) -> pa.Table:
    grouped = (
        problems.group_by("row", use_threads=False)
        .aggregate([("column", "list"), ("message", "list")])
        .sort_by("row")
    )
    rows = grouped["row"]
    bad = table.take(pc.subtract(rows, 1))
    bad = bad.append_column("_row", rows)
    bad = bad.append_column("_column", pc.binary_join(grouped["column_list"], ", "))
    return bad.append_column("_problem", pc.binary_join(grouped["message_list"], "; "))
