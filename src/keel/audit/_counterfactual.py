"""The counterfactual view of robustness: for each attacked row, the smallest valid change
that flips the model's decision — fewest features first, then the smallest size.

Changes are searched level by level over :class:`keel.audit._valid_rows.ValidRows`: every
single-feature change to a value of the column's grid (every known category; every whole
number of a small ``int`` range, else evenly spaced values and training quantiles), then pairs
and triples of features for the rows not yet flipped. A level is searched exhaustively when a
row has at most ``exhaustive_cap`` combinations there; past that, it tries the ``top_columns``
features and ``top_values`` values per feature whose single changes moved the model furthest
toward flipping (recorded as ``exhaustive: false``). Frozen features never change.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from keel.audit._valid_rows import ValidRows

__all__ = ["counterfactual_search", "summarise"]

_MAX_FRAME = 100_000  # candidate rows asked about in one call


def _changed_values(vr: ValidRows, codes: np.ndarray) -> dict[int, list[float]]:
    """Per mutable column (its index), the codes of the grid values other than the row's
    own (none for a missing cell: it stays missing)."""
    out: dict[int, list[float]] = {}
    for k, c in enumerate(vr.mutable):
        v = codes[k]
        if np.isnan(v) or v == -2:
            out[k] = []
        elif c.kind == "category":
            out[k] = [float(j) for j in range(len(c.categories)) if j != v]
        else:
            out[k] = [float(g) for g in c.grid if g != v]
    return out


def _assignments(names: tuple[int, ...], values: dict[int, list[float]]) -> list[tuple]:
    return list(itertools.product(*(values[n] for n in names)))


def _moved(C: np.ndarray, base: np.ndarray) -> np.ndarray:
    return (C != base) & ~(np.isnan(C) & np.isnan(base))


def counterfactual_search(
    vr: ValidRows,
    X: pd.DataFrame,
    labels: np.ndarray,
    *,
    max_features: int = 3,
    top_columns: int = 8,
    top_values: int = 3,
    exhaustive_cap: int = 4000,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """For each row of ``X`` (whose model class index is ``labels``): the minimal flipping
    change with at most ``max_features`` features, as ``{"features": k, "distance": d,
    "changes": {column: [old, new]}, "row": DataFrame, "exhaustive": [...]}``;
    ``features`` is None when none was found. ``progress(level, max_features)`` is told as
    each number of features is done."""
    X = X.reset_index(drop=True)
    out: list[dict[str, Any]] = [{"features": None, "exhaustive": []} for _ in range(len(X))]
    scores: list[dict[int, list[tuple[float, float]]]] = [{} for _ in range(len(X))]
    codes = vr.codes(X)
    for k in range(1, max_features + 1):
        for i in range(len(X)):
            if out[i]["features"] is not None:
                continue
            full = _changed_values(vr, codes[i])
            names = [n for n, v in full.items() if v]
            count = sum(
                int(np.prod([len(full[n]) for n in s])) for s in itertools.combinations(names, k)
            )
            exhaustive = k == 1 or count <= exhaustive_cap
            values = full
            if not exhaustive:  # the features and values that moved the model most alone
                best = {n: sorted(scores[i].get(n, []), key=lambda t: t[0]) for n in names}
                names = sorted(names, key=lambda n: best[n][0][0] if best[n] else 1.0)
                names = names[:top_columns]
                values = {n: [v for _, v in best[n][:top_values]] for n in names}
            combos = [
                (s, _assignments(s, values))
                for s in itertools.combinations(names, k)
                if all(values[n] for n in s)
            ]
            out[i]["exhaustive"].append(exhaustive)
            if not combos:
                continue
            found = _flip(vr, X.iloc[[i]], codes[i], int(labels[i]), combos, k, scores[i])
            if found is not None:
                out[i].update(found)
        if progress is not None:
            progress(k, max_features)
    return out


def _flip(
    vr: ValidRows,
    base: pd.DataFrame,
    bcodes: np.ndarray,
    label: int,
    combos: list[tuple[tuple[int, ...], list[tuple]]],
    k: int,
    scores: dict[int, list[tuple[float, float]]],
) -> dict[str, Any] | None:
    """The smallest flipping candidate of ``combos`` (column indices, code assignments) for
    the row ``base``, or None. At one feature, the model's probability of the row's class for
    each value is kept in ``scores``."""
    span = np.array([c.span if c.kind != "category" else 1.0 for c in vr.mutable])
    is_cat = np.array([c.kind == "category" for c in vr.mutable])
    at = vr.fast.at(base) if vr.fast is not None else None
    best: tuple[float, np.ndarray] | None = None
    for chunk in _chunks(combos):
        C = np.tile(bcodes, (sum(len(v) for _, v in chunk), 1))
        pos = 0
        for cols, vals in chunk:
            C[pos : pos + len(vals), list(cols)] = np.asarray(vals, dtype=np.float64)
            pos += len(vals)
        vr.queries += len(C)
        if vr.fast is not None and at is not None:
            proba = vr.fast.proba(C, at)
        else:
            proba = np.asarray(vr.model.predict_proba(vr.frame(C, base)), dtype=np.float64)
        if k == 1:
            pos = 0
            for (col,), vals in chunk:
                p = proba[pos : pos + len(vals), label]
                scores.setdefault(col, []).extend(
                    zip(p.tolist(), [v[0] for v in vals], strict=True)
                )
                pos += len(vals)
        flip = np.flatnonzero(proba.argmax(axis=1) != label)
        if not len(flip):
            continue
        moved = _moved(C[flip], bcodes)
        size = np.where(is_cat, moved, np.nan_to_num(np.abs(C[flip] - bcodes)) / span)
        dist = np.sqrt(np.nansum(size**2, axis=1))
        j = int(np.argmin(dist))
        if best is None or dist[j] < best[0]:
            best = (float(dist[j]), C[flip[j]])
    if best is None:
        return None
    dist, code = best
    row = vr.frame(code[None], base)
    changes = {
        c.name: [_py(base.iloc[0][c.name]), _py(row.iloc[0][c.name])]
        for c, m in zip(vr.mutable, _moved(code, bcodes), strict=True)
        if m
    }
    return {"features": k, "distance": dist, "changes": changes, "row": row}


def _chunks(
    combos: list[tuple[tuple[int, ...], list[tuple]]],
) -> list[list[tuple[tuple[int, ...], list[tuple]]]]:
    out: list[list[Any]] = [[]]
    size = 0
    for combo in combos:
        if size and size + len(combo[1]) > _MAX_FRAME:
            out.append([])
            size = 0
        out[-1].append(combo)
        size += len(combo[1])
    return out


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def summarise(
    found: list[dict[str, Any]], max_features: int, t0: float, n_examples: int = 5
) -> dict[str, Any]:
    """Flip rates with 1 … ``max_features`` features, the median number changed, which
    features change most, and a few examples."""
    n = len(found)
    ks = [f["features"] for f in found if f["features"] is not None]

    def rate(k: int) -> float:
        return sum(1 for x in ks if x <= k) / n if n else float("nan")

    curve = [{"budget": k, "success_rate": rate(k)} for k in range(1, max_features + 1)]
    counts = Counter(c for f in found if f["features"] is not None for c in f["changes"])
    levels = range(max_features)
    searched = [sum(1 for f in found if len(f["exhaustive"]) > k) for k in levels]
    exhaustive = [
        sum(1 for f in found if len(f["exhaustive"]) > k and f["exhaustive"][k]) for k in levels
    ]
    return {
        "success_rate": rate(max_features),
        "accuracy_under_attack": 1.0 - rate(max_features) if n else float("nan"),
        "max_features": max_features,
        "flip_rate": {str(k): rate(k) for k in range(1, max_features + 1)},
        "curve": curve,
        "norm": "features changed",
        "budget_unit": "features changed (valid rows)",
        "median_features_changed": float(np.median(ks)) if ks else None,
        "median_distance": (
            float(np.median([f["distance"] for f in found if f["features"] is not None]))
            if ks
            else None
        ),
        "features_changed": dict(counts.most_common()),
        # rows searched at each number of features, and how many of them exhaustively
        "searched_rows": {str(k + 1): searched[k] for k in levels},
        "searched_exhaustively": {str(k + 1): exhaustive[k] for k in levels},
        "examples": [
            {"features": f["features"], "distance": f["distance"], "changes": f["changes"]}
            for f in found
            if f["features"] is not None
        ][:n_examples],
        "n_rows": n,
        "time_s": time.perf_counter() - t0,
    }
