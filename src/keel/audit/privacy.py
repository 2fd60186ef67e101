"""Privacy evidence: membership inference and differentially private training.

Membership inference asks whether the model gives away which rows it was trained on.
Members are training rows, non-members hold-out rows, in a balanced seeded sample:

- the *threshold* attack scores each row by the model's probability of its true class
  (the loss attack: a lower loss looks more like a member), so it needs no attack model;
- ART's ``MembershipInferenceBlackBox`` learns an attack model (a seeded random forest) on
  the model's probabilities and the true label for half of the rows, and is scored on the
  other half.

Each is reported as ROC AUC (0.5: no leak) and advantage (max over thresholds of TPR − FPR,
0: no leak); ``privacy.mia.auc`` and ``privacy.mia.advantage`` are the worse of the two.

Differentially private models (``dp_logistic_regression``, ``dp_gaussian_nb`` in the zoo)
carry their ε into the evidence (``privacy.dp.epsilon``); :func:`accuracy_vs_epsilon`
prices ε in accuracy.
"""

from __future__ import annotations

import math
import time
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from keel.audit._space import art
from keel.errors import InvalidInput
from keel.models._dp import DPGaussianNB, DPLogisticRegression, diffprivlib, dp_info

__all__ = [
    "DPGaussianNB",
    "DPLogisticRegression",
    "accuracy_vs_epsilon",
    "attack_scores",
    "dp_info",
    "membership_inference",
    "privacy_section",
    "torch_dp_info",
]


def attack_scores(member: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """ROC AUC and advantage (max TPR − FPR) of ``score`` as a membership guess."""
    from sklearn.metrics import roc_auc_score, roc_curve

    member = np.asarray(member, dtype=bool)
    if member.all() or not member.any():
        raise InvalidInput("member: expected both members and non-members")
    fpr, tpr, _ = roc_curve(member, score)
    return {
        "auc": float(roc_auc_score(member, score)),
        "advantage": float(np.max(tpr - fpr)),
    }


def _true_class_proba(model: Any, X: pd.DataFrame, y: np.ndarray) -> tuple[Any, Any]:
    """(probabilities, index of each row's true class; -1 for a class the model lacks)."""
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    lookup = {c: i for i, c in enumerate(model.classes_)}
    idx = np.array([lookup.get(v, -1) for v in np.asarray(y, dtype=object)])
    return proba, idx


def _check(X: Any, y: Any, what: str) -> None:
    if not isinstance(X, pd.DataFrame):
        raise InvalidInput(f"X_{what}: expected a pandas DataFrame, got {type(X).__name__}")
    if len(X) != len(y):
        raise InvalidInput(f"y_{what}: expected {len(X)} labels (one per row), got {len(y)}")
    if len(X) < 4:
        raise InvalidInput(f"X_{what}: expected at least 4 rows, got {len(X)}")


def _art_attack(
    classes: list[Any], p_in: Any, y_in: Any, p_out: Any, y_out: Any, seed: int
) -> dict[str, Any]:
    """ART's black-box attack model: fit on the first half of members and non-members,
    scored on the second half."""
    k = len(classes)

    def never(_: np.ndarray) -> np.ndarray:  # predictions are always passed in
        raise AssertionError("the membership attack asked the model directly")

    cls = art().estimators.classification.BlackBoxClassifier
    target = cls(never, input_shape=(1,), nb_classes=k)
    mia = art().attacks.inference.membership_inference.MembershipInferenceBlackBox(
        target, input_type="prediction", attack_model_type="rf"
    )
    # ART tests ``if attack_model:``, which an unfitted forest fails; seed its own forest
    mia.attack_model.set_params(n_estimators=100, min_samples_leaf=5, random_state=seed)
    h_in, h_out = len(y_in) // 2, len(y_out) // 2
    onehot = np.eye(k, dtype=np.float32)
    x_in = np.zeros((len(y_in), 1), dtype=np.float32)
    x_out = np.zeros((len(y_out), 1), dtype=np.float32)
    mia.fit(
        x_in[:h_in],
        onehot[y_in[:h_in]],
        x_out[:h_out],
        onehot[y_out[:h_out]],
        pred=p_in[:h_in].astype(np.float32),
        test_pred=p_out[:h_out].astype(np.float32),
    )
    s_in = mia.infer(
        x_in[h_in:], onehot[y_in[h_in:]], pred=p_in[h_in:].astype(np.float32), probabilities=True
    )
    s_out = mia.infer(
        x_out[h_out:],
        onehot[y_out[h_out:]],
        pred=p_out[h_out:].astype(np.float32),
        probabilities=True,
    )
    member = np.r_[np.ones(len(s_in), bool), np.zeros(len(s_out), bool)]
    return {
        **attack_scores(member, np.r_[np.ravel(s_in), np.ravel(s_out)]),
        "attack_model": "RandomForestClassifier(n_estimators=100, min_samples_leaf=5)",
        "input": "the model's class probabilities and the true label",
        "fit_rows": {"members": h_in, "non_members": h_out},
        "eval_rows": {"members": len(y_in) - h_in, "non_members": len(y_out) - h_out},
    }


def membership_inference(
    model: Any,
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_test: pd.DataFrame,
    y_test: np.ndarray,
    *,
    n_rows: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Threshold (loss) and ART black-box membership attacks on ``n_rows`` training rows
    (members) and as many hold-out rows (non-members), chosen with ``seed``."""
    if getattr(model, "task", None) != "classification":
        raise InvalidInput(
            f"model: membership inference needs class probabilities; got a "
            f"{getattr(model, 'task', None)} model"
        )
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 4:
        raise InvalidInput(f"n_rows: expected an integer ≥ 4, got {n_rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed: expected an integer ≥ 0, got {seed!r}")
    _check(X_train, y_train, "train")
    _check(X_test, y_test, "test")
    t0 = time.perf_counter()
    n = min(n_rows, len(X_train), len(X_test))
    rng = np.random.default_rng(seed)
    i_in = rng.permutation(len(X_train))[:n]
    i_out = rng.permutation(len(X_test))[:n]
    p_in, y_in = _true_class_proba(model, X_train.iloc[i_in], np.asarray(y_train)[i_in])
    p_out, y_out = _true_class_proba(model, X_test.iloc[i_out], np.asarray(y_test)[i_out])
    keep_in, keep_out = y_in >= 0, y_out >= 0  # a label the model never saw has no probability
    p_in, y_in, p_out, y_out = p_in[keep_in], y_in[keep_in], p_out[keep_out], y_out[keep_out]
    conf_in = p_in[np.arange(len(y_in)), y_in]
    conf_out = p_out[np.arange(len(y_out)), y_out]
    member = np.r_[np.ones(len(conf_in), bool), np.zeros(len(conf_out), bool)]
    threshold = {
        **attack_scores(member, np.r_[conf_in, conf_out]),
        "score": "the model's probability of the true class (equivalently, minus the log loss)",
        "mean_loss_members": float(-np.mean(np.log(np.clip(conf_in, 1e-12, 1.0)))),
        "mean_loss_non_members": float(-np.mean(np.log(np.clip(conf_out, 1e-12, 1.0)))),
    }
    t1 = time.perf_counter()
    black_box = _art_attack(list(model.classes_), p_in, y_in, p_out, y_out, seed)
    t2 = time.perf_counter()
    threshold["time_s"], black_box["time_s"] = t1 - t0, t2 - t1
    return {
        "auc": max(threshold["auc"], black_box["auc"]),
        "advantage": max(threshold["advantage"], black_box["advantage"]),
        "threshold": threshold,
        "art_black_box": black_box,
        "about": {
            "members": "training rows",
            "non_members": "hold-out rows",
            "n_members": int(len(conf_in)),
            "n_non_members": int(len(conf_out)),
            "seed": seed,
            "auc_and_advantage": "the worse (higher) of the two attacks",
            "libraries": _versions(),
        },
    }


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("adversarial-robustness-toolbox", "diffprivlib", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def privacy_section(ctx: Any) -> dict[str, Any]:
    """The ``privacy`` evidence section: ``privacy.mia.auc``, ``privacy.mia.advantage``, and
    ``privacy.dp`` (ε when the model is differentially private)."""
    if ctx.mv.task != "classification":
        raise InvalidInput(
            f"privacy: membership inference needs a classifier, got a {ctx.mv.task} model "
            f"({ctx.mv.ref})"
        )
    mia = membership_inference(
        ctx.model,
        ctx.X_train,
        ctx.y_train,
        ctx.X_test,
        ctx.y_test,
        n_rows=min(ctx.sample, 2000),
        seed=ctx.seed,
    )
    dp = dp_info(ctx.model)
    if getattr(ctx.model, "flavor", None) == "torch":
        dp = torch_dp_info(getattr(ctx, "store", None), ctx.mv)
    if not dp["differentially_private"]:
        dp = _int8_parent_dp(getattr(ctx, "store", None), ctx.mv) or dp
    return {"mia": mia, "dp": dp}


def _int8_parent_dp(store: Any, mv: Any) -> dict[str, Any] | None:
    """An int8 variant quantizes its parent's graph without reading any data (post-processing),
    so it keeps its parent's ε; None when ``mv`` is no such variant of a DP version. (Pruned
    and distilled variants read rows again, so they claim nothing.)"""
    tags = getattr(mv, "tags", None) or {}
    if store is None or tags.get("variant") != "int8":
        return None
    from keel import registry
    from keel.store import lineage

    parents = [n.id for n in lineage(store, "model", mv.ref).parents if n.role == "int8_from"]
    if not parents:
        return None
    parent = registry.get_version(store, parents[0])
    if parent.flavor == "torch":
        info = torch_dp_info(store, parent)
    else:
        info = dp_info(registry.load(store, parent.ref))
    if not info["differentially_private"]:
        return None
    scope = (
        f"{info['scope']}; this int8 variant quantizes {parent.ref}'s graph without reading data"
    )
    return {**info, "scope": scope, "inherited_from": parent.ref}


def torch_dp_info(store: Any, mv: Any) -> dict[str, Any]:
    """What the training run of torch version ``mv`` recorded about DP-SGD: the ε it spent
    (``dp_epsilon``, the accountant's figure after the last epoch), its δ and its target."""
    run_id = getattr(mv, "run_id", None)
    if store is None or run_id is None:
        return {"differentially_private": False, "epsilon": None}
    from keel.train import get_run

    run = get_run(store, run_id)
    params = run["params"]
    target = params.get("model.dp_epsilon")
    if target is None:
        return {"differentially_private": False, "epsilon": None}
    spent = run["metrics"].get("dp_epsilon")
    return {
        "differentially_private": True,
        "epsilon": spent,
        "delta": float(params.get("model.dp_delta", 1e-5)),
        "target_epsilon": float(target),
        "max_grad_norm": float(params.get("model.dp_max_grad_norm", 1.0)),
        "estimator": "TorchEstimator",
        "mechanism": "DP-SGD (Opacus): per-sample gradients clipped to max_grad_norm, Gaussian "
        "noise, Poisson-sampled batches; ε from the RDP accountant",
        "scope": "the network's training steps on the training rows; the feature transform "
        "and the choice of the best epoch on the validation rows are fit without noise",
        "run": run["id"],
    }


_KINDS = ("logistic_regression", "gaussian_nb", "random_forest")


def _estimator(kind: str, epsilon: float, seed: int, n_features: int, classes: Any) -> Any:
    """The DP estimator of ``kind`` at ``epsilon`` (its non-private twin at ε = ∞)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    private = math.isfinite(epsilon)
    if kind == "logistic_regression":
        if private:
            return DPLogisticRegression(epsilon=epsilon, random_state=seed)
        return LogisticRegression(max_iter=1000)
    if kind == "gaussian_nb":
        return DPGaussianNB(epsilon=epsilon, random_state=seed) if private else GaussianNB()
    if not private:
        return RandomForestClassifier(n_estimators=10, max_depth=5, random_state=seed)
    # diffprivlib's forest mislabels string classes: it is given class indices
    dpl = diffprivlib()
    bounds = (np.full(n_features, -3.0), np.full(n_features, 3.0))
    return dpl.models.RandomForestClassifier(
        n_estimators=10,
        max_depth=5,
        epsilon=epsilon,
        bounds=bounds,
        classes=list(classes),
        random_state=seed,
        accountant=dpl.accountant.BudgetAccountant(),
    )


def _clipped(Z: np.ndarray, kind: str) -> np.ndarray:
    """Rows bounded as the DP estimators bound them: L2 norm ≤ 5 (logistic regression) or
    [-3, 3] per feature, so ε = inf differs from the private fits only by the noise."""
    if kind == "logistic_regression":
        norms = np.linalg.norm(Z, axis=1, keepdims=True)
        return Z / np.maximum(norms / 5.0, 1.0)
    return np.clip(Z, -3.0, 3.0)


def _check_epsilons(epsilons: Any) -> list[float]:
    bad = [
        e
        for e in epsilons
        if isinstance(e, bool) or not isinstance(e, int | float) or math.isnan(e) or e <= 0
    ]
    if bad or not epsilons:
        raise InvalidInput(
            f"epsilons: expected numbers > 0 (inf for no privacy), got {bad[0] if bad else []!r}"
        )
    return [float(e) for e in epsilons]


def accuracy_vs_epsilon(
    store: Any,
    ref: str,
    *,
    epsilons: Any = (0.1, 0.5, 1.0, 5.0, 10.0, math.inf),
    models: Any = _KINDS,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Hold-out accuracy of differentially private models at each ε, on model version
    ``ref``'s training and hold-out rows (ε = inf: the same estimator without privacy).

    The rows go through the default feature pipeline with standard scaling (the one the
    zoo's DP models use); DP fits draw new noise per repeat (seeds ``seed`` …
    ``seed + repeats - 1``) and the table gives the mean and spread."""
    from keel import registry
    from keel.export import prepared_of
    from keel.features import FeatureSpec, compile_spec

    epsilons = _check_epsilons(list(epsilons))
    unknown = [m for m in models if m not in _KINDS]
    if unknown or not models:
        raise InvalidInput(
            f"models: expected some of {', '.join(_KINDS)}, got {unknown[0] if unknown else []!r}"
        )
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InvalidInput(f"repeats: expected an integer ≥ 1, got {repeats!r}")
    mv = registry.get_version(store, ref)
    if mv.task != "classification":
        raise InvalidInput(f"ref: expected a classifier, got a {mv.task} model ({mv.ref})")
    prep = prepared_of(store, mv.ref)
    types = {c["name"]: c["type"] for c in prep.input_schema}
    spec = FeatureSpec.infer(types).to_dict()
    numeric = [k for k, v in types.items() if v in ("int", "float")]
    if numeric:
        spec["steps"].append({"op": "scale", "columns": numeric, "method": "standard"})
    ct = compile_spec(spec, prep.columns).fit(prep.train[prep.columns])
    Z_tr, Z_te = ct.transform(prep.train[prep.columns]), ct.transform(prep.test[prep.columns])
    classes = np.unique(prep.train[prep.target].to_numpy().astype(str))
    y_tr = np.searchsorted(classes, prep.train[prep.target].to_numpy().astype(str))
    y_te = np.searchsorted(classes, prep.test[prep.target].to_numpy().astype(str))
    y_te[classes[np.minimum(y_te, len(classes) - 1)] != prep.test[prep.target].astype(str)] = -1
    rows = []
    t0 = time.perf_counter()
    for kind in models:
        for eps in epsilons:
            accs, t = [], time.perf_counter()
            for r in range(repeats if math.isfinite(eps) else 1):
                est = _estimator(kind, eps, seed + r, Z_tr.shape[1], range(len(classes)))
                est.fit(_clipped(Z_tr, kind), y_tr)  # the DP fits clip the same way
                accs.append(float(np.mean(est.predict(_clipped(Z_te, kind)) == y_te)))
            rows.append(
                {
                    "model": kind,
                    "epsilon": eps if math.isfinite(eps) else "inf",
                    "accuracy": float(np.mean(accs)),
                    "accuracy_std": float(np.std(accs)),
                    "repeats": len(accs),
                    "time_s": time.perf_counter() - t,
                }
            )
    majority = float(np.mean(y_te == np.bincount(y_tr).argmax()))
    return {
        "ref": mv.ref,
        "rows": rows,
        "majority_class_accuracy": majority,
        "settings": {
            "epsilons": [e if math.isfinite(e) else "inf" for e in epsilons],
            "models": list(models),
            "repeats": repeats,
            "seed": seed,
            "features": "default pipeline with standard scaling; rows clipped to L2 norm 5 "
            "(logistic regression) or [-3, 3] per feature (naive Bayes, random forest)",
            "n_train": len(Z_tr),
            "n_test": len(Z_te),
            "libraries": _versions(),
        },
        "time_s": time.perf_counter() - t0,
    }
