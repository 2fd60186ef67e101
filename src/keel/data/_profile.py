"""Profiling a validated table: per-column statistics, stored with each dataset version
and used later as the reference for drift monitoring.

The result is plain JSON data (no NaN: missing statistics are ``None``) and the same
table always gives the same profile.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.data._schema import ColumnSchema, Schema
from keel.errors import InvalidInput

__all__ = ["HISTOGRAM_BINS", "PROFILE_VERSION", "QUANTILES", "TOP_K", "profile"]

PROFILE_VERSION = 1
QUANTILES: tuple[float, ...] = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
HISTOGRAM_BINS = 20
TOP_K = 50


def profile(
    table: pa.Table, schema: Schema, *, top_k: int = TOP_K, bins: int = HISTOGRAM_BINS
) -> dict[str, Any]:
    """Statistics of each schema column of ``table`` (the ``good`` table of a validation).

    Every column has ``type``, ``count`` (rows) and ``null_count``. ``int`` and
    ``float`` columns add ``min``, ``max``, ``mean``, ``std`` (population, ddof=0),
    ``quantiles`` (``{"0.25": ...}``, linear interpolation as NumPy's default),
    ``histogram`` (``{"edges": [...], "counts": [...]}``, ``bins`` equal bins over the
    finite values) and ``infinite_count``. ``category``, ``string`` and ``bool`` columns
    add ``distinct``, ``top`` (the ``top_k`` most frequent values, most frequent first,
    ties by value) and ``other`` (the count of the remaining non-null values); ``string``
    adds ``length`` statistics; ``datetime`` adds ``min`` and ``max`` in ISO 8601.
    ``tensor`` columns add ``dtype``, ``shape``, ``min``, ``max``, ``mean`` and ``std``
    over all elements, and quantiles of each row's mean and std (``row_mean``,
    ``row_std``; see ``keel.data._tensor.tensor_profile``).
    """
    columns = {c.name: _profile_column(_column(table, c), c, top_k, bins) for c in schema.columns}
    return {"version": PROFILE_VERSION, "rows": table.num_rows, "columns": columns}


def _column(table: pa.Table, col: ColumnSchema) -> pa.ChunkedArray:
    if col.name not in table.column_names:
        raise InvalidInput(f"cannot profile column {col.name!r}: the table has no such column")
    arr = table[col.name]
    typ = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    expected = {
        "int": pa.types.is_integer,
        "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
        "bool": pa.types.is_boolean,
        "datetime": pa.types.is_temporal,
    }.get(col.type)
    if expected is not None and not expected(typ):
        raise InvalidInput(
            f"cannot profile column {col.name!r}: the schema says {col.type} but the table "
            f"holds {typ}; profile the good table that validate() returns"
        )
    return arr


def _profile_column(arr: pa.ChunkedArray, col: ColumnSchema, top_k: int, bins: int) -> dict:
    stats: dict[str, Any] = {"type": col.type, "count": len(arr), "null_count": arr.null_count}
    if col.type == "tensor":
        from keel.data._tensor import tensor_profile

        stats.update(tensor_profile(arr, col, QUANTILES))
    elif col.type in ("int", "float"):
        stats.update(_numeric(arr, bins, as_int=col.type == "int"))
    elif col.type == "datetime":
        bounds = pc.min_max(arr).as_py()
        stats.update({k: v.isoformat() if v is not None else None for k, v in bounds.items()})
    else:
        stats.update(_frequencies(arr, top_k))
        if col.type == "string":
            stats["length"] = _lengths(arr)
    return stats


def _numeric(arr: pa.ChunkedArray, bins: int, *, as_int: bool) -> dict[str, Any]:
    values = arr.drop_null().to_numpy()
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    out: dict[str, Any] = {"infinite_count": int(len(values) - len(finite))}
    if len(finite) == 0:
        keys = ("min", "max", "mean", "std", "quantiles", "histogram")
        return out | dict.fromkeys(keys)
    number = int if as_int else float
    counts, edges = np.histogram(finite, bins=bins)
    quantiles = np.quantile(finite, QUANTILES)
    return out | {
        "min": number(finite.min()),
        "max": number(finite.max()),
        "mean": _num(np.mean(finite, dtype=np.float64)),
        "std": _num(np.std(finite, dtype=np.float64)),
        "quantiles": {_key(q): _num(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "histogram": {"edges": [_num(e) for e in edges], "counts": counts.tolist()},
    }


def _frequencies(arr: pa.ChunkedArray, top_k: int) -> dict[str, Any]:
    text = arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr
    counts = pc.value_counts(text.drop_null())
    table = pa.table({"value": counts.field("values"), "count": counts.field("counts")})
    table = table.sort_by([("count", "descending"), ("value", "ascending")])
    top = table.slice(0, top_k)
    top_counts = top["count"].to_pylist()
    valid = len(arr) - arr.null_count
    return {
        "distinct": table.num_rows,
        "top": dict(zip(top["value"].to_pylist(), top_counts, strict=True)),
        "other": valid - sum(top_counts),
    }


def _lengths(arr: pa.ChunkedArray) -> dict[str, Any]:
    lengths = pc.utf8_length(arr.cast(pa.string()))
    bounds = pc.min_max(lengths).as_py()
    mean = pc.mean(lengths).as_py()
    return {"min": bounds["min"], "max": bounds["max"], "mean": _num(mean)}


def _key(q: float) -> str:
    return format(q, "g")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
