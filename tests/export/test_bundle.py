"""Bundles: written, verified, signed, archived and unpacked safely."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from keel.errors import InvalidInput, NotFound, UnsafeArtifact
from keel.export import runner
from keel.export._archive import extract_archive
from keel.export._bundle import _all_tensors, verify_bundle, write_bundle
from keel.export._sign import (
    generate_keypair,
    load_private_key,
    load_public_key,
    public_key_fingerprint,
    raw_public_key,
    signature_valid,
)

SCHEMA = [{"name": "age", "type": "float"}, {"name": "city", "type": "category"}]


def _model_bytes() -> tuple[bytes, list[str]]:
    """A tiny Pipeline(ColumnTransformer(age, city) -> LogisticRegression) as ONNX, one graph
    input per raw column, probabilities as a plain tensor (no ZipMap)."""
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
    cat = OneHotEncoder(handle_unknown="ignore")
    clf = LogisticRegression()
    pipe = Pipeline(
        [("ct", ColumnTransformer([("n", num, ["age"]), ("c", cat, ["city"])])), ("clf", clf)]
    )
    pipe.fit(pd.DataFrame({"age": age, "city": city}), y)
    types = [("age", FloatTensorType([None, 1])), ("city", StringTensorType([None, 1]))]
    proto = convert_sklearn(
        pipe, initial_types=types, options={id(clf): {"zipmap": False}}, target_opset=17
    )
    return proto.SerializeToString(), [str(c) for c in pipe.classes_]


@pytest.fixture(scope="module")
def model() -> tuple[bytes, list[str]]:
    return _model_bytes()


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return generate_keypair()


def _write(model, out: Path, **kw) -> Path:
    onnx_bytes, classes = model
    args = {
        "out": out,
        "model_name": "adult",
        "model_version": 3,
        "input_schema": SCHEMA,
        "output_schema": {"task": "classification", "classes": classes},
        "parity": {"max_abs_diff": 1e-6, "rows": 200},
    }
    return write_bundle(onnx_bytes, **{**args, **kw})


def _relist(folder: Path) -> None:
    """Rewrite the manifest's file list to match the folder (what a tamperer would do)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in [p.name for p in folder.iterdir() if p.is_file()]:
        if name not in ("manifest.json", "manifest.sig"):
            data = (folder / name).read_bytes()
            manifest["files"][name] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
    (folder / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------- round trips
def test_folder_round_trip(model, tmp_path):
    out = _write(model, tmp_path / "bundle", extra={"owner": "risk"})
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "runner.py"]
    manifest = verify_bundle(out)
    assert manifest["format"] == "keel-bundle" and manifest["format_version"] == 1
    assert manifest["model"] == {"name": "adult", "version": 3}
    assert manifest["input_schema"] == SCHEMA
    assert manifest["output_schema"]["classes"] == model[1]
    assert manifest["parity"] == {"max_abs_diff": 1e-6, "rows": 200}
    assert manifest["extra"] == {"owner": "risk"} and manifest["signature"] is None
    assert manifest["created_at"].endswith("Z") and manifest["keel_version"]
    assert set(manifest["files"]) == {"model.onnx", "runner.py"}
    assert (out / "model.onnx").read_bytes() == model[0]
    assert (out / "runner.py").read_bytes() == Path(runner.__file__).read_bytes()
    entry = manifest["files"]["model.onnx"]
    assert entry == {"sha256": hashlib.sha256(model[0]).hexdigest(), "size": len(model[0])}


def test_archive_round_trip_is_deterministic(model, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = _write(model, tmp_path / "a" / "adult-3.tar.gz", archive=True)
    second = _write(model, tmp_path / "b" / "adult-3.tar.gz", archive=True)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == "adult-3"
    assert {m.name for m in members if m.isfile()} == {
        "adult-3/manifest.json",
        "adult-3/model.onnx",
        "adult-3/runner.py",
    }
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.issym() for m in members)
    manifest = verify_bundle(first)
    assert manifest["created_at"] == "2023-11-14T22:13:20Z"
    folder = extract_archive(first, tmp_path / "unpacked")
    assert folder == tmp_path / "unpacked" / "adult-3"
    assert verify_bundle(folder) == manifest


def test_write_refuses_bad_arguments(model, tmp_path):
    bad = [
        ({"input_schema": [{"name": "age", "type": "text"}]}, "type 'text'"),
        ({"input_schema": [{"name": "city", "type": "category"}]}, "'age' is not a column"),
        ({"model_version": "3"}, "model_version"),
        ({"parity": {"diff": float("nan")}}, "parity: holds NaN"),
        ({"extra": {"when": object()}}, "extra: not JSON"),
        ({"archive": True}, "must end in .tar.gz"),
    ]
    for kwargs, message in bad:
        with pytest.raises(InvalidInput, match=message):
            _write(model, tmp_path / "b", **kwargs)
    assert not (tmp_path / "b").exists()
    with pytest.raises(InvalidInput, match="not a serialized ONNX model|could not use"):
        write_bundle(b"\xff\xff\xff", **_kwargs(tmp_path / "c"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InvalidInput, match="already exists"):
        _write(model, tmp_path / "full")
    assert sorted(os.listdir(tmp_path)) == ["full"]  # nothing half-written


def _kwargs(out: Path) -> dict:
    return {
        "out": out,
        "model_name": "m",
        "model_version": 1,
        "input_schema": SCHEMA,
        "output_schema": {},
    }


def _raw_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Store initializers as raw_data (only those can move to external files)."""
    for tensor in proto.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    return proto


def test_write_refuses_a_model_with_external_data(model, tmp_path):
    proto = _raw_initializers(onnx.load_from_string(model[0]))
    onnx.external_data_helper.convert_model_to_external_data(
        proto, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0
    )
    with pytest.raises(InvalidInput, match="external file 'weights.bin'"):
        write_bundle(proto.SerializeToString(), **_kwargs(tmp_path / "b"))


# ---------------------------------------------------------------- tampering
def _flip(path: Path, at: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["model.onnx", "runner.py"])
def test_a_changed_file_is_refused_by_name(model, tmp_path, name):
    out = _write(model, tmp_path / "b")
    _flip(out / name)
    with pytest.raises(UnsafeArtifact, match=f"{name} has changed: sha256"):
        verify_bundle(out)


def test_added_removed_and_linked_files_are_refused(model, tmp_path):
    out = _write(model, tmp_path / "b")
    (out / "notes.txt").write_text("hi")
    with pytest.raises(UnsafeArtifact, match="notes.txt is not listed in manifest.json"):
        verify_bundle(out)
    (out / "notes.txt").unlink()
    (out / "runner.py").write_text((out / "runner.py").read_text() + "# more\n")
    with pytest.raises(UnsafeArtifact, match=r"runner.py has changed: \d+ bytes"):
        verify_bundle(out)
    (out / "runner.py").unlink()
    with pytest.raises(UnsafeArtifact, match="runner.py is missing"):
        verify_bundle(out)
    (out / "runner.py").symlink_to(runner.__file__)
    with pytest.raises(UnsafeArtifact, match="runner.py is a symbolic link"):
        verify_bundle(out)


def test_an_edited_manifest_is_refused(model, tmp_path, keys):
    out = _write(model, tmp_path / "b")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["model.onnx"]["sha256"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsafeArtifact, match="model.onnx has changed"):
        verify_bundle(out)
    manifest["format_version"] = 2
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsafeArtifact, match="format_version 2"):
        verify_bundle(out)
    signed = _write(model, tmp_path / "s", signing_key=keys[0])
    text = (signed / "manifest.json").read_text().replace('"version": 3', '"version": 4')
    (signed / "manifest.json").write_text(text)
    with pytest.raises(UnsafeArtifact, match="manifest.json does not match manifest.sig"):
        verify_bundle(signed, public_key=keys[1])


# ---------------------------------------------------------------- signatures and keys
def test_signed_bundle_verifies_only_with_its_public_key(model, tmp_path, keys):
    private, public = keys
    out = _write(model, tmp_path / "b.tgz", signing_key=private, archive=True)
    (tmp_path / "pub.pem").write_bytes(public)
    for key in (public, tmp_path / "pub.pem", str(tmp_path / "pub.pem"), load_public_key(public)):
        assert verify_bundle(out, public_key=key)["signature"] == {
            "algorithm": "ed25519",
            "public_key_sha256": public_key_fingerprint(load_public_key(public)),
        }
    assert verify_bundle(out)["model"]["version"] == 3  # hashes alone, without a key
    with pytest.raises(UnsafeArtifact, match="does not match manifest.sig"):
        verify_bundle(out, public_key=generate_keypair()[1])


def test_a_key_requires_a_signature(model, tmp_path, keys):
    out = _write(model, tmp_path / "b")
    with pytest.raises(UnsafeArtifact, match="manifest.sig is missing"):
        verify_bundle(out, public_key=keys[1])
    signed = _write(model, tmp_path / "s", signing_key=keys[0])
    (signed / "manifest.sig").unlink()
    with pytest.raises(UnsafeArtifact, match="manifest.sig is missing"):
        verify_bundle(signed, public_key=keys[1])


def test_key_files_give_clear_errors(tmp_path, keys):
    private, public = keys
    assert isinstance(load_private_key(private), Ed25519PrivateKey)
    (tmp_path / "garbage.pem").write_text("hello")
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    locked = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    cases = [
        (lambda: load_private_key(tmp_path / "nope.pem"), "does not exist"),
        (lambda: load_private_key(tmp_path / "garbage.pem"), "not a PEM private key"),
        (lambda: load_private_key(public), "holds a public key"),
        (lambda: load_private_key(ec_key), "type EC; keel signs with Ed25519"),
        (lambda: load_private_key(locked), "encrypted"),
        (lambda: load_public_key(private), "holds a private key"),
        (lambda: load_public_key(b"-----BEGIN PUBLIC KEY-----\nxx\n"), "not a readable"),
        (lambda: load_public_key(42), "expected PEM bytes"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidInput, match=message):
            call()
    assert isinstance(load_private_key(locked, password=b"pw"), Ed25519PrivateKey)


RFC8032_TEST_1 = (
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
    "1cf9b46bd25bf5f0595bbe24655141438e7a100b",
)


def test_pure_python_ed25519_passes_rfc8032_test_1():
    public, sig = (bytes.fromhex(h) for h in RFC8032_TEST_1)
    assert runner.ed25519_verify(public, b"", sig)
    assert not runner.ed25519_verify(public, b"x", sig)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=300),
    flip=st.integers(0, 64 * 8 - 1),
    junk=st.binary(min_size=64, max_size=64),
)
def test_pure_python_ed25519_agrees_with_cryptography(seed, message, flip, junk):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = raw_public_key(key.public_key())
    sig = key.sign(message)
    flipped = bytearray(sig)
    flipped[flip // 8] ^= 1 << (flip % 8)
    s_plus_l = sig[:32] + (int.from_bytes(sig[32:], "little") + runner._L).to_bytes(32, "little")
    cases = [
        (public, message, sig),
        (public, message + b"!", sig),
        (public, message, bytes(flipped)),
        (public, message, s_plus_l),
        (public, message, junk),
        (junk[:32], message, sig),
    ]
    for args in cases:
        assert runner.ed25519_verify(*args) == signature_valid(*args), args
    assert runner.ed25519_verify(public, message, sig)


# ---------------------------------------------------------------- unsafe archives
def _tar(path: Path, members: list[tuple[str, bytes, bytes]]) -> Path:
    """A .tar.gz with members (name, tar type, data-or-link-target)."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = payload.decode()
                tar.addfile(info)
            else:
                info.size = len(payload) if kind == tarfile.REGTYPE else 0
                tar.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)
    return path


def _unsafe_cases(tmp_path: Path) -> dict[str, tuple[list, str]]:
    ok = ("b/ok.txt", tarfile.REGTYPE, b"fine")
    evil = str(tmp_path / "evil.txt")
    return {
        "dotdot": ([ok, ("b/../../evil.txt", tarfile.REGTYPE, b"x")], "climbs out"),
        "absolute": ([ok, (evil, tarfile.REGTYPE, b"x")], "absolute path"),
        "backslash": ([ok, ("..\\evil.txt", tarfile.REGTYPE, b"x")], "backslash"),
        "symlink": ([("b/link", tarfile.SYMTYPE, b"/etc/passwd"), ok], "symbolic link"),
        "hardlink": ([ok, ("b/hard", tarfile.LNKTYPE, b"b/ok.txt")], "hard link"),
        "device": ([ok, ("b/dev", tarfile.CHRTYPE, b"")], "character device"),
        "fifo": ([ok, ("b/fifo", tarfile.FIFOTYPE, b"")], "FIFO"),
        "duplicate": ([ok, ok], "appears twice"),
        "inside a file": ([ok, ("b/ok.txt/x", tarfile.REGTYPE, b"x")], "inside a file"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "dotdot",
        "absolute",
        "backslash",
        "symlink",
        "hardlink",
        "device",
        "fifo",
        "duplicate",
        "inside a file",
    ],
)
def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path, case):
    members, message = _unsafe_cases(tmp_path)[case]
    archive = _tar(tmp_path / "in.tar.gz", members)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    with pytest.raises(UnsafeArtifact, match=message):
        extract_archive(archive, sandbox / "dest")
    assert list(sandbox.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tar.gz", "sandbox"]
    with pytest.raises(UnsafeArtifact, match=message):
        verify_bundle(archive)


def test_extract_refuses_a_used_destination_and_missing_or_damaged_archives(tmp_path):
    archive = _tar(tmp_path / "in.tar.gz", [("b/ok.txt", tarfile.REGTYPE, b"fine")])
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(InvalidInput, match="not an empty folder"):
        extract_archive(archive, tmp_path / "used")
    with pytest.raises(NotFound):
        extract_archive(tmp_path / "nope.tar.gz", tmp_path / "d")
    (tmp_path / "bad.tar.gz").write_bytes(archive.read_bytes()[:40])
    with pytest.raises(UnsafeArtifact, match="tar archive"):
        extract_archive(tmp_path / "bad.tar.gz", tmp_path / "d")
    assert extract_archive(archive, tmp_path / "d") == tmp_path / "d" / "b"
    assert (tmp_path / "d" / "b" / "ok.txt").read_bytes() == b"fine"


_PIECES = ["..", ".", "/", "\\", "%2e%2e", "\u2025", "\uff0e\uff0e", "a", "~", ":", "\x00", "//"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.lists(st.sampled_from(_PIECES) | st.text(max_size=4), max_size=8).map("".join))
def test_no_member_name_leaves_the_destination(name):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = root / "in.tar.gz"
        try:
            _tar(archive, [(name, tarfile.REGTYPE, b"payload")])
        except (ValueError, tarfile.TarError, UnicodeError):
            return  # a name tarfile itself cannot write
        sandbox = root / "sandbox"
        sandbox.mkdir()
        try:
            extract_archive(archive, sandbox / "dest")
        except UnsafeArtifact:
            assert list(sandbox.iterdir()) == []
        written = [p for p in root.rglob("*") if p != archive and p != sandbox]
        assert all(p.is_relative_to(sandbox / "dest") for p in written), (name, written)
        assert not any(p.is_symlink() for p in written)


# ---------------------------------------------------------------- external data
def _with_external_data(model, tmp_path: Path, location: str) -> Path:
    out = _write(model, tmp_path / "b")
    proto = _raw_initializers(onnx.load(str(out / "model.onnx")))
    target = Path(os.path.normpath(out / location))
    onnx.save_model(
        proto,
        str(out / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.bin",
        size_threshold=0,
    )
    produced = out / "w.bin"
    if location != "w.bin":  # point every external tensor elsewhere
        proto = onnx.load(str(out / "model.onnx"), load_external_data=False)
        for tensor in _all_tensors(proto):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save_model(proto, str(out / "model.onnx"))
        target.parent.mkdir(parents=True, exist_ok=True)
        produced.rename(target)
    _relist(out)
    return out


@pytest.mark.parametrize("location", ["../w.bin", "ABSOLUTE", "sub/../../w.bin"])
def test_external_data_outside_the_bundle_is_refused(model, tmp_path, location):
    location = str(tmp_path / "elsewhere" / "w.bin") if location == "ABSOLUTE" else location
    out = _with_external_data(model, tmp_path, location)
    reason = "absolute path" if os.path.isabs(location) else "climbs out"
    with pytest.raises(UnsafeArtifact, match=f"reads external data from .*{reason}"):
        verify_bundle(out)


def test_external_data_inside_the_bundle_must_be_listed(model, tmp_path):
    out = _with_external_data(model, tmp_path, "w.bin")
    assert "w.bin" in verify_bundle(out)["files"]
    refs = runner.external_data_refs((out / "model.onnx").read_bytes())
    assert refs and all(loc == "w.bin" for _, loc in refs)  # the runner's own parser agrees
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["files"]["w.bin"]
    (out / "w.bin").unlink()
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsafeArtifact, match="'w.bin', which is not a file manifest.json lists"):
        verify_bundle(out)
