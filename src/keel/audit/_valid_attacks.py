"""HopSkipJump (ART) on valid rows only.

Each attacked row is attacked on its own: ART sees the row's mutable columns as a point in
``[0, 1]^d`` (:class:`keel.audit._valid_rows.ValidRows`) and a classifier that projects every
point it asks about onto the nearest valid row before the model answers (whole numbers in
the training range, known categories, frozen columns and missing cells as in the row). The
attack starts from the nearest of a seeded pool of training rows (their mutable columns, the
row's frozen ones) that the model classes differently. Its final point is projected the same
way, and the attack *succeeds* on a row when the model's class on that valid row differs and
the change's size is within the budget; both are recomputed here, never taken from ART.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from keel.audit._space import art
from keel.audit._valid_rows import ValidRows
from keel.errors import InvalidInput

__all__ = ["HSJ_BUDGETS", "HSJ_DEFAULT_EPS", "correct_rows", "valid_hopskipjump"]

#: Budgets of the success curve: L2 size of the change (numbers: fraction of the training
#: range; a changed category: 1).
HSJ_BUDGETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
HSJ_DEFAULT_EPS = 0.25
NORM = (
    "l2 over features of the change on valid rows: a numeric feature counts the fraction of "
    "its training range it moved, a categorical feature 1 when it changed"
)


class _seeded:
    """Seed NumPy's global generator (ART draws from it) and restore it afterwards."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self.state = np.random.get_state()
        np.random.seed(self.seed % (2**32))

    def __exit__(self, *_: Any) -> None:
        np.random.set_state(self.state)


def correct_rows(
    vr: ValidRows, X: pd.DataFrame, y: np.ndarray, n_rows: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Up to ``n_rows`` rows of ``X`` (seeded order) that the model classifies correctly, with
    their class indices."""
    order = np.random.default_rng(seed).permutation(len(X))
    classes = np.asarray(vr.classes, dtype=object)
    y = np.asarray(y, dtype=object)
    keep: list[int] = []
    labels: list[int] = []
    step = max(2 * n_rows, 200)
    for start in range(0, len(order), step):
        idx = order[start : start + step]
        pred = vr.predict(X.iloc[idx])
        ok = classes[pred] == y[idx]
        keep.extend(idx[ok].tolist())
        labels.extend(pred[ok].tolist())
        if len(keep) >= n_rows:
            break
    return X.iloc[keep[:n_rows]].reset_index(drop=True), np.asarray(labels[:n_rows], dtype=int)


def _check(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidInput(f"{name}: expected an integer ≥ {low}, got {value!r}")
    return int(value)


def _starts(
    vr: ValidRows, X: pd.DataFrame, labels: np.ndarray, pool: pd.DataFrame
) -> list[np.ndarray | None]:
    """Per row, the attack point of the nearest pool row (with the row's frozen columns and
    missing cells) that the model classes differently; None where none does."""
    P = vr.points(pool)
    out: list[np.ndarray | None] = []
    for i in range(len(X)):
        base = X.iloc[[i]]
        cand = vr.rows(P, base)
        other = np.flatnonzero(vr.predict(cand) != labels[i])
        if not len(other):
            out.append(None)
            continue
        size = vr.changes(X.iloc[[i] * len(other)], cand.iloc[other])
        j = other[int(np.argmin(np.sqrt((size**2).sum(axis=1))))]
        out.append(vr.points(cand.iloc[[j]])[0])
    return out


def valid_hopskipjump(
    vr: ValidRows,
    X: pd.DataFrame,
    labels: np.ndarray,
    X_pool: pd.DataFrame,
    *,
    seed: int = 0,
    max_iter: int = 10,
    max_eval: int = 100,
    init_eval: int = 20,
    budgets: tuple[float, ...] = HSJ_BUDGETS,
    eps: float = HSJ_DEFAULT_EPS,
    pool_rows: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """HopSkipJump (L2, untargeted, decision-only) on the valid rows around each row of
    ``X``; returns the report and the adversarial valid rows (the row itself where the
    attack found nothing). ``progress(done, total)`` is told after each row."""
    max_iter = _check("max_iter", max_iter, 0)
    max_eval = _check("max_eval", max_eval, 1)
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps >= 0:
        raise InvalidInput(f"eps: expected a number ≥ 0, got {eps!r}")
    t0 = time.perf_counter()
    X = X.reset_index(drop=True)
    vr.queries = 0
    pool = X_pool.iloc[np.random.default_rng(seed).permutation(len(X_pool))[:pool_rows]]
    starts = _starts(vr, X, labels, pool) if max_iter > 0 and vr.dim > 0 else [None] * len(X)
    advs = []
    for i in range(len(X)):
        if progress is not None and i:
            progress(i, len(X))
        base = X.iloc[[i]]
        start = starts[i]
        if start is None:
            advs.append(base)
            continue
        oracle = vr.row_oracle(base)
        clf = art().estimators.classification.BlackBoxClassifier(
            oracle, input_shape=(vr.dim,), nb_classes=len(vr.classes), clip_values=(0.0, 1.0)
        )
        attack = art().attacks.evasion.HopSkipJump(
            clf,
            targeted=False,
            norm=2,
            max_iter=max_iter,
            max_eval=max_eval,
            init_eval=min(init_eval, max_eval),
            verbose=False,
        )
        u0 = vr.points(base).astype(np.float32)
        with _seeded(seed + i), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adv = attack.generate(u0, x_adv_init=start[None].astype(np.float32))
        advs.append(vr.rows(adv, base))
    A = pd.concat(advs, ignore_index=True) if advs else X.iloc[:0]
    queries = vr.queries
    rep = score(vr, X, labels, A, budgets, eps)
    rep["budget"] = {
        "max_iter": max_iter,
        "max_eval": max_eval,
        "init_eval": min(init_eval, max_eval),
        "start_pool_rows": int(len(pool)),
        "queries": queries,
        "queries_per_row": queries / max(len(X), 1),
    }
    rep["time_s"] = time.perf_counter() - t0
    return rep, A


def score(
    vr: ValidRows,
    X: pd.DataFrame,
    labels: np.ndarray,
    A: pd.DataFrame,
    budgets: tuple[float, ...],
    eps: float,
) -> dict[str, Any]:
    """Success on valid rows: the model's class on ``A`` differs from ``labels`` and the
    change from ``X`` is within the budget."""
    n = len(X)
    problems = vr.problems(A, X)
    if problems:  # a projection bug, not an input error: never count invalid rows
        raise AssertionError("adversarial rows are not valid: " + "; ".join(problems[:3]))
    flipped = vr.predict(A) != labels if n else np.zeros(0, dtype=bool)
    size = vr.changes(X, A)
    dist = np.sqrt((size**2).sum(axis=1))
    nfeat = (size > 0).sum(axis=1)

    def rate(e: float) -> float:
        return float((flipped & (dist <= e * (1 + 1e-9))).mean()) if n else float("nan")

    curve = [{"budget": float(e), "success_rate": rate(e)} for e in budgets]
    names = np.asarray(vr.names, dtype=object)
    changed = (size[flipped] > 0).sum(axis=0)
    order = np.argsort(-changed, kind="stable")
    return {
        "success_rate": rate(eps),
        "valid_success_rate": rate(eps),  # the same figure, under the name readers knew
        "accuracy_under_attack": 1.0 - rate(eps) if n else float("nan"),
        "eps": float(eps),
        "norm": "valid-row l2",
        "norm_detail": NORM,
        "valid_rows": True,
        "success_rate_unbounded": float(flipped.mean()) if n else float("nan"),
        "curve": curve,
        "budget_unit": "l2 size of the change (see norm)",
        "by_eps": [
            {
                "eps": c["budget"],
                "success_rate": c["success_rate"],
                "accuracy_under_attack": 1.0 - c["success_rate"],
            }
            for c in curve
        ],
        "median_distance": float(np.median(dist[flipped])) if flipped.any() else None,
        "median_features_changed": float(np.median(nfeat[flipped])) if flipped.any() else None,
        "features_changed": {str(names[j]): int(changed[j]) for j in order if changed[j] > 0},
        "n_rows": n,
    }
