"""Saving and loading models without ever unpickling.

A saved model is a JSON manifest blob (format name and version, flavor, schemas, and the
sha256 of each component blob). Components are skops files, loaded only after every type
they name is checked against an allow-list, or a library's own text format (LightGBM).
Loading goes in three steps, as skops does: parse, check, build.
"""

from __future__ import annotations

import json
from typing import Any

from keel.errors import InvalidInput, UnsafeArtifact
from keel.models import _mitigated
from keel.models._adapters import LightGBMModel, SklearnModel
from keel.models._onnx import OnnxModel
from keel.types import BlobStore

__all__ = ["FORMAT", "FORMAT_VERSION", "load_model", "save_model", "trusted_type"]

FORMAT = "keel-model"
FORMAT_VERSION = 1

# Modules whose classes a keel model may contain. Functions and classes from anywhere else
# (os.system, builtins.eval, a user's module) are refused before anything is built.
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.")
_TRUSTED_EXACT = {
    "builtins.slice",
    "collections.OrderedDict",
    "collections.defaultdict",
    # differentially private estimators: plain arrays after fit (see keel.models._dp)
    "keel.models._dp.DPGaussianNB",
    "keel.models._dp.DPLogisticRegression",
}


def trusted_type(name: str) -> bool:
    """Whether a type named in a skops file may be built: scikit-learn, NumPy, SciPy sparse,
    and exactly the transformer classes keel.features declares."""
    from keel.features import TRUSTED_TYPES

    if name in _TRUSTED_EXACT or name in TRUSTED_TYPES:
        return True
    return name.startswith(_TRUSTED_PREFIXES) and "._testing" not in name


def _skops_dumps(obj: Any) -> bytes:
    import skops.io as sio

    return bytes(sio.dumps(obj))


def _skops_loads(data: bytes, what: str) -> Any:
    import skops.io as sio

    if data[:2] != b"PK":
        raise UnsafeArtifact(
            f"{what}: not a skops file{_pickle_hint(data)}; keel never unpickles model files"
        )
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise UnsafeArtifact(f"{what}: unreadable skops file ({exc.__class__.__name__})") from None
    refused = sorted(t for t in untrusted if not trusted_type(t))
    if refused:
        raise UnsafeArtifact(
            f"{what}: names types keel does not trust: {', '.join(refused[:5])}; refusing to load"
        )
    return sio.loads(data, trusted=list(untrusted))


def _pickle_hint(data: bytes) -> str:
    return " (it is a Python pickle)" if data[:1] == b"\x80" else ""


def save_model(model: Any, blobs: BlobStore) -> str:
    """Store ``model``'s components and its manifest; return the manifest's sha256."""
    components: dict[str, dict[str, str]] = {}
    if isinstance(model, LightGBMModel):
        components["transformer"] = {
            "sha": blobs.put_bytes(_skops_dumps(model.transformer)),
            "format": "skops",
        }
        text = model.booster.model_to_string()
        components["booster"] = {"sha": blobs.put_bytes(text.encode()), "format": "lightgbm-text"}
    elif isinstance(model, OnnxModel):
        components["graph"] = {"sha": blobs.put_bytes(model.onnx_bytes), "format": "onnx"}
    elif isinstance(model, _mitigated.ThresholdedModel | _mitigated.EnsembleModel):
        components = _mitigated.save_components(model, blobs)
    elif isinstance(model, SklearnModel):
        components["pipeline"] = {
            "sha": blobs.put_bytes(_skops_dumps(model.pipeline)),
            "format": "skops",
        }
    else:
        raise InvalidInput(
            f"save_model: expected a keel model adapter (SklearnModel, LightGBMModel, OnnxModel), "
            f"got {type(model).__name__}"
        )
    import keel

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "flavor": model.flavor,
        "task": model.task,
        "input_schema": model.input_schema,
        "output_schema": model.output_schema,
        "classes": model.classes_,
        "components": components,
        "keel_version": keel.__version__,
    }
    return blobs.put_bytes(json.dumps(manifest, sort_keys=True).encode())


def read_manifest(blobs: BlobStore, sha: str) -> dict[str, Any]:
    data = blobs.get_bytes(sha)  # verifies the sha256
    what = f"model artifact {sha[:12]}…"
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnsafeArtifact(
            f"{what} is not a keel model manifest{_pickle_hint(data)}; keel never unpickles"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UnsafeArtifact(
            f"{what}: expected format {FORMAT!r}, got {manifest.get('format')!r}"
            if isinstance(manifest, dict)
            else f"{what}: expected a JSON object"
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise UnsafeArtifact(
            f"{what}: format_version {version!r} is not one this keel reads "
            f"({FORMAT_VERSION}); upgrade keel"
        )
    return manifest


def _refuse_external_data(graph: bytes) -> None:
    """A stored graph must carry all its weights: no file outside the store is ever read."""
    import onnx

    proto = onnx.load_from_string(graph)
    messages: list[Any] = [proto]  # every message in it, so every tensor (sparse ones too)
    while messages:
        tensor = messages.pop()
        if isinstance(tensor, onnx.TensorProto) and (
            tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data)
        ):
            raise UnsafeArtifact(
                f"graph: tensor {tensor.name!r} points at external data; a stored model must "
                "hold its weights itself"
            )
        for field, value in tensor.ListFields():
            if field.message_type is not None:
                messages.extend([value] if hasattr(value, "ListFields") else value)


def load_model(
    blobs: BlobStore, sha: str
) -> (
    LightGBMModel
    | SklearnModel
    | OnnxModel
    | _mitigated.ThresholdedModel
    | _mitigated.EnsembleModel
):
    """Parse the manifest, check every component, then build the model."""
    m = read_manifest(blobs, sha)
    parts = m.get("components", {})
    flavor = m.get("flavor")
    if flavor == "lightgbm":
        import lightgbm as lgb

        transformer = _skops_loads(blobs.get_bytes(parts["transformer"]["sha"]), "transformer")
        text = blobs.get_bytes(parts["booster"]["sha"]).decode("utf-8")
        if not text.startswith("tree\n"):
            raise UnsafeArtifact("booster: not a LightGBM text model")
        booster = lgb.Booster(model_str=text)
        return LightGBMModel(transformer, booster, m["task"], m["input_schema"], m["classes"])
    if flavor == "sklearn":
        pipeline = _skops_loads(blobs.get_bytes(parts["pipeline"]["sha"]), "pipeline")
        return SklearnModel(pipeline, m["task"], m["input_schema"], m["classes"])
    if flavor == "onnx":
        from keel.models._graph import check_graph

        graph = blobs.get_bytes(parts["graph"]["sha"])
        _refuse_external_data(graph)
        check_graph(graph)  # parses, checks the wiring, builds a session
        return OnnxModel(graph, m["task"], m["input_schema"], m["classes"])
    if flavor in _mitigated.FLAVORS:
        return _mitigated.load_mitigated(blobs, m)
    raise UnsafeArtifact(f"model artifact {sha[:12]}…: unknown flavor {flavor!r}")
