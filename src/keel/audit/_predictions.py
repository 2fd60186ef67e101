"""Auditing predictions alone: the fairness and performance evidence of scores a model keel
did not train (a vendor's), from a file of labels, scores and sensitive columns."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = ["audit_predictions", "read_predictions_file"]


def read_predictions_file(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as a frame (by its extension)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"--predictions: no such file: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(p, skipinitialspace=True)
    except Exception as exc:  # pandas/pyarrow parse errors: name the file
        raise InvalidInput(f"--predictions {p}: cannot be read: {exc}") from None
    raise InvalidInput(f"--predictions {p}: expected a .csv or .parquet file, got {suffix!r}")


def audit_predictions(
    frame: pd.DataFrame,
    *,
    label: str,
    score: str,
    threshold: float = 0.5,
    sensitive: list[str] | None = None,
    pos_label: Any = None,
    n_boot: int = 200,
    seed: int = 0,
    source: str | None = None,
) -> dict[str, Any]:
    """Performance and fairness evidence of ``frame[score]`` (higher = more positive;
    predicted positive when ``>= threshold``) against ``frame[label]``, by ``sensitive``
    columns. The document has the shape of :func:`keel.audit.audit`'s, without a model."""
    from keel.audit._evidence import (
        EVIDENCE_FORMAT,
        _libraries,
        _plain,
        fairness_section,
        performance_section,
    )
    from keel.audit.fairness import fairness_report
    from keel.audit.performance import performance_report

    sensitive = list(sensitive or [])
    for flag, col in [("--label", label), ("--score", score)] + [
        ("--sensitive", c) for c in sensitive
    ]:
        if col not in frame.columns:
            raise InvalidInput(
                f"{flag}: no column {col!r} in the predictions; columns: "
                f"{', '.join(map(str, frame.columns))}"
            )
    if not isinstance(threshold, int | float) or not np.isfinite(threshold):
        raise InvalidInput(f"--threshold: expected a number, got {threshold!r}")
    scores = pd.to_numeric(frame[score], errors="coerce")
    bad = scores.isna() & frame[score].notna()
    if bad.any() or frame[score].isna().any():
        row = int(np.flatnonzero((bad | frame[score].isna()).to_numpy())[0])
        raise InvalidInput(
            f"--score {score!r} row {row + 1}: expected a number, got {frame[score].iloc[row]!r}"
        )
    y = frame[label]
    if y.isna().any():
        row = int(np.flatnonzero(y.isna().to_numpy())[0])
        raise InvalidInput(f"--label {label!r} row {row + 1}: expected a label, got a blank")
    levels = sorted(pd.unique(y).tolist(), key=str)
    if pos_label is None:
        if set(levels) <= {0, 1}:
            pos_label = 1
        elif set(levels) <= {False, True}:
            pos_label = True
        else:
            raise InvalidInput(
                f"--label {label!r}: expected 0/1 labels or --positive naming the positive "
                f"one, got {levels[:5]}"
            )
    negative = next((v for v in levels if v != pos_label), None)
    if negative is None:
        raise InvalidInput(f"--label {label!r}: expected both classes, got only {levels}")
    s = scores.to_numpy(dtype=float)
    y_pred = np.where(s >= threshold, pos_label, negative)
    t0 = time.perf_counter()
    doc: dict[str, Any] = {
        "format": EVIDENCE_FORMAT,
        "model": None,
        "data": {
            "source": source,
            "rows": len(frame),
            "label": label,
            "score": score,
            "positive_class": pos_label,
            "threshold": float(threshold),
        },
        "settings": {"seed": seed, "n_boot": n_boot, "sensitive": sensitive},
        "libraries": _libraries(),
    }
    perf = performance_report(
        y.to_numpy(),
        task="classification",
        scores=s,
        threshold=float(threshold),
        pos_label=pos_label,
        n_boot=n_boot,
        seed=seed,
    )
    doc["performance"] = performance_section(perf)
    timings = {"performance": time.perf_counter() - t0}
    if sensitive:
        t0 = time.perf_counter()
        rep = fairness_report(
            y.to_numpy(),
            y_pred,
            frame[sensitive],
            scores=s,
            pos_label=pos_label,
            n_boot=n_boot,
            seed=seed,
            missing="group",
        )
        doc["fairness"] = fairness_section(rep)
        timings["fairness"] = time.perf_counter() - t0
    doc["timings_s"] = timings
    return _plain(doc)
