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

A mitigated model (:mod:`keel.models._mitigated`) is asked the same way: a threshold
version's base model scores the encoded rows and its per-group thresholds apply to the
scores, an ensemble's members decide on them; the seeded draw of a row whose probability
lies between 0 and 1 hashes the row's values as the model does (:func:`row_uniforms`), each
column's hash looked up per category or computed for the new numbers, so every valid row
gets the decision the model itself gives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.audit._space import column_transformer, model_parts, proba_encoded
from keel.errors import InvalidInput

__all__ = ["FastEncoder", "RowCodes"]


@dataclass
class RowCodes:
    """One attacked row as the fast path works around it: the row, its codes, its encoded
    features and (for a mitigated model) each input column's hash and its group texts."""

    row: pd.DataFrame
    codes: np.ndarray
    z: np.ndarray
    hashes: np.ndarray | None = None
    texts: list[str] | None = None


def _parts(model: Any) -> tuple[Any, Any, str, list[str] | None]:
    """(feature transform, estimator, kind, columns the transform reads or None for all); a
    threshold version is scored by its base model, an ensemble by its members."""
    flavor = getattr(model, "flavor", None)
    if flavor == "postprocessed":
        transformer, estimator, kind = model_parts(model.base)
        return transformer, estimator, kind, [str(c["name"]) for c in model.base.input_schema]
    if flavor == "randomized_ensemble":
        return model.transformer, model, "ensemble", None
    transformer, estimator, kind = model_parts(model)
    return transformer, estimator, kind, None


class FastEncoder:
    """Per mutable column of a :class:`~keel.audit._valid_rows.ValidRows`: its output
    indices and either ``(a, b)`` (outputs = a·value + b) or a table (one row per category)."""

    def __init__(
        self,
        vr: Any,
        transformer: Any,
        estimator: Any,
        kind: str,
        columns: list[str] | None = None,
    ) -> None:
        self.vr = vr
        self.transformer, self.estimator, self.kind = transformer, estimator, kind
        self.columns = columns
        self.maps: list[tuple[np.ndarray, Any]] = []
        from keel.models._mitigated import FLAVORS

        model = vr.model
        self.randomized = getattr(model, "flavor", None) in FLAVORS
        self.seed = int(getattr(model, "seed", 0))
        self.sensitive: list[str] = list(getattr(model, "rule", {}).get("sensitive") or [])
        self.hash_tables: list[np.ndarray | None] = []  # per mutable column: per category
        self.text_tables: list[np.ndarray | None] = []  # per mutable column: per category

    @classmethod
    def build(cls, vr: Any, X_train: pd.DataFrame, n_check: int = 200) -> FastEncoder | None:
        from keel.features import feature_origins

        try:
            transformer, estimator, kind, columns = _parts(vr.model)
            origins = np.asarray(feature_origins(column_transformer(transformer)), dtype=object)
        except (InvalidInput, AttributeError, ValueError, TypeError):
            return None
        if not len(X_train) or not vr.mutable:
            return None
        self = cls(vr, transformer, estimator, kind, columns)
        if self.randomized:
            self._tables()
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

    def _tables(self) -> None:
        """Per mutable category column, each category's hash and group text."""
        from keel.models._mitigated import MISSING, _texts, value_hashes

        for c in self.vr.mutable:
            if c.kind != "category":
                self.hash_tables.append(None)
                self.text_tables.append(None)
                continue
            cats = pd.Series(c.categories, dtype=object)
            self.hash_tables.append(value_hashes(cats, False, self.seed))
            self.text_tables.append(_texts(cats, MISSING))

    def encode_frame(self, X: pd.DataFrame) -> np.ndarray:
        if self.columns is not None:
            X = X[self.columns]
        return np.asarray(self.transformer.transform(X), dtype=np.float64)

    def base(self, row: pd.DataFrame) -> np.ndarray:
        """The encoded features of one attacked row."""
        return self.encode_frame(row)[0]

    def at(self, row: pd.DataFrame) -> RowCodes:
        """What the fast path needs of the one attacked row ``row``."""
        out = RowCodes(row, self.vr.codes(row)[0], self.base(row))
        if self.randomized:
            from keel.models._mitigated import MISSING, _isna, _text, row_hashes

            values = {n: row[n].iloc[0] for n in self.vr.names}
            out.hashes = row_hashes(values, self.vr.model.input_schema, self.seed)
            out.texts = [MISSING if _isna(values[n]) else _text(values[n]) for n in self.sensitive]
        return out

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

    def proba(self, C: np.ndarray, at: RowCodes) -> np.ndarray:
        """The model's class probabilities on the valid rows with codes ``C`` around the
        row ``at`` (a mitigated model's: its decisions as 0 or 1)."""
        Z = self.encode(C, at.codes, at.z)
        if not self.randomized:
            return proba_encoded(self.estimator, self.kind, Z)
        from keel.models._mitigated import draw_with, hashes_to_uniforms

        model = self.vr.model
        if self.kind == "ensemble":
            pmf = model.pmf_encoded(Z, num_threads=1)  # as proba_encoded asks a booster
        else:
            scores = proba_encoded(self.estimator, self.kind, Z)[:, model.positive_index]
            pmf = model.pmf_from_scores(scores, self._keys(C, at))
        d = draw_with(pmf, lambda idx: hashes_to_uniforms(self._hashes(C[idx], at)))
        d = d.astype(np.float64)
        return np.column_stack([1.0 - d, d])

    def _moved(self, C: np.ndarray, at: RowCodes, k: int) -> np.ndarray:
        col, b = C[:, k], at.codes[k]
        return ~((col == b) | (np.isnan(col) & np.isnan(b)))

    def _hashes(self, C: np.ndarray, at: RowCodes) -> np.ndarray:
        """Per row of codes ``C``, each input column's hash (the row's own where unchanged)."""
        from keel.models._mitigated import value_hashes

        assert at.hashes is not None
        H = np.tile(at.hashes, (len(C), 1))
        names = self.vr.names
        for k, c in enumerate(self.vr.mutable):
            rows = np.flatnonzero(self._moved(C, at, k))
            if not len(rows):
                continue
            j = names.index(c.name)
            table = self.hash_tables[k]
            if table is not None:
                H[rows, j] = table[C[rows, k].astype(int)]
            else:
                H[rows, j] = value_hashes(C[rows, k], True, self.seed)
        return H

    def _keys(self, C: np.ndarray, at: RowCodes) -> np.ndarray:
        """Per row of codes ``C``, its group key (:func:`keel.models._mitigated.group_keys`)."""
        from keel.models._mitigated import MISSING, _text

        assert at.texts is not None
        parts = []
        index = {c.name: k for k, c in enumerate(self.vr.mutable)}
        for name, own in zip(self.sensitive, at.texts, strict=True):
            texts = np.full(len(C), own, dtype=object)
            k = index.get(name)
            if k is not None:
                rows = np.flatnonzero(self._moved(C, at, k))
                table = self.text_tables[k]
                if table is not None:
                    texts[rows] = table[C[rows, k].astype(int)]
                else:
                    texts[rows] = [MISSING if np.isnan(v) else _text(v) for v in C[rows, k]]
            parts.append(texts)
        if len(parts) == 1:
            return parts[0]
        return np.asarray([" & ".join(t) for t in zip(*parts, strict=True)], dtype=object)

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
            at = self.at(row)
            want = self.encode_frame(vr.frame(C, row))
            got = self.encode(C, base, at.z)
            if want.shape != got.shape or not np.allclose(want, got, atol=1e-6, rtol=1e-6):
                return False
            p_want = np.asarray(vr.model.predict_proba(vr.frame(C, row)), dtype=np.float64)
            if not np.allclose(p_want, self.proba(C, at), atol=1e-5):
                return False
        return True
