"""Hold-out metrics with bootstrap intervals, calibration and slices, against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve

from keel.audit.performance import (
    _Classification,
    _Regression,
    calibration,
    classification_performance,
    performance_report,
    regression_performance,
    slice_metrics,
)
from keel.errors import InvalidInput

TOL = 1e-9


def sklearn_classification(y, p, pred, sample_weight=None):
    kw = {"sample_weight": sample_weight}
    return {
        "accuracy": skm.accuracy_score(y, pred, **kw),
        "roc_auc": skm.roc_auc_score(y, p, **kw),
        "log_loss": skm.log_loss(y, p, **kw),
        "f1": skm.f1_score(y, pred, **kw),
        "precision": skm.precision_score(y, pred, **kw),
        "recall": skm.recall_score(y, pred, **kw),
    }


@pytest.fixture(scope="module")
def binary_data():
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 2, n)
    p = np.round(np.clip(rng.random(n) * 0.7 + 0.3 * y, 0, 1), 2)  # ties
    return y, p


# ---------------------------------------------------------------- classification


def test_classification_point_metrics_equal_sklearn(binary_data):
    y, p = binary_data
    r = classification_performance(y, p, n_boot=0)
    expected = sklearn_classification(y, p, p >= 0.5)
    assert set(r["metrics"]) == set(expected)
    for k, v in expected.items():
        assert abs(r["metrics"][k]["value"] - v) <= TOL, k
    assert r["n"] == len(y) and r["positives"] == int(y.sum()) and r["threshold"] == 0.5


def test_bootstrap_replicate_equals_sklearn_with_sample_weight(binary_data):
    """A bootstrap replicate is the metric under Poisson row weights: each equals
    scikit-learn's metric with those weights as sample_weight."""
    y, p = binary_data
    w = np.random.default_rng(1).poisson(1.0, len(y)).astype(float)
    order = np.argsort(p, kind="stable")  # the statistic keeps its rows in score order
    stat = _Classification(y.astype(bool), p, p >= 0.5, np.nan)
    got = stat(w[order][None, :])
    for k, v in sklearn_classification(y, p, p >= 0.5, sample_weight=w).items():
        assert abs(got[k][0] - v) <= TOL, k
    yr = p * 3 + y
    pr = yr + np.sin(np.arange(len(y)))
    reg = _Regression(yr, pr)(w[None, :])
    assert abs(reg["mae"][0] - skm.mean_absolute_error(yr, pr, sample_weight=w)) <= TOL
    rmse = skm.root_mean_squared_error(yr, pr, sample_weight=w)
    assert abs(reg["rmse"][0] - rmse) <= TOL
    assert abs(reg["r2"][0] - skm.r2_score(yr, pr, sample_weight=w)) <= TOL


def test_bootstrap_reproducible_and_contains_point(binary_data):
    y, p = binary_data
    a = classification_performance(y, p, n_boot=300, seed=5)
    b = classification_performance(y, p, n_boot=300, seed=5)
    c = classification_performance(y, p, n_boot=300, seed=6)
    assert a == b and a != c
    assert a["bootstrap"] == {
        "n_boot": 300,
        "confidence": 0.95,
        "seed": 5,
        "scheme": "Poisson(1) row weights",
        "interval": "percentile",
    }
    for k, m in a["metrics"].items():
        assert m["ci_low"] <= m["value"] <= m["ci_high"], k
        assert m["ci_high"] - m["ci_low"] < 0.1, k
        assert m["n_valid"] == 300


def test_labels_with_pos_label_and_given_predictions():
    y = np.array(["yes", "no", "yes", "no", "yes", "no"])
    p = np.array([0.9, 0.2, 0.4, 0.6, 0.8, 0.1])
    pred = np.array(["yes", "no", "no", "no", "yes", "yes"])
    r = classification_performance(y, p, y_pred=pred, pos_label="yes", n_boot=0)
    yb = (y == "yes").astype(int)
    expected = sklearn_classification(yb, p, (pred == "yes").astype(int))
    for k, v in expected.items():
        assert abs(r["metrics"][k]["value"] - v) <= TOL, k
    assert r["threshold"] is None


def test_scores_that_are_not_probabilities_skip_log_loss():
    y = np.array([0, 1, 0, 1])
    margin = np.array([-2.0, 1.5, 0.3, 3.0])
    r = classification_performance(y, margin, threshold=0.0, n_boot=20)
    assert "log_loss" not in r["metrics"] and r["scores_are_probabilities"] is False
    assert r["metrics"]["roc_auc"]["value"] == skm.roc_auc_score(y, margin)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=40))
def test_property_points_equal_sklearn(rows):
    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows]) / 5.0
    if y.min() == y.max():
        with pytest.raises(InvalidInput, match="y_true: expected both classes"):
            classification_performance(y, p, n_boot=0)
        return
    r = classification_performance(y, p, n_boot=0, zero_division=0.0)
    pred = p >= 0.5
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, p),
        "log_loss": skm.log_loss(y, p),
        "f1": skm.f1_score(y, pred, zero_division=0.0),
        "precision": skm.precision_score(y, pred, zero_division=0.0),
        "recall": skm.recall_score(y, pred, zero_division=0.0),
    }
    for k, v in expected.items():
        assert abs(r["metrics"][k]["value"] - v) <= TOL, k


# ---------------------------------------------------------------- regression


def test_regression_points_equal_sklearn_and_interval():
    rng = np.random.default_rng(2)
    y = rng.normal(size=800)
    pred = y + rng.normal(scale=0.4, size=800)
    r = regression_performance(y, pred, n_boot=300, seed=1)
    m = r["metrics"]
    assert abs(m["mae"]["value"] - skm.mean_absolute_error(y, pred)) <= TOL
    assert abs(m["rmse"]["value"] - skm.root_mean_squared_error(y, pred)) <= TOL
    assert abs(m["r2"]["value"] - skm.r2_score(y, pred)) <= TOL
    for k, v in m.items():
        assert v["ci_low"] <= v["value"] <= v["ci_high"], k
    const = regression_performance([2.0, 2.0, 2.0], [2.0, 2.0, 2.0], n_boot=0)
    assert const["metrics"]["r2"]["value"] == skm.r2_score([2.0] * 3, [2.0] * 3) == 1.0


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_curve_equals_sklearn(binary_data, strategy):
    y, p = binary_data
    c = calibration(y, p, n_bins=8, strategy=strategy, n_boot=0)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=8, strategy=strategy)
    used = [b for b in c["reliability"] if b["count"] > 0]
    assert np.allclose([b["fraction_positive"] for b in used], prob_true, atol=TOL, rtol=0)
    assert np.allclose([b["mean_predicted"] for b in used], prob_pred, atol=TOL, rtol=0)
    assert sum(b["count"] for b in c["reliability"]) == len(y)


def test_ece_equals_direct_computation(binary_data):
    y, p = binary_data
    c = calibration(y, p, n_bins=10, n_boot=200, seed=4)
    edges = np.linspace(0, 1, 11)
    ece, mce = 0.0, 0.0
    for b in range(10):  # a score on an inner edge belongs to the lower bin
        lo, hi = edges[b], edges[b + 1]
        m = ((p > lo) | (b == 0)) & (p <= hi)
        if m.any():
            gap = abs(y[m].mean() - p[m].mean())
            ece += m.sum() / len(p) * gap
            mce = max(mce, gap)
    assert abs(c["ece"]["value"] - ece) <= TOL
    assert abs(c["mce"] - mce) <= TOL
    assert abs(c["brier"] - skm.brier_score_loss(y, p)) <= TOL
    assert c["ece"]["ci_low"] <= c["ece"]["value"] <= c["ece"]["ci_high"]


def test_well_calibrated_scores_have_small_ece():
    rng = np.random.default_rng(9)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    good = calibration(y, p, n_boot=0)["ece"]["value"]
    bad = calibration(y, p**3, n_boot=0)["ece"]["value"]
    assert good < 0.02 < 0.1 < bad


def test_calibration_refuses_non_probabilities():
    with pytest.raises(InvalidInput, match=r"scores: expected probabilities in \[0, 1\].*-1"):
        calibration([0, 1, 1], [-1.0, 0.5, 2.0])
    with pytest.raises(InvalidInput, match=r"strategy: expected 'uniform' or 'quantile'"):
        calibration([0, 1], [0.1, 0.9], strategy="kmeans")
    with pytest.raises(InvalidInput, match=r"n_bins: expected a whole number >= 1, got 0"):
        calibration([0, 1], [0.1, 0.9], n_bins=0)


# ---------------------------------------------------------------- slices


@pytest.fixture(scope="module")
def sliced():
    rng = np.random.default_rng(4)
    n = 2000
    frame = pd.DataFrame(
        {
            "color": rng.choice(["red", "green", "blue", "rare"], n, p=[0.5, 0.3, 0.19, 0.01]),
            "age": rng.integers(18, 80, n),
            "flag": rng.integers(0, 2, n),
        }
    )
    y = rng.integers(0, 2, n)
    noise = np.where(frame["color"] == "blue", 0.9, 0.3)  # the model is worse on blue
    p = np.clip(np.where(y == 1, 0.7, 0.3) + rng.normal(scale=noise), 0, 1)
    return frame, y, p


def test_slice_values_equal_sklearn_on_each_subset(sliced):
    frame, y, p = sliced
    s = slice_metrics(frame, y, scores=p, min_size=30)
    assert s["features"]["color"]["type"] == "categorical"
    assert s["features"]["flag"]["type"] == "categorical"  # two values: one slice each
    for row in s["features"]["color"]["slices"]:
        m = (frame["color"] == row["slice"]).to_numpy()
        assert row["count"] == m.sum()
        assert abs(row["accuracy"] - skm.accuracy_score(y[m], p[m] >= 0.5)) <= TOL
        assert abs(row["roc_auc"] - skm.roc_auc_score(y[m], p[m])) <= TOL
        assert abs(row["log_loss"] - skm.log_loss(y[m], p[m], labels=[0, 1])) <= TOL
        assert abs(row["f1"] - skm.f1_score(y[m], p[m] >= 0.5)) <= TOL
    age = s["features"]["age"]
    assert age["type"] == "numeric" and len(age["slices"]) == 4
    assert sum(r["count"] for r in age["slices"]) == len(y)
    first = pd.Interval(*[float(x) for x in age["slices"][0]["slice"][1:-1].split(", ")])
    m = frame["age"].between(first.left, first.right, inclusive="right").to_numpy()
    assert age["slices"][0]["count"] == m.sum()


def test_worst_slices_ranked_with_minimum_size(sliced):
    frame, y, p = sliced
    s = slice_metrics(frame, y, scores=p, metric="roc_auc", min_size=50, top=3)
    worst = s["worst"]
    assert worst[0]["feature"] == "color" and worst[0]["slice"] == "blue"
    assert [w["shortfall"] for w in worst] == sorted((w["shortfall"] for w in worst), reverse=True)
    assert all(w["count"] >= 50 for w in worst) and len(worst) == 3
    assert all(w["slice"] != "rare" for w in worst)  # ~20 rows: below min_size
    loss = slice_metrics(frame, y, scores=p, metric="log_loss", min_size=50)
    assert loss["higher_is_better"] is False and loss["worst"][0]["slice"] == "blue"


def test_slices_missing_values_and_high_cardinality():
    frame = pd.DataFrame(
        {
            "city": ["a", None, "b", None, "a", "b"],
            "id": [f"row{i}" for i in range(6)],
            "x": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0],
        }
    )
    y = np.array([0, 1, 0, 1, 1, 0])
    pred = np.array([0, 1, 1, 1, 1, 0])
    s = slice_metrics(frame, y, y_pred=pred, max_categories=5, n_quantiles=2, min_size=1)
    assert s["skipped"] == {"id": "6 distinct values, more than max_categories=5"}
    city = {r["slice"]: r for r in s["features"]["city"]["slices"]}
    assert city["(missing)"]["count"] == 2 and city["(missing)"]["accuracy"] == 1.0
    x = {r["slice"]: r["count"] for r in s["features"]["x"]["slices"]}
    assert x["(missing)"] == 1 and sum(x.values()) == 6


def test_regression_slices():
    frame = pd.DataFrame({"g": ["a", "a", "b", "b"]})
    s = slice_metrics(
        frame, [1.0, 2.0, 3.0, 4.0], task="regression", y_pred=[1.0, 2.0, 4.0, 6.0], min_size=1
    )
    rows = {r["slice"]: r for r in s["features"]["g"]["slices"]}
    assert rows["a"]["mae"] == 0.0 and rows["b"]["mae"] == 1.5
    assert rows["b"]["rmse"] == pytest.approx(np.sqrt(2.5))
    assert rows["b"]["r2"] == pytest.approx(skm.r2_score([3.0, 4.0], [4.0, 6.0]))
    assert s["worst"][0]["slice"] == "b" and s["metric"] == "mae"


def test_slice_bad_metric_lists_valid_ones(sliced):
    frame, y, p = sliced
    with pytest.raises(InvalidInput, match=r"metric: expected one of \['accuracy', 'f1',.*'mse'"):
        slice_metrics(frame, y, scores=p, metric="mse")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: classification_performance([0, 1, 0], [0.1, 0.2]), r"scores: expected 3 rows"),
        (lambda: classification_performance([0, 1], [0.1, np.nan]), r"scores: expected finite"),
        (lambda: classification_performance([0, 2], [0.1, 0.2]), r"y_true: expected labels 0/1"),
        (lambda: classification_performance([1, 1], [0.1, 0.2]), r"only positives \(2 rows\)"),
        (lambda: regression_performance([1.0, 2.0], [1.0]), r"y_pred: expected 2 rows"),
        (lambda: regression_performance([1.0, np.nan], [1.0, 2.0]), r"y_true: expected finite"),
        (lambda: performance_report([0, 1], task="ranking", scores=[0.1, 0.9]), r"task: expected"),
        (lambda: performance_report([0, 1]), r"scores: expected the positive-class scores"),
        (
            lambda: slice_metrics(pd.DataFrame({"a": [1]}), [0, 1], scores=[0.1, 0.2]),
            r"features: expected 2 rows \(the length of y_true\), got 1",
        ),
    ],
)
def test_bad_input(call, pattern):
    with pytest.raises(InvalidInput, match=pattern):
        call()


# ---------------------------------------------------------------- real data


def test_adult_performance_report():
    from sklearn.linear_model import LogisticRegression

    import keel.datasets

    train, test = keel.datasets.adult("train"), keel.datasets.adult("test")
    cols = ["age", "education-num", "hours-per-week", "capital-gain"]
    model = LogisticRegression(max_iter=500).fit(train[cols], train["income"] == ">50K")
    p = model.predict_proba(test[cols])[:, 1]
    y = test["income"].to_numpy()
    r = performance_report(
        y,
        scores=p,
        pos_label=">50K",
        features=test[["sex", "race", "age", "education"]],
        n_boot=200,
        seed=0,
    )
    back = json.loads(json.dumps(r, allow_nan=False))
    m = back["metrics"]["metrics"]
    yb = (y == ">50K").astype(int)
    assert abs(m["roc_auc"]["value"] - skm.roc_auc_score(yb, p)) <= TOL
    assert 0.75 < m["roc_auc"]["value"] < 0.9
    assert m["roc_auc"]["ci_low"] < m["roc_auc"]["value"] < m["roc_auc"]["ci_high"]
    assert back["calibration"]["n"] == len(test) and back["calibration"]["ece"]["value"] < 0.1
    sex = {r["slice"]: r["count"] for r in back["slices"]["features"]["sex"]["slices"]}
    assert sex == {"Female": 5421, "Male": 10860}
    assert all(w["count"] >= 30 for w in back["slices"]["worst"])
