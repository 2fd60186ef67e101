"""Windowing: a time series data set becomes sequence samples, without leaking the future.

Each sample's input ``X`` is the ``window`` values of a column up to a time, and its target
``y`` the value ``horizon`` steps later; ``time`` is the time of ``y`` (so a split by time
keeps every input before every test target), and ``naive_<season>`` the value ``season``
steps before ``y`` (the seasonal-naive forecast a model must beat: 168 hours is the same
hour one week earlier). Samples start where both the window and the seasonal value exist,
so the model and the baseline are scored on the same rows.

With ``time_col`` the rows are ordered by it and placed on its regular grid (the smallest
step between two times): a window, target or seasonal value that falls on a missing step
drops its sample, or with ``fill`` the missing steps take that value (e.g. 0 for counts
of events that are not recorded when none happened). Without ``time_col`` the rows are
taken in stored order, one step each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from keel.errors import InvalidInput

__all__ = ["windows"]


def windows(
    store: Any,
    dataset: Any,
    column: str,
    *,
    window: int,
    horizon: int = 1,
    time_col: str | None = None,
    name: str | None = None,
    season: int | None = 168,
    fill: float | None = None,
) -> Any:
    """Store the sequence samples of ``column`` of ``dataset`` (a reference or ``Dataset``)
    as a new dataset of kind ``tensors`` (columns ``X`` float32 ``[window]``, ``y``,
    ``time`` and ``naive_<season>`` unless ``season`` is None), with lineage
    ``windowed_from`` to ``dataset``. Returns an ``IngestResult``."""
    from keel.data._ingest import (
        Dataset,
        IngestResult,
        _check_name,
        get_dataset,
        load_table,
        store_dataset,
    )
    from keel.data._schema import infer_schema
    from keel.data._tensor import tensor_column

    ds = dataset if isinstance(dataset, Dataset) else get_dataset(store, dataset)
    _check_sizes(window, horizon, season)
    name = _check_name(name or f"{ds.name}-w{window}-h{horizon}")
    types = {c["name"]: c["type"] for c in ds.schema.get("columns") or []}
    _check_column(ds.ref, types, column, ("int", "float"), "the series")
    if time_col is not None:
        _check_column(ds.ref, types, time_col, ("int", "float", "datetime"), "the time column")
    table = load_table(store, ds)
    values, times, steps = _series(table, column, time_col, ds.ref, fill)
    need = max(window + horizon - 1, season or 0) + 1
    if window >= len(values) or need > len(values):
        raise InvalidInput(
            f"window {window} (horizon {horizon}"
            + (f", seasonal lag {season}" if season else "")
            + f") needs a series of at least {need:,} steps, but {column!r} of {ds.ref} has "
            f"{len(values):,}; use a shorter window"
        )
    targets = np.arange(need - 1, len(values))
    starts = targets - horizon - window + 1
    view = np.lib.stride_tricks.sliding_window_view(values, window)
    x = view[starts]
    y = values[targets]
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    naive = None
    if season:
        naive = values[targets - season]
        ok &= np.isfinite(naive)
    if not ok.any():
        raise InvalidInput(
            f"{column!r} of {ds.ref}: every window touches a missing step; pass fill= a value "
            f"for missing steps, or use a shorter window"
        )
    cols: dict[str, Any] = {
        "X": tensor_column(x[ok].astype(np.float32)),
        "y": pa.array(y[ok]),
        "time": _time_array(times, steps[targets[ok]], table, time_col),
    }
    if naive is not None:
        cols[f"naive_{season}"] = pa.array(naive[ok])
    out = pa.table(cols)
    schema = infer_schema(out, null_values=())
    schema.columns[0].description = f"past {window} values of {column!r} of {ds.ref}"
    schema.columns[1].description = f"{column!r} {horizon} step(s) after the window"
    dropped = int((~ok).sum())
    res, _, warnings = store_dataset(
        store, name, out, schema, kind="tensors", parents=((ds.sha, "windowed_from"),)
    )
    if dropped:
        warnings.insert(
            0,
            f"{ds.ref}: {dropped:,} of {len(ok):,} samples dropped because their window, target "
            f"or seasonal value falls on a missing step (pass fill= to keep them)",
        )
    return IngestResult(res, None, [], warnings)


def _check_sizes(window: Any, horizon: Any, season: Any) -> None:
    for label, value in (("window", window), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InvalidInput(f"{label}: expected a whole number of steps >= 1, got {value!r}")
    if season is not None and (not isinstance(season, int | np.integer) or season < 1):
        raise InvalidInput(f"season: expected a whole number of steps >= 1 or None, got {season!r}")


def _check_column(ref: str, types: dict[str, str], col: str, allowed: tuple, role: str) -> None:
    if col not in types:
        raise InvalidInput(
            f"{role} {col!r}: dataset {ref} has no such column; it has {', '.join(types)}"
        )
    if types[col] not in allowed:
        raise InvalidInput(
            f"{role} {col!r} of {ref}: expected a column of type {' or '.join(allowed)}, "
            f"got {types[col]}"
        )


def _series(
    table: pa.Table, column: str, time_col: str | None, ref: str, fill: float | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The values on a regular grid (NaN at missing steps), the sorted times, and for each
    grid step its time as an int64 (or its row number without ``time_col``)."""
    values = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
    if time_col is None:
        grid = values
        if fill is not None:
            grid = np.where(np.isnan(grid), fill, grid)
        return grid, None, np.arange(len(grid))
    raw = table[time_col]
    if raw.null_count:
        raise InvalidInput(f"the time column {time_col!r} of {ref} has {raw.null_count} empty rows")
    times = raw.to_numpy(zero_copy_only=False)
    ticks = times.astype("datetime64[us]").astype(np.int64) if times.dtype.kind == "M" else times
    order = np.argsort(ticks, kind="stable")
    ticks, values = ticks[order], values[order]
    diffs = np.diff(ticks)
    if (diffs == 0).any():
        i = int(np.argmax(diffs == 0))
        raise InvalidInput(
            f"the time column {time_col!r} of {ref} holds {times[order][i]!r} more than once; "
            f"a series needs one value per time"
        )
    step = diffs.min() if len(diffs) else 1
    pos = (ticks - ticks[0]) / step
    if not np.allclose(pos, np.round(pos)):
        raise InvalidInput(
            f"the time column {time_col!r} of {ref} is not on a regular grid (smallest step "
            f"{step}); resample the series first"
        )
    pos = np.round(pos).astype(np.int64)
    grid = np.full(pos[-1] + 1, np.nan if fill is None else float(fill))
    grid[pos] = values
    return grid, times, ticks[0] + np.arange(len(grid)) * step


def _time_array(times: Any, ticks: np.ndarray, table: pa.Table, time_col: str | None) -> pa.Array:
    if time_col is None:
        return pa.array(ticks.astype(np.int64))
    typ = table[time_col].type
    if pa.types.is_timestamp(typ):
        return pa.array(ticks.astype("datetime64[us]")).cast(typ)
    if pa.types.is_floating(typ):
        return pa.array(ticks.astype(np.float64))
    return pa.array(ticks.astype(np.int64))
