"""Tensor inputs of a served model: an image ``[N, 1, 8, 8]`` or a window ``[N, 24]`` given
as one named input of declared per-row ``shape`` and ``dtype`` (an ``input_schema`` entry of
type ``tensor``; the batch dimension is implied).

Inside the server a tensor travels in the request's block as ``float32 [n, *shape]`` under
the key ``tensor:NAME`` (what the exported graph reads). Decoding refuses, with ``400
invalid_tensor`` naming the input, the expected and the given: a shape other than the
declared one, an OIP datatype other than the declared dtype's, and NaN or infinite values
(naming the first such row). A value that is no number, or data shorter than its shape, is
``422 invalid_input`` as for columns.

The prediction log keeps no raw tensor: each row's :func:`summaries` (``NAME.mean``,
``NAME.std``, ``NAME.min``, ``NAME.max``, and for a sequence, a tensor of rank 1,
``NAME.last``), a handful of numbers whatever the tensor's size. keel.monitor computes the
same summaries of the training data, so drift of served images and sequences is drift of
these columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from math import prod
from typing import Any

import numpy as np

from keel.serve._errors import ServeError

__all__ = [
    "KEY",
    "TensorInput",
    "summaries",
    "summary_names",
    "tensor_from_oip",
    "tensor_from_rows",
]

KEY = "tensor:"  # a block's key for a tensor input: "tensor:X"

# OIP v2 datatypes of the dtypes a tensor column may declare.
_OIP = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
}
_NUMPY = {v: np.dtype(k) for k, v in _OIP.items()}
# The least magnitude that rounds to infinity as float32 (as in keel.serve._codec).
_F32_OVERFLOW = float(2**128 - 2**103)
SUMMARIES = ("mean", "std", "min", "max")


@dataclass(frozen=True)
class TensorInput:
    """One tensor input: its ``name``, per-row ``shape`` and declared ``dtype``."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> TensorInput:
        shape = tuple(int(d) for d in entry.get("shape") or ())
        return cls(str(entry["name"]), shape, str(entry.get("dtype") or "float32"))

    @property
    def key(self) -> str:
        return KEY + self.name

    @property
    def datatype(self) -> str:
        """The OIP v2 datatype of the declared dtype (``FP32`` for ``float32``)."""
        return _OIP.get(self.dtype, "FP32")

    @property
    def size(self) -> int:
        return prod(self.shape)

    def batch_shape(self, n: Any = "N") -> str:
        return "[" + ", ".join(map(str, (n, *self.shape))) + "]"

    def json_schema(self) -> dict[str, Any]:
        """One row's value: nested arrays of exactly the declared shape, of finite numbers."""
        item: dict[str, Any] = {
            "type": "number",
            "exclusiveMinimum": -_F32_OVERFLOW,
            "exclusiveMaximum": _F32_OVERFLOW,
        }
        if self.dtype.startswith(("int", "uint")):
            item = {"type": "integer"}
        for d in reversed(self.shape):
            item = {"type": "array", "items": item, "minItems": d, "maxItems": d}
        return item


def _bad_tensor(t: TensorInput, message: str, expected: str, got: str) -> ServeError:
    return ServeError(
        "invalid_tensor",
        f"input {t.name!r}: {message}",
        [{"field": t.name, "expected": expected, "got": got}],
    )


def _bad_shape(t: TensorInput, got: Any) -> ServeError:
    expected = f"shape {t.batch_shape()}"
    return _bad_tensor(t, f"expected shape {t.batch_shape()}, got {got}", expected, str(got))


def _invalid(t: TensorInput, row: int | None, expected: str, got: str) -> ServeError:
    where = f"row {row} " if row is not None else ""
    detail: dict[str, Any] = {"field": t.name, "expected": expected, "got": got}
    if row is not None:
        detail = {"row": row, **detail}
    return ServeError(
        "invalid_input", f"{where}field {t.name!r}: expected {expected}, got {got}", [detail]
    )


def _finite(t: TensorInput, arr: np.ndarray) -> np.ndarray:
    """``arr`` as float32 ``[n, *shape]``; NaN, infinities and values past float32's range
    are refused naming the first row that has one."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    ok = np.isfinite(out.reshape(len(out), -1)).all(axis=1)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        flat = np.asarray(arr).reshape(len(out), -1)[row]
        bad = flat[~np.isfinite(flat.astype(np.float64))]
        got = str(bad[0]) if bad.size else "a value past float32's range"
        raise ServeError(
            "invalid_tensor",
            f"input {t.name!r} row {row}: expected finite numbers, got {got}",
            [{"row": row, "field": t.name, "expected": "finite numbers", "got": got}],
        )
    return out


_PLAIN = frozenset({int, float})


def _plain(values: Any, depth: int) -> bool:
    """Whether nested JSON lists ``depth`` levels deep hold only numbers (not booleans,
    which NumPy would quietly read as 0 and 1)."""
    flat = values
    try:
        for _ in range(depth):
            flat = chain.from_iterable(flat)
        return set(map(type, flat)) <= _PLAIN
    except TypeError:  # a number where a list belongs: not plain
        return False


def _numbers(t: TensorInput, arr: np.ndarray, values: list[Any], offset: int) -> None:
    """Refuse rows of something other than numbers (text, null, booleans), naming the first
    such row."""
    if arr.dtype.kind in "iuf" and _plain(values, len(t.shape)):
        return
    for i, v in enumerate(values):
        a = np.asarray(v) if not isinstance(v, np.ndarray) else v
        if a.dtype.kind not in "iuf" or not _plain([v], len(t.shape)):
            got = "null" if v is None else _what(a) if a.dtype.kind not in "iuf" else "booleans"
            raise _invalid(t, i + offset, f"an array of numbers of shape {list(t.shape)}", got)
    raise _invalid(t, None, "numbers", _what(arr))  # pragma: no cover - caught per row above


def _what(a: np.ndarray) -> str:
    kind = a.dtype.kind
    if kind == "b":
        return "booleans"
    if kind in "US":
        return "text"
    return "values that are not numbers (null, text or numbers past float32's range)"


def tensor_from_rows(t: TensorInput, values: list[Any], offset: int = 0) -> np.ndarray:
    """The batch from one value per row, each nested lists of the declared per-row shape
    (a JSON row ``{"X": [[[...]]]}``)."""
    try:
        arr = np.array(values)
    except (ValueError, OverflowError):  # ragged rows
        arr = None
    if arr is None or arr.dtype == object or arr.shape[1:] != t.shape:
        for i, v in enumerate(values):
            got: list[int] | str
            try:
                got = list(np.shape(v))
            except ValueError:
                got = "ragged nested arrays"
            if got != list(t.shape):
                raise ServeError(
                    "invalid_tensor",
                    f"row {i + offset} input {t.name!r}: expected shape {list(t.shape)} (the "
                    f"batch {t.batch_shape()}), got {got}",
                    [
                        {
                            "row": i + offset,
                            "field": t.name,
                            "expected": f"shape {list(t.shape)}",
                            "got": str(got),
                        }
                    ],
                )
        if arr is None or arr.dtype == object:
            arr = np.array(values, dtype=object)
    _numbers(t, arr, values, offset)
    return _finite(t, arr)


def tensor_from_oip(
    t: TensorInput, shape: Any, datatype: Any, data: Any, raw: bytes | None
) -> np.ndarray:
    """The batch from an OIP v2 tensor ``{"shape", "datatype", "data"}`` (``data`` flat in
    row-major order or nested as the shape), or its binary bytes ``raw``."""
    if datatype != t.datatype:
        raise _bad_tensor(
            t,
            f"expected datatype {t.datatype} (declared {t.dtype}), got {_short(datatype)}",
            f"datatype {t.datatype}",
            _short(datatype),
        )
    ok = (
        isinstance(shape, list)
        and all(type(d) is int for d in shape)
        and len(shape) == len(t.shape) + 1
        and shape[0] > 0
        and tuple(shape[1:]) == t.shape
    )
    if not ok:
        raise _bad_shape(t, _short(shape))
    n = shape[0]
    if raw is not None:
        dtype = _NUMPY[t.datatype].newbyteorder("<")
        if len(raw) != n * t.size * dtype.itemsize:
            expected = f"{n * t.size * dtype.itemsize} bytes (shape {shape})"
            raise _invalid(t, None, expected, f"{len(raw)} bytes")
        arr = np.frombuffer(raw, dtype=dtype).reshape(n, *t.shape)
        return _finite(t, arr)
    if not isinstance(data, list):
        raise _invalid(t, None, f"data: an array of {n * t.size} numbers", _short(data))
    try:
        arr = np.array(data)
    except (ValueError, OverflowError):
        arr = np.array([None])
    if arr.dtype != object and arr.size == n * t.size and arr.ndim in (1, len(shape)):
        if arr.ndim == len(shape) and list(arr.shape) != shape:
            raise _invalid(t, None, f"data nested as the shape {shape}", str(list(arr.shape)))
        if arr.dtype.kind not in "iuf" or not _plain(data, arr.ndim - 1):
            got = _what(arr) if arr.dtype.kind not in "iuf" else "booleans"
            raise _invalid(t, None, f"numbers ({t.datatype})", got)
        return _finite(t, arr.reshape(n, *t.shape))
    if arr.dtype != object and arr.dtype.kind not in "iuf" and arr.size:
        raise _invalid(t, None, "numbers", _what(arr))
    got = f"{arr.size} values" if arr.dtype != object else "ragged or non-numeric data"
    raise _invalid(t, None, f"{n * t.size} numbers (the shape {shape})", got)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- summaries for the prediction log and the monitor -----------------------------------


def summary_names(t: TensorInput) -> tuple[str, ...]:
    """The per-row summary columns of a tensor: mean, std, min, max (and the last value of a
    sequence)."""
    names = [f"{t.name}.{s}" for s in SUMMARIES]
    if len(t.shape) == 1:
        names.append(f"{t.name}.last")
    return tuple(names)


def summaries(t: TensorInput, arr: np.ndarray) -> np.ndarray:
    """``[n, len(summary_names(t))]`` float64: each row's summaries."""
    flat = np.asarray(arr, dtype=np.float64).reshape(len(arr), -1)
    if flat.shape[1] == 0:
        return np.full((len(arr), len(summary_names(t))), np.nan)
    cols = [flat.mean(axis=1), flat.std(axis=1), flat.min(axis=1), flat.max(axis=1)]
    if len(t.shape) == 1:
        cols.append(flat[:, -1])
    return np.stack(cols, axis=1)
