"""Tensor columns: one fixed-shape array per row (an image, a window of a series).

A tensor column's schema entry has ``type: tensor``, ``dtype`` (a NumPy name such as
``float32``) and ``shape`` (the per-row shape, no batch dimension, e.g. ``[1, 8, 8]``).
In Parquet it is pyarrow's ``fixed_shape_tensor`` extension type, so a data set with
images stays one Parquet blob. In pandas (``load_frame``) each cell is a C-contiguous
``np.ndarray`` of the per-row shape; :func:`tensor_array` stacks a column into one
``[N, *shape]`` array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from keel.data._types import TENSOR_DTYPES
from keel.errors import InvalidInput

__all__ = ["check_tensor_column", "tensor_array", "tensor_column", "tensor_schema"]


def tensor_schema(name: str, values: np.ndarray) -> dict[str, Any]:
    """The schema entry of a tensor column holding ``values`` (``[N, *shape]``)."""
    return {
        "name": name,
        "type": "tensor",
        "dtype": values.dtype.name,
        "shape": [int(n) for n in values.shape[1:]],
    }


def tensor_column(values: np.ndarray) -> pa.Array:
    """``values`` (``[N, *shape]``, N rows) as a ``fixed_shape_tensor`` Arrow array."""
    if values.dtype.name not in TENSOR_DTYPES:
        raise InvalidInput(
            f"a tensor column holds numbers or booleans ({', '.join(TENSOR_DTYPES)}), "
            f"got dtype {values.dtype}"
        )
    if values.ndim < 2:
        raise InvalidInput(f"a tensor column needs [rows, *shape] values, got shape {values.shape}")
    return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(values))


def check_tensor_column(arr: pa.ChunkedArray, col: Any) -> pa.ChunkedArray:
    """``arr`` when it is the tensor type ``col`` declares; else ``InvalidInput``."""
    expected = col.arrow_type
    if arr.type != expected:
        raise InvalidInput(
            f"column {col.name!r}: expected a tensor of {col.dtype} {list(col.shape)}, "
            f"got {arr.type}"
        )
    return arr


def to_ndarray(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``fixed_shape_tensor`` column as one ``[N, *shape]`` array."""
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks == 0:
            typ = arr.type
            dtype = np.dtype(typ.value_type.to_pandas_dtype())
            return np.empty((0, *typ.shape), dtype=dtype)
        arr = arr.combine_chunks()
    return np.ascontiguousarray(arr.to_numpy_ndarray())


def _entry(column_schema: Any) -> tuple[str, np.dtype, tuple[int, ...]]:
    get: Callable[[str], Any] = (
        column_schema.get if isinstance(column_schema, dict) else column_schema.__getattribute__
    )
    name, typ = get("name"), get("type")
    if typ != "tensor":
        raise InvalidInput(f"column {name!r}: expected a tensor column schema, got type {typ!r}")
    return name, np.dtype(get("dtype")), tuple(int(n) for n in get("shape"))


def tensor_array(frame_or_series: Any, column_schema: Any) -> np.ndarray:
    """The tensor column of ``frame_or_series`` (a DataFrame holding the column, or the
    column itself) as one C-contiguous ``[N, *shape]`` array of the schema's dtype.

    ``column_schema`` is a schema entry (dict or ``ColumnSchema``) of type ``tensor``.
    A cell may be an array or nested lists; one of another shape is refused naming its
    row, and the shape expected and given.
    """
    name, dtype, shape = _entry(column_schema)
    series = frame_or_series
    if hasattr(frame_or_series, "columns"):
        if name not in frame_or_series.columns:
            raise InvalidInput(
                f"tensor column {name!r} is missing; the frame has {list(frame_or_series.columns)}"
            )
        series = frame_or_series[name]
    cells = list(series)
    if not cells:
        return np.empty((0, *shape), dtype=dtype)
    try:
        out = np.stack([np.asarray(c, dtype=dtype) for c in cells])
    except (ValueError, TypeError):
        out = None
    if out is None or out.shape[1:] != shape:
        for i, cell in enumerate(cells):
            got = np.shape(cell) if cell is not None else None
            if got != shape:
                raise InvalidInput(
                    f"tensor column {name!r} row {i}: expected shape {list(shape)}, got "
                    f"{'no value' if got is None else list(got)}"
                ) from None
        raise InvalidInput(f"tensor column {name!r}: cells cannot be read as {dtype} numbers")
    return np.ascontiguousarray(out)


def tensor_cells(values: np.ndarray) -> list[np.ndarray]:
    """One C-contiguous per-row view for each row of ``values`` (no copy)."""
    values = np.ascontiguousarray(values)
    return list(values)


def tensor_profile(arr: pa.ChunkedArray, col: Any, quantiles: tuple[float, ...]) -> dict:
    """Statistics of a tensor column: its ``dtype`` and ``shape``; ``min``, ``max``,
    ``mean`` and ``std`` over every element; ``row_mean`` and ``row_std`` (quantiles of
    each row's mean and standard deviation: mean intensity of an image, level of a
    window); for 1-D shapes up to 1,024 long, ``position_mean`` and ``position_std``."""
    values = to_ndarray(arr)
    out: dict[str, Any] = {"dtype": col.dtype, "shape": list(col.shape)}
    if len(values) == 0:
        return out | dict.fromkeys(("min", "max", "mean", "std", "row_mean", "row_std"))
    flat = values.reshape(len(values), -1).astype(np.float64)
    finite = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat.ravel()
    row_mean, row_std = flat.mean(axis=1), flat.std(axis=1)
    out |= {
        "min": _num(finite.min()) if finite.size else None,
        "max": _num(finite.max()) if finite.size else None,
        "mean": _num(finite.mean()) if finite.size else None,
        "std": _num(finite.std()) if finite.size else None,
        "row_mean": _quantiles(row_mean, quantiles),
        "row_std": _quantiles(row_std, quantiles),
    }
    if len(col.shape) == 1 and col.shape[0] <= 1024:
        out["position_mean"] = [_num(v) for v in flat.mean(axis=0)]
        out["position_std"] = [_num(v) for v in flat.std(axis=0)]
    return out


def _quantiles(values: np.ndarray, quantiles: tuple[float, ...]) -> dict[str, Any]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    found = np.quantile(values, quantiles)
    return {format(q, "g"): _num(v) for q, v in zip(quantiles, found, strict=True)}


def _num(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
