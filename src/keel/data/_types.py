"""The logical column types of a schema and the Arrow types validated data has."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["ARROW_TYPES", "DEFAULT_NULL_VALUES", "LOGICAL_TYPES", "TENSOR_DTYPES"]

LOGICAL_TYPES: tuple[str, ...] = (
    "int",
    "float",
    "bool",
    "string",
    "category",
    "datetime",
    "tensor",
)

#: The element types a ``tensor`` column may hold (NumPy names).
TENSOR_DTYPES: tuple[str, ...] = (
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
)

#: Text that means "no value" in a text cell. Applied when values are cast (validation
#: and inference), so the raw text stays visible in rejected rows.
DEFAULT_NULL_VALUES: tuple[str, ...] = ("", "?", "NA", "N/A", "null", "NaN")

ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "category": pa.dictionary(pa.int32(), pa.string()),
    "datetime": pa.timestamp("us"),
}
