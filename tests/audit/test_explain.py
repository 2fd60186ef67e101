"""Explanations: TreeSHAP against LightGBM and shap, additivity for every zoo model, sum-back
to raw features, the sampling estimator against shap's exact values, global views, bad input.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import warnings
from math import factorial

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel import datasets
from keel.audit.explain import (
    Explainer,
    explanation_evidence,
    partial_dependence,
    permutation_importance,
    plot_partial_dependence,
    shap_importance,
    surrogate_tree,
)
from keel.errors import InvalidInput, MissingExtra
from keel.features import FeatureSpec, compile_spec, feature_origins
from keel.models import SklearnModel
from keel.train._train import Prepared, build_model

TOL = 1e-6
TARGET = "income"


@pytest.fixture(scope="module")
def adult():
    train = datasets.adult("train").iloc[:2500].reset_index(drop=True)
    test = datasets.adult("test").iloc[:400].reset_index(drop=True)
    return train, test


def _schema(frame: pd.DataFrame, target: str) -> tuple[list[dict], dict[str, str]]:
    types = {c: ("int" if frame[c].dtype.kind in "iu" else "string") for c in frame.columns}
    types = {c: ("float" if frame[c].dtype.kind == "f" else t) for c, t in types.items()}
    return [{"name": c, "type": types[c]} for c in frame.columns if c != target], types


def fit(frame, kind, params=None, *, target=TARGET, task="classification"):
    schema, types = _schema(frame, target)
    spec = FeatureSpec.infer(types, target=target)
    if kind in ("logistic_regression", "mlp"):
        numeric = [c["name"] for c in schema if c["type"] in ("int", "float")]
        d = spec.to_dict()
        d["steps"].append({"op": "scale", "columns": numeric, "method": "standard"})
        spec = FeatureSpec.from_dict(d)
    prep = Prepared(frame, frame, target, task, spec, schema)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny MLP may not converge; that is fine here
        return build_model(prep, kind, params, seed=0)


SMALL = {
    "lightgbm": {"n_estimators": 40, "num_leaves": 15},
    "logistic_regression": None,
    "hist_gradient_boosting": {"max_iter": 15},
    "random_forest": {"n_estimators": 15, "max_depth": 6},
    "mlp": {"hidden_layer_sizes": [8], "max_iter": 60},
}


@pytest.fixture(scope="module")
def models(adult):
    train, _ = adult
    return {kind: fit(train, kind, params) for kind, params in SMALL.items()}


@pytest.fixture(scope="module")
def lgbm(models, adult):
    train, _ = adult
    return Explainer(models["lightgbm"]).fit(train)


def inputs(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[TARGET])


def as_record(frame: pd.DataFrame, i: int) -> dict:
    out = {}
    for k, v in inputs(frame).iloc[i].items():
        out[k] = None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
    return out


def margin(model, X: pd.DataFrame) -> np.ndarray:
    """The raw output each method explains, computed without keel.audit."""
    if hasattr(model, "booster"):
        return np.asarray(model.booster.predict(model.transformer.transform(X), raw_score=True))
    pipe = model.pipeline
    if hasattr(pipe[-1], "decision_function"):
        return np.asarray(pipe.decision_function(X))
    return np.asarray(pipe.predict_proba(X))[:, 1]


# ------------------------------------------------------------------ TreeSHAP
@pytest.mark.parametrize("n", [30, 400])  # the direct call and the per-cell path
def test_tree_values_equal_shap_tree_explainer_on_encoded_columns(lgbm, models, adult, n):
    shap = pytest.importorskip("shap")
    _, test = adult
    X = inputs(pd.concat([test, test]).iloc[:n])
    model = models["lightgbm"]
    Z = model.transformer.transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # shap's note on binary LightGBM output
        ref = shap.TreeExplainer(model.booster)
        values = np.asarray(ref.shap_values(Z))
    a = lgbm.attributions(X, expanded=True)
    assert a.method == "tree" and a.space == "log_odds" and a.target == ">50K"
    assert a.columns == list(model.transformer.get_feature_names_out())
    np.testing.assert_allclose(a.expanded, values.reshape(a.expanded.shape), rtol=0, atol=TOL)
    assert abs(a.expected_value - float(np.ravel(ref.expected_value)[-1])) <= TOL
    direct = model.booster.predict(Z, pred_contrib=True)
    np.testing.assert_allclose(a.expanded, direct[:, :-1], rtol=0, atol=TOL)


def test_summed_back_features_have_raw_names_and_keep_additivity(lgbm, models, adult):
    _, test = adult
    X = inputs(test.iloc[:50])
    a = lgbm.attributions(X, expanded=True)
    assert a.features == list(X.columns)
    assert "native-country" in a.features
    assert not any(f.startswith("native-country_") for f in a.features)
    origins = feature_origins(models["lightgbm"].transformer[-1])
    for j, f in enumerate(a.features):
        cols = [c for c, o in enumerate(origins) if o == f]
        np.testing.assert_allclose(a.values[:, j], a.expanded[:, cols].sum(axis=1), atol=1e-12)
    raw = margin(models["lightgbm"], X)
    np.testing.assert_allclose(a.values.sum(axis=1) + a.expected_value, raw, rtol=0, atol=TOL)
    np.testing.assert_allclose(a.output, raw, rtol=0, atol=TOL)


_COUNTRIES = ["United-States", "Mexico", "Peru", "Atlantis", None]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    i=st.integers(0, 399),
    age=st.one_of(st.none(), st.integers(17, 90), st.floats(-1e3, 1e3, allow_nan=False)),
    country=st.sampled_from(_COUNTRIES),
    gain=st.one_of(st.none(), st.integers(0, 99999)),
)
def test_one_row_contributions_add_up_to_the_margin(lgbm, models, adult, i, age, country, gain):
    _, test = adult
    row = as_record(test, i) | {"age": age, "native-country": country, "capital-gain": gain}
    out = lgbm.explain_one(row)
    frame = pd.DataFrame([row]).astype({"age": float, "capital-gain": float})
    raw = margin(models["lightgbm"], frame)[0]
    assert abs(sum(out["contributions"].values()) + out["expected_value"] - raw) <= TOL
    assert abs(out["output"] - raw) <= TOL
    batch = lgbm.explain([row])[0]
    for f, v in out["contributions"].items():
        assert abs(batch["contributions"][f] - v) <= 1e-9
    assert lgbm._encoder_checked  # the fast one-row encoder agreed with the transformer


@pytest.mark.parametrize("kind", list(SMALL))
def test_additivity_for_every_zoo_model(models, adult, kind):
    train, test = adult
    model = models[kind]
    e = Explainer(model, n_background=20, n_permutations=4, seed=1).fit(train)
    X = inputs(test.iloc[:8])
    a = e.attributions(X)
    raw = margin(model, X)
    np.testing.assert_allclose(a.values.sum(axis=1) + a.expected_value, raw, rtol=0, atol=TOL)
    np.testing.assert_allclose(a.output, raw, rtol=0, atol=TOL)
    one = e.explain_one(as_record(test, 0))
    assert abs(sum(one["contributions"].values()) + one["expected_value"] - raw[0]) <= TOL
    json.dumps(one, allow_nan=False)
    json.dumps(a.to_dict(), allow_nan=False)


def test_regression_and_multiclass_trees_add_up(adult):
    train, test = adult
    reg = fit(train, "lightgbm", {"n_estimators": 20}, target="hours-per-week", task="regression")
    e = Explainer(reg).fit()
    X = test.drop(columns=["hours-per-week"]).iloc[:300]
    a = e.attributions(X)
    raw = reg.booster.predict(reg.transformer.transform(X))
    np.testing.assert_allclose(a.values.sum(1) + a.expected_value, raw, rtol=0, atol=TOL)
    assert a.space == "raw_score" and a.target is None

    multi = fit(train, "lightgbm", {"n_estimators": 15}, target="race")
    X = test.drop(columns=["race"]).iloc[:300]
    Z = multi.transformer.transform(X)
    raw = multi.booster.predict(Z, raw_score=True)
    for k, cls in enumerate(multi.classes_):
        a = Explainer(multi, target_class=cls).fit().attributions(X)
        np.testing.assert_allclose(a.values.sum(1) + a.expected_value, raw[:, k], atol=TOL)


def test_binary_negative_class_is_the_negated_margin(lgbm, models, adult):
    _, test = adult
    X = inputs(test.iloc[:10])
    neg = Explainer(models["lightgbm"], target_class="<=50K").fit().attributions(X)
    pos = lgbm.attributions(X)
    np.testing.assert_allclose(neg.values, -pos.values, atol=1e-12)
    assert neg.expected_value == pytest.approx(-pos.expected_value)


# ------------------------------------------------------------------ linear and sampling
def test_linear_path_equals_shap_linear_explainer(models, adult):
    shap = pytest.importorskip("shap")
    train, test = adult
    model = models["logistic_regression"]
    e = Explainer(model, n_background=50).fit(train)
    assert e.method_ == "linear"
    X = inputs(test.iloc[:30])
    Zb = model.transformer.transform(e.background_)
    ref = shap.LinearExplainer(model.estimator, shap.maskers.Independent(Zb, max_samples=len(Zb)))
    expected = ref.shap_values(model.transformer.transform(X))
    a = e.attributions(X, expanded=True)
    np.testing.assert_allclose(a.expanded, expected, rtol=0, atol=TOL)
    assert abs(a.expected_value - float(np.ravel(ref.expected_value)[0])) <= TOL


@pytest.fixture(scope="module")
def small_model():
    """Five raw features (one text), a forest: the sampling estimator's test bed."""
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.integers(0, 10, size=n),
            "c": rng.normal(size=n),
            "d": rng.uniform(size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
        }
    )
    signal = frame["a"] * 2 + (frame["colour"] == "red") * 1.5 - frame["b"] * 0.3 + frame["c"]
    frame["y"] = np.where(signal + rng.normal(size=n) > 0, "yes", "no")
    model = fit(frame, "random_forest", {"n_estimators": 10, "max_depth": 4}, target="y")
    return model, frame.drop(columns=["y"])


def _shap_exact(model, X, background):
    """shap's ExactExplainer on the same raw-feature game (text coded as integers)."""
    shap = pytest.importorskip("shap")
    levels = sorted(set(background["colour"]) | set(X["colour"]))

    def code(frame):
        out = frame.copy()
        out["colour"] = [levels.index(v) for v in frame["colour"]]
        return out.to_numpy(dtype=float)

    def f(arr):
        frame = pd.DataFrame(arr, columns=X.columns)
        frame["colour"] = [levels[int(v)] for v in frame["colour"]]
        frame["b"] = frame["b"].astype(float)
        return model.predict_proba(frame)[:, 1]

    masker = shap.maskers.Independent(code(background), max_samples=len(background))
    return shap.ExactExplainer(f, masker)(code(X))


def _brute_force(model, x: pd.DataFrame, background: pd.DataFrame) -> np.ndarray:
    """Shapley values from the definition, one coalition at a time."""
    cols = list(x.columns)
    m = len(cols)

    def v(subset):
        frame = background.copy()
        for c in subset:
            frame[c] = [x[c].iloc[0]] * len(frame)
        return model.predict_proba(frame)[:, 1].mean()

    values = {s: v(s) for r in range(m + 1) for s in itertools.combinations(cols, r)}
    phi = np.zeros(m)
    for i, c in enumerate(cols):
        for s, value in values.items():
            if c in s:
                continue
            with_c = tuple(sorted((*s, c), key=cols.index))
            w = factorial(len(s)) * factorial(m - len(s) - 1) / factorial(m)
            phi[i] += w * (values[with_c] - value)
    return phi


def test_exact_estimator_equals_the_definition(small_model):
    model, X = small_model
    e = Explainer(model, n_background=10, seed=2).fit(X)
    assert e.method_ == "exact"
    a = e.attributions(X.iloc[:1])
    np.testing.assert_allclose(
        a.values[0], _brute_force(model, X.iloc[:1], e.background_), atol=TOL
    )


@pytest.mark.slow  # shap's ExactExplainer compiles with numba first: ~10 s
def test_exact_estimator_equals_shap_exact_explainer(small_model):
    model, X = small_model
    e = Explainer(model, method="exact", n_background=15, seed=3).fit(X)
    rows = X.iloc[:3]
    ours = e.attributions(rows)
    ref = _shap_exact(model, rows, e.background_)
    np.testing.assert_allclose(ours.values, ref.values, rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.expected_value, ref.base_values[0], rtol=0, atol=TOL)


@pytest.mark.slow
def test_permutation_estimator_is_close_to_shap_exact(small_model):
    model, X = small_model
    e = Explainer(model, method="permutation", n_background=15, n_permutations=60, seed=3)
    e.fit(X)
    rows = X.iloc[:3]
    ours = e.attributions(rows)
    ref = _shap_exact(model, rows, e.background_)
    scale = np.abs(ref.values).max()
    assert np.abs(ours.values - ref.values).max() <= 0.1 * scale
    np.testing.assert_allclose(ours.values.sum(1) + ours.expected_value, ours.output, atol=TOL)


def test_deterministic_for_a_fixed_seed(small_model, lgbm, adult):
    model, X = small_model
    rows = X.iloc[:5]

    def run(seed):
        e = Explainer(model, method="permutation", n_background=20, n_permutations=6, seed=seed)
        return e.fit(X).attributions(rows).values

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))
    _, test = adult
    first = lgbm.attributions(inputs(test)).values
    np.testing.assert_array_equal(first, lgbm.attributions(inputs(test)).values)


# ------------------------------------------------------------------ global views
def test_importance_rankings_are_json_and_seeded(lgbm, models, adult):
    _, test = adult
    imp = shap_importance(lgbm.attributions(inputs(test.iloc[:200])))
    assert set(imp) == set(inputs(test).columns)
    assert list(imp.values()) == sorted(imp.values(), reverse=True)
    kw = dict(n_repeats=2, seed=4, max_rows=200)
    p1 = permutation_importance(models["lightgbm"], inputs(test), test[TARGET], **kw)
    p2 = permutation_importance(models["lightgbm"], inputs(test), test[TARGET], **kw)
    assert p1 == p2 and p1["scoring"] == "roc_auc" and 0.5 < p1["baseline"] <= 1.0
    assert set(p1["importances"]) == set(imp)
    json.dumps(p1, allow_nan=False)


def test_partial_dependence_matches_sklearn(models, adult):
    from sklearn.inspection import partial_dependence as sk_pd

    _, test = adult
    model = models["logistic_regression"]
    X = inputs(test.iloc[:150])
    curve = partial_dependence(model, X, "age", grid_size=8, n_ice=10)
    assert curve["kind"] == "numeric" and len(curve["grid"]) == 8
    assert len(curve["ice"]) == 10 and all(len(c) == 8 for c in curve["ice"])
    ref = sk_pd(
        model.pipeline,
        X.astype({"age": float}),
        ["age"],
        custom_values={"age": curve["grid"]},
        kind="average",
        method="brute",
        response_method="predict_proba",
    )
    np.testing.assert_allclose(curve["average"], ref["average"][0], rtol=0, atol=1e-9)
    cat = partial_dependence(model, X, "sex")
    assert cat["kind"] == "categorical" and set(cat["grid"]) == {"Male", "Female"}
    json.dumps(curve, allow_nan=False)


def test_plot_writes_a_png_or_says_matplotlib_is_missing(models, adult, tmp_path):
    _, test = adult
    curve = partial_dependence(models["lightgbm"], inputs(test.iloc[:50]), "age", n_ice=5)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtra, match="pip install matplotlib"):
            plot_partial_dependence(curve, tmp_path / "pdp.png")
        return
    path = plot_partial_dependence(curve, tmp_path / "pdp.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_surrogate_fidelity_is_high_on_a_shallow_model(adult):
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    train, test = adult
    schema, types = _schema(train, TARGET)
    X = inputs(train)
    pipe = Pipeline(
        [
            ("features", compile_spec(FeatureSpec.infer(types, target=TARGET), list(X.columns))),
            ("model", DecisionTreeClassifier(max_depth=2, random_state=0)),
        ]
    ).fit(X, train[TARGET])
    shallow = SklearnModel(pipe, "classification", schema)
    s = surrogate_tree(shallow, X, max_depth=3)
    assert s["fidelity"]["train"] >= 0.99 and s["fidelity"]["holdout"] >= 0.99
    assert "|---" in s["rules"] and s["metric"] == "agreement"
    json.dumps(s, allow_nan=False)


@pytest.mark.parametrize("kind", ["lightgbm", "mlp"])
def test_surrogate_fidelity_is_a_fraction(models, adult, kind):
    _, test = adult
    s = surrogate_tree(models[kind], inputs(test), max_depth=2, seed=1)
    for v in s["fidelity"].values():
        assert 0.0 <= v <= 1.0
    assert s["depth"] <= 2


def test_evidence_is_json_and_repeatable(models, adult):
    train, test = adult
    kw = dict(n_rows=100, n_local=2, n_pdp=2, n_repeats=2, seed=5)
    ev = explanation_evidence(models["lightgbm"], inputs(test), test[TARGET], **kw)
    again = explanation_evidence(models["lightgbm"], inputs(test), test[TARGET], **kw)
    for doc in (ev, again):
        doc["repeat"].pop("timings_s")
    assert ev == again
    assert {"global", "local", "pdp", "surrogate", "repeat"} <= set(ev)
    assert len(ev["local"]) == 2 and len(ev["pdp"]) == 2
    json.dumps(ev, allow_nan=False)


def test_one_row_is_fast(lgbm, adult):
    _, test = adult
    row = as_record(test, 1)
    lgbm.explain_one(row)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        lgbm.explain_one(row)
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.005


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"agee": 3}, "unknown field 'agee' (did you mean 'age'?)"),
        ({"age": "forty"}, "field 'age': expected a number, got 'forty'"),
        ({"sex": 1}, "field 'sex': expected text, got 1"),
    ],
)
def test_bad_rows_name_the_field(lgbm, adult, change, needle):
    _, test = adult
    row = as_record(test, 0) | change
    with pytest.raises(InvalidInput, match=re.escape(needle)):
        lgbm.explain_one(row)
    with pytest.raises(InvalidInput, match="row 0"):
        lgbm.explain([row])


def test_missing_field_and_wrong_shapes_are_refused(lgbm, adult):
    _, test = adult
    row = as_record(test, 0)
    del row["education"]
    with pytest.raises(InvalidInput, match="field 'education' is missing"):
        lgbm.explain_one(row)
    with pytest.raises(InvalidInput, match="expected 14 values per row"):
        lgbm.attributions(np.zeros((2, 13)))
    with pytest.raises(InvalidInput, match="expected an object"):
        lgbm.explain_one([1, 2, 3])
    with pytest.raises(InvalidInput, match="missing column"):
        lgbm.attributions(inputs(test).drop(columns=["age"]))


def test_bad_configuration_is_refused(models, adult):
    train, test = adult
    with pytest.raises(InvalidInput, match="target_class: 'maybe'"):
        Explainer(models["lightgbm"], target_class="maybe").fit()
    with pytest.raises(InvalidInput, match="method 'tree'"):
        Explainer(models["logistic_regression"], method="tree").fit(train)
    with pytest.raises(InvalidInput, match="method: expected one of"):
        Explainer(models["lightgbm"], method="magic").fit()
    with pytest.raises(InvalidInput, match="needs background rows"):
        Explainer(models["random_forest"]).fit()
    with pytest.raises(InvalidInput, match="not fitted"):
        Explainer(models["lightgbm"]).explain_one(as_record(test, 0))
    with pytest.raises(InvalidInput, match="feature: 'agee'"):
        partial_dependence(models["lightgbm"], inputs(test), "agee")
    with pytest.raises(InvalidInput, match="max_depth"):
        surrogate_tree(models["lightgbm"], inputs(test), max_depth=0)


def test_thread_counts_and_concurrent_calls_agree(models, adult, lgbm):
    from concurrent.futures import ThreadPoolExecutor

    _, test = adult
    X = inputs(test.iloc[:300])
    ref = Explainer(models["lightgbm"], n_threads=1).fit().attributions(X).values
    for n in (2, 3):
        got = Explainer(models["lightgbm"], n_threads=n).fit().attributions(X).values
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    rows = [as_record(test, i) for i in range(20)]
    with ThreadPoolExecutor(3) as pool:
        batches = [pool.submit(lgbm.attributions, X) for _ in range(2)]
        singles = list(pool.map(lgbm.explain_one, rows * 3))
    for b in batches:
        np.testing.assert_allclose(b.result().values, ref, rtol=0, atol=1e-12)
    for i, one in enumerate(singles):
        got = np.asarray(list(one["contributions"].values()))
        np.testing.assert_allclose(got, ref[i % 20], rtol=0, atol=1e-9)


def test_a_stored_model_explains_as_the_server_would_load_it(models, adult, store):
    """The server's path: the version's artifact loaded back, one Explainer held warm."""
    from keel.models import load_model, save_model

    _, test = adult
    sha = save_model(models["lightgbm"], store.blobs)
    loaded = load_model(store.blobs, sha)
    explainer = Explainer(loaded).fit()
    row = as_record(test, 2)
    out = explainer.explain_one(row)
    ref = Explainer(models["lightgbm"]).fit().explain_one(row)
    assert out == ref
    assert json.loads(json.dumps(out)) == out


@pytest.fixture(scope="module")
def zoo_explainers(models, adult):
    train, _ = adult
    return {
        kind: Explainer(model, n_background=10, n_permutations=2, seed=0).fit(train)
        for kind, model in models.items()
    }


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(list(SMALL)),
    i=st.integers(0, 399),
    hours=st.one_of(st.none(), st.integers(1, 99)),
    workclass=st.sampled_from(["Private", "Never-worked", "Unheard-of", None]),
)
def test_every_zoo_model_adds_up_on_any_row(
    zoo_explainers, models, adult, kind, i, hours, workclass
):
    _, test = adult
    row = as_record(test, i) | {"hours-per-week": hours, "workclass": workclass}
    out = zoo_explainers[kind].explain_one(row)
    frame = pd.DataFrame([row]).astype({"hours-per-week": float})
    raw = margin(models[kind], frame)[0]
    assert abs(sum(out["contributions"].values()) + out["expected_value"] - raw) <= TOL
    assert abs(out["output"] - raw) <= TOL


def test_random_forest_mode_lightgbm_adds_up(adult):
    """boosting 'rf' averages its trees; per-iteration contributions must still add up."""
    train, test = adult
    params = {"boosting_type": "rf", "subsample": 0.8, "subsample_freq": 1, "n_estimators": 10}
    model = fit(train, "lightgbm", params)
    X = inputs(test)
    a = Explainer(model).fit().attributions(X)
    raw = margin(model, X)
    np.testing.assert_allclose(a.values.sum(1) + a.expected_value, raw, rtol=0, atol=TOL)


# ------------------------------------------------------------------ mitigated versions
POS = ">50K"


def _rule(groups: dict) -> dict:
    return {
        "sensitive": ["sex"],
        "positive_class": POS,
        "method": "threshold",
        "constraint": "demographic_parity",
        "groups": groups,
    }


def _split(op: str, t1: float, t2: float, p0: float) -> dict:
    return {"p0": p0, "operation0": [op, t1], "p1": 1.0 - p0, "operation1": [op, t2]}


@pytest.fixture(scope="module")
def thresholded(models):
    from keel.models import ThresholdedModel

    base = models["lightgbm"]
    rule = _rule({"Female": _split(">", 0.3, 0.4, 0.25), "Male": _split(">", 0.6, 0.7, 1.0)})
    return ThresholdedModel(base, rule, base.input_schema, seed=3)


def _encoded_member_data(models, adult):
    train, _ = adult
    base = models["lightgbm"]
    Z = np.asarray(base.transformer.transform(inputs(train)), dtype=np.float64)
    return base, Z, (train[TARGET] == POS).to_numpy().astype(int)


@pytest.fixture(scope="module")
def ensemble(models, adult):
    """An ExponentiatedGradient-shaped ensemble: two LightGBM members of different shapes
    and one of fairlearn's constant predictors."""
    import lightgbm as lgb
    from sklearn.dummy import DummyClassifier

    from keel.models import EnsembleModel

    base, Z, y = _encoded_member_data(models, adult)
    members = [
        lgb.LGBMClassifier(n_estimators=n, num_leaves=leaves, verbose=-1, random_state=0)
        .fit(Z, y)
        .booster_
        for n, leaves in ((30, 15), (12, 7))
    ]
    constant = DummyClassifier(strategy="constant", constant=1).fit(Z, y)
    schema, classes = base.input_schema, base.classes_
    model = EnsembleModel(base.transformer, [*members, constant], [0.5, 0.3, 0.2], schema, classes)
    return model, members


def test_a_threshold_version_explains_its_base_models_score(thresholded, models, adult):
    _, test = adult
    X = inputs(test)
    base = models["lightgbm"]
    ex = Explainer(thresholded).fit()
    a = ex.attributions(X)
    assert a.method == "tree" and a.space == "log_odds"
    # what is explained: the base model's log-odds (the score the thresholds act on) ...
    np.testing.assert_allclose(a.output, margin(base, X), rtol=0, atol=TOL)
    np.testing.assert_allclose(a.values.sum(1) + a.expected_value, a.output, rtol=0, atol=TOL)
    ref = Explainer(base).fit().attributions(X)
    np.testing.assert_allclose(a.values, ref.values, rtol=0, atol=1e-12)
    # ... and it says so, naming the post-processing it does not attribute
    assert "base model's score" in a.explains and "per group of sex" in a.explains
    one = ex.explain_one(as_record(test, 4))
    assert one["explains"] == a.explains
    assert one["output"] == pytest.approx(a.output[4], abs=1e-12)
    assert "explains" not in Explainer(base).fit().explain_one(as_record(test, 4))


def test_a_sensitive_column_only_the_thresholds_read_gets_nothing(models, adult):
    from keel.models import ThresholdedModel

    train, test = adult
    cols = ["age", "education-num", "hours-per-week", "occupation", TARGET]
    base = fit(train[cols], "lightgbm", {"n_estimators": 20})
    schema = [*base.input_schema, {"name": "sex", "type": "string"}]
    rule = _rule({"Female": _split(">", 0.2, 0.2, 1.0), "Male": _split(">", 0.5, 0.5, 1.0)})
    model = ThresholdedModel(base, rule, schema)
    X = inputs(test)[[c["name"] for c in schema]]
    a = Explainer(model).fit().attributions(X)
    assert a.features[-1] == "sex" and np.all(a.values[:, -1] == 0.0)
    np.testing.assert_allclose(a.output, margin(base, X[cols[:-1]]), rtol=0, atol=TOL)
    row = as_record(test[[*cols, "sex"]], 1)
    assert Explainer(model).fit().explain_one(row)["contributions"]["sex"] == 0.0


def test_an_expgrad_version_explains_its_members_weighted_mean_score(ensemble, models, adult):
    """The weighted sum of each member's TreeSHAP values is exactly the SHAP decomposition
    of the weighted mean of their log-odds (Shapley values are linear in the game)."""
    model, members = ensemble
    _, test = adult
    X = inputs(test)
    Z = np.asarray(model.transformer.transform(X), dtype=np.float64)
    w = np.asarray([0.5, 0.3]) / 0.8  # the constant member (weight 0.2) is left out
    score = sum(wk * m.predict(Z, raw_score=True) for wk, m in zip(w, members, strict=True))
    ex = Explainer(model).fit()
    a = ex.attributions(X, expanded=True)
    assert a.method == "tree" and a.space == "log_odds"
    np.testing.assert_allclose(a.output, score, rtol=0, atol=TOL)
    np.testing.assert_allclose(a.values.sum(1) + a.expected_value, score, rtol=0, atol=TOL)
    per_member = [m.predict(Z, pred_contrib=True)[:, :-1] for m in members]  # LightGBM's own
    ref = sum(wk * v for wk, v in zip(w, per_member, strict=True))
    np.testing.assert_allclose(a.expanded, ref, rtol=0, atol=1e-9)
    assert "weighted mean log-odds" in a.explains and "weight 0.200" in a.explains
    one = ex.explain_one(as_record(test, 7))
    np.testing.assert_allclose(list(one["contributions"].values()), a.values[7], atol=1e-12)


def test_a_mitigated_model_without_trees_explains_its_decision_probability(models, adult):
    from keel.models import ThresholdedModel

    train, test = adult
    base = models["hist_gradient_boosting"]
    rule = _rule({"Female": _split(">", 0.3, 0.4, 0.5), "Male": _split(">", 0.5, 0.5, 1.0)})
    model = ThresholdedModel(base, rule, base.input_schema, seed=1)
    X = inputs(test).iloc[:5]
    a = Explainer(model, n_background=10, n_permutations=2).fit(train).attributions(X)
    assert a.space == "decision_probability" and a.method == "permutation"
    np.testing.assert_allclose(a.output, model.decision_probability(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.values.sum(1) + a.expected_value, a.output, rtol=0, atol=TOL)


def _recorder():
    seen: list[tuple[str, float]] = []
    return seen, lambda step, fraction: seen.append((step, fraction))


@pytest.mark.parametrize("kind", ["lightgbm", "hist_gradient_boosting"])
def test_progress_advances_through_the_explanations(models, adult, kind):
    train, test = adult
    seen, progress = _recorder()
    explanation_evidence(
        models[kind],
        inputs(test).iloc[:120],
        test[TARGET].iloc[:120].to_numpy(),
        background=inputs(train),
        n_rows=120,
        n_pdp=2,
        n_repeats=2,
        progress=progress,
    )
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0.0 <= fractions[0]
    steps = " | ".join(s for s, _ in seen)
    for needle in ("SHAP values", "permutation importance", "partial dependence", "surrogate"):
        assert needle in steps
    n_features = len(models[kind].input_schema)
    scorings = [s for s, _ in seen if s.startswith("permutation importance")]
    assert len(scorings) == 1 + 2 * n_features  # the baseline, then each feature twice
    shap_steps = {s for s, _ in seen if s.startswith("SHAP values")}
    assert len(shap_steps) >= (4 if kind == "hist_gradient_boosting" else 1)  # 50-row chunks


def test_chunked_sampling_estimates_equal_one_call(models, adult):
    """Progress in chunks changes nothing: the estimate is the same as in one call."""
    from keel.audit._explain_global import _attributions

    train, test = adult
    ex = Explainer(models["hist_gradient_boosting"], n_background=10, n_permutations=4)
    ex.fit(train)
    X = inputs(test).iloc[:130].reset_index(drop=True)
    whole = ex.attributions(X)
    chunked = _attributions(ex, X, lambda f, what: None)
    np.testing.assert_allclose(chunked.values, whole.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked.output, whole.output, rtol=0, atol=1e-12)


def test_an_audit_reports_progress_within_the_explanations(tmp_path):
    from keel.audit import audit
    from tests.serve._support import adult_store, train_lgb

    store, _ = adult_store(tmp_path, rows=800)
    try:
        mv = train_lgb(store, "adult", alias=None)
        seen: list[tuple[str | None, float, int]] = []
        audit(
            store,
            mv.ref,
            sections=["performance", "explanations"],
            n_boot=10,
            sample=100,
            save=False,
            progress=lambda step, done, total: seen.append((step, done, total)),
        )
    finally:
        store.close()
    inside = [(s, d) for s, d, _ in seen if s and s.startswith("explanations: ")]
    assert len(inside) > 10
    done = [d for _, d in inside]
    assert done == sorted(done) and 1.0 <= done[0] < done[-1] <= 2.0
    assert seen[-1] == (None, 2, 2)
