"""The drift reference: what each statistic needs of the training data, built once.

A numeric column keeps the ECDF of a (seeded) sample of its finite values, quantile bin
edges for PSI, and the full data's range, mean, standard deviation and null count; a
categorical column keeps every category's count. Current windows are read with the same
rules (:func:`numeric_values`, :func:`category_counts`), which reject values of the wrong
type with a message naming the column.

A tensor column (images, windows of a series) is compared through its per-row summaries,
the columns the prediction log keeps of served tensors (``X.mean``, ``X.std``, ``X.min``,
``X.max``, and ``X.last`` for a sequence; see :mod:`keel.serve._tensors`): each is a numeric
column of the reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.monitor._stats import Ecdf

__all__ = ["CategoricalColumn", "NumericColumn", "Reference"]

PSI_QUANTILES = np.linspace(0.1, 0.9, 9)  # decile edges of the reference: ten bins at most
NUMERIC_TYPES = ("int", "float")
CATEGORICAL_TYPES = ("category", "string", "bool")


@dataclass(frozen=True)
class NumericColumn:
    name: str
    type: str  # "int" or "float"
    rows: int  # reference rows, missing values included
    nulls: int
    ecdf: Ecdf  # of the sample's finite values
    edges: np.ndarray  # PSI bin edges (distinct deciles of the sample)
    min: float | None
    max: float | None
    mean: float | None
    std: float | None

    kind = "numeric"

    def bin_counts(self) -> np.ndarray:
        return self.ecdf.bin_counts(self.edges)


@dataclass(frozen=True)
class CategoricalColumn:
    name: str
    type: str  # "category", "string" or "bool"
    rows: int
    nulls: int
    counts: dict[str, int]  # every category seen in the reference

    kind = "categorical"


@dataclass(frozen=True)
class Reference:
    """What drift and quality checks compare a window with. Build it with
    :meth:`from_frame` or :meth:`from_dataset`; it holds no frame."""

    columns: dict[str, NumericColumn | CategoricalColumn]
    rows: int
    source: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        sample: int | None = None,
        seed: int = 0,
        categorical: Sequence[str] = (),
    ) -> Reference:
        """From a DataFrame: numeric dtypes become numeric columns, text, categorical and
        boolean dtypes categorical ones (``categorical`` forces named integer columns to be
        categorical, e.g. a 0/1 predicted label). ``sample``: keep the ECDF of that many
        seeded rows per numeric column (``None``: every row). Datetime columns are left out."""
        if not isinstance(df, pd.DataFrame):
            raise InvalidInput(f"reference: expected a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise InvalidInput("reference: the frame has no rows")
        for name in categorical:
            if name not in df.columns:
                raise InvalidInput(f"categorical column {name!r} is not in the reference frame")
        rows = _sample_rows(len(df), sample, seed)
        cols: dict[str, NumericColumn | CategoricalColumn] = {}
        for name in df.columns:
            s = df[name]
            if _holds_arrays(s):
                cols.update(_tensor_summaries(str(name), s, None, rows))
                continue
            kind = _frame_type(s)
            if kind is None:
                continue
            if name in categorical or kind in CATEGORICAL_TYPES:
                cols[str(name)] = _categorical(str(name), s, kind, None)
            else:
                cols[str(name)] = _numeric(str(name), s, kind, rows, None)
        return cls(cols, len(df), {"kind": "frame", "sample": sample, "seed": seed})

    @classmethod
    def from_dataset(
        cls, store: Any, ref: str, *, sample_rows: int | None = 100_000, seed: int = 0
    ) -> Reference:
        """From a stored dataset: column types from its schema; row, null, range, mean and
        standard-deviation figures and category counts from its stored profile (categories
        are counted from the table when the profile lists only the most frequent); the
        numeric ECDFs from ``sample_rows`` seeded rows of the table (``None``: all)."""
        from keel.data import get_dataset, load_frame, load_profile

        ds = get_dataset(store, ref)
        prof = load_profile(store, ds)
        df = load_frame(store, ds)
        rows = _sample_rows(len(df), sample_rows, seed)
        cols: dict[str, NumericColumn | CategoricalColumn] = {}
        for spec in ds.schema.get("columns", []):
            name, typ = spec["name"], spec["type"]
            stats = prof["columns"].get(name, {})
            if typ in NUMERIC_TYPES:
                cols[name] = _numeric(name, df[name], typ, rows, stats)
            elif typ in CATEGORICAL_TYPES:
                cols[name] = _categorical(name, df[name], typ, stats)
            elif typ == "tensor":
                cols.update(_tensor_summaries(name, df[name], spec, rows))
        source = {"kind": "dataset", "ref": ds.ref, "sha": ds.sha, "sample": sample_rows}
        return cls(cols, int(prof.get("rows", len(df))), source | {"seed": seed})

    def summary(self) -> dict[str, Any]:
        """A JSON-able description: per column its kind, type, rows, nulls, range or
        categories."""
        out: dict[str, Any] = {}
        for name, c in self.columns.items():
            item: dict[str, Any] = {"kind": c.kind, "type": c.type, "rows": c.rows}
            item["nulls"] = c.nulls
            if isinstance(c, NumericColumn):
                item |= {"min": c.min, "max": c.max, "sample": c.ecdf.n}
            else:
                item["categories"] = len(c.counts)
            out[name] = item
        return {"rows": self.rows, "source": self.source, "columns": out}

    def column(self, name: str) -> NumericColumn | CategoricalColumn:
        try:
            return self.columns[name]
        except KeyError:
            known = ", ".join(list(self.columns)[:20])
            raise InvalidInput(
                f"column {name!r} is not in the reference; it has: {known}"
            ) from None


def _sample_rows(n: int, sample: int | None, seed: int) -> np.ndarray | None:
    if sample is None or sample >= n:
        return None
    if sample < 1:
        raise InvalidInput(f"sample: expected a positive number of rows, got {sample}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=sample, replace=False))


def _holds_arrays(s: pd.Series) -> bool:
    """Whether an object column holds one array per row (a loaded tensor column)."""
    if s.dtype != object:
        return False
    first = s.first_valid_index()
    return first is not None and isinstance(s[first], np.ndarray)


def _tensor_summaries(
    name: str, s: pd.Series, entry: Mapping[str, Any] | None, rows: np.ndarray | None
) -> dict[str, NumericColumn]:
    """A tensor column's per-row summaries as numeric reference columns (``X.mean``, ...)."""
    from keel.data import tensor_array
    from keel.serve._tensors import TensorInput, summaries, summary_names

    if entry is None:
        first = s[s.first_valid_index()]
        entry = {"type": "tensor", "dtype": str(first.dtype), "shape": list(first.shape)}
    entry = {**entry, "name": name}
    t = TensorInput.from_entry(entry)
    values = summaries(t, tensor_array(s, entry))
    return {
        col: _numeric(col, pd.Series(values[:, j]), "float", rows, None)
        for j, col in enumerate(summary_names(t))
    }


def _frame_type(s: pd.Series) -> str | None:
    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt):
        return "bool"
    if pd.api.types.is_integer_dtype(dt):
        return "int"
    if pd.api.types.is_float_dtype(dt):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dt) or pd.api.types.is_timedelta64_dtype(dt):
        return None
    if isinstance(dt, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_object_dtype(dt):
        inferred = pd.api.types.infer_dtype(s, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
            return "float"
        if inferred == "boolean":
            return "bool"
    return "category"


def _numeric(
    name: str, s: pd.Series, typ: str, rows: np.ndarray | None, stats: Mapping[str, Any] | None
) -> NumericColumn:
    values = numeric_values(s, name, "reference")
    sampled = numeric_values(s.iloc[rows], name, "reference") if rows is not None else values
    ecdf = Ecdf.of(_finite(sampled))
    edges = np.unique(ecdf.quantiles(PSI_QUANTILES)) if ecdf.n else np.empty(0)
    if stats and stats.get("count") is not None:  # a stored profile: the full table's figures
        counts = (int(stats["count"]), int(stats.get("null_count") or 0))
        moments = [_opt(stats.get(k)) for k in ("min", "max", "mean", "std")]
    else:
        counts = (len(s), int(s.isna().sum()))
        finite = _finite(values).astype(np.float64, copy=False)
        moments = [None] * 4
        if len(finite):
            moments = [float(f(finite)) for f in (np.min, np.max, np.mean, np.std)]
    lo, hi, mean, std = moments
    return NumericColumn(name, typ, *counts, ecdf, edges, lo, hi, mean, std)


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)] if x.dtype.kind == "f" else x


def _categorical(
    name: str, s: pd.Series, typ: str, stats: Mapping[str, Any] | None
) -> CategoricalColumn:
    stats = stats or {}
    top = stats.get("top")
    if typ in ("category", "string") and top is not None and not stats.get("other"):
        counts = {str(k): int(v) for k, v in top.items()}  # the profile lists every category
        return CategoricalColumn(name, typ, int(stats["count"]), int(stats["null_count"]), counts)
    keys, values = category_counts(s, name, "reference", allow_numbers=True)
    counts = {k: int(v) for k, v in zip(keys, values, strict=True)}
    return CategoricalColumn(name, typ, len(s), int(s.isna().sum()), counts)


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)


def numeric_values(s: pd.Series, name: str, where: str = "the current window") -> np.ndarray:
    """The non-missing values of a numeric column as a NumPy array (integers kept as int64,
    else float64; infinities kept). Text, booleans or other objects raise InvalidInput."""
    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt):
        raise InvalidInput(f"column {name!r} of {where}: expected numbers, got booleans")
    if pd.api.types.is_integer_dtype(dt):
        if s.hasnans:
            return s.dropna().to_numpy(dtype=np.int64)
        return s.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(dt):
        arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
        return arr[~np.isnan(arr)]
    if pd.api.types.is_object_dtype(dt):
        inferred = pd.api.types.infer_dtype(s, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal", "empty"):
            arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
            return arr[~np.isnan(arr)]
    bad = _first_bad(
        s, lambda v: isinstance(v, int | float | np.number) and not isinstance(v, bool)
    )
    got = f"{shorten(repr(bad[1]))} (row {bad[0]})" if bad else f"values of type {dt}"
    raise InvalidInput(f"column {name!r} of {where}: expected numbers, got {got}")


def category_counts(
    s: pd.Series, name: str, where: str = "the current window", *, allow_numbers: bool = False
) -> tuple[list[str], np.ndarray]:
    """The categories of a column as text and their counts (missing values left out).
    Booleans read as ``'True'``/``'False'``; a float column raises InvalidInput, and so does
    an integer one unless ``allow_numbers`` (a column declared categorical)."""
    dt = s.dtype
    if pd.api.types.is_float_dtype(dt) or (pd.api.types.is_integer_dtype(dt) and not allow_numbers):
        raise InvalidInput(
            f"column {name!r} of {where}: expected categories (text), got numbers ({dt})"
        )
    vc = s.value_counts(dropna=True, sort=False)
    vc = vc[vc.to_numpy() > 0]  # a pandas Categorical lists its unused categories too
    keys = [str(k) for k in vc.index]
    counts = vc.to_numpy(dtype=np.int64)
    if len(set(keys)) != len(keys):  # e.g. 1 and '1' in one object column
        merged: dict[str, int] = {}
        for k, c in zip(keys, counts.tolist(), strict=True):
            merged[k] = merged.get(k, 0) + c
        keys, counts = list(merged), np.array(list(merged.values()), dtype=np.int64)
    return keys, counts


SHOWN_CHARS = 64
"""The longest text that reports and stored monitor events show of a served value (a
category, an example, a column name): values come from requests and can be megabytes."""


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_bad(s: pd.Series, ok: Any) -> tuple[Any, Any] | None:
    for idx, v in s.items():
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            continue
        if not ok(v):
            return idx, v
    return None
