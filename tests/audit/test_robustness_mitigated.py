"""Robustness of mitigated models on valid rows: the attack oracle's fast encoded path gives
every valid row the decision the model itself gives it (the base model's scores through the
per-group thresholds, an ensemble's members, the seeded draw of a row between 0 and 1), so
attacks find the same rows as through the model's DataFrame interface, only sooner."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from keel.audit._counterfactual import counterfactual_search
from keel.audit._valid_attacks import correct_rows, valid_hopskipjump
from keel.audit._valid_rows import ValidRows
from keel.audit.robustness import robustness_report
from keel.models import EnsembleModel, LightGBMModel, ThresholdedModel

from .test_robustness import _data

POS = ">50K"
FROZEN = ["age", "race"]  # sex stays mutable: an attack may move a row to the other group


@pytest.fixture(scope="module")
def data():
    return _data(n=1500, seed=2)


@pytest.fixture(scope="module")
def base(data):
    from sklearn.pipeline import Pipeline

    from keel.features import FeatureSpec, compile_spec

    X_tr, y_tr, _, _, types, schema = data
    spec = FeatureSpec.infer(types).to_dict()
    est = lgb.LGBMClassifier(n_estimators=30, verbose=-1, random_state=0, deterministic=True)
    pipe = Pipeline([("features", compile_spec(spec, list(X_tr.columns))), ("model", est)])
    pipe.fit(X_tr, y_tr)
    return LightGBMModel.from_pipeline(pipe, "classification", schema)


@pytest.fixture(scope="module")
def thresholded(base, data):
    """Per-group thresholds with a randomised band in each group (scores between the two
    thresholds are drawn), as fairlearn's ThresholdOptimizer makes them."""
    groups = {
        "Male": {"p0": 0.6, "operation0": [">", 0.3], "p1": 0.4, "operation1": [">", 0.6]},
        "Female": {"p0": 0.5, "operation0": [">", 0.15], "p1": 0.5, "operation1": [">", 0.5]},
    }
    rule = {"sensitive": ["sex"], "positive_class": POS, "groups": groups}
    return ThresholdedModel(base, rule, data[5], seed=7)


@pytest.fixture(scope="module")
def ensemble(base, data):
    """Two members of equal weight: rows they disagree on have probability 0.5 (drawn)."""
    X_tr, y_tr = data[0], data[1]
    Z = base.transformer.transform(X_tr)
    members = []
    for weight in (1.0, 10.0):  # the second says yes far more often
        est = lgb.LGBMClassifier(
            n_estimators=10, scale_pos_weight=weight, verbose=-1, random_state=0
        )
        members.append(est.fit(Z, y_tr == POS).booster_)
    return EnsembleModel(
        base.transformer, members, [0.5, 0.5], data[5], list(base.classes_), seed=3
    )


@pytest.mark.parametrize("name", ["thresholded", "ensemble"])
def test_the_fast_oracle_decides_every_valid_row_as_the_model_does(name, data, request):
    model = request.getfixturevalue(name)
    vr = ValidRows(model, data[0], FROZEN)
    assert vr.fast is not None and vr.fast.randomized  # not the DataFrame path
    X, _ = correct_rows(vr, data[2], data[3], 6, 0)
    U = np.random.default_rng(1).uniform(0, 1, (300, vr.dim))
    drawn = moved_group = 0
    for i in range(len(X)):
        row = X.iloc[[i]]
        rows = vr.rows(U, row)
        want = model.predict_proba(rows)
        assert np.array_equal(vr.row_oracle(row)(U), want.astype(np.float32))
        pmf = model.decision_probability(rows)
        drawn += int(((pmf > 0) & (pmf < 1)).sum())
        moved_group += int((rows["sex"] != row["sex"].iloc[0]).sum())
    assert drawn > 50  # the seeded draw was exercised, not only sure decisions
    if name == "thresholded":
        assert moved_group > 50  # and rows moved to the other group's thresholds


@pytest.mark.parametrize("name", ["thresholded", "ensemble"])
def test_attacks_find_the_same_rows_by_either_path(name, data, request):
    model = request.getfixturevalue(name)
    fast = ValidRows(model, data[0], FROZEN)
    slow = ValidRows(model, data[0], FROZEN, fast=False)
    assert slow.fast is None
    X, labels = correct_rows(fast, data[2], data[3], 4, 0)
    kw = {"seed": 0, "max_iter": 3, "max_eval": 30}
    rep_f, adv_f = valid_hopskipjump(fast, X, labels, data[0], **kw)
    rep_s, adv_s = valid_hopskipjump(slow, X, labels, data[0], **kw)
    assert adv_f.astype(str).equals(adv_s.astype(str))
    del rep_f["time_s"], rep_s["time_s"]
    assert rep_f == rep_s and rep_f["success_rate_unbounded"] > 0
    cf_f = counterfactual_search(fast, X, labels, max_features=2)
    cf_s = counterfactual_search(slow, X, labels, max_features=2)
    assert [(f["features"], f.get("changes")) for f in cf_f] == [
        (f["features"], f.get("changes")) for f in cf_s
    ]


def test_the_report_tells_its_progress_as_it_goes(thresholded, data):
    heard: list[tuple[str, float]] = []
    robustness_report(
        thresholded,
        data[2],
        data[3],
        data[0],
        n_rows=5,
        noise_rows=100,
        max_iter=2,
        max_eval=20,
        frozen=FROZEN,
        report=lambda step, fraction: heard.append((step, fraction)),
    )
    steps = [s for s, _ in heard]
    fractions = [f for _, f in heard]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1
    assert "HopSkipJump on valid rows (1/5 rows)" in steps
    assert "HopSkipJump on valid rows (5/5 rows)" in steps
    assert "counterfactual search (3/3 features)" in steps
    assert steps[-1] == "accuracy under noise (100 rows)"
