"""Windows of a served model's prediction log, as frames the monitor's statistics take:
the inputs each request carried, what the model answered, and the labels that arrived.

A window is a time range (``since``/``until``, epoch seconds or datetimes) or the newest
``last`` predictions; either way of one registered model, optionally one version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from keel.errors import InvalidInput

__all__ = ["Window", "read_window"]


@dataclass(frozen=True)
class Window:
    """One window of logged predictions: ``inputs`` (a frame in the model's input schema),
    ``outputs`` (request_id, ts, version, label, score, prediction, label_true); ``since``
    and ``until`` are the bounds asked for (None: open)."""

    model: str
    since: float | None
    until: float | None
    inputs: pd.DataFrame
    outputs: pd.DataFrame

    @property
    def rows(self) -> int:
        return len(self.outputs)

    @property
    def labeled(self) -> int:
        return int(self.outputs["label_true"].notna().sum())

    @property
    def key(self) -> str:
        """Names the window for de-duplication of alerts: its bounds, or its newest rows."""
        if self.rows == 0:
            return f"{self.model}:empty"
        ts = self.outputs["ts"]
        return f"{self.model}:{float(ts.min()):.3f}-{float(ts.max()):.3f}:{self.rows}"

    def describe(self) -> dict[str, Any]:
        ts = self.outputs["ts"]
        return {
            "model": self.model,
            "rows": self.rows,
            "labeled": self.labeled,
            "versions": sorted({int(v) for v in self.outputs["version"]}),
            "ts_min": float(ts.min()) if self.rows else None,
            "ts_max": float(ts.max()) if self.rows else None,
        }


def read_window(
    store: Any,
    model: str,
    *,
    since: Any = None,
    until: Any = None,
    last: int | None = None,
    version: int | None = None,
) -> Window:
    """The logged predictions of ``model`` in ``[since, until)`` (or the newest ``last``),
    joined with the labels ingested so far."""
    from keel.serve import joined

    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
        raise InvalidInput(f"last: expected a number of predictions ≥ 1, got {last!r}")
    table = joined(store, model, version=version, since=since, until=until, limit=last)
    outputs = table.drop_columns(["inputs", "outputs", "model"]).to_pandas()
    texts = table["inputs"].to_pylist()
    rows = [orjson.loads(t) if t is not None else {} for t in texts]
    inputs = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    for col in inputs.columns:  # JSON nulls in numeric columns come back as None
        if inputs[col].dtype == object:
            numeric = pd.to_numeric(inputs[col], errors="coerce")
            if numeric.notna().sum() == inputs[col].notna().sum():
                inputs[col] = numeric.astype(np.float64)
    return Window(model, _epoch(since), _epoch(until), inputs, outputs)


def _epoch(x: Any) -> float | None:
    if x is None:
        return None
    if hasattr(x, "timestamp"):
        return float(x.timestamp())
    return float(x)
