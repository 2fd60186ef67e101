"""Casting a raw column to a logical type, vectorised, and marking what does not fit.

Every caster takes the raw column and returns the cast values plus two masks: ``missing``
(null, NaN, or a null marker such as ``?``) and ``bad`` (a value that is there but does
not fit the type or the category list). The happy path is one Arrow cast per column;
regular expressions run only on columns where that cast fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from keel.data._types import ARROW_TYPES

if TYPE_CHECKING:
    from keel.data._schema import ColumnSchema

__all__ = ["Cast", "cast_column", "is_text", "missing_mask", "try_cast"]

_INT = r"^[+-]?\d{1,18}(\.0*)?$"
_FLOAT = r"(?i)^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf(inity)?|nan)$"
_DATETIME = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,9})?)?)?)?$"
TRUE_TEXT = ("true", "t", "yes", "y", "1")
FALSE_TEXT = ("false", "f", "no", "n", "0")


@dataclass(frozen=True)
class Cast:
    """A column cast to its logical type; ``values`` is null wherever ``missing`` or ``bad``."""

    values: pa.ChunkedArray
    missing: pa.ChunkedArray
    bad: pa.ChunkedArray


def is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def cast_column(raw: pa.ChunkedArray, col: ColumnSchema, null_values: Sequence[str]) -> Cast:
    """Cast ``raw`` to ``col``'s logical type, treating ``null_values`` text as missing."""
    arr = _plain(raw)
    return _CASTERS[col.type](arr, col, tuple(null_values))


def missing_mask(arr: pa.ChunkedArray, null_values: Sequence[str]) -> pa.ChunkedArray:
    """True where a value is null, NaN, or (in a text column) one of ``null_values``."""
    mask = pc.is_null(arr, nan_is_null=True)
    if is_text(arr.type) and null_values:
        mask = pc.or_(mask, pc.is_in(arr, value_set=pa.array(list(null_values), arr.type)))
    return mask


def _plain(raw: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    arr = raw if isinstance(raw, pa.ChunkedArray) else pa.chunked_array([raw])
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_large_string(arr.type) or pa.types.is_null(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _blank(arr: pa.ChunkedArray, mask: pa.ChunkedArray) -> pa.ChunkedArray:
    """``arr`` with nulls where ``mask`` is true."""
    if not pc.any(mask).as_py():
        return arr
    return pc.if_else(mask, pa.scalar(None, arr.type), arr)


def _finish(values: pa.ChunkedArray, missing: pa.ChunkedArray, present: pa.ChunkedArray) -> Cast:
    bad = pc.and_(pc.is_valid(present), pc.is_null(values))
    if pa.types.is_floating(values.type):  # NaN is a missing value, never a bad one
        nan = pc.fill_null(pc.is_nan(values), False)
        if pc.any(nan).as_py():
            missing = pc.or_(missing, nan)
            values = _blank(values, nan)
    return Cast(values=values, missing=missing, bad=bad)


def try_cast(arr: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | None:
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


@lru_cache(maxsize=64)
def _castable_tokens(null_values: tuple[str, ...], target: pa.DataType) -> bool:
    """Whether a null marker would parse as a value of ``target`` (like ``-999``)."""
    for token in null_values:
        value = try_cast(pa.chunked_array([[token]]), target)
        if value is not None and not pc.any(pc.is_nan(value)).as_py():
            return True
    return False


def _to_number(arr: pa.ChunkedArray, col: ColumnSchema, nulls: tuple[str, ...]) -> Cast:
    target = ARROW_TYPES[col.type]
    if is_text(arr.type):
        fast = try_cast(arr, target)
        if fast is not None and not _castable_tokens(nulls, target):
            return _finish(fast, pc.is_null(arr), arr)
        missing = missing_mask(arr, nulls)
        present = _blank(arr, missing)
        return _finish(_parse_number(present, target), missing, present)
    missing = missing_mask(arr, nulls)
    present = _blank(arr, missing)
    return _finish(_convert_number(present, target), missing, present)


def _parse_number(present: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    text = pc.ascii_trim_whitespace(present)
    if pa.types.is_integer(target):
        ok = pc.match_substring_regex(text, _INT)
        text = pc.replace_substring_regex(text, r"^\+|\.0*$", "")
    else:
        ok = pc.match_substring_regex(text, _FLOAT)
    return pc.cast(_blank(text, pc.invert(ok)), target)


def _convert_number(present: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    typ = present.type
    numeric = pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)
    if not (numeric or pa.types.is_boolean(typ)):
        return _nulls(present, target)
    exact = try_cast(present, target)
    if exact is not None:
        return exact
    x = pc.cast(present, pa.float64(), safe=False)
    if pa.types.is_floating(target):
        return x
    whole = pc.and_(pc.equal(pc.floor(x), x), pc.less(pc.abs(x), 2.0**63))
    return pc.cast(_blank(x, pc.invert(whole)), target, safe=False)


def _nulls(like: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    return pa.chunked_array([pa.nulls(len(c), target) for c in like.chunks], target)


def _to_bool(arr: pa.ChunkedArray, col: ColumnSchema, nulls: tuple[str, ...]) -> Cast:
    missing = missing_mask(arr, nulls)
    present = _blank(arr, missing)
    if pa.types.is_boolean(arr.type):
        return _finish(present, missing, present)
    if not is_text(arr.type):
        present = try_cast(present, pa.string()) or _nulls(present, pa.string())
    text = pc.utf8_lower(pc.ascii_trim_whitespace(present))
    yes = pc.is_in(text, value_set=pa.array(TRUE_TEXT))
    no = pc.is_in(text, value_set=pa.array(FALSE_TEXT))
    values = pc.if_else(yes, True, pc.if_else(no, False, pa.scalar(None, pa.bool_())))
    return _finish(values, missing, present)


def _to_datetime(arr: pa.ChunkedArray, col: ColumnSchema, nulls: tuple[str, ...]) -> Cast:
    target = ARROW_TYPES["datetime"]
    missing = missing_mask(arr, nulls)
    present = _blank(arr, missing)
    if pa.types.is_temporal(arr.type):
        return _finish(try_cast(present, target) or _nulls(present, target), missing, present)
    if not is_text(arr.type):
        return _finish(_nulls(present, target), missing, present)
    if col.format:
        values = pc.strptime(present, format=col.format, unit="us", error_is_null=True)
        return _finish(values, missing, present)
    values = try_cast(present, target)
    if values is None:
        text = pc.ascii_trim_whitespace(present)
        text = _blank(text, pc.invert(pc.match_substring_regex(text, _DATETIME)))
        values = try_cast(text, target) or _parse_dates_one_by_one(text)
    return _finish(values, missing, present)


def _parse_dates_one_by_one(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """The slow path for dates that look right but are not (month 13): per distinct value."""
    distinct = pc.unique(text).drop_null()
    parsed = [_iso_or_none(v) for v in distinct.to_pylist()]
    lookup = pa.array(parsed, pa.timestamp("us"))
    return pc.take(lookup, pc.index_in(text, value_set=distinct))


def _iso_or_none(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _to_text(arr: pa.ChunkedArray, nulls: tuple[str, ...]) -> tuple[pa.ChunkedArray, ...]:
    missing = missing_mask(arr, nulls)
    present = _blank(arr, missing)
    if not is_text(arr.type):
        present = try_cast(present, pa.string()) or _nulls(present, pa.string())
    return present, missing


def _to_string(arr: pa.ChunkedArray, col: ColumnSchema, nulls: tuple[str, ...]) -> Cast:
    present, missing = _to_text(arr, nulls)
    return _finish(present, missing, present)


def _to_category(arr: pa.ChunkedArray, col: ColumnSchema, nulls: tuple[str, ...]) -> Cast:
    present, missing = _to_text(arr, nulls)
    if col.categories is None:
        values = present.combine_chunks().dictionary_encode()
        values = pa.chunked_array([values.cast(ARROW_TYPES["category"])])
        return _finish(values, missing, present)
    dictionary = pa.array(col.categories, pa.string())
    index = pc.index_in(present, value_set=dictionary)
    chunks = [pa.DictionaryArray.from_arrays(c, dictionary) for c in index.chunks]
    values = pa.chunked_array(chunks, ARROW_TYPES["category"])
    return _finish(values, missing, present)


_CASTERS: dict[str, Callable[[pa.ChunkedArray, ColumnSchema, tuple[str, ...]], Cast]] = {
    "int": _to_number,
    "float": _to_number,
    "bool": _to_bool,
    "string": _to_string,
    "category": _to_category,
    "datetime": _to_datetime,
}
