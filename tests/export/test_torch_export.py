"""PyTorch models through export: one ONNX graph per model (the feature transform included
for torch-mlp), parity on hold-out rows, int8 and pruned variants in the trade-off table,
and signed bundles whose standalone runner answers images and windows offline."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from keel.datasets import digits  # noqa: E402
from keel.errors import InvalidInput  # noqa: E402
from keel.export import (  # noqa: E402
    Tolerance,
    Variant,
    parity,
    prune,
    quantize_int8,
    to_onnx,
    trade_off,
    verify_bundle,
    write_bundle,
)
from keel.export._sign import generate_keypair  # noqa: E402
from keel.models import TorchModel  # noqa: E402
from keel.train._torch import TorchEstimator  # noqa: E402
from keel.train._train import Prepared, _load_spec, build_model  # noqa: E402

IMG = {"name": "X", "type": "tensor", "dtype": "float32", "shape": [1, 8, 8]}
WINDOW = 24
SEQ = {"name": "window", "type": "tensor", "dtype": "float32", "shape": [WINDOW]}


def _fit(architecture: str, task: str, X: np.ndarray, y: np.ndarray, **params) -> TorchEstimator:
    est = TorchEstimator(
        architecture=architecture, task=task, device="cpu", random_state=0, **params
    )
    return est.fit(X, y)


@pytest.fixture(scope="module")
def cnn():
    """A small digits CNN (3 epochs) and its hold-out: a frame of images, the labels."""
    X, y = digits()
    est = _fit("cnn", "classification", X[:1400], y[:1400], epochs=3, channels=[8, 16])
    model = TorchModel.from_estimator(est, "classification", [IMG])
    return model, pd.DataFrame({"X": list(X[1400:])}), y[1400:]


@pytest.fixture(scope="module")
def seq():
    """A 1-D CNN forecaster of a noisy daily cycle from the past 24 hours (3 epochs)."""
    rng = np.random.default_rng(0)
    t = np.arange(1500)
    series = 10 + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, len(t))
    X = np.stack([series[i : i + WINDOW] for i in range(len(t) - WINDOW)]).astype(np.float32)
    y = series[WINDOW:]
    est = _fit("seq1d", "regression", X[:1100], y[:1100], epochs=3, layers=3, val_split="tail")
    model = TorchModel.from_estimator(est, "regression", [SEQ])
    return model, pd.DataFrame({"window": list(X[1100:])}), y[1100:]


@pytest.fixture(scope="module")
def mlp(adult_split):
    """torch-mlp on the Adult sample through keel's feature transform (3 epochs)."""
    types = adult_split.types
    prep = Prepared(
        adult_split.train,
        adult_split.test,
        "income",
        "classification",
        _load_spec(None, types, "income", scale=True),
        adult_split.schema("classification"),
    )
    model = build_model(prep, "torch-mlp", {"epochs": 3, "hidden": [32, 16]}, seed=0)
    X = adult_split.test[adult_split.inputs("classification")]
    return model, X, adult_split.test["income"].to_numpy()


def _shape(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


# --------------------------------------------------------------------------- one graph


def test_torch_mlp_is_one_graph_from_raw_columns(mlp, adult_split):
    model, X, y = mlp
    onx = to_onnx(model)
    assert [i.name for i in onx.graph.input] == adult_split.inputs("classification")
    assert [o.name for o in onx.graph.output] == ["label", "probabilities"]
    report = parity(model, onx, X, y).check()  # unseen categories and missing values included
    assert report.label_agreement == 1.0 and report.max_abs_diff < 1e-5
    assert report.metrics["roc_auc"]["model"] == pytest.approx(report.metrics["roc_auc"]["onnx"])


def test_torch_cnn_graph_reads_the_named_tensor(cnn):
    model, X, y = cnn
    onx = to_onnx(model, name="digits")
    (given,) = onx.graph.input
    assert given.name == "X" and _shape(given) == ["N", 1, 8, 8]
    assert {o.name: _shape(o) for o in onx.graph.output} == {
        "label": ["N"],
        "probabilities": ["N", 10],
    }
    report = parity(model, onx, X, y).check()
    assert report.label_agreement == 1.0 and report.max_abs_diff < 1e-5
    # the same graph answers a plain array and a mapping of arrays
    images = np.stack(X["X"].to_list())
    assert parity(model, onx, {"X": images}, y).max_abs_diff == report.max_abs_diff


def test_torch_seq_graph_forecasts_variable_n_by_1(seq):
    model, X, y = seq
    onx = to_onnx(model)
    assert [i.name for i in onx.graph.input] == ["window"]
    (out,) = onx.graph.output
    assert out.name == "variable" and _shape(out) == ["N", 1]
    report = parity(model, onx, X, y).check()
    assert report.max_rel_diff < 1e-5


def test_text_classes_are_looked_up_in_the_graph():
    torch.manual_seed(0)
    kwargs = {"in_shape": [1, 8, 8], "n_out": 3, "channels": [4, 8], "hidden": 16}
    from keel.models._torch import resolve_architecture

    net = resolve_architecture("cnn")(**kwargs)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    model = TorchModel("cnn", kwargs, state, "classification", [IMG], ["cat", "dog", "emu"])
    images = np.random.default_rng(0).random((30, 1, 8, 8), dtype=np.float32)
    report = parity(model, to_onnx(model), {"X": images}).check()
    assert report.label_agreement == 1.0


def test_parity_refuses_a_graph_that_answers_otherwise(cnn):
    model, X, y = cnn
    other, _ = prune(model, X, y, amount=0.9)
    report = parity(model, to_onnx(other), X, y)
    assert not report.ok
    with pytest.raises(InvalidInput, match=r"ONNX parity failed on 397 rows: .*max_abs_diff"):
        report.check()
    assert report.check(Tolerance(label_agreement=0, max_abs_diff=1, p99_abs_diff=1, metric_diff=1))


def test_a_wrong_shape_is_refused_naming_both_shapes(cnn):
    model, X, _ = cnn
    with pytest.raises(InvalidInput, match=r"expected shape \[N, 1, 8, 8\], got \[3, 1, 7, 8\]"):
        parity(model, to_onnx(model), {"X": np.zeros((3, 1, 7, 8), np.float32)})


def test_export_raises_no_warning(cnn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_onnx(cnn[0])


# --------------------------------------------------------------------------- variants


@pytest.mark.slow
@pytest.mark.parametrize("which", ["cnn", "seq"])
def test_int8_and_pruned_variants_in_the_trade_off_table(which, request):
    model, X, y = request.getfixturevalue(which)
    fp32 = to_onnx(model).SerializeToString()
    q, q_detail = quantize_int8(fp32, model)
    pruned, p_detail = prune(model, X, y, max_drop=0.01)
    assert p_detail["amount"] >= 0.3 and p_detail["zero_weights"] >= 0.3 * p_detail["of"]
    assert parity(pruned, to_onnx(pruned), X, y).ok  # a pruned network exports like any other
    table = trade_off(
        [
            Variant("fp32", "m/1", fp32, model),
            Variant("int8", "m/2", q.onnx_bytes, q, q_detail),
            Variant("pruned", "m/3", to_onnx(pruned).SerializeToString(), pruned, p_detail),
        ],
        X,
        y,
        repeats=5,
    ).to_dict()["rows"]
    rows = {r["variant"]: r for r in table}
    if which == "cnn":  # int8 Linear weights: most of the CNN's (the forecaster's are in convs)
        assert rows["int8"]["bytes"] < 0.4 * rows["fp32"]["bytes"]
    assert rows["pruned"]["gz_bytes"] < rows["fp32"]["gz_bytes"]
    key = rows["fp32"]["metric"]
    assert key == ("roc_auc" if which == "cnn" else "rmse")
    drop = abs(rows["int8"]["value"] - rows["fp32"]["value"])
    assert drop < (0.01 if key == "roc_auc" else 0.05 * rows["fp32"]["value"])


def test_pruning_a_torch_network_takes_an_amount_not_trees(cnn):
    model, X, y = cnn
    with pytest.raises(InvalidInput, match="no trees; give amount"):
        prune(model, X, y, trees=3)
    with pytest.raises(InvalidInput, match=r"amount is the share .* in \(0, 1\)"):
        prune(model, X, y, amount=1.5)


@pytest.mark.slow
def test_export_from_the_store_with_variants(tmp_path):
    """keel export's path: a torch-cnn trained from an ingested .npz, exported with its
    parity report, and its int8 and pruned variants registered and measured."""
    from keel.data import ingest
    from keel.datasets import write_digits_npz
    from keel.export import export_variants
    from keel.store import Store
    from keel.train import train

    store = Store.open(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "blobs")
    ingest(store, write_digits_npz(tmp_path), name="digits")
    params = {"epochs": 2, "channels": [8, 16]}
    ref = train(store, "digits", "y", model="torch-cnn", params=params).register(store, "cnn").ref
    base, report, refs = export_variants(
        store, ref, quantize="int8", prune={"amount": 0.5}, repeats=3
    )
    assert base.parity.ok and base.parity.label_agreement == 1.0
    assert [r["variant"] for r in report.rows] == ["fp32", "pruned", "int8"]
    assert len(refs) == 2
    store.close()


# --------------------------------------------------------------------------- bundles


def _run(bundle: Path, *args: str, stdin: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-I", str(bundle / "runner.py"), str(bundle), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)


def _bundle(model, root: Path, name: str, keys) -> Path:
    return write_bundle(
        to_onnx(model).SerializeToString(),
        out=root / name,
        model_name=name,
        model_version=1,
        input_schema=model.input_schema,
        output_schema=model.output_schema,
        signing_key=keys[0],
    )


@pytest.mark.slow
def test_signed_bundles_run_the_cnn_and_the_sequence_model_offline(cnn, seq, tmp_path):
    keys = generate_keypair()
    (tmp_path / "pub.pem").write_bytes(keys[1])
    key = ["--public-key", str(tmp_path / "pub.pem"), "--format", "jsonl"]

    model, X, _ = cnn
    folder = _bundle(model, tmp_path, "digits", keys)
    assert verify_bundle(folder, public_key=keys[1])["input_schema"] == [IMG]
    images = np.stack(X["X"].to_list())[:5]
    lines = [json.dumps({"X": im.tolist()}) for im in images]
    lines.insert(2, json.dumps({"X": images[0][:, :7].tolist()}))  # one row short
    result = _run(folder, *key, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert answers[2] == {"row": 3, "error": "column 'X': expected shape [1, 8, 8], got [1, 7, 8]"}
    good = [a for a in answers if "error" not in a]
    assert [a["label"] for a in good] == model.predict(images).tolist()
    got = np.array([[a["probabilities"][str(c)] for c in model.classes_] for a in good])
    np.testing.assert_allclose(got, model.predict_proba(images), atol=1e-5)
    assert "6 rows answered, 1 with errors" in result.stderr

    model, X, _ = seq
    folder = _bundle(model, tmp_path, "demand", keys)
    windows = np.stack(X["window"].to_list())[:4]
    lines = [json.dumps({"window": w.tolist()}) for w in windows]
    result = _run(folder, *key, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    got = [json.loads(line)["prediction"] for line in result.stdout.splitlines()]
    np.testing.assert_allclose(got, model.predict(windows), rtol=1e-5)

    csv = _run(folder, "--public-key", str(tmp_path / "pub.pem"), "--format", "csv", stdin="a\n")
    assert csv.returncode == 2
    assert "CSV input is not supported for tensor inputs: 'window'" in csv.stderr


@pytest.mark.slow
def test_the_runner_names_the_shape_for_bad_tensor_rows(seq, tmp_path):
    keys = generate_keypair()
    (tmp_path / "pub.pem").write_bytes(keys[1])
    folder = _bundle(seq[0], tmp_path, "demand", keys)
    rows = [
        {"window": [1.0] * (WINDOW - 1)},
        {"window": [[1.0] * WINDOW]},
        {"window": ["a"] * WINDOW},
        {"window": 3.0},
        {"other": 1},
    ]
    stdin = "\n".join(json.dumps(r) for r in rows) + "\n"
    result = _run(
        folder, "--public-key", str(tmp_path / "pub.pem"), "--format", "jsonl", stdin=stdin
    )
    errors = [json.loads(line)["error"] for line in result.stdout.splitlines()]
    assert errors == [
        f"column 'window': expected shape [{WINDOW}], got [{WINDOW - 1}]",
        f"column 'window': expected shape [{WINDOW}], got [1, {WINDOW}]",
        f"column 'window': expected nested lists of numbers of shape [{WINDOW}] (equal "
        "lengths, numbers only)",
        f"column 'window': expected nested lists of numbers of shape [{WINDOW}], got 3.0",
        "column 'window': missing",
    ]
