"""The dataset schema: what columns a dataset has, their logical types and their limits.

A schema is plain data (pydantic v2), written as YAML for people::

    version: 1
    null_values: ['', '?', NA, N/A, 'null', NaN]
    extra_columns: error
    columns:
      - {name: age, type: int, nullable: false, min: 17, max: 90}
      - {name: sex, type: category, nullable: false, categories: [Female, Male]}

``infer_schema`` writes one from a table. Text columns (as CSV gives them) become ``int``
or ``float`` when every value parses, ``bool`` when every value is true or false,
``datetime`` when every value is an ISO 8601 date, ``category`` when they hold at most
``max_categories`` distinct values and some repeat, and ``string`` otherwise. Numeric
columns get the observed ``min`` and ``max``; a column with missing values is nullable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keel.data._cast import is_text, missing_mask, try_cast
from keel.data._read import check_column_names
from keel.data._types import ARROW_TYPES, DEFAULT_NULL_VALUES, LOGICAL_TYPES, TENSOR_DTYPES
from keel.errors import InvalidInput

__all__ = ["DEFAULT_NULL_VALUES", "LOGICAL_TYPES", "ColumnSchema", "Schema", "infer_schema"]

LogicalType = Literal["int", "float", "bool", "string", "category", "datetime", "tensor"]
SCHEMA_VERSION: Final = 1


class ColumnSchema(BaseModel):
    """One column: its name, logical type, and the limits its values must keep."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: LogicalType
    nullable: bool = False
    categories: list[str] | None = None
    min: int | float | None = None
    max: int | float | None = None
    max_length: int | None = Field(default=None, ge=0)
    format: str | None = None
    dtype: str | None = None
    """A ``tensor`` column's element type, a NumPy name such as ``float32``."""
    shape: list[int] | None = None
    """A ``tensor`` column's per-row shape (no batch dimension), e.g. ``[1, 8, 8]``."""
    description: str | None = None

    @model_validator(mode="after")
    def _limits_fit_the_type(self) -> ColumnSchema:
        numeric = self.type in ("int", "float")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min and max apply to int and float columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.categories is not None:
            if self.type != "category":
                raise ValueError(f"categories apply to category columns, not {self.type}")
            seen = _duplicates(self.categories)
            if seen:
                raise ValueError(f"categories list {seen[0]!r} more than once")
        if self.max_length is not None and self.type != "string":
            raise ValueError(f"max_length applies to string columns, not {self.type}")
        if self.format is not None and self.type != "datetime":
            raise ValueError(f"format applies to datetime columns, not {self.type}")
        self._check_tensor()
        return self

    def _check_tensor(self) -> None:
        if self.type != "tensor":
            if self.dtype is not None or self.shape is not None:
                raise ValueError(f"dtype and shape apply to tensor columns, not {self.type}")
            return
        if self.dtype not in TENSOR_DTYPES:
            raise ValueError(
                f"a tensor column needs dtype, one of {', '.join(TENSOR_DTYPES)}; "
                f"got {self.dtype!r}"
            )
        if self.shape is None or any(int(n) < 1 for n in self.shape):
            raise ValueError(
                f"a tensor column needs shape, its per-row shape as a list of positive "
                f"sizes such as [1, 8, 8]; got {self.shape!r}"
            )
        if self.nullable:
            raise ValueError("a tensor column cannot be nullable")

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type a validated column has (a tensor column: pyarrow's
        ``fixed_shape_tensor`` extension type)."""
        if self.type == "tensor":
            value = pa.from_numpy_dtype(np.dtype(self.dtype))
            return pa.fixed_shape_tensor(value, list(self.shape or []))
        return ARROW_TYPES[self.type]


class Schema(BaseModel):
    """The columns of a dataset, how missing values are written, and what to do with
    columns the schema does not list (``error`` or ``drop``)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = SCHEMA_VERSION
    columns: list[ColumnSchema] = Field(min_length=1)
    null_values: list[str] = Field(default_factory=lambda: list(DEFAULT_NULL_VALUES))
    extra_columns: Literal["error", "drop"] = "error"

    @model_validator(mode="after")
    def _names_are_unique(self) -> Schema:
        seen = _duplicates([c.name for c in self.columns])
        if seen:
            raise ValueError(f"column {seen[0]!r} is listed more than once")
        return self

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSchema:
        for col in self.columns:
            if col.name == name:
                return col
        raise InvalidInput(f"the schema has no column {name!r}; it has {_quoted(self.names)}")

    def logical_types(self) -> dict[str, str]:
        """``{column name: logical type}`` in schema order."""
        return {c.name: c.type for c in self.columns}

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of a table that passed validation."""
        return pa.schema([pa.field(c.name, c.arrow_type, c.nullable) for c in self.columns])

    def to_dict(self) -> dict[str, Any]:
        """Plain data (no defaults left out but ``None`` fields), ready for JSON or YAML."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "schema") -> Schema:
        """Build from plain data; a bad field raises ``InvalidInput`` naming its path."""
        if not isinstance(data, dict):
            got = type(data).__name__
            raise InvalidInput(f"{where}: expected a mapping with a 'columns' list, got {got}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput(_explain(exc, data, where)) from None

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> Schema:
        """Read a schema from YAML text or from a ``.yaml``/``.yml`` file."""
        text, where = _yaml_text(text_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(_yaml_syntax(exc, where)) from None
        return cls.from_dict(data, where=where)


def _yaml_text(text_or_path: str | Path) -> tuple[str, str]:
    looks_like_path = isinstance(text_or_path, Path) or (
        "\n" not in text_or_path and Path(text_or_path).suffix.lower() in (".yaml", ".yml")
    )
    if not looks_like_path:
        return str(text_or_path), "schema"
    path = Path(text_or_path)
    try:
        return path.read_text(encoding="utf-8"), path.name
    except FileNotFoundError:
        raise InvalidInput(f"schema file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"schema file {str(path)!r} cannot be read: {exc}") from None


def _yaml_syntax(exc: yaml.YAMLError, where: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"{where} is not valid YAML: {problem}"
    return f"{where} line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"


def _explain(exc: ValidationError, data: dict[str, Any], where: str) -> str:
    lines = list(dict.fromkeys(_explain_one(err, data) for err in exc.errors()))
    head = f"{where} is not a valid schema"
    if len(lines) == 1:
        return f"{head}: {lines[0]}"
    return head + ":\n" + "\n".join(f"  {line}" for line in lines)


def _explain_one(err: Any, data: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    where = _field_path(loc) + _column_name(loc, data)
    kind, msg, ctx = err["type"], err["msg"], err.get("ctx", {})
    if kind == "missing":
        return f"{where}: is required but missing"
    if kind == "extra_forbidden":
        return f"{where}: unknown field; {_allowed_fields(loc)}"
    if kind == "value_error":
        return f"{where}: {msg.removeprefix('Value error, ')}"
    if kind == "literal_error":
        msg = f"expected one of {ctx.get('expected')}"
    elif loc and loc[-1] in ("int", "float"):  # a branch of the number union
        msg = "expected a number"
    elif kind == "too_short":
        msg = f"expected at least {ctx.get('min_length')} item(s)"
    else:
        msg = "expected " + msg.removeprefix("Input should be ")
    return f"{where}: {msg}, got {err.get('input')!r}"


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("int", "float"):  # pydantic names the union branch it tried
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _column_name(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    if len(loc) < 2 or loc[0] != "columns" or not isinstance(loc[1], int):
        return ""
    try:
        name = data["columns"][loc[1]]["name"]
    except (KeyError, IndexError, TypeError):
        return ""
    return f" (column {name!r})" if isinstance(name, str) else ""


def _allowed_fields(loc: tuple[Any, ...]) -> str:
    model = ColumnSchema if loc and loc[0] == "columns" else Schema
    return "allowed fields are " + ", ".join(model.model_fields)


def _duplicates(items: list[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for x in items:
        if x in seen:
            repeated.append(x)
        seen.add(x)
    return repeated


def _quoted(names: list[str], limit: int = 30) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# Inference: the types, nulls, ranges and categories observed in a table.

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}"


def infer_schema(
    table: pa.Table,
    *,
    max_categories: int = 50,
    null_values: Sequence[str] = DEFAULT_NULL_VALUES,
) -> Schema:
    """A schema that ``table`` passes, recording what was observed in it.

    ``null_values`` is the text that means "missing" in text columns; it is stored in
    the schema so that validation reads missing values the same way.
    """
    if table.num_columns == 0:
        raise InvalidInput("cannot infer a schema from a table with no columns")
    check_column_names(table.column_names, "the table")
    nulls = tuple(null_values)
    columns = [
        _infer_column(name, table[name], max_categories, nulls) for name in table.column_names
    ]
    return Schema(columns=columns, null_values=list(nulls))


def _infer_column(
    name: str, raw: pa.ChunkedArray, max_categories: int, nulls: tuple[str, ...]
) -> ColumnSchema:
    typ = raw.type
    if pa.types.is_dictionary(typ):
        raw = raw.cast(typ.value_type)
    if pa.types.is_large_string(raw.type) or pa.types.is_null(raw.type):
        raw = raw.cast(pa.string())
    missing = missing_mask(raw, nulls)
    nullable = bool(pc.any(missing).as_py())
    present = raw.filter(pc.invert(missing))
    kind = raw.type
    if pa.types.is_dictionary(typ):
        return _category(name, present, nullable)
    if pa.types.is_integer(kind):
        return _numeric(name, "int", present, nullable)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return _numeric(name, "float", present.cast(pa.float64()), nullable)
    if pa.types.is_boolean(kind):
        return ColumnSchema(name=name, type="bool", nullable=nullable)
    if pa.types.is_temporal(kind):
        return ColumnSchema(name=name, type="datetime", nullable=nullable)
    if isinstance(kind, pa.FixedShapeTensorType):
        dtype = np.dtype(kind.value_type.to_pandas_dtype()).name
        return ColumnSchema(name=name, type="tensor", dtype=dtype, shape=list(kind.shape))
    if is_text(kind):
        return _infer_text(name, present, nullable, max_categories)
    raise InvalidInput(
        f"column {name!r} has type {kind}, which keel cannot validate; convert it to a "
        f"number, text, bool or timestamp column first"
    )


def _infer_text(
    name: str, present: pa.ChunkedArray, nullable: bool, max_categories: int
) -> ColumnSchema:
    if len(present) == 0:
        return ColumnSchema(name=name, type="string", nullable=True)
    numeric: tuple[tuple[Literal["int", "float"], pa.DataType], ...] = (
        ("int", pa.int64()),
        ("float", pa.float64()),
    )
    for kind, target in numeric:
        values = try_cast(present, target)
        if values is not None:
            return _numeric(name, kind, values, nullable)
    distinct = pc.unique(present)
    if set(pc.unique(pc.utf8_lower(distinct)).to_pylist()) <= {"true", "false"}:
        return ColumnSchema(name=name, type="bool", nullable=nullable)
    if _all_dates(distinct):
        return ColumnSchema(name=name, type="datetime", nullable=nullable)
    if len(distinct) <= max_categories and len(distinct) < len(present):
        return _category(name, distinct, nullable)
    return ColumnSchema(name=name, type="string", nullable=nullable)


def _all_dates(distinct: pa.Array) -> bool:
    if not pc.all(pc.match_substring_regex(distinct, _ISO_DATE)).as_py():
        return False
    return try_cast(distinct, pa.timestamp("us")) is not None


def _numeric(
    name: str, kind: Literal["int", "float"], values: pa.ChunkedArray, nullable: bool
) -> ColumnSchema:
    if kind == "float":
        nan = pc.is_nan(values)
        nullable = nullable or bool(pc.any(nan).as_py())
        values = values.filter(pc.invert(nan))
    bounds = pc.min_max(values).as_py() if len(values) else {"min": None, "max": None}
    return ColumnSchema(
        name=name, type=kind, nullable=nullable, min=bounds["min"], max=bounds["max"]
    )


def _category(name: str, values: pa.ChunkedArray | pa.Array, nullable: bool) -> ColumnSchema:
    observed = pc.unique(values).cast(pa.string()).to_pylist()
    categories = sorted(v for v in observed if v is not None)
    return ColumnSchema(name=name, type="category", nullable=nullable, categories=categories)
