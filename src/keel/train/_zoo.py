"""The model zoo: models by name, for classification and regression, with defaults and a
search space each. A model kind is data: the estimator to build, its defaults, its space."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from keel.errors import InvalidInput

__all__ = ["DP_KINDS", "TORCH_KINDS", "ZOO", "ModelKind", "get_kind"]

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class ModelKind:
    name: str
    build: Callable[[str, dict[str, Any], int], Any]
    defaults: dict[str, Any]
    space: Callable[[Any], dict[str, Any]]
    flavor: str = "sklearn"
    description: str = ""
    tags: dict[str, Any] = field(default_factory=dict)
    native_params: Callable[[], dict[str, str] | None] | None = None
    """Names the estimator takes beyond its constructor's (a library's own parameters and
    their aliases), each mapped to its canonical name; None from the call: not knowable,
    so any name is let through."""
    check_values: Callable[[str, dict[str, Any], int], None] | None = None
    """Checks parameter values that the estimator itself checks only when fitting; raises
    InvalidInput naming the parameter and its value."""

    def estimator(self, task: str, params: dict[str, Any] | None = None, seed: int = 0) -> Any:
        if task not in TASKS:
            raise InvalidInput(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
        merged = {**self.defaults, **(params or {})}
        try:
            return self.build(task, merged, seed)
        except TypeError as exc:
            raise InvalidInput(f"model {self.name!r}: bad parameter ({exc})") from None


def _lightgbm(task: str, p: dict[str, Any], seed: int) -> Any:
    import lightgbm as lgb

    cls = lgb.LGBMClassifier if task == "classification" else lgb.LGBMRegressor
    return cls(random_state=seed, deterministic=True, force_row_wise=True, verbose=-1, **p)


@functools.cache
def _lightgbm_native() -> dict[str, str] | None:
    """LightGBM's parameters and their aliases, each mapped to its canonical name."""
    try:
        from lightgbm.basic import _ConfigAliases

        table = _ConfigAliases._get_all_param_aliases()
    except Exception:  # a private helper: if it moves, names go unchecked
        return None
    return {alias: name for name, aliases in table.items() for alias in {name, *aliases}}


_LGB_WHERE = re.compile(r"\s+at \S+, line \d+\s*\.?\s*$")


def _lightgbm_check(task: str, params: dict[str, Any], seed: int) -> None:
    """LightGBM checks its values when it reads its configuration: let it read this one
    from a four-row data set (no training), and name the parameter it refuses."""
    import lightgbm as lgb
    import numpy as np

    native = _lightgbm_native() or {}
    simple = (bool, int, float, str, list, tuple)
    config = {k: v for k, v in params.items() if k in native and isinstance(v, simple)}
    for key, value in config.items():
        if native[key] == "num_iterations" and not (isinstance(value, int) and value >= 1):
            raise InvalidInput(
                f"model 'lightgbm' parameter {key!r} = {value!r}: expected a whole number of "
                f"boosting rounds, 1 or more"
            )
    x, y = np.array([[0.0], [1.0], [0.0], [1.0]]), np.array([0.0, 1.0, 0.0, 1.0])
    try:
        with _quiet_stderr():  # LightGBM's C++ prints the same error there first
            lgb.Dataset(x, label=y, params={**config, "verbose": -1}).construct()
    except (lgb.basic.LightGBMError, ValueError, TypeError) as exc:
        why = _LGB_WHERE.sub("", str(exc).strip().splitlines()[0])
        named = [k for k in config if k in why or native[k] in why] or list(config)
        given = ", ".join(f"{k!r} = {config[k]!r}" for k in named)
        raise InvalidInput(
            f"model 'lightgbm' parameter {given}: LightGBM refuses it ({why})"
        ) from None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment (a C library's own printing)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _lightgbm_space(trial: Any) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 600, step=50),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 15, 127, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 100, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def _hgb(task: str, p: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = (
        HistGradientBoostingClassifier
        if task == "classification"
        else HistGradientBoostingRegressor
    )
    return cls(random_state=seed, **p)


def _hgb_space(trial: Any) -> dict[str, Any]:
    return {
        "max_iter": trial.suggest_int("max_iter", 100, 500, step=50),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 15, 127, log=True),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-4, 10.0, log=True),
    }


def _forest(task: str, p: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
    return cls(random_state=seed, **p)


def _forest_space(trial: Any) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 400, step=50),
        "max_depth": trial.suggest_int("max_depth", 4, 24),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 20, log=True),
        "max_features": trial.suggest_float("max_features", 0.2, 1.0),
    }


def _linear(task: str, p: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge

    if task == "classification":
        return LogisticRegression(random_state=seed, **p)
    return Ridge(alpha=1.0 / p.get("C", 1.0))


def _linear_space(trial: Any) -> dict[str, Any]:
    return {"C": trial.suggest_float("C", 1e-3, 100.0, log=True)}


def _mlp(task: str, p: dict[str, Any], seed: int) -> Any:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = MLPClassifier if task == "classification" else MLPRegressor
    p = dict(p)
    if "hidden_layer_sizes" in p:
        p["hidden_layer_sizes"] = tuple(p["hidden_layer_sizes"])
    return cls(random_state=seed, **p)


def _mlp_space(trial: Any) -> dict[str, Any]:
    width = trial.suggest_int("width", 16, 128, log=True)
    depth = trial.suggest_int("depth", 1, 2)
    return {
        "hidden_layer_sizes": [width] * depth,
        "alpha": trial.suggest_float("alpha", 1e-6, 1e-2, log=True),
        "learning_rate_init": trial.suggest_float("learning_rate_init", 1e-4, 1e-2, log=True),
    }


def _dp(task: str, p: dict[str, Any], seed: int, cls_name: str) -> Any:
    from keel.models import _dp

    if task != "classification":
        raise InvalidInput(
            f"model 'dp_*': differentially private models are classifiers, not {task}"
        )
    return getattr(_dp, cls_name)(random_state=seed, **p)


def _dp_logistic(task: str, p: dict[str, Any], seed: int) -> Any:
    return _dp(task, p, seed, "DPLogisticRegression")


def _dp_nb(task: str, p: dict[str, Any], seed: int) -> Any:
    return _dp(task, p, seed, "DPGaussianNB")


def dp_search_refusal(model: str) -> str:
    """Why a differentially private kind is not searched (the message search raises)."""
    return (
        f"model {model!r}: hyper-parameter search is refused for differentially private "
        "models: every trial is one more ε-DP fit on the same rows, so n trials spend n·ε while "
        "the chosen model's evidence would claim ε; train at one setting instead "
        f"(keel train --model {model} --param epsilon=...)"
    )


def _dp_space(trial: Any) -> dict[str, Any]:
    raise InvalidInput(dp_search_refusal("dp_*"))


#: What every DP kind can do: classify only (``tasks``), through keel's scaled features.
_DP_TAGS = {
    "needs_scaling": True,
    "differentially_private": True,
    "tasks": ["classification"],
}

#: Every kind exports to ONNX and serves; ``tasks`` (when present) lists the only tasks a
#: kind takes (the shared zoo suites read it), else it takes both of :data:`TASKS`.
ZOO: dict[str, ModelKind] = {
    k.name: k
    for k in [
        ModelKind(
            "lightgbm",
            _lightgbm,
            {"n_estimators": 400, "learning_rate": 0.05, "num_leaves": 31, "n_jobs": 1},
            _lightgbm_space,
            flavor="lightgbm",
            description="LightGBM gradient-boosted trees (native booster, text format)",
            native_params=_lightgbm_native,
            check_values=_lightgbm_check,
        ),
        ModelKind(
            "hist_gradient_boosting",
            _hgb,
            {"max_iter": 300, "learning_rate": 0.1},
            _hgb_space,
            description="scikit-learn HistGradientBoosting",
        ),
        ModelKind(
            "random_forest",
            _forest,
            {"n_estimators": 200, "min_samples_leaf": 2, "n_jobs": 1},
            _forest_space,
            description="scikit-learn random forest",
        ),
        ModelKind(
            "logistic_regression",
            _linear,
            {"C": 1.0, "max_iter": 1000},
            _linear_space,
            description="logistic regression (ridge regression for regression tasks)",
            tags={"needs_scaling": True},
        ),
        ModelKind(
            "mlp",
            _mlp,
            {"hidden_layer_sizes": [64], "max_iter": 200, "early_stopping": True},
            _mlp_space,
            description="scikit-learn multi-layer perceptron",
            tags={"needs_scaling": True},
        ),
        # ε-differentially private classifiers (diffprivlib; keel.audit.privacy reads their ε).
        # C = 0.001 (diffprivlib's default is 1.0): objective perturbation's noise pulls the
        # weights as far as the regularisation lets it, and at C = 1 on Adult half of the
        # rows get scores beyond ±15 (probabilities 0 or 1 in float32) and ROC AUC 0.82; at
        # 0.001 none do and ROC AUC is 0.88 (chosen on a split of adult.data, ε = 1).
        # Naive Bayes sums ~100 noisy per-feature log-likelihoods: with bound 3 and
        # diffprivlib's variance floor (var_smoothing 1e-9) 70% of Adult's rows score beyond
        # 1e-30 or 1 - 1e-7 (ROC AUC 0.62, float32 ties break parity); clipping to [-1, 1] and
        # a variance floor of 1 (features are scaled to variance 1) leave none there and give
        # ROC AUC 0.84 (same split; both are fixed constants, so they cost no privacy).
        ModelKind(
            "dp_logistic_regression",
            _dp_logistic,
            {"epsilon": 1.0, "data_norm": 5.0, "C": 0.001, "max_iter": 100},
            _dp_space,
            description="ε-differentially private logistic regression (diffprivlib)",
            tags={**_DP_TAGS},
        ),
        ModelKind(
            "dp_gaussian_nb",
            _dp_nb,
            {"epsilon": 1.0, "bound": 1.0, "var_smoothing": 1.0},
            _dp_space,
            description="ε-differentially private Gaussian naive Bayes (diffprivlib)",
            tags={**_DP_TAGS},
        ),
    ]
}


#: The differentially private kinds of :data:`ZOO` (tag ``differentially_private``).
DP_KINDS: dict[str, ModelKind] = {
    name: kind for name, kind in ZOO.items() if kind.tags.get("differentially_private")
}


def _torch_build(architecture: str, val_split: str) -> Callable[[str, dict[str, Any], int], Any]:
    def build(task: str, p: dict[str, Any], seed: int) -> Any:
        from keel.errors import require

        require("torch", "torch")  # says: pip install 'keel[torch]'
        from keel.train._torch import TorchEstimator

        return TorchEstimator(
            task=task,
            random_state=seed,
            **{"architecture": architecture, "val_split": val_split, **p},
        )

    return build


def _torch_check(architecture: str, val_split: str) -> Callable[[str, dict[str, Any], int], None]:
    def check(task: str, p: dict[str, Any], seed: int) -> None:
        _torch_build(architecture, val_split)(task, p, seed)._check()  # names a bad value

    return check


def _torch_common_space(trial: Any) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.4),
    }


def _torch_mlp_space(trial: Any) -> dict[str, Any]:
    width = trial.suggest_int("width", 32, 256, log=True)
    depth = trial.suggest_int("depth", 1, 3)
    return {
        **_torch_common_space(trial),
        "hidden": [width] * depth,
        "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512]),
    }


def _torch_cnn_space(trial: Any) -> dict[str, Any]:
    c1 = trial.suggest_categorical("c1", [16, 32])
    return {
        **_torch_common_space(trial),
        "channels": [c1, 2 * c1],
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
    }


def _torch_seq_space(trial: Any) -> dict[str, Any]:
    return {
        **_torch_common_space(trial),
        "layers": trial.suggest_int("layers", 2, 6),
        "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
    }


_TORCH_TAGS = {"needs_scaling": True, "torch": True, "extra": "torch", "onnx": False}

#: PyTorch networks (``pip install 'keel[torch]'``), trained by keel's loop
#: (:mod:`keel.train._torch`); kept out of :data:`ZOO` because they need the extra.
#: ``inputs`` says what they read: rows of columns through keel's feature transform
#: (``tabular``; a tensor column is flattened), or one tensor column (``tensor``).
TORCH_KINDS: dict[str, ModelKind] = {
    k.name: k
    for k in [
        ModelKind(
            "torch-mlp",
            _torch_build("mlp", "stratified"),
            {"epochs": 30, "batch_size": 256, "lr": 1e-3, "hidden": [128, 64], "dropout": 0.1},
            _torch_mlp_space,
            flavor="torch",
            description="PyTorch multi-layer perceptron on keel's feature transform",
            tags={**_TORCH_TAGS, "inputs": "tabular", "onnx": True},
            check_values=_torch_check("mlp", "stratified"),
        ),
        ModelKind(
            "torch-cnn",
            _torch_build("cnn", "stratified"),
            {
                "epochs": 40,
                "batch_size": 64,
                "lr": 2e-3,
                "channels": [32, 64],
                "dropout": 0.25,
                "patience": 8,  # 5 stopped at 0.975 on digits' held-out split, 8 at 0.981
            },
            _torch_cnn_space,
            flavor="torch",
            description="PyTorch convolutional image classifier (images [C, H, W])",
            tags={**_TORCH_TAGS, "inputs": "tensor", "rank": 3, "onnx": True},
            check_values=_torch_check("cnn", "stratified"),
        ),
        ModelKind(
            "torch-seq",
            _torch_build("seq1d", "tail"),
            {"epochs": 60, "batch_size": 128, "lr": 2e-3, "layers": 4, "dropout": 0.0},
            _torch_seq_space,
            flavor="torch",
            description="PyTorch 1-D convolutional forecaster over a window of past values",
            tags={**_TORCH_TAGS, "inputs": "tensor", "rank": 1, "onnx": True},
            check_values=_torch_check("seq1d", "tail"),
        ),
    ]
}


def _user_torch_kind(name: str) -> ModelKind:
    """``torch:package.module:Class``: the user's own ``torch.nn.Module``, trained by keel's
    loop like the built-in kinds (its keyword arguments in the ``net_kwargs`` parameter; the
    sizes it takes, such as ``n_in`` and ``n_out``, filled from the data when not given)."""
    architecture = name.removeprefix("torch:")
    module, sep, attr = architecture.partition(":")
    if not sep or not module or not attr.isidentifier():
        raise InvalidInput(
            f"model {name!r}: expected 'torch:package.module:Class', naming a torch.nn.Module "
            "subclass in your importable code"
        )
    base = TORCH_KINDS["torch-mlp"]
    return ModelKind(
        name,
        _torch_build(architecture, "stratified"),
        {"epochs": 30, "batch_size": 128, "lr": 1e-3},
        _torch_common_space,
        flavor="torch",
        description=f"your PyTorch network {architecture}",
        tags={**base.tags, "inputs": "any"},
        check_values=_torch_check(architecture, "stratified"),
    )


def get_kind(name: str) -> ModelKind:
    if isinstance(name, str) and name.startswith("torch:"):
        return _user_torch_kind(name)
    kind = ZOO.get(name) or TORCH_KINDS.get(name)
    if kind is None:
        raise InvalidInput(
            f"model: unknown model {name!r}; expected one of "
            f"{', '.join(sorted([*ZOO, *TORCH_KINDS]))} or "
            "'torch:package.module:Class' (your own torch.nn.Module)"
        )
    return kind
