"""What the standalone runner trusts: a signed bundle is run only with the key that signed it
(or an explicit --no-signature-check), and the runner's reading of ONNX external data agrees
with protobuf's, so no model makes onnxruntime read a file outside the bundle."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from keel.export import runner
from keel.export._bundle import encode_manifest, write_bundle
from keel.export._sign import load_private_key, sign

SCHEMA = [{"name": "age", "type": "float"}]
SECRET = 1234.5  # what secret.bin, outside every bundle, holds
INSIDE = 7.0  # what a bundle's own secret.bin holds


# ---------------------------------------------------------------- protobuf by hand
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ten(n: int) -> bytes:
    """``n`` as a 10-byte varint (the longest protobuf reads), whatever its size."""
    return bytes((n >> (7 * i)) & 0x7F | (0x80 if i < 9 else 0) for i in range(10))


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _location(path: str) -> bytes:
    """One TensorProto.external_data entry (field 13): location = ``path``."""
    return _field(13, 2, _field(1, 2, b"location") + _field(2, 2, path.encode()))


EXTERNAL = {  # TensorProto.data_location (field 14) = EXTERNAL, as protobuf reads it
    "over-long varint 1 + 2**32": _field(14, 0, _varint(1 + 2**32)),
    "10-byte varint 1 + 2**63": _field(14, 0, _ten(1 + 2**63)),
    "over-long tag": b"\xf0\x80\x80\x80\x10" + _varint(1),  # tag 14 << 3 plus 2**32
    "EXTERNAL then an unknown 5": _field(14, 0, _varint(1)) + _field(14, 0, _varint(5)),
    "EXTERNAL then -1": _field(14, 0, _varint(1)) + _field(14, 0, _ten(2**64 - 1)),
}


def _value_tensor(*parts: bytes) -> bytes:
    """A float tensor [1] whose data is elsewhere, as described by ``parts``."""
    return TensorProto(name="v", data_type=TensorProto.FLOAT, dims=[1]).SerializeToString() + (
        b"".join(parts)
    )


def _model(*value_tensors: bytes) -> bytes:
    """prediction = age + ConstantOfShape(shape of age, value=TENSOR), the value attribute
    given by each of ``value_tensors`` in turn (protobuf merges repeats of a field)."""
    attribute = onnx.AttributeProto(name="value", type=onnx.AttributeProto.TENSOR)
    attribute_bytes = attribute.SerializeToString() + b"".join(
        _field(5, 2, t) for t in value_tensors
    )
    fill = helper.make_node("ConstantOfShape", ["s"], ["c"]).SerializeToString()
    nodes = [
        helper.make_node("Shape", ["age"], ["s"]).SerializeToString(),
        fill + _field(5, 2, attribute_bytes),
        helper.make_node("Add", ["age", "c"], ["prediction"]).SerializeToString(),
    ]
    graph = helper.make_graph(
        [],
        "g",
        [helper.make_tensor_value_info("age", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 1])],
    )
    graph_bytes = graph.SerializeToString() + b"".join(_field(1, 2, n) for n in nodes)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model.ClearField("graph")
    return model.SerializeToString() + _field(7, 2, graph_bytes)


def _honest_model() -> bytes:
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]).SerializeToString()
    return _model(value)


# ---------------------------------------------------------------- bundles
@pytest.fixture(scope="module")
def key_files(tmp_path_factory) -> tuple[Path, Path]:
    """A key pair made by `keel signing-key`, as a user makes one."""
    folder = tmp_path_factory.mktemp("keys")
    keel = Path(sys.executable).with_name("keel")
    subprocess.run([str(keel), "signing-key", str(folder / "edge.pem")], check=True, timeout=120)
    return folder / "edge.pem", folder / "edge.pub"


def _bundle(out: Path, key: Path | None) -> Path:
    return write_bundle(
        _honest_model(),
        out=out,
        model_name="m",
        model_version=1,
        input_schema=SCHEMA,
        output_schema={"task": "regression"},
        signing_key=key,
    )


def _rewrite(folder: Path, files: dict[str, bytes], key: Path | None = None) -> None:
    """Replace or add ``files``, list every file again in manifest.json, and (with ``key``)
    sign the new manifest: what a careless or hostile signer, or (without ``key``) anyone
    who can write to the bundle, can do."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, data in files.items():
        (folder / name).write_bytes(data)
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    encoded = encode_manifest(manifest)
    (folder / "manifest.json").write_bytes(encoded)
    if key is not None:
        (folder / "manifest.sig").write_bytes(sign(encoded, load_private_key(key)))


def _run(bundle: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The bundle's own runner.py in a fresh, isolated interpreter, run in ``cwd``."""
    command = [sys.executable, "-I", str(bundle / "runner.py"), str(bundle), "--format", "jsonl"]
    command += args
    rows = '{"age": 1.5}\n'
    return subprocess.run(command, input=rows, capture_output=True, text=True, timeout=120, cwd=cwd)


def _predictions(result: subprocess.CompletedProcess) -> list:
    return [json.loads(line).get("prediction") for line in result.stdout.splitlines()]


@pytest.fixture
def workdir(tmp_path) -> Path:
    """The runner's working directory, holding a file no bundle may read."""
    folder = tmp_path / "work"
    folder.mkdir()
    np.array([SECRET], np.float32).tofile(folder / "secret.bin")
    return folder


# ---------------------------------------------------------------- signatures
def test_a_signed_bundle_is_not_run_without_its_key(key_files, tmp_path, workdir):
    private, public = key_files
    bundle = _bundle(tmp_path / "b", private)
    fake = _model(helper.make_tensor("v", TensorProto.FLOAT, [1], [99.0]).SerializeToString())
    _rewrite(bundle, {"model.onnx": fake})  # re-hashed, not re-signed
    for flags in ([], ["--verify-only"]):
        refused = _run(bundle, *flags, cwd=workdir)
        assert refused.returncode == 2 and refused.stdout == ""
        assert "the bundle is signed (manifest.sig)" in refused.stderr
        assert "--public-key" in refused.stderr and "--no-signature-check" in refused.stderr
    checked = _run(bundle, "--public-key", str(public), cwd=workdir)
    assert checked.returncode == 1 and "does not match manifest.sig" in checked.stderr
    both = _run(bundle, "--public-key", str(public), "--no-signature-check", cwd=workdir)
    assert both.returncode == 2 and "contradict" in both.stderr


def test_no_signature_check_runs_a_signed_bundle_and_says_so(key_files, tmp_path, workdir):
    bundle = _bundle(tmp_path / "b", key_files[0])
    result = _run(bundle, "--no-signature-check", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert _predictions(result) == [1.5]
    assert "signature (manifest.sig) was NOT checked (--no-signature-check)" in result.stderr
    good = _run(bundle, "--public-key", str(key_files[1]), cwd=workdir)
    assert good.returncode == 0 and _predictions(good) == [1.5]
    assert "NOT checked" not in good.stderr


def test_an_unsigned_bundle_runs_with_a_warning(tmp_path, workdir):
    bundle = _bundle(tmp_path / "b", None)
    result = _run(bundle, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert _predictions(result) == [1.5]
    assert "the bundle is unsigned (no manifest.sig): who made it was NOT checked" in (
        result.stderr
    )


# ---------------------------------------------------------------- external data
@pytest.mark.parametrize("encoding", list(EXTERNAL))
def test_onnxruntime_reads_the_crafted_model_s_external_data(encoding, workdir, monkeypatch):
    """The premise of the tests below: loaded from bytes, onnxruntime takes each of these
    encodings as EXTERNAL and reads secret.bin from the working directory."""
    monkeypatch.chdir(workdir)
    model = _model(_value_tensor(_location("secret.bin"), EXTERNAL[encoding]))
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"age": np.zeros((1, 1), np.float32)})[0]
    assert got.ravel().tolist() == [SECRET]


@pytest.mark.parametrize("encoding", list(EXTERNAL))
def test_the_runner_reads_external_data_as_protobuf_does(encoding):
    model = _model(_value_tensor(_location("secret.bin"), EXTERNAL[encoding]))
    assert runner.external_data_refs(model) == [("v", "secret.bin")]


@pytest.mark.parametrize("encoding", list(EXTERNAL))
def test_a_signed_bundle_cannot_read_a_file_of_the_working_directory(
    key_files, tmp_path, workdir, encoding
):
    private, public = key_files
    bundle = _bundle(tmp_path / "b", private)
    model = _model(_value_tensor(_location("secret.bin"), EXTERNAL[encoding]))
    _rewrite(bundle, {"model.onnx": model}, key=private)  # signed by the key we trust
    result = _run(bundle, "--public-key", str(public), cwd=workdir)
    assert result.returncode == 1 and result.stdout == ""
    assert "reads external data from 'secret.bin', which is not a file manifest.json lists" in (
        result.stderr
    )


@pytest.mark.parametrize("encoding", list(EXTERNAL))
def test_listed_external_data_is_read_from_the_bundle_not_the_working_directory(
    key_files, tmp_path, workdir, encoding
):
    private, public = key_files
    bundle = _bundle(tmp_path / "b", private)
    model = _model(_value_tensor(_location("secret.bin"), EXTERNAL[encoding]))
    inside = np.array([INSIDE], np.float32).tobytes()
    _rewrite(bundle, {"model.onnx": model, "secret.bin": inside}, key=private)
    result = _run(bundle, "--public-key", str(public), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert _predictions(result) == [1.5 + INSIDE]


def test_repeats_of_a_tensor_field_are_merged_as_protobuf_merges_them():
    """attribute.t given twice is one tensor: the first says EXTERNAL at w.bin, the second
    adds a location, and onnxruntime reads the last location given."""
    first = _value_tensor(_location("w.bin"), _field(14, 0, _varint(1)))
    second = _location("secret.bin")
    refs = runner.external_data_refs(_model(first, second))
    assert ("v", "secret.bin") in refs


@pytest.mark.parametrize(
    ("encoding", "problem"),
    [
        (b"\x70" + bytes([0x81] + [0x80] * 9 + [0x00]), "varint longer than protobuf reads"),
        (b"\xf0\x80\x80\x80\x80\x10\x01", "varint longer than protobuf reads"),  # 6-byte tag
        (b"\x00\x01", "field number 0"),
    ],
)
def test_what_protobuf_cannot_parse_is_refused(encoding, problem):
    model = _model(_value_tensor(_location("secret.bin"), encoding))
    with pytest.raises(runner.BundleError, match=problem):
        runner.external_data_refs(model)


def test_a_model_the_parser_misreads_still_cannot_reach_the_working_directory(
    tmp_path, workdir, monkeypatch, capsys
):
    """Whatever the runner's own parser makes of model.onnx, onnxruntime resolves external
    data in a private copy of the bundle's files, never in the working directory."""
    bundle = _bundle(tmp_path / "b", None)
    model = _model(_value_tensor(_location("secret.bin"), _field(14, 0, _varint(1))))
    _rewrite(bundle, {"model.onnx": model})
    monkeypatch.setattr(runner, "external_data_refs", lambda model: [])  # a blind parser
    monkeypatch.chdir(workdir)
    (workdir / "rows.jsonl").write_text('{"age": 1.5}\n')
    code = runner.main([str(bundle), "--input", "rows.jsonl"])
    out, err = capsys.readouterr()
    assert code == 1 and str(SECRET) not in out
    assert "model.onnx cannot be loaded by onnxruntime" in err


def test_onnxruntime_s_memory_address_marker_is_refused(key_files, tmp_path, workdir):
    private, public = key_files
    bundle = _bundle(tmp_path / "b", private)
    marker = "*/_ORT_MEM_ADDR_/*"
    model = _model(_value_tensor(_location(marker), _field(14, 0, _varint(1))))
    (bundle / "*" / "_ORT_MEM_ADDR_").mkdir(parents=True)
    _rewrite(bundle, {"model.onnx": model, marker: b"\0" * 4}, key=private)
    result = _run(bundle, "--public-key", str(public), cwd=workdir)
    assert result.returncode == 1 and "onnxruntime's in-memory marker" in result.stderr
