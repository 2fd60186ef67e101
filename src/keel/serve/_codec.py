"""From parsed JSON to the exported graph's feed, checked against the model's input schema.

Rows are built straight from the JSON values (no pandas) into a block of two arrays
(numbers float32 with NaN = missing, text ``str`` with ``""`` = missing, the contract of
:mod:`keel.export`), one type check and one conversion per block on the common path.
Every bad value is reported, up to :data:`MAX_DETAILS`, as ``{"row", "field", "expected",
"got"}``; ``null`` is a missing value, an absent field is an error.

A tensor input (an image, a window of a series) is one value per row, nested arrays of its
declared per-row shape; see :mod:`keel.serve._tensors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from keel.export import onnx_input_type
from keel.serve._errors import ServeError
from keel.serve._tensors import TensorInput, summaries, summary_names, tensor_from_rows

__all__ = [
    "MAX_DETAILS",
    "MISSING",
    "InputSpec",
    "block_from_columns",
    "check_string_sizes",
    "feed_from_columns",
    "feed_from_records",
    "feed_from_split",
]

MAX_DETAILS = 50
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "missing"})()
# The least magnitude that rounds to infinity as float32: every number below it is taken.
F32_OVERFLOW = float(2**128 - 2**103)
_NUMBER_OK = frozenset({int, float, type(None)})
_BOOL_OK = frozenset({bool, int, float, type(None)})
_TEXT_OK = frozenset({str, type(None)})


@dataclass(frozen=True)
class InputSpec:
    """The model's raw inputs and what each expects: ``number``, ``boolean``, ``string``
    or ``tensor`` (see :attr:`tensors` for a tensor's shape and dtype).

    Inside the server a request's rows travel as a *block*: ``{"num": float32 [n, k_num],
    "text": object [n, k_text]}`` in the order of :attr:`num_names` and :attr:`text_names`,
    plus ``"tensor:NAME": float32 [n, *shape]`` per tensor input (cheap to build from JSON
    rows and to merge across requests); :meth:`graph_feed` turns a block into the graph's
    feed.
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    tensors: tuple[TensorInput, ...] = ()

    @classmethod
    def from_schema(cls, schema: list[dict[str, Any]]) -> InputSpec:
        kinds, tensors = [], []
        for col in schema:
            if col.get("type") == "tensor":
                kinds.append("tensor")
                tensors.append(TensorInput.from_entry(col))
            elif onnx_input_type(col) == "string":
                kinds.append("string")
            else:
                kinds.append("boolean" if col.get("type") == "bool" else "number")
        return cls(tuple(str(c["name"]) for c in schema), tuple(kinds), tuple(tensors))

    @cached_property
    def num_names(self) -> tuple[str, ...]:
        kinds = ("number", "boolean")
        return tuple(n for n, k in zip(self.names, self.kinds, strict=True) if k in kinds)

    @cached_property
    def text_names(self) -> tuple[str, ...]:
        return tuple(n for n, k in zip(self.names, self.kinds, strict=True) if k == "string")

    @cached_property
    def pickers(self) -> tuple[Callable[[Any], tuple[Any, ...]], Callable[[Any], tuple[Any, ...]]]:
        """Two functions of a record (a dict): its number values and its text values, each a
        tuple in the order of :attr:`num_names` and :attr:`text_names` (KeyError for an
        absent field, TypeError for a record that is not an object)."""
        return _picker(self.num_names), _picker(self.text_names)

    def kind_of(self, name: str) -> str:
        return self.kinds[self.names.index(name)]

    def dummy_block(self, n: int = 1) -> dict[str, np.ndarray]:
        """``n`` rows of zeros and empty strings: enough to warm a session."""
        text = np.empty((n, len(self.text_names)), dtype=object)
        text[...] = ""
        block = {"num": np.zeros((n, len(self.num_names)), dtype=np.float32), "text": text}
        for t in self.tensors:
            block[t.key] = np.zeros((n, *t.shape), dtype=np.float32)
        return block

    def graph_feed(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's feed: one contiguous ``[n, 1]`` array per column, and each tensor
        ``[n, *shape]``."""
        num, text = block["num"], block["text"]
        n = len(num)
        feed = dict(zip(self.num_names, np.ascontiguousarray(num.T).reshape(-1, n, 1), strict=True))
        feed.update(
            zip(self.text_names, np.ascontiguousarray(text.T).reshape(-1, n, 1), strict=True)
        )
        for t in self.tensors:
            feed[t.name] = np.ascontiguousarray(block[t.key], dtype=np.float32)
        return feed

    def rows(self, block: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """The block's rows as dicts in schema order, missing values as None (a tensor as
        nested lists)."""
        nums = [[None if v != v else v for v in r] for r in block["num"].tolist()]
        texts = [[None if v == "" else v for v in r] for r in block["text"].tolist()]
        num_names, text_names = self.num_names, self.text_names
        tensors = [(t.name, block[t.key].tolist()) for t in self.tensors]
        out = []
        for i, (num, text) in enumerate(zip(nums, texts, strict=True)):
            row = dict(zip(num_names, num, strict=True))
            row.update(zip(text_names, text, strict=True))
            row.update((name, values[i]) for name, values in tensors)
            out.append({n: row[n] for n in self.names})
        return out

    @cached_property
    def log_names(self) -> tuple[str, ...]:
        """The prediction log's input columns: each column as is, each tensor as its
        summaries (``X.mean``, ``X.std``, ...), in schema order."""
        by_name = {t.name: summary_names(t) for t in self.tensors}
        return tuple(c for n in self.names for c in by_name.get(n, (n,)))

    def log_numbers(self, block: dict[str, np.ndarray]) -> tuple[tuple[str, ...], np.ndarray]:
        """The number columns the prediction log keeps of a block: the number columns and
        every tensor's per-row summaries (never the raw tensor), with their names."""
        if not self.tensors:
            return self.num_names, block["num"]
        parts = [block["num"].astype(np.float64)]
        names = list(self.num_names)
        for t in self.tensors:
            parts.append(summaries(t, block[t.key]))
            names += summary_names(t)
        return tuple(names), np.hstack(parts)

    def log_rows(self, block: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """The block's rows as the prediction log keeps them (tensors as summaries)."""
        if not self.tensors:
            return self.rows(block)
        names, numbers = self.log_numbers(block)
        texts = [[None if v == "" else v for v in r] for r in block["text"].tolist()]
        out = []
        for num, text in zip(numbers.tolist(), texts, strict=True):
            row = dict(zip(names, [None if v != v else v for v in num], strict=True))
            row.update(zip(self.text_names, text, strict=True))
            out.append({n: row[n] for n in self.log_names})
        return out

    def json_schema(self) -> dict[str, Any]:
        """One row as a JSON Schema object (for the OpenAPI document); a boolean column also
        takes numbers (0 and 1), as the server does; a tensor is nested arrays of numbers of
        its declared shape."""
        types = {"string": ["string"], "number": ["number"], "boolean": ["boolean", "number"]}
        tensors = {t.name: t for t in self.tensors}
        props = {
            n: tensors[n].json_schema() if k == "tensor" else {"type": [*types[k], "null"]}
            for n, k in zip(self.names, self.kinds, strict=True)
        }
        return {"type": "object", "properties": props, "required": list(self.names)}


class Problems:
    """Findings about one request, capped at :data:`MAX_DETAILS`."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.count = 0

    def add(
        self, row: int | None, field: str | None, expected: str, got: Any, said: bool = False
    ) -> None:
        """One finding; ``got`` is described for the client (as is, with ``said``)."""
        self.count += 1
        if len(self.items) < MAX_DETAILS:
            item: dict[str, Any] = {}
            if row is not None:
                item["row"] = row
            if field is not None:
                item["field"] = field
            item["expected"], item["got"] = expected, got if said else describe(got)
            self.items.append(item)

    def raise_if_any(self) -> None:
        if not self.count:
            return
        first = self.items[0]
        where = " ".join(
            f"{k} {first[k]!r}" if k == "field" else f"{k} {first[k]}"
            for k in ("row", "field")
            if k in first
        )
        more = f" (and {self.count - 1} more)" if self.count > 1 else ""
        raise ServeError(
            "invalid_input",
            f"{where}: expected {first['expected']}, got {first['got']}{more}",
            self.items,
        )


def describe(value: Any) -> str:
    """A short, JSON-flavoured rendering of a client's value for an error message."""
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 42 else text[:39] + "...'"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 42 else text[:39] + "..."
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, dict):
        return "an object" if value else "an empty object"
    return "a value of another type"


def column(
    name: str, kind: str, values: list[Any], problems: Problems, row_offset: int = 0
) -> np.ndarray:
    """One feed column ``[N, 1]`` from JSON values, reporting each bad one."""
    types = set(map(type, values))
    if kind == "string":
        if types <= _TEXT_OK and MISSING not in values:
            out = np.empty((len(values), 1), dtype=object)
            out[:, 0] = ["" if v is None else v for v in values]
            return out
        for i, v in enumerate(values):
            if v is not None and type(v) is not str:
                problems.add(i + row_offset, name, "a string", v)
        return np.empty((0, 1), dtype=object)
    accepted = _BOOL_OK if kind == "boolean" else _NUMBER_OK
    if types <= accepted:
        try:
            with np.errstate(over="ignore"):
                arr = np.array(values, dtype=np.float32)
        except (OverflowError, ValueError):
            arr = None
        if arr is not None and arr.ndim == 1 and not np.isinf(arr).any():
            return arr.reshape(-1, 1)
    expected = "a boolean" if kind == "boolean" else "a number"
    for i, v in enumerate(values):
        if v is None:
            continue
        if type(v) not in accepted:
            problems.add(i + row_offset, name, expected, v)
        elif _too_big(v):
            problems.add(i + row_offset, name, f"{expected} within float32 range", v)
    return np.empty((0, 1), dtype=np.float32)


def feed_from_records(rows: Any, spec: InputSpec, where: str = "rows") -> dict[str, np.ndarray]:
    """The block from ``[{column: value}, ...]``."""
    if not isinstance(rows, list) or not rows:
        raise ServeError(
            "invalid_input",
            f"{where}: expected a non-empty array of objects, got {describe(rows)}",
            [{"field": where, "expected": "a non-empty array of objects", "got": describe(rows)}],
        )
    if not spec.tensors:
        block = _picked_block(rows, *spec.pickers)
        if block is not None:
            return block
    problems = Problems()
    for i, row in enumerate(rows):
        if type(row) is not dict:
            problems.add(i, None, "an object", row)
    problems.raise_if_any()
    if spec.tensors:
        return _mixed_block({n: [r.get(n, MISSING) for r in rows] for n in spec.names}, spec)
    return _slow_block({n: [r.get(n, MISSING) for r in rows] for n in spec.names}, spec)


def _picker(keys: tuple[Any, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """``row -> (row[k] for k in keys)`` as a tuple, in C for two keys or more."""
    if len(keys) > 1:
        return itemgetter(*keys)
    if len(keys) == 1:
        key = keys[0]
        return lambda row: (row[key],)
    return lambda row: ()


def _picked_block(
    rows: list[Any], num_of: Callable[[Any], Any], text_of: Callable[[Any], Any]
) -> dict[str, np.ndarray] | None:
    """The block when every row yields its values (``num_of``, ``text_of``: record ->
    tuple) and every value has an accepted type; else None (the caller then finds and
    names each bad value)."""
    try:
        num = list(map(num_of, rows))
        text = list(map(text_of, rows))
    except (KeyError, TypeError, IndexError):
        return None
    return _fast_block(num, text, len(rows), len(num[0]))


def _fast_block(num: Any, text: Any, n: int, k_num: int) -> dict[str, np.ndarray] | None:
    """The block when every value has an accepted type (row-major sequences); else None."""
    text_types = set(map(type, chain.from_iterable(text)))
    if not text_types <= _TEXT_OK:
        return None
    if not set(map(type, chain.from_iterable(num))) <= _NUMBER_OK:
        return None
    try:  # Python floats are float64: no overflow here, and float32 is checked below
        wide = np.array(num, dtype=np.float64).reshape(n, k_num)
    except (OverflowError, ValueError):
        return None
    if wide.size:
        magnitude = np.abs(wide)
        top = magnitude.max()  # NaN when a value is missing: then look at each value
        if not top < F32_OVERFLOW and (magnitude >= F32_OVERFLOW).any():
            return None  # would round to infinity as float32
    texts = np.empty((n, len(text[0]) if text else 0), dtype=object)
    if texts.size:
        texts[...] = text
        if type(None) in text_types:  # None and "" are the falsy values: both become ""
            texts[~texts.astype(bool)] = ""
    return {"num": wide.astype(np.float32), "text": texts}


def fast_columns(
    num: list[list[Any]], text: list[list[Any]], n: int
) -> dict[str, np.ndarray] | None:
    """The block from column-major lists when every value has an accepted type; else None."""
    if not set(map(type, chain.from_iterable(text))) <= _TEXT_OK:
        return None
    if not set(map(type, chain.from_iterable(num))) <= _NUMBER_OK:
        return None
    try:
        with np.errstate(over="ignore"):
            nums = np.array(num, dtype=np.float32).reshape(len(num), n).T
    except (OverflowError, ValueError):
        return None
    if np.isinf(nums).any():
        return None
    texts = np.empty((len(text), n), dtype=object)
    texts[...] = text if not any(None in c for c in text) else _blank_nones(text)
    return {"num": nums, "text": texts.T}


def _blank_nones(text: list[list[Any]]) -> list[list[Any]]:
    return [["" if v is None else v for v in r] for r in text]


def _slow_block(columns: Mapping[str, list[Any]], spec: InputSpec) -> dict[str, np.ndarray]:
    """The block column by column, reporting every bad value."""
    problems = Problems()
    built = {n: column(n, spec.kind_of(n), columns[n], problems) for n in spec.names}
    problems.raise_if_any()
    n = len(next(iter(columns.values())))
    nums = [built[c] for c in spec.num_names]
    texts = [built[c] for c in spec.text_names]
    return {
        "num": np.hstack(nums) if nums else np.zeros((n, 0), dtype=np.float32),
        "text": np.hstack(texts) if texts else np.empty((n, 0), dtype=object),
    }


def _mixed_block(columns: Mapping[str, list[Any]], spec: InputSpec) -> dict[str, np.ndarray]:
    """The block of a model with tensor inputs, from one list of values per input: columns
    as in :func:`_slow_block`, each tensor from its rows' nested arrays."""
    problems = Problems()
    n = len(columns[spec.names[0]])
    built = {}
    for t in spec.tensors:
        for i, v in enumerate(columns[t.name]):
            if v is MISSING or v is None:
                problems.add(i, t.name, f"an array of shape {list(t.shape)}", v)
    for name, kind in zip(spec.names, spec.kinds, strict=True):
        if kind != "tensor":
            built[name] = column(name, kind, columns[name], problems)
    problems.raise_if_any()
    block = block_from_columns(built, spec, n)
    for t in spec.tensors:
        block[t.key] = tensor_from_rows(t, columns[t.name])
    return block


def block_from_columns(
    built: Mapping[str, np.ndarray], spec: InputSpec, n: int | None = None
) -> dict[str, np.ndarray]:
    """The block from per-column ``[n, 1]`` arrays already checked (tensors not included)."""
    if n is None:
        n = len(next(iter(built.values())))
    nums = [built[c] for c in spec.num_names]
    texts = [built[c] for c in spec.text_names]
    return {
        "num": np.hstack(nums) if nums else np.zeros((n, 0), dtype=np.float32),
        "text": np.hstack(texts) if texts else np.empty((n, 0), dtype=object),
    }


def feed_from_columns(
    columns: Any, spec: InputSpec, where: str = "inputs"
) -> dict[str, np.ndarray]:
    """The block from ``{column: [value, ...]}``; every column as long as the first."""
    if not isinstance(columns, Mapping) or not columns:
        raise ServeError(
            "invalid_input",
            f"{where}: expected an object of columns, got {describe(columns)}",
            [{"field": where, "expected": "an object of columns", "got": describe(columns)}],
        )
    return _feed_columns(columns, spec)


def _feed_columns(columns: Mapping[str, Any], spec: InputSpec) -> dict[str, np.ndarray]:
    problems = Problems()
    n = None
    for name, kind in zip(spec.names, spec.kinds, strict=True):
        values = columns.get(name, MISSING)
        if not isinstance(values, list):
            problems.add(None, name, f"an array of {_expected(kind)} values", values)
            continue
        if n is None:
            n = len(values)
        if len(values) != n or not values:
            problems.add(None, name, f"an array of {n or 'at least 1'} values", f"{len(values)}")
    problems.raise_if_any()
    assert n is not None
    if spec.tensors:
        return _mixed_block(columns, spec)
    num = [columns[c] for c in spec.num_names]
    text = [columns[c] for c in spec.text_names]
    block = fast_columns(num, text, n)
    return block if block is not None else _slow_block(columns, spec)


def feed_from_split(split: Any, spec: InputSpec) -> dict[str, np.ndarray]:
    """The block from pandas' ``split`` orientation: ``{"columns": [...], "data": [[...]]}``."""
    where = "dataframe_split"
    if not isinstance(split, Mapping):
        raise ServeError("invalid_input", f"{where}: expected an object with columns and data")
    names, data = split.get("columns"), split.get("data")
    problems = Problems()
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        problems.add(None, f"{where}.columns", "an array of column names", names)
    if not isinstance(data, list) or not data:
        problems.add(None, f"{where}.data", "a non-empty array of rows", data)
    problems.raise_if_any()
    assert isinstance(names, list) and isinstance(data, list)
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(names):
            problems.add(i, None, f"an array of {len(names)} values", row)
    problems.raise_if_any()
    index = {c: j for j, c in enumerate(names)}
    lacking = [c for c in spec.names if c not in index]
    for c in lacking:
        problems.add(None, c, f"a column named {c!r}", "missing")
    problems.raise_if_any()
    if spec.tensors:
        return _mixed_block({c: [row[index[c]] for row in data] for c in spec.names}, spec)
    num_of = _picker(tuple(index[c] for c in spec.num_names))
    text_of = _picker(tuple(index[c] for c in spec.text_names))
    block = _picked_block(data, num_of, text_of)
    if block is not None:
        return block
    return _slow_block({c: [row[index[c]] for row in data] for c in spec.names}, spec)


def check_string_sizes(block: dict[str, np.ndarray], spec: InputSpec, limit: int) -> None:
    """Refuse (422) every string value of the block longer than ``limit`` UTF-8 bytes,
    naming its row and field; the value itself is not echoed."""
    text = block["text"]
    if not text.size:
        return
    chars = np.fromiter(map(len, text.ravel().tolist()), dtype=np.int64, count=text.size)
    suspects = np.flatnonzero(chars.reshape(text.shape) * 4 > limit)  # UTF-8: <= 4 bytes/char
    problems = Problems()
    width = text.shape[1]
    for flat in suspects.tolist():
        row, col = divmod(flat, width)
        size = len(text[row, col].encode("utf-8", "surrogatepass"))
        if size > limit:
            expected = f"a string of at most {limit:,} bytes (UTF-8)"
            problems.add(row, spec.text_names[col], expected, f"{size:,} bytes", said=True)
    problems.raise_if_any()


def n_rows(block: dict[str, np.ndarray]) -> int:
    return len(block["num"])


def _too_big(v: Any) -> bool:
    try:
        return abs(float(v)) >= F32_OVERFLOW
    except OverflowError:
        return True


def _expected(kind: str) -> str:
    kinds = {"string": "a string", "boolean": "a boolean", "number": "a number"}
    return kinds.get(kind, "a tensor")
