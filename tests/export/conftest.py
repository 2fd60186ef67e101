"""Fixtures for the ONNX export tests.

``adult_split``
    A small Adult sample (train 800 rows, hold-out 400) with the column types, whose
    hold-out part also holds what serving meets: unseen categories and extra missing
    values in text and number columns.
``fit``
    ``fit(kind, task="classification", spec=None)``: a zoo model trained on
    ``adult_split`` like ``keel.train.build_model`` does (few trees, short fits), cached
    per session when ``spec`` is None. Classification predicts ``income``; regression
    ``hours-per-week``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning

from keel.datasets import adult
from keel.train import ZOO
from keel.train._train import Prepared, _load_spec, build_model

FAST = {
    "lightgbm": {"n_estimators": 30},
    "hist_gradient_boosting": {"max_iter": 30},
    "random_forest": {"n_estimators": 20},
    "logistic_regression": {"max_iter": 300},
    "mlp": {"max_iter": 30, "hidden_layer_sizes": [16], "early_stopping": False},
    "dp_logistic_regression": {},  # ε = 1, the default
    "dp_gaussian_nb": {},
}
TARGETS = {"classification": "income", "regression": "hours-per-week"}
UNSEEN = {"workclass": "Never-seen-before", "native-country": "Atlantis", "race": "Martian"}


@dataclass
class AdultSplit:
    train: pd.DataFrame
    test: pd.DataFrame
    types: dict[str, str]
    unseen: dict[str, str]

    @staticmethod
    def target(task: str) -> str:
        return TARGETS[task]

    def inputs(self, task: str) -> list[str]:
        return [c for c in self.train.columns if c != TARGETS[task]]

    def schema(self, task: str) -> list[dict[str, str]]:
        return [{"name": c, "type": self.types[c]} for c in self.inputs(task)]


@pytest.fixture(scope="session")
def adult_split() -> AdultSplit:
    df = adult("train").sample(1200, random_state=0).reset_index(drop=True)
    types = {c: ("int" if df[c].dtype.kind == "i" else "string") for c in df.columns}
    train, test = df.iloc[:800].reset_index(drop=True), df.iloc[800:].reset_index(drop=True)
    test = test.astype({"age": float, "capital-gain": float})
    for k, (column, value) in enumerate(UNSEEN.items()):
        test.loc[5 * k : 5 * k + 4, column] = value
    test.loc[20:24, "age"] = np.nan
    test.loc[25:29, "capital-gain"] = np.nan
    test.loc[30:34, "occupation"] = None
    test.loc[35:39, "education"] = np.nan  # never missing in training
    return AdultSplit(train, test, types, dict(UNSEEN))


@pytest.fixture(scope="session")
def fit(adult_split: AdultSplit) -> Any:
    cache: dict[tuple[str, str], Any] = {}

    def fit(kind: str, task: str = "classification", spec: Any = None) -> Any:
        key = (kind, task)
        if spec is None and key in cache:
            return cache[key]
        scale = ZOO[kind].tags.get("needs_scaling", False)
        chosen = spec or _load_spec(None, adult_split.types, TARGETS[task], scale=scale)
        prep = Prepared(
            adult_split.train,
            adult_split.test,
            TARGETS[task],
            task,
            chosen,
            adult_split.schema(task),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # short fits on purpose
            model = build_model(prep, kind, FAST[kind], seed=0)
        if spec is None:
            cache[key] = model
        return model

    return fit
