"""Permutation importance refuses a scoring its model cannot give (a regression model has no
class probabilities for ``roc_auc``) with an error naming what fits, before any scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.audit.explain import permutation_importance
from keel.errors import InvalidInput
from keel.features import FeatureSpec
from keel.train._train import Prepared, build_model


@pytest.fixture(scope="module")
def regression_model():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["y"] = 2 * frame["a"] - frame["b"] + rng.normal(scale=0.1, size=200)
    schema = [{"name": "a", "type": "float"}, {"name": "b", "type": "float"}]
    spec = FeatureSpec.infer({"a": "float", "b": "float", "y": "float"}, target="y")
    prep = Prepared(frame, frame, "y", "regression", spec, schema)
    model = build_model(prep, "lightgbm", {"n_estimators": 10}, seed=0)
    return model, frame


def test_roc_auc_of_a_regression_model_is_refused_by_name(regression_model):
    model, frame = regression_model
    X, y = frame[["a", "b"]], frame["y"].to_numpy()
    with pytest.raises(InvalidInput, match=r"scoring: roc_auc .* task is 'regression'.*r2"):
        permutation_importance(model, X, y, scoring="roc_auc", n_repeats=1)
    out = permutation_importance(model, X, y, scoring="r2", n_repeats=2)
    # the feature the target depends on most is the one whose shuffling costs the most
    assert out["scoring"] == "r2"
    assert list(out["importances"]) == ["a", "b"] and out["importances"]["b"]["mean"] > 0
