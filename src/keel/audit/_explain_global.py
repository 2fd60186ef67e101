"""Global views of a model: importance (mean |SHAP|, permutation), PDP and ICE curves, a
surrogate tree with its fidelity, and the explanation section of an audit's evidence.

All of them work on raw features through the whole model (keel's ``Model`` protocol), are
seeded, and return plain JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.audit._explain_rows import NUMERIC, to_frame
from keel.errors import InvalidInput, MissingExtra

if TYPE_CHECKING:
    from keel.audit.explain import Attributions

__all__ = [
    "explanation_evidence",
    "partial_dependence",
    "permutation_importance",
    "plot_partial_dependence",
    "shap_importance",
    "surrogate_tree",
]

SCORINGS = ("roc_auc", "accuracy", "r2", "neg_rmse")
#: ``progress(step, fraction)``: what is being done and how far along (0 to 1) it is
Progress = Callable[[str, float], None]


def shap_importance(attributions: Attributions) -> dict[str, float]:
    """Mean |SHAP| per raw feature, largest first."""
    mean = np.abs(attributions.values).mean(axis=0)
    order = sorted(range(len(mean)), key=lambda j: (-mean[j], attributions.features[j]))
    return {attributions.features[j]: float(mean[j]) for j in order}


def _seeded_rows(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(frame) <= n:
        return frame.reset_index(drop=True)
    idx = np.sort(np.random.default_rng(seed).choice(len(frame), n, replace=False))
    return frame.iloc[idx].reset_index(drop=True)


def _class_index(model: Any, target_class: Any) -> tuple[Any, int | None]:
    if model.task != "classification":
        return None, None
    classes = list(model.output_schema.get("classes") or [])
    target = classes[-1] if target_class is None else target_class
    if target not in classes:
        raise InvalidInput(
            f"target_class: {target!r} is not a class of the model; classes: "
            f"{', '.join(map(repr, classes))}"
        )
    return target, classes.index(target)


class _Frozen:
    """A fitted keel model as scikit-learn's permutation_importance wants it (it checks for
    ``fit``; nothing refits)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit(self, X: Any, y: Any = None) -> _Frozen:  # pragma: no cover - never called
        return self


def _scorer(model: Any, scoring: str, k: int | None) -> Any:
    from sklearn import metrics

    if scoring == "roc_auc":
        if k is None:
            raise InvalidInput(
                f"scoring: roc_auc scores a classifier's probabilities; this model's task is "
                f"{model.task!r}; expected r2 or neg_rmse"
            )
        return _auc_scorer(model, k)

    def score(est: _Frozen, X: pd.DataFrame, y: np.ndarray) -> float:
        pred = np.asarray(model.predict(X))
        if scoring == "accuracy":
            return float(np.mean(pred.astype(str) == np.asarray(y).astype(str)))
        if scoring == "r2":
            return float(metrics.r2_score(y, pred))
        return -float(np.sqrt(np.mean((np.asarray(y, dtype=float) - pred) ** 2)))

    return score


def _auc_scorer(model: Any, k: int) -> Any:
    from sklearn import metrics

    positive = list(model.output_schema["classes"])[k]

    def score(est: _Frozen, X: pd.DataFrame, y: np.ndarray) -> float:
        p = np.asarray(model.predict_proba(X))[:, k]
        return float(metrics.roc_auc_score(np.asarray(y) == positive, p))

    return score


def permutation_importance(
    model: Any,
    X: Any,
    y: Any,
    *,
    scoring: str | None = None,
    n_repeats: int = 5,
    seed: int = 0,
    max_rows: int = 2000,
    target_class: Any = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Drop in score when one raw feature's values are shuffled (scikit-learn's
    ``permutation_importance`` through the whole model), per feature, largest first.

    ``scoring``: ``roc_auc`` (default for two classes, on ``target_class``), ``accuracy``
    (default for more), ``r2`` (default for regression) or ``neg_rmse``. ``progress`` is
    told after each scoring of the shuffled rows (one per feature and repeat)."""
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    frame = to_frame(X, model.input_schema)
    y = np.asarray(y)
    if len(y) != len(frame):
        raise InvalidInput(f"y: expected {len(frame)} labels (one per row), got {len(y)}")
    target, k = _class_index(model, target_class)
    classes = list(model.output_schema.get("classes") or [])
    if scoring is None:
        scoring = (
            "r2"
            if model.task != "classification"
            else ("roc_auc" if len(classes) == 2 else "accuracy")
        )
    if scoring not in SCORINGS:
        raise InvalidInput(f"scoring: expected one of {', '.join(SCORINGS)}, got {scoring!r}")
    if scoring == "roc_auc" and len(set(map(str, y))) < 2:
        raise InvalidInput("y: roc_auc needs both classes among the labels; got one")
    if len(frame) > max_rows:
        idx = np.sort(np.random.default_rng(seed).choice(len(frame), max_rows, replace=False))
        frame, y = frame.iloc[idx].reset_index(drop=True), y[idx]
    score = _scorer(model, scoring, k)
    calls = [0]
    total = 1 + n_repeats * frame.shape[1]  # the baseline, then each feature's repeats

    def counted(est: _Frozen, X: pd.DataFrame, y_: np.ndarray) -> float:
        out = score(est, X, y_)
        calls[0] += 1
        if progress is not None:
            progress(f"permutation importance ({calls[0]}/{total} scorings)", calls[0] / total)
        return out

    result = sk_permutation_importance(
        _Frozen(model),
        frame,
        y,
        scoring=counted,
        n_repeats=n_repeats,
        random_state=seed,
        n_jobs=1,
    )
    names = list(frame.columns)
    order = sorted(range(len(names)), key=lambda j: (-result.importances_mean[j], names[j]))
    return {
        "scoring": scoring,
        "class": target,
        "baseline": score(_Frozen(model), frame, y),
        "n_rows": len(frame),
        "n_repeats": n_repeats,
        "seed": seed,
        "importances": {
            names[j]: {
                "mean": float(result.importances_mean[j]),
                "std": float(result.importances_std[j]),
            }
            for j in order
        },
    }


def _response(model: Any, k: int | None) -> tuple[Any, str]:
    if model.task == "classification":
        return (lambda X: np.asarray(model.predict_proba(X), dtype=np.float64)[:, k]), (
            "probability"
        )
    return (lambda X: np.asarray(model.predict(X), dtype=np.float64)), "value"


def _grid(values: pd.Series, numeric: bool, grid_size: int, max_levels: int) -> list[Any]:
    if numeric:
        finite = values.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = finite[np.isfinite(finite)]
        if len(finite) == 0:
            return []
        unique = np.unique(finite)
        if len(unique) <= grid_size:
            return [float(v) for v in unique]
        q = np.quantile(finite, np.linspace(0.05, 0.95, grid_size))
        return [float(v) for v in np.unique(q)]
    counts = values.dropna().astype(str).value_counts()
    levels = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_levels]
    return [lv for lv, _ in levels]


def partial_dependence(
    model: Any,
    X: Any,
    feature: str,
    *,
    grid_size: int = 20,
    max_levels: int = 30,
    max_rows: int = 1000,
    n_ice: int = 50,
    seed: int = 0,
    target_class: Any = None,
) -> dict[str, Any]:
    """Partial dependence (the average) and ICE curves (single rows) of one raw feature.

    Grid: quantiles 5%..95% for a number (its values when it has few), the most frequent
    levels for text. Response: the probability of ``target_class`` (default the last class)
    for a classifier, the prediction for a regressor. One model call for the whole grid."""
    schema = model.input_schema
    names = [c["name"] for c in schema]
    if feature not in names:
        raise InvalidInput(
            f"feature: {feature!r} is not an input of the model; inputs: {', '.join(names)}"
        )
    frame = _seeded_rows(to_frame(X, schema), max_rows, seed)
    numeric = next(c for c in schema if c["name"] == feature).get("type") in NUMERIC
    grid = _grid(frame[feature], numeric, grid_size, max_levels)
    if not grid:
        raise InvalidInput(f"feature {feature!r}: no values to build a grid from")
    target, k = _class_index(model, target_class)
    f, space = _response(model, k)
    n = len(frame)
    big = pd.concat([frame] * len(grid), ignore_index=True)
    column = np.repeat(np.asarray(grid, dtype=np.float64 if numeric else object), n)
    big[feature] = column
    values = f(big).reshape(len(grid), n)
    ice_rows = np.sort(np.random.default_rng(seed).permutation(n)[: min(n_ice, n)])
    return {
        "feature": feature,
        "kind": "numeric" if numeric else "categorical",
        "grid": grid,
        "average": [float(v) for v in values.mean(axis=1)],
        "ice": values[:, ice_rows].T.tolist(),
        "ice_rows": [int(i) for i in ice_rows],
        "response": space,
        "class": target,
        "n_rows": n,
        "seed": seed,
    }


def plot_partial_dependence(curve: dict[str, Any], path: str | Path) -> Path:
    """Write one curve from :func:`partial_dependence` (average over faint ICE lines) as a
    PNG. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtra(
            "matplotlib is not installed; install it with: pip install matplotlib"
        ) from exc
    path = Path(path)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    xs = list(range(len(curve["grid"]))) if curve["kind"] == "categorical" else curve["grid"]
    for line in curve["ice"]:
        ax.plot(xs, line, color="0.7", linewidth=0.5)
    ax.plot(xs, curve["average"], color="C0", linewidth=2, label="average (PDP)")
    if curve["kind"] == "categorical":
        ax.set_xticks(xs, [str(g) for g in curve["grid"]], rotation=60, ha="right", fontsize=6)
    ax.set_xlabel(curve["feature"])
    ax.set_ylabel(curve["response"] + (f" of {curve['class']}" if curve["class"] else ""))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def surrogate_tree(
    model: Any,
    X: Any,
    *,
    max_depth: int = 3,
    seed: int = 0,
    max_rows: int = 20000,
    holdout_fraction: float = 0.3,
) -> dict[str, Any]:
    """A decision tree of ``max_depth`` fitted to the model's own predictions on X (raw
    features, one-hot encoded for the tree), its rules as text, and its fidelity: agreement
    with the model's labels (classification) or R² clipped at 0 (regression), on the rows
    it learned from and on a held-out part."""
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, export_text

    from keel.features import FeatureSpec, compile_spec

    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
        raise InvalidInput(f"max_depth: expected a whole number 1 or above, got {max_depth!r}")
    schema = model.input_schema
    frame = _seeded_rows(to_frame(X, schema), max_rows, seed)
    if len(frame) < 4:
        raise InvalidInput(f"X: a surrogate tree needs at least 4 rows, got {len(frame)}")
    spec = FeatureSpec.infer({c["name"]: c.get("type", "string") for c in schema})
    encoder = compile_spec(spec, list(frame.columns))
    Z = encoder.fit_transform(frame)
    names = [str(n) for n in encoder.get_feature_names_out()]
    classify = model.task == "classification"
    target = np.asarray(model.predict(frame))
    target = target.astype(str) if classify else target.astype(np.float64)
    tr, te = train_test_split(np.arange(len(frame)), test_size=holdout_fraction, random_state=seed)
    tree_cls = DecisionTreeClassifier if classify else DecisionTreeRegressor
    tree = tree_cls(max_depth=max_depth, random_state=seed).fit(Z[tr], target[tr])

    def fidelity(idx: np.ndarray) -> float:
        pred = tree.predict(Z[idx])
        if classify:
            return float(np.mean(pred == target[idx]))
        resid = float(np.sum((target[idx] - pred) ** 2))
        total = float(np.sum((target[idx] - target[idx].mean()) ** 2))
        r2 = 1.0 - resid / total if total > 0 else (1.0 if resid == 0 else 0.0)
        return float(min(1.0, max(0.0, r2)))

    return {
        "max_depth": max_depth,
        "depth": int(tree.get_depth()),
        "n_leaves": int(tree.get_n_leaves()),
        "metric": "agreement" if classify else "r2_clipped_at_0",
        "fidelity": {"train": fidelity(tr), "holdout": fidelity(te)},
        "n_rows": {"train": len(tr), "holdout": len(te)},
        "rules": export_text(tree, feature_names=names, decimals=3),
        "seed": seed,
    }


def explanation_evidence(
    model: Any,
    X: Any,
    y: Any = None,
    *,
    background: Any = None,
    seed: int = 0,
    n_rows: int = 500,
    n_local: int = 5,
    n_pdp: int = 5,
    surrogate_depth: int = 3,
    n_repeats: int = 5,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The explanations section of an audit: global importance, a few local explanations,
    PDP/ICE for the most important features, a surrogate tree; with seeds, sample sizes,
    timings and library versions, so it can be repeated. ``progress(step, fraction)`` is
    told how far along it is as it goes (SHAP values in chunks of rows where they are
    estimated by sampling, each scoring of the permutation importance, each PDP curve).

    For a fairness-mitigated version the SHAP values explain the score its decision is made
    from, and ``explains`` says which (see ``keel.audit._explain_scored``); the permutation
    importance, PDP and surrogate tree are of the version's own decisions."""
    from importlib import metadata

    from keel.audit.explain import Explainer

    frame = to_frame(X, model.input_schema)
    rows = _seeded_rows(frame, n_rows, seed)
    tell = _stages(progress, {"shap": 0.35, "permutation": 0.4, "pdp": 0.15, "surrogate": 0.1})
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    explainer = Explainer(model, seed=seed).fit(frame if background is None else background)
    attributions = _attributions(explainer, rows, lambda f, what: tell("shap", f, what))
    timings["shap_s"] = time.perf_counter() - t0
    importance = shap_importance(attributions)
    out: dict[str, Any] = {
        "method": attributions.method,
        "space": attributions.space,
        "class": attributions.target,
        "expected_value": attributions.expected_value,
        "global": {"mean_abs_shap": importance},
        "local": attributions.rows()[:n_local],
    }
    if attributions.explains is not None:
        out["explains"] = attributions.explains
    if y is not None:
        t0 = time.perf_counter()
        out["global"]["permutation"] = permutation_importance(
            model,
            frame,
            y,
            n_repeats=n_repeats,
            seed=seed,
            progress=lambda what, f: tell("permutation", f, what),
        )
        timings["permutation_importance_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    features = list(importance)[:n_pdp]
    out["pdp"] = []
    for i, f in enumerate(features):
        tell("pdp", i / len(features), f"partial dependence of {f!r}")
        out["pdp"].append(partial_dependence(model, rows, f, seed=seed))
    timings["pdp_s"] = time.perf_counter() - t0
    tell("surrogate", 0.0, "surrogate tree")
    t0 = time.perf_counter()
    out["surrogate"] = surrogate_tree(model, frame, max_depth=surrogate_depth, seed=seed)
    timings["surrogate_s"] = time.perf_counter() - t0
    tell("surrogate", 1.0, "surrogate tree")
    versions: dict[str, str | None] = {}
    for name in ("keel", "lightgbm", "scikit-learn", "numpy", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    out["repeat"] = {
        "seed": seed,
        "rows_explained": len(rows),
        "rows_total": len(frame),
        "n_background": explainer.n_background,
        "n_permutations": explainer.n_permutations,
        "versions": versions,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    return out


# rows per chunk of a sampled (exact or permutation) SHAP estimate, so progress moves
_SHAP_CHUNK = 50


def _attributions(
    explainer: Any, rows: pd.DataFrame, tell: Callable[[float, str], None]
) -> Attributions:
    """SHAP values of ``rows``: in one call where the method is exact and fast (tree,
    linear), else in chunks, telling ``tell(fraction, what)`` after each."""
    from keel.audit.explain import Attributions

    n = len(rows)
    if explainer.method_ in ("tree", "linear") or n <= _SHAP_CHUNK:
        tell(0.0, f"SHAP values ({explainer.method_}, {n} rows)")
        out = explainer.attributions(rows)
        tell(1.0, f"SHAP values ({explainer.method_}, {n} rows)")
        return out
    parts = []
    for start in range(0, n, _SHAP_CHUNK):
        tell(start / n, f"SHAP values ({explainer.method_}, {start}/{n} rows)")
        parts.append(explainer.attributions(rows.iloc[start : start + _SHAP_CHUNK]))
    tell(1.0, f"SHAP values ({explainer.method_}, {n}/{n} rows)")
    first = parts[0]
    return Attributions(
        np.concatenate([p.values for p in parts]),
        first.expected_value,
        np.concatenate([p.output for p in parts]),
        first.features,
        first.space,
        first.method,
        first.target,
        explains=first.explains,
    )


def _stages(
    progress: Progress | None, shares: dict[str, float]
) -> Callable[[str, float, str], None]:
    """``tell(stage, fraction, what)``: the fraction of the whole, from each stage's share."""
    starts, at = {}, 0.0
    for name, share in shares.items():
        starts[name] = at
        at += share

    def tell(stage: str, fraction: float, what: str) -> None:
        if progress is not None:
            done = starts[stage] + shares[stage] * min(max(fraction, 0.0), 1.0)
            progress(what, min(done, 1.0))

    return tell
