"""Evasion attacks, noise and adversarial augmentation (keel.audit.robustness)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from keel import project as keel_project
from keel import registry
from keel.audit._attacks import correct_sample, gradient_attacks, hopskipjump, noise_accuracy
from keel.audit._evidence import AuditContext
from keel.audit._space import EncodedSpace
from keel.audit.gates import evidence_values
from keel.audit.robustness import adversarial_training, robustness_report, robustness_section
from keel.data import ingest
from keel.datasets import adult
from keel.errors import InvalidInput
from keel.features import FeatureSpec, compile_spec
from keel.models import LightGBMModel, SklearnModel
from keel.store import lineage
from keel.train import train


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


def _sample(model, data, n=20, seed=0):
    X_tr, _, X_te, y_te = data[0], data[1], data[2], data[3]
    space = EncodedSpace(model, X_tr)
    U, labels = correct_sample(space, X_te, y_te, n, seed)
    return space, U, labels


@pytest.mark.parametrize("name", ["gbm", "logistic"])
def test_the_attack_space_predicts_what_the_model_predicts(name, data, request):
    model = request.getfixturevalue(name)
    space = EncodedSpace(model, data[0])
    X = data[2][:200]
    assert np.allclose(space.proba(space.encode(X)), model.predict_proba(X), atol=1e-4)
    assert space.queries == 200


def test_projection_gives_valid_encodings(gbm, data):
    space, U, _ = _sample(gbm, data)
    noisy = np.clip(U + np.random.default_rng(0).uniform(-0.3, 0.3, U.shape), 0, 1)
    Z = space.decode(space.project(noisy.astype(np.float32)))
    for idx in space._groups:
        assert np.array_equal(Z[:, idx].sum(axis=1), np.ones(len(Z)))
    assert np.allclose(Z[:, space._integers], np.round(Z[:, space._integers]), atol=1e-3)


def test_never_attacked_or_zero_budget_succeeds_nowhere(gbm, data):
    space, U, labels = _sample(gbm, data)
    rep, adv = hopskipjump(space, U, labels, max_iter=0, eps_grid=(0.0, 0.5))
    assert np.array_equal(adv, U) and rep["success_rate_unbounded"] == 0.0
    assert [r["success_rate"] for r in rep["by_eps"]] == [0.0, 0.0]
    rep, _ = hopskipjump(space, U, labels, max_iter=3, max_eval=50, eps_grid=(0.0,), eps=0.0)
    assert rep["success_rate_unbounded"] > 0.5  # the attack does flip rows …
    assert rep["success_rate"] == 0.0 and rep["accuracy_under_attack"] == 1.0  # … not for free
    assert rep["budget"]["queries"] > 0


def test_a_constant_model_cannot_be_flipped(data):
    model = _model(data, DummyClassifier(strategy="most_frequent"))
    rep = robustness_report(model, data[2], data[3], data[0], n_rows=10, noise_rows=200)
    assert rep["hopskipjump"]["success_rate_unbounded"] == 0.0
    assert rep["fgsm"]["supported"] is False and "DummyClassifier" in rep["fgsm"]["reason"]
    noise = rep["noise"]
    assert noise["worst_drop"] == 0.0
    assert all(g["accuracy"] == noise["clean_accuracy"] for g in noise["gaussian"])


def test_gradient_attacks_on_logistic_regression(logistic, data):
    space, U, labels = _sample(logistic, data, n=40)
    rep = gradient_attacks(space, U, labels, eps_grid=(0.0, 0.02, 0.1, 0.3), eps=0.1)
    for name in ("fgsm", "pgd"):
        rates = [r["success_rate"] for r in rep[name]["by_eps"]]
        assert rates[0] == 0.0 and rates == sorted(rates) and rates[-1] > 0.5
    # on a binary linear model the one-step attack is already optimal
    assert rep["pgd"]["success_rate"] >= rep["fgsm"]["success_rate"] - 0.05


def test_report_is_deterministic_for_a_seed(gbm, data):
    def run(seed):
        rep = robustness_report(
            gbm, data[2], data[3], data[0], n_rows=15, noise_rows=300, seed=seed, max_iter=3
        )
        hsj = {k: v for k, v in rep["hopskipjump"].items() if k != "time_s"}
        noise = {k: v for k, v in rep["noise"].items() if k != "time_s"}
        return hsj, noise

    assert run(4) == run(4)


def test_noise_keeps_columns_in_range(gbm, data):
    rep = noise_accuracy(gbm, data[2], data[3], data[0], scales=(10.0,), flip_rates=(1.0,))
    assert rep["numeric_columns"] and rep["categorical_columns"]
    assert 0.0 <= rep["gaussian"][0]["accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"n_rows": 0}, r"n_rows: expected an integer ≥ 1, got 0"),
        ({"seed": -1}, r"seed: expected an integer ≥ 0"),
        ({"noise_rows": 1.5}, r"noise_rows: expected an integer"),
        ({"max_iter": -2}, r"max_iter: expected an integer ≥ 0"),
        ({"hsj_eps": -0.1}, r"eps: expected a number ≥ 0"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, expected, gbm, data):
    with pytest.raises(InvalidInput, match=expected):
        robustness_report(gbm, data[2], data[3], data[0], **kwargs)


def test_bad_rows_and_models_are_refused(gbm, data):
    with pytest.raises(InvalidInput, match=r"y_test: expected \d+ labels"):
        robustness_report(gbm, data[2], data[3][:-1], data[0])
    reg = SimpleNamespace(task="regression", flavor="sklearn")
    with pytest.raises(InvalidInput, match="model: expected a classifier"):
        EncodedSpace(reg, data[0])
    onnx = SimpleNamespace(task="classification", flavor="onnx", classes_=[0, 1])
    with pytest.raises(InvalidInput, match="flavor 'onnx'"):
        EncodedSpace(onnx, data[0])


def test_section_exposes_gate_paths(gbm, data):
    mv = SimpleNamespace(ref="m/1", task="classification", output_schema={"classes": gbm.classes_})
    ctx = AuditContext(gbm, mv, data[2], data[3], data[0], data[1], [], seed=0, sample=50)
    values = evidence_values({"robustness": robustness_section(ctx)})
    assert 0.0 <= values["robustness.hopskipjump.success_rate"] <= 1.0
    assert "robustness.noise.worst_accuracy" in values
    ctx.mv = SimpleNamespace(ref="m/2", task="regression", output_schema={})
    with pytest.raises(InvalidInput, match="robustness: expected a classifier"):
        robustness_section(ctx)


def test_adversarial_training_registers_a_derived_version(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    adult("train").sample(1500, random_state=3).to_csv(root / "a.csv", index=False)
    proj = keel_project.init(root, name="rob")
    try:
        ingest(proj.store, root / "a.csv", name="adult")
        res = train(proj.store, "adult", "income", params={"n_estimators": 20}, seed=0)
        parent = res.register(proj.store, "adult")
        child, table = adversarial_training(
            proj.store, parent.ref, n_rows=60, eval_rows=20, max_iter=3, max_eval=50
        )
        assert child.ref == "adult/2" and table["parent"] == "adult/1"
        assert table["settings"]["added_rows"] > 0
        for side in ("before", "after"):
            assert 0.5 < table[side]["clean_accuracy"] <= 1.0
            assert 0.0 <= table[side]["hopskipjump_success_rate"] <= 1.0
        parents = [n.id for n in lineage(proj.store, "model", child.ref).parents]
        assert parent.ref in parents
        assert registry.get_version(proj.store, child.ref).tags.get("variant")
        model = registry.load(proj.store, child.ref)
        assert len(model.predict(adult("test").head(5).drop(columns="income"))) == 5
        with pytest.raises(InvalidInput, match="augment_eps"):
            adversarial_training(proj.store, parent.ref, augment_eps=0)
        with pytest.raises(InvalidInput, match="no training run"):
            adversarial_training(proj.store, child.ref, n_rows=5, eval_rows=5, max_iter=1)
    finally:
        proj.close()
