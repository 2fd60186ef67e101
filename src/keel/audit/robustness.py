"""Robustness evidence: evasion attacks at stated budgets, accuracy under feature noise, and
adversarial augmentation as a defence that makes a new model version.

Attacks work on the model's encoded features scaled to [0, 1] by the training rows' range
(so ``eps`` is a fraction of each feature's observed range, and every point stays inside
it): HopSkipJump (decision-only, any model) and, where ART has the model's gradients
(logistic regression), FGSM and PGD. They run on a fixed seeded sample of correctly
classified hold-out rows; a row counts as fooled when the model's class changes within the
budget. ``valid_success_rate`` counts only adversarial points that are still fooling after
being mapped back to a valid row (one category per one-hot group, whole integers).

>>> # robustness_report(model, X_test, y_test, X_train, n_rows=100, seed=0)["hopskipjump"]
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from keel.audit._attacks import (
    HSJ_DEFAULT_EPS,
    HSJ_EPS,
    LINF_DEFAULT_EPS,
    LINF_EPS,
    correct_sample,
    gradient_attacks,
    hopskipjump,
    noise_accuracy,
)
from keel.audit._space import EncodedSpace
from keel.errors import InvalidInput

__all__ = [
    "HSJ_EPS",
    "LINF_EPS",
    "adversarial_training",
    "robustness_report",
    "robustness_section",
]

SPACE = (
    "encoded features (the model's feature pipeline output), min-max scaled to [0, 1] on the "
    "training rows; attacks are clipped to that range; one-hot columns are continuous there"
)


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidInput(f"{name}: expected an integer ≥ {low}, got {value!r}")
    return int(value)


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("adversarial-robustness-toolbox", "scikit-learn", "lightgbm", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def robustness_report(
    model: Any,
    X_test: pd.DataFrame,
    y_test: np.ndarray,
    X_train: pd.DataFrame,
    *,
    n_rows: int = 100,
    noise_rows: int = 2000,
    seed: int = 0,
    max_iter: int = 10,
    max_eval: int = 200,
    hsj_eps: float = HSJ_DEFAULT_EPS,
    linf_eps: float = LINF_DEFAULT_EPS,
) -> dict[str, Any]:
    """Attack success and accuracy under attack (HopSkipJump; FGSM and PGD where the model
    has gradients) on ``n_rows`` correctly classified hold-out rows, and accuracy under
    random noise on ``noise_rows`` hold-out rows. Everything is seeded by ``seed``."""
    n_rows = _check_int(n_rows, "n_rows", 1)
    noise_rows = _check_int(noise_rows, "noise_rows", 1)
    seed = _check_int(seed, "seed", 0)
    if len(X_test) != len(y_test):
        raise InvalidInput(
            f"y_test: expected {len(X_test)} labels (one per hold-out row), got {len(y_test)}"
        )
    if len(X_test) == 0:
        raise InvalidInput("X_test: expected hold-out rows, got none")
    t0 = time.perf_counter()
    space = EncodedSpace(model, X_train)
    U, labels = correct_sample(space, X_test, y_test, n_rows, seed)
    hsj, _ = hopskipjump(
        space, U, labels, seed=seed, max_iter=max_iter, max_eval=max_eval, eps=hsj_eps
    )
    grads = gradient_attacks(space, U, labels, eps=linf_eps)
    pick = np.random.default_rng(seed).permutation(len(X_test))[:noise_rows]
    noise = noise_accuracy(
        model,
        X_test.iloc[pick].reset_index(drop=True),
        np.asarray(y_test)[pick],
        X_train,
        seed=seed,
    )
    clean = noise["clean_accuracy"]
    for rep in (hsj, grads.get("fgsm"), grads.get("pgd")):
        if rep and rep.get("supported", True):
            rep["holdout_accuracy_under_attack"] = clean * rep["accuracy_under_attack"]
    return {
        "hopskipjump": hsj,
        **grads,
        "zoo": {
            "supported": False,
            "reason": "not run: ZOO estimates gradients coordinate by coordinate, which are "
            "zero almost everywhere on tree ensembles; HopSkipJump covers decision-only attacks",
        },
        "noise": noise,
        "clean_accuracy": clean,
        "about": {
            "space": SPACE,
            "sample": "correctly classified hold-out rows, seeded order",
            "n_rows": int(len(U)),
            "seed": seed,
            "n_features": space.n_features,
            "libraries": _versions(),
            "time_s": time.perf_counter() - t0,
        },
    }


def robustness_section(ctx: Any) -> dict[str, Any]:
    """The ``robustness`` evidence section: ``robustness.hopskipjump.success_rate``,
    ``robustness.noise.worst_accuracy``, … (attack rows: at most 100 of ``ctx.sample``)."""
    if ctx.mv.task != "classification":
        raise InvalidInput(
            f"robustness: expected a classifier, got a {ctx.mv.task} model ({ctx.mv.ref})"
        )
    if getattr(ctx.model, "flavor", None) == "torch" and ctx.model.transformer is None:
        from keel.audit._attacks_torch import tensor_attacks

        return tensor_attacks(
            ctx.model,
            ctx.X_test,
            ctx.y_test,
            ctx.X_train,
            n_rows=min(200, ctx.sample),
            seed=ctx.seed,
        )
    return robustness_report(
        ctx.model,
        ctx.X_test,
        ctx.y_test,
        ctx.X_train,
        n_rows=min(100, ctx.sample),
        noise_rows=ctx.sample,
        seed=ctx.seed,
    )


def _refit(mv: Any, store: Any, Z: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """A new estimator of the same zoo kind and parameters as ``mv``'s run, fit on ``Z``."""
    from keel.train import get_run
    from keel.train._zoo import get_kind

    if mv.run_id is None:
        raise InvalidInput(
            f"ref: {mv.ref} has no training run (it is a variant); adversarial training needs "
            "the run's model kind and parameters: pass the version it was derived from"
        )
    params = get_run(store, mv.run_id)["params"]
    kind = get_kind(params.get("model", "lightgbm"))
    model_params = {k[len("model.") :]: v for k, v in params.items() if k.startswith("model.")}
    est = kind.estimator(mv.task, model_params, seed)
    return est.fit(Z, y), kind


def _wrap(model: Any, est: Any, kind: Any) -> Any:
    from sklearn.pipeline import Pipeline

    from keel.models import LightGBMModel, SklearnModel

    if kind.flavor == "lightgbm":
        classes = list(est.classes_)
        return LightGBMModel(
            model.transformer, est.booster_, model.task, model.input_schema, classes
        )
    steps = model.pipeline[:-1].steps
    pipe = Pipeline([*steps, ("model", est)])
    return SklearnModel(pipe, model.task, model.input_schema)


def _attack_figures(
    model: Any, X_test: pd.DataFrame, y_test: np.ndarray, X_train: pd.DataFrame, **kw: Any
) -> dict[str, Any]:
    space = EncodedSpace(model, X_train)
    U, labels = correct_sample(space, X_test, y_test, kw.pop("n_rows"), kw["seed"])
    hsj, _ = hopskipjump(space, U, labels, **kw)
    pred = np.asarray(model.predict(X_test), dtype=object)
    acc = float(np.mean(pred == np.asarray(y_test, dtype=object)))
    return {
        "clean_accuracy": acc,
        "hopskipjump_success_rate": hsj["success_rate"],
        "hopskipjump_valid_success_rate": hsj["valid_success_rate"],
        "hopskipjump_median_distance": hsj["median_distance"],
        "accuracy_under_attack": acc * hsj["accuracy_under_attack"],
    }


def adversarial_training(
    store: Any,
    ref: str,
    *,
    n_rows: int = 500,
    eval_rows: int = 100,
    seed: int = 0,
    max_iter: int = 10,
    max_eval: int = 200,
    eps: float = HSJ_DEFAULT_EPS,
    augment_eps: float | None = None,
    valid_only: bool = False,
    register: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Augment ``ref``'s training rows with HopSkipJump examples and retrain.

    ``n_rows`` correctly classified training rows are attacked; every adversarial point within
    ``augment_eps`` (default ``4 * eps``, L2 in the attack space) is added with its true label
    (with ``valid_only``, only points that still fool once projected onto a valid encoding,
    projected). The same zoo model kind and parameters are fit on
    the augmented encoded rows behind the same (already fitted) feature pipeline, and the
    result is registered as the next version of the model, derived from ``ref``
    (``adversarial_training_from``). Returns (new version or None when ``register`` is
    False, table) where the table holds clean accuracy and attack success before and after on
    the same hold-out rows and budgets."""
    from keel import registry
    from keel.export import prepared_of, register_variant

    n_rows = _check_int(n_rows, "n_rows", 1)
    eval_rows = _check_int(eval_rows, "eval_rows", 1)
    seed = _check_int(seed, "seed", 0)
    augment_eps = 4 * eps if augment_eps is None else augment_eps
    if isinstance(augment_eps, bool) or not isinstance(augment_eps, int | float):
        raise InvalidInput(f"augment_eps: expected a number > 0, got {augment_eps!r}")
    if not augment_eps > 0:
        raise InvalidInput(f"augment_eps: expected a number > 0, got {augment_eps!r}")
    t0 = time.perf_counter()
    mv = registry.get_version(store, ref)
    if mv.task != "classification":
        raise InvalidInput(f"ref: expected a classifier, got a {mv.task} model ({mv.ref})")
    prep = prepared_of(store, mv.ref)
    model = registry.load(store, mv.ref)
    X_tr, y_tr = prep.train[prep.columns].reset_index(drop=True), prep.train[prep.target]
    X_te, y_te = prep.test[prep.columns].reset_index(drop=True), prep.test[prep.target]
    y_tr, y_te = y_tr.to_numpy(), y_te.to_numpy()
    space = EncodedSpace(model, X_tr)
    U, labels = correct_sample(space, X_tr, y_tr, n_rows, seed)
    _, adv = hopskipjump(space, U, labels, seed=seed, max_iter=max_iter, max_eval=max_eval)
    proj = space.project(adv) if valid_only else adv
    dist = np.linalg.norm((proj - U).astype(np.float64), axis=1)
    keep = (space.predict(proj) != labels) & (dist <= augment_eps)
    Z_adv = space.decode(proj[keep])
    y_adv = np.asarray(space.classes, dtype=object)[labels[keep]].astype(y_tr.dtype)
    Z = np.vstack([space.encode_raw(X_tr), Z_adv])
    est, kind = _refit(mv, store, Z, np.concatenate([y_tr, y_adv]), seed)
    new_model = _wrap(model, est, kind)
    budget = {"n_rows": eval_rows, "seed": seed, "max_iter": max_iter, "max_eval": max_eval}
    before = _attack_figures(model, X_te, y_te, X_tr, eps=eps, **budget)
    after = _attack_figures(new_model, X_te, y_te, X_tr, eps=eps, **budget)
    settings = {
        "attacked_rows": int(len(U)),
        "added_rows": int(keep.sum()),
        "augment_eps": augment_eps,
        "valid_only": valid_only,
        "eps": eps,
        "norm": "l2",
        "space": SPACE,
        **budget,
        "model_kind": kind.name,
    }
    new_mv = None
    if register:
        detail = {"added_rows": int(keep.sum()), "eps": eps, "seed": seed}
        new_ref = register_variant(store, mv.ref, new_model, "adversarial_training", detail)
        new_mv = registry.get_version(store, new_ref)
    table = {
        "parent": mv.ref,
        "child": new_mv.ref if new_mv is not None else None,
        "before": before,
        "after": after,
        "settings": settings,
        "time_s": time.perf_counter() - t0,
    }
    return new_mv, table
