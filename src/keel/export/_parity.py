"""Does the exported graph answer like the model it came from?

:func:`check_graph` refuses a graph that is malformed or that onnxruntime cannot load.
:func:`parity` runs the keel model and its graph on the same hold-out rows and reports
how far apart they are; :class:`Tolerance` says how far is acceptable.

The graph computes in float32 where scikit-learn and LightGBM use float64, so answers
differ in the last digits; a label flips only where a probability sits at a tie. The
defaults hold for every model of keel's zoo on Adult, classification and regression,
with zoo parameters, by a margin of 20x or more (measured: probabilities within 7e-7,
p99 within 6e-7, predictions within 2e-6 relative, metrics within 2e-7, no label
flipped; see ``tests/export/test_parity.py``). ``label_agreement`` 0.999 allows no flip
at all on fewer than 1,000 rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.models._graph import LABEL, PREDICTION, PROBABILITIES, check_graph, onnx_inputs

__all__ = ["ParityReport", "Tolerance", "check_graph", "parity"]


@dataclass(frozen=True)
class Tolerance:
    """How close the graph must be to the model.

    ``label_agreement``: least share of rows whose label is the same both ways
    (classification). ``max_abs_diff`` / ``p99_abs_diff``: largest and 99th-percentile
    absolute difference of a row's probabilities (classification; the row's largest
    difference over its classes). ``max_rel_diff``: largest difference of a prediction
    relative to its size, ``|onnx - model| / max(1, |model|)`` (regression; float32 keeps
    about 7 significant digits whatever the target's unit). ``metric_diff``: largest
    absolute difference of each task metric (ROC AUC and accuracy, or RMSE relative to
    ``max(1, RMSE)``) computed both ways.
    """

    label_agreement: float = 0.999
    max_abs_diff: float = 1e-4
    p99_abs_diff: float = 1e-5
    max_rel_diff: float = 1e-4
    metric_diff: float = 1e-4

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise InvalidInput(f"tolerance {name}: expected a number >= 0, got {value!r}")
        if self.label_agreement > 1:
            raise InvalidInput(
                f"tolerance label_agreement: expected a share in [0, 1], got {self.label_agreement}"
            )


@dataclass
class ParityReport:
    """The model and its graph compared on the same rows.

    ``metrics`` maps each task metric to ``{"model": ..., "onnx": ...}`` (empty without
    labels). ``label_agreement`` is None for regression; ``max_rel_diff`` is
    ``max |Δ| / max(1, |model|)``, equal to ``max_abs_diff`` for probabilities.
    """

    task: str
    rows: int
    label_agreement: float | None
    max_abs_diff: float
    p99_abs_diff: float
    max_rel_diff: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    tolerance: Tolerance = field(default_factory=Tolerance)

    def failures(self, tolerance: Tolerance | None = None) -> list[str]:
        """What breaks ``tolerance`` (this report's own by default), one line each."""
        tol = tolerance or self.tolerance
        found: list[str] = []
        if self.task == "classification":
            agreement = self.label_agreement if self.label_agreement is not None else 0.0
            if agreement < tol.label_agreement:
                differ = round((1 - agreement) * self.rows)
                found.append(
                    f"label_agreement {agreement:.6f} < {tol.label_agreement} "
                    f"({differ} of {self.rows} rows get another label)"
                )
            found += _over("max_abs_diff", self.max_abs_diff, tol.max_abs_diff)
            found += _over("p99_abs_diff", self.p99_abs_diff, tol.p99_abs_diff)
        else:
            found += _over("max_rel_diff", self.max_rel_diff, tol.max_rel_diff)
        for metric, pair in self.metrics.items():
            gap = abs(pair["onnx"] - pair["model"])
            if metric == "rmse":
                gap /= max(1.0, abs(pair["model"]))
            if not gap <= tol.metric_diff:
                found.append(
                    f"{metric}: model {pair['model']:.6g}, onnx {pair['onnx']:.6g} "
                    f"(difference {gap:.3g} > metric_diff {tol.metric_diff:g})"
                )
        return found

    @property
    def ok(self) -> bool:
        return not self.failures()

    def check(self, tolerance: Tolerance | None = None) -> ParityReport:
        """``self`` if within ``tolerance``; else :class:`InvalidInput` listing each
        failure."""
        found = self.failures(tolerance)
        if found:
            raise InvalidInput(f"ONNX parity failed on {self.rows} rows: " + "; ".join(found))
        return self

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def _over(name: str, value: float, limit: float) -> list[str]:
    return [] if value <= limit else [f"{name} {value:.3g} > {limit:g}"]


# --------------------------------------------------------------------------- parity


def parity(
    model: Any,
    onnx_model: Any,
    X: Any,
    y: Any = None,
    *,
    tolerance: Tolerance | None = None,
) -> ParityReport:
    """Run ``model`` and ``onnx_model`` (its export) on the rows ``X`` (raw columns,
    missing values and all) and compare them; with labels ``y``, the task metrics both
    ways too. ``report.ok`` says whether ``tolerance`` is met; ``report.check()`` raises
    if not."""
    tolerance = tolerance or Tolerance()
    if getattr(model, "flavor", None) in ("postprocessed", "randomized_ensemble"):
        from keel.export._mitigated_export import mitigated_parity

        return mitigated_parity(model, onnx_model, X, y, tolerance)
    session = check_graph(onnx_model)
    rows = _rows(X)
    if rows == 0:
        raise InvalidInput("parity: X has no rows; pass the hold-out rows to compare on")
    if y is not None and len(y) != rows:
        raise InvalidInput(f"parity: X has {rows} rows but y has {len(y)}")
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, onnx_inputs(X, model.input_schema)), strict=True))
    compare = _classification if model.task == "classification" else _regression
    return compare(model, got, X, None if y is None else np.asarray(y), tolerance)


def _rows(X: Any) -> int:
    """Rows of ``X``: a frame or an array, or a mapping of columns or tensors."""
    from collections.abc import Mapping

    if isinstance(X, Mapping):
        return len(next(iter(X.values()), []))
    return len(X)


def _output(got: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in got:
        raise InvalidInput(f"parity: the graph has no output {name!r}; it has {sorted(got)}")
    return np.asarray(got[name])


def _classification(
    model: Any, got: dict[str, np.ndarray], X: Any, y: Any, tolerance: Tolerance
) -> ParityReport:
    classes = list(model.classes_)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    onnx_proba = _output(got, PROBABILITIES).astype(np.float64)
    if onnx_proba.shape != proba.shape:
        raise InvalidInput(
            f"parity: the graph's probabilities have shape {onnx_proba.shape}; the model's "
            f"{proba.shape}"
        )
    labels = _class_index(np.asarray(model.predict(X)), classes)
    onnx_labels = _class_index(_output(got, LABEL).ravel(), classes)
    diff = np.abs(onnx_proba - proba).max(axis=1)
    metrics: dict[str, dict[str, float]] = {}
    if y is not None:
        for name, fn in _classification_metrics(y, classes).items():
            metrics[name] = {"model": fn(labels, proba), "onnx": fn(onnx_labels, onnx_proba)}
    return ParityReport(
        task="classification",
        rows=len(diff),
        label_agreement=float(np.mean(labels == onnx_labels)),
        max_abs_diff=float(diff.max()),
        p99_abs_diff=float(np.percentile(diff, 99)),
        max_rel_diff=float(diff.max()),
        metrics=metrics,
        tolerance=tolerance,
    )


def _class_index(labels: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Each label's position in ``classes`` (-1 if none), comparing as text so that
    the graph's int64 or string labels meet the model's."""
    where = {str(c): k for k, c in enumerate(classes)}
    return np.asarray([where.get(str(v), -1) for v in labels.tolist()])


def _classification_metrics(y: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    from sklearn import metrics

    truth = _class_index(y, classes)
    out: dict[str, Any] = {
        "accuracy": lambda labels, _: float(np.mean(labels == truth)),
    }
    present = np.unique(truth[truth >= 0])
    if len(classes) == 2 and len(present) == 2:
        out["roc_auc"] = lambda _, p: float(metrics.roc_auc_score(truth == 1, p[:, 1]))
    elif len(classes) > 2 and len(present) == len(classes):
        out["roc_auc"] = lambda _, p: float(
            metrics.roc_auc_score(truth, p, multi_class="ovr", labels=range(len(classes)))
        )
    return out


def _regression(
    model: Any, got: dict[str, np.ndarray], X: Any, y: Any, tolerance: Tolerance
) -> ParityReport:
    pred = np.asarray(model.predict(X), dtype=np.float64).ravel()
    onnx_pred = _output(got, PREDICTION).astype(np.float64).ravel()
    if onnx_pred.shape != pred.shape:
        raise InvalidInput(
            f"parity: the graph gives {onnx_pred.size} predictions for {pred.size} rows"
        )
    diff = np.abs(onnx_pred - pred)
    metrics: dict[str, dict[str, float]] = {}
    if y is not None:
        truth = y.astype(np.float64)
        metrics["rmse"] = {
            "model": float(np.sqrt(np.mean((pred - truth) ** 2))),
            "onnx": float(np.sqrt(np.mean((onnx_pred - truth) ** 2))),
        }
    return ParityReport(
        task="regression",
        rows=len(diff),
        label_agreement=None,
        max_abs_diff=float(diff.max()),
        p99_abs_diff=float(np.percentile(diff, 99)),
        max_rel_diff=float((diff / np.maximum(1.0, np.abs(pred))).max()),
        metrics=metrics,
        tolerance=tolerance,
    )
