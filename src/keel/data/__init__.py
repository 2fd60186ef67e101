"""keel.data: reading sources, schemas, validation and profiles.

Typical use::

    table, info = read_source("adult.csv")
    schema = infer_schema(table)
    result = validate(table, schema, source=info)
    result.raise_if_bad()
    stats = profile(result.good, schema)

Images and sequences are tensor columns (``type: tensor`` with ``dtype`` and ``shape``):
``ingest`` reads a ``.npz`` of ``X`` and ``y`` or a folder of images, ``windows`` turns a
series into sequence samples, and ``tensor_array`` stacks a loaded column into one array.

All but the store glue (ingest and the dataset look-ups) is pure: it touches no store.
"""

from keel.data._profile import profile
from keel.data._read import SourceInfo, read_source
from keel.data._schema import DEFAULT_NULL_VALUES, ColumnSchema, Schema, infer_schema
from keel.data._tensor import tensor_array
from keel.data._validate import ValidationResult, validate

# ingest() is added by the store glue

__all__ = [
    "DEFAULT_NULL_VALUES",
    "ColumnSchema",
    "Schema",
    "SourceInfo",
    "ValidationResult",
    "infer_schema",
    "profile",
    "read_source",
    "tensor_array",
    "validate",
]

from keel.data._ingest import (  # noqa: E402
    Dataset,
    IngestResult,
    get_dataset,
    ingest,
    list_datasets,
    load_frame,
    load_profile,
    load_table,
)
from keel.data._windows import windows  # noqa: E402

__all__ += [
    "Dataset",
    "IngestResult",
    "get_dataset",
    "ingest",
    "list_datasets",
    "load_frame",
    "load_profile",
    "load_table",
    "windows",
]
