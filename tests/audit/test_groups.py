"""keel's vectorized group metrics against fairlearn's MetricFrame with scikit-learn's metrics."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from keel.audit._groups import encode_groups, group_metrics
from keel.errors import InvalidInput

TOL = 1e-9


def fairlearn_frame(y_true, y_pred, sf, zero_division=np.nan) -> pd.DataFrame:
    """MetricFrame.by_group with the metrics keel computes (empty intersections dropped)."""
    if zero_division == 0.0:  # fairlearn's own rate functions: 0.0 on an empty denominator
        tpr, fpr, fnr = true_positive_rate, false_positive_rate, false_negative_rate
    else:
        tpr = functools.partial(recall_score, zero_division=np.nan)
        fpr, fnr = _nan_rate(false_positive_rate, 0), _nan_rate(false_negative_rate, 1)
    mf = MetricFrame(
        metrics={
            "count": count,
            "selection_rate": selection_rate,
            "accuracy": accuracy_score,
            "tpr": tpr,
            "fpr": fpr,
            "fnr": fnr,
            "precision": functools.partial(precision_score, zero_division=zero_division),
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sf,
    )
    return mf.by_group.dropna(subset=["count"]).astype(float)


def _nan_rate(fn, needed):
    """fairlearn's rate, but NaN when the group has no rows of the class it divides by."""

    def rate(y_true, y_pred):
        if not (np.asarray(y_true) == needed).any():
            return np.nan
        return fn(y_true, y_pred)

    return rate


def assert_frames_close(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    ours = ours[theirs.columns].astype(float)
    assert list(ours.index) == list(theirs.index)
    a, b = ours.to_numpy(), theirs.to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b)), (ours, theirs)
    assert np.nanmax(np.abs(a - b), initial=0.0) <= TOL


# ---------------------------------------------------------------- fairlearn's documented examples


def test_metricframe_docstring_example():
    # fairlearn.metrics.MetricFrame's docstring
    y_true = [1, 1, 1, 1, 1, 0, 0, 1, 1, 0]
    y_pred = [0, 1, 1, 1, 1, 0, 0, 0, 1, 1]
    sex = ["Female"] * 5 + ["Male"] * 5
    gm = group_metrics(y_true, y_pred, sex)
    frame = gm.to_frame()
    assert frame["selection_rate"].tolist() == [0.8, 0.4]
    assert frame["accuracy"].tolist() == [0.8, 0.6]
    assert list(frame.index) == ["Female", "Male"]
    assert_frames_close(frame, fairlearn_frame(y_true, y_pred, sex))


def test_advanced_metricframe_user_guide_example():
    # fairlearn user guide, "Advanced Usage of MetricFrame": fbeta(beta=0.6) by group is
    # a 0.365591, b 0.850000, c 0.468966, overall 0.56983...; F-beta follows from precision
    # and recall, which keel computes.
    y_true = [0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0]
    sf = ["b", "b", "a", "b", "b", "c", "c", "c", "a", "a", "c", "a", "b", "c", "c", "b", "c", "c"]
    gm = group_metrics(y_true, y_pred, sf)

    def fbeta(p, r, beta=0.6):
        return (1 + beta**2) * p * r / (beta**2 * p + r)

    got = fbeta(gm.metrics["precision"], gm.metrics["tpr"])
    assert np.allclose(got, [0.365591, 0.850000, 0.468966], atol=5e-7)
    assert fbeta(gm.overall["precision"], gm.overall["tpr"]) == pytest.approx(0.56983, abs=1e-5)
    assert_frames_close(gm.to_frame(), fairlearn_frame(y_true, y_pred, sf))


def test_hand_computed_confusion_counts():
    y_true = [1, 0, 1, 1, 0, 0]
    y_pred = [1, 1, 0, 1, 0, 0]
    gm = group_metrics(y_true, y_pred, ["x", "x", "x", "y", "y", "y"])
    # x: tp=1 fp=1 fn=1 tn=0; y: tp=1 fp=0 fn=0 tn=2
    assert gm.confusion.tolist() == [[[0, 1], [1, 1]], [[2, 0], [0, 1]]]
    assert gm.metrics["tpr"].tolist() == [0.5, 1.0]
    assert gm.metrics["fpr"].tolist() == [1.0, 0.0]
    assert gm.metrics["precision"].tolist() == [0.5, 1.0]
    assert gm.overall["accuracy"] == pytest.approx(4 / 6)


# ---------------------------------------------------------------- intersections, labels, AUC


def test_intersectional_groups_match_metricframe():
    rng = np.random.default_rng(3)
    n = 500
    sf = pd.DataFrame(
        {
            "sex": rng.choice(["Female", "Male"], n),
            "race": rng.choice(["White", "Black", "Other"], n, p=[0.8, 0.15, 0.05]),
        }
    )
    y_true = rng.integers(0, 2, n)
    y_pred = rng.integers(0, 2, n)
    gm = group_metrics(y_true, y_pred, sf)
    assert gm.features == ("sex", "race")
    assert_frames_close(gm.to_frame(), fairlearn_frame(y_true, y_pred, sf))


def test_empty_intersections_are_left_out():
    sf = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["p", "q", "p", "p"]})
    gm = group_metrics([0, 1, 0, 1], [0, 1, 1, 1], sf)
    assert gm.labels == (("x", "p"), ("x", "q"), ("y", "p"))  # no ("y", "q")
    assert gm.metrics["count"].tolist() == [1, 1, 2]


def test_labels_with_pos_label_and_categorical_columns():
    y_true = np.array([">50K", "<=50K", ">50K", "<=50K"])
    y_pred = np.array([">50K", ">50K", "<=50K", "<=50K"])
    sf = pd.Series(pd.Categorical(["a", "b", "a", "b"], categories=["b", "a", "z"]), name="g")
    gm = group_metrics(y_true, y_pred, sf, pos_label=">50K")
    # categorical order is kept, unused categories dropped
    assert gm.labels == (("b",), ("a",))
    assert gm.metrics["selection_rate"].tolist() == [0.5, 0.5]
    assert np.isnan(gm.metrics["tpr"][0]) and gm.metrics["tpr"][1] == 0.5


def test_roc_auc_per_group_equals_sklearn_with_ties():
    rng = np.random.default_rng(5)
    n = 3000
    g = rng.choice(["a", "b", "c", "d"], n, p=[0.5, 0.3, 0.15, 0.05])
    y = rng.integers(0, 2, n)
    scores = np.round(rng.random(n) * 0.6 + 0.4 * y, 1)  # heavy ties
    y[g == "d"] = 1  # a group with one class only
    gm = group_metrics(y, y, g, scores=scores)
    for k, lab in enumerate(gm.labels):
        m = g == lab[0]
        if lab[0] == "d":
            assert np.isnan(gm.metrics["roc_auc"][k])
        else:
            assert abs(gm.metrics["roc_auc"][k] - roc_auc_score(y[m], scores[m])) <= TOL
    assert abs(gm.overall["roc_auc"] - roc_auc_score(y, scores)) <= TOL
    mf = MetricFrame(
        metrics=roc_auc_score,
        y_true=y[g != "d"],
        y_pred=scores[g != "d"],
        sensitive_features=g[g != "d"],
    )
    assert np.allclose(gm.metrics["roc_auc"][:3], mf.by_group.to_numpy(), atol=TOL, rtol=0)


# ---------------------------------------------------------------- empty denominators


def test_zero_division_matches_fairlearn_and_sklearn_conventions():
    # group "neg" has no actual positives and no predicted positives; "pos" has no negatives
    y_true = [0, 0, 0, 1, 1, 1, 0, 1]
    y_pred = [0, 0, 0, 1, 0, 1, 1, 0]
    sf = ["neg", "neg", "neg", "pos", "pos", "pos", "mix", "mix"]
    nan = group_metrics(y_true, y_pred, sf)
    zero = group_metrics(y_true, y_pred, sf, zero_division=0.0)
    assert_frames_close(nan.to_frame(), fairlearn_frame(y_true, y_pred, sf))
    assert_frames_close(zero.to_frame(), fairlearn_frame(y_true, y_pred, sf, zero_division=0.0))
    neg = nan.labels.index(("neg",))
    assert np.isnan(nan.metrics["tpr"][neg]) and np.isnan(nan.metrics["precision"][neg])
    assert zero.metrics["tpr"][neg] == 0.0 and zero.metrics["precision"][neg] == 0.0


# ---------------------------------------------------------------- missing values


def test_missing_sensitive_values_refused_naming_the_column():
    sf = pd.DataFrame({"sex": ["F", "M", "F"], "race": ["a", None, "b"]})
    with pytest.raises(InvalidInput, match=r"'race'.*1 missing row.*missing='group'"):
        group_metrics([0, 1, 0], [0, 1, 1], sf)


def test_missing_sensitive_values_as_their_own_group():
    race = pd.Series(["a", None, "b", None, "a"], name="race")
    gm = group_metrics([0, 1, 0, 1, 1], [0, 1, 1, 0, 1], race, missing="group")
    assert gm.labels == (("a",), ("b",), (None,))
    assert gm.metrics["count"].tolist() == [2, 1, 2]
    assert gm.metrics["accuracy"][2] == 0.5
    d = gm.to_dict()
    assert d["groups"][2]["key"] == "(missing)" and d["groups"][2]["group"] == {"race": None}


def test_to_dict_is_strict_json():
    gm = group_metrics([0, 0, 1], [0, 1, 1], ["a", "a", "b"], scores=[0.1, 0.7, 0.9])
    text = json.dumps(gm.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["groups"][1]["roc_auc"] is None  # group b has one class
    assert back["groups"][0]["fp"] == 1 and back["overall"]["count"] == 3


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"y_pred": [0, 1]}, r"y_pred: expected 3 rows \(the length of y_true\), got 2"),
        ({"scores": [0.1, 0.2]}, r"scores: expected 3 rows.*got 2"),
        ({"y_true": ["no", "yes", "no"]}, r"y_true: expected labels 0/1.*pos_label.*'no'"),
        ({"y_pred": [0, 2, 1]}, r"y_pred: expected labels 0/1.*got values \[0, 2, 1\]"),
        ({"scores": [0.1, np.nan, 0.3]}, r"scores: expected finite numbers, got nan.*row 1"),
        ({"sensitive_features": ["a", "b"]}, r"sensitive_features: expected 3 rows.*got 2"),
    ],
)
def test_bad_input_names_argument_expected_and_given(kwargs, pattern):
    args = {"y_true": [0, 1, 0], "y_pred": [0, 1, 1], "sensitive_features": ["a", "b", "a"]}
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=pattern):
        group_metrics(**args)


def test_pos_label_with_three_classes_refused():
    with pytest.raises(InvalidInput, match=r"y_true: expected two classes.*pos_label='a'"):
        group_metrics(["a", "b", "c"], ["a", "a", "a"], [1, 1, 2], pos_label="a")
    with pytest.raises(InvalidInput, match=r"y_pred: expected the same two classes as y_true"):
        group_metrics(["a", "b", "a"], ["a", "c", "a"], [1, 1, 2], pos_label="a")


def test_encode_groups_sorted_codes():
    enc = encode_groups({"s": ["m", "f", "m", "x"]})
    assert enc.labels == (("f",), ("m",), ("x",))
    assert enc.codes.tolist() == [1, 0, 1, 2]


# ---------------------------------------------------------------- properties


@st.composite
def grouped_data(draw):
    n = draw(st.integers(1, 60))
    n_groups = draw(st.integers(1, 4))
    ints = st.integers(0, 1)
    y_true = np.array(draw(st.lists(ints, min_size=n, max_size=n)))
    y_pred = np.array(draw(st.lists(ints, min_size=n, max_size=n)))
    g1 = np.array(draw(st.lists(st.integers(0, n_groups - 1), min_size=n, max_size=n)))
    g2 = np.array(draw(st.lists(st.sampled_from(["p", "q"]), min_size=n, max_size=n)))
    scores = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))) / 4.0
    return y_true, y_pred, g1, g2, scores


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grouped_data())
def test_property_equals_metricframe(data):
    y_true, y_pred, g1, g2, scores = data
    sf = pd.DataFrame({"g1": g1, "g2": g2})
    for zd in (np.nan, 0.0):
        gm = group_metrics(y_true, y_pred, sf, scores=scores, zero_division=zd)
        assert_frames_close(gm.to_frame(), fairlearn_frame(y_true, y_pred, sf, zd))
        assert int(gm.metrics["count"].sum()) == len(y_true)
    for k, lab in enumerate(gm.labels):
        m = (g1 == lab[0]) & (g2 == lab[1])
        if len(np.unique(y_true[m])) == 2:
            assert abs(gm.metrics["roc_auc"][k] - roc_auc_score(y_true[m], scores[m])) <= TOL
        else:
            assert np.isnan(gm.metrics["roc_auc"][k])


# ---------------------------------------------------------------- real data


def test_adult_by_sex_and_race_equals_metricframe():
    import keel.datasets

    df = keel.datasets.adult("train")
    y_true = (df["income"] == ">50K").to_numpy().astype(int)
    # a transparent rule as the "model": predicted >50K with 13+ years of education
    y_pred = (df["education-num"] >= 13).to_numpy().astype(int)
    for sf in (df["race"], df[["sex", "race"]]):
        gm = group_metrics(y_true, y_pred, sf)
        assert_frames_close(gm.to_frame(), fairlearn_frame(y_true, y_pred, sf))
    by_sex = group_metrics(y_true, y_pred, df["sex"]).to_frame()
    assert by_sex.loc["Female", "count"] == 10771 and by_sex.loc["Male", "count"] == 21790


def test_boolean_labels_and_their_pos_label():
    y_true = np.array([True, False, True, False])
    y_pred = np.array([True, True, False, False])
    pos = group_metrics(y_true, y_pred, ["a", "a", "b", "b"])
    neg = group_metrics(y_true, y_pred, ["a", "a", "b", "b"], pos_label=False)
    assert pos.metrics["selection_rate"].tolist() == [1.0, 0.0]
    assert neg.metrics["selection_rate"].tolist() == [0.0, 1.0]
    with pytest.raises(InvalidInput, match=r"y_true: expected pos_label True or False.*'yes'"):
        group_metrics(y_true, y_pred, ["a"] * 4, pos_label="yes")
