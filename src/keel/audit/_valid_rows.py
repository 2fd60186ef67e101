"""The rows an applicant could actually submit to a model, and a model asked only about them.

:class:`ValidRows` reads the model's input schema and its training rows: an ``int`` column
takes whole numbers within the training range, a ``float`` column numbers within it, a
``string``/``category``/``bool`` column one of the categories seen in training. Columns
named in ``frozen`` (immutable features such as age or race, by policy) never change, nor
does a cell that is missing in the row attacked.

Attacks see a row as a point ``u`` in ``[0, 1]^d`` over the mutable columns: a numeric column
is one coordinate (its fraction of the training range), a categorical column one coordinate
per known category. :meth:`ValidRows.rows` projects any such point onto the nearest valid
row (whole numbers rounded, the highest-scoring category chosen, frozen columns taken from
the row attacked), so whatever an attack asks about, the model answers for a valid row.

The size of a change is per column: ``|new - old| / (max - min)`` for a numeric column
(a fraction of its training range), 1 for a changed category; a change's ``distance`` is the
L2 norm of those, and its ``features`` the number of columns changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = ["Column", "ValidRows", "check_frozen"]

_NUMERIC = ("int", "float")


@dataclass
class Column:
    """One input column: its kind (``int``, ``float`` or ``category``), training range or
    known categories, and whether policy freezes it."""

    name: str
    kind: str
    lo: float = 0.0
    hi: float = 0.0
    categories: list[Any] = field(default_factory=list)
    frozen: bool = False
    grid: list[Any] = field(default_factory=list)  # values a search tries

    @property
    def span(self) -> float:
        return self.hi - self.lo

    @property
    def mutable(self) -> bool:
        if self.frozen:
            return False
        return len(self.categories) > 1 if self.kind == "category" else self.span > 0

    @property
    def width(self) -> int:
        """Coordinates of this column in the attack point."""
        if not self.mutable:
            return 0
        return len(self.categories) if self.kind == "category" else 1


def _features(model: Any) -> list[str]:
    return [str(c["name"]) for c in getattr(model, "input_schema", None) or []]


def check_frozen(model: Any, frozen: Iterable[Any] | None) -> list[str]:
    """``frozen`` as a list of the model's feature names; a name the model does not read is
    refused, naming it and listing the model's features."""
    if frozen is None:
        return []
    if isinstance(frozen, str) or not isinstance(frozen, Iterable):
        raise InvalidInput(
            f"robustness frozen features: expected a list of feature names, got {frozen!r}"
        )
    names = list(frozen)
    features = _features(model)
    for name in names:
        if not isinstance(name, str) or name not in features:
            raise InvalidInput(
                f"robustness frozen feature {name!r}: the model has no such feature; its "
                f"features are {', '.join(features)}"
            )
    return list(dict.fromkeys(names))


def _missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _grid(v: np.ndarray, kind: str, lo: float, hi: float, n_values: int) -> list[Any]:
    """Values a search tries for a numeric column: every whole number when an ``int`` column
    has at most ``n_values`` of them, else evenly spaced values and training quantiles."""
    if not len(v) or hi <= lo:
        return []
    if kind == "int" and hi - lo + 1 <= n_values:
        return [int(x) for x in np.arange(np.ceil(lo), np.floor(hi) + 1)]
    half = max(n_values // 2, 2)
    pts = np.concatenate([np.linspace(lo, hi, half), np.quantile(v, np.linspace(0, 1, half))])
    if kind == "int":
        return sorted({int(x) for x in np.round(pts)})
    return sorted({float(x) for x in pts})


class ValidRows:
    """Valid rows of ``model``'s input, learnt from ``X_train``; ``frozen`` columns never
    change. ``queries`` counts the rows the model was asked about; answers are cached by
    valid row, so an attack that keeps landing on the same row pays once."""

    def __init__(
        self,
        model: Any,
        X_train: pd.DataFrame,
        frozen: Iterable[str] = (),
        *,
        n_values: int = 12,
        fast: bool = True,
    ) -> None:
        if getattr(model, "task", None) != "classification":
            raise InvalidInput(
                f"model: expected a classifier, got a {getattr(model, 'task', None)} model"
            )
        frozen = set(check_frozen(model, frozen))
        types = {str(c["name"]): c.get("type") for c in model.input_schema}
        missing = [n for n in types if n not in X_train.columns]
        if missing:
            raise InvalidInput(
                f"X_train: missing column(s) {', '.join(map(repr, missing))}; the model reads "
                f"{', '.join(types)}"
            )
        self.model = model
        self.classes = list(model.classes_)
        self.columns: list[Column] = []
        for name, kind in types.items():
            col = X_train[name]
            if kind in _NUMERIC:
                v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
                v = v[np.isfinite(v)]
                lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 0.0)
                grid = _grid(v, kind, lo, hi, n_values)
                self.columns.append(Column(name, kind, lo, hi, frozen=name in frozen, grid=grid))
            else:
                cats = sorted(col.dropna().unique().tolist(), key=lambda c: (str(type(c)), c))
                self.columns.append(
                    Column(name, "category", categories=cats, frozen=name in frozen, grid=cats)
                )
        self.frozen = [c.name for c in self.columns if c.frozen]
        self.mutable = [c for c in self.columns if c.mutable]
        self.dim = sum(c.width for c in self.mutable)
        self.queries = 0
        from keel.audit._valid_fast import FastEncoder

        self.fast = FastEncoder.build(self, X_train) if fast else None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    # -- attack points ---------------------------------------------------------------------

    def points(self, X: pd.DataFrame) -> np.ndarray:
        """Rows → attack points (missing cells at 0; they are restored by :meth:`rows`)."""
        out = np.zeros((len(X), self.dim), dtype=np.float64)
        j = 0
        for c in self.mutable:
            if c.kind == "category":
                vals = X[c.name].to_numpy(dtype=object)
                for k, cat in enumerate(c.categories):
                    out[:, j + k] = [v == cat for v in vals]
            else:
                v = pd.to_numeric(X[c.name], errors="coerce").to_numpy(dtype=np.float64)
                out[:, j] = np.nan_to_num(np.clip((v - c.lo) / c.span, 0.0, 1.0))
            j += c.width
        return out

    def codes(self, X: pd.DataFrame) -> np.ndarray:
        """Rows → one code per mutable column: the number (NaN when missing), or the index
        of the category (-1 for a category not seen in training, -2 when missing)."""
        out = np.zeros((len(X), len(self.mutable)))
        for j, c in enumerate(self.mutable):
            if c.kind == "category":
                index = {cat: k for k, cat in enumerate(c.categories)}
                out[:, j] = [-2 if _missing(v) else index.get(v, -1) for v in X[c.name]]
            else:
                out[:, j] = pd.to_numeric(X[c.name], errors="coerce").to_numpy(np.float64)
        return out

    def project(self, U: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Codes of the valid rows nearest to points ``U`` around one row (its codes
        ``base``): whole numbers rounded within the training range, the highest-scoring
        category (the row's own where every score is under 0.5), missing cells kept."""
        U = np.asarray(U, dtype=np.float64).reshape(-1, self.dim)
        out = np.empty((len(U), len(self.mutable)))
        j = 0
        for k, c in enumerate(self.mutable):
            block = U[:, j : j + c.width]
            if c.kind == "category":
                pick = block.argmax(axis=1).astype(np.float64)
                keep = block.max(axis=1) < 0.5
                out[:, k] = np.where(keep, base[k], pick)
            else:
                v = c.lo + np.clip(block[:, 0], 0.0, 1.0) * c.span
                if c.kind == "int":
                    v = np.clip(np.round(v), np.ceil(c.lo), np.floor(c.hi))
                out[:, k] = v
            if np.isnan(base[k]) or base[k] == -2:
                out[:, k] = base[k]
            j += c.width
        return out

    def frame(self, C: np.ndarray, base: pd.DataFrame) -> pd.DataFrame:
        """The rows with codes ``C``: ``base`` (one row) with every mutable column set."""
        out = base.iloc[np.zeros(len(C), dtype=int)].reset_index(drop=True)
        for k, c in enumerate(self.mutable):
            old = out[c.name]
            if c.kind == "category":
                cats = np.asarray(c.categories, dtype=object)
                idx = C[:, k].astype(int)
                new = np.where(idx >= 0, cats[np.maximum(idx, 0)], old.to_numpy(dtype=object))
                out[c.name] = new if old.dtype == object else pd.Series(new).astype(old.dtype)
            elif c.kind == "int" and not np.isnan(C[:, k]).any():
                whole = C[:, k].astype(np.int64)
                # in the column's own integer dtype (NumPy or pandas' nullable Int64)
                out[c.name] = pd.Series(whole, dtype=old.dtype) if old.dtype.kind in "iu" else whole
            else:
                out[c.name] = C[:, k]
        return out

    def rows(self, U: np.ndarray, base: pd.DataFrame) -> pd.DataFrame:
        """The valid rows nearest to points ``U`` around the one row ``base``."""
        return self.frame(self.project(U, self.codes(base)[0]), base)

    # -- the model on valid rows -----------------------------------------------------------

    def proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities on rows ``X``."""
        self.queries += len(X)
        return np.asarray(self.model.predict_proba(X), dtype=np.float64)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Class indices (into ``classes``) on rows ``X``."""
        return self.proba(X).argmax(axis=1)

    def row_oracle(self, base: pd.DataFrame) -> Any:
        """``proba(U)`` on attack points around the one row ``base``: every point is
        projected onto a valid row (frozen columns and missing cells from ``base``) before
        the model sees it. Answers are cached by valid row; with a per-column feature
        transform (:mod:`keel.audit._valid_fast`) the model is asked on encoded features
        built from ``base``'s own, without a DataFrame per call."""
        bcodes = self.codes(base)[0]
        cache: dict[bytes, np.ndarray] = {}
        fast = self.fast
        at = fast.at(base) if fast is not None else None

        def proba(U: np.ndarray) -> np.ndarray:
            C = self.project(U, bcodes)
            keys = [r.tobytes() for r in C]
            todo = list({k: i for i, k in enumerate(keys) if k not in cache}.values())
            if todo:
                self.queries += len(todo)
                if fast is not None and at is not None:
                    p = fast.proba(C[todo], at)
                else:
                    p = np.asarray(self.model.predict_proba(self.frame(C[todo], base)))
                cache.update(zip([keys[i] for i in todo], p, strict=True))
            return np.stack([cache[k] for k in keys]).astype(np.float32)

        return proba

    # -- sizes of changes and validity -----------------------------------------------------

    def changes(self, X0: pd.DataFrame, X1: pd.DataFrame) -> np.ndarray:
        """Per-column size of the change from ``X0`` to ``X1`` (rows aligned): a fraction of
        the training range for numbers, 1 for a changed category, 0 for no change."""
        out = np.zeros((len(X0), len(self.columns)))
        for j, c in enumerate(self.columns):
            a, b = X0[c.name].reset_index(drop=True), X1[c.name].reset_index(drop=True)
            if c.kind == "category":
                same = (a.to_numpy(dtype=object) == b.to_numpy(dtype=object)) | (
                    a.isna().to_numpy() & b.isna().to_numpy()
                )
                out[:, j] = ~same
            else:
                x = pd.to_numeric(a, errors="coerce").to_numpy(dtype=np.float64)
                y = pd.to_numeric(b, errors="coerce").to_numpy(dtype=np.float64)
                d = np.abs(y - x) / (c.span if c.span > 0 else 1.0)
                out[:, j] = np.where(np.isnan(x) & np.isnan(y), 0.0, np.nan_to_num(d, nan=1.0))
        return out

    def problems(self, X: pd.DataFrame, original: pd.DataFrame | None = None) -> list[str]:
        """Why rows of ``X`` are not valid (empty when every row is): a number outside the
        training range or not whole in an ``int`` column, an unknown category, or (with the
        ``original`` rows) a frozen column that changed."""
        out: list[str] = []
        for c in self.columns:
            col = X[c.name].reset_index(drop=True)
            present = col.notna().to_numpy()
            if c.kind == "category":
                bad = present & ~col.isin(c.categories).to_numpy()
                what = "a category seen in training"
            else:
                v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
                bad = present & ((v < c.lo) | (v > c.hi))
                if c.kind == "int":
                    bad |= present & (np.round(v) != v)
                what = f"{'a whole number' if c.kind == 'int' else 'a number'} in [{c.lo}, {c.hi}]"
            if original is not None:
                before = original[c.name].reset_index(drop=True)
                moved = ~((before == col) | (before.isna() & col.isna())).to_numpy()
                if c.frozen:
                    bad = bad | moved
                    what += " (frozen: unchanged)"
                else:  # an unchanged cell of the original row is valid as it was submitted
                    bad = bad & moved
            for i in np.flatnonzero(bad)[:5]:
                out.append(f"row {i} column {c.name!r}: expected {what}, got {col.iloc[i]!r}")
        return out
