"""Bundles: a model that runs where the data is (a gateway, a phone) with nothing but
onnxruntime and numpy.

A bundle is a folder, or a .tar.gz holding one folder, with::

    model.onnx      the model, self-contained (no external data)
    runner.py       the standalone runner (a copy of keel/export/runner.py)
    manifest.json   what the bundle is, and the sha256 and size of every other file
    manifest.sig    optional: the Ed25519 signature of manifest.json's exact bytes

manifest.json (format "keel-bundle", format_version 1; keys sorted, two-space indent)::

    {"format": "keel-bundle", "format_version": 1,
     "model": {"name": "adult", "version": 3},
     "input_schema": [{"name": "age", "type": "float"}, ...],
     "output_schema": {"task": "classification", "classes": [...], ...},
     "files": {"model.onnx": {"sha256": "…", "size": 1234}, "runner.py": {...}},
     "parity": {...} or null,
     "signature": {"algorithm": "ed25519", "public_key_sha256": "…"} or null,
     "keel_version": "0.1.0", "created_at": "2025-01-31T12:00:00Z", "extra": {...}}

``created_at`` honours ``SOURCE_DATE_EPOCH``, so a bundle can be rebuilt byte for byte.
The checks (``verify_bundle`` here, the runner on a gateway) share one implementation, the
runner's; keel adds only its ``cryptography`` signature check and an ``onnx`` parse.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keel.errors import InvalidInput, NotFound, UnsafeArtifact
from keel.export import runner
from keel.export._archive import archive_root, extract_archive, write_archive
from keel.export._sign import (
    load_private_key,
    load_public_key,
    public_key_fingerprint,
    raw_public_key,
    sign,
    signature_valid,
)

__all__ = ["encode_manifest", "verify_bundle", "write_bundle"]

FORMAT = runner.FORMAT
FORMAT_VERSION = runner.FORMAT_VERSION
RUNNER_SOURCE = Path(runner.__file__)


def write_bundle(
    onnx_bytes: bytes,
    *,
    out: str | Path,
    model_name: str,
    model_version: int,
    input_schema: list[dict[str, Any]],
    output_schema: dict[str, Any],
    parity: dict[str, Any] | None = None,
    signing_key: Ed25519PrivateKey | bytes | str | Path | None = None,
    archive: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle to the new folder ``out`` (or, with ``archive=True``, the new
    ``.tar.gz`` file ``out``) and return its path. With ``signing_key`` (a key, PEM bytes or
    a PEM file) the manifest is signed. Nothing is left behind if any step fails."""
    out = Path(os.path.abspath(out))
    model = _check_model(onnx_bytes)
    _check_fields(model_name, model_version, input_schema, output_schema, parity, extra)
    key = load_private_key(signing_key) if signing_key is not None else None
    root = archive_root(out) if archive else out.name
    _check_out(out, archive)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".keel-bundle-", dir=out.parent) as tmp:
        folder = Path(tmp) / root
        folder.mkdir()
        (folder / runner.MODEL).write_bytes(model)
        shutil.copyfile(RUNNER_SOURCE, folder / runner.RUNNER)
        manifest = {
            "model": {"name": model_name, "version": model_version},
            "input_schema": input_schema,
            "output_schema": output_schema,
            "parity": parity,
            "extra": extra or {},
            **_generated(folder, key),
        }
        data = encode_manifest(manifest)
        (folder / runner.MANIFEST).write_bytes(data)
        if key is not None:
            (folder / runner.SIGNATURE).write_bytes(sign(data, key))
        _self_check(folder, key, manifest)
        if archive:
            return write_archive(folder, out)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(folder, out)
    return out


def verify_bundle(
    path: str | Path, *, public_key: Ed25519PublicKey | bytes | str | Path | None = None
) -> dict[str, Any]:
    """Check the bundle folder or archive at ``path`` and return its manifest.

    Checks the format and version, every listed file's sha256 and size (runner.py too),
    that no other file was added and nothing is a link, that model.onnx keeps no external
    data outside the listed files, and, when ``public_key`` is given (a key, PEM bytes or a
    PEM file), that manifest.sig exists and signs manifest.json. Raises UnsafeArtifact
    naming the file that changed."""
    path = Path(path)
    raw = raw_public_key(load_public_key(public_key)) if public_key is not None else None
    if path.is_dir():
        return _verify_folder(path, raw, path)
    if not path.is_file():
        raise NotFound(f"bundle '{path}': no such folder or archive")
    with tempfile.TemporaryDirectory(prefix="keel-verify-") as tmp:
        return _verify_folder(extract_archive(path, Path(tmp) / "bundle"), raw, path)


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    """The manifest's bytes as written (and signed): sorted keys, two-space indent."""
    return (json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def _verify_folder(folder: Path, key: bytes | None, label: Path) -> dict[str, Any]:
    try:
        manifest = runner.verify_folder(folder, key, check_signature=signature_valid)
        model = folder / runner.MODEL
        refs = _external_refs(model) + runner.external_data_refs(model.read_bytes())
        runner.check_external_data(manifest, refs)
    except runner.BundleError as exc:
        raise UnsafeArtifact(f"bundle '{label}': {exc}; refusing it") from None
    return manifest


def _external_refs(model_path: Path) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor keeping its data outside model.onnx, as onnx
    reads them (verify_bundle checks the runner's own reading as well)."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise runner.BundleError(f"{runner.MODEL} is not a valid ONNX file ({exc})") from None
    refs: list[tuple[str, str]] = []
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations = [e.value for e in tensor.external_data if e.key == "location"]
            refs.extend((tensor.name, loc) for loc in locations or [""])
    return refs


def _all_tensors(model: Any) -> list[Any]:
    """Every TensorProto of ``model``: initializers, sparse ones, and node attributes, in
    the main graph, subgraphs, training graphs and functions."""
    graphs = [model.graph]
    graphs += [g for info in model.training_info for g in (info.initialization, info.algorithm)]
    nodes = [node for f in model.functions for node in f.node]
    tensors: list[Any] = []
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            tensors += [*graph.initializer, *_sparse(graph.sparse_initializer)]
            nodes += graph.node
            continue
        for attr in nodes.pop().attribute:
            tensors += [attr.t, *attr.tensors, *_sparse([attr.sparse_tensor, *attr.sparse_tensors])]
            graphs += [attr.g, *attr.graphs]
    return tensors


def _sparse(items: Any) -> list[Any]:
    return [t for s in items for t in (s.values, s.indices)]


def _self_check(folder: Path, key: Ed25519PrivateKey | None, manifest: dict[str, Any]) -> None:
    """Verify the new bundle and load it the way the runner will, before it is published."""
    public = raw_public_key(key.public_key()) if key is not None else None
    _verify_folder(folder, public, folder)
    model = (folder / runner.MODEL).read_bytes()
    try:
        with tempfile.TemporaryDirectory(prefix="keel-stage-") as tmp:
            staged = runner.stage_model(folder, model, manifest, [], Path(tmp) / "model")
            runner.plan_inputs(runner.load_session(staged), manifest["input_schema"])
    except (runner.BundleError, runner.UsageError) as exc:
        raise InvalidInput(f"onnx_bytes: the runner could not use this model: {exc}") from None


def _check_model(onnx_bytes: Any) -> bytes:
    if not isinstance(onnx_bytes, (bytes, bytearray, memoryview)) or not len(onnx_bytes):
        raise InvalidInput(
            f"onnx_bytes: expected the serialized ONNX model, got {type(onnx_bytes).__name__}"
        )
    data = bytes(onnx_bytes)
    try:
        refs = runner.external_data_refs(data)
    except runner.BundleError:
        raise InvalidInput("onnx_bytes: not a serialized ONNX model") from None
    if refs:
        raise InvalidInput(
            f"onnx_bytes: tensor {refs[0][0]!r} keeps its data in external file "
            f"{refs[0][1]!r}; give a self-contained model (save it without external data)"
        )
    return data


def _check_fields(name: Any, version: Any, schema: Any, out: Any, parity: Any, extra: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"model_name: expected a non-empty string, got {name!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidInput(f"model_version: expected a non-negative integer, got {version!r}")
    try:
        runner._check_schema(schema)
    except runner.BundleError as exc:
        raise InvalidInput(str(exc).replace(f"{runner.MANIFEST}: ", "")) from None
    names = [c["name"] for c in schema]
    if len(set(names)) != len(names):
        raise InvalidInput(f"input_schema: column names repeat: {names}")
    if not isinstance(out, dict):
        raise InvalidInput(f"output_schema: expected a dict, got {type(out).__name__}")
    fields = {"input_schema": schema, "output_schema": out, "parity": parity, "extra": extra}
    for field, value in fields.items():
        _check_json(field, value)


def _check_json(field: str, value: Any) -> None:
    if field in ("parity", "extra") and value is not None and not isinstance(value, dict):
        raise InvalidInput(f"{field}: expected a dict or None, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise InvalidInput(
            f"{field}: holds NaN or infinity, which JSON cannot carry; use None"
        ) from None
    except TypeError as exc:
        raise InvalidInput(f"{field}: not JSON-serialisable ({exc}); use plain types") from None


def _check_out(out: Path, archive: bool) -> None:
    if archive and out.exists():
        raise InvalidInput(f"out: '{out}' already exists; remove it or choose another name")
    if not archive and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"out: '{out}' already exists; write the bundle to a new folder")


def _generated(folder: Path, key: Ed25519PrivateKey | None) -> dict[str, Any]:
    """The manifest entries keel fills in itself."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "files": {name: _file_entry(folder / name) for name in (runner.MODEL, runner.RUNNER)},
        "signature": _signature_info(key),
        "keel_version": _keel_version(),
        "created_at": _created_at(),
    }


def _file_entry(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _signature_info(key: Ed25519PrivateKey | None) -> dict[str, str] | None:
    if key is None:
        return None
    return {"algorithm": "ed25519", "public_key_sha256": public_key_fingerprint(key.public_key())}


def _created_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.now(UTC)
    if epoch.isdigit():
        when = datetime.fromtimestamp(int(epoch), UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _keel_version() -> str:
    import keel

    return keel.__version__
