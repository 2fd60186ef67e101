"""Accuracy of a keel classifier under random feature noise: Gaussian noise on numeric
columns (clipped to the training range, integers rounded) and categorical cells changed to
another category seen in training. The attacks themselves are in
:mod:`keel.audit._valid_attacks` and :mod:`keel.audit._counterfactual`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["noise_accuracy"]


def noise_accuracy(
    model: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    X_train: pd.DataFrame,
    *,
    scales: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5),
    flip_rates: tuple[float, ...] = (0.05, 0.1, 0.2),
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy on ``X`` with Gaussian noise on the numeric columns (σ = scale × the column's
    training standard deviation, clipped to the training range, integers rounded) and with a
    fraction of categorical cells changed to another observed category."""
    t0 = time.perf_counter()
    types = {c["name"]: c.get("type") for c in model.input_schema}
    numeric = [c for c in X.columns if types.get(c) in ("int", "float")]
    categorical = [c for c in X.columns if types.get(c) in ("string", "category", "bool")]
    y = np.asarray(y, dtype=object)

    def acc(frame: pd.DataFrame) -> float:
        return float(np.mean(np.asarray(model.predict(frame), dtype=object) == y))

    rng = np.random.default_rng(seed)
    gaussian = []
    for s in scales:
        noisy = X.copy()
        for c in numeric:
            col = X_train[c].astype(float)
            v = X[c].astype(float).to_numpy()
            v = np.clip(v + rng.normal(0.0, s * col.std(), len(v)), col.min(), col.max())
            if types[c] == "int":  # rounded, in the column's own (NumPy or pandas) dtype
                noisy[c] = pd.Series(np.round(v), index=X.index).astype(X[c].dtype)
            else:
                noisy[c] = v
        gaussian.append({"scale": s, "accuracy": acc(noisy)})
    flips = []
    for r in flip_rates:
        noisy = X.copy()
        for c in categorical:
            noisy[c] = _flip(X[c], X_train[c], r, rng)
        flips.append({"rate": r, "accuracy": acc(noisy)})
    clean = acc(X)
    worst = min([g["accuracy"] for g in gaussian] + [f["accuracy"] for f in flips] + [clean])
    return {
        "clean_accuracy": clean,
        "gaussian": gaussian,
        "category_flip": flips,
        "worst_accuracy": worst,
        "worst_drop": clean - worst,
        "numeric_columns": numeric,
        "categorical_columns": categorical,
        "n_rows": len(X),
        "time_s": time.perf_counter() - t0,
    }


def _flip(col: pd.Series, train_col: pd.Series, rate: float, rng: Any) -> pd.Series:
    """``col`` with a ``rate`` fraction of its cells replaced by another observed value."""
    values = train_col.dropna().unique()
    out = col.copy()
    if len(values) < 2:
        return out
    hit = np.flatnonzero(rng.random(len(col)) < rate)
    for i in hit.tolist():
        others = values[values != col.iloc[i]]
        out.iloc[i] = others[rng.integers(len(others))]
    return out
