"""A keel model (its feature transform and its estimator together) as ONE ONNX graph.

The graph's contract, which :func:`onnx_inputs` feeds and the model server relies on:

* **inputs**: one per raw column of ``model.input_schema``, named as the column, shape
  ``[None, 1]``. Text columns (logical type ``string`` or ``category``) are
  ``tensor(string)`` and the empty string ``""`` means missing. Number and bool columns
  (``int``, ``float``, ``bool``) are ``tensor(float)`` (float32; bool as 0/1) and NaN
  means missing. Integers above 2**24 lose precision in float32.
* **outputs**: classification gives ``label`` ``[N]`` (the class, string or int64) and
  ``probabilities`` ``[N, n_classes]`` float in the order of ``output_schema["classes"]``
  (a plain tensor, no ZipMap); regression gives ``variable`` ``[N, 1]`` float.

Values unseen in training do not fail: one-hot columns give zeros (or the infrequent
column where one was learned), ordinal codes give -1, like scikit-learn. An empty string
in the data is read as missing, which is where the graph and scikit-learn can differ
(scikit-learn sees ``""`` as a category of its own).

``date_parts`` cannot be exported (ONNX cannot parse dates): split dates into numeric
columns before training instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = [
    "LABEL",
    "PREDICTION",
    "PROBABILITIES",
    "TARGET_OPSET",
    "onnx_input_type",
    "onnx_inputs",
    "output_names",
    "to_onnx",
]

LABEL = "label"
PROBABILITIES = "probabilities"
PREDICTION = "variable"
# Main opset 21 (string Equal needs 19+); ai.onnx.ml 3 keeps the tree ops every
# onnxruntime of the last years can run.
TARGET_OPSET: dict[str, int] = {"": 21, "ai.onnx.ml": 3}

_TEXT_TYPES = frozenset({"string", "category"})
_NUMBER_TYPES = frozenset({"int", "float", "bool"})


def output_names(task: str) -> list[str]:
    """The graph's outputs for ``task``."""
    return [LABEL, PROBABILITIES] if task == "classification" else [PREDICTION]


def onnx_input_type(column: Mapping[str, Any]) -> str:
    """``"string"`` or ``"float"``: the graph input type of one ``input_schema`` entry."""
    name, logical = column.get("name"), column.get("type")
    if logical in _TEXT_TYPES:
        return "string"
    if logical in _NUMBER_TYPES:
        return "float"
    if logical == "datetime":
        raise InvalidInput(
            f"to_onnx: column {name!r} is a datetime, which cannot be exported: ONNX has no "
            "date parsing. Split it into numeric columns (year, month, ...) before training"
        )
    raise InvalidInput(
        f"input_schema: column {name!r} has type {logical!r}; expected one of "
        f"{', '.join(sorted(_TEXT_TYPES | _NUMBER_TYPES))}"
    )


def onnx_inputs(frame: Any, input_schema: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The feed dict for an exported graph from raw rows (a DataFrame, a list of records,
    or a dict of columns): one ``[N, 1]`` array per schema column; text as an object
    array of ``str`` with ``""`` for missing (None, NaN, pd.NA); numbers and bools as
    float32 with NaN for missing. Extra columns are ignored; a missing column, or a value
    that is not a number in a numeric column, is refused, naming it."""
    names = [str(c["name"]) for c in input_schema]
    columns = _columns_of(frame, names)
    feed: dict[str, np.ndarray] = {}
    for column, name in zip(input_schema, names, strict=True):
        values = columns[name]
        if onnx_input_type(column) == "string":
            feed[name] = _text(values)
        else:
            feed[name] = _numbers(values, name)
    return feed


_SMALL = 256  # rows; below this one object block beats pandas' per-column access


def _columns_of(frame: Any, names: list[str]) -> dict[str, Any]:
    """Each wanted column's values as a 1-d sequence."""
    if isinstance(frame, pd.DataFrame):
        where = {str(c): i for i, c in enumerate(frame.columns)}
        _check_present(names, where)
        if len(frame) <= _SMALL:
            column = getattr(frame, "_get_column_array", None)  # pandas' cheap column access
            if column is not None:
                return {n: column(where[n]) for n in names}
            block = frame.to_numpy(dtype=object)
            return {n: block[:, where[n]] for n in names}
        return {n: frame.iloc[:, where[n]].to_numpy() for n in names}
    if isinstance(frame, Mapping):
        present = {str(c): c for c in frame}
        _check_present(names, present)
        return {n: _sequence(frame[present[n]]) for n in names}
    if isinstance(frame, list) and all(isinstance(r, Mapping) for r in frame):
        _check_present(names, {str(k) for r in frame for k in r})
        return {n: [r.get(n) for r in frame] for n in names}
    raise InvalidInput(
        "model input: expected a pandas DataFrame, a list of records or a dict of columns, "
        f"got {type(frame).__name__}"
    )


def _check_present(names: list[str], present: Any) -> None:
    lacking = [n for n in names if n not in present]
    if lacking:
        raise InvalidInput(
            f"model input: missing column(s) {', '.join(map(repr, lacking))}; "
            f"the model reads {', '.join(names)}"
        )


def _sequence(values: Any) -> Any:
    if isinstance(values, pd.Series):
        return values.to_numpy()
    if isinstance(values, np.ndarray | list | tuple):
        return values
    return [values]  # one row given as scalars


def _na(value: Any) -> bool:
    return value is None or value is pd.NA or value != value  # NaN and NaT differ from self


def _text(values: Any) -> np.ndarray:
    out = np.empty((len(values), 1), dtype=object)
    out[:, 0] = ["" if _na(v) else v if type(v) is str else str(v) for v in values]
    return out


def _numbers(values: Any, name: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float32).reshape(-1, 1)
    out = np.empty((len(values), 1), dtype=np.float32)
    for i, v in enumerate(values):
        try:
            out[i, 0] = np.nan if _na(v) else float(v)
        except (TypeError, ValueError):
            raise InvalidInput(f"column {name!r} row {i}: expected a number, got {v!r}") from None
    return out


# --------------------------------------------------------------------------- to_onnx


def to_onnx(model: Any, *, name: str | None = None) -> Any:
    """Convert a keel model (``SklearnModel`` or ``LightGBMModel``) into one
    ``onnx.ModelProto``: raw columns in, labels and probabilities (or predictions) out,
    following the contract in this module's docstring.

    Refuses (:class:`~keel.errors.InvalidInput`, naming why and what to do instead) a
    model whose feature spec uses ``date_parts``, a datetime input, an input column named
    like an output, or an estimator skl2onnx cannot convert.
    """
    from sklearn.pipeline import Pipeline

    from keel.export._converters import onnx_ready, register

    register()
    schema = list(getattr(model, "input_schema", None) or [])
    task = getattr(model, "task", None)
    if not schema or task not in ("classification", "regression"):
        raise InvalidInput(
            f"to_onnx: expected a fitted keel model (SklearnModel or LightGBMModel), got "
            f"{type(model).__name__}"
        )
    _check_names(schema, task)
    pipeline, estimator = _pipeline(model)
    ready = onnx_ready(pipeline)  # refuses date_parts first: the most specific reason
    initial = _initial_types(schema)
    final = ready.steps[-1][1] if isinstance(ready, Pipeline) else ready
    options = {id(final): {"zipmap": False}} if task == "classification" else {}
    onx = _convert(ready, initial, options, estimator)
    _restore_input_names(onx, [name for name, _ in initial])
    _check_outputs(onx, task)
    _describe(onx, model, name)
    return onx


def _check_names(schema: list[dict[str, Any]], task: str) -> None:
    clash = [c["name"] for c in schema if c["name"] in output_names(task)]
    if clash:
        raise InvalidInput(
            f"to_onnx: input column {clash[0]!r} has the name of a graph output "
            f"({', '.join(output_names(task))}); rename the column before training"
        )


def _pipeline(model: Any) -> tuple[Any, Any]:
    """(a Pipeline of the fitted transform and the estimator, the estimator)."""
    from sklearn.pipeline import Pipeline

    from keel.export._converters import LightGBMClassifierShim, LightGBMRegressorShim
    from keel.models import LightGBMModel, SklearnModel

    if isinstance(model, SklearnModel):
        pipe = model.pipeline
        if not isinstance(pipe, Pipeline):
            pipe = Pipeline([("model", pipe)])
        return pipe, pipe.steps[-1][1]
    if isinstance(model, LightGBMModel):
        shim_type = (
            LightGBMClassifierShim if model.task == "classification" else LightGBMRegressorShim
        )
        shim = shim_type(model.booster, model.classes_)
        steps = (
            list(model.transformer.steps)
            if isinstance(model.transformer, Pipeline)
            else [("features", model.transformer)]
        )
        return Pipeline([*steps, ("model", shim)]), model.booster
    hint = ""
    if type(model).__name__ in ("ThresholdedModel", "EnsembleModel"):
        hint = (
            "; fairness-mitigated versions made by ThresholdOptimizer or ExponentiatedGradient "
            "cannot be exported (so not served) yet: export the parent version, or mitigate "
            "with --method reweigh, which retrains an exportable model"
        )
    raise InvalidInput(
        f"to_onnx: cannot export a {type(model).__name__}; keel exports SklearnModel and "
        f"LightGBMModel (every model of keel's zoo){hint}"
    )


def _initial_types(schema: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    kinds = {"string": StringTensorType, "float": FloatTensorType}
    return [(str(c["name"]), kinds[onnx_input_type(c)]([None, 1])) for c in schema]


def _convert(pipeline: Any, initial: list[tuple[str, Any]], options: dict, est: Any) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator

    try:
        return convert_sklearn(
            pipeline,
            initial_types=initial,
            target_opset=TARGET_OPSET,
            options=options,
            name="keel",
        )
    except InvalidInput:
        raise
    except (MissingShapeCalculator, MissingConverter):
        raise InvalidInput(
            f"to_onnx: {type(est).__name__} has no ONNX converter; train one of keel's zoo "
            "models (lightgbm, hist_gradient_boosting, random_forest, logistic_regression, "
            "mlp), which all export"
        ) from None
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(
            f"to_onnx: {type(est).__name__} with this feature spec cannot be converted: {first}"
        ) from None


def _restore_input_names(onx: Any, names: list[str]) -> None:
    """skl2onnx makes names C-like ('hours-per-week' becomes 'hours_per_week'); the
    contract is one input named exactly as each column, so rename them back."""
    graph = onx.graph
    got = [i.name for i in graph.input]
    if len(got) != len(names):  # pragma: no cover - skl2onnx dropped or added an input
        raise InvalidInput(f"to_onnx: the graph's inputs are {got}; expected {names}")
    rename = {old: new for old, new in zip(got, names, strict=True) if old != new}
    if not rename:
        return
    for value in graph.input:
        value.name = rename.get(value.name, value.name)
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]


def _check_outputs(onx: Any, task: str) -> None:
    got = [o.name for o in onx.graph.output]
    if got != output_names(task):  # pragma: no cover - skl2onnx's naming changed
        raise InvalidInput(f"to_onnx: the graph's outputs are {got}; expected {output_names(task)}")


def _describe(onx: Any, model: Any, name: str | None) -> None:
    import json

    onx.producer_name = "keel"
    onx.graph.name = name or "keel"
    onx.doc_string = (
        "keel export: inputs are raw columns [None, 1]; text is tensor(string) with '' as "
        "missing, numbers are tensor(float) with NaN as missing"
    )
    meta = {
        "keel.task": model.task,
        "keel.classes": json.dumps(getattr(model, "classes_", None)),
        "keel.input_schema": json.dumps(model.input_schema),
        "keel.missing": json.dumps({"string": "", "float": "NaN"}),
    }
    del onx.metadata_props[:]
    for key, value in meta.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value
