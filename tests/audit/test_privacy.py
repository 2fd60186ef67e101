"""Membership inference and differentially private training (keel.audit.privacy)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from keel import project as keel_project
from keel import registry
from keel.audit._evidence import AuditContext
from keel.audit.gates import evidence_values
from keel.audit.privacy import (
    DPGaussianNB,
    DPLogisticRegression,
    accuracy_vs_epsilon,
    attack_scores,
    membership_inference,
    privacy_section,
)
from keel.data import ingest
from keel.datasets import adult
from keel.errors import InvalidInput
from keel.features import FeatureSpec, compile_spec
from keel.models import SklearnModel
from keel.train import get_run, train


@pytest.fixture(scope="module")
def data():
    df = adult("train").sample(2400, random_state=5).reset_index(drop=True)
    y = df.pop("income").to_numpy()
    types = {c: "int" if df[c].dtype.kind in "if" else "string" for c in df.columns}
    schema = [{"name": c, "type": t} for c, t in types.items()]
    return df[:1200], y[:1200], df[1200:].reset_index(drop=True), y[1200:], types, schema


def _model(data, estimator):
    X_tr, y_tr, _, _, types, schema = data
    spec = FeatureSpec.infer(types).to_dict()
    numeric = [c for c, t in types.items() if t == "int"]
    spec["steps"].append({"op": "scale", "columns": numeric, "method": "standard"})
    pipe = Pipeline([("features", compile_spec(spec, list(X_tr.columns))), ("model", estimator)])
    return SklearnModel(pipe.fit(X_tr, y_tr), "classification", schema)


def _mia(model, data, **kw):
    return membership_inference(model, data[0], data[1], data[2], data[3], **kw)


def test_attack_scores_on_hand_examples():
    member = np.array([1, 1, 0, 0], bool)
    assert attack_scores(member, np.array([0.9, 0.8, 0.2, 0.1])) == {"auc": 1.0, "advantage": 1.0}
    assert attack_scores(member, np.full(4, 0.5)) == {"auc": 0.5, "advantage": 0.0}
    assert attack_scores(member, np.array([0.9, 0.3, 0.5, 0.2]))["auc"] == 0.75
    with pytest.raises(InvalidInput, match="both members and non-members"):
        attack_scores(np.ones(3, bool), np.ones(3))


def test_an_overfit_model_gives_its_members_away(data):
    forest = RandomForestClassifier(
        n_estimators=50, bootstrap=False, max_features=0.5, random_state=0
    )
    rep = _mia(_model(data, forest), data, n_rows=600)
    t = rep["threshold"]
    assert t["auc"] > 0.7 and t["advantage"] > 0.3
    assert t["mean_loss_members"] < t["mean_loss_non_members"]
    assert rep["art_black_box"]["auc"] > 0.6
    assert rep["auc"] == max(t["auc"], rep["art_black_box"]["auc"])


def test_a_model_that_never_saw_the_labels_leaks_nothing(data):
    rep = _mia(_model(data, DummyClassifier(strategy="prior")), data, n_rows=600)
    assert abs(rep["threshold"]["auc"] - 0.5) < 0.05
    assert abs(rep["art_black_box"]["auc"] - 0.5) < 0.08
    assert rep["threshold"]["advantage"] < 0.08


def test_membership_inference_is_deterministic_for_a_seed(data):
    model = _model(data, LogisticRegression(max_iter=500))

    def run(seed):
        rep = _mia(model, data, n_rows=300, seed=seed)
        for part in ("threshold", "art_black_box"):
            rep[part].pop("time_s")
        return rep

    a = run(2)
    assert a == run(2)
    assert a["about"]["n_members"] == a["about"]["n_non_members"] == 300


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"n_rows": 2}, r"n_rows: expected an integer ≥ 4, got 2"),
        ({"seed": -1}, r"seed: expected an integer ≥ 0"),
        ({"y_train": "short"}, r"y_train: expected 1200 labels"),
        ({"X_test": "array"}, r"X_test: expected a pandas DataFrame, got ndarray"),
    ],
)
def test_bad_inputs_name_the_argument(change, expected, data):
    model = _model(data, LogisticRegression(max_iter=500))
    args = {"X_train": data[0], "y_train": data[1], "X_test": data[2], "y_test": data[3]}
    kw = {}
    for key, value in change.items():
        if value == "short":
            args[key] = args[key][:-1]
        elif value == "array":
            args[key] = args[key].to_numpy()
        else:
            kw[key] = value
    with pytest.raises(InvalidInput, match=expected):
        membership_inference(model, **args, **kw)


def test_dp_estimators_trade_accuracy_for_epsilon(data):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    for cls in (DPLogisticRegression, DPGaussianNB):
        loose = np.mean([cls(epsilon=50.0, random_state=s).fit(X, y).score(X, y) for s in range(3)])
        tight = np.mean([cls(epsilon=0.01, random_state=s).fit(X, y).score(X, y) for s in range(3)])
        assert loose > 0.85 and tight < loose - 0.05, cls.__name__
        a = cls(epsilon=1.0, random_state=7).fit(X, y).predict_proba(X[:20])
        b = cls(epsilon=1.0, random_state=7).fit(X, y).predict_proba(X[:20])
        assert np.array_equal(a, b) and np.allclose(a.sum(axis=1), 1.0)
        with pytest.raises(ValueError, match="epsilon: expected a number > 0"):
            cls(epsilon=0).fit(X, y)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy") / "proj"
    root.mkdir()
    adult("train").sample(2000, random_state=4).to_csv(root / "a.csv", index=False)
    proj = keel_project.init(root, name="privacy")
    ingest(proj.store, root / "a.csv", name="adult")
    yield proj
    proj.close()


@pytest.mark.parametrize("kind", ["dp_logistic_regression", "dp_gaussian_nb"])
def test_dp_models_train_save_load_and_carry_epsilon(kind, project):
    res = train(project.store, "adult", "income", model=kind, params={"epsilon": 2}, seed=0)
    mv = res.register(project.store, kind)
    assert get_run(project.store, res.run_id)["params"]["model.epsilon"] == 2
    model = registry.load(project.store, mv.ref)  # skops, through keel's trusted types
    frame = adult("test").head(50)
    assert np.array_equal(model.predict(frame), res.model.predict(frame))
    train_rows = adult("train").head(50)
    X_tr, y_tr = train_rows.drop(columns="income"), train_rows["income"].to_numpy()
    X, y = frame.drop(columns="income"), frame["income"].to_numpy()
    ctx = AuditContext(model, mv, X, y, X_tr, y_tr, [], seed=0, sample=50)
    section = privacy_section(ctx)
    values = evidence_values({"privacy": section})
    assert values["privacy.dp.epsilon"] == 2.0 and values["privacy.dp.differentially_private"] == 1
    assert 0.0 <= values["privacy.mia.auc"] <= 1.0 and "privacy.mia.advantage" in values


def test_a_plain_model_says_it_is_not_private(project):
    res = train(project.store, "adult", "income", params={"n_estimators": 10}, seed=0)
    mv = res.register(project.store, "plain")
    X, y = adult("test").head(40), adult("test").head(40)["income"].to_numpy()
    ctx = AuditContext(res.model, mv, X, y, X, y, [], seed=0, sample=40)
    assert privacy_section(ctx)["dp"] == {"differentially_private": False, "epsilon": None}
    ctx.mv = SimpleNamespace(ref="r/1", task="regression")
    with pytest.raises(InvalidInput, match="privacy: membership inference needs a classifier"):
        privacy_section(ctx)


def test_accuracy_vs_epsilon_table(project):
    res = train(project.store, "adult", "income", params={"n_estimators": 10}, seed=0)
    ref = res.register(project.store, "eps").ref
    table = accuracy_vs_epsilon(
        project.store, ref, epsilons=[0.05, 100, math.inf], models=["gaussian_nb"], repeats=2
    )
    rows = {r["epsilon"]: r for r in table["rows"]}
    assert list(rows) == [0.05, 100.0, "inf"] and rows["inf"]["repeats"] == 1
    assert rows[100.0]["accuracy"] > rows[0.05]["accuracy"]
    assert 0.5 < table["majority_class_accuracy"] < 1.0
    with pytest.raises(InvalidInput, match=r"epsilons: expected numbers > 0"):
        accuracy_vs_epsilon(project.store, ref, epsilons=[0])
    with pytest.raises(InvalidInput, match=r"models: expected some of"):
        accuracy_vs_epsilon(project.store, ref, models=["svm"])
    with pytest.raises(InvalidInput, match=r"repeats: expected an integer"):
        accuracy_vs_epsilon(project.store, ref, repeats=0)
