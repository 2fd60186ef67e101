"""The standalone runner shipped in bundles: checks, per-row answers, --only-if, and that it
needs nothing but onnxruntime and numpy."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from keel.export import runner
from keel.export._bundle import write_bundle
from keel.export._sign import generate_keypair

SCHEMA = [{"name": "age", "type": "float"}, {"name": "city", "type": "category"}]
STDLIB = set(sys.stdlib_module_names)


def _model_bytes() -> tuple[bytes, list[str]]:
    """Pipeline(ColumnTransformer(age, city) -> LogisticRegression) as ONNX: one graph input
    per raw column, probabilities as a plain tensor (no ZipMap)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    age = rng.uniform(18, 80, 200).astype(np.float32)
    city = rng.choice(["paris", "lyon", "nice"], 200)
    y = np.where(age + (city == "paris") * 20 > 55, ">50K", "<=50K")
    num = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    columns = ColumnTransformer(
        [("n", num, ["age"]), ("c", OneHotEncoder(handle_unknown="ignore"), ["city"])]
    )
    clf = LogisticRegression()
    pipe = Pipeline([("ct", columns), ("clf", clf)]).fit(
        pd.DataFrame({"age": age, "city": city}), y
    )
    types = [("age", FloatTensorType([None, 1])), ("city", StringTensorType([None, 1]))]
    proto = convert_sklearn(
        pipe, initial_types=types, options={id(clf): {"zipmap": False}}, target_opset=17
    )
    return proto.SerializeToString(), [str(c) for c in pipe.classes_]


def _regression_bytes() -> bytes:
    """prediction = age + n + bias (bias = 0, an initializer), with a double, an int64 and an
    (unused) string input."""
    inputs = [
        helper.make_tensor_value_info("age", TensorProto.DOUBLE, [None, 1]),
        helper.make_tensor_value_info("n", TensorProto.INT64, [None, 1]),
        helper.make_tensor_value_info("city", TensorProto.STRING, [None, 1]),
    ]
    nodes = [
        helper.make_node("Cast", ["age"], ["age_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["n"], ["n_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["age_f", "n_f"], ["total"]),
        helper.make_node("Add", ["total", "bias"], ["variable"]),
    ]
    bias = numpy_helper.from_array(np.zeros((1, 1), np.float32), "bias")
    output = helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph(nodes, "sum", inputs, [output], initializer=[bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


REGRESSION_SCHEMA = [
    {"name": "age", "type": "float"},
    {"name": "n", "type": "int"},
    {"name": "city", "type": "string"},
]


def _regression_bundle(out: Path) -> Path:
    return write_bundle(
        _regression_bytes(),
        out=out,
        model_name="sum",
        model_version=1,
        input_schema=REGRESSION_SCHEMA,
        output_schema={"task": "regression"},
    )


@pytest.fixture(scope="module")
def model() -> tuple[bytes, list[str]]:
    return _model_bytes()


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return generate_keypair()


@pytest.fixture(scope="module")
def bundles(model, keys, tmp_path_factory) -> dict[str, Path]:
    """A signed folder, a signed .tar.gz, an unsigned folder, and the public key file."""
    root = tmp_path_factory.mktemp("bundles")
    common = {
        "model_name": "adult",
        "model_version": 1,
        "input_schema": SCHEMA,
        "output_schema": {"task": "classification", "classes": model[1]},
        "parity": None,
    }
    (root / "pub.pem").write_bytes(keys[1])
    return {
        "dir": write_bundle(model[0], out=root / "signed", signing_key=keys[0], **common),
        "tar": write_bundle(
            model[0], out=root / "adult.tar.gz", signing_key=keys[0], archive=True, **common
        ),
        "unsigned": write_bundle(model[0], out=root / "unsigned", **common),
        "pub": root / "pub.pem",
    }


def _run(bundle: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The bundle's own runner.py in a fresh, isolated interpreter."""
    command = [sys.executable, "-I", str(bundle / "runner.py"), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _expected(model, ages, cities) -> tuple[list, np.ndarray]:
    session = ort.InferenceSession(model[0], providers=["CPUExecutionProvider"])
    feeds = {
        "age": np.array(ages, np.float32).reshape(-1, 1),
        "city": np.array(cities, object).reshape(-1, 1),
    }
    labels, probabilities = session.run(["label", "probabilities"], feeds)
    return list(labels), probabilities


CSV = "age,city,income\n30,paris,x\nabc,lyon,x\n70,atlantis,x\n,,x\n41\n25.5, nice,x\n"


def test_csv_rows_get_predictions_or_errors_naming_the_column(model, bundles, tmp_path):
    (tmp_path / "in.csv").write_text(CSV)
    flags = ("--input", str(tmp_path / "in.csv"), "--no-signature-check")
    result = _run(bundles["dir"], str(bundles["dir"]), *flags)
    assert result.returncode == 0, result.stderr
    answers = _lines(result.stdout)
    assert [a["row"] for a in answers] == [1, 2, 3, 4, 5, 6]
    assert answers[1] == {"row": 2, "error": "column 'age': expected a number, got 'abc'"}
    assert answers[4] == {"row": 5, "error": "column 'city': missing"}
    labels, probabilities = _expected(
        model, [30, 70, np.nan, 25.5], ["paris", "atlantis", "", " nice"]
    )
    for answer, label, probs in zip(
        [answers[i] for i in (0, 2, 3, 5)], labels, probabilities, strict=True
    ):
        assert answer["label"] == label
        assert [np.float32(answer["probabilities"][c]) for c in model[1]] == list(probs)
    assert "6 rows answered, 2 with errors" in result.stderr
    assert "the signature (manifest.sig) was NOT checked" in result.stderr


def test_json_lines_from_stdin(model, bundles):
    rows = [
        {"age": 30, "city": "paris"},
        {"age": "abc", "city": "lyon"},
        {"city": "paris"},
        {"age": None, "city": None},
        [1, 2],
        {"age": True, "city": {"a": 1}},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n\n{not json\n"
    key = ("--public-key", str(bundles["pub"]))
    result = _run(bundles["dir"], str(bundles["dir"]), "--format", "jsonl", *key, stdin=text)
    assert result.returncode == 0, result.stderr
    answers = _lines(result.stdout)
    assert [a["row"] for a in answers] == [1, 2, 3, 4, 5, 6, 7]
    assert answers[0]["label"] == _expected(model, [30], ["paris"])[0][0]
    assert answers[1]["error"] == "column 'age': expected a number, got 'abc'"
    assert answers[2]["error"] == "column 'age': missing"
    assert "label" in answers[3]  # nulls are missing values, which the model imputes
    assert answers[4]["error"] == "expected a JSON object, got [1, 2]"
    assert answers[5]["error"] == (
        "column 'age': expected a number, got true; column 'city': expected text, got {\"a\": 1}"
    )
    assert answers[6]["error"].startswith("not valid JSON")


def _main(capsys, *args: str) -> tuple[int, list[dict], str]:
    code = runner.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, _lines(out), err


@pytest.mark.parametrize(
    ("conditions", "rows"),
    [
        (["p[>50K]>0.5"], [2, 3, 4]),
        (["probability('>50K') > 0.5"], [2, 3, 4]),
        (["label==>50K"], [2, 3, 4]),
        (["label != '>50K'"], [1, 2]),
        (["p[<=50K] >= 0.5", "p[>50K]<0.99"], [1, 2]),
        (['p[">50K"] > 0.9'], [2, 3]),
    ],
)
def test_only_if_keeps_matching_predictions_and_every_error(
    capsys, bundles, tmp_path, conditions, rows
):
    (tmp_path / "in.csv").write_text("age,city\n30,paris\nabc,lyon\n80,paris\n60,nice\n")
    flags = [x for c in conditions for x in ("--only-if", c)] + ["--public-key", bundles["pub"]]
    code, answers, _ = _main(capsys, bundles["dir"], "--input", tmp_path / "in.csv", *flags)
    assert code == 0
    assert [a["row"] for a in answers] == rows
    assert all("error" in a or a["row"] != 2 for a in answers)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("__import__('os').system('x')", "expected p[CLASS] OP NUMBER"),
        ("p[>50K] > high", "'high' is not a number"),
        ("label > 1", "compares only with == or !="),
        ("p[maybe] > 0.5", "unknown class 'maybe'; the classes are '<=50K', '>50K'"),
        ("prediction > 3", "cannot be used with this classification model"),
        ("p['>50K' > 0.5", "expected p[CLASS]"),
    ],
)
def test_bad_only_if_is_a_usage_error(capsys, bundles, condition, message):
    code, answers, err = _main(
        capsys,
        bundles["dir"],
        "--only-if",
        condition,
        "--input",
        "/dev/null",
        "--public-key",
        bundles["pub"],
    )
    assert code == 2 and answers == []
    assert message in err


def test_parse_condition():
    assert runner.parse_condition("p[>50K]>0.8") == ("p", ">50K", ">", 0.8)
    assert runner.parse_condition(" probability( 'a ) b' ) <= 1e-3 ") == ("p", "a ) b", "<=", 0.001)
    assert runner.parse_condition("label==>50K") == ("label", None, "==", ">50K")
    assert runner.parse_condition('label != "yes"') == ("label", None, "!=", "yes")
    assert runner.parse_condition("prediction<3") == ("prediction", None, "<", 3.0)
    for bad in ("labels == 1", "p[x]", "label ==", "label = 1", "p[x] >> 1", "'x' == label"):
        with pytest.raises(runner.UsageError):
            runner.parse_condition(bad)


def test_archive_and_signature_checks(bundles, keys, tmp_path):
    (tmp_path / "in.csv").write_text("age,city\n30,paris\n")
    (tmp_path / "other.pem").write_bytes(generate_keypair()[1])
    (tmp_path / "private.pem").write_bytes(keys[0])
    tar, pub, data = str(bundles["tar"]), str(bundles["pub"]), str(tmp_path / "in.csv")
    good = _run(bundles["dir"], tar, "--input", data, "--public-key", pub)
    assert good.returncode == 0, good.stderr
    assert _lines(good.stdout)[0]["label"] in ("<=50K", ">50K")
    wrong = _run(bundles["dir"], tar, "--input", data, "--public-key", str(tmp_path / "other.pem"))
    assert wrong.returncode == 1 and "manifest.json does not match manifest.sig" in wrong.stderr
    unsigned = _run(bundles["dir"], str(bundles["unsigned"]), "--public-key", pub, "--verify-only")
    assert unsigned.returncode == 1 and "manifest.sig is missing" in unsigned.stderr
    private = _run(bundles["dir"], tar, "--public-key", str(tmp_path / "private.pem"))
    assert private.returncode == 2 and "holds a private key" in private.stderr
    assert good.stdout and not wrong.stdout and not unsigned.stdout


def test_a_tampered_bundle_is_refused_naming_the_file(model, tmp_path, capsys):
    out = write_bundle(
        model[0],
        out=tmp_path / "b",
        model_name="m",
        model_version=1,
        input_schema=SCHEMA,
        output_schema={"classes": model[1]},
    )
    data = bytearray((out / "model.onnx").read_bytes())
    data[-5] ^= 1
    (out / "model.onnx").write_bytes(bytes(data))
    code, answers, err = _main(capsys, out, "--input", "/dev/null")
    assert code == 1 and answers == []
    assert "bundle refused: model.onnx has changed" in err
    (out / "extra.py").write_text("print('hi')")
    assert "extra.py is not listed in manifest.json" in _main(capsys, out, "--verify-only")[2]


def _relist(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    for path in folder.iterdir():
        if path.name not in ("manifest.json", "manifest.sig"):
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            manifest["files"][path.name] = {"sha256": digest, "size": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _externalise(folder: Path, location: str) -> None:
    proto = onnx.load(str(folder / "model.onnx"))
    for t in proto.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
    onnx.save_model(
        proto,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        location="w.bin",
        size_threshold=0,
    )
    if location != "w.bin":
        proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        for t in proto.graph.initializer:
            for entry in t.external_data:
                entry.value = location if entry.key == "location" else entry.value
        onnx.save_model(proto, str(folder / "model.onnx"))
        (folder / "w.bin").rename(folder / location)
    _relist(folder)


@pytest.mark.parametrize("location", ["w.bin", "../w.bin"])
def test_external_data_must_be_a_listed_bundle_file(tmp_path, capsys, location):
    out = _regression_bundle(tmp_path / "b")
    _externalise(out, location)
    (tmp_path / "in.csv").write_text("age,n,city\n1.5,2,x\n")
    code, answers, err = _main(capsys, out, "--input", tmp_path / "in.csv")
    if location == "w.bin":  # inside, listed and hashed: loaded from the folder
        assert code == 0 and answers == [{"row": 1, "prediction": 3.5}]
    else:
        assert code == 1 and answers == []
        assert "reads external data from '../w.bin', which climbs out of the bundle" in err


def test_inputs_are_cast_to_the_types_the_graph_declares(tmp_path, capsys):
    out = _regression_bundle(tmp_path / "b")
    (tmp_path / "in.csv").write_text("age,n,city\n1.5,2,x\n1,,x\n1,2.5,x\n,3,\n10,1e1,x\n")
    code, answers, _ = _main(capsys, out, "--input", tmp_path / "in.csv")
    assert code == 0
    assert answers[0] == {"row": 1, "prediction": 3.5}
    assert answers[1]["error"] == "column 'n': a value is required (model input tensor(int64))"
    assert answers[2]["error"] == "column 'n': expected an integer, got '2.5'"
    assert answers[3] == {"row": 4, "prediction": None}  # NaN (no age) is written as null
    assert answers[4] == {"row": 5, "prediction": 20.0}
    only = ("--only-if", "prediction > 5")
    code, answers, _ = _main(capsys, out, "--input", tmp_path / "in.csv", *only)
    assert [a["row"] for a in answers] == [2, 3, 5]


def test_a_module_planted_beside_the_runner_is_never_imported(bundles, tmp_path):
    pub = str(bundles["pub"])
    folder = tmp_path / "copy"
    shutil.copytree(bundles["dir"], folder)
    marker = tmp_path / "imported"
    for name in ("json.py", "numpy.py", "csv.py"):
        (folder / name).write_text(f"open({str(marker)!r}, 'w').close()\n")
    command = [sys.executable, str(folder / "runner.py"), str(folder), "--verify-only"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)  # not -I
    assert result.returncode == 1 and "csv.py is not listed in manifest.json" in result.stderr
    assert not marker.exists()
    clean = _run(bundles["dir"], str(bundles["tar"]), "--verify-only", "--public-key", pub)
    assert clean.returncode == 0 and "bundle OK: adult version 1" in clean.stdout


def test_the_runner_imports_only_the_standard_library_numpy_and_onnxruntime():
    tree = ast.parse(Path(runner.__file__).read_text())
    imported = {
        (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - STDLIB == {"numpy", "onnxruntime"}


@pytest.mark.slow
def test_the_runner_works_in_a_fresh_virtualenv_with_only_onnxruntime_and_numpy(bundles, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pins = [f"onnxruntime=={ort.__version__}", f"numpy=={np.__version__}"]
    install = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--quiet",
        "--disable-pip-version-check",
        *pins,
    ]
    subprocess.run(install, check=True, timeout=900)
    others = ("keel", "onnx", "cryptography", "sklearn", "pandas", "skl2onnx")
    probe = f"import importlib.util as u; print([m for m in {others!r} if u.find_spec(m)])"
    found = subprocess.run(
        [str(python), "-I", "-c", probe], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"
    (tmp_path / "in.csv").write_text("age,city\n30,paris\nabc,lyon\n")
    command = [
        str(python),
        "-I",
        str(bundles["dir"] / "runner.py"),
        str(bundles["tar"]),
        "--input",
        str(tmp_path / "in.csv"),
        "--public-key",
        str(bundles["pub"]),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answers = _lines(result.stdout)
    assert answers[0]["label"] in ("<=50K", ">50K") and set(answers[0]["probabilities"]) == {
        "<=50K",
        ">50K",
    }
    assert answers[1] == {"row": 2, "error": "column 'age': expected a number, got 'abc'"}


def test_a_closed_pipe_ends_the_runner_quietly(bundles, tmp_path):
    rows = "age,city\n" + "".join(f"{20 + i % 50},paris\n" for i in range(50_000))
    (tmp_path / "many.csv").write_text(rows)
    runner = bundles["dir"] / "runner.py"
    command = (
        f"'{sys.executable}' -I '{runner}' '{bundles['dir']}' --input '{tmp_path / 'many.csv'}'"
        f" --public-key '{bundles['pub']}' | head -n 1"
    )
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(result.stdout)["row"] == 1
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
