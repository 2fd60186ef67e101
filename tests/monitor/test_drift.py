"""Drift statistics against SciPy, the Reference, and drift_report's flags and errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.stats.contingency import chi2_contingency

from keel.data import ingest, load_frame, load_profile
from keel.datasets import adult
from keel.errors import InvalidInput
from keel.monitor import _stats
from keel.monitor.drift import TESTS, Reference, drift_report

TOL = 1e-9
# small integer sets give ties; wide floats give distinct values; sizes from 1
tied = st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=40)
wide = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
)
samples = st.one_of(tied, wide)
counts = st.lists(st.integers(0, 50), min_size=2, max_size=8)


def _scipy_ks(a, b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ks_2samp(a, b)


@settings(max_examples=150, deadline=None)
@given(samples, samples)
def test_ks_equals_scipy_ties_and_tiny_samples(a, b):
    d, p = _stats.ks_2samp(np.array(a), np.array(b))
    ref = _scipy_ks(a, b)
    assert d == pytest.approx(ref.statistic, abs=TOL)
    assert p == pytest.approx(ref.pvalue, abs=TOL)


@settings(max_examples=150, deadline=None)
@given(samples, samples)
def test_wasserstein_equals_scipy(a, b):
    w = _stats.wasserstein(np.array(a), np.array(b))
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=TOL, abs=TOL)


@pytest.mark.parametrize("n1,n2", [(20_000, 15_000), (12_000, 9_000), (10_000, 3)])
def test_ks_and_wasserstein_equal_scipy_on_large_samples(n1, n2):
    rng = np.random.default_rng(n1 + n2)
    a = rng.normal(size=n1).round(2)  # ties
    b = rng.normal(0.03, 1.1, size=n2).round(2)
    d, p = _stats.ks_2samp(a, b)
    ref = _scipy_ks(a, b)
    assert d == pytest.approx(ref.statistic, abs=TOL) and p == pytest.approx(ref.pvalue, abs=TOL)
    # integers take the counting path, not the sort
    ai, bi = (a * 100).astype(np.int64), (b * 100).astype(np.int64)
    assert _stats.ks_2samp(ai, bi)[0] == pytest.approx(stats.ks_2samp(ai, bi).statistic, abs=TOL)
    w = _stats.wasserstein(a, b)
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=TOL, abs=TOL)


@settings(max_examples=150, deadline=None)
@given(counts, st.data())
def test_count_statistics_equal_scipy(r, data):
    c = data.draw(st.lists(st.integers(0, 50), min_size=len(r), max_size=len(r)))
    r, c = np.array(r), np.array(c)
    if r.sum() == 0 or c.sum() == 0:
        return
    stat, p, dof = _stats.chisquare(r, c)
    keep = (r + c) > 0
    table = np.vstack([r, c])[:, keep]
    if keep.sum() >= 2:
        ref = chi2_contingency(table, correction=False)
        assert stat == pytest.approx(ref.statistic, abs=TOL, rel=TOL)
        assert p == pytest.approx(ref.pvalue, abs=TOL) and dof == ref.dof
        # chi2_contingency is scipy.stats.chisquare on the table with the margins' expectation
        alt = stats.chisquare(table.ravel(), ref.expected_freq.ravel(), ddof=table.size - 1 - dof)
        assert stat == pytest.approx(alt.statistic, abs=TOL, rel=TOL)
    else:
        assert (stat, p) == (0.0, 1.0)
    assert _stats.jensenshannon(r, c) == pytest.approx(jensenshannon(r, c, base=2), abs=TOL)
    rs = np.maximum(r / r.sum(), _stats.PSI_EPSILON)
    cs = np.maximum(c / c.sum(), _stats.PSI_EPSILON)
    assert _stats.psi(r, c) == pytest.approx(np.sum((cs - rs) * np.log(cs / rs)), abs=TOL)


frames = st.integers(1, 60).flatmap(
    lambda n: st.fixed_dictionaries(
        {
            "x": st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=n, max_size=n),
            "k": st.lists(st.integers(-5, 5), min_size=n, max_size=n),
            "c": st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n),
        }
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_a_sample_against_itself_shows_no_drift(cols):
    df = pd.DataFrame(cols)
    every = {"x": list(TESTS), "k": list(TESTS), "c": ["chisquare", "jensenshannon", "psi"]}
    every["x"].remove("chisquare")  # the bins of a tiny float sample can be a single one
    report = drift_report(Reference.from_frame(df), df, tests=every)
    assert report["share"] == 0.0 and report["drifted"] == [] and not report["dataset_drift"]
    for name, feature in report["features"].items():
        for t in feature["tests"].values():
            assert not t["drift"], (name, t)
            if t["p_value"] is not None:
                assert t["p_value"] == pytest.approx(1.0)
            if t["test"] != "chisquare":
                assert t["statistic"] == pytest.approx(0.0, abs=1e-12)


def _adult_pair(rows, seed=0):
    df = adult("train").drop(columns="income")
    rng = np.random.default_rng(seed)
    ref = df.iloc[rng.integers(0, len(df), rows)].reset_index(drop=True)
    cur = df.iloc[rng.integers(0, len(df), rows)].reset_index(drop=True)
    cur["age"] = cur["age"] + 8
    cur["hours-per-week"] = (cur["hours-per-week"] * 1.25).round().astype(np.int64)
    flip = rng.random(rows) < 0.4
    cur.loc[flip, "sex"] = "Female"
    return ref, cur


SHIFTED = ["age", "sex", "hours-per-week"]


def test_a_known_shift_is_flagged_and_the_rest_is_not():
    ref, cur = _adult_pair(20_000)
    reference = Reference.from_frame(ref)
    report = drift_report(reference, cur)
    assert sorted(report["drifted"]) == sorted(SHIFTED)
    assert report["n_features"] == 14 and report["share"] == pytest.approx(3 / 14)
    assert report["features"]["age"]["test"] == "wasserstein"
    assert report["features"]["sex"]["test"] == "jensenshannon"
    json.dumps(report, allow_nan=False)  # plain JSON data
    # the statistics in the report are SciPy's on the same columns
    age = report["features"]["age"]["tests"]
    assert age["ks"]["statistic"] == pytest.approx(
        stats.ks_2samp(ref["age"], cur["age"]).statistic, abs=TOL
    )
    assert age["wasserstein"]["statistic"] == pytest.approx(
        stats.wasserstein_distance(ref["age"], cur["age"]), rel=TOL
    )
    # a small window: p-value tests are primary and still find the shift
    small = drift_report(reference, cur.iloc[:800])
    assert small["features"]["age"]["test"] == "ks"
    assert small["features"]["sex"]["test"] == "chisquare"
    assert set(SHIFTED) <= set(small["drifted"])
    # an unshifted window of the same size is quiet
    quiet = drift_report(reference, ref.sample(20_000, replace=True, random_state=3))
    assert quiet["drifted"] == []


def test_overrides_thresholds_and_prediction_drift():
    ref, cur = _adult_pair(5_000)
    rng = np.random.default_rng(1)
    ref["score"], cur["score"] = rng.beta(2, 5, len(ref)), rng.beta(3, 3, len(cur))
    ref["prediction"] = np.where(ref["score"] >= 0.5, ">50K", "<=50K")
    cur["prediction"] = np.where(cur["score"] >= 0.5, ">50K", "<=50K")
    reference = Reference.from_frame(ref)
    report = drift_report(
        reference,
        cur,
        columns=["age", "education"],
        tests={"age": ["psi", "ks"], "education": "chisquare"},
        thresholds={"psi": 5.0, "education": {"chisquare": 1e-300}, "share": 0.9},
        prediction={"score": "score", "label": "prediction"},
    )
    age = report["features"]["age"]
    assert age["test"] == "psi" and not age["drift"] and age["threshold"] == 5.0
    assert list(age["tests"]) == ["psi", "ks"] and age["tests"]["ks"]["drift"]
    assert report["features"]["education"]["threshold"] == 1e-300
    assert report["share_threshold"] == 0.9 and not report["dataset_drift"]
    pred = report["prediction"]
    assert pred["score"]["drift"] and pred["score"]["column"] == "score"
    assert pred["label"]["kind"] == "categorical" and pred["label"]["drift"]
    # default columns leave the prediction columns out of the share
    full = drift_report(reference, cur, prediction=["score", "prediction"])
    assert "score" not in full["features"] and set(full["prediction"]) == {"score", "prediction"}
    # a numeric test on binned data
    binned = drift_report(reference, cur, columns=["age"], tests={"age": "jensenshannon"})
    assert binned["features"]["age"]["drift"]


def test_missing_values_and_all_missing_columns():
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0] * 50, "c": ["a", None, "b", "a"] * 50})
    reference = Reference.from_frame(df)
    assert reference.columns["x"].nulls == 50 and reference.columns["c"].nulls == 50
    report = drift_report(reference, df)
    assert report["drifted"] == []
    gone = df.assign(x=np.nan, c=None)
    report = drift_report(reference, gone)
    assert set(report["skipped"]) == {"x", "c"} and report["n_features"] == 0
    assert report["share"] == 0.0


def test_reference_from_an_ingested_dataset(store, tmp_path):
    df = adult("train").sample(3_000, random_state=1)
    df.to_csv(tmp_path / "adult.csv", index=False)
    ds = ingest(store, tmp_path / "adult.csv", name="adult").dataset
    reference = Reference.from_dataset(store, "adult", sample_rows=1_000, seed=2)
    prof = load_profile(store, ds)
    assert reference.rows == 3_000 and reference.source["ref"] == ds.ref
    age, sex = reference.columns["age"], reference.columns["sex"]
    assert age.kind == "numeric" and age.type == "int" and age.ecdf.n == 1_000
    assert age.min == prof["columns"]["age"]["min"] and age.max == prof["columns"]["age"]["max"]
    assert sex.kind == "categorical" and sex.counts == prof["columns"]["sex"]["top"]
    assert reference.columns["workclass"].nulls == prof["columns"]["workclass"]["null_count"]
    # the same seed gives the same sample
    again = Reference.from_dataset(store, "adult", sample_rows=1_000, seed=2)
    assert np.array_equal(
        again.columns["fnlwgt"].ecdf.values, reference.columns["fnlwgt"].ecdf.values
    )
    json.dumps(reference.summary(), allow_nan=False)
    frame = load_frame(store, ds)
    assert (
        drift_report(reference, frame, columns=[c for c in frame if c != "income"])["drifted"] == []
    )
    shifted = frame.assign(age=frame["age"] + 10)
    assert drift_report(reference, shifted)["drifted"] == ["age"]


@pytest.fixture(scope="module")
def small_ref():
    df = pd.DataFrame({"age": [30, 40, 50, 60], "sex": ["F", "M", "M", "F"]})
    return Reference.from_frame(df)


@pytest.mark.parametrize(
    "kwargs,current,match",
    [
        ({"columns": ["height"]}, None, "column 'height' is not in the reference"),
        ({}, pd.DataFrame({"age": [1, 2]}), "column 'sex' is missing from the current window"),
        ({}, pd.DataFrame({"age": [], "sex": []}), "current window has no rows"),
        ({}, pd.DataFrame({"age": [30, "forty"], "sex": ["F", "M"]}), "column 'age'.*'forty'"),
        ({}, pd.DataFrame({"age": [True, False], "sex": ["F", "M"]}), "column 'age'.*booleans"),
        ({}, pd.DataFrame({"age": [30, 40], "sex": [1.5, 2.5]}), "column 'sex'.*numbers"),
        ({"tests": {"age": "magic"}}, None, "column 'age': unknown test 'magic'"),
        ({"tests": {"sex": "ks"}}, None, "column 'sex': ks does not apply to categorical"),
        ({"tests": {"age": []}}, None, "column 'age': expected at least one test"),
        ({"thresholds": {"ks": "high"}}, None, r"thresholds\['ks'\]: expected a finite number"),
        ({"thresholds": {"weight": {"ks": 0.1}}}, None, "column 'weight' is not in the reference"),
        ({"prediction": ["score"]}, None, "column 'score' is not in the reference"),
    ],
)
def test_bad_input_names_the_column(small_ref, kwargs, current, match):
    if current is None:
        current = pd.DataFrame({"age": [31, 41], "sex": ["F", "M"]})
    with pytest.raises(InvalidInput, match=match):
        drift_report(small_ref, current, **kwargs)


def test_bad_reference_input():
    with pytest.raises(InvalidInput, match="no rows"):
        Reference.from_frame(pd.DataFrame({"a": []}))
    with pytest.raises(InvalidInput, match="DataFrame"):
        Reference.from_frame([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="categorical column 'b'"):
        Reference.from_frame(pd.DataFrame({"a": [1]}), categorical=["b"])
    with pytest.raises(InvalidInput, match="DataFrame"):
        drift_report(Reference.from_frame(pd.DataFrame({"a": [1]})), {"a": [1]})  # type: ignore[arg-type]


def test_declared_categorical_integer_column():
    df = pd.DataFrame({"label": [0, 1, 1, 0] * 100})
    reference = Reference.from_frame(df, categorical=["label"])
    assert reference.columns["label"].kind == "categorical"
    report = drift_report(reference, pd.DataFrame({"label": [1] * 300 + [0] * 100}))
    assert report["features"]["label"]["test"] == "chisquare" and report["drifted"] == ["label"]
