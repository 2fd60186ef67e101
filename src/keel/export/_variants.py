"""Smaller variants of a model for the edge, and the trade-off between them.

* ``prune``: fewer trees (LightGBM, random forest), the fewest whose hold-out metric stays
  within ``max_drop`` of the full model's; for a PyTorch network, global magnitude pruning
  (``torch.nn.utils.prune``, L1, no retraining) of its Linear and Conv weights, the largest
  share of zeros that keeps the metric within ``max_drop`` (or exactly ``amount``). The zeros
  stay in the dense graph, so they shrink the compressed size (``gz_bytes``: what a bundle's
  .tar.gz carries), not the file;
* ``distill``: a shallow LightGBM student trained on the teacher's soft labels (each row
  once per class, weighted by the teacher's probability), on the teacher's own features;
* ``quantize``: the ONNX graph with int8 weights (ONNX Runtime's dynamic quantization),
  for models whose graph has float weight matrices (MLP; linear models where converted
  to MatMul; PyTorch networks, their Linear (Gemm) weights).

Each variant is registered as a new version of the model with lineage to its parent.
"""

from __future__ import annotations

import copy
import gzip
import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.store import Store

__all__ = [
    "TradeOff",
    "Variant",
    "distill",
    "prune",
    "quantize_int8",
    "register_variant",
    "trade_off",
]


@dataclass
class Variant:
    kind: str  # "fp32", "pruned", "distilled", "int8"
    ref: str
    onnx_bytes: bytes
    model: Any
    detail: dict[str, Any] = field(default_factory=dict)


def _metric(model: Any, X: Any, y: Any) -> tuple[str, float]:
    from keel.train import evaluate

    m = evaluate(model, X, y)
    key = "roc_auc" if "roc_auc" in m else ("accuracy" if "accuracy" in m else "rmse")
    return key, m[key]


def _better(key: str, a: float, b: float) -> float:
    """How much ``a`` is better than ``b`` (negative: worse)."""
    return (b - a) if key == "rmse" else (a - b)


def prune(
    model: Any,
    X: Any,
    y: Any,
    *,
    max_drop: float = 0.002,
    trees: int | None = None,
    amount: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The model with the fewest trees whose metric is within ``max_drop`` of the full one
    (or exactly ``trees`` trees); for a torch network, the most magnitude-pruned one (or
    exactly ``amount``, the share of weights set to zero)."""
    from keel.models import LightGBMModel, SklearnModel

    if getattr(model, "flavor", None) == "torch":
        if trees is not None:
            raise InvalidInput("prune: a torch network has no trees; give amount=SHARE (0-1)")
        from keel.export._torch_variants import prune_torch

        return prune_torch(model, X, y, max_drop=max_drop, amount=amount)
    if amount is not None:
        raise InvalidInput(
            "prune: amount (magnitude pruning) is for torch networks; trees are pruned with "
            "trees=N or max_drop=DROP"
        )
    if isinstance(model, LightGBMModel):
        total = model.booster.num_trees() // max(1, _trees_per_iteration(model))
        make = lambda k: _lgb_first(model, k)  # noqa: E731
    elif (
        isinstance(model, SklearnModel)
        and hasattr(model.estimator, "estimators_")
        and model.estimator.__class__.__name__.startswith("RandomForest")
    ):
        total = len(model.estimator.estimators_)
        make = lambda k: _forest_first(model, k)  # noqa: E731
    else:
        raise InvalidInput(
            f"prune: a {model.flavor} {type(getattr(model, 'estimator', model)).__name__} has no "
            "trees to drop; pruning is for LightGBM and random forests (try --distill or "
            "--quantize int8)"
        )
    key, full = _metric(model, X, y)
    candidates = [trees] if trees else sorted({max(1, total * f // 16) for f in (1, 2, 4, 8)})
    for k in candidates:
        if k >= total:
            continue
        small = make(k)
        _, value = _metric(small, X, y)
        if trees or _better(key, value, full) >= -max_drop:
            return small, {"trees": k, "of": total, key: value, f"full_{key}": full}
    raise InvalidInput(
        f"prune: no smaller forest keeps {key} within {max_drop} of {full:.4f}; raise max_drop"
    )


def _trees_per_iteration(model: Any) -> int:
    return 1 if len(model.classes_ or [0, 1]) <= 2 else len(model.classes_)


def _lgb_first(model: Any, iterations: int) -> Any:
    import lightgbm as lgb

    from keel.models import LightGBMModel

    booster = lgb.Booster(model_str=model.booster.model_to_string(num_iteration=iterations))
    return LightGBMModel(model.transformer, booster, model.task, model.input_schema, model.classes_)


def _forest_first(model: Any, k: int) -> Any:
    from keel.models import SklearnModel

    pipe = copy.deepcopy(model.pipeline)
    est = pipe[-1]
    est.estimators_ = est.estimators_[:k]
    est.n_estimators = k
    return SklearnModel(pipe, model.task, model.input_schema, model.classes_)


def distill(
    teacher: Any, X_train: Any, *, trees: int = 60, leaves: int = 8, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """A shallow LightGBM student on the teacher's features and soft labels."""
    import lightgbm as lgb

    from keel.models import LightGBMModel, SklearnModel

    if isinstance(teacher, LightGBMModel):
        transformer = teacher.transformer
    elif isinstance(teacher, SklearnModel):
        transformer = teacher.transformer
    elif teacher.flavor == "torch":
        raise InvalidInput(
            "distill: torch networks are not distilled; make a smaller variant with "
            "--prune amount=SHARE (magnitude pruning) or --quantize int8"
        )
    else:
        raise InvalidInput(f"distill: cannot read the features of a {teacher.flavor} model")
    Xt = transformer.transform(X_train)
    params: dict[str, Any] = dict(
        n_estimators=trees,
        num_leaves=leaves,
        learning_rate=0.1,
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
        n_jobs=1,
    )
    if teacher.task == "regression":
        student = lgb.LGBMRegressor(**params).fit(Xt, teacher.predict(X_train))
        classes = None
    else:
        proba = teacher.predict_proba(X_train)
        n, k = proba.shape
        rows = np.repeat(np.arange(n), k)
        labels = np.tile(np.arange(k), n)
        student = lgb.LGBMClassifier(**params).fit(
            Xt[rows], labels, sample_weight=proba.reshape(-1) + 1e-12
        )
        classes = teacher.classes_
    model = LightGBMModel(
        transformer, student.booster_, teacher.task, teacher.input_schema, classes
    )
    return model, {"trees": trees, "leaves": leaves}


def quantize_int8(onnx_bytes: bytes, model: Any) -> tuple[Any, dict[str, Any]]:
    """The graph with int8 weights. Linear models' ``LinearClassifier``/``LinearRegressor``
    ops are first rewritten as MatMul + Add (+ Sigmoid/Softmax), the form ONNX Runtime's
    dynamic quantization works on; a graph with no float weight matrix is refused."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from keel.models import OnnxModel

    proto = onnx.load_from_string(onnx_bytes)
    _linear_as_matmul(proto)
    if not any(n.op_type in ("MatMul", "Gemm") for n in proto.graph.node):
        raise InvalidInput(
            f"quantize int8: the {model.flavor} graph has no float weight matrices (MatMul/Gemm); "
            "int8 is for MLPs, linear models and torch networks; for trees use --prune or "
            "--distill"
        )
    # torch networks: their dense (Gemm) weights only. ONNX Runtime's dynamic int8 Conv
    # (ConvInteger) is 5-8x slower than float Conv on the CPU (digits CNN, 1,000 images:
    # 287 ms against 37 ms), and the dense head holds most of a small CNN's weights anyway.
    ops = ["MatMul", "Gemm"] if getattr(model, "flavor", None) == "torch" else None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(proto.SerializeToString())
        quiet = logging.root.manager.disable
        logging.disable(logging.WARNING)  # its advice to pre-process, on the root logger
        try:
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=ops,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logging.disable(quiet)
        data = dst.read_bytes()
    q = OnnxModel(data, model.task, model.input_schema, model.classes_)
    return q, {"weight_type": "int8", "fp32_bytes": len(onnx_bytes), "int8_bytes": len(data)}


def _linear_as_matmul(proto: Any) -> None:
    """Replace each ai.onnx.ml Linear{Classifier,Regressor} node, in place, by the same
    arithmetic in standard ops: scores = X·Wᵀ + b, then the node's post-transform."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    for i, n in enumerate(list(graph.node)):
        if n.op_type not in ("LinearClassifier", "LinearRegressor"):
            continue
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        coef = np.asarray(a["coefficients"], dtype=np.float32)
        bias = np.asarray(a.get("intercepts", [0.0]), dtype=np.float32)
        k = len(bias) if n.op_type == "LinearClassifier" else int(a.get("targets", 1))
        post = a.get("post_transform", b"NONE")
        post = post.decode() if isinstance(post, bytes) else str(post)
        strings, ints = a.get("classlabels_strings"), a.get("classlabels_ints")
        if coef.size % k or post not in ("NONE", "LOGISTIC", "SOFTMAX"):
            return  # an unusual layout: leave the node as it is (and be refused below)
        if n.op_type == "LinearClassifier" and not (strings or ints):
            return  # a classifier that names no classes: leave it too
        w = numpy_helper.from_array(coef.reshape(k, -1).T.copy(), f"{n.name}_W")
        b = numpy_helper.from_array(bias.reshape(1, -1), f"{n.name}_B")
        graph.initializer.extend([w, b])
        x = n.input[0]
        scores = f"{n.name}_scores" if post != "NONE" else n.output[-1]
        new = [
            helper.make_node("MatMul", [x, w.name], [f"{n.name}_xw"]),
            helper.make_node("Add", [f"{n.name}_xw", b.name], [scores]),
        ]
        if post == "LOGISTIC":
            new.append(helper.make_node("Sigmoid", [scores], [n.output[-1]]))
        elif post == "SOFTMAX":
            new.append(helper.make_node("Softmax", [scores], [n.output[-1]], axis=1))
        if n.op_type == "LinearClassifier":
            arr = (
                np.array([v.decode() for v in strings], dtype=np.object_)
                if strings
                else np.asarray(ints, dtype=np.int64)
            )
            table = numpy_helper.from_array(arr, f"{n.name}_classes")
            graph.initializer.append(table)
            new += [
                helper.make_node("ArgMax", [n.output[-1]], [f"{n.name}_idx"], axis=1, keepdims=0),
                helper.make_node("Gather", [table.name, f"{n.name}_idx"], [n.output[0]], axis=0),
            ]
        graph.node.remove(n)
        for j, node in enumerate(new):
            graph.node.insert(i + j, node)


@dataclass
class TradeOff:
    rows: list[dict[str, Any]]

    def pareto(self) -> list[str]:
        """Variants no other beats on size, latency and metric at once."""

        def dominated(a: dict[str, Any], b: dict[str, Any]) -> bool:
            key = a["metric"]
            better_metric = _better(key, b["value"], a["value"]) >= 0
            return (
                b["bytes"] <= a["bytes"]
                and b["ms_1"] <= a["ms_1"]
                and better_metric
                and (b["bytes"], b["ms_1"], b["value"]) != (a["bytes"], a["ms_1"], a["value"])
            )

        return [a["variant"] for a in self.rows if not any(dominated(a, b) for b in self.rows)]

    def to_dict(self) -> dict[str, Any]:
        front = set(self.pareto())
        return {"rows": [{**r, "pareto": r["variant"] in front} for r in self.rows]}


def _latency_ms(session: Any, feed: dict[str, np.ndarray], repeats: int) -> float:
    session.run(None, feed)  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def trade_off(variants: list[Variant], X: Any, y: Any, *, repeats: int = 200) -> TradeOff:
    """File size (and gzip-compressed size), single-row and 1,000-row latency (ONNX Runtime,
    1 thread, median), and the task metric of each variant on the hold-out rows."""
    import onnxruntime as ort

    from keel.export._convert import onnx_inputs

    rows = []
    batch = X.sample(n=1000, replace=len(X) < 1000, random_state=0) if len(X) else X
    for v in variants:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(v.onnx_bytes, opts, providers=["CPUExecutionProvider"])
        schema = v.model.input_schema
        key, value = _metric(v.model, X, y)
        rows.append(
            {
                "variant": v.kind,
                "model": v.ref,
                "bytes": len(v.onnx_bytes),
                "gz_bytes": len(gzip.compress(v.onnx_bytes, 6, mtime=0)),
                "ms_1": _latency_ms(sess, onnx_inputs(X.iloc[:1], schema), repeats),
                "ms_1000": _latency_ms(sess, onnx_inputs(batch, schema), max(5, repeats // 20)),
                "metric": key,
                "value": value,
                **{f"detail.{k}": val for k, val in v.detail.items()},
            }
        )
    return TradeOff(rows)


def register_variant(
    store: Store, parent_ref: str, model: Any, kind: str, detail: dict[str, Any]
) -> str:
    """Save and register ``model`` as the next version of the parent's name, derived from it."""
    from keel import registry
    from keel.models import save_model

    parent = registry.get_version(store, parent_ref)
    sha = save_model(model, store.blobs)
    mv = registry.register(
        store,
        parent.name,
        artifact_sha=sha,
        flavor=model.flavor,
        task=model.task,
        input_schema=model.input_schema,
        output_schema=model.output_schema,
        run_id=None,
        metrics={},
        description=f"{kind} variant of {parent.ref}: {detail}",
    )
    with store.write() as conn:
        store.add_edge(conn, ("model", mv.ref), ("model", parent.ref), f"{kind}_from")
    registry.set_tag(store, mv.ref, "variant", kind)
    return mv.ref
