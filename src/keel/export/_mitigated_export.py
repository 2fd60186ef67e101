"""Fairness-mitigated versions (:mod:`keel.models._mitigated`) as ONE ONNX graph.

A mitigated model is a *randomized* classifier: each row has a probability of a positive
decision, and the decision is a draw from it. The graph computes both:

* **inputs**: the model's raw columns as in :mod:`keel.export._convert` (for a
  ThresholdOptimizer version these include the sensitive columns its thresholds read), plus
  :data:`DRAW` ``[None, 1]`` float: each row's uniform number in [0, 1).
* **outputs**: ``label`` (the drawn decision: positive where the draw is below the
  probability, as :func:`keel.models._mitigated.draw_decisions` decides), ``probabilities``
  (that decision as 0/1, the keel model's ``predict_proba``), and
  :data:`DECISION_PROBABILITY` ``[N]``, the probability itself (fairlearn's
  ``_pmf_predict``).

*Where the draw comes from.* The graph does not hash anything: whoever feeds it supplies the
uniform numbers, so one graph serves every source of randomness. The model server and a
bundle's runner feed :func:`keel.models._mitigated.request_uniforms` of the request id and
the row's place in the request (keyed by the model's seed, named in the graph's metadata
``keel.draw``): the same request gets the same decisions, and over many requests the
decisions follow the policy. Parity feeds the in-process model's own row uniforms, so the
graph and the model must decide every row alike.

A ThresholdOptimizer version is the base model's graph, its score for the positive class,
and per group ``p0·[s op0 t0] + p1·[s op1 t1]`` (and fairlearn's ``p_ignore`` mixing for
equalized odds); a group the rule never saw gets the base decision ``s > 0.5``. The graph
computes the score in float32 where the model uses float64; fairlearn puts its thresholds
midway between adjacent training scores, so a hold-out row rarely sits within float32's
error of one (none did in 4,000 Adult rows), and parity would say so if many did.
An ExponentiatedGradient version is the feature transform once, then each member's 0/1
decision weighted and summed.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from keel.errors import InvalidInput

__all__ = [
    "DECISION_PROBABILITY",
    "DRAW",
    "DRAW_SCHEME",
    "draw_info",
    "mitigated_parity",
    "mitigated_to_onnx",
]

DRAW = "keel.draw"
DECISION_PROBABILITY = "decision_probability"
DRAW_SCHEME = "keel-request-draw-1"
_EDGE = 1e-6  # a probability this close to 0 or 1 is not drawn (float32's draw_decisions)
_MISSING_KEY = "(missing)"


# ---------------------------------------------------------------- the graph's pieces


class _Builder:
    """Nodes, constants and graph inputs of the graph being assembled."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.opsets: dict[str, int] = {"": 21}
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"keel_m_{hint}_{self._n}"

    def const(self, value: Any, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str = "t", **attrs: Any) -> str:
        from onnx import helper

        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def embed(self, sub: Any, prefix: str, inputs: dict[str, str]) -> dict[str, str]:
        """Copy ``sub``'s graph in, its names prefixed, its inputs wired to ``inputs``
        (sub input name → name here); its outputs' names here, by their own names."""
        import onnx.compose

        m = onnx.compose.add_prefix(sub, prefix)
        wire = {prefix + k: v for k, v in inputs.items()}
        missing = [i.name[len(prefix) :] for i in m.graph.input if i.name not in wire]
        if missing:  # pragma: no cover - the sub-graph reads a column the model lacks
            raise InvalidInput(f"to_onnx: a part of the model reads {missing}, not wired")
        for node in m.graph.node:
            for k, name in enumerate(node.input):
                if name in wire:
                    node.input[k] = wire[name]
        self.nodes.extend(m.graph.node)
        self.inits.extend(m.graph.initializer)
        for op in m.opset_import:
            self.opsets[op.domain] = max(self.opsets.get(op.domain, 0), op.version)
        return {o.name[len(prefix) :]: o.name for o in m.graph.output}


def _check_schema(model: Any) -> list[dict[str, Any]]:
    schema = list(model.input_schema)
    names = [c["name"] for c in schema]
    clash = [n for n in names if n in (DRAW, DECISION_PROBABILITY, "label", "probabilities")]
    if clash:
        raise InvalidInput(
            f"to_onnx: input column {clash[0]!r} has the name of a graph input or output of "
            "a mitigated model; rename the column before training"
        )
    return schema


def _inputs(schema: list[dict[str, Any]]) -> list[Any]:
    from onnx import TensorProto, helper

    from keel.export._convert import onnx_input_type

    types = {"string": TensorProto.STRING, "float": TensorProto.FLOAT}
    made = [
        helper.make_tensor_value_info(c["name"], types[onnx_input_type(c)], [None, 1])
        for c in schema
    ]
    return [*made, helper.make_tensor_value_info(DRAW, TensorProto.FLOAT, [None, 1])]


def _column(b: _Builder, name: str) -> str:
    return b.node("Reshape", [name, b.const(np.asarray([-1], dtype=np.int64), "flat")], "col")


def _decide(b: _Builder, pmf: str, classes: list[Any], label_type: int) -> dict[str, str]:
    """From the probability and the draw: the label, the 0/1 probabilities, pmf."""
    from onnx import TensorProto

    pmf = b.node("Clip", [pmf, b.const(np.float32(0.0)), b.const(np.float32(1.0))], "pmf")
    u = _column(b, DRAW)
    sure = b.node("GreaterOrEqual", [pmf, b.const(np.float32(1.0 - _EDGE))], "sure")
    band = b.node("Greater", [pmf, b.const(np.float32(_EDGE))], "band")
    drawn = b.node("And", [band, b.node("Less", [u, pmf], "below")], "drawn")
    decision = b.node("Or", [sure, drawn], "decision")
    pos, neg = classes[1], classes[0]
    if label_type == TensorProto.STRING:
        consts = (np.asarray(str(pos), dtype=object), np.asarray(str(neg), dtype=object))
    else:
        consts = (np.asarray(int(pos), dtype=np.int64), np.asarray(int(neg), dtype=np.int64))
    label = b.node("Where", [decision, b.const(consts[0]), b.const(consts[1])], "label")
    d = b.node("Cast", [decision], "d", to=TensorProto.FLOAT)
    axis = b.const(np.asarray([1], dtype=np.int64), "axis")
    d1 = b.node("Unsqueeze", [d, axis], "d1")
    d0 = b.node("Sub", [b.const(np.float32(1.0)), d1], "d0")
    probs = b.node("Concat", [d0, d1], "probs", axis=1)
    return {"label": label, "probabilities": probs, DECISION_PROBABILITY: pmf}


def _finish(
    b: _Builder, model: Any, schema: list[dict[str, Any]], outs: dict[str, str], label_type: int
) -> Any:
    from onnx import TensorProto, helper

    final = {"label": "label", "probabilities": "probabilities"}
    final[DECISION_PROBABILITY] = DECISION_PROBABILITY
    for key, name in final.items():
        b.nodes.append(helper.make_node("Identity", [outs[key]], [name], name=f"out_{name}"))
    outputs = [
        helper.make_tensor_value_info("label", label_type, [None]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        helper.make_tensor_value_info(DECISION_PROBABILITY, TensorProto.FLOAT, [None]),
    ]
    graph = helper.make_graph(b.nodes, "keel", _inputs(schema), outputs, b.inits)
    opsets = [helper.make_opsetid(d, v) for d, v in sorted(b.opsets.items())]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def _label_type(sub: Any) -> int:
    out = {o.name: o for o in sub.graph.output}["label"]
    return int(out.type.tensor_type.elem_type)


def draw_info(model: Any) -> dict[str, Any]:
    """What the graph's metadata ``keel.draw`` says: how whoever feeds it draws."""
    return {"input": DRAW, "scheme": DRAW_SCHEME, "seed": int(model.seed)}


def _describe(onx: Any, model: Any, name: str | None, extra: dict[str, Any]) -> None:
    onx.producer_name = "keel"
    onx.graph.name = name or "keel"
    onx.doc_string = (
        "keel export of a fairness-mitigated (randomized) classifier: raw columns [None, 1] "
        f"and {DRAW} [None, 1], a uniform number per row; label is positive where {DRAW} is "
        f"below {DECISION_PROBABILITY}"
    )
    meta = {
        "keel.task": "classification",
        "keel.classes": json.dumps(list(model.classes_)),
        "keel.input_schema": json.dumps(model.input_schema),
        "keel.missing": json.dumps({"string": "", "float": "NaN"}),
        "keel.draw": json.dumps(draw_info(model)),
        **{k: json.dumps(v) for k, v in extra.items()},
    }
    for key, value in meta.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value


def mitigated_to_onnx(model: Any, name: str | None = None) -> Any:
    """One ``onnx.ModelProto`` for a ``ThresholdedModel`` or an ``EnsembleModel`` (see this
    module's docstring for its inputs and outputs)."""
    if model.flavor == "postprocessed":
        return _thresholded(model, name)
    return _ensemble(model, name)


# ---------------------------------------------------------------- ThresholdOptimizer


def _sensitive_schema(model: Any, schema: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_name = {c["name"]: c for c in schema}
    lacking = [c for c in model.rule["sensitive"] if c not in by_name]
    if lacking:
        raise InvalidInput(
            f"export: this ThresholdOptimizer version decides with per-group thresholds on "
            f"{', '.join(map(repr, model.rule['sensitive']))}, but its input schema lacks "
            f"{', '.join(map(repr, lacking))}: the served model could not tell the groups "
            "apart. Re-run the mitigation (keel mitigate --method threshold), which declares "
            "the sensitive column as an input; nothing was exported"
        )
    return {c: by_name[c] for c in model.rule["sensitive"]}


def _group_mask(b: _Builder, key: str, sensitive: dict[str, dict[str, Any]]) -> str:
    from keel.export._convert import onnx_input_type

    parts = key.split(" & ") if len(sensitive) > 1 else [key]
    if len(parts) != len(sensitive):
        raise InvalidInput(
            f"export: group {key!r} of the thresholds does not split into one value per "
            f"sensitive column ({', '.join(sensitive)}); a value holds ' & '"
        )
    masks = []
    for (col, entry), value in zip(sensitive.items(), parts, strict=True):
        x = _column(b, col)
        if onnx_input_type(entry) == "string":
            text = "" if value == _MISSING_KEY else value
            masks.append(b.node("Equal", [x, b.const(np.asarray(text, dtype=object))], "is"))
        elif value == _MISSING_KEY:
            masks.append(b.node("IsNaN", [x], "is"))
        else:
            number = {"True": 1.0, "False": 0.0}.get(value)
            try:
                number = float(value) if number is None else number
            except ValueError:
                raise InvalidInput(
                    f"export: group {key!r}: {col!r} is a number column, but the group's "
                    f"value {value!r} is not a number"
                ) from None
            masks.append(b.node("Equal", [x, b.const(np.float32(number))], "is"))
    mask = masks[0]
    for m in masks[1:]:
        mask = b.node("And", [mask, m], "is")
    return mask


def _passes(b: _Builder, score: str, operation: list[Any]) -> str:
    """``[score op t]`` as float (t may be ±inf)."""
    from onnx import TensorProto

    op, t = operation[0], float(operation[1])
    compare = "Greater" if op == ">" else "Less"
    hit = b.node(compare, [score, b.const(np.float32(t), "t")], "hit")
    return b.node("Cast", [hit], "hitf", to=TensorProto.FLOAT)


def _group_pmf(b: _Builder, score: str, g: dict[str, Any]) -> str:
    p0 = b.node("Mul", [_passes(b, score, g["operation0"]), b.const(np.float32(g["p0"]))], "p")
    p1 = b.node("Mul", [_passes(b, score, g["operation1"]), b.const(np.float32(g["p1"]))], "p")
    p = b.node("Add", [p0, p1], "p")
    if "p_ignore" in g:
        keep = b.const(np.float32(1.0 - g["p_ignore"]))
        fixed = b.const(np.float32(g["p_ignore"] * g["prediction_constant"]))
        p = b.node("Add", [b.node("Mul", [p, keep], "p"), fixed], "p")
    return p


def _thresholded(model: Any, name: str | None) -> Any:
    from onnx import TensorProto

    from keel.export._convert import to_onnx

    schema = _check_schema(model)
    sensitive = _sensitive_schema(model, schema)
    b = _Builder()
    base = to_onnx(model.base, name=name)
    outs = b.embed(base, "base_", {c["name"]: c["name"] for c in model.base.input_schema})
    pos = list(model.classes_).index(model.rule["positive_class"])
    index = b.const(np.asarray(pos, dtype=np.int64), "pos")
    score = b.node("Gather", [outs["probabilities"], index], "score", axis=1)
    base_decision = b.node("Greater", [score, b.const(np.float32(0.5))], "base")
    pmf = b.node("Cast", [base_decision], "pmf", to=TensorProto.FLOAT)
    for key, g in model.rule["groups"].items():
        pmf = b.node("Where", [_group_mask(b, key, sensitive), _group_pmf(b, score, g), pmf])
    classes = _ordered(model, pos)
    label_type = _label_type(base)
    onx = _finish(b, model, schema, _decide(b, pmf, classes, label_type), label_type)
    extra = {"keel.sensitive": list(model.rule["sensitive"]), "keel.mitigation": "threshold"}
    _describe(onx, model, name, extra)
    return onx


def _ordered(model: Any, pos: int) -> list[Any]:
    """[negative class, positive class]; ``probabilities`` keeps the model's class order."""
    classes = list(model.classes_)
    if pos != 1:
        raise InvalidInput(
            f"export: the positive class {classes[pos]!r} is not the model's second class "
            f"({classes}); keel's mitigations decide for the second class"
        )
    return classes


# ---------------------------------------------------------------- ExponentiatedGradient


def _transform_graph(transformer: Any, schema: list[dict[str, Any]]) -> Any:
    from skl2onnx import convert_sklearn

    from keel.export._convert import TARGET_OPSET, _initial_types, _restore_input_names
    from keel.export._converters import onnx_ready, register

    register()
    initial = _initial_types(schema)
    onx = convert_sklearn(
        onnx_ready(transformer), initial_types=initial, target_opset=TARGET_OPSET, name="t"
    )
    _restore_input_names(onx, [n for n, _ in initial])
    return onx


def _member_graph(member: Any, width: int) -> Any:
    import lightgbm as lgb
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from keel.export._convert import TARGET_OPSET
    from keel.export._converters import LightGBMClassifierShim, onnx_ready

    if isinstance(member, lgb.Booster):
        est = LightGBMClassifierShim(member, [0, 1])
    else:
        est = onnx_ready(member)
    return convert_sklearn(
        est,
        initial_types=[("X", FloatTensorType([None, width]))],
        target_opset=TARGET_OPSET,
        options={id(est): {"zipmap": False}},
        name="m",
    )


def _ensemble(model: Any, name: str | None) -> Any:
    from onnx import TensorProto

    schema = _check_schema(model)
    b = _Builder()
    transform = _transform_graph(model.transformer, schema)
    features = b.embed(transform, "features_", {c["name"]: c["name"] for c in schema})
    x = next(iter(features.values()))
    x = b.node("Cast", [x], "x", to=TensorProto.FLOAT)
    width = _width(transform)
    pmf = b.const(np.float32(0.0), "zero")
    for k, (member, w) in enumerate(zip(model.members, model.weights, strict=True)):
        outs = b.embed(_member_graph(member, width), f"m{k}_", {"X": x})
        says = b.node("Equal", [outs["label"], b.const(np.asarray(1, dtype=np.int64))], "yes")
        vote = b.node("Cast", [says], "vote", to=TensorProto.FLOAT)
        pmf = b.node("Add", [pmf, b.node("Mul", [vote, b.const(np.float32(w))], "w")], "pmf")
    label_type = TensorProto.STRING if isinstance(model.classes_[1], str) else TensorProto.INT64
    onx = _finish(b, model, schema, _decide(b, pmf, list(model.classes_), label_type), label_type)
    _describe(onx, model, name, {"keel.mitigation": "expgrad", "keel.members": len(model.members)})
    return onx


def _width(transform: Any) -> int:
    out = transform.graph.output[0]
    dims = out.type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].dim_value > 0:
        return int(dims[1].dim_value)
    raise InvalidInput(  # pragma: no cover - skl2onnx always knows the transform's width
        "to_onnx: the feature transform's width is unknown, so the members cannot be wired"
    )


# ---------------------------------------------------------------- parity


class _AsProbability:
    """A randomized model seen by :func:`keel.export._parity.parity`'s comparison: its
    probabilities are ``[1 - p, p]`` of its decision probability, its labels its draws."""

    task = "classification"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.classes_ = model.classes_

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.model.predict(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        p = np.asarray(self.model.decision_probability(X), dtype=np.float64)
        return np.column_stack([1.0 - p, p])


def mitigated_parity(model: Any, onnx_model: Any, X: Any, y: Any, tolerance: Any) -> Any:
    """The graph fed the model's own row uniforms as its draws: decision probabilities and
    drawn labels compared like any classifier's probabilities and labels."""
    import pandas as pd

    from keel.export._parity import _classification
    from keel.models._adapters import check_input_frame
    from keel.models._graph import check_graph, onnx_inputs
    from keel.models._mitigated import row_uniforms

    session = check_graph(onnx_model)
    frame = check_input_frame(X, model.input_schema)
    if not len(frame):
        raise InvalidInput("parity: X has no rows; pass the hold-out rows to compare on")
    if y is not None and len(y) != len(frame):
        raise InvalidInput(f"parity: X has {len(frame)} rows but y has {len(y)}")
    feed = onnx_inputs(frame, model.input_schema)
    u = row_uniforms(pd.DataFrame(frame), model.input_schema, model.seed)
    feed[DRAW] = u.astype(np.float32).reshape(-1, 1)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, feed), strict=True))
    p = np.asarray(got[DECISION_PROBABILITY], dtype=np.float64)
    got["probabilities"] = np.column_stack([1.0 - p, p])
    return _classification(
        _AsProbability(model), got, frame, None if y is None else np.asarray(y), tolerance
    )
