"""The logical column types of a schema and the Arrow types validated data has."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["ARROW_TYPES", "DEFAULT_NULL_VALUES", "LOGICAL_TYPES"]

LOGICAL_TYPES: tuple[str, ...] = ("int", "float", "bool", "string", "category", "datetime")

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
