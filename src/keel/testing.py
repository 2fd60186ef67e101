"""Conformance checks a third party can run on its own plug-in.

``check_model(model, X)`` is what every model adapter must pass: the contract of
:class:`keel.types.Model`, consistent predictions, a safe save/load round trip where the
adapter is saveable, and clear errors on bad input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.types import Model

__all__ = ["check_model"]


def check_model(model: Any, X: pd.DataFrame, *, blobs: Any = None) -> None:
    """Raise ``AssertionError`` naming the first broken rule of the model contract."""
    assert isinstance(model, Model), f"{type(model).__name__} does not implement keel.types.Model"
    _check_schemas(model, X)
    pred = np.asarray(model.predict(X))
    assert pred.shape == (len(X),), f"predict: expected shape ({len(X)},), got {pred.shape}"
    assert np.array_equal(pred, np.asarray(model.predict(X))), "predict is not deterministic"
    if model.tags.get("predict_proba"):
        _check_proba(model, X, pred)
    _check_column_order(model, X, pred)
    _check_bad_input(model, X)
    if blobs is not None:
        _check_round_trip(model, X, blobs)


def _check_schemas(model: Any, X: pd.DataFrame) -> None:
    names = [c["name"] for c in model.input_schema]
    assert names, "input_schema is empty"
    assert all("type" in c for c in model.input_schema), "every input column needs a type"
    missing = set(names) - set(X.columns)
    assert not missing, f"sample X lacks the model's input columns {missing}"
    out = model.output_schema
    assert out.get("task") == model.task, "output_schema task differs from model.task"
    if model.task == "classification":
        assert out.get("classes"), "a classifier's output_schema must list its classes"


def _check_proba(model: Any, X: pd.DataFrame, pred: np.ndarray) -> None:
    proba = np.asarray(model.predict_proba(X))
    classes = model.output_schema["classes"]
    assert proba.shape == (len(X), len(classes)), f"predict_proba shape {proba.shape}"
    assert np.all((proba >= 0) & (proba <= 1)), "probabilities outside [0, 1]"
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-6), "probabilities do not sum to 1"
    top = np.asarray(classes)[proba.argmax(axis=1)]
    assert np.array_equal(top.astype(str), pred.astype(str)), (
        "predict disagrees with argmax of predict_proba"
    )


def _check_column_order(model: Any, X: pd.DataFrame, pred: np.ndarray) -> None:
    shuffled = X[list(reversed(X.columns))]
    assert np.array_equal(np.asarray(model.predict(shuffled)), pred), (
        "result depends on column order"
    )
    one = np.asarray(model.predict(X.iloc[:1]))
    # a label must be the same; a number the same to float32 rounding (a batch of one may
    # take another kernel than a batch of fifty: torch's convolutions differ in the last bit)
    same = (
        bool(np.isclose(float(one[0]), float(pred[0]), rtol=1e-5, atol=1e-6))
        if one.shape == (1,) and np.issubdtype(np.asarray(pred).dtype, np.floating)
        else one.shape == (1,) and one[0] == pred[0]
    )
    assert same, "a single row predicts differently than in a batch"


def _check_bad_input(model: Any, X: pd.DataFrame) -> None:
    first = model.input_schema[0]["name"]
    try:
        model.predict(X.drop(columns=[first]))
    except InvalidInput as exc:
        assert first in str(exc), f"the missing-column error does not name {first!r}: {exc}"
    else:
        raise AssertionError("predict accepted input without a required column")


def _check_round_trip(model: Any, X: pd.DataFrame, blobs: Any) -> None:
    from keel.models import load_model, save_model

    sha = save_model(model, blobs)
    loaded = load_model(blobs, sha)
    assert loaded.input_schema == model.input_schema, "input_schema changed in a round trip"
    assert np.array_equal(np.asarray(loaded.predict(X)), np.asarray(model.predict(X))), (
        "predictions changed in a save/load round trip"
    )
    if model.tags.get("predict_proba"):
        assert np.allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-12)
