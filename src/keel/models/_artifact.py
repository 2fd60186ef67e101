"""Saving and loading models without ever unpickling.

A saved model is a JSON manifest blob (format name and version, flavor, schemas, and the
sha256 of each component blob). Components are skops files, loaded only after every type
they name is checked against an allow-list, or a library's own text format (LightGBM).
Loading goes in three steps, as skops does: parse, check, build.
"""

from __future__ import annotations

import functools
import importlib
import io
import json
import zipfile
from typing import Any

from keel.errors import InvalidInput, UnsafeArtifact
from keel.models import _mitigated
from keel.models._adapters import LightGBMModel, SklearnModel
from keel.models._onnx import OnnxModel
from keel.models._torch import TorchModel
from keel.types import BlobStore

__all__ = ["FORMAT", "FORMAT_VERSION", "load_model", "save_model", "trusted_type"]

FORMAT = "keel-model"
FORMAT_VERSION = 1

# Every class (beyond the ones skops trusts by default) that a keel model's skops files can
# hold: the models of keel's zoo with their fitted internals, keel's feature transform, the
# differentially private estimators, the members of a mitigated ensemble (zoo estimators),
# and the NumPy types skops writes arrays, scalars and random states with. Written down
# name by name, from saving every model kind for binary, multiclass and regression targets
# with every feature op and collecting what skops names. A name must also resolve to a
# class defined where the name says (see _refusal): skops imports the module a file names
# and takes the attribute with getattr, and modules re-export functions (numpy.lib.
# _datasource._open is builtins.open, sklearn.datasets._lfw.remove is os.remove).
# keel.features.TRUSTED_TYPES adds keel's own feature transformers.
_TRUSTED_CLASSES: frozenset[str] = frozenset(
    {
        # the one builtin skops may be asked about (ColumnTransformer keeps column slices)
        "builtins.slice",
        # keel.models._dp: plain arrays after fit
        "keel.models._dp.DPGaussianNB",
        "keel.models._dp.DPLogisticRegression",
        # NumPy: arrays, dtypes, the scalar types fitted attributes hold, random states
        "numpy.bool",
        "numpy.bytes_",
        "numpy.datetime64",
        "numpy.dtype",
        "numpy.float16",
        "numpy.float32",
        "numpy.float64",
        "numpy.int16",
        "numpy.int32",
        "numpy.int64",
        "numpy.int8",
        "numpy.ndarray",
        "numpy.random._generator.Generator",
        "numpy.random.mtrand.RandomState",
        "numpy.str_",
        "numpy.timedelta64",
        "numpy.uint16",
        "numpy.uint32",
        "numpy.uint64",
        "numpy.uint8",
        # HistGradientBoosting's losses and links (every loss keel's HGB kinds accept)
        "sklearn._loss._loss.CyAbsoluteError",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfGammaLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfPoissonLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyPinballLoss",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.AbsoluteError",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfGammaLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfPoissonLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.PinballLoss",
        # keel.features.compile_spec: the transform every model starts with
        "sklearn.compose._column_transformer.ColumnTransformer",
        # the zoo: random_forest
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.RandomForestRegressor",
        # the zoo: hist_gradient_boosting
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.impute._base.SimpleImputer",
        # the zoo: logistic_regression (ridge for regression)
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._ridge.Ridge",
        # the zoo: mlp (adam by default, sgd when asked)
        "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
        "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.MinMaxScaler",
        "sklearn.preprocessing._data.RobustScaler",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        # classifiers' label encodings
        "sklearn.preprocessing._label.LabelBinarizer",
        "sklearn.preprocessing._label.LabelEncoder",
        # a random forest's trees
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._tree.Tree",
    }
)


def trusted_type(name: str) -> bool:
    """Whether a type named in a skops file may be built: exactly one of the classes keel's
    models contain, defined in the module its name gives. Never a function."""
    return _refusal(name) is None


@functools.lru_cache(maxsize=256)
def _refusal(name: str) -> str | None:
    """Why the type ``name`` may not be built, or None when it may. Imports a module only
    for a name on the list (scikit-learn, NumPy and keel modules) and calls nothing."""
    from keel.features import TRUSTED_TYPES

    if name not in _TRUSTED_CLASSES and name not in TRUSTED_TYPES:
        return "not one of the classes keel's models contain"
    module_name, _, attr = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return f"its module does not import here ({exc.__class__.__name__})"
    obj = vars(module).get(attr)  # what getattr gives, without a module __getattr__
    if not isinstance(obj, type):
        return f"{module_name} has no class {attr!r} here"
    defined = f"{obj.__module__}.{obj.__qualname__}"
    if defined != name:
        return f"it is {defined}, not a class defined in {module_name}"
    return None


_NODE_KINDS = {"FunctionNode": "a function", "MethodNode": "a method"}


def _node_kinds(data: bytes) -> dict[str, str]:
    """Type name -> "a function" or "a method", for the nodes of a skops file that are."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        schema = json.loads(z.read("schema.json"))
    kinds: dict[str, str] = {}
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, list):
            todo.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = _NODE_KINDS.get(node.get("__loader__", ""))
        if kind is not None:
            name = f"{node.get('__module__')}.{node.get('__class__')}"
            content = node.get("content")
            if kind == "a method" and isinstance(content, dict):
                name = f"{name}.{content.get('func')}"
            kinds[name] = kind
        todo.extend(node.values())
    return kinds


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
        kinds = _node_kinds(data)
        why = [
            f"{t} ({kinds[t]}: keel loads classes only)" if t in kinds else f"{t} ({_refusal(t)})"
            for t in refused[:5]
        ]
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        raise UnsafeArtifact(
            f"{what}: names types keel does not trust: {'; '.join(why)}{more}; refusing to load"
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
    elif isinstance(model, TorchModel):
        components = _torch_components(model, blobs)
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


def _torch_components(model: TorchModel, blobs: BlobStore) -> dict[str, dict[str, str]]:
    """A torch model: its network spec (JSON), its weights (safetensors) and, for tabular
    inputs, keel's feature transform (skops)."""
    from keel.models._torch import net_spec_bytes, weights_to_bytes

    parts = {
        "network": {"sha": blobs.put_bytes(net_spec_bytes(model)), "format": "keel-torch-net"},
        "weights": {"sha": blobs.put_bytes(weights_to_bytes(model.state)), "format": "safetensors"},
    }
    if model.transformer is not None:
        parts["transformer"] = {
            "sha": blobs.put_bytes(_skops_dumps(model.transformer)),
            "format": "skops",
        }
    return parts


def _load_torch(blobs: BlobStore, m: dict[str, Any], parts: dict[str, Any]) -> TorchModel:
    from keel.models._torch import net_spec_from_bytes, weights_from_bytes

    for key, fmt in (("network", "keel-torch-net"), ("weights", "safetensors")):
        if parts.get(key, {}).get("format") != fmt:
            raise UnsafeArtifact(f"torch model: component {key!r} must be {fmt}")
    arch, kwargs = net_spec_from_bytes(blobs.get_bytes(parts["network"]["sha"]))
    state = weights_from_bytes(blobs.get_bytes(parts["weights"]["sha"]), "weights")
    transformer = None
    if "transformer" in parts:
        transformer = _skops_loads(blobs.get_bytes(parts["transformer"]["sha"]), "transformer")
    return TorchModel(arch, kwargs, state, m["task"], m["input_schema"], m["classes"], transformer)


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
    | TorchModel
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
    if flavor == "torch":
        return _load_torch(blobs, m, parts)
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
