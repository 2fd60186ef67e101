"""Adapters that put fitted models behind keel's one :class:`keel.types.Model` contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = ["LightGBMModel", "SklearnModel", "check_input_frame"]


def check_input_frame(X: Any, input_schema: list[dict[str, Any]]) -> pd.DataFrame:
    """``X`` as a DataFrame with exactly the model's input columns, in order."""
    if isinstance(X, dict):
        X = pd.DataFrame(X)
    elif isinstance(X, list):
        X = pd.DataFrame.from_records(X)
    if not isinstance(X, pd.DataFrame):
        raise InvalidInput(
            f"model input: expected a pandas DataFrame (or records), got {type(X).__name__}"
        )
    names = [c["name"] for c in input_schema]
    missing = [n for n in names if n not in X.columns]
    if missing:
        raise InvalidInput(
            f"model input: missing column(s) {', '.join(map(repr, missing))}; "
            f"the model reads {', '.join(names)}"
        )
    return X[names]


def _plain(values: Any) -> list[Any]:
    """Class labels as plain Python values (JSON-safe), not NumPy scalars."""
    return [v.item() if hasattr(v, "item") else v for v in values]


class _Base:
    flavor = "base"

    def __init__(
        self,
        task: str,
        input_schema: list[dict[str, Any]],
        classes: list[Any] | None = None,
    ) -> None:
        if task not in ("classification", "regression"):
            raise InvalidInput(f"task: expected 'classification' or 'regression', got {task!r}")
        self.task = task
        self.input_schema = input_schema
        self.classes_ = _plain(classes) if classes is not None else None

    @property
    def output_schema(self) -> dict[str, Any]:
        outputs: list[dict[str, Any]] = [{"name": "label", "type": "label"}]
        if self.task == "classification":
            outputs.append(
                {"name": "probabilities", "type": "float", "shape": [len(self.classes_ or [])]}
            )
        return {"task": self.task, "classes": self.classes_, "outputs": outputs}

    @property
    def tags(self) -> dict[str, Any]:
        return {
            "flavor": self.flavor,
            "task": self.task,
            "predict_proba": self.task == "classification",
            "allow_nan": True,
        }

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.task != "classification":
            raise InvalidInput(f"predict_proba: a {self.task} model has no class probabilities")
        return self._proba(check_input_frame(X, self.input_schema))

    def _proba(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, inputs={len(self.input_schema)})"


class SklearnModel(_Base):
    """A fitted scikit-learn pipeline: keel's feature transform followed by an estimator."""

    flavor = "sklearn"

    def __init__(
        self,
        pipeline: Any,
        task: str,
        input_schema: list[dict[str, Any]],
        classes: list[Any] | None = None,
    ) -> None:
        super().__init__(task, input_schema, classes)
        self.pipeline = pipeline
        if self.classes_ is None and task == "classification":
            self.classes_ = _plain(pipeline.classes_)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.pipeline.predict(check_input_frame(X, self.input_schema)))

    def _proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(X), dtype=np.float64)

    @property
    def transformer(self) -> Any:
        return self.pipeline[:-1]

    @property
    def estimator(self) -> Any:
        return self.pipeline[-1]


class LightGBMModel(_Base):
    """keel's feature transform plus a native LightGBM booster (saved in its own text format)."""

    flavor = "lightgbm"

    def __init__(
        self,
        transformer: Any,
        booster: Any,
        task: str,
        input_schema: list[dict[str, Any]],
        classes: list[Any] | None = None,
    ) -> None:
        super().__init__(task, input_schema, classes)
        self.transformer = transformer
        self.booster = booster

    @classmethod
    def from_pipeline(
        cls, pipeline: Any, task: str, input_schema: list[dict[str, Any]]
    ) -> LightGBMModel:
        est = pipeline[-1]
        classes = list(est.classes_) if task == "classification" else None
        return cls(pipeline[:-1], est.booster_, task, input_schema, classes)

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(self.transformer.transform(X)))

    def _proba(self, X: pd.DataFrame) -> np.ndarray:
        raw = self._raw(X)
        if raw.ndim == 1:
            return np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, X: Any) -> np.ndarray:
        X = check_input_frame(X, self.input_schema)
        if self.task == "regression":
            return self._raw(X)
        idx = self._proba(X).argmax(axis=1)
        return np.asarray(self.classes_)[idx]
