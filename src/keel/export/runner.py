# ruff: noqa: E402 (the sys.path guard below must run before the other imports)
"""Run a keel bundle where the data is, with nothing but Python 3.10+, numpy and onnxruntime.

    python runner.py BUNDLE_DIR_OR_TAR [--input FILE|-] [--format csv|jsonl]
                     [--public-key PEM | --no-signature-check] [--only-if EXPR]...
                     [--verify-only]

Before anything is loaded the bundle is checked: manifest.json's format, the sha256 and size
of every file it lists (runner.py included), that no other file was added, and, with
--public-key, the Ed25519 signature in manifest.sig over the exact manifest bytes (checked
here in pure Python). The key must come from you: a key inside the bundle proves nothing.
A signed bundle (one with manifest.sig) is refused without --public-key, since anyone who
can change its files can re-hash the manifest too; --no-signature-check runs it anyway, with
a warning that the signature was NOT checked. An unsigned bundle runs with a warning.
A .tar.gz is unpacked into a private temporary folder first, refusing links, devices and any
member that would land outside it. The checks are only as good as this file, so run a copy
you trust (or check with keel's ``verify_bundle``) rather than the one a stranger sent.

External data: a tensor of model.onnx may keep its bytes in another file only when that file
is named by a relative path inside the bundle that the manifest lists (and so hash-checks);
absolute paths, '..' and unlisted files are refused. model.onnx is read as protobuf reads it
(the way onnxruntime does), and every location any tensor names is checked. onnxruntime then
loads a private copy: model.onnx from the very bytes that were hash-checked, beside copies of
the listed files it names, so it resolves external data there and nowhere else.

Each input row (CSV with a header, or one JSON object per line) is answered by one JSON
line on stdout, rows numbered from 1 (CSV: the header is not a row; JSON lines: blank lines
are skipped):

    {"row": 1, "label": ">50K", "probabilities": {"<=50K": 0.12, ">50K": 0.88}}
    {"row": 2, "error": "column 'age': expected a number, got 'abc'"}
    {"row": 3, "prediction": 41.5}                       (a regression model)

Tensor inputs (an image, a window of a series: input_schema type "tensor" with its per-row
"shape") come from JSON lines only, each a nested list of numbers of exactly that shape:

    {"X": [[[0.0, 0.5, ...], ...]]}                      (shape [1, 8, 8])
    {"row": 4, "error": "column 'X': expected shape [1, 8, 8], got [1, 7, 8]"}

CSV cannot carry them: the runner says so and stops (exit status 2).

A row is checked against the manifest's input_schema: a missing column or a value of the
wrong type (text in a number column, 2.5 in an integer one) is that row's error, naming the
column; unknown categories are the model's business. Empty cells and "", "?", "NA", "N/A",
"null", "NaN" are missing values: NaN for number inputs, "" for text inputs, an error for
integer or boolean inputs. Each column is cast to the type the ONNX input declares (float,
double, int64, int32, bool or string; shape [N, 1] or [N]). NaN in an answer is written as
null. Answers keep the input order; a summary goes to stderr.

A fairness-mitigated model (made by ThresholdOptimizer or ExponentiatedGradient) decides at
random with a probability per row; its graph takes each row's draw as the input keel.draw.
The runner draws it from the row's request id (the column named by --request-id,
"request_id" by default) exactly as keel's model server draws it for a one-row request with
that id, so the same id gets the same decision here and there; a row without one is an error
naming the column. The answer adds "decision_probability", the row's probability of the
positive decision.

--only-if keeps only the predictions that meet every condition given (error lines are always
written). A condition is one of:

    p[CLASS] OP NUMBER            p[>50K] > 0.8      p['a ] b'] >= 0.5
    probability(CLASS) OP NUMBER  probability('>50K') > 0.8
    label == VALUE, label != VALUE   label==>50K     label != 'no'
    prediction OP NUMBER          prediction <= 3.5  (regression)

with OP one of == != > >= < <=. CLASS and VALUE may be quoted with ' or "; unquoted they run
to the closing bracket (or to the end). Nothing is evaluated as Python.

Exit status: 0 every row was answered (some answers may be errors); 1 the bundle was
refused; 2 a flag, the key file or the input could not be used (a signed bundle without
--public-key or --no-signature-check included).
"""

import os
import sys

if __name__ == "__main__" and sys.path and sys.path[0]:
    # Run as a script, Python puts this file's folder first on sys.path, so a json.py or a
    # numpy.py planted beside it would be imported before the bundle is checked. (os and sys
    # are loaded when Python starts, and no __future__ import here: it would be a lookup too.)
    if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
        del sys.path[0]

import argparse
import base64
import binascii
import csv
import hashlib
import io
import json
import math
import operator
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "keel-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MODEL = "model.onnx"
RUNNER = "runner.py"
INPUT_TYPES = ("int", "float", "bool", "string", "category", "datetime", "tensor")
NULL_VALUES = frozenset({"", "?", "NA", "N/A", "null", "NaN", "nan"})
MAX_MANIFEST_BYTES = 16 << 20
DRAW = "keel.draw"  # a randomized model's draw input (keel.export._mitigated_export)
DRAW_SCHEME = "keel-request-draw-1"
DECISION_PROBABILITY = "decision_probability"
_ID = "\x00request_id"  # where a row's request id travels among its values


class BundleError(Exception):
    """The bundle is refused: modified, unsigned when a key was given, or malformed."""


class UsageError(Exception):
    """A flag, the key file or the input cannot be used."""


# ---------------------------------------------------------------- Ed25519 (RFC 8032, verify)
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_Point = tuple  # extended coordinates (X, Y, Z, T)


def _add(a: _Point, b: _Point) -> _Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa, bb = (y1 - x1) * (y2 - x2) % _P, (y1 + x1) * (y2 + x2) % _P
    cc, dd = 2 * t1 * t2 * _D % _P, 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _times(s: int, point: _Point) -> _Point:
    result = (0, 1, 1, 0)
    while s:
        if s & 1:
            result = _add(result, point)
        point, s = _add(point, point), s >> 1
    return result


def _decode_point(data: bytes) -> _Point | None:
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P or (x == 0 and sign):
        return None
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _base_point() -> _Point:
    point = _decode_point((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))
    if point is None:
        raise AssertionError("the Ed25519 base point (y = 4/5) must decode")
    return point


_BASE = _base_point()


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``
    (32 raw bytes). Pure Python: slow (milliseconds), fine for one manifest."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = _decode_point(public_key), _decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    digest = hashlib.sha512(signature[:32] + public_key + message).digest()
    h = int.from_bytes(digest, "little") % _L
    left, right = _times(s, _BASE), _add(r, _times(h, a))
    return (left[0] * right[2] - right[0] * left[2]) % _P == 0 and (
        left[1] * right[2] - right[1] * left[2]
    ) % _P == 0


_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # DER SubjectPublicKeyInfo, Ed25519


def read_public_key(path: str) -> bytes:
    """The 32 raw bytes of the Ed25519 public key in the PEM file ``path``."""
    try:
        text = Path(path).read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--public-key {path}: cannot read it ({exc})") from None
    found = re.search(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", text, re.S)
    if not found:
        hint = " (it holds a private key: give the public one)" if "PRIVATE KEY" in text else ""
        raise UsageError(f"--public-key {path}: not a PEM public key{hint}")
    try:
        der = base64.b64decode("".join(found.group(1).split()), validate=True)
    except binascii.Error:
        der = b""
    if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
        raise UsageError(
            f"--public-key {path}: not an Ed25519 public key (keel signs with Ed25519)"
        )
    return der[12:]


# ---------------------------------------------------------------- paths and archives
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\:]")
_SPECIAL = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


def safe_parts(name: str, what: str) -> tuple[str, ...]:
    """``name`` split into path parts that stay inside a folder, or BundleError."""
    if name.startswith("/"):
        raise BundleError(f"{what} is an absolute path, outside the bundle")
    if _FORBIDDEN.search(name):
        raise BundleError(f"{what} has a backslash, colon or control character")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise BundleError(f"{what} climbs out of the bundle with '..'")
    if not parts:
        raise BundleError(f"{what} is an empty path")
    return parts


def _plan_members(members: list[tarfile.TarInfo]) -> list[tuple[tarfile.TarInfo, tuple]]:
    plan, seen, files = [], set(), set()
    for m in members:
        what = f"archive member {m.name!r}"
        if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
            kind = _SPECIAL.get(m.type, f"of tar type {m.type!r}")
            raise BundleError(f"{what} is {kind}; a bundle holds only plain files and folders")
        if m.isdir() and not [p for p in m.name.split("/") if p not in ("", ".")]:
            continue  # the archive's own root ("./")
        parts = safe_parts(m.name, what)
        if parts in seen:
            raise BundleError(f"{what} appears twice")
        seen.add(parts)
        if m.isfile():
            files.add(parts)
        plan.append((m, parts))
    for m, parts in plan:
        for i in range(1, len(parts)):
            if parts[:i] in files:
                raise BundleError(f"archive member {m.name!r} lies inside a file")
    if not plan:
        raise BundleError("the archive is empty")
    return plan


def safe_extract(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into the new folder ``dest`` and return the bundle folder in it.

    Every member is checked before anything is written; the files are written into a
    temporary sibling of ``dest`` that is renamed into place, so a refused archive leaves
    nothing behind."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} already exists and is not an empty folder")
    try:
        tar = tarfile.open(archive, "r:*")
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise BundleError(f"{archive.name} is not a readable tar archive ({exc})") from None
    with tar:
        try:
            plan = _plan_members(tar.getmembers())
        except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
            raise BundleError(f"{archive.name} is a damaged tar archive ({exc})") from None
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".keel-unpack-", dir=dest.parent))
        try:
            _write_members(tar, plan, staging)
            if dest.exists():
                dest.rmdir()
            os.rename(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    tops = {parts[0] for _, parts in plan}
    if len(tops) == 1 and all(len(p) > 1 or m.isdir() for m, p in plan):
        return dest / tops.pop()
    return dest


def _write_members(tar: tarfile.TarFile, plan: list, staging: Path) -> None:
    base = os.path.realpath(staging)
    for member, parts in plan:
        target = staging.joinpath(*parts)
        real = os.path.realpath(target)
        if os.path.commonpath([base, real]) != base or real == base:
            raise BundleError(f"archive member {member.name!r} lands outside the folder")
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            source = tar.extractfile(member)
            if source is None:  # _plan_members lets only regular files and folders through
                raise BundleError(f"archive member {member.name!r} is not a regular file")
            with source as src, open(target, "xb") as out:
                shutil.copyfileobj(src, out)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise BundleError(f"archive member {member.name!r} cannot be read ({exc})") from None


# ---------------------------------------------------------------- checking a bundle folder
def verify_folder(
    folder: Path,
    public_key: bytes | None = None,
    check_signature: Callable[[bytes, bytes, bytes], bool] = ed25519_verify,
) -> dict[str, Any]:
    """The manifest of the bundle in ``folder`` once every check passed, else BundleError.

    With ``public_key`` (32 raw bytes) manifest.sig must exist and sign manifest.json; the
    signature is checked before the manifest is even parsed."""
    path = folder / MANIFEST
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{MANIFEST} is missing: {folder} is not a keel bundle")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    data = path.read_bytes()
    if public_key is not None:
        _check_signature(folder, data, public_key, check_signature)
    manifest = parse_manifest(data)
    _check_files(folder, manifest["files"])
    return manifest


def _check_signature(folder: Path, data: bytes, key: bytes, check: Callable) -> None:
    sig = folder / SIGNATURE
    if sig.is_symlink() or not sig.is_file():
        raise BundleError(
            f"{SIGNATURE} is missing: the bundle is not signed, but a public key was given"
        )
    if not check(key, data, sig.read_bytes()):
        raise BundleError(
            f"{MANIFEST} does not match {SIGNATURE} under the given public key "
            f"(sha256 {hashlib.sha256(key).hexdigest()[:16]}): the manifest was modified, "
            "or another key signed it"
        )


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Parse manifest.json and check its shape (not the files it lists)."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BundleError(f"{MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise BundleError(f"{MANIFEST}: format is {got!r}, expected {FORMAT!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{MANIFEST}: format_version {version!r} is not one this runner reads "
            f"({FORMAT_VERSION}); use the runner of the keel that wrote it"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL not in files or RUNNER not in files:
        raise BundleError(f"{MANIFEST}: 'files' must list {MODEL} and {RUNNER}")
    for name, entry in files.items():
        _check_entry(name, entry)
    _check_schema(manifest.get("input_schema"))
    if not isinstance(manifest.get("output_schema"), dict):
        raise BundleError(f"{MANIFEST}: 'output_schema' must be an object")
    return manifest


def _check_entry(name: str, entry: Any) -> None:
    what = f"{MANIFEST}: file {name!r}"
    if "/".join(safe_parts(name, what)) != name or name in (MANIFEST, SIGNATURE):
        raise BundleError(f"{what} is not a plain relative path of a bundle file")
    ok = isinstance(entry, dict) and isinstance(entry.get("size"), int)
    if not ok or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256"))):
        raise BundleError(f"{what} needs 'sha256' (64 hex digits) and 'size' (bytes)")


def _check_schema(schema: Any) -> None:
    if not isinstance(schema, list) or not schema:
        raise BundleError(f"{MANIFEST}: 'input_schema' must be a non-empty list")
    for i, col in enumerate(schema):
        if not isinstance(col, dict) or not isinstance(col.get("name"), str):
            raise BundleError(f"{MANIFEST}: input_schema[{i}] needs a 'name'")
        if col.get("type") not in INPUT_TYPES:
            raise BundleError(
                f"{MANIFEST}: input_schema[{i}] ({col['name']!r}) has type {col.get('type')!r}; "
                f"expected one of {', '.join(INPUT_TYPES)}"
            )
        shape = col.get("shape")
        if col["type"] == "tensor" and not (
            isinstance(shape, list)
            and shape
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        ):
            raise BundleError(
                f"{MANIFEST}: input_schema[{i}] ({col['name']!r}) is a tensor and needs "
                f"'shape', a list of sizes > 0 per row; got {shape!r}"
            )


def _check_files(folder: Path, files: dict[str, dict]) -> None:
    for rel in _walk(folder):
        if rel not in files and rel not in (MANIFEST, SIGNATURE):
            raise BundleError(f"{rel} is not listed in {MANIFEST}: a file was added")
    for name, entry in sorted(files.items()):
        path = folder.joinpath(*name.split("/"))
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise BundleError(f"{name} is missing (it is listed in {MANIFEST})") from None
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{name} is not a plain file")
        if st.st_size != entry["size"]:
            raise BundleError(
                f"{name} has changed: {st.st_size} bytes, {MANIFEST} says {entry['size']}"
            )
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise BundleError(
                f"{name} has changed: sha256 {digest[:12]}…, {MANIFEST} says "
                f"{entry['sha256'][:12]}…"
            )


def _walk(folder: Path) -> Iterator[str]:
    for root, dirs, names in os.walk(folder):
        for name in sorted(dirs + names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(f"{rel} is a symbolic link; a bundle holds only plain files")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise BundleError(f"{rel} is not a plain file")
            yield rel


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_model(folder: Path, manifest: dict[str, Any]) -> bytes:
    """model.onnx's bytes, hashed again as read (so what runs is what was checked)."""
    data = (folder / MODEL).read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest["files"][MODEL]["sha256"]:
        raise BundleError(f"{MODEL} changed while the bundle was being checked")
    return data


# ---------------------------------------------------------------- external data in ONNX
# Which fields of which ONNX protobuf messages hold sub-messages that may contain tensors.
_SUBMESSAGES: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
# The singular ones among them: protobuf merges every occurrence of such a field into one
# message, as if their bytes were concatenated (the repeated ones each stand alone).
_SINGULAR = {("model", 7), ("training", 1), ("training", 2), ("attribute", 5)}
_SINGULAR |= {("attribute", 6), ("attribute", 22), ("sparse", 1), ("sparse", 2)}
_EXTERNAL = 1  # TensorProto.DataLocation: 0 DEFAULT, 1 EXTERNAL; protobuf skips other values
_ORT_MEMORY = "_ORT_MEM_ADDR_"  # onnxruntime reads "*/_ORT_MEM_ADDR_/*" from a memory address
_MASK32, _MASK64 = (1 << 32) - 1, (1 << 64) - 1


def external_data_refs(model: bytes) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor of the serialized ONNX ``model`` that keeps
    its data in an external file; read from the protobuf wire format, without onnx.

    Read as protobuf (and so onnxruntime) reads it: 10-byte varints, bits past 64 dropped,
    tags and enums cut to 32 bits, the last known value of data_location kept, and repeats of
    a singular message field merged. Every location a tensor names is listed, whatever its
    data_location says; a tensor marked external without one is listed with location ''."""
    refs: list[tuple[str, str]] = []
    try:
        _scan(memoryview(model), "model", refs, 0)
    except (IndexError, ValueError) as exc:
        raise BundleError(f"{MODEL} is not a valid ONNX file ({exc})") from None
    return refs


def check_external_data(manifest: dict[str, Any], refs: list[tuple[str, str]]) -> None:
    """Refuse external data that is not a bundle file the manifest lists (and hashes)."""
    for tensor, location in refs:
        what = f"{MODEL}: tensor {tensor!r} reads external data from {location!r}, which"
        if _ORT_MEMORY in location:
            raise BundleError(f"{what} holds onnxruntime's in-memory marker {_ORT_MEMORY}")
        if "/".join(safe_parts(location, what)) not in manifest["files"]:
            raise BundleError(f"{what} is not a file {MANIFEST} lists")


def _scan(buf: memoryview, kind: str, refs: list, depth: int) -> None:
    if depth > 64:
        raise ValueError("nested too deeply")
    if kind == "tensor":
        _scan_tensor(buf, refs)
        return
    children = _SUBMESSAGES[kind]
    merged: dict[int, list[memoryview]] = {}
    for field, wire, value in _fields(buf):
        if wire != 2 or field not in children:
            continue
        if (kind, field) in _SINGULAR:
            merged.setdefault(field, []).append(value)
        else:
            _scan(value, children[field], refs, depth + 1)
    for field, parts in merged.items():
        whole = parts[0] if len(parts) == 1 else memoryview(b"".join(parts))
        _scan(whole, children[field], refs, depth + 1)


def _scan_tensor(buf: memoryview, refs: list) -> None:
    name, locations, external = "", [], False
    for field, wire, value in _fields(buf):
        if field == 8 and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif field == 14 and wire == 0 and _int32(value) in (0, _EXTERNAL):
            external = _int32(value) == _EXTERNAL
        elif field == 13 and wire == 2:
            entry = {f: v for f, w, v in _fields(value) if w == 2}  # the last of each wins
            if bytes(entry.get(1, b"")) == b"location":
                locations.append(_location(entry.get(2, b"")))
    if external or locations:
        refs.extend((name, loc) for loc in locations or [""])


def _location(value: memoryview | bytes) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"external data location {bytes(value)!r} is not UTF-8") from None


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of one message, as protobuf reads
    them; what protobuf would refuse (or skip as a group) is a ValueError."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, 5)
        field, wire = (key & _MASK32) >> 3, key & 7
        value: int | memoryview | None = None
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, 10)
        elif wire == 2:
            size, pos = _varint(buf, pos, 5)
            if size >= 1 << 31:
                raise ValueError("a field of 2 GiB or more")
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        yield field, wire, value


def _varint(buf: memoryview, pos: int, limit: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it, read as protobuf reads one: at most
    ``limit`` bytes (10 for a value, 5 for a tag or a length), bits past 64 dropped."""
    result = 0
    for i in range(limit):
        byte = buf[pos + i]
        result |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return result & _MASK64, pos + i + 1
    raise ValueError(f"a varint longer than protobuf reads ({limit} bytes)")


def _int32(value: int) -> int:
    """A varint read into an int32 or enum field, as protobuf does: its low 32 bits, signed."""
    value &= _MASK32
    return value - (1 << 32) if value >> 31 else value


# ---------------------------------------------------------------- rows in, answers out
def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)[:60]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number, got {_show(value)}")
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {_show(value)}") from None
    if math.isinf(x):
        raise ValueError(f"expected a finite number, got {_show(value)}")
    return None if math.isnan(x) else x


def _integer(value: Any) -> int | None:
    x = _number(value)
    if x is not None and not x.is_integer():
        raise ValueError(f"expected an integer, got {_show(value)}")
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    return None if x is None else int(x)


def _boolean(value: Any) -> bool:
    text = str(value).strip().lower() if not isinstance(value, (dict, list)) else ""
    if text in ("true", "t", "yes", "y", "1", "1.0"):
        return True
    if text in ("false", "f", "no", "n", "0", "0.0"):
        return False
    raise ValueError(f"expected true or false, got {_show(value)}")


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected text, got {_show(value)}")
    return value if isinstance(value, str) else str(value)


def _tensor(value: Any, shape: list[int]) -> np.ndarray:
    """One row's tensor from nested lists of numbers, of exactly ``shape``."""
    if not isinstance(value, list):
        raise ValueError(f"expected nested lists of numbers of shape {shape}, got {_show(value)}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise ValueError(
            f"expected nested lists of numbers of shape {shape} (equal lengths, numbers only)"
        ) from None
    if list(arr.shape) != list(shape):
        raise ValueError(f"expected shape {list(shape)}, got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"shape {list(shape)} holds NaN or infinite values")
    return arr.astype(np.float32)


def _datetime(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO 8601 date-time, got {_show(value)}") from None


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "float": _number,
    "int": _integer,
    "bool": _boolean,
    "string": _text,
    "category": _text,
    "datetime": _datetime,
}


def check_row(
    record: dict[str, Any], schema: list[dict], required: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """The row's values by column (None where missing) and the problems found."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for col in schema:
        name = col["name"]
        if name not in record:
            problems.append(f"column {name!r}: missing")
            continue
        raw = record[name]
        try:
            null = raw is None or (isinstance(raw, str) and raw.strip() in NULL_VALUES)
            if col["type"] == "tensor":
                value = None if raw is None else _tensor(raw, col["shape"])
            else:
                value = None if null else _PARSERS[col["type"]](raw)
        except ValueError as exc:
            problems.append(f"column {name!r}: {exc}")
            continue
        if value is None and name in required:
            problems.append(f"column {name!r}: a value is required (model input {required[name]})")
        values[name] = value
    return values, problems


def read_rows(stream: io.TextIOBase, fmt: str) -> Iterator[tuple[int, dict | None, str]]:
    """(row number, record or None, problem) for each row of a CSV or JSON-lines stream."""
    if fmt == "csv":
        for n, row in enumerate(csv.DictReader(stream), 1):
            yield n, {k: v for k, v in row.items() if k is not None and v is not None}, ""
        return
    n = 0
    for line in stream:
        if not line.strip():
            continue
        n += 1
        try:
            record = json.loads(line)
        except ValueError as exc:
            yield n, None, f"not valid JSON ({exc.args[0][:80]})"
            continue
        if isinstance(record, dict):
            yield n, record, ""
        else:
            yield n, None, f"expected a JSON object, got {_show(record)}"


def request_uniform(seed: int, request_id: str, row: int = 0) -> float:
    """Row ``row`` of request ``request_id``'s draw: keel.models._mitigated.request_uniforms,
    copied so that the runner needs nothing of keel."""
    key = f"keel-draw:{int(seed)}".encode()
    digest = hashlib.blake2b(f"{request_id}\x00{row}".encode(), digest_size=8, key=key)
    return (int.from_bytes(digest.digest(), "big") >> 40) / 16777216.0


def draw_seed(session: Any) -> int | None:
    """The seed of a randomized graph's draws (metadata keel.draw); None without a draw."""
    inputs = {i.name: i.type for i in session.get_inputs()}
    if DRAW not in inputs:
        return None
    meta = session.get_modelmeta().custom_metadata_map
    try:
        info = json.loads(meta.get("keel.draw", ""))
    except ValueError:
        info = None
    seed = info.get("seed") if isinstance(info, dict) else None
    ok = isinstance(info, dict) and info.get("scheme") == DRAW_SCHEME
    if not ok or inputs[DRAW] != "tensor(float)" or type(seed) is not int or seed < 0:
        raise BundleError(f"model input {DRAW!r} has no valid keel.draw metadata ({DRAW_SCHEME})")
    return seed


_NUMPY: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}
_FITS = {
    "tensor(string)": set(INPUT_TYPES),
    "tensor(bool)": {"bool"},
    "tensor(int64)": {"int", "bool"},
    "tensor(int32)": {"int", "bool"},
}


class Scorer:
    """An onnxruntime session fed by the feed convention: one input per raw column, named
    as the column, shape [N, 1] (or [N]), cast to the input's declared type."""

    def __init__(
        self, session: Any, manifest: dict[str, Any], id_column: str = "request_id"
    ) -> None:
        self.session = session
        self.draw_seed = draw_seed(session)
        self.id_column = id_column
        out = manifest["output_schema"]
        self.regression = out.get("task") == "regression"
        self.classes = [str(c) for c in out["classes"]] if out.get("classes") else None
        self.schema = manifest["input_schema"]
        self.inputs = plan_inputs(session, self.schema)
        names = [o.name for o in session.get_outputs()]
        if "label" in names:
            self.outputs = ["label"] + (["probabilities"] if "probabilities" in names else [])
            if self.draw_seed is not None and DECISION_PROBABILITY in names:
                self.outputs.append(DECISION_PROBABILITY)
        else:
            self.outputs = names[:2]
        holds_missing = ("tensor(float)", "tensor(double)", "tensor(string)")
        self.tensors = {c["name"] for c in self.schema if c["type"] == "tensor"}
        self.required = {
            n: t for n, t, _ in self.inputs if t not in holds_missing or n in self.tensors
        }

    def score(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        feeds = {}
        for name, ort_type, rank in self.inputs:
            if name in self.tensors:
                feeds[name] = np.stack([r[name] for r in rows]).astype(_NUMPY[ort_type])
                continue
            column = np.array([_feed_value(r[name], ort_type) for r in rows], _NUMPY[ort_type])
            feeds[name] = column.reshape(-1, 1) if rank == 2 else column
        if self.draw_seed is not None:
            draws = [request_uniform(self.draw_seed, r[_ID]) for r in rows]
            feeds[DRAW] = np.asarray(draws, dtype=np.float32).reshape(-1, 1)
        results = self.session.run(self.outputs, feeds)
        return [self._answer(results, i) for i in range(len(rows))]

    def _answer(self, results: list, i: int) -> dict[str, Any]:
        first = _plain(np.asarray(results[0][i]).ravel()[0])
        if self.regression:
            return {"prediction": first}
        answer = {"label": first}
        if len(results) > 1:
            answer["probabilities"] = self._probabilities(results[1][i])
        if len(results) > 2:
            answer[DECISION_PROBABILITY] = _plain(np.asarray(results[2][i]).ravel()[0])
        return answer

    def _probabilities(self, row: Any) -> dict[str, float]:
        if isinstance(row, dict):  # a ZipMap output
            return {str(_plain(k)): _plain(v) for k, v in row.items()}
        row = np.asarray(row).ravel()
        names = self.classes or [str(i) for i in range(len(row))]
        if len(names) != len(row):
            raise BundleError(
                f"output_schema lists {len(names)} classes, the model gives {len(row)} "
                "probabilities"
            )
        return {names[j]: _plain(row[j]) for j in range(len(row))}


def plan_inputs(session: Any, schema: list[dict]) -> list[tuple[str, str, int]]:
    """(name, declared type, rank) of each model input, checked against the schema."""
    kinds = {c["name"]: c["type"] for c in schema}
    shapes = {c["name"]: c.get("shape") for c in schema}
    plan = []
    for inp in session.get_inputs():
        if inp.name == DRAW and inp.name not in kinds:
            continue  # fed by Scorer from the row's request id
        kind, rank = kinds.get(inp.name), len(inp.shape or [None])
        if kind is None:
            raise BundleError(f"model input {inp.name!r} is not a column of the input_schema")
        if kind == "tensor":
            per_row = [d if isinstance(d, int) else None for d in (inp.shape or [])[1:]]
            if inp.type not in ("tensor(float)", "tensor(double)") or per_row != shapes[inp.name]:
                raise BundleError(
                    f"model input {inp.name!r} is {inp.type} [N, {', '.join(map(str, per_row))}]"
                    f"; the input_schema declares float [N, "
                    f"{', '.join(map(str, shapes[inp.name] or []))}]"
                )
            plan.append((inp.name, inp.type, rank))
            continue
        if inp.type not in _NUMPY or rank not in (1, 2):
            raise BundleError(f"model input {inp.name!r} is {inp.type} of rank {rank}: unfed")
        if kind not in _FITS.get(inp.type, {"float", "int", "bool", "datetime"}):
            raise BundleError(f"column {inp.name!r} is {kind}, but the model reads {inp.type}")
        plan.append((inp.name, inp.type, rank))
    return plan


def _feed_value(value: Any, ort_type: str) -> Any:
    if ort_type == "tensor(string)":
        if value is None:
            return ""
        return value.isoformat() if isinstance(value, datetime) else str(value)
    if value is None:
        return math.nan
    if isinstance(value, datetime):
        utc = value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # noqa: UP017 (3.10)
        return utc.timestamp()
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.float32):
        value = float(str(value))  # the shortest decimal that round-trips in float32
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


# ---------------------------------------------------------------- --only-if
_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_GRAMMAR = "p[CLASS] OP NUMBER, probability(CLASS) OP NUMBER, label == VALUE, prediction OP NUMBER"


def parse_condition(text: str) -> tuple[str, str | None, str, Any]:
    """(subject, class, operator, value) of one --only-if condition, or UsageError."""
    s, key = text.strip(), None
    bad = UsageError(f"--only-if {text!r}: expected {_GRAMMAR} (OP: == != > >= < <=)")
    word = re.match(r"(label|prediction)\b", s)
    opener = next((o for o in _CLOSERS if s.startswith(o)), "")
    if word:
        subject, rest = word.group(1), s[word.end() :]
    elif opener:
        subject = "p"
        key, rest = _take(s[len(opener) :], _CLOSERS[opener], bad)
    else:
        raise bad
    found = re.match(r"\s*(==|!=|>=|<=|>|<)\s*(.*?)\s*$", rest, re.S)
    if not found or not found.group(2):
        raise bad
    op, raw = found.groups()
    if subject != "label":
        try:
            return subject, key, op, float(raw)
        except ValueError:
            raise UsageError(f"--only-if {text!r}: {raw!r} is not a number") from None
    if op not in ("==", "!="):
        raise UsageError(f"--only-if {text!r}: a label compares only with == or !=")
    if raw[0] in "'\"":
        raw, rest = _take(raw, "", bad)
        if rest.strip():
            raise bad
    return subject, key, op, raw


_CLOSERS = {"p[": "]", "probability(": ")"}


def _take(body: str, close: str, bad: UsageError) -> tuple[str, str]:
    """A quoted or bare value at the start of ``body`` (bare: up to ``close``), and the rest
    after ``close``."""
    body = body.lstrip()
    if body[:1] in ("'", '"'):
        end = body.find(body[0], 1)
        if end < 0:
            raise bad
        value, rest = body[1:end], body[end + 1 :].lstrip()
    else:
        end = body.find(close) if close else -1
        if end < 0:
            raise bad
        value, rest = body[:end].strip(), body[end:]
    if not rest.startswith(close):
        raise bad
    return value, rest[len(close) :]


def check_condition(cond: tuple, scorer: Scorer, text: str) -> None:
    subject, key = cond[0], cond[1]
    if (subject == "prediction") != scorer.regression:
        kind = "regression" if scorer.regression else "classification"
        raise UsageError(f"--only-if {text!r}: cannot be used with this {kind} model")
    if subject == "p" and (scorer.classes is None or key not in scorer.classes):
        known = ", ".join(map(repr, scorer.classes or []))
        raise UsageError(f"--only-if {text!r}: unknown class {key!r}; the classes are {known}")


def matches(cond: tuple, answer: dict[str, Any]) -> bool:
    subject, key, op, value = cond
    if subject == "p":
        left: Any = answer.get("probabilities", {}).get(key)
    else:
        left = answer[subject] if subject == "prediction" else str(answer["label"])
    return left is not None and bool(_OPS[op](left, value))


# ---------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runner.py",
        description="Check a keel bundle, then answer each input row with a prediction or "
        "an error, as JSON lines on stdout.",
    )
    p.add_argument("bundle", help="the bundle: a folder or a .tar.gz")
    p.add_argument("--input", default="-", help="CSV or JSON-lines file; '-' reads stdin")
    p.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name")
    p.add_argument("--public-key", metavar="PEM", help="the Ed25519 key that must sign it")
    p.add_argument(
        "--no-signature-check",
        action="store_true",
        help="run a signed bundle without checking its signature (a warning says so)",
    )
    p.add_argument("--only-if", action="append", default=[], metavar="EXPR", help=_GRAMMAR)
    p.add_argument("--batch-size", type=_positive, default=512, help="rows per model call")
    p.add_argument("--verify-only", action="store_true", help="check the bundle and stop")
    p.add_argument(
        "--request-id",
        default="request_id",
        metavar="COLUMN",
        help="the column holding each row's request id, from which a fairness-mitigated "
        "model draws its decision (default: request_id)",
    )
    return p


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def open_bundle(path: Path, scratch: Path) -> Path:
    if path.is_dir():
        return path
    if path.is_file():
        return safe_extract(path, scratch)
    raise UsageError(f"{path}: no such bundle folder or archive")


def stage_model(
    folder: Path, model: bytes, manifest: dict[str, Any], refs: list, dest: Path
) -> Path:
    """Write ``model`` (the checked bytes of model.onnx) into the new folder ``dest``, with a
    copy of each bundle file its external data names (hash-checked again as copied), and
    return the model's path there.

    onnxruntime resolves an external-data location against the folder of the model file it
    loads (and against the working directory for a model given as bytes), so a model loaded
    from ``dest`` reads nothing but what was checked, whatever the model says."""
    dest.mkdir(mode=0o700)
    path = dest / MODEL
    path.write_bytes(model)
    for _, location in refs:
        name = "/".join(safe_parts(location, f"external data location {location!r}"))
        target = dest.joinpath(*name.split("/"))
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_checked(folder.joinpath(*name.split("/")), target, name, manifest["files"][name])
    return path


def _copy_checked(source: Path, target: Path, name: str, entry: dict[str, Any]) -> None:
    digest, size = hashlib.sha256(), 0
    with open(source, "rb") as src, open(target, "xb") as out:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
            out.write(block)
    if digest.hexdigest() != entry["sha256"] or size != entry["size"]:
        raise BundleError(f"{name} changed while the bundle was being checked")


def load_session(model: Path) -> Any:
    """An onnxruntime session for the model file ``model`` (written by ``stage_model``)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("onnxruntime is not installed: pip install onnxruntime numpy") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unexported classes
        raise BundleError(f"{MODEL} cannot be loaded by onnxruntime ({exc})") from None


def _open_input(args: argparse.Namespace) -> tuple[io.TextIOBase, str]:
    fmt = args.format or ("jsonl" if args.input.endswith((".jsonl", ".ndjson", ".json")) else "csv")
    if args.input == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline=""), fmt
    try:
        return open(args.input, encoding="utf-8-sig", newline=""), fmt
    except OSError as exc:
        raise UsageError(f"--input {args.input}: {exc.strerror}") from None


def _score_all(scorer: Scorer, rows: Iterator, conditions: list, size: int) -> tuple[int, int]:
    counts = [0, 0]
    batch: list[tuple[int, dict | None, str]] = []
    for n, record, problem in rows:
        values = None
        if not problem:
            values, problems = check_row(record or {}, scorer.schema, scorer.required)
            if scorer.draw_seed is not None:
                values[_ID] = _request_id(record or {}, scorer.id_column, problems)
            problem = "; ".join(problems)
        batch.append((n, None if problem else values, problem))
        if len(batch) >= size:
            _flush(scorer, batch, conditions, counts)
    _flush(scorer, batch, conditions, counts)
    return counts[0], counts[1]


def _request_id(record: dict[str, Any], column: str, problems: list[str]) -> str:
    raw = record.get(column)
    if isinstance(raw, bool) or not isinstance(raw, str | int) or not str(raw).strip():
        problems.append(
            f"column {column!r}: a request id is required: this model draws each decision "
            "at random, from the request id (the same id gets the same decision)"
        )
        return ""
    return str(raw)


def _flush(scorer: Scorer, batch: list, conditions: list, counts: list) -> None:
    good = [values for _, values, _ in batch if values is not None]
    try:
        answers = iter(scorer.score(good) if good else [])
    except BundleError:
        raise
    except Exception:  # one bad row must not sink the batch: answer row by row
        answers = iter([_score_one(scorer, v) for v in good])
    for n, values, problem in batch:
        answer = next(answers) if values is not None else {"error": problem}
        counts[0] += 1
        counts[1] += "error" in answer
        if "error" in answer or all(matches(c, answer) for c in conditions):
            sys.stdout.write(json.dumps({"row": n, **answer}) + "\n")
    sys.stdout.flush()
    batch.clear()


def _score_one(scorer: Scorer, values: dict[str, Any]) -> dict[str, Any]:
    try:
        return scorer.score([values])[0]
    except BundleError:
        raise
    except Exception as exc:
        return {"error": f"the model failed on this row ({str(exc).splitlines()[0][:200]})"}


def run(args: argparse.Namespace, scratch: Path) -> int:
    conditions = [(parse_condition(t), t) for t in args.only_if]
    if args.public_key and args.no_signature_check:
        raise UsageError("--public-key and --no-signature-check contradict each other")
    key = read_public_key(args.public_key) if args.public_key else None
    folder = open_bundle(Path(args.bundle), scratch / "bundle")
    manifest = verify_folder(folder, key)
    signed = os.path.lexists(folder / SIGNATURE)
    if signed and key is None and not args.no_signature_check:
        raise UsageError(
            f"the bundle is signed ({SIGNATURE}), but no key was given to check it: pass the "
            "signer's public key with --public-key PEM (or, to run it unchecked, "
            "--no-signature-check)"
        )
    if key is None:
        print(f"runner: warning: {_UNCHECKED[signed]}", file=sys.stderr)
    model = read_model(folder, manifest)
    refs = external_data_refs(model)
    check_external_data(manifest, refs)
    if args.verify_only:
        info = manifest.get("model", {})
        print(f"runner: bundle OK: {info.get('name')} version {info.get('version')}")
        return 0
    staged = stage_model(folder, model, manifest, refs, scratch / "model")
    scorer = Scorer(load_session(staged), manifest, args.request_id)
    for cond, text in conditions:
        check_condition(cond, scorer, text)
    stream, fmt = _open_input(args)
    tensors = [c for c in manifest["input_schema"] if c["type"] == "tensor"]
    if fmt == "csv" and tensors:
        stream.close()
        col = tensors[0]
        raise UsageError(
            f"CSV input is not supported for tensor inputs: {col['name']!r} is a tensor of "
            f"shape {col['shape']} per row; give JSON lines (--format jsonl), one object per "
            f'row such as {{"{col["name"]}": [nested lists of shape {col["shape"]}]}}'
        )
    with stream:
        try:
            rows = read_rows(stream, fmt)
            total, bad = _score_all(scorer, rows, [c for c, _ in conditions], args.batch_size)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UsageError(f"--input {args.input}: unreadable ({exc})") from None
    print(f"runner: {total} rows answered, {bad} with errors", file=sys.stderr)
    return 0


_UNCHECKED = {
    True: f"the signature ({SIGNATURE}) was NOT checked (--no-signature-check): the files "
    f"match {MANIFEST}, but whoever could change them could have rewritten it too",
    False: f"the bundle is unsigned (no {SIGNATURE}): who made it was NOT checked; the files "
    f"match {MANIFEST}, but whoever could change them could have rewritten it too",
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="keel-runner-") as scratch:
            return run(args, Path(scratch))
    except BundleError as exc:
        print(f"runner: bundle refused: {exc}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `| head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
