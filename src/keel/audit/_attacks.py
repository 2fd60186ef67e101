"""Evasion attacks and feature noise on a keel classifier, scored at stated budgets.

Attacks run in :class:`keel.audit._space.EncodedSpace` (encoded features scaled to [0, 1]).
An attack *succeeds* on a row when the model's class at the adversarial point differs from
its class at the original point (a correctly classified hold-out row) and the perturbation's
norm is within the budget ``eps``; both are recomputed here, never taken from the library.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from keel.audit._attacks_torch import eps_key
from keel.audit._space import EncodedSpace, art
from keel.errors import InvalidInput

__all__ = [
    "HSJ_EPS",
    "LINF_EPS",
    "correct_sample",
    "gradient_attacks",
    "hopskipjump",
    "noise_accuracy",
]

HSJ_EPS = (0.01, 0.05, 0.1, 0.25, 0.5)  # L2, attack space
LINF_EPS = (0.01, 0.05, 0.1, 0.2)  # L-infinity, attack space
HSJ_DEFAULT_EPS = 0.1
LINF_DEFAULT_EPS = 0.05


class _seeded:
    """Seed NumPy's global generator (ART draws from it) and restore it afterwards."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self.state = np.random.get_state()
        np.random.seed(self.seed % (2**32))

    def __exit__(self, *_: Any) -> None:
        np.random.set_state(self.state)


def correct_sample(
    space: EncodedSpace, X: pd.DataFrame, y: np.ndarray, n_rows: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_rows`` hold-out rows (seeded order) that the model classifies correctly, as
    attack-space points, with their class indices."""
    order = np.random.default_rng(seed).permutation(len(X))
    classes = np.asarray(space.classes, dtype=object)
    points, labels = [], []
    for start in range(0, len(order), max(4 * n_rows, 200)):
        idx = order[start : start + max(4 * n_rows, 200)]
        U = space.encode(X.iloc[idx])
        pred = space.predict(U)
        ok = classes[pred] == np.asarray(y, dtype=object)[idx]
        points.append(U[ok])
        labels.append(pred[ok])
        if sum(len(p) for p in points) >= n_rows:
            break
    U, lab = np.concatenate(points)[:n_rows], np.concatenate(labels)[:n_rows]
    space.queries = 0
    return U, lab


def _norms(delta: np.ndarray, norm: float) -> np.ndarray:
    return np.linalg.norm(delta.astype(np.float64), ord=norm, axis=1)


def score_attack(
    space: EncodedSpace,
    U: np.ndarray,
    labels: np.ndarray,
    adv: np.ndarray,
    eps_grid: tuple[float, ...],
    eps: float,
    norm: float,
) -> dict[str, Any]:
    """Success rate and accuracy under attack at each budget, before and after projecting the
    adversarial points onto valid encodings."""
    dist = _norms(adv - U, norm)
    flipped = space.predict(adv) != labels
    proj = space.project(adv)
    pdist = _norms(proj - U, norm)
    pflipped = space.predict(proj) != labels

    def within(d: np.ndarray, e: float) -> np.ndarray:  # float32 rounding, never at eps 0
        return d <= e * (1 + 1e-5)

    def rate(mask: np.ndarray) -> float:
        return float(mask.mean()) if len(mask) else float("nan")

    by_eps = [
        {
            "eps": e,
            "success_rate": rate(flipped & within(dist, e)),
            "accuracy_under_attack": 1.0 - rate(flipped & within(dist, e)),
            "valid_success_rate": rate(pflipped & within(pdist, e)),
        }
        for e in eps_grid
    ]
    success = rate(flipped & within(dist, eps))
    return {
        "success_rate": success,
        "accuracy_under_attack": 1.0 - success,
        "valid_success_rate": rate(pflipped & within(pdist, eps)),
        "eps": eps,
        "norm": "l2" if norm == 2 else "linf",
        "success_rate_unbounded": rate(flipped),
        "median_distance": float(np.median(dist[flipped])) if flipped.any() else None,
        "min_distance": float(np.min(dist[flipped])) if flipped.any() else None,
        "by_eps": by_eps,
        "n_rows": len(U),
    }


def hopskipjump(
    space: EncodedSpace,
    U: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    max_iter: int = 10,
    max_eval: int = 200,
    init_eval: int = 50,
    eps_grid: tuple[float, ...] = HSJ_EPS,
    eps: float = HSJ_DEFAULT_EPS,
) -> tuple[dict[str, Any], np.ndarray]:
    """HopSkipJump (L2, untargeted, decision-only) on attack-space rows ``U``."""
    for name, value, low in [("max_iter", max_iter, 0), ("max_eval", max_eval, 1)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInput(f"{name}: expected an integer ≥ {low}, got {value!r}")
    _check_eps(eps, "eps")
    t0 = time.perf_counter()
    space.queries = 0
    if max_iter == 0 or len(U) == 0:
        adv = U.copy()  # never attacked
    else:
        attack = art().attacks.evasion.HopSkipJump(
            space.art_classifier(),
            targeted=False,
            norm=2,
            max_iter=max_iter,
            max_eval=max_eval,
            init_eval=min(init_eval, max_eval),
            verbose=False,
        )
        start = _starting_points(space, U, labels, seed)
        with _seeded(seed):
            adv = attack.generate(U, x_adv_init=start)
    queries = space.queries
    rep = score_attack(space, U, labels, adv, eps_grid, eps, 2)
    rep["budget"] = {
        "max_iter": max_iter,
        "max_eval": max_eval,
        "init_eval": min(init_eval, max_eval),
        "queries": queries,
        "queries_per_row": queries / max(len(U), 1),
    }
    rep["time_s"] = time.perf_counter() - t0
    return rep, adv


def _starting_points(space: EncodedSpace, U: np.ndarray, labels: np.ndarray, seed: int) -> Any:
    """For each row, the nearest of a seeded pool of random points the model classes
    differently (ART would draw its own from an unseeded generator); the row itself where
    none does, which leaves ART to search."""
    pool = np.random.default_rng(seed).uniform(0.0, 1.0, (200, U.shape[1])).astype(U.dtype)
    pred = space.predict(pool)
    start = U.copy()
    for i in range(len(U)):
        other = pool[pred != labels[i]]
        if len(other):
            start[i] = other[np.argmin(np.linalg.norm(other - U[i], axis=1))]
    return start


def _check_eps(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidInput(f"{name}: expected a number ≥ 0, got {value!r}")


def _linear_in_space(space: EncodedSpace) -> Any | None:
    """The model's logistic regression re-expressed on attack-space inputs, or None."""
    from sklearn.linear_model import LogisticRegression

    est = space.estimator
    if not (hasattr(est, "coef_") and hasattr(est, "predict_proba")):
        return None
    if type(est).__name__ not in ("LogisticRegression", "DPLogisticRegression"):
        return None
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    lr = LogisticRegression()
    lr.coef_ = coef * space.span
    lr.intercept_ = np.asarray(est.intercept_, dtype=np.float64) + coef @ space.lo
    lr.classes_ = np.arange(len(space.classes))
    lr.n_features_in_ = space.n_features
    return lr


def gradient_attacks(
    space: EncodedSpace,
    U: np.ndarray,
    labels: np.ndarray,
    *,
    eps_grid: tuple[float, ...] = LINF_EPS,
    eps: float = LINF_DEFAULT_EPS,
    pgd_iter: int = 20,
) -> dict[str, Any]:
    """FGSM and PGD (L-infinity) through ART's gradients of a logistic regression; for other
    estimators, a note saying why there are none."""
    lr = _linear_in_space(space)
    if lr is None and getattr(space, "_kind", None) != "torch":
        reason = (
            f"ART has no loss gradients for {type(space.estimator).__name__}; its scikit-learn "
            "wrappers give gradients for LogisticRegression and SVC only (tree ensembles are "
            "not differentiable, MLPClassifier is not wrapped), so this model is attacked "
            "black-box (HopSkipJump)"
        )
        return {"fgsm": {"supported": False, "reason": reason}, "pgd": None}
    evasion = art().attacks.evasion
    if lr is None:  # a torch network: its own gradients, through the [0, 1] scaling
        from keel.audit._attacks_torch import space_classifier

        clf = space_classifier(space)
    else:
        clf = art().estimators.classification.SklearnClassifier(lr, clip_values=(0.0, 1.0))
    onehot = np.eye(len(space.classes), dtype=np.float32)[labels]
    out: dict[str, Any] = {}
    grid = tuple(sorted(set(eps_grid) | {eps}))
    for name in ("fgsm", "pgd"):
        t0 = time.perf_counter()
        advs = {}
        for e in grid:
            if e == 0 or len(U) == 0:
                advs[e] = U.copy()
            elif name == "fgsm":
                advs[e] = evasion.FastGradientMethod(clf, eps=e, norm=np.inf).generate(U, onehot)
            else:
                attack = evasion.ProjectedGradientDescent(
                    clf, eps=e, eps_step=e / 4, max_iter=pgd_iter, norm=np.inf, verbose=False
                )
                with _seeded(0):
                    advs[e] = attack.generate(U, onehot)
        rows = [score_attack(space, U, labels, advs[e], (e,), e, np.inf) for e in grid]
        main = rows[grid.index(eps)]
        main["by_eps"] = [r["by_eps"][0] for r in rows if r["eps"] in eps_grid]
        for r in main["by_eps"]:  # robustness.pgd.eps_0_1.accuracy, for gates
            main[eps_key(r["eps"])] = {"accuracy": r["accuracy_under_attack"], **r}
        main["budget"] = {"max_iter": 1 if name == "fgsm" else pgd_iter}
        main["time_s"] = time.perf_counter() - t0
        out[name] = {"supported": True, **main}
    return out


def noise_accuracy(
    model: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    X_train: pd.DataFrame,
    *,
    scales: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5),
    flip_rates: tuple[float, ...] = (0.05, 0.1, 0.2),
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy on ``X`` with Gaussian noise on the numeric columns (σ = scale × the column's
    training standard deviation, clipped to the training range, integers rounded) and with a
    fraction of categorical cells changed to another observed category."""
    t0 = time.perf_counter()
    types = {c["name"]: c.get("type") for c in model.input_schema}
    numeric = [c for c in X.columns if types.get(c) in ("int", "float")]
    categorical = [c for c in X.columns if types.get(c) in ("string", "category", "bool")]
    y = np.asarray(y, dtype=object)

    def acc(frame: pd.DataFrame) -> float:
        return float(np.mean(np.asarray(model.predict(frame), dtype=object) == y))

    rng = np.random.default_rng(seed)
    gaussian = []
    for s in scales:
        noisy = X.copy()
        for c in numeric:
            col = X_train[c].astype(float)
            v = X[c].astype(float).to_numpy()
            v = np.clip(v + rng.normal(0.0, s * col.std(), len(v)), col.min(), col.max())
            noisy[c] = np.round(v).astype(X[c].dtype) if types[c] == "int" else v
        gaussian.append({"scale": s, "accuracy": acc(noisy)})
    flips = []
    for r in flip_rates:
        noisy = X.copy()
        for c in categorical:
            noisy[c] = _flip(X[c], X_train[c], r, rng)
        flips.append({"rate": r, "accuracy": acc(noisy)})
    clean = acc(X)
    worst = min([g["accuracy"] for g in gaussian] + [f["accuracy"] for f in flips] + [clean])
    return {
        "clean_accuracy": clean,
        "gaussian": gaussian,
        "category_flip": flips,
        "worst_accuracy": worst,
        "worst_drop": clean - worst,
        "numeric_columns": numeric,
        "categorical_columns": categorical,
        "n_rows": len(X),
        "time_s": time.perf_counter() - t0,
    }


def _flip(col: pd.Series, train_col: pd.Series, rate: float, rng: Any) -> pd.Series:
    """``col`` with a ``rate`` fraction of its cells replaced by another observed value."""
    values = train_col.dropna().unique()
    out = col.copy()
    if len(values) < 2:
        return out
    hit = np.flatnonzero(rng.random(len(col)) < rate)
    for i in hit:
        others = values[values != col.iloc[i]]
        out.iloc[i] = others[rng.integers(len(others))]
    return out
