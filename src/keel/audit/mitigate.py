"""Fairness mitigation: each method makes a new version of a model and reports a before/after
table on the hold-out rows (accuracy, selection rate by group, every disparity of
:mod:`keel.audit.fairness`).

* :func:`reweigh` (pre-processing): Kamiran & Calders reweighing. Each training row of group
  ``g`` and label ``y`` gets the weight ``P(g) P(y) / P(g, y)``, so that group and label are
  independent in the weighted data; the same model kind is retrained with the same
  parameters, spec and seed on those weights.
* :func:`exponentiated_gradient` (in-processing): fairlearn's ``ExponentiatedGradient``
  around the model's estimator, on the features as the model's fitted transform encodes
  them; a randomized ensemble (:class:`keel.models.EnsembleModel`).
* :func:`threshold_optimizer` (post-processing): fairlearn's ``ThresholdOptimizer`` on the
  model's score for the positive class, fit on the training rows; per-group thresholds over
  the unchanged model (:class:`keel.models.ThresholdedModel`). Its decisions read the
  sensitive column, which becomes an input of the new version if the model did not read it.

The two fairlearn methods make randomized decisions; keel draws each row's decision from a
keyed hash of the row, so a row always gets the same answer (see :mod:`keel.models`).

Each new version is recorded with its lineage: a run that names the parent version (role
``mitigates``), the training datasets, the method and its settings (``mitigation.*``
parameters) and the table (artifact ``mitigation.json``); the version itself is linked to
its parent (role ``mitigated_from``) and tagged ``mitigation=<method>``. Bad input (an unknown
method or constraint, a sensitive column the data lacks, a single group or a single label)
raises :class:`~keel.errors.InvalidInput` before anything is written.

>>> w = reweighing_weights(["a", "a", "a", "a", "b", "b", "b", "b"], [1, 1, 1, 0, 1, 0, 0, 0])
>>> [round(float(x), 4) for x in w]
[0.6667, 0.6667, 0.6667, 2.0, 2.0, 0.6667, 0.6667, 0.6667]
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from keel.audit._mitigate_setup import Parent, holdout_metrics, load_parent, record
from keel.audit._mitigate_table import before_after, table_rows
from keel.errors import InvalidInput
from keel.store import Store

__all__ = [
    "CONSTRAINTS",
    "METHODS",
    "Mitigation",
    "exponentiated_gradient",
    "mitigate",
    "mitigation_of",
    "reweigh",
    "reweighing_weights",
    "table_rows",
    "threshold_optimizer",
]

#: keel's constraint names → (fairlearn reductions class, ThresholdOptimizer constraint)
CONSTRAINTS: dict[str, tuple[str, str]] = {
    "demographic_parity": ("DemographicParity", "demographic_parity"),
    "equalized_odds": ("EqualizedOdds", "equalized_odds"),
    "equal_opportunity": ("TruePositiveRateParity", "true_positive_rate_parity"),
}


class Mitigation(NamedTuple):
    """What a mitigation returns: the new version and its before/after table (a tuple, so
    ``version, table = reweigh(...)`` works)."""

    version: Any
    table: dict[str, Any]


def reweighing_weights(groups: Any, labels: Any) -> np.ndarray:
    """Kamiran & Calders weights: ``P(g) P(y) / P(g, y)`` for each row of group ``g`` and
    label ``y``, so that group and label are independent in the weighted rows (and each
    group and each label keeps its total weight)."""
    g = np.asarray(groups, dtype=object)
    y = np.asarray(labels, dtype=object)
    if g.shape != y.shape or g.ndim != 1:
        raise InvalidInput(
            f"reweighing: expected one group per label, got {g.shape[0]} groups and "
            f"{y.shape[0]} labels"
        )
    gc, gu = _codes(g, "groups")
    yc, yu = _codes(y, "labels")
    if len(yu) < 2:
        raise InvalidInput(
            f"labels: reweighing needs at least 2 classes, got only {yu[0] if yu else None!r}"
        )
    n = len(g)
    cells = np.bincount(gc * len(yu) + yc, minlength=len(gu) * len(yu)).reshape(len(gu), -1)
    n_g, n_y = cells.sum(axis=1), cells.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.outer(n_g, n_y) / (n * cells.astype(np.float64))
    return w[gc, yc]


def _codes(values: np.ndarray, what: str) -> tuple[np.ndarray, list[Any]]:
    import pandas as pd

    if pd.isna(values).any():
        raise InvalidInput(f"{what}: reweighing needs a value in every row, got missing ones")
    codes, uniques = pd.factorize(values.astype(str), sort=True)
    return np.asarray(codes, dtype=np.int64), list(uniques)


def _check_constraint(constraint: str, method: str, allowed: tuple[str, ...]) -> None:
    if constraint not in allowed:
        raise InvalidInput(
            f"--constraint: {method} supports {', '.join(allowed)}; got {constraint!r}"
        )


def _check_seed(seed: Any) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidInput(f"seed: expected a whole number 0 or above, got {seed!r}")
    return seed


def _table(parent: Parent, after: np.ndarray, settings: dict[str, Any]) -> dict[str, Any]:
    """The before/after table on the hold-out rows, headed by what was done."""
    table = before_after(
        parent.y_test,
        np.asarray(parent.model.predict(parent.X_test)),
        after,
        parent.prep.test,
        parent.sensitive,
        pos_label=parent.positive,
    )
    head = {"parent": parent.mv.ref, "sensitive": parent.sensitive, "settings": settings}
    return {**head, **table}


# ---------------------------------------------------------------- reweighing


def reweigh(
    store: Store,
    ref: str,
    sensitive: str | list[str],
    *,
    constraint: str = "demographic_parity",
    name: str | None = None,
) -> Mitigation:
    """Retrain ``ref``'s model kind with its parameters, feature spec and seed on
    Kamiran & Calders weights for ``sensitive``; register the result as a new version.

    Reweighing targets demographic parity (group and label independent in the training
    data); ``constraint`` is accepted only as ``"demographic_parity"``."""
    from keel.features import FeatureSpec
    from keel.models._mitigated import group_keys
    from keel.train import train

    _check_constraint(constraint, "reweigh", ("demographic_parity",))
    parent = load_parent(store, ref, sensitive, "reweigh", name)
    p = parent.training_params
    if "model" not in p or "seed" not in p:
        raise InvalidInput(f"reweigh: the run of {parent.mv.ref} does not record its model kind")
    spec_ref = (parent.run.get("artifacts") or {}).get("feature_spec.json")
    if spec_ref:
        import json

        parent.prep.spec = FeatureSpec.from_dict(json.loads(store.blobs.get_bytes(spec_ref["sha"])))
    keys = group_keys(parent.prep.train, parent.sensitive)
    weights = reweighing_weights(keys, parent.y_train)
    cells = _weight_table(keys, parent.y_train, weights)
    settings: dict[str, Any] = {
        "method": "reweigh",
        "constraint": constraint,
        "sensitive": parent.sensitive,
        "weights": cells,
        "fit_on": "train",
    }
    t0 = time.perf_counter()
    res = train(
        store,
        "",
        parent.prep.target,
        model=p["model"],
        params=parent.model_params,
        seed=int(p["seed"]),
        experiment=parent.run.get("experiment") or "default",
        tags={"mitigation": "reweigh", "parent": parent.mv.ref},
        prepared=parent.prep,
        sample_weight=weights,
    )
    settings["fit_seconds"] = time.perf_counter() - t0
    table = _table(parent, np.asarray(res.model.predict(parent.X_test)), settings)
    mv = record(
        store,
        parent,
        method="reweigh",
        settings=settings,
        table=table,
        name=name,
        run_id=res.run_id,
        metrics=res.metrics,
    )
    return Mitigation(mv, {**table, "version": mv.ref})


def _weight_table(keys: np.ndarray, y: np.ndarray, w: np.ndarray) -> list[dict[str, Any]]:
    """One entry per (group, label) cell: its rows and its weight."""
    out = []
    for g in sorted(set(keys)):
        for label in sorted(set(y.tolist()), key=str):
            rows = (keys == g) & (y == label)
            if rows.any():
                out.append(
                    {
                        "group": g,
                        "label": label,
                        "rows": int(rows.sum()),
                        "weight": float(w[rows][0]),
                    }
                )
    return out


# ---------------------------------------------------------------- exponentiated gradient


def _estimator_parts(parent: Parent) -> tuple[Any, Any]:
    """The fitted feature transform, and an unfitted estimator like the parent's."""
    from keel.train import get_kind

    p = parent.training_params
    transformer = getattr(parent.model, "transformer", None)
    if transformer is None or "model" not in p:
        raise InvalidInput(
            f"expgrad: {parent.mv.ref} ({parent.mv.flavor}) has no feature transform and "
            "estimator to reduce; expected a model keel trained"
        )
    estimator = get_kind(p["model"]).estimator("classification", parent.model_params, p["seed"])
    return transformer, estimator


def exponentiated_gradient(
    store: Store,
    ref: str,
    sensitive: str | list[str],
    constraint: str = "demographic_parity",
    *,
    eps: float = 0.01,
    max_iter: int = 50,
    seed: int = 0,
    name: str | None = None,
) -> Mitigation:
    """fairlearn's ``ExponentiatedGradient(estimator, constraint, eps, max_iter)`` on the
    training rows as ``ref``'s fitted transform encodes them, the estimator being ``ref``'s
    kind with its parameters; register the weighted ensemble as a new version. ``seed``
    keys each row's draw of its randomized decision."""
    import fairlearn.reductions as red

    from keel.models import EnsembleModel
    from keel.models._mitigated import group_keys

    _check_constraint(constraint, "expgrad", tuple(CONSTRAINTS))
    seed = _check_seed(seed)
    if not (isinstance(eps, int | float) and eps > 0):
        raise InvalidInput(f"eps: expected a number above 0, got {eps!r}")
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise InvalidInput(f"max_iter: expected a whole number 1 or above, got {max_iter!r}")
    parent = load_parent(store, ref, sensitive, "expgrad", name)
    transformer, estimator = _estimator_parts(parent)
    t0 = time.perf_counter()
    eg = red.ExponentiatedGradient(
        estimator, getattr(red, CONSTRAINTS[constraint][0])(), eps=float(eps), max_iter=max_iter
    )
    try:
        with warnings.catch_warnings():
            # fairlearn 0.15's moments grow and re-type Series in ways pandas 3 deprecates
            warnings.filterwarnings("ignore", category=_pandas_deprecation())
            eg.fit(
                transformer.transform(parent.X_train),
                (parent.y_train == parent.positive).astype(np.int64),
                sensitive_features=group_keys(parent.prep.train, parent.sensitive),
            )
    except ValueError as exc:
        raise InvalidInput(f"expgrad on {parent.mv.ref}: {str(exc).splitlines()[0]}") from None
    members, weights = _members(eg)
    settings = {
        "method": "expgrad",
        "constraint": constraint,
        "sensitive": parent.sensitive,
        "eps": float(eps),
        "max_iter": max_iter,
        "seed": seed,
        "fit_on": "train",
        "fairlearn_moment": CONSTRAINTS[constraint][0],
        "oracle_calls": int(eg.n_oracle_calls_),
        "best_gap": float(eg.best_gap_),
        "members": len(members),
        "weights": weights,
        "fit_seconds": time.perf_counter() - t0,
    }
    model = EnsembleModel(
        transformer,
        members,
        weights,
        parent.mv.input_schema,
        parent.classes,
        seed=seed,
        info={k: settings[k] for k in ("method", "constraint", "sensitive", "eps", "max_iter")},
    )
    return _register(store, parent, model, settings, name)


def _register(
    store: Store, parent: Parent, model: Any, settings: dict[str, Any], name: str | None
) -> Mitigation:
    """Table, metrics and record of a mitigated model that decides (expgrad, threshold)."""
    after = np.asarray(model.predict(parent.prep.test[[c["name"] for c in model.input_schema]]))
    table = _table(parent, after, settings)
    mv = record(
        store,
        parent,
        method=settings["method"],
        settings=settings,
        table=table,
        name=name,
        model=model,
        metrics=holdout_metrics(parent.y_test, after, parent.positive),
    )
    return Mitigation(mv, {**table, "version": mv.ref})


def _pandas_deprecation() -> type[Warning]:
    import pandas as pd

    return getattr(pd.errors, "Pandas4Warning", FutureWarning)


def _members(eg: Any) -> tuple[list[Any], list[float]]:
    """The predictors with weight above zero (LightGBM ones as their boosters), and their
    weights summing to 1."""
    import lightgbm as lgb

    members, weights = [], []
    for predictor, w in zip(eg.predictors_, eg.weights_, strict=True):
        if w <= 0:
            continue
        members.append(predictor.booster_ if isinstance(predictor, lgb.LGBMModel) else predictor)
        weights.append(float(w))
    total = sum(weights)
    return members, [w / total for w in weights]


# ---------------------------------------------------------------- threshold optimizer


def _score_estimator() -> Any:
    """A fitted no-op estimator whose ``predict`` is its one input column: fairlearn's
    ThresholdOptimizer(prefit=True) then works on the model's scores themselves."""
    from sklearn.base import BaseEstimator

    class Scores(BaseEstimator):
        def fit(self, X: Any, y: Any = None) -> Scores:
            return self

        def predict(self, X: Any) -> np.ndarray:
            return np.asarray(X, dtype=np.float64)[:, 0]

        def __sklearn_is_fitted__(self) -> bool:
            return True

    return Scores()


def threshold_optimizer(
    store: Store,
    ref: str,
    sensitive: str | list[str],
    constraint: str = "demographic_parity",
    *,
    objective: str = "accuracy_score",
    grid_size: int = 1000,
    seed: int = 0,
    name: str | None = None,
) -> Mitigation:
    """fairlearn's ``ThresholdOptimizer(prefit=True)`` on ``ref``'s score for the positive
    class over the training rows; register the per-group thresholds over the unchanged
    model as a new version (flavor ``postprocessed``). ``seed`` keys each row's draw where
    the rule randomizes between two thresholds."""
    from fairlearn.postprocessing import ThresholdOptimizer

    from keel.models import ThresholdedModel
    from keel.models._mitigated import group_keys, rule_from_fairlearn

    _check_constraint(constraint, "threshold", tuple(CONSTRAINTS))
    seed = _check_seed(seed)
    if objective not in ("accuracy_score", "balanced_accuracy_score"):
        raise InvalidInput(
            f"objective: expected 'accuracy_score' or 'balanced_accuracy_score', got {objective!r}"
        )
    if not isinstance(grid_size, int) or isinstance(grid_size, bool) or grid_size < 10:
        raise InvalidInput(f"grid_size: expected a whole number 10 or above, got {grid_size!r}")
    parent = load_parent(store, ref, sensitive, "threshold", name)
    t0 = time.perf_counter()
    to = ThresholdOptimizer(
        estimator=_score_estimator(),
        constraints=CONSTRAINTS[constraint][1],
        objective=objective,
        grid_size=grid_size,
        prefit=True,
        predict_method="predict",
    )
    pos = parent.classes.index(parent.positive)
    to.fit(
        np.asarray(parent.model.predict_proba(parent.X_train), dtype=np.float64)[:, [pos]],
        (parent.y_train == parent.positive).astype(np.int64),
        sensitive_features=group_keys(parent.prep.train, parent.sensitive),
    )
    rule = {
        "method": "threshold",
        "constraint": constraint,
        "objective": objective,
        "sensitive": parent.sensitive,
        "positive_class": parent.positive,
        "groups": rule_from_fairlearn(to.interpolated_thresholder_.interpolation_dict),
    }
    settings = {
        "method": "threshold",
        "constraint": constraint,
        "sensitive": parent.sensitive,
        "objective": objective,
        "grid_size": grid_size,
        "seed": seed,
        "fit_on": "train",
        "rule": rule["groups"],
        "fit_seconds": time.perf_counter() - t0,
    }
    schema = [*parent.mv.input_schema, *parent.extra_inputs()]
    model = ThresholdedModel(parent.model, rule, schema, seed=seed, base_sha=parent.mv.artifact_sha)
    return _register(store, parent, model, settings, name)


# ---------------------------------------------------------------- one entry point

#: method names (as ``keel mitigate --method`` takes them) → functions
METHODS: dict[str, Callable[..., Mitigation]] = {
    "reweigh": reweigh,
    "expgrad": exponentiated_gradient,
    "threshold": threshold_optimizer,
}


def mitigate(
    store: Store,
    ref: str,
    method: str,
    sensitive: str | list[str],
    *,
    constraint: str = "demographic_parity",
    **options: Any,
) -> Mitigation:
    """Run mitigation ``method`` (one of :data:`METHODS`) on ``ref``; ``options`` go to it."""
    if method not in METHODS:
        raise InvalidInput(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    if constraint not in CONSTRAINTS:
        raise InvalidInput(
            f"--constraint: expected one of {', '.join(CONSTRAINTS)}, got {constraint!r}"
        )
    return METHODS[method](store, ref, sensitive, constraint=constraint, **options)


def mitigation_of(store: Store, ref: str) -> dict[str, Any] | None:
    """The before/after table stored when version ``ref`` was made by a mitigation (with
    ``version`` set to it), or None for a version no mitigation made: what an evidence
    section or a model card shows as ``mitigation``."""
    import json

    from keel import registry
    from keel.train import get_run

    mv = registry.get_version(store, ref)
    if mv.run_id is None:
        return None
    artifact = get_run(store, mv.run_id)["artifacts"].get("mitigation.json")
    if artifact is None:
        return None
    return {**json.loads(store.blobs.get_bytes(artifact["sha"])), "version": mv.ref}
