"""Data-quality checks of a window against the reference: nulls, ranges, unseen categories,
type errors — counted with rates, never raised."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.datasets import adult
from keel.errors import InvalidInput
from keel.monitor.drift import Reference
from keel.monitor.quality import quality_report


@pytest.fixture(scope="module")
def reference():
    return Reference.from_frame(adult("train"))


@pytest.fixture
def window():
    return adult("test").sample(1_000, random_state=0).reset_index(drop=True)


def test_a_clean_window_has_no_issues(reference):
    df = adult("train").sample(2_000, random_state=1)
    report = quality_report(reference, df)
    assert report["columns_with_issues"] == [] and report["missing_columns"] == []
    for c in report["columns"].values():
        assert c["type_errors"] == 0 and c["issues"] == []
    json.dumps(report, allow_nan=False)


def test_counts_and_rates(reference, window):
    w = window.astype({"age": object, "fnlwgt": float, "sex": object})
    w.loc[0, "age"] = "forty"
    w.loc[1, "age"] = 120
    w.loc[2, "age"] = 30.5  # a fraction in an integer column
    w.loc[3, "age"] = None
    w.loc[4, "fnlwgt"] = -np.inf
    w.loc[5, "sex"] = "Unknown"
    w.loc[6, "sex"] = 7
    w.loc[10:209, "workclass"] = None  # 200 more nulls: 20% of the window
    report = quality_report(reference, w.drop(columns=["race"]).assign(extra=1))
    age = report["columns"]["age"]
    assert age["type_errors"] == 2 and age["type_error_examples"] == ["'forty'", "30.5"]
    assert age["nulls"] == 1 and age["null_rate"] == pytest.approx(0.001)
    assert age["above_max"] == 1 and age["below_min"] == 0
    assert age["out_of_range_rate"] == pytest.approx(0.001)
    assert set(age["issues"]) == {"type_errors", "out_of_range"}
    fn = report["columns"]["fnlwgt"]
    assert fn["below_min"] == 1 and fn["non_finite"] == 1 and fn["type_errors"] == 0
    sex = report["columns"]["sex"]
    assert sex["unseen"] == 1 and sex["unseen_values"] == {"Unknown": 1}
    assert sex["type_errors"] == 1 and sex["type_error_examples"] == ["7"]
    wc = report["columns"]["workclass"]
    ref_rate = reference.columns["workclass"].nulls / reference.rows
    assert wc["reference_null_rate"] == pytest.approx(ref_rate)
    assert wc["null_rate_change"] == pytest.approx(wc["null_rate"] - ref_rate)
    assert "null_rate_up" in wc["issues"]
    assert report["missing_columns"] == ["race"] and report["extra_columns"] == ["extra"]
    assert report["columns_with_issues"][0] == "race"
    assert {"age", "fnlwgt", "sex", "workclass"} <= set(report["columns_with_issues"])
    json.dumps(report, allow_nan=False)


def test_text_and_bool_columns():
    ref = Reference.from_frame(pd.DataFrame({"ok": [True, False] * 5, "n": [1.0, 2.0] * 5}))
    cur = pd.DataFrame({"ok": [True, "yes", None], "n": [1.5, "2", True]})
    report = quality_report(ref, cur)
    assert report["columns"]["ok"]["type_errors"] == 1
    assert report["columns"]["ok"]["unseen"] == 0
    n = report["columns"]["n"]
    assert n["type_errors"] == 2 and n["type_error_rate"] == pytest.approx(2 / 3)


def test_bad_input(reference, window):
    with pytest.raises(InvalidInput, match="column 'height' is not in the reference"):
        quality_report(reference, window, columns=["height"])
    with pytest.raises(InvalidInput, match="no rows"):
        quality_report(reference, window.iloc[:0])
    with pytest.raises(InvalidInput, match="DataFrame"):
        quality_report(reference, window.to_dict())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="null_tolerance"):
        quality_report(reference, window, null_tolerance=2)
