"""Robustness evidence on rows an applicant could actually submit, and adversarial
augmentation that is kept only when it makes the model harder to fool on such rows.

Every attack here changes a row into another *valid* row (:mod:`keel.audit._valid_rows`):
whole numbers stay whole and inside the training range, categories stay categories seen in
training, missing cells stay missing, and the features a policy freezes never change
(``keel.yaml``: ``audit: robustness: {frozen: [age, race, sex]}``). Two attacks, on every
tabular classifier (any zoo kind, the DP ones included; they only need ``predict_proba``):

* ``hopskipjump``: ART's decision-based HopSkipJump, whose every query is projected onto a
  valid row before the model answers; ``success_rate`` is the share of attacked rows whose
  projected adversarial row flips the decision within the budget ``eps`` (L2 over features:
  a number moves a fraction of its training range, a changed category counts 1).
* ``counterfactual``: for each attacked row, the smallest valid change — fewest features,
  then smallest size — that flips the decision; ``success_rate`` is the share flipped with at
  most ``max_features`` features, ``flip_rate`` by number of features.

Each carries ``curve``: ``[{"budget": b, "success_rate": s}, ...]`` (``budget_unit`` says in
what), computed on the same valid rows. Attacks run on a seeded sample of correctly
classified hold-out rows; noise accuracy is measured on ``noise_rows`` hold-out rows.

>>> # robustness_report(model, X_test, y_test, X_train, n_rows=100, frozen=["age"])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from keel.audit._attacks import noise_accuracy
from keel.audit._counterfactual import counterfactual_search, summarise
from keel.audit._valid_attacks import (
    HSJ_BUDGETS,
    HSJ_DEFAULT_EPS,
    correct_rows,
    valid_hopskipjump,
)
from keel.audit._valid_rows import ValidRows, check_frozen
from keel.errors import InvalidInput

__all__ = [
    "HSJ_BUDGETS",
    "adversarial_training",
    "frozen_of",
    "robustness_report",
    "robustness_section",
]

SPACE = (
    "valid rows: integers whole and within the training range, floats within it, categories "
    "seen in training, missing cells unchanged, frozen features unchanged"
)
NOT_RUN = (
    "FGSM and PGD are not run on tabular models: they step along gradients of encoded, "
    "continuous features, and their points are not rows anyone could submit; HopSkipJump and "
    "the counterfactual search attack valid rows on every model kind"
)


#: ``report(step, fraction)``: progress within the robustness work, as the audit hears it.
Report = Callable[[str, float], None]
#: Shares of the robustness section's time (measured on Adult): HopSkipJump, the
#: counterfactual search, then accuracy under noise.
HSJ_SHARE, CF_SHARE = 0.7, 0.1


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


def frozen_of(settings: Any) -> list[str]:
    """The frozen features of a project's ``audit`` settings (``robustness.frozen``)."""
    rob = (settings or {}).get("robustness") or {}
    return list(rob.get("frozen") or []) if isinstance(rob, dict) else []


def _attacks(
    vr: ValidRows,
    X: pd.DataFrame,
    labels: np.ndarray,
    X_train: pd.DataFrame,
    *,
    seed: int,
    max_iter: int,
    max_eval: int,
    eps: float,
    max_features: int,
    report: Report | None = None,
) -> dict[str, Any]:
    """Both attacks on the rows ``X``; ``report(step, fraction)`` hears of each attacked
    row (HopSkipJump: 0 to 0.7) and each number of features searched (0.7 to 0.8)."""

    def hsj_done(i: int, n: int) -> None:
        if report is not None:
            report(f"HopSkipJump on valid rows ({i}/{n} rows)", HSJ_SHARE * i / n)

    def cf_done(k: int, n: int) -> None:
        if report is not None:
            share = HSJ_SHARE + CF_SHARE * k / n
            report(f"counterfactual search ({k}/{n} features)", share)

    hsj, _ = valid_hopskipjump(
        vr,
        X,
        labels,
        X_train,
        seed=seed,
        max_iter=max_iter,
        max_eval=max_eval,
        eps=eps,
        progress=hsj_done,
    )
    hsj_done(len(X), max(len(X), 1))
    t0 = time.perf_counter()
    found = counterfactual_search(vr, X, labels, max_features=max_features, progress=cf_done)
    cf = summarise(found, max_features, t0)
    return {"hopskipjump": hsj, "counterfactual": cf}


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
    max_eval: int = 100,
    hsj_eps: float = HSJ_DEFAULT_EPS,
    max_features: int = 3,
    frozen: list[str] | None = None,
    report: Report | None = None,
) -> dict[str, Any]:
    """Valid-row attack success (HopSkipJump and the counterfactual search) on ``n_rows``
    correctly classified hold-out rows, and accuracy under random noise on ``noise_rows``
    hold-out rows. ``frozen`` features never change. Everything is seeded by ``seed``.
    ``report(step, fraction)``: told as the work goes (the audit's progress within the
    section)."""
    n_rows = _check_int(n_rows, "n_rows", 1)
    noise_rows = _check_int(noise_rows, "noise_rows", 1)
    seed = _check_int(seed, "seed", 0)
    max_features = _check_int(max_features, "max_features", 1)
    if len(X_test) != len(y_test):
        raise InvalidInput(
            f"y_test: expected {len(X_test)} labels (one per hold-out row), got {len(y_test)}"
        )
    if len(X_test) == 0:
        raise InvalidInput("X_test: expected hold-out rows, got none")
    t0 = time.perf_counter()
    frozen = check_frozen(model, frozen)
    vr = ValidRows(model, X_train, frozen)
    X, labels = correct_rows(vr, X_test, y_test, n_rows, seed)
    out = _attacks(
        vr,
        X,
        labels,
        X_train,
        seed=seed,
        max_iter=max_iter,
        max_eval=max_eval,
        eps=hsj_eps,
        max_features=max_features,
        report=report,
    )
    if report is not None:
        report(f"accuracy under noise ({min(noise_rows, len(X_test))} rows)", HSJ_SHARE + CF_SHARE)
    pick = np.random.default_rng(seed).permutation(len(X_test))[:noise_rows]
    noise = noise_accuracy(
        model,
        X_test.iloc[pick].reset_index(drop=True),
        np.asarray(y_test)[pick],
        X_train,
        seed=seed,
    )
    clean = noise["clean_accuracy"]
    for rep in out.values():
        rep["holdout_accuracy_under_attack"] = clean * rep["accuracy_under_attack"]
    return {
        **out,
        "noise": noise,
        "clean_accuracy": clean,
        "about": {
            "space": SPACE,
            "frozen": frozen,
            "mutable": [c.name for c in vr.mutable],
            "fast_encoding": vr.fast is not None,
            "sample": "correctly classified hold-out rows, seeded order",
            "n_rows": int(len(X)),
            "seed": seed,
            "not_run": NOT_RUN,
            "libraries": _versions(),
            "time_s": time.perf_counter() - t0,
        },
    }


def robustness_section(ctx: Any) -> dict[str, Any]:
    """The ``robustness`` evidence section: ``robustness.hopskipjump.success_rate``,
    ``robustness.counterfactual.success_rate``, ``robustness.noise.worst_accuracy``, …
    (attack rows: at most 100 of ``ctx.sample``; frozen features from the project's
    ``audit.robustness.frozen``)."""
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
    frozen = frozen_of(ctx.settings)
    try:
        check_frozen(ctx.model, frozen)
    except InvalidInput as exc:
        raise InvalidInput(f"keel.yaml: audit.robustness.frozen: {exc}") from None
    return robustness_report(
        ctx.model,
        ctx.X_test,
        ctx.y_test,
        ctx.X_train,
        n_rows=min(100, ctx.sample),
        noise_rows=ctx.sample,
        seed=ctx.seed,
        frozen=frozen,
        report=ctx.report,
    )


def _refit(mv: Any, store: Any, Z: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """A new estimator of the same zoo kind and parameters as ``mv``'s run, fit on ``Z``."""
    from keel.train import get_run
    from keel.train._zoo import get_kind

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


def _robust_figures(
    model: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    X_train: pd.DataFrame,
    X_holdout: pd.DataFrame,
    y_holdout: np.ndarray,
    frozen: list[str],
    **kw: Any,
) -> dict[str, Any]:
    """Valid-row figures of ``model`` on the rows ``X`` (labels ``y``): the attacks run on
    the rows it classifies correctly, and a row it gets wrong counts as fooled, so two
    models are compared on the same rows."""
    vr = ValidRows(model, X_train, frozen)
    classes = np.asarray(vr.classes, dtype=object)
    pred = vr.predict(X)
    ok = classes[pred] == np.asarray(y, dtype=object)
    rep = _attacks(vr, X[ok].reset_index(drop=True), pred[ok], X_train, **kw)
    n, n_ok = len(X), int(ok.sum())
    hold = np.asarray(model.predict(X_holdout), dtype=object) == np.asarray(y_holdout, dtype=object)

    def robust(rate: float) -> float:  # correct and not flipped, over every evaluated row
        return n_ok * (1.0 - rate) / n if n_ok else 0.0

    hsj, cf = rep["hopskipjump"], rep["counterfactual"]
    out = {
        "clean_accuracy": float(hold.mean()),
        "evaluated_rows": n,
        "correct_rows": n_ok,
        "hopskipjump_success_rate": hsj["success_rate"] if n_ok else None,
        "hopskipjump_robust_rate": robust(hsj["success_rate"]) if n_ok else 0.0,
    }
    for k, r in (cf["flip_rate"] if n_ok else {}).items():
        out[f"counterfactual_flip_rate_{k}"] = r
        out[f"counterfactual_robust_rate_{k}"] = robust(r)
    rates = [float(v) for k, v in out.items() if "robust_rate" in k and v is not None]
    out["valid_row_robustness"] = float(np.mean(rates)) if rates else 0.0
    return out


def adversarial_training(
    store: Any,
    ref: str,
    *,
    n_rows: int = 500,
    eval_rows: int = 100,
    seed: int = 0,
    max_iter: int = 10,
    max_eval: int = 100,
    eps: float = HSJ_DEFAULT_EPS,
    max_features: int = 3,
    frozen: list[str] | None = None,
    min_gain: float = 0.01,
    max_accuracy_drop: float = 0.01,
    register: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Augment ``ref``'s training rows with valid adversarial rows and retrain; keep the
    result only if it is harder to fool on valid rows.

    ``n_rows`` correctly classified training rows are attacked with the counterfactual search
    (valid rows, ``frozen`` features — default: the project's ``audit.robustness.frozen`` —
    unchanged); every minimal flipping row is added with the attacked row's true label. The
    same zoo kind and parameters are fit on the augmented rows behind the same (already
    fitted) feature pipeline. Both models are then attacked on the same ``eval_rows`` hold-out
    rows (HopSkipJump at ``eps`` and the counterfactual search); ``valid_row_robustness`` is
    the mean, over those attacks and budgets, of the share of rows a model classifies
    correctly and is not fooled on. The new model is registered as the next version (derived
    from ``ref``, ``adversarial_training_from``) only when that figure rises by at least
    ``min_gain`` and hold-out accuracy falls by at most ``max_accuracy_drop``; otherwise
    nothing is registered and the table says why. Returns (new version or None, table)."""
    from keel import registry
    from keel.export import prepared_of, register_variant

    n_rows = _check_int(n_rows, "n_rows", 1)
    eval_rows = _check_int(eval_rows, "eval_rows", 1)
    seed = _check_int(seed, "seed", 0)
    for name, v in (("min_gain", min_gain), ("max_accuracy_drop", max_accuracy_drop)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
            raise InvalidInput(f"{name}: expected a number ≥ 0, got {v!r}")
    t0 = time.perf_counter()
    mv = registry.get_version(store, ref)
    if mv.task != "classification":
        raise InvalidInput(f"ref: expected a classifier, got a {mv.task} model ({mv.ref})")
    if mv.run_id is None:
        raise InvalidInput(
            f"ref: {mv.ref} has no training run (it is a variant); adversarial training needs "
            "the run's model kind and parameters: pass the version it was derived from"
        )
    if frozen is None:
        frozen = frozen_of((getattr(store, "settings", None) or {}).get("audit"))
    prep = prepared_of(store, mv.ref)
    model = registry.load(store, mv.ref)
    frozen = check_frozen(model, frozen)
    X_tr, y_tr = prep.train[prep.columns].reset_index(drop=True), prep.train[prep.target]
    X_te, y_te = prep.test[prep.columns].reset_index(drop=True), prep.test[prep.target]
    y_tr, y_te = y_tr.to_numpy(), y_te.to_numpy()
    vr = ValidRows(model, X_tr, frozen)
    X_att, labels = correct_rows(vr, X_tr, y_tr, n_rows, seed)
    found = counterfactual_search(vr, X_att, labels, max_features=max_features)
    adv = [f["row"] for f in found if f["features"] is not None]
    classes = np.asarray(vr.classes, dtype=object)
    y_adv = np.asarray([classes[labels[i]] for i, f in enumerate(found) if f["features"]])
    X_adv = pd.concat(adv, ignore_index=True) if adv else X_tr.iloc[:0]
    Z = np.vstack([_encode(model, X_tr), _encode(model, X_adv)]) if adv else _encode(model, X_tr)
    y_all = np.concatenate([y_tr, y_adv.astype(y_tr.dtype)]) if adv else y_tr
    est, kind = _refit(mv, store, Z, y_all, seed)
    new_model = _wrap(model, est, kind)
    X_ev, y_ev = _eval_rows(vr, X_te, y_te, eval_rows, seed)
    kw = {"seed": seed, "max_iter": max_iter, "max_eval": max_eval, "eps": eps}
    kw["max_features"] = max_features
    before = _robust_figures(model, X_ev, y_ev, X_tr, X_te, y_te, frozen, **kw)
    after = _robust_figures(new_model, X_ev, y_ev, X_tr, X_te, y_te, frozen, **kw)
    gain = after["valid_row_robustness"] - before["valid_row_robustness"]
    drop = before["clean_accuracy"] - after["clean_accuracy"]
    kept = gain >= min_gain and drop <= max_accuracy_drop
    if kept:
        verdict = (
            f"kept: valid-row robustness {before['valid_row_robustness']:.3f} → "
            f"{after['valid_row_robustness']:.3f} (+{gain:.3f}), hold-out accuracy "
            f"{before['clean_accuracy']:.4f} → {after['clean_accuracy']:.4f}"
        )
    else:
        why = []
        if gain < min_gain:
            why.append(
                f"valid-row robustness {before['valid_row_robustness']:.3f} → "
                f"{after['valid_row_robustness']:.3f} ({gain:+.3f}, needs +{min_gain:g})"
            )
        if drop > max_accuracy_drop:
            why.append(
                f"hold-out accuracy {before['clean_accuracy']:.4f} → "
                f"{after['clean_accuracy']:.4f} (drop {drop:.4f} > {max_accuracy_drop:g})"
            )
        verdict = "not kept, nothing registered: " + "; ".join(why)
    settings = {
        "attacked_rows": int(len(X_att)),
        "added_rows": int(len(X_adv)),
        "augmentation": "counterfactual search (minimal valid flipping rows, true labels)",
        "frozen": frozen,
        "max_features": max_features,
        "eps": eps,
        "space": SPACE,
        "eval_rows": eval_rows,
        "seed": seed,
        "max_iter": max_iter,
        "max_eval": max_eval,
        "min_gain": min_gain,
        "max_accuracy_drop": max_accuracy_drop,
        "model_kind": kind.name,
    }
    new_mv = None
    if kept and register:
        detail = {"added_rows": int(len(X_adv)), "gain": gain, "seed": seed}
        new_ref = register_variant(store, mv.ref, new_model, "adversarial_training", detail)
        new_mv = registry.get_version(store, new_ref)
    table = {
        "parent": mv.ref,
        "child": new_mv.ref if new_mv is not None else None,
        "kept": kept,
        "verdict": verdict,
        "gain": gain,
        "before": before,
        "after": after,
        "settings": settings,
        "time_s": time.perf_counter() - t0,
    }
    return new_mv, table


def _encode(model: Any, X: pd.DataFrame) -> np.ndarray:
    from keel.audit._space import model_parts

    return np.asarray(model_parts(model)[0].transform(X), dtype=np.float64)


def _eval_rows(
    vr: ValidRows, X: pd.DataFrame, y: np.ndarray, n: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The parent's correctly classified hold-out rows (seeded) with their true labels."""
    rows, labels = correct_rows(vr, X, y, n, seed)
    return rows, np.asarray(vr.classes, dtype=object)[labels]
