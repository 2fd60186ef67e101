"""The skops allow-list trusts exact classes, never a package prefix.

skops builds a node by importing the module a file names and taking the attribute with
``getattr``, so a name under ``numpy.`` or ``sklearn.`` can be any callable those modules
import from elsewhere: ``numpy.distutils.fcompiler.gnu.Popen`` is ``subprocess.Popen``.
"""

import importlib
import io
import json
import pkgutil
import sys
import time
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from keel.errors import UnsafeArtifact
from keel.features import TRUSTED_TYPES, FeatureSpec, compile_spec
from keel.models import SklearnModel, load_model, save_model, trusted_type
from keel.models._artifact import _skops_loads
from keel.store import MemoryBlobStore
from keel.train._train import Prepared, build_model
from keel.train._zoo import ZOO

# ---------------------------------------------------------------- crafted files


def _crafted(module: str, name: str, args: tuple) -> bytes:
    """A skops file whose top node is ``module.name(*args)``, as skops itself writes a
    constructor call (``ConstructorFromReduceNode``), the arguments in skops' own format."""
    schema = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps(args))).read("schema.json"))
    top = {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {k: v for k, v in schema.items() if k not in ("protocol", "_skops_version")},
        "protocol": schema["protocol"],
        "_skops_version": schema["_skops_version"],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("schema.json", json.dumps(top))
    return buf.getvalue()


def _store_as_model(blobs, component: bytes) -> str:
    """A keel model manifest whose pipeline component is ``component``."""
    X = pd.DataFrame({"x": np.linspace(0, 1, 20)})
    pipe = Pipeline([("f", compile_spec({"steps": [{"op": "passthrough", "columns": ["x"]}]}))])
    sha = save_model(
        SklearnModel(pipe.fit(X), "regression", [{"name": "x", "type": "float"}]), blobs
    )
    manifest = json.loads(blobs.get_bytes(sha))
    manifest["components"]["pipeline"]["sha"] = blobs.put_bytes(component)
    return blobs.put_bytes(json.dumps(manifest).encode())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # importing numpy.distutils warns
def test_popen_reexported_by_numpy_distutils_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    data = _crafted("numpy.distutils.fcompiler.gnu", "Popen", (["touch", str(marker)],))
    blobs = MemoryBlobStore()
    with pytest.raises(UnsafeArtifact, match=r"numpy\.distutils\.fcompiler\.gnu\.Popen"):
        load_model(blobs, _store_as_model(blobs, data))
    time.sleep(0.3)  # a started process would have touched the marker by now
    assert not marker.exists()


def test_open_reexported_by_numpy_datasource_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "written"
    data = _crafted("numpy.lib._datasource", "_open", (str(marker), "w"))
    with pytest.raises(UnsafeArtifact, match=r"numpy\.lib\._datasource\._open"):
        _skops_loads(data, "pipeline")
    assert not marker.exists()


def test_remove_reexported_by_sklearn_lfw_is_refused_and_never_runs(tmp_path):
    victim = tmp_path / "keep-me"
    victim.write_text("still here")
    data = _crafted("sklearn.datasets._lfw", "remove", (str(victim),))
    blobs = MemoryBlobStore()
    with pytest.raises(UnsafeArtifact, match=r"sklearn\.datasets\._lfw\.remove"):
        load_model(blobs, _store_as_model(blobs, data))
    assert victim.read_text() == "still here"


@pytest.mark.parametrize("func", [np.load, np.save, "sklearn.utils.shuffle"])
def test_a_file_whose_top_node_is_a_function_is_refused(func):
    if isinstance(func, str):
        module, _, name = func.rpartition(".")
        func = getattr(importlib.import_module(module), name)
    data = sio.dumps(func)
    name = f"{func.__module__}.{func.__name__}"
    with pytest.raises(UnsafeArtifact, match=rf"{name}.*a function"):
        _skops_loads(data, "pipeline")


def test_the_refusal_names_the_type_and_why():
    data = _crafted("sklearn.datasets._lfw", "remove", ("x",))
    with pytest.raises(UnsafeArtifact) as info:
        _skops_loads(data, "pipeline")
    msg = str(info.value)
    assert "sklearn.datasets._lfw.remove (not one of the classes keel's models" in msg


# ---------------------------------------------------------------- the allow-list itself

_PACKAGES = ("sklearn", "numpy", "scipy.sparse")
# scripts that run on import, and test suites
_SKIPPED = {"__main__", "_build_utils", "conftest", "setup", "tests", "testing", "_testing"}


def _quietly_import(name: str):
    """The module ``name``, or None if importing it fails or warns."""
    if name in sys.modules:
        return sys.modules[name]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - ImportError, a warning as error, SystemExit...
        return None


def _importable_modules(package: str):
    """``package`` and every submodule that imports cleanly and without a warning (tests
    and test helpers left out); a package that does not import is not descended into."""
    todo = [package]
    while todo:
        mod = _quietly_import(todo.pop())
        if mod is None:
            continue
        yield mod
        for info in pkgutil.iter_modules(getattr(mod, "__path__", None) or []):
            if info.name in _SKIPPED:
                continue
            todo.append(f"{mod.__name__}.{info.name}")


def test_no_callable_reexported_from_outside_the_package_is_trusted():
    """Scan sklearn, numpy and scipy.sparse for every callable a module holds that is
    defined outside its own package (``os.remove``, ``subprocess.Popen``, ``open``...):
    each name ``module.attr`` must be refused."""
    start = time.monotonic()
    checked, trusted = 0, []
    for package in _PACKAGES:
        top = package.split(".")[0]
        for mod in _importable_modules(package):
            for attr, obj in list(vars(mod).items()):
                if attr.startswith("__") or not callable(obj):
                    continue
                origin = getattr(obj, "__module__", None)
                if isinstance(origin, str) and (origin == top or origin.startswith(f"{top}.")):
                    continue
                checked += 1
                name = f"{mod.__name__}.{attr}"
                if trusted_type(name):
                    trusted.append(f"{name} (= {origin}.{getattr(obj, '__name__', '?')})")
    assert checked > 1000, f"the scan found only {checked} re-exported callables"
    assert not trusted, f"{len(trusted)} re-exported callables trusted: {trusted[:20]}"
    assert time.monotonic() - start < 60


def test_trusted_names_are_classes_defined_where_they_say():
    from keel.models._artifact import _TRUSTED_CLASSES

    for name in sorted(_TRUSTED_CLASSES | set(TRUSTED_TYPES)):
        module, _, attr = name.rpartition(".")
        obj = getattr(importlib.import_module(module), attr, None)
        assert isinstance(obj, type), name
        assert f"{obj.__module__}.{obj.__qualname__}" == name
        assert trusted_type(name), name


@pytest.mark.parametrize(
    "name",
    [
        "numpy.load",  # a function
        "sklearn.utils.shuffle",  # a function
        "sklearn.pipeline.Pipeline.fit",  # a method
        "numpy.ndarray.tofile",  # a method that writes a file
        "sklearn.pipeline.Bunch",  # a class, but defined in sklearn.utils._bunch
        "sklearn.utils._bunch.Bunch",  # defined there, but no keel model holds one
        "numpy.lib._npyio_impl.DataSource",  # a class that opens URLs
        "builtins.eval",
        "os.system",
        "keel.models._dp.DP_TYPES",
        "",
        "numpy",
        "numpy.",
    ],
)
def test_names_that_are_not_an_allowed_class_are_refused(name):
    assert not trusted_type(name)


# ---------------------------------------------------------------- keel's own models load

_STEPS = [
    {"op": "impute", "columns": ["f"], "strategy": "mean"},
    {"op": "scale", "columns": ["f"], "method": "standard"},
    {"op": "impute", "columns": ["i"], "strategy": "constant", "fill_value": 0},
    {"op": "scale", "columns": ["i"], "method": "minmax"},
    {"op": "scale", "columns": ["g"], "method": "robust"},
    {"op": "log", "columns": ["pos"]},
    {"op": "clip", "columns": ["pos"], "lower": 0.0, "upper": 2.0},
    {"op": "impute", "columns": ["s"], "strategy": "constant", "fill_value": "missing"},
    {"op": "onehot", "columns": ["s"], "min_frequency": 5},
    {"op": "ordinal", "columns": ["c"]},
    {"op": "date_parts", "columns": ["d"]},
    {"op": "passthrough", "columns": ["b"]},
    {"op": "interact", "columns": ["g", "pos"]},
]
_FAST = {
    "lightgbm": {"n_estimators": 10},
    "hist_gradient_boosting": {"max_iter": 10},
    "random_forest": {"n_estimators": 5},
    "logistic_regression": {},
    "mlp": {"max_iter": 30, "hidden_layer_sizes": [8]},
}


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    n = 160
    df = pd.DataFrame(
        {
            "f": rng.normal(size=n),
            "g": rng.normal(size=n),
            "i": rng.integers(0, 50, size=n).astype(float),
            "pos": rng.exponential(size=n),
            "b": rng.integers(0, 2, size=n).astype(bool),
            "s": rng.choice(["a", "b", "c", None], size=n),
            "c": rng.choice(["x", "y", "z"], size=n),
            "d": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D"),
        }
    )
    df.loc[::11, "f"] = np.nan
    df["yes"] = np.where(df["g"] + rng.normal(size=n) > 0, "Yes", "No")
    df["three"] = np.array(["p", "q", "r"])[rng.integers(0, 3, size=n)]
    df["amount"] = 2 * df["g"] + rng.normal(size=n)
    return df


def _schema(df):
    types = {"f": "float", "g": "float", "i": "float", "pos": "float", "b": "bool"}
    types |= {"s": "string", "c": "string", "d": "datetime"}
    return [{"name": c, "type": t} for c, t in types.items()]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short fits
@pytest.mark.parametrize(
    ("kind", "target"),
    [
        (k, t)
        for k in sorted(ZOO)
        for t in ("yes", "three", "amount")
        if t != "amount" or "regression" in ZOO[k].tags.get("tasks", ["regression"])
    ],
)
def test_every_model_kind_saves_and_loads(frame, kind, target):
    schema = _schema(frame)
    task = "regression" if target == "amount" else "classification"
    spec = FeatureSpec.from_dict({"steps": _STEPS})
    prep = Prepared(frame.iloc[:120], frame.iloc[120:], target, task, spec, schema)
    model = build_model(prep, kind, _FAST.get(kind, {}), seed=0)
    blobs = MemoryBlobStore()
    loaded = load_model(blobs, save_model(model, blobs))
    X = frame.iloc[120:][[c["name"] for c in schema]]
    assert (np.asarray(loaded.predict(X)) == np.asarray(model.predict(X))).all()
