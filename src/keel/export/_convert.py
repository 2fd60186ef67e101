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

from typing import Any

from keel.errors import InvalidInput
from keel.models._graph import (
    LABEL,
    PREDICTION,
    PROBABILITIES,
    onnx_input_type,
    onnx_inputs,
    output_names,
)

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

# Main opset 21 (string Equal needs 19+); ai.onnx.ml 3 keeps the tree ops every
# onnxruntime of the last years can run.
TARGET_OPSET: dict[str, int] = {"": 21, "ai.onnx.ml": 3}


# --------------------------------------------------------------------------- to_onnx


def to_onnx(model: Any, *, name: str | None = None) -> Any:
    """Convert a keel model (``SklearnModel``, ``LightGBMModel`` or ``TorchModel``) into
    one ``onnx.ModelProto``: raw columns (or a model's named tensor) in, labels and
    probabilities (or predictions) out, following the contract in this module's docstring.
    A torch-mlp's graph holds its feature transform too (see ``_torch_export``). A
    fairness-mitigated version (``ThresholdedModel``, ``EnsembleModel``) adds a draw input
    and a decision-probability output (see ``_mitigated_export``).

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
            f"to_onnx: expected a fitted keel model (SklearnModel, LightGBMModel or "
            f"TorchModel), got "
            f"{type(model).__name__}"
        )
    if getattr(model, "flavor", None) in ("postprocessed", "randomized_ensemble"):
        from keel.export._mitigated_export import mitigated_to_onnx

        return mitigated_to_onnx(model, name)
    _check_names(schema, task)
    if getattr(model, "flavor", None) == "torch":
        from keel.export._torch_export import torch_to_onnx

        return torch_to_onnx(model, name)
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
    raise InvalidInput(
        f"to_onnx: cannot export a {type(model).__name__}; keel exports SklearnModel and "
        f"LightGBMModel (every model of keel's zoo), and their mitigated versions"
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
        from keel.train._zoo import ZOO

        raise InvalidInput(
            f"to_onnx: {type(est).__name__} has no ONNX converter; train one of keel's zoo "
            f"models ({', '.join(ZOO)}), which all export"
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
