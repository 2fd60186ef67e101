"""Fairness-mitigated versions export to one ONNX graph: ThresholdOptimizer as the base
model plus per-group thresholds, ExponentiatedGradient as its weighted members; the graph's
decision probabilities are fairlearn's, its draws come from the request id (the server's
and the runner's alike), and its decision rates on the hold-out are fairlearn's within
sampling error. A version whose sensitive column is not an input is refused, storing
nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel import project as keel_project
from keel import registry
from keel.audit.mitigate import exponentiated_gradient, threshold_optimizer
from keel.data import ingest
from keel.datasets import adult
from keel.errors import InvalidInput
from keel.export import export, load_export, onnx_inputs, parity, prepared_of, to_onnx
from keel.export import runner as runner_module
from keel.export._mitigated_export import DECISION_PROBABILITY, DRAW
from keel.models import ThresholdedModel, save_model
from keel.models._graph import check_graph
from keel.models._mitigated import request_uniforms
from keel.train import train

POS = ">50K"


@pytest.fixture(scope="module")
def mitigated(tmp_path_factory):
    """A small LightGBM on 3,000 Adult rows (4,000 hold-out rows), its ThresholdOptimizer
    and ExponentiatedGradient versions, each exported."""
    root = tmp_path_factory.mktemp("mitigated") / "proj"
    root.mkdir()
    adult("train").sample(3000, random_state=1).to_csv(root / "train.csv", index=False)
    adult("test").sample(4000, random_state=1).to_csv(root / "test.csv", index=False)
    proj = keel_project.init(root, name="mitigated")
    ingest(proj.store, root / "train.csv", name="train")
    ingest(proj.store, root / "test.csv", name="test")
    res = train(proj.store, "train", "income", holdout="test", params={"n_estimators": 30})
    parent = res.register(proj.store, "adult")
    done = {
        "threshold": threshold_optimizer(proj.store, parent.ref, "sex").version,
        "expgrad": exponentiated_gradient(proj.store, parent.ref, "sex", max_iter=15).version,
    }
    exported = {k: export(proj.store, mv.ref) for k, mv in done.items()}
    yield proj, parent, done, exported
    proj.close()


def _run(store, ref, X, ids):
    """The stored graph's outputs on ``X``, each row its own request with id ``ids[i]``."""
    model = registry.load(store, ref)
    session = check_graph(load_export(store, ref)[0])
    feed = onnx_inputs(X, model.input_schema)
    feed[DRAW] = np.asarray([request_uniforms(model.seed, i, 1)[0] for i in ids]).reshape(-1, 1)
    names = [o.name for o in session.get_outputs()]
    return model, dict(zip(names, session.run(None, feed), strict=True))


def _holdout(store, mv):
    prep = prepared_of(store, mv.ref)
    return prep.test[[c["name"] for c in mv.input_schema]], prep


@pytest.mark.parametrize("method", ["threshold", "expgrad"])
def test_mitigated_versions_export_with_parity(mitigated, method):
    proj, _, done, exported = mitigated
    result = exported[method]
    report = result.parity
    assert report.ok and report.rows == 4000
    assert report.label_agreement == 1.0 and report.max_abs_diff < 1e-6
    mv = registry.get_version(proj.store, done[method].ref)
    assert mv.tags["export.onnx"] == result.onnx_sha
    graph, stored = load_export(proj.store, mv.ref)
    session = check_graph(graph)
    inputs = [i.name for i in session.get_inputs()]
    assert inputs == [*(c["name"] for c in mv.input_schema), DRAW]
    outputs = [o.name for o in session.get_outputs()]
    assert outputs == ["label", "probabilities", DECISION_PROBABILITY]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["keel.draw"])["seed"] == registry.load(proj.store, mv.ref).seed
    assert stored["ok"] is True


def test_threshold_graph_declares_and_reads_the_sensitive_column(mitigated):
    proj, _, done, _ = mitigated
    mv = registry.get_version(proj.store, done["threshold"].ref)
    assert [c["name"] for c in mv.input_schema if c.get("sensitive")] == ["sex"]
    X, _ = _holdout(proj.store, mv)
    model, got = _run(proj.store, mv.ref, X.iloc[:500], range(500))
    flipped = X.iloc[:500].assign(sex=np.where(X["sex"].iloc[:500] == "Male", "Female", "Male"))
    _, other = _run(proj.store, mv.ref, flipped, range(500))
    assert not np.allclose(got[DECISION_PROBABILITY], other[DECISION_PROBABILITY])
    np.testing.assert_allclose(
        got[DECISION_PROBABILITY], model.decision_probability(X.iloc[:500]), atol=1e-6
    )


def _fairlearn(store, parent, X, prep):
    """fairlearn's own ThresholdOptimizer refit on the parent's training scores."""
    from fairlearn.postprocessing import ThresholdOptimizer

    from keel.audit.mitigate import _score_estimator

    base = registry.load(store, parent.ref)
    s_train = base.predict_proba(prep.train[base_cols(base)])[:, 1]
    to = ThresholdOptimizer(estimator=_score_estimator(), prefit=True, predict_method="predict")
    to.fit(
        s_train[:, None],
        (prep.train["income"] == POS).to_numpy().astype(int),
        sensitive_features=prep.train["sex"].to_numpy(),
    )
    return to, base.predict_proba(X[base_cols(base)])[:, 1][:, None]


def base_cols(model):
    return [c["name"] for c in model.input_schema]


def test_served_decision_rates_are_fairlearns_within_sampling_error(mitigated):
    """On the 4,000 hold-out rows, each its own request: the graph's decision probability is
    fairlearn's ``_pmf_predict``, and its drawn decisions select each group at fairlearn's
    rate (the mean of ThresholdOptimizer.predict over 200 random states) within four
    standard errors of a draw; so DP difference and accuracy agree too."""
    proj, parent, done, _ = mitigated
    mv = registry.get_version(proj.store, done["threshold"].ref)
    X, prep = _holdout(proj.store, mv)
    y = prep.test["income"].to_numpy() == POS
    to, scores = _fairlearn(proj.store, parent, X, prep)
    sex = X["sex"].to_numpy()
    pmf = to._pmf_predict(scores, sensitive_features=sex)[:, 1]
    _, got = _run(proj.store, mv.ref, X, [f"holdout-{i}" for i in range(len(X))])
    np.testing.assert_allclose(got[DECISION_PROBABILITY], pmf, atol=1e-6)
    served = np.asarray(got["label"]) == POS
    runs = np.asarray(
        [to.predict(scores, sensitive_features=sex, random_state=r) == 1 for r in range(200)]
    )
    rates, fair_rates = {}, {}
    for g in ("Female", "Male"):
        rows = sex == g
        rates[g], fair_rates[g] = served[rows].mean(), runs[:, rows].mean()
        se = np.sqrt(np.sum(pmf[rows] * (1 - pmf[rows]))) / rows.sum()
        assert abs(rates[g] - fair_rates[g]) <= 4 * se + 1e-3, (g, rates[g], fair_rates[g], se)
    dp = abs(rates["Female"] - rates["Male"])
    fair_dp = np.mean([abs(r[sex == "Female"].mean() - r[sex == "Male"].mean()) for r in runs])
    assert abs(dp - fair_dp) <= 0.03, (dp, fair_dp)
    accuracy, fair_accuracy = np.mean(served == y), np.mean(runs == y[None, :])
    assert abs(accuracy - fair_accuracy) <= 0.01, (accuracy, fair_accuracy)


def test_the_same_request_gets_the_same_decisions(mitigated):
    proj, _, done, _ = mitigated
    for method in ("threshold", "expgrad"):
        mv = registry.get_version(proj.store, done[method].ref)
        X, _ = _holdout(proj.store, mv)
        _, a = _run(proj.store, mv.ref, X.iloc[:300], [f"r{i}" for i in range(300)])
        shuffled = np.random.default_rng(0).permutation(300)
        _, b = _run(
            proj.store, mv.ref, X.iloc[shuffled], [f"r{i}" for i in shuffled]
        )  # other order, same ids
        assert np.array_equal(np.asarray(a["label"])[shuffled], b["label"])
        _, c = _run(proj.store, mv.ref, X.iloc[:300], [f"other{i}" for i in range(300)])
        band = (a[DECISION_PROBABILITY] > 0) & (a[DECISION_PROBABILITY] < 1)
        fixed = ~band
        assert np.array_equal(np.asarray(a["label"])[fixed], np.asarray(c["label"])[fixed])


def test_request_uniforms_are_uniform_keyed_and_float32_exact():
    u = request_uniforms(7, "abc", 20_000)
    assert u.dtype == np.float32 and 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and np.all(u * 2**24 == np.round(u * 2**24))
    assert np.array_equal(request_uniforms(7, "abc", 5), u[:5])
    assert not np.array_equal(request_uniforms(8, "abc", 5), u[:5])
    assert not np.array_equal(request_uniforms(7, "abd", 5), u[:5])
    for i in (0, 3):
        assert runner_module.request_uniform(7, "abc", i) == u[i]


def test_ensemble_graph_is_the_weighted_members(mitigated):
    proj, _, done, _ = mitigated
    mv = registry.get_version(proj.store, done["expgrad"].ref)
    X, _ = _holdout(proj.store, mv)
    model, got = _run(proj.store, mv.ref, X, range(len(X)))
    assert len(model.members) > 1
    np.testing.assert_allclose(got[DECISION_PROBABILITY], model.decision_probability(X), atol=1e-6)
    probs = np.asarray(got["probabilities"])
    assert np.array_equal(probs[:, 1] == 1, np.asarray(got["label"]) == POS)


# ---------------------------------------------------------------- hand-made rules


@pytest.fixture(scope="module")
def small_base():
    from keel.features import FeatureSpec
    from keel.train._train import Prepared, build_model

    df = adult("train").sample(1200, random_state=0).reset_index(drop=True)
    types = {"age": "int", "education-num": "int", "hours-per-week": "int", "occupation": "string"}
    schema = [{"name": c, "type": t} for c, t in types.items()]
    prep = Prepared(df, df, "income", "classification", FeatureSpec.infer(types), schema)
    return build_model(prep, "lightgbm", {"n_estimators": 20}, 0), df


def _group(p0, t0, t1):
    return {"p0": p0, "operation0": [">", t0], "p1": 1 - p0, "operation1": [">", t1]}


def test_intersectional_numeric_and_missing_groups_match_the_model(small_base):
    base, df = small_base
    schema = [
        *base.input_schema,
        {"name": "sex", "type": "string"},
        {"name": "over_40", "type": "bool"},
    ]
    rule = {
        "sensitive": ["sex", "over_40"],
        "positive_class": POS,
        "groups": {
            "Female & True": _group(0.3, 0.2, 0.4),
            "Female & False": _group(1.0, 0.25, 0.25),
            "Male & True": _group(0.6, 0.5, "-inf"),
            "(missing) & False": {
                **_group(0.5, 0.3, 0.6),
                "p_ignore": 0.2,
                "prediction_constant": 1.0,
            },
        },
    }
    model = ThresholdedModel(base, rule, schema, seed=3)
    X = df[[c["name"] for c in base.input_schema] + ["sex"]].assign(over_40=df["age"] > 40)
    X.loc[:50, "sex"] = None
    report = parity(model, to_onnx(model), X.iloc[:600])
    assert report.ok and report.label_agreement == 1.0, report.failures()
    pmf = model.decision_probability(X.iloc[:600])
    assert len(np.unique(np.round(pmf, 6))) > 4  # every kind of group was hit


def test_a_sensitive_column_missing_from_the_schema_is_refused_storing_nothing(
    mitigated, small_base
):
    proj, _, _, _ = mitigated
    base, _ = small_base
    rule = {"sensitive": ["sex"], "positive_class": POS, "groups": {"Male": _group(1, 0.5, 0.5)}}
    model = ThresholdedModel(base, rule, list(base.input_schema))  # no 'sex' input
    sha = save_model(model, proj.store.blobs)
    mv = registry.register(
        proj.store,
        "handmade",
        artifact_sha=sha,
        flavor=model.flavor,
        task="classification",
        input_schema=model.input_schema,
        output_schema={"task": "classification", "classes": list(model.classes_)},
    )
    blobs = sorted(p for p in proj.store.blobs.root.rglob("*") if p.is_file())
    with pytest.raises(InvalidInput, match=r"'sex'.*input schema lacks 'sex'.*nothing was"):
        export(proj.store, mv.ref, rows=(pd.DataFrame(), np.asarray([])))
    assert "export.onnx" not in registry.get_version(proj.store, mv.ref).tags
    assert sorted(p for p in proj.store.blobs.root.rglob("*") if p.is_file()) == blobs


def test_the_runner_draws_from_the_request_id_as_the_server_does(mitigated, tmp_path, capsys):
    from keel.export import write_bundle

    proj, _, done, _ = mitigated
    mv = registry.get_version(proj.store, done["threshold"].ref)
    X, _ = _holdout(proj.store, mv)
    rows = X.iloc[:200]
    ids = [f"runner-{i}" for i in range(200)]
    _, got = _run(proj.store, mv.ref, rows, ids)
    bundle = write_bundle(
        load_export(proj.store, mv.ref)[0],
        out=tmp_path / "bundle",
        model_name=mv.name,
        model_version=mv.version,
        input_schema=mv.input_schema,
        output_schema=mv.output_schema,
    )
    lines = json.loads(rows.to_json(orient="records"))
    for rid, line in zip(ids, lines, strict=True):
        line["request_id"] = rid
    lines[5].pop("request_id")
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    code = runner_module.main([str(bundle), "--input", str(tmp_path / "in.jsonl")])
    assert code == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "request_id" in answers[5]["error"] and "same id" in answers[5]["error"]
    keep = [i for i in range(200) if i != 5]
    assert [answers[i]["label"] for i in keep] == [got["label"][i] for i in keep]
    np.testing.assert_allclose(
        [answers[i][DECISION_PROBABILITY] for i in keep],
        got[DECISION_PROBABILITY][keep],
        atol=1e-6,
    )


def test_smaller_variants_of_a_mitigated_version_are_refused(mitigated):
    from keel.export import export_variants

    proj, _, done, _ = mitigated
    ref = done["threshold"].ref
    tags = dict(registry.get_version(proj.store, ref).tags)
    with pytest.raises(InvalidInput, match="fairness-mitigated.*parent"):
        export_variants(proj.store, ref, quantize="int8")
    assert registry.get_version(proj.store, ref).tags == tags
