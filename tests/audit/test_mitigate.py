"""Fairness mitigation: reweighing, ExponentiatedGradient and ThresholdOptimizer each make a
loadable version whose disparity moves the right way, recorded with its lineage; the saved
forms load without pickle; bad input stores nothing. Also keel.train's ``sample_weight``."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel import project as keel_project
from keel import registry
from keel.audit.fairness import demographic_parity_difference
from keel.audit.mitigate import (
    METHODS,
    exponentiated_gradient,
    mitigate,
    mitigation_of,
    reweigh,
    reweighing_weights,
    table_rows,
    threshold_optimizer,
)
from keel.cli import main
from keel.data import ingest
from keel.datasets import adult
from keel.errors import InvalidInput, UnsafeArtifact
from keel.export import prepared_of
from keel.models import EnsembleModel, ThresholdedModel, load_model, save_model
from keel.models._mitigated import group_keys, row_uniforms
from keel.store import MemoryBlobStore, lineage
from keel.testing import check_model
from keel.train import get_run, list_runs, train

POS = ">50K"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """3,000 Adult training rows and 4,000 hold-out rows (enough for a disparity to mean
    something), a small LightGBM registered as adult/1; the three mitigations of it."""
    root = tmp_path_factory.mktemp("mitigate") / "proj"
    root.mkdir()
    adult("train").sample(3000, random_state=1).to_csv(root / "train.csv", index=False)
    adult("test").sample(4000, random_state=1).to_csv(root / "test.csv", index=False)
    proj = keel_project.init(root, name="mitigate")
    ingest(proj.store, root / "train.csv", name="train")
    ingest(proj.store, root / "test.csv", name="test")
    res = train(proj.store, "train", "income", holdout="test", params={"n_estimators": 30})
    parent = res.register(proj.store, "adult")
    done = {
        "threshold": threshold_optimizer(proj.store, parent.ref, "sex"),
        "reweigh": reweigh(proj.store, parent.ref, "sex"),
        "expgrad": exponentiated_gradient(proj.store, parent.ref, "sex", max_iter=15),
    }
    yield proj, root, parent, done
    proj.close()


def _rows(store, mv):
    prep = prepared_of(store, mv.ref)
    model = registry.load(store, mv.ref)
    return model, prep.test[[c["name"] for c in model.input_schema]], prep


def _dp(table):
    return table["fairness"]["sex"]["demographic_parity_difference"]


# ---------------------------------------------------------------- reweighing weights


def test_reweighing_weights_hand_computed():
    # group a: 3 positives, 1 negative; group b: 1 positive, 3 negatives; n = 8.
    # w(g, y) = n_g n_y / (n n_gy): a,1 = 4*4/(8*3) = 2/3; a,0 = 4*4/(8*1) = 2; same for b.
    groups = ["a", "a", "a", "a", "b", "b", "b", "b"]
    labels = [1, 1, 1, 0, 1, 0, 0, 0]
    w = reweighing_weights(groups, labels)
    assert w == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2, 2, 2 / 3, 2 / 3, 2 / 3])
    g, y = np.array(groups), np.array(labels)
    for grp in "ab":  # weighted positive rate 2/4 in both groups, as overall
        rows = g == grp
        assert w[rows & (y == 1)].sum() / w[rows].sum() == pytest.approx(0.5)
        assert w[rows].sum() == pytest.approx(4)  # each group keeps its weight


def test_reweighing_weights_uneven_example():
    # a: 2 rows (1 pos), b: 4 rows (1 pos); n=6, positives 2, negatives 4.
    # a,1: 2*2/(6*1)=2/3; a,0: 2*4/(6*1)=4/3; b,1: 4*2/(6*1)=4/3; b,0: 4*4/(6*3)=8/9
    w = reweighing_weights(["a", "a", "b", "b", "b", "b"], ["y", "n", "y", "n", "n", "n"])
    assert w == pytest.approx([2 / 3, 4 / 3, 4 / 3, 8 / 9, 8 / 9, 8 / 9])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from([0, 1])), min_size=4))
def test_reweighed_rows_make_group_and_label_independent(rows):
    groups, labels = (np.array(x) for x in zip(*rows, strict=True))
    if len(set(labels.tolist())) < 2:
        with pytest.raises(InvalidInput, match="labels"):
            reweighing_weights(groups, labels)
        return
    w = reweighing_weights(groups, labels)
    n = len(groups)
    full = True
    for g in set(groups.tolist()):
        for y in (0, 1):
            cell = (groups == g) & (labels == y)
            full &= bool(cell.any())
            if cell.any():  # each cell weighs what independence of the marginals says
                expected = (groups == g).sum() * (labels == y).sum() / n**2
                assert w[cell].sum() / n == pytest.approx(expected, abs=1e-12)
    if full:  # then the weighted marginals are the data's, and group and label independent
        assert w.sum() == pytest.approx(n)
        rates = {g: w[(groups == g) & (labels == 1)].sum() / w[groups == g].sum() for g in groups}
        assert max(rates.values()) - min(rates.values()) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize(
    ("groups", "labels", "match"),
    [
        (["a", "b"], [1, 1], "labels: reweighing needs at least 2 classes"),
        (["a", "b", "a"], [1, 0], "one group per label"),
        (["a", None], [1, 0], "groups: .*missing"),
    ],
)
def test_reweighing_weights_refuse_bad_input(groups, labels, match):
    with pytest.raises(InvalidInput, match=match):
        reweighing_weights(groups, labels)


# ---------------------------------------------------------------- the three methods


def test_reweigh_retrains_the_same_model_on_the_weights(fitted):
    proj, _, parent, done = fitted
    mv, table = done["reweigh"]
    assert mv.flavor == "lightgbm" and mv.name == "adult" and mv.version > parent.version
    run = get_run(proj.store, mv.run_id)
    parent_run = get_run(proj.store, parent.run_id)
    assert run["params"]["sample_weight"] == "given"
    assert run["params"]["model.n_estimators"] == parent_run["params"]["model.n_estimators"]
    cells = run["params"]["mitigation.weights"]
    assert {(c["group"], c["label"]) for c in cells} == {
        (g, y) for g in ("Female", "Male") for y in ("<=50K", ">50K")
    }
    # fewer of the favoured cells' weight: Male & >50K is weighted down, Female & >50K up
    weight = {(c["group"], c["label"]): c["weight"] for c in cells}
    assert weight[("Male", POS)] < 1 < weight[("Female", POS)]
    dp = _dp(table)
    assert dp["after"] < dp["before"] and dp["change"] == pytest.approx(dp["after"] - dp["before"])
    model, X, _ = _rows(proj.store, mv)
    check_model(model, X.iloc[:200], blobs=MemoryBlobStore())


def test_threshold_optimizer_meets_demographic_parity(fitted):
    proj, _, parent, done = fitted
    mv, table = done["threshold"]
    assert mv.flavor == "postprocessed"
    dp = _dp(table)
    # on the 4,000 hold-out rows; the constraint itself is imposed on the training rows
    assert dp["before"] > 0.1 and dp["after"] <= 0.03, dp
    model, X, prep = _rows(proj.store, mv)
    assert isinstance(model, ThresholdedModel) and model.tags["hard_decisions"]
    pred = model.predict(X)
    y = prep.test["income"].to_numpy()
    assert demographic_parity_difference(
        y, pred, sensitive_features=X["sex"], pos_label=POS
    ) == pytest.approx(dp["after"], abs=1e-12)
    assert table["accuracy"]["after"] == pytest.approx(np.mean(pred == y))
    train_rows = prep.train[X.columns]
    pmf = pd.Series(model.decision_probability(train_rows)).groupby(train_rows["sex"]).mean()
    assert pmf.max() - pmf.min() <= 0.01  # expected selection rates equal where it was fit
    check_model(model, X.iloc[:300], blobs=MemoryBlobStore())


def test_threshold_rule_equals_fairlearns(fitted):
    """The stored rule gives fairlearn's own probabilities of a positive decision."""
    from fairlearn.postprocessing import ThresholdOptimizer

    from keel.audit.mitigate import _score_estimator

    proj, _, parent, done = fitted
    model, X, prep = _rows(proj.store, done["threshold"].version)
    base = registry.load(proj.store, parent.ref)
    s_train = base.predict_proba(prep.train[X.columns])[:, 1]
    s_test = base.predict_proba(X)[:, 1]
    to = ThresholdOptimizer(estimator=_score_estimator(), prefit=True, predict_method="predict")
    to.fit(
        s_train[:, None],
        (prep.train["income"] == POS).to_numpy().astype(int),
        sensitive_features=prep.train["sex"].to_numpy(),
    )
    expected = to._pmf_predict(s_test[:, None], sensitive_features=X["sex"].to_numpy())[:, 1]
    assert model.decision_probability(X) == pytest.approx(expected, abs=1e-12)
    # where fairlearn does not randomize, the decisions are its decisions
    fixed = (expected == 0) | (expected == 1)
    assert np.array_equal(model.predict(X)[fixed] == POS, expected[fixed] == 1)


def test_exponentiated_gradient_makes_a_fairer_ensemble(fitted):
    proj, _, _, done = fitted
    mv, table = done["expgrad"]
    assert mv.flavor == "randomized_ensemble"
    dp = _dp(table)
    assert dp["after"] < dp["before"] / 2, dp
    model, X, _ = _rows(proj.store, mv)
    assert isinstance(model, EnsembleModel) and sum(model.weights) == pytest.approx(1)
    run = get_run(proj.store, mv.run_id)
    assert run["params"]["mitigation.members"] == len(model.members)
    check_model(model, X.iloc[:300], blobs=MemoryBlobStore())


@pytest.mark.slow
def test_ensemble_equals_fairlearns_exponentiated_gradient(fitted):
    """The saved members and weights give fairlearn's probabilities on the hold-out rows."""
    import fairlearn.reductions as red

    from keel.audit.mitigate import _pandas_deprecation
    from keel.train import get_kind

    proj, _, parent, done = fitted
    model, X, prep = _rows(proj.store, done["expgrad"].version)
    base = registry.load(proj.store, parent.ref)
    est = get_kind("lightgbm").estimator("classification", {"n_estimators": 30}, 0)
    eg = red.ExponentiatedGradient(est, red.DemographicParity(), max_iter=15)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=_pandas_deprecation())
        eg.fit(
            base.transformer.transform(prep.train[X.columns]),
            (prep.train["income"] == POS).to_numpy().astype(int),
            sensitive_features=prep.train["sex"].to_numpy(),
        )
    expected = eg._pmf_predict(base.transformer.transform(X))[:, 1]
    assert model.decision_probability(X) == pytest.approx(expected, abs=1e-9)


def test_decisions_are_a_function_of_the_row(fitted):
    proj, _, _, done = fitted
    for method in ("threshold", "expgrad"):
        model, X, _ = _rows(proj.store, done[method].version)
        pred = model.predict(X)
        shuffled = X.sample(frac=1.0, random_state=3)
        assert np.array_equal(model.predict(shuffled), pred[shuffled.index.to_numpy()])
        pmf = model.decision_probability(X)
        band = np.flatnonzero((pmf > 0) & (pmf < 1))
        for i in band[:5]:
            assert model.predict(X.iloc[[i]])[0] == pred[i]
        # a row sent as JSON (ints as floats, strings as objects) decides the same way
        records = json.loads(X.iloc[band[:20]].to_json(orient="records"))
        assert np.array_equal(model.predict(records), pred[band[:20]])


def test_row_uniforms_are_uniform_and_keyed():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.integers(0, 10**6, 20_000), "b": rng.choice(["x", "y"], 20_000)})
    schema = [{"name": "a", "type": "int"}, {"name": "b", "type": "string"}]
    u = row_uniforms(X, schema, seed=0)
    assert ((u >= 0) & (u < 1)).all()
    for q in (0.1, 0.3, 0.5, 0.9):
        assert np.mean(u < q) == pytest.approx(q, abs=0.015)
    assert not np.array_equal(u, row_uniforms(X, schema, seed=1))
    as_float = X.assign(a=X["a"].astype(float))
    assert np.array_equal(u, row_uniforms(as_float, schema, seed=0))


def test_the_new_versions_record_their_lineage(fitted):
    proj, _, parent, done = fitted
    for method, (mv, table) in done.items():
        assert table["version"] == mv.ref and table["parent"] == parent.ref
        assert mv.tags["mitigation"] == method
        root = lineage(proj.store, "model", mv.ref)
        edges = {(n.kind, n.id, n.role) for n in root.parents}
        assert ("model", parent.ref, "mitigated_from") in edges
        assert ("run", mv.run_id, "trained_by") in edges
        run_node = next(n for n in root.parents if n.kind == "run")
        assert ("model", parent.ref, "mitigates") in {
            (n.kind, n.id, n.role) for n in run_node.parents
        }
        run = get_run(proj.store, mv.run_id)
        assert run["params"]["mitigation.method"] == method
        assert run["params"]["mitigation.sensitive"] == ["sex"]
        stored = json.loads(proj.store.blobs.get_bytes(run["artifacts"]["mitigation.json"]["sha"]))
        assert stored == json.loads(json.dumps({k: v for k, v in table.items() if k != "version"}))
        assert mitigation_of(proj.store, mv.ref) == json.loads(json.dumps(table))
        # the new version's hold-out rows are the parent's (an audit of it compares)
        assert prepared_of(proj.store, mv.ref).test.equals(prepared_of(proj.store, parent.ref).test)


def test_a_version_no_mitigation_made_has_no_table(fitted):
    proj, _, parent, _ = fitted
    assert mitigation_of(proj.store, parent.ref) is None


def test_an_audit_of_the_mitigated_version_sees_its_decisions(fitted):
    from keel.audit._evidence import audit

    proj, _, _, done = fitted
    mv, table = done["threshold"]
    ev = audit(proj.store, mv.ref, sections=["fairness"], sensitive=["sex"], n_boot=20, save=False)
    got = ev.doc["fairness"]["sex"]["demographic_parity_difference"]["value"]
    assert got == pytest.approx(_dp(table)["after"], abs=1e-12)


def test_table_rows_flatten_every_figure(fitted):
    _, _, _, done = fitted
    rows = table_rows(done["threshold"].table)
    names = [r[0] for r in rows]
    assert names[:2] == ["accuracy", "selection rate"]
    assert "sex: demographic parity difference" in names
    assert any(n.startswith("sex: selection rate of Female (n=") for n in names)
    assert all(len(r) == 4 for r in rows)


# ---------------------------------------------------------------- adapters and safe loading


@pytest.fixture(scope="module")
def base_without_sex():
    from keel.features import FeatureSpec
    from keel.train._train import Prepared, build_model

    df = adult("train").sample(1200, random_state=0).reset_index(drop=True)
    inputs = ["age", "education-num", "hours-per-week", "occupation"]
    types = {"age": "int", "education-num": "int", "hours-per-week": "int", "occupation": "string"}
    schema = [{"name": c, "type": types[c]} for c in inputs]
    prep = Prepared(df, df, "income", "classification", FeatureSpec.infer(types), schema)
    return build_model(prep, "lightgbm", {"n_estimators": 20}, 0), df


def _rule(groups):
    return {"sensitive": ["sex"], "positive_class": POS, "groups": groups}


def _fixed(op, t):
    return {"p0": 1.0, "operation0": [op, t], "p1": 0.0, "operation1": [op, t]}


def test_thresholded_model_reads_a_sensitive_column_the_base_does_not(base_without_sex):
    base, df = base_without_sex
    schema = [*base.input_schema, {"name": "sex", "type": "string"}]
    rule = _rule({"Female": _fixed(">", 0.2), "Male": _fixed(">", "inf")})
    model = ThresholdedModel(base, rule, schema)
    X = df[[c["name"] for c in schema]].iloc[:400]
    s = base.predict_proba(X[[c["name"] for c in base.input_schema]])[:, 1]
    expected = np.where((X["sex"] == "Female") & (s > 0.2), POS, "<=50K")
    assert np.array_equal(model.predict(X), expected)  # Male: threshold inf, never selected
    other = X.assign(sex="Other")  # a group the rule never saw gets the base decision
    assert np.array_equal(
        model.predict(other), base.predict(X[[c["name"] for c in base.input_schema]])
    )
    with pytest.raises(InvalidInput, match="'sex'"):
        model.predict(X.drop(columns=["sex"]))
    blobs = MemoryBlobStore()
    check_model(model, X, blobs=blobs)
    again = load_model(blobs, save_model(model, blobs))
    assert again.rule == rule and np.array_equal(again.predict(X), model.predict(X))


def _manifest(blobs, sha):
    return json.loads(blobs.get_bytes(sha))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("operation0", ["__import__('os')", 0.5], "operation0"),
        ("p0", 2.0, "probabilities"),
        ("operation1", [">", "nan"], "operation1"),
    ],
)
def test_a_tampered_rule_is_refused(base_without_sex, field, value, match):
    base, _ = base_without_sex
    blobs = MemoryBlobStore()
    model = ThresholdedModel(
        base,
        _rule({"Female": _fixed(">", 0.5)}),
        base.input_schema + [{"name": "sex", "type": "string"}],
    )
    m = _manifest(blobs, save_model(model, blobs))
    doc = json.loads(blobs.get_bytes(m["components"]["rule"]["sha"]))
    doc["rule"]["groups"]["Female"][field] = value
    m["components"]["rule"]["sha"] = blobs.put_bytes(json.dumps(doc).encode())
    with pytest.raises(UnsafeArtifact, match=match):
        load_model(blobs, blobs.put_bytes(json.dumps(m).encode()))


def test_a_pickled_ensemble_member_is_refused(fitted):
    import pickle

    proj, _, _, done = fitted
    blobs = proj.store.blobs
    m = _manifest(blobs, done["expgrad"].version.artifact_sha)
    m["components"]["member0"] = {
        "sha": blobs.put_bytes(pickle.dumps({"x": 1})),
        "format": "skops",
    }
    with pytest.raises(UnsafeArtifact, match="never unpickles"):
        load_model(blobs, blobs.put_bytes(json.dumps(m).encode()))


def test_group_keys_name_missing_values_and_intersections():
    X = pd.DataFrame({"sex": ["Male", None, "Female"], "age": [30, 40.0, np.nan]})
    assert list(group_keys(X, ["sex"])) == ["Male", "(missing)", "Female"]
    assert list(group_keys(X, ["sex", "age"])) == [
        "Male & 30",
        "(missing) & 40",
        "Female & (missing)",
    ]


# ---------------------------------------------------------------- bad input stores nothing


def _counts(store):
    return len(registry.list_versions(store, "adult")), len(list_runs(store, limit=1000))


@pytest.mark.parametrize(
    ("method", "sensitive", "options", "match"),
    [
        ("nope", "sex", {}, "--method: expected one of reweigh, expgrad, threshold"),
        ("threshold", "gender", {}, "--sensitive: column 'gender' is not in the data"),
        ("threshold", "income", {}, "--sensitive: 'income' is the model's target"),
        ("threshold", [], {}, "--sensitive: expected one or more column names"),
        ("expgrad", "sex", {"constraint": "fairness"}, "--constraint: expected one of"),
        ("reweigh", "sex", {"constraint": "equalized_odds"}, "--constraint: reweigh supports"),
        ("threshold", "sex", {"seed": -1}, "seed"),
        ("expgrad", "sex", {"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(fitted, method, sensitive, options, match):
    proj, _, parent, _ = fitted
    before = _counts(proj.store)
    with pytest.raises(InvalidInput, match=match):
        mitigate(proj.store, parent.ref, method, sensitive, **options)
    assert _counts(proj.store) == before


def test_single_group_and_mitigated_parents_are_refused(fitted, tmp_path):
    proj, _, parent, done = fitted
    before = _counts(proj.store)
    with pytest.raises(InvalidInput, match="already mitigated"):
        threshold_optimizer(proj.store, done["threshold"].version.ref, "sex")
    assert _counts(proj.store) == before
    df = adult("train").sample(400, random_state=2).assign(site="A")
    df.to_csv(tmp_path / "one.csv", index=False)
    with keel_project.init(tmp_path / "p", name="one") as p2:
        ingest(p2.store, tmp_path / "one.csv", name="one")
        mv = train(p2.store, "one", "income", params={"n_estimators": 5}).register(p2.store, "one")
        with pytest.raises(InvalidInput, match="column 'site' has a single group"):
            reweigh(p2.store, mv.ref, "site")
        reg = train(p2.store, "one", "age", params={"n_estimators": 5}).register(p2.store, "age")
        with pytest.raises(InvalidInput, match="expected a binary classifier"):
            threshold_optimizer(p2.store, reg.ref, "sex")
        assert len(registry.list_versions(p2.store, "one")) == 1


# ---------------------------------------------------------------- CLI


def test_cli_prints_the_table_and_refuses_bad_flags(fitted, capsys):
    proj, root, parent, _ = fitted
    code = main(
        [
            "mitigate",
            parent.ref,
            "--method",
            "threshold",
            "--sensitive",
            "sex",
            "-C",
            str(root),
            "--json",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parent"] == parent.ref and _dp(doc)["after"] <= 0.03
    code = main(
        ["mitigate", parent.ref, "--method", "threshold", "--sensitive", "sex", "-C", str(root)]
    )
    out = capsys.readouterr().out
    assert code == 0 and "demographic parity difference" in out and "registered adult/" in out
    before = _counts(proj.store)
    code = main(
        ["mitigate", parent.ref, "--method", "magic", "--sensitive", "sex", "-C", str(root)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--method" in err and "magic" in err
    code = main(
        ["mitigate", parent.ref, "--method", "expgrad", "--sensitive", "gender", "-C", str(root)]
    )
    assert code == 2 and "'gender'" in capsys.readouterr().err
    assert _counts(proj.store) == before


def test_every_method_is_listed():
    assert set(METHODS) == {"reweigh", "expgrad", "threshold"}


# ---------------------------------------------------------------- keel.train sample_weight


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    adult("train").sample(600, random_state=4).to_csv(root / "a.csv", index=False)
    proj = keel_project.init(root / "p", name="w")
    ingest(proj.store, root / "a.csv", name="a")
    yield proj
    proj.close()


def test_train_sample_weight_is_given_to_the_estimator(small):
    from keel.train import prepare

    prep = prepare(small.store, "a", "income")
    X = prep.test[prep.columns]
    plain = train(small.store, "a", "income", params={"n_estimators": 10}, prepared=prep)
    ones = train(
        small.store,
        "a",
        "income",
        params={"n_estimators": 10},
        prepared=prep,
        sample_weight=np.ones(len(prep.train)),
    )
    assert np.allclose(plain.model.predict_proba(X), ones.model.predict_proba(X))
    up = np.where(prep.train["income"] == POS, 5.0, 1.0)
    heavy = train(
        small.store, "a", "income", params={"n_estimators": 10}, prepared=prep, sample_weight=up
    )
    assert heavy.model.predict_proba(X)[:, 1].mean() > plain.model.predict_proba(X)[:, 1].mean()
    assert get_run(small.store, heavy.run_id)["params"]["sample_weight"] == "given"


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (lambda n: np.ones(n - 1), "expected .* weights"),
        (lambda n: np.r_[-1.0, np.ones(n - 1)], "row 0: expected a finite weight"),
        (lambda n: np.r_[np.nan, np.ones(n - 1)], "row 0"),
        (lambda n: np.zeros(n), "every weight is 0"),
        (lambda n: ["x"] * n, "expected numbers"),
    ],
)
def test_train_refuses_bad_sample_weight_before_a_run(small, weights, match):
    from keel.train import prepare

    prep = prepare(small.store, "a", "income")
    runs = len(list_runs(small.store, limit=1000))
    with pytest.raises(InvalidInput, match=match):
        train(small.store, "a", "income", prepared=prep, sample_weight=weights(len(prep.train)))
    assert len(list_runs(small.store, limit=1000)) == runs
