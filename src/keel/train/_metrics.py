"""Task metrics, computed the same way for training, search and hold-out evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PRIMARY", "baseline", "evaluate", "compare_to_baseline"]

# The metric a search maximises, per task; regression metrics are errors, so negated there.
PRIMARY = {"classification": "roc_auc", "regression": "rmse"}


def evaluate(model: Any, X: Any, y: Any) -> dict[str, float]:
    """Metrics of a keel model on ``X``/``y``."""
    from sklearn import metrics as m

    y = np.asarray(y)
    if model.task == "regression":
        pred = np.asarray(model.predict(X), dtype=float)
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y, pred))),
            "mae": float(m.mean_absolute_error(y, pred)),
            "r2": float(m.r2_score(y, pred)),
        }
    proba = model.predict_proba(X)
    classes = np.asarray(model.classes_)
    pred = classes[proba.argmax(axis=1)]
    out = {"accuracy": float(m.accuracy_score(y, pred))}
    out["log_loss"] = float(m.log_loss(y, np.clip(proba, 1e-15, 1.0), labels=classes))
    if len(classes) == 2:
        positive = y == classes[1]
        if 0 < positive.sum() < len(y):
            out["roc_auc"] = float(m.roc_auc_score(positive, proba[:, 1]))
        out["f1"] = float(m.f1_score(positive, pred == classes[1]))
    else:
        present = np.isin(classes, y)
        if present.all():
            out["roc_auc"] = float(m.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        out["f1"] = float(m.f1_score(y, pred, average="macro"))
    return out


def baseline(task: str, y_train: Any, y_test: Any, classes: Any = None) -> dict[str, float]:
    """Metrics of the trivial model on the hold-out rows, learnt from the training rows:
    always the majority class (``accuracy``; ``log_loss`` of predicting the class shares),
    or always the mean (``rmse``, ``mae``, ``r2``)."""
    from sklearn import metrics as m

    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if task == "regression":
        pred = np.full(len(y_test), float(np.mean(y_train.astype(float))))
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y_test, pred))),
            "mae": float(m.mean_absolute_error(y_test, pred)),
            "r2": float(m.r2_score(y_test, pred)),
        }
    values, counts = np.unique(y_train, return_counts=True)
    majority = values[counts.argmax()]
    labels = np.asarray(classes) if classes is not None else values
    shares = np.array([counts[values == c].sum() for c in labels], dtype=float) / counts.sum()
    proba = np.tile(np.clip(shares, 1e-15, 1.0), (len(y_test), 1))
    proba /= proba.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(np.mean(y_test == majority)),
        "log_loss": float(m.log_loss(y_test, proba, labels=labels)),
    }


def majority_class(y_train: Any) -> Any:
    values, counts = np.unique(np.asarray(y_train), return_counts=True)
    value = values[counts.argmax()]
    return value.item() if hasattr(value, "item") else value


def compare_to_baseline(
    task: str, metrics: dict[str, float], base: dict[str, float], y_train: Any
) -> list[str]:
    """Warnings for a model that does no better than the baseline on the hold-out rows."""
    if task == "regression":
        if metrics["rmse"] >= base["rmse"]:
            mean = float(np.mean(np.asarray(y_train, dtype=float)))
            return [
                f"the model's hold-out rmse {metrics['rmse']:.4g} does not beat the baseline "
                f"of always predicting the training mean {mean:.4g} (rmse {base['rmse']:.4g})"
            ]
        return []
    if metrics["accuracy"] <= base["accuracy"]:
        return [
            f"the model's hold-out accuracy {metrics['accuracy']:.4f} does not beat the "
            f"baseline of always predicting {majority_class(y_train)!r} "
            f"({base['accuracy']:.4f}); with rare classes look at roc_auc and f1, and "
            f"consider class weights"
        ]
    return []
