"""keel's own transformers: scikit-learn's estimator checks, and skops round-trips of a
fitted compiled transformer for every op with only TRUSTED_TYPES plus sklearn/numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.exceptions import SkipTestWarning
from sklearn.utils.estimator_checks import check_estimator

from keel.features import (
    KNOWN_OPS,
    TRUSTED_TYPES,
    Clip,
    FeatureSpec,
    Interactions,
    Log1p,
    compile_spec,
)

FRAME = pd.DataFrame(
    {
        "num": [1.0, np.nan, 3.0, 8.0, 2.0, 5.0],
        "other": [0.5, 2.0, -1.0, 4.0, np.nan, 1.0],
        "text": pd.Series(["a", "b", None, "a", "c", "a"], dtype=object),
        "when": [
            "2024-01-02",
            "2024-02-03T04:05:06",
            None,
            "2023-07-08",
            "2022-01-01",
            "2021-05-05",
        ],
        "flag": [True, False, True, True, False, False],
        "unnamed": [10, 20, 30, 40, 50, 60],
    }
)

ONE_OP_SPECS = {
    "impute": [{"op": "impute", "columns": ["num", "other"]}],
    "onehot": [{"op": "onehot", "columns": ["text"], "min_frequency": 2}],
    "ordinal": [{"op": "ordinal", "columns": ["text"]}],
    "scale": [{"op": "scale", "columns": ["num"], "method": "robust"}],
    "log": [{"op": "log", "columns": ["num"]}],
    "clip": [{"op": "clip", "columns": ["other"], "lower": 0, "upper": 3}],
    "interact": [
        {"op": "impute", "columns": ["other"]},
        {"op": "interact", "columns": ["num", "other", "flag"]},
    ],
    "date_parts": [{"op": "date_parts", "columns": ["when"], "parts": ["year", "hour"]}],
    "passthrough": [{"op": "passthrough", "columns": ["flag"]}],
    "drop": [{"op": "drop", "columns": ["text", "when"]}],
}


def test_every_op_is_covered() -> None:
    assert set(ONE_OP_SPECS) == set(KNOWN_OPS)


@pytest.mark.parametrize("op", sorted(ONE_OP_SPECS))
def test_skops_round_trip_with_trusted_types(op: str) -> None:
    remainder = "passthrough" if op == "drop" else "drop"
    spec = FeatureSpec.from_dict({"steps": ONE_OP_SPECS[op], "remainder": remainder})
    fitted = compile_spec(spec, columns=list(FRAME.columns)).fit(FRAME)
    data = skops.io.dumps(fitted)
    untrusted = skops.io.get_untrusted_types(data=data)
    keel_types = [t for t in untrusted if t.startswith("keel.")]
    assert set(keel_types) <= set(TRUSTED_TYPES)
    others = [t for t in untrusted if not t.startswith("keel.")]
    assert all(t.startswith(("sklearn.", "numpy.")) for t in others), others

    loaded = skops.io.loads(data, trusted=[*TRUSTED_TYPES, *others])
    np.testing.assert_array_equal(loaded.transform(FRAME), fitted.transform(FRAME))
    assert list(loaded.get_feature_names_out()) == list(fitted.get_feature_names_out())


def test_skops_refuses_keel_types_not_trusted() -> None:
    spec = FeatureSpec.from_dict({"steps": ONE_OP_SPECS["log"]})
    data = skops.io.dumps(compile_spec(spec).fit(FRAME))
    with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException):
        skops.io.loads(data, trusted=["numpy.dtype"])


def test_trusted_types_name_real_classes() -> None:
    import importlib

    for name in TRUSTED_TYPES:
        module, _, cls = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), cls), type)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("estimator", [Clip(lower=0.0, upper=1.0), Interactions(), Log1p()])
def test_sklearn_estimator_checks(estimator: object) -> None:
    assert SkipTestWarning  # the skipped checks need optional array-API libraries
    check_estimator(estimator)


def test_log1p_floors_negatives_at_transform_time() -> None:
    fitted = Log1p().fit(np.array([[0.0], [1.0]]))
    np.testing.assert_array_equal(fitted.transform(np.array([[-2.0]])), [[0.0]])
