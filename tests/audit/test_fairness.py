"""Disparities against fairlearn's functions, the bootstrap, the four-fifths rule, the report."""

from __future__ import annotations

import json

import fairlearn.metrics as flm
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.audit import fairness as kf
from keel.audit._groups import group_metrics
from keel.errors import InvalidInput

TOL = 1e-9
PAIRS = [
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
]


def same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= TOL


def check_against_fairlearn(
    y_true,
    y_pred,
    sf,
    zero_division=np.nan,
    methods=("between_groups", "to_overall"),
    eo_aggs=("worst_case", "mean"),
) -> None:
    for name in PAIRS:
        for method in methods:
            extra = {} if name.startswith("demographic") else {"zero_division": zero_division}
            aggs = eo_aggs if name.startswith("equalized") else (None,)
            for agg in aggs:
                a = {"agg": agg} if agg else {}
                theirs = getattr(flm, name)(
                    y_true, y_pred, sensitive_features=sf, method=method, **a
                )
                ours = getattr(kf, name)(
                    y_true, y_pred, sensitive_features=sf, method=method, **a, **extra
                )
                assert same(ours, float(theirs)), (name, method, agg, ours, theirs)


@pytest.fixture(scope="module")
def adult_like():
    rng = np.random.default_rng(11)
    n = 4000
    sf = pd.DataFrame(
        {
            "sex": rng.choice(["Female", "Male"], n, p=[0.33, 0.67]),
            "race": rng.choice(
                ["White", "Black", "Asian-Pac-Islander", "Other"], n, p=[0.85, 0.1, 0.04, 0.01]
            ),
        }
    )
    y_true = (rng.random(n) < np.where(sf["sex"] == "Male", 0.3, 0.11)).astype(int)
    p_pos = np.where(y_true == 1, 0.6, 0.08) * np.where(sf["sex"] == "Male", 1.0, 0.7)
    y_pred = (rng.random(n) < p_pos).astype(int)
    return y_true, y_pred, sf


# ---------------------------------------------------------------- equal to fairlearn


def test_metricframe_docstring_example_disparities():
    y_true = [1, 1, 1, 1, 1, 0, 0, 1, 1, 0]
    y_pred = [0, 1, 1, 1, 1, 0, 0, 0, 1, 1]
    sex = ["Female"] * 5 + ["Male"] * 5
    # fairlearn's docstring: selection-rate difference 0.4, ratio 0.5
    assert kf.demographic_parity_difference(y_true, y_pred, sensitive_features=sex) == (
        pytest.approx(0.4, abs=TOL)
    )
    assert kf.demographic_parity_ratio(y_true, y_pred, sensitive_features=sex) == 0.5
    # by hand: Female TPR 4/5, FPR undefined (no negatives); Male TPR 1/2, FPR 1/3
    assert kf.equal_opportunity_difference(y_true, y_pred, sensitive_features=sex) == (
        pytest.approx(0.3, abs=TOL)
    )
    check_against_fairlearn(y_true, y_pred, sex, zero_division=0.0)


def test_hand_computed_equalized_odds():
    # a: TPR 1/2, FPR 1/2; b: TPR 1, FPR 0
    y_true = [1, 1, 0, 0, 1, 1, 0, 0]
    y_pred = [1, 0, 1, 0, 1, 1, 0, 0]
    sf = ["a"] * 4 + ["b"] * 4
    assert kf.equalized_odds_difference(y_true, y_pred, sensitive_features=sf) == 0.5
    assert kf.equalized_odds_ratio(y_true, y_pred, sensitive_features=sf) == 0.0
    assert kf.equalized_odds_ratio(y_true, y_pred, sensitive_features=sf, agg="mean") == 0.25
    check_against_fairlearn(y_true, y_pred, sf)


def test_random_data_single_and_intersectional(adult_like):
    y_true, y_pred, sf = adult_like
    check_against_fairlearn(y_true, y_pred, sf)  # the sex x race intersection


def test_zero_division_zero_reproduces_fairlearn_on_one_class_groups():
    # group "c" has no positives: fairlearn's TPR there is 0.0, keel's default NaN
    y_true = [1, 0, 1, 0, 1, 1, 0, 0, 0]
    y_pred = [1, 0, 0, 1, 1, 1, 1, 0, 0]
    sf = ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    check_against_fairlearn(y_true, y_pred, sf, zero_division=0.0)
    theirs = flm.equal_opportunity_difference(y_true, y_pred, sensitive_features=sf)
    ours = kf.equal_opportunity_difference(y_true, y_pred, sensitive_features=sf)
    assert theirs == 1.0  # max TPR 1 (b) minus the 0 fairlearn gives c
    assert ours == 0.5  # b 1.0 minus a 0.5; c has no TPR


def test_worst_case_follows_fairlearn_when_tpr_disparity_is_undefined():
    # one group, no positives: the TPR ratio is 0/0; fairlearn's min([nan, 1.0]) is nan
    args = ([0, 0], [0, 1])
    kw = {"sensitive_features": ["a", "a"]}
    theirs = flm.equalized_odds_ratio(*args, **kw)
    ours = kf.equalized_odds_ratio(*args, **kw, zero_division=0.0)
    assert np.isnan(theirs) and np.isnan(ours)
    # FPR undefined instead (no negatives): the TPR side decides
    assert kf.equalized_odds_difference([1, 1], [0, 1], sensitive_features=["a", "b"]) == 1.0


@st.composite
def labelled(draw):
    n = draw(st.integers(2, 50))
    ints = st.integers(0, 1)
    y_true = draw(st.lists(ints, min_size=n, max_size=n))
    y_pred = draw(st.lists(ints, min_size=n, max_size=n))
    groups = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    return np.array(y_true), np.array(y_pred), np.array(groups)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labelled())
def test_property_equals_fairlearn(data):
    y_true, y_pred, groups = data
    # zero_division=0.0 is fairlearn's convention for groups with one class only
    check_against_fairlearn(y_true, y_pred, groups, zero_division=0.0, eo_aggs=("worst_case",))


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_reproducible_and_contains_point(adult_like):
    y_true, y_pred, sf = adult_like
    a = kf.fairness_report(y_true, y_pred, sf, n_boot=400, seed=7)
    b = kf.fairness_report(y_true, y_pred, sf, n_boot=400, seed=7)
    c = kf.fairness_report(y_true, y_pred, sf, n_boot=400, seed=8)
    assert a == b
    assert a != c
    for key in ("sex", "race", "sex+race"):
        for name, d in a["features"][key]["disparities"].items():
            assert d["n_valid"] > 0, (key, name)
            assert d["ci_low"] <= d["value"] <= d["ci_high"], (key, name, d)
    sex = a["features"]["sex"]["disparities"]["demographic_parity_difference"]
    assert 0 < sex["ci_high"] - sex["ci_low"] < 0.1


def test_multinomial_bootstrap_matches_row_resampling():
    """Drawing confusion counts from a multinomial is the same distribution as resampling
    rows: the replicate mean and spread agree with an explicit row bootstrap."""
    rng = np.random.default_rng(0)
    n = 600
    g = rng.choice(["a", "b"], n, p=[0.7, 0.3])
    y_true = rng.integers(0, 2, n)
    y_pred = (rng.random(n) < np.where(g == "a", 0.5, 0.35)).astype(int)
    cm = group_metrics(y_true, y_pred, g).confusion
    ours = kf.disparities(kf.bootstrap_confusion(cm, 4000, seed=1))["demographic_parity_ratio"]
    rows = []
    for _ in range(1000):
        idx = rng.integers(0, n, n)
        cm_i = group_metrics(y_true[idx], y_pred[idx], g[idx]).confusion
        rows.append(float(kf.disparities(cm_i)["demographic_parity_ratio"]))
    rows = np.array(rows)
    se = rows.std() / np.sqrt(len(rows))
    assert abs(ours.mean() - rows.mean()) < 4 * se
    assert ours.std() == pytest.approx(rows.std(), rel=0.12)


def test_no_bootstrap_when_n_boot_zero(adult_like):
    y_true, y_pred, sf = adult_like
    r = kf.fairness_report(y_true, y_pred, sf["sex"], n_boot=0)
    d = r["features"]["sex"]["disparities"]["demographic_parity_ratio"]
    assert set(d) == {"value"}


# ---------------------------------------------------------------- four-fifths, report shape


def test_four_fifths_rule_flags_the_failing_group():
    # selection rates: a 5/10, b 3/10, c 9/20 -> impact ratios 1, 0.6, 0.9
    y_pred = [1] * 5 + [0] * 5 + [1] * 3 + [0] * 7 + [1] * 9 + [0] * 11
    sf = ["a"] * 10 + ["b"] * 10 + ["c"] * 20
    y_true = [1, 0] * 20
    r = kf.fairness_report(y_true, y_pred, sf, n_boot=200)
    ev = r["features"]["sensitive_feature_0"]
    rule = ev["four_fifths_rule"]
    assert rule["reference_group"] == "a"
    assert rule["impact_ratios"] == pytest.approx({"a": 1.0, "b": 0.6, "c": 0.9})
    assert rule["failing_groups"] == ["b"] and rule["passed"] is False
    assert ev["disparities"]["disparate_impact_ratio"]["value"] == pytest.approx(0.6)
    ok = kf.fairness_report(y_true, [1, 0] * 20, sf, n_boot=0)
    assert ok["features"]["sensitive_feature_0"]["four_fifths_rule"]["passed"] is True


def test_report_is_strict_json_with_seeds_and_sizes(adult_like):
    y_true, y_pred, sf = adult_like
    r = kf.fairness_report(y_true, y_pred, sf, scores=y_pred * 0.5 + 0.2, n_boot=50, seed=3)
    back = json.loads(json.dumps(r, allow_nan=False))
    assert back["n"] == len(y_true) and back["bootstrap"]["seed"] == 3
    assert back["bootstrap"]["n_boot"] == 50
    assert list(back["features"]) == ["sex", "race", "sex+race"]
    inter = back["features"]["sex+race"]
    assert inter["features"] == ["sex", "race"]
    assert sum(g["count"] for g in inter["groups"]) == len(y_true)
    assert {g["key"] for g in back["features"]["sex"]["groups"]} == {"Female", "Male"}
    assert "roc_auc" in inter["groups"][0]
    nointer = kf.fairness_report(y_true, y_pred, sf, n_boot=0, intersectional=False)
    assert list(nointer["features"]) == ["sex", "race"]


def test_report_values_equal_fairlearn(adult_like):
    y_true, y_pred, sf = adult_like
    r = kf.fairness_report(y_true, y_pred, sf, n_boot=0, zero_division=0.0)
    for key, cols in (("sex", "sex"), ("race", "race"), ("sex+race", ["sex", "race"])):
        for name in PAIRS:
            theirs = getattr(flm, name)(y_true, y_pred, sensitive_features=sf[cols])
            assert abs(r["features"][key]["disparities"][name]["value"] - theirs) <= TOL


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"n_boot": -1}, r"n_boot: expected a whole number >= 0, got -1"),
        ({"confidence": 1.5}, r"confidence: expected a number between 0 and 1, got 1.5"),
        ({"seed": "x"}, r"seed: expected an integer, got 'x'"),
        ({"method": "pairwise"}, r"method: expected 'between_groups' or 'to_overall'"),
        ({"agg": "max"}, r"agg: expected 'worst_case' or 'mean', got 'max'"),
        ({"y_pred": [1, 0]}, r"y_pred: expected 4 rows \(the length of y_true\), got 2"),
        ({"scores": [0.1, 0.2, np.nan, 0.4]}, r"scores: expected finite numbers, got nan"),
        ({"y_true": ["n", "y", "n", "y"]}, r"y_true: expected labels 0/1.*pos_label"),
    ],
)
def test_report_bad_input(kwargs, pattern):
    args = {
        "y_true": [0, 1, 0, 1],
        "y_pred": [0, 1, 1, 1],
        "sensitive_features": pd.DataFrame({"sex": ["F", "M", "F", "M"]}),
    }
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=pattern):
        kf.fairness_report(**args)


def test_missing_sensitive_column_value_named():
    sf = pd.DataFrame({"sex": ["F", None, "F", "M"]})
    with pytest.raises(InvalidInput, match=r"sensitive feature 'sex': expected no missing"):
        kf.fairness_report([0, 1, 0, 1], [0, 1, 1, 1], sf)


# ---------------------------------------------------------------- real data


def test_adult_by_sex_and_race():
    import keel.datasets

    df = keel.datasets.adult("train")
    y_true = (df["income"] == ">50K").to_numpy().astype(int)
    y_pred = (df["education-num"] >= 13).to_numpy().astype(int)
    check_against_fairlearn(y_true, y_pred, df["race"], methods=("between_groups",))
    r = kf.fairness_report(y_true, y_pred, df[["sex", "race"]], n_boot=300, seed=0)
    sex = r["features"]["sex"]
    # men are selected more often by this rule; a real, stable disparity
    assert sex["four_fifths_rule"]["reference_group"] == "Male"
    dp = sex["disparities"]["demographic_parity_difference"]
    assert dp["ci_low"] <= dp["value"] <= dp["ci_high"] and dp["ci_low"] > 0
    assert len(r["features"]["race"]["groups"]) == 5


def test_empty_and_constant_predictions():
    with pytest.raises(InvalidInput, match=r"y_true: expected at least one row, got none"):
        kf.fairness_report([], [], [])
    # nobody selected: no disparity in selection, but the ratio 0/0 is undefined (as fairlearn)
    r = kf.fairness_report([0, 1, 0, 1], [0, 0, 0, 0], ["a", "a", "b", "b"], n_boot=50)
    ev = r["features"]["sensitive_feature_0"]
    assert ev["disparities"]["demographic_parity_difference"]["value"] == 0.0
    assert ev["disparities"]["demographic_parity_ratio"]["value"] is None
    assert np.isnan(
        flm.demographic_parity_ratio([0, 1, 0, 1], [0] * 4, sensitive_features=[0, 0, 1, 1])
    )
    assert ev["four_fifths_rule"]["passed"] is None


def test_report_keeps_each_columns_own_group_order():
    sf = pd.DataFrame(
        {
            "age_band": pd.Categorical(["young", "old", "mid", "old"], ["young", "mid", "old"]),
            "sex": ["F", "M", "M", "F"],
        }
    )
    r = kf.fairness_report([0, 1, 1, 0], [0, 1, 0, 1], sf, n_boot=0)
    keys = [g["key"] for g in r["features"]["age_band"]["groups"]]
    assert keys == ["young", "mid", "old"]
    inter = [g["key"] for g in r["features"]["age_band+sex"]["groups"]]
    assert inter == ["young & F", "mid & M", "old & F", "old & M"]


def test_small_groups_are_listed():
    from keel.audit.fairness import SMALL_GROUP, fairness_report

    rng = np.random.default_rng(0)
    groups = np.array(["big"] * 200 + ["tiny"] * (SMALL_GROUP - 1))
    y = rng.integers(0, 2, len(groups))
    pred = rng.integers(0, 2, len(groups))
    ev = fairness_report(y, pred, groups, n_boot=0)["features"]
    small = next(iter(ev.values()))["small_groups"]
    assert small == {"min_rows": SMALL_GROUP, "groups": ["tiny"]}
