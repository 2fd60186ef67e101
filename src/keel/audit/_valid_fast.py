"""Encoded features of valid rows without a DataFrame per model call.

A decision-based attack asks the model about one or a few rows at a time, thousands of times
per attacked row; through the feature pipeline each call costs milliseconds. When the
model's feature transform works column by column (every encoded output traces back to one
raw column, :func:`keel.features.feature_origins`), a numeric column's outputs are affine in
its value (passthrough, scaling) and a categorical column's outputs are one vector per known
category, then a changed row's encoding is the attacked row's own encoding with the changed
columns' outputs replaced. :meth:`FastEncoder.build` reads those maps off the transform and
checks them against it on training rows and on random valid rows; a transform that does not
fit (interactions, logs, bins) gets None, and attacks ask the model through its DataFrame
interface instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.audit._space import column_transformer, model_parts, proba_encoded
from keel.errors import InvalidInput

__all__ = ["FastEncoder"]


class FastEncoder:
    """Per mutable column of a :class:`~keel.audit._valid_rows.ValidRows`: its output
    indices and either ``(a, b)`` (outputs = a·value + b) or a table (one row per category)."""

    def __init__(self, vr: Any, transformer: Any, estimator: Any, kind: str) -> None:
        self.vr = vr
        self.transformer, self.estimator, self.kind = transformer, estimator, kind
        self.maps: list[tuple[np.ndarray, Any]] = []

    @classmethod
    def build(cls, vr: Any, X_train: pd.DataFrame, n_check: int = 200) -> FastEncoder | None:
        from keel.features import feature_origins

        try:
            transformer, estimator, kind = model_parts(vr.model)
            origins = np.asarray(feature_origins(column_transformer(transformer)), dtype=object)
        except (InvalidInput, AttributeError, ValueError, TypeError):
            return None
        if not len(X_train) or not vr.mutable:
            return None
        self = cls(vr, transformer, estimator, kind)
        row = X_train.iloc[[0]]
        for c in vr.mutable:
            idx = np.flatnonzero(origins == c.name)
            if c.kind == "category":
                C = np.tile(vr.codes(row)[0], (len(c.categories), 1))
                C[:, vr.mutable.index(c)] = np.arange(len(c.categories))
                Z = self.encode_frame(vr.frame(C, row))
                self.maps.append((idx, Z[:, idx]))
            else:
                C = np.tile(vr.codes(row)[0], (2, 1))
                C[:, vr.mutable.index(c)] = [np.ceil(c.lo), np.floor(c.hi)]
                if C[0, vr.mutable.index(c)] == C[1, vr.mutable.index(c)]:
                    C[:, vr.mutable.index(c)] = [c.lo, c.hi]
                Z = self.encode_frame(vr.frame(C, row))
                v0, v1 = C[0, vr.mutable.index(c)], C[1, vr.mutable.index(c)]
                a = (Z[1, idx] - Z[0, idx]) / (v1 - v0)
                self.maps.append((idx, (a, Z[0, idx] - a * v0)))
        return self if self._agrees(X_train, n_check) else None

    def encode_frame(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.transformer.transform(X), dtype=np.float64)

    def base(self, row: pd.DataFrame) -> np.ndarray:
        """The encoded features of one attacked row."""
        return self.encode_frame(row)[0]

    def encode(self, C: np.ndarray, base_codes: np.ndarray, z_base: np.ndarray) -> np.ndarray:
        """Encoded features of the rows with codes ``C`` around a row (``base_codes``,
        ``z_base``): the row's encoding with every column whose code differs replaced."""
        Z = np.tile(z_base, (len(C), 1))
        for k, (idx, m) in enumerate(self.maps):
            col = C[:, k]
            moved = ~((col == base_codes[k]) | (np.isnan(col) & np.isnan(base_codes[k])))
            if not moved.any():
                continue
            rows = np.flatnonzero(moved)
            if isinstance(m, tuple):
                Z[np.ix_(rows, idx)] = np.outer(col[rows], m[0]) + m[1]
            else:
                known = col[rows] >= 0
                Z[np.ix_(rows[known], idx)] = m[col[rows[known]].astype(int)]
        return Z

    def proba(self, C: np.ndarray, base_codes: np.ndarray, z_base: np.ndarray) -> np.ndarray:
        return proba_encoded(self.estimator, self.kind, self.encode(C, base_codes, z_base))

    def _agrees(self, X_train: pd.DataFrame, n_check: int) -> bool:
        """Whether the maps give the transform's own encoding on ``n_check`` random valid
        rows around training rows (and the model the same probabilities)."""
        rng = np.random.default_rng(0)
        vr = self.vr
        pick = rng.choice(len(X_train), size=min(n_check, len(X_train)), replace=False)
        U = rng.uniform(0.0, 1.0, (10 * len(pick), vr.dim))
        for i, r in enumerate(pick[: max(n_check // 10, 1)]):
            row = X_train.iloc[[r]]
            base = vr.codes(row)[0]
            C = vr.project(U[10 * i : 10 * i + 10], base)
            want = self.encode_frame(vr.frame(C, row))
            got = self.encode(C, base, self.base(row))
            if want.shape != got.shape or not np.allclose(want, got, atol=1e-6, rtol=1e-6):
                return False
            p_want = np.asarray(vr.model.predict_proba(vr.frame(C, row)), dtype=np.float64)
            if not np.allclose(p_want, proba_encoded(self.estimator, self.kind, got), atol=1e-5):
                return False
        return True
