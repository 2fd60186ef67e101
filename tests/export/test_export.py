"""Export from the store: parity on the model's own hold-out rows, variants as new versions
with lineage, the trade-off report, and the CLI's export and bundle commands."""

import json

import numpy as np
import pytest

from keel import registry
from keel.data import ingest
from keel.datasets import adult
from keel.errors import InvalidInput
from keel.export import (
    Tolerance,
    export,
    export_variants,
    holdout_of,
    load_export,
    parse_spec,
    verify_bundle,
)
from keel.store import lineage
from keel.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from keel.store import Store

    root = tmp_path_factory.mktemp("exp")
    store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
    df = adult("train").sample(4000, random_state=0)
    df.to_csv(root / "adult.csv", index=False)
    ingest(store, root / "adult.csv", name="adult")
    lgb = train(store, "adult", "income", params={"n_estimators": 80}, seed=2).register(
        store, "lgb"
    )
    mlp = train(store, "adult", "income", model="mlp", seed=2).register(store, "mlp")
    yield store, lgb.ref, mlp.ref, root
    store.close()


def test_holdout_is_the_runs_own_split(trained):
    store, ref, _, _ = trained
    X, y = holdout_of(store, ref)
    assert len(X) == 800 and len(y) == 800  # 20% of 4,000, as at training
    model = registry.load(store, ref)
    from keel.train import evaluate

    assert evaluate(model, X, y) == pytest.approx(registry.get_version(store, ref).metrics)


def test_export_stores_graph_and_parity_with_lineage(trained):
    store, ref, _, _ = trained
    res = export(store, ref)
    assert res.parity.ok and res.parity.rows == 800
    graph, report = load_export(store, ref)
    assert len(graph) == res.size_bytes and report["label_agreement"] == 1.0
    tree = lineage(store, "blob", res.onnx_sha)
    assert [(n.kind, n.id, n.role) for n in tree.parents] == [("model", ref, "exported_from")]


def test_export_refused_outside_tolerance_stores_nothing(trained):
    store, _, mlp_ref, _ = trained
    before = registry.get_version(store, mlp_ref).tags
    with pytest.raises(InvalidInput, match="max_abs_diff"):
        export(store, mlp_ref, tolerance=Tolerance(max_abs_diff=0.0))
    assert registry.get_version(store, mlp_ref).tags == before


def test_variants_are_new_versions_derived_from_the_parent(trained):
    store, ref, _, _ = trained
    base, report, refs = export_variants(
        store, ref, prune={"max_drop": 0.01}, distill={"trees": 20, "leaves": 4}, repeats=20
    )
    assert [registry.get_version(store, r).tags["variant"] for r in refs] == ["pruned", "distilled"]
    for r in refs:
        parents = lineage(store, "model", r).parents
        assert ("model", ref) in {(p.kind, p.id) for p in parents}
    rows = {r["variant"]: r for r in report.to_dict()["rows"]}
    assert set(rows) == {"fp32", "pruned", "distilled"}
    assert rows["pruned"]["bytes"] < rows["fp32"]["bytes"]
    assert rows["distilled"]["bytes"] < rows["fp32"]["bytes"]
    assert rows["pruned"]["value"] >= rows["fp32"]["value"] - 0.01
    assert any(r["pareto"] for r in rows.values())
    stored = json.loads(
        store.blobs.get_bytes(registry.get_version(store, ref).tags["export.tradeoff"])
    )
    assert stored == report.to_dict()


def test_int8_for_mlp_and_refusals_name_the_alternative(trained):
    store, lgb_ref, mlp_ref, _ = trained
    _, report, refs = export_variants(store, mlp_ref, quantize="int8", repeats=20)
    rows = {r["variant"]: r for r in report.to_dict()["rows"]}
    assert rows["int8"]["bytes"] < rows["fp32"]["bytes"]
    q = registry.load(store, refs[0])
    X, y = holdout_of(store, mlp_ref)
    agree = np.mean(q.predict(X) == registry.load(store, mlp_ref).predict(X))
    assert agree > 0.97
    with pytest.raises(InvalidInput, match="no float weight matrices.*--prune or --distill"):
        export_variants(store, lgb_ref, quantize="int8")
    with pytest.raises(InvalidInput, match="no trees to drop"):
        export_variants(store, mlp_ref, prune={})
    with pytest.raises(InvalidInput, match="expected int8"):
        export_variants(store, mlp_ref, quantize="int4")


@pytest.mark.parametrize(
    ("text", "needle"),
    [("trees", "expected KEY=NUMBER"), ("trees=x", "'trees' expects a number")],
)
def test_bad_specs_are_named(text, needle):
    with pytest.raises(InvalidInput, match=needle):
        parse_spec(text, "--distill")
    assert parse_spec("max-drop=0.01, trees=5", "--prune") == {"max_drop": 0.01, "trees": 5}


def test_cli_export_and_signed_bundle(trained, capsys):
    from keel.cli import main
    from keel.export import generate_keypair

    store, ref, _, root = trained
    (root / "keel.yaml").write_text("name: exp\n")
    store_url = store.url

    def keel(*args):
        import os

        os.environ["KEEL_STORE"] = store_url
        os.environ["KEEL_BLOBS"] = str(store.blobs.root)
        try:
            code = main([*map(str, args), "-C", str(root)])
        finally:
            del os.environ["KEEL_STORE"], os.environ["KEEL_BLOBS"]
        return code, *capsys.readouterr()

    code, out, err = keel("export", ref, "--prune", "trees=10", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["parity"]["ok"] and [r["variant"] for r in data["trade_off"]["rows"]] == [
        "fp32",
        "pruned",
    ]
    private, public = generate_keypair()
    (root / "k.pem").write_bytes(private)
    (root / "k.pub").write_bytes(public)
    code, out, err = keel("bundle", ref, "--out", root / "b", "--key", root / "k.pem")
    assert code == 0, err
    manifest = verify_bundle(root / "b", public_key=public)
    assert manifest["model"]["name"] == "lgb" and manifest["parity"]["ok"]
    code, _, err = keel("export", ref, "--distill", "depth=3")
    assert code == 2 and "unknown key(s) depth" in err


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_linear_models_rewritten_for_int8_keep_their_answers(task):
    import onnx
    import onnxruntime as ort

    from keel.export import onnx_inputs, quantize_int8, to_onnx
    from keel.export._variants import _linear_as_matmul
    from keel.train._train import Prepared, _load_spec, build_model

    df = adult("train").sample(1500, random_state=3).reset_index(drop=True)
    types = {c: ("int" if df[c].dtype.kind == "i" else "string") for c in df.columns}
    target = "income" if task == "classification" else "age"
    spec = _load_spec(None, types, target, scale=True)
    schema = [{"name": c, "type": types[c]} for c in df.columns if c not in (target, "income")]
    if task == "regression":
        spec = _load_spec(None, {c["name"]: c["type"] for c in schema}, target, scale=True)
    prep = Prepared(df.iloc[:1000], df.iloc[1000:], target, task, spec, schema)
    model = build_model(prep, "logistic_regression", None, 0)
    graph = to_onnx(model)
    rewritten = onnx.load_from_string(graph.SerializeToString())
    _linear_as_matmul(rewritten)
    assert not [n for n in rewritten.graph.node if n.op_type.startswith("Linear")]
    X = df.iloc[1000:][[c["name"] for c in schema]]
    feed = onnx_inputs(X, schema)
    a = ort.InferenceSession(graph.SerializeToString()).run(None, feed)
    b = ort.InferenceSession(rewritten.SerializeToString()).run(None, feed)
    for x, y in zip(a, b, strict=True):
        if x.dtype.kind in "fc":
            assert np.allclose(x, y, atol=1e-5)
        else:
            assert (x == y).all()
    q, detail = quantize_int8(graph.SerializeToString(), model)
    assert detail["weight_type"] == "int8"
    if task == "classification":
        assert np.mean(q.predict(X) == model.predict(X)) > 0.97
