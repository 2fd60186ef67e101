"""Robustness on valid rows: HopSkipJump projected to valid rows, the counterfactual search,
noise, the freeze policy and adversarial augmentation (keel.audit.robustness)."""

from __future__ import annotations

import itertools
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from keel.audit._counterfactual import counterfactual_search, summarise
from keel.audit._evidence import AuditContext
from keel.audit._valid_attacks import correct_rows, valid_hopskipjump
from keel.audit._valid_rows import ValidRows
from keel.audit.gates import Policy, evidence_values
from keel.audit.robustness import robustness_report, robustness_section
from keel.datasets import adult
from keel.errors import InvalidInput
from keel.features import FeatureSpec, compile_spec
from keel.models import LightGBMModel, SklearnModel

FROZEN = ["age", "race", "sex"]


def _data(n: int = 1500, seed: int = 0):
    df = adult("train").sample(n, random_state=seed).reset_index(drop=True)
    y = df.pop("income").to_numpy()
    types = {c: "int" if df[c].dtype.kind in "if" else "string" for c in df.columns}
    cut = int(0.7 * n)
    schema = [{"name": c, "type": t} for c, t in types.items()]
    return df[:cut], y[:cut], df[cut:].reset_index(drop=True), y[cut:], types, schema


@pytest.fixture(scope="module")
def data():
    return _data()


def _model(data, estimator, scale: bool = False):
    X_tr, y_tr, _, _, types, schema = data
    spec = FeatureSpec.infer(types).to_dict()
    if scale:
        numeric = [c for c, t in types.items() if t == "int"]
        spec["steps"].append({"op": "scale", "columns": numeric, "method": "standard"})
    pipe = Pipeline([("features", compile_spec(spec, list(X_tr.columns))), ("model", estimator)])
    pipe.fit(X_tr, y_tr)
    if type(estimator).__name__ == "LGBMClassifier":
        return LightGBMModel.from_pipeline(pipe, "classification", schema)
    return SklearnModel(pipe, "classification", schema)


@pytest.fixture(scope="module")
def gbm(data):
    import lightgbm as lgb

    est = lgb.LGBMClassifier(n_estimators=30, verbose=-1, random_state=0, deterministic=True)
    return _model(data, est)


@pytest.fixture(scope="module")
def logistic(data):
    return _model(data, LogisticRegression(max_iter=1000), scale=True)


def _rows(model, data, n=8, frozen=FROZEN, seed=0):
    vr = ValidRows(model, data[0], frozen)
    X, labels = correct_rows(vr, data[2], data[3], n, seed)
    return vr, X, labels


def _truth(model, vr, X):
    """Class indices of ``X`` by the model's own predict (not the attack's path)."""
    classes = list(vr.classes)
    return np.array([classes.index(p) for p in model.predict(X)])


# -- valid rows --------------------------------------------------------------------------


def test_any_attack_point_projects_to_a_valid_row(gbm, data):
    vr, X, _ = _rows(gbm, data)
    U = np.random.default_rng(0).uniform(-0.5, 1.5, (300, vr.dim))
    for i in range(3):
        rows = vr.rows(U, X.iloc[[i]])
        assert vr.problems(rows, X.iloc[[i] * len(rows)]) == []
        for c in vr.columns:
            col = rows[c.name]
            if c.name in FROZEN:
                assert (col == X.iloc[i][c.name]).all()
            elif c.kind == "int":
                v = col.to_numpy(dtype=float)
                assert np.array_equal(v, np.round(v)) and v.min() >= c.lo and v.max() <= c.hi
            elif c.kind == "category":
                assert col.dropna().isin(c.categories).all()
    assert {c.name for c in vr.mutable}.isdisjoint(FROZEN)


def test_problems_names_row_column_and_what_was_expected(gbm, data):
    vr, X, _ = _rows(gbm, data, n=2)
    bad = X.copy()
    bad.loc[0, "education-num"] = 99
    bad.loc[1, "workclass"] = "Astronaut"
    bad.loc[1, "sex"] = "Other" if X.loc[1, "sex"] != "Other" else "Male"
    found = " | ".join(vr.problems(bad, X))
    assert "row 0 column 'education-num': expected a whole number in [" in found
    assert "row 1 column 'workclass': expected a category seen in training" in found
    assert "row 1 column 'sex'" in found and "frozen" in found
    assert vr.problems(X, X) == []


@pytest.mark.parametrize("name", ["gbm", "logistic"])
def test_the_attack_oracle_answers_what_the_model_answers_on_the_valid_row(name, data, request):
    model = request.getfixturevalue(name)
    vr, X, _ = _rows(model, data, n=4)
    assert vr.fast is not None  # keel's per-column pipelines take the fast path
    slow = ValidRows(model, data[0], FROZEN, fast=False)
    U = np.random.default_rng(1).uniform(0, 1, (50, vr.dim))
    for i in range(len(X)):
        base = X.iloc[[i]]
        want = model.predict_proba(vr.rows(U, base))
        assert np.allclose(vr.row_oracle(base)(U), want, atol=1e-5)
        assert np.allclose(slow.row_oracle(base)(U), want, atol=1e-5)


# -- HopSkipJump on valid rows -------------------------------------------------------------


def test_hopskipjump_rows_are_valid_and_success_is_counted_on_them(gbm, data):
    vr, X, labels = _rows(gbm, data, n=10)
    rep, A = valid_hopskipjump(vr, X, labels, data[0], max_iter=3, max_eval=30, eps=0.5)
    assert len(A) == len(X) and vr.problems(A, X) == []
    for c in FROZEN:
        assert A[c].tolist() == X[c].tolist()
    flipped = _truth(gbm, vr, A) != labels
    size = vr.changes(X, A)
    dist = np.sqrt((size**2).sum(axis=1))
    assert rep["success_rate"] == pytest.approx(np.mean(flipped & (dist <= 0.5)))
    assert rep["success_rate_unbounded"] == pytest.approx(flipped.mean()) and flipped.any()
    curve = rep["curve"]
    assert [set(p) for p in curve] == [{"budget", "success_rate"}] * len(curve)
    rates = [p["success_rate"] for p in curve]
    assert rates == sorted(rates)
    for p in curve:
        assert p["success_rate"] == pytest.approx(np.mean(flipped & (dist <= p["budget"])))
    assert rep["budget"]["queries"] > 0


def test_no_iterations_changes_nothing_and_succeeds_nowhere(gbm, data):
    vr, X, labels = _rows(gbm, data, n=5)
    rep, A = valid_hopskipjump(vr, X, labels, data[0], max_iter=0)
    pd.testing.assert_frame_equal(A, X)
    assert rep["success_rate_unbounded"] == 0.0 and rep["success_rate"] == 0.0


# -- the counterfactual search -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A model on three small columns, where every valid row can be listed."""
    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame(
        {
            "a": rng.integers(0, 6, n),
            "b": rng.integers(1, 5, n),
            "c": rng.choice(["x", "y", "z"], n),
            "d": rng.choice(["p", "q"], n),
        }
    )
    score = 0.6 * X["a"] - 0.9 * X["b"] + X["c"].map({"x": 0, "y": 1.5, "z": -1}) + 0.5
    y = np.where(score + rng.normal(0, 0.5, n) > 0, "yes", "no")
    types = {"a": "int", "b": "int", "c": "string", "d": "string"}
    schema = [{"name": c, "type": t} for c, t in types.items()]
    spec = FeatureSpec.infer(types).to_dict()
    pipe = Pipeline(
        [("features", compile_spec(spec, list(X.columns))), ("m", LogisticRegression())]
    )
    pipe.fit(X, y)
    return SklearnModel(pipe, "classification", schema), X, y


def _brute_force(model, vr, row, label):
    """The fewest features, then the smallest size, of any flipping valid row (exhaustive)."""
    domains = [
        [int(v) for v in range(int(c.lo), int(c.hi) + 1)] if c.kind == "int" else c.categories
        for c in vr.columns
    ]
    grid = pd.DataFrame(list(itertools.product(*domains)), columns=vr.names)
    for c in vr.frozen:
        grid = grid[grid[c] == row[c]]
    grid = grid.reset_index(drop=True)
    flips = _truth(model, vr, grid) != label
    size = vr.changes(pd.DataFrame([row] * len(grid)), grid)
    k = (size > 0).sum(axis=1)
    d = np.sqrt((size**2).sum(axis=1))
    if not flips.any():
        return None, None
    best = min(zip(k[flips], d[flips], strict=True))
    return int(best[0]), float(best[1])


@pytest.mark.parametrize("frozen", [[], ["c"], ["a", "d"]])
def test_the_counterfactual_is_the_smallest_flipping_valid_change(tiny, frozen):
    model, X, y = tiny
    vr = ValidRows(model, X, frozen)
    rows, labels = correct_rows(vr, X, y, 25, seed=1)
    found = counterfactual_search(vr, rows, labels, max_features=4)
    assert all(all(f["exhaustive"]) for f in found)
    for i, f in enumerate(found):
        k, d = _brute_force(model, vr, rows.iloc[i], labels[i])
        assert f["features"] == k
        if k is None:
            continue
        assert f["distance"] == pytest.approx(d)
        assert len(f["changes"]) == k and not set(f["changes"]) & set(frozen)
        assert vr.problems(f["row"], rows.iloc[[i]]) == []
        assert _truth(model, vr, f["row"])[0] != labels[i]


def test_counterfactual_summary_counts_what_was_found(gbm, data):
    vr, X, labels = _rows(gbm, data, n=12)
    found = counterfactual_search(vr, X, labels, max_features=2)
    s = summarise(found, 2, 0.0)
    ks = [f["features"] for f in found]
    assert s["flip_rate"] == {
        "1": sum(k == 1 for k in ks) / 12,
        "2": sum(k in (1, 2) for k in ks) / 12,
    }
    assert s["curve"] == [
        {"budget": 1, "success_rate": s["flip_rate"]["1"]},
        {"budget": 2, "success_rate": s["flip_rate"]["2"]},
    ]
    assert s["success_rate"] == s["flip_rate"]["2"]
    assert s["searched_rows"] == {"1": 12, "2": sum(k != 1 for k in ks)}
    assert s["searched_exhaustively"]["1"] == 12  # every single change is tried
    assert sum(s["features_changed"].values()) == sum(
        len(f["changes"]) for f in found if f["features"]
    )
    assert not set(s["features_changed"]) & set(FROZEN)
    for f, label in zip(found, labels, strict=True):
        if f["features"] is not None:
            assert _truth(gbm, vr, f["row"])[0] != label


# -- the report, the section and the freeze policy -----------------------------------------


def test_a_constant_model_cannot_be_flipped(data):
    model = _model(data, DummyClassifier(strategy="most_frequent"))
    rep = robustness_report(
        model, data[2], data[3], data[0], n_rows=5, noise_rows=100, max_iter=2, max_eval=20
    )
    assert rep["hopskipjump"]["success_rate_unbounded"] == 0.0
    assert rep["counterfactual"]["success_rate"] == 0.0
    assert rep["noise"]["worst_drop"] == 0.0


def test_report_is_deterministic_for_a_seed(gbm, data):
    def run(seed):
        rep = robustness_report(
            gbm,
            data[2],
            data[3],
            data[0],
            n_rows=6,
            noise_rows=200,
            seed=seed,
            max_iter=2,
            max_eval=20,
            frozen=FROZEN,
        )
        return {
            k: {x: y for x, y in v.items() if x != "time_s"}
            for k, v in rep.items()
            if k in ("hopskipjump", "counterfactual")
        }

    assert run(3) == run(3)


def test_freezing_a_feature_the_model_lacks_is_refused_naming_it(gbm, data):
    with pytest.raises(InvalidInput, match=r"'salary'.*its features are age, workclass, fnlwgt"):
        robustness_report(gbm, data[2], data[3], data[0], frozen=["age", "salary"])
    mv = SimpleNamespace(ref="m/1", task="classification", output_schema={"classes": gbm.classes_})
    ctx = AuditContext(
        gbm,
        mv,
        data[2],
        data[3],
        data[0],
        data[1],
        [],
        seed=0,
        sample=50,
        settings={"robustness": {"frozen": ["salary"]}},
    )
    with pytest.raises(InvalidInput, match=r"audit.robustness.frozen.*'salary'.*features are"):
        robustness_section(ctx)


@pytest.mark.parametrize(
    ("robustness", "expected"),
    [
        (["age"], r"audit.robustness: expected a mapping"),
        ({"frozen": "age"}, r"audit.robustness.frozen: expected a list of feature names"),
        ({"freeze": ["age"]}, r"audit.robustness.freeze: unknown key; expected frozen"),
    ],
)
def test_the_policy_key_is_validated(robustness, expected):
    with pytest.raises(InvalidInput, match=expected):
        Policy.from_settings({"audit": {"robustness": robustness}})
    Policy.from_settings({"audit": {"robustness": {"frozen": ["age", "race"]}}})


def test_section_exposes_valid_row_gate_paths_and_curves(gbm, data):
    mv = SimpleNamespace(ref="m/1", task="classification", output_schema={"classes": gbm.classes_})
    ctx = AuditContext(
        gbm,
        mv,
        data[2],
        data[3],
        data[0],
        data[1],
        [],
        seed=0,
        sample=50,
        settings={"robustness": {"frozen": FROZEN}},
    )
    sec = robustness_section(ctx)
    values = evidence_values({"robustness": sec})
    for attack in ("hopskipjump", "counterfactual"):
        assert 0.0 <= values[f"robustness.{attack}.success_rate"] <= 1.0
        assert all(set(p) == {"budget", "success_rate"} for p in sec[attack]["curve"])
    assert "robustness.counterfactual.flip_rate.1" in values
    assert "robustness.noise.worst_accuracy" in values
    assert sec["about"]["frozen"] == FROZEN
    assert "fgsm" not in sec and "pgd" not in sec
    ctx.mv = SimpleNamespace(ref="m/2", task="regression", output_schema={})
    with pytest.raises(InvalidInput, match="robustness: expected a classifier"):
        robustness_section(ctx)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"n_rows": 0}, r"n_rows: expected an integer ≥ 1, got 0"),
        ({"seed": -1}, r"seed: expected an integer ≥ 0"),
        ({"noise_rows": 1.5}, r"noise_rows: expected an integer"),
        ({"max_iter": -2}, r"max_iter: expected an integer ≥ 0"),
        ({"hsj_eps": -0.1}, r"eps: expected a number ≥ 0"),
        ({"max_features": 0}, r"max_features: expected an integer ≥ 1"),
        ({"frozen": "age"}, r"frozen features: expected a list"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, expected, gbm, data):
    with pytest.raises(InvalidInput, match=expected):
        robustness_report(gbm, data[2], data[3], data[0], **{"n_rows": 2, **kwargs})


def test_bad_rows_and_models_are_refused(gbm, data):
    with pytest.raises(InvalidInput, match=r"y_test: expected \d+ labels"):
        robustness_report(gbm, data[2], data[3][:-1], data[0])
    reg = SimpleNamespace(task="regression", input_schema=[])
    with pytest.raises(InvalidInput, match="model: expected a classifier"):
        ValidRows(reg, data[0])


# -- every zoo kind ------------------------------------------------------------------------


_SMALL = {
    "lightgbm": {"n_estimators": 20},
    "hist_gradient_boosting": {"max_iter": 20},
    "random_forest": {"n_estimators": 20},
    "mlp": {"max_iter": 60},
}


@pytest.mark.parametrize(
    "kind",
    [
        "lightgbm",
        "hist_gradient_boosting",
        "random_forest",
        "logistic_regression",
        "mlp",
        "dp_logistic_regression",
        "dp_gaussian_nb",
    ],
)
def test_every_zoo_kind_is_attacked_on_valid_rows(kind, data):
    from keel.train._zoo import ZOO

    k = ZOO[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP convergence, diffprivlib's notes
        est = k.estimator("classification", {**k.defaults, **_SMALL.get(kind, {})}, 0)
        model = _model(data, est, scale=bool(k.tags.get("needs_scaling")))
    rep = robustness_report(
        model,
        data[2],
        data[3],
        data[0],
        n_rows=4,
        noise_rows=100,
        max_iter=2,
        max_eval=20,
        frozen=FROZEN,
    )
    assert rep["about"]["fast_encoding"] is True
    for attack in ("hopskipjump", "counterfactual"):
        assert 0.0 <= rep[attack]["success_rate"] <= 1.0
        assert rep[attack]["curve"]
