"""A keel model seen as a function of its encoded features (the tensor attacks' helpers
read it; the robustness evidence attacks valid rows, :mod:`keel.audit._valid_rows`).

The attack space is the feature pipeline's output (one column per encoded feature), min-max
scaled to ``[0, 1]`` on the training rows, so budgets (``eps``) are fractions of each
feature's observed range and every attack is clipped to that range. One-hot columns are
continuous there; :meth:`EncodedSpace.project` maps a point back onto valid encodings (one
category per one-hot group, whole numbers for integer columns).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = ["EncodedSpace", "art", "model_parts", "proba_encoded"]


def art() -> Any:
    """The ``art`` package, imported without its "PyTorch not found" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*PyTorch not found.*")
        import art as art_pkg
        import art.attacks.evasion
        import art.attacks.inference.membership_inference
        import art.estimators.classification  # noqa: F401
    return art_pkg


def model_parts(model: Any) -> tuple[Any, Any, str]:
    """(fitted feature transform, estimator or booster, kind) of a keel model adapter."""
    flavor = getattr(model, "flavor", None)
    if flavor == "lightgbm":
        return model.transformer, model.booster, "booster"
    if flavor == "sklearn":
        return model.pipeline[:-1], model.pipeline[-1], "sklearn"
    if flavor == "torch" and getattr(model, "transformer", None) is not None:
        return model.transformer, model, "torch"
    raise InvalidInput(
        f"model: expected a keel LightGBM, scikit-learn or tabular torch model (its feature "
        f"pipeline is the "
        f"attack space), got flavor {flavor!r}; audit the version it was exported from"
    )


def column_transformer(transformer: Any) -> Any:
    from sklearn.pipeline import Pipeline

    while isinstance(transformer, Pipeline):
        transformer = transformer[-1]
    return transformer


def proba_encoded(estimator: Any, kind: str, Z: np.ndarray) -> np.ndarray:
    """Class probabilities of a model's estimator (``_parts``) on encoded features ``Z``."""
    if kind == "booster":
        raw = np.asarray(estimator.predict(Z, num_threads=1))
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw
    if kind == "torch":  # the network on encoded rows, softmax of its logits
        z = estimator.forward(np.asarray(Z, dtype=np.float32))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return np.asarray(estimator.predict_proba(Z), dtype=np.float64)


class EncodedSpace:
    """``model`` as ``proba(U)`` on encoded features scaled to ``[0, 1]`` by ``X_train``'s
    range. ``queries`` counts the rows asked about."""

    def __init__(self, model: Any, X_train: pd.DataFrame) -> None:
        if getattr(model, "task", None) != "classification":
            raise InvalidInput(
                f"model: expected a classifier, got a {getattr(model, 'task', None)} model"
            )
        self.model = model
        self.transformer, self.estimator, self._kind = model_parts(model)
        self.classes = list(model.classes_)
        Z = self.encode_raw(X_train)
        self.lo = np.nanmin(Z, axis=0)
        self.span = np.nanmax(Z, axis=0) - self.lo
        self.queries = 0
        self._groups, self._integers = self._layout()

    @property
    def n_features(self) -> int:
        return int(self.lo.shape[0])

    def encode_raw(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.transformer.transform(X), dtype=np.float64)

    def to_unit(self, Z: np.ndarray) -> np.ndarray:
        safe = np.where(self.span > 0, self.span, 1.0)
        return np.clip((Z - self.lo) / safe, 0.0, 1.0).astype(np.float32)

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        """Raw rows → points of the attack space (float32, as ART works)."""
        return self.to_unit(self.encode_raw(X))

    def decode(self, U: np.ndarray) -> np.ndarray:
        """Attack-space points → encoded features (constant features stay constant)."""
        return self.lo + np.asarray(U, dtype=np.float64) * self.span

    def proba_encoded(self, Z: np.ndarray) -> np.ndarray:
        return proba_encoded(self.estimator, self._kind, Z)

    def proba(self, U: np.ndarray) -> np.ndarray:
        U = np.asarray(U)
        self.queries += int(U.shape[0]) if U.ndim > 1 else 1
        return self.proba_encoded(self.decode(U.reshape(-1, self.n_features)))

    def predict(self, U: np.ndarray) -> np.ndarray:
        """Class indices (into ``classes``) at ``U``."""
        return self.proba(U).argmax(axis=1)

    def art_classifier(self) -> Any:
        """An ART black-box classifier asking this space (clip values 0 and 1)."""
        bb = art().estimators.classification.BlackBoxClassifier
        return bb(
            self.proba,
            input_shape=(self.n_features,),
            nb_classes=len(self.classes),
            clip_values=(0.0, 1.0),
        )

    def _layout(self) -> tuple[list[np.ndarray], np.ndarray]:
        """One-hot groups (column indices) and integer columns of the encoded features."""
        from keel.features import feature_origins

        try:
            origins = feature_origins(column_transformer(self.transformer))
        except (InvalidInput, AttributeError, ValueError):
            return [], np.zeros(self.n_features, dtype=bool)
        types = {c["name"]: c.get("type") for c in self.model.input_schema}
        origins_arr = np.asarray(origins, dtype=object)
        groups = []
        for name in dict.fromkeys(origins):
            idx = np.flatnonzero(origins_arr == name)
            if types.get(name) in ("string", "category") and len(idx) > 1:
                groups.append(idx)
        integers = np.array([types.get(o) == "int" for o in origins], dtype=bool)
        return groups, integers

    def project(self, U: np.ndarray) -> np.ndarray:
        """The nearest valid encodings: one category per one-hot group, whole numbers for
        integer columns (and still inside the training range)."""
        Z = self.decode(U)
        for idx in self._groups:
            block = Z[:, idx]
            pick = block.argmax(axis=1)
            Z[:, idx] = 0.0
            Z[np.arange(len(Z)), idx[pick]] = 1.0
        Z[:, self._integers] = np.round(Z[:, self._integers])
        return self.to_unit(Z)
