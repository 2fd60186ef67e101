"""Task metrics, computed the same way for training, search and hold-out evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PRIMARY", "evaluate"]

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
