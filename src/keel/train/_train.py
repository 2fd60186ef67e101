"""Train one model on a stored dataset and record everything about it as a run."""

from __future__ import annotations

import difflib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.store import Store
from keel.train._metrics import baseline, compare_to_baseline, evaluate
from keel.train._split import split_indices
from keel.train._tracking import Run, start_run
from keel.train._zoo import get_kind

__all__ = ["Prepared", "TrainResult", "build_model", "prepare", "train"]


@dataclass
class Prepared:
    """What a training run reads: frames, target, task, the feature spec and its inputs."""

    train: pd.DataFrame
    test: pd.DataFrame
    target: str
    task: str
    spec: Any
    input_schema: list[dict[str, Any]]
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (dataset sha, role)
    split: str = "stratified"  # how train and test were made: a strategy, or "holdout"
    test_size: float = 0.2
    time_col: str | None = None
    group_col: str | None = None

    @property
    def columns(self) -> list[str]:
        return [c["name"] for c in self.input_schema]


@dataclass
class TrainResult:
    run_id: str
    model: Any
    metrics: dict[str, float]
    artifact_sha: str
    model_kind: str
    params: dict[str, Any]
    task: str
    baseline: dict[str, float] = field(default_factory=dict)
    """The trivial model's metrics on the same hold-out rows (majority class, or mean)."""
    warnings: list[str] = field(default_factory=list)
    """Things to look at, such as a model that does not beat the baseline."""
    epochs: dict[str, Any] = field(default_factory=dict)
    """For models trained in epochs (torch): ``epochs`` asked for, ``epochs_run`` (fewer when
    early stopping stopped), ``best_epoch`` (whose weights were kept) and its ``val_loss``."""

    def register(self, store: Store, name: str, description: str = "") -> Any:
        """Register this run's model as the next version of ``name``."""
        from keel import registry

        return registry.register(
            store,
            name,
            artifact_sha=self.artifact_sha,
            flavor=self.model.flavor,
            task=self.task,
            input_schema=self.model.input_schema,
            output_schema=self.model.output_schema,
            run_id=self.run_id,
            metrics=self.metrics,
            description=description,
        )


def infer_task(series: pd.Series, logical_type: str | None) -> str:
    if logical_type in ("string", "category", "bool"):
        return "classification"
    if logical_type == "int" and series.nunique(dropna=True) <= 20:
        return "classification"
    if logical_type is None and not pd.api.types.is_numeric_dtype(series):
        return "classification"
    return "regression"


def _load_spec(features: Any, types: dict[str, str], target: str, scale: bool = False) -> Any:
    """The spec given (object, dict, YAML), or one inferred from the column types; scaled
    numbers for models that need them (capability ``needs_scaling`` of the zoo entry)."""
    from keel.features import FeatureSpec

    if features is None:
        inputs = {k: v for k, v in types.items() if k != target}
        spec = FeatureSpec.infer(inputs, target=target)
        numeric = [k for k, v in inputs.items() if v in ("int", "float")]
        if scale and numeric:
            d = spec.to_dict()
            d["steps"].append({"op": "scale", "columns": numeric, "method": "standard"})
            spec = FeatureSpec.from_dict(d)
        return spec
    if isinstance(features, FeatureSpec):
        return features
    if isinstance(features, dict):
        return FeatureSpec.from_dict(features)
    return FeatureSpec.from_yaml(features)


def prepare(
    store: Store,
    dataset: str,
    target: str,
    *,
    features: Any = None,
    task: str | None = None,
    holdout: str | None = None,
    split: str = "stratified",
    test_size: float = 0.2,
    seed: int = 0,
    time_col: str | None = None,
    group_col: str | None = None,
    model: str = "lightgbm",
) -> Prepared:
    """Load the dataset(s), check the target, choose the task, split, and settle the spec."""
    from keel.data import get_dataset, load_frame

    if not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed: expected a whole number 0 or above, got {seed!r}")
    ds = get_dataset(store, dataset)
    df = load_frame(store, ds)
    types = {c["name"]: c["type"] for c in ds.schema.get("columns", [])}
    if target not in df.columns:
        raise InvalidInput(
            f"target: column {target!r} is not in dataset {ds.ref}; "
            f"columns: {', '.join(df.columns)}"
        )
    df = df[df[target].notna()].reset_index(drop=True)
    task = task or infer_task(df[target], types.get(target))
    _check_target(df, target, task, ds.ref)
    if split == "stratified" and task == "regression":
        split = "random"
    columns = {c["name"]: c for c in ds.schema.get("columns", [])}
    tensors = [n for n, c in columns.items() if c.get("type") == "tensor" and n != target]
    spec = None
    if not tensors:
        spec = _load_spec(features, types, target, get_kind(model).tags.get("needs_scaling", False))
    else:
        _check_tensor_model(model, tensors, columns, ds.ref)
    inputs = [(ds.sha, "train")]
    if holdout:
        hds = get_dataset(store, holdout)
        test = load_frame(store, hds)
        if target not in test.columns:
            raise InvalidInput(f"holdout {hds.ref}: target column {target!r} is missing")
        test = test[test[target].notna()].reset_index(drop=True)
        train = df
        inputs.append((hds.sha, "holdout"))
    else:
        tr, te = split_indices(
            df,
            split,
            target=target,
            test_size=test_size,
            seed=seed,
            time_col=time_col,
            group_col=group_col,
        )
        train, test = df.iloc[tr].reset_index(drop=True), df.iloc[te].reset_index(drop=True)
    used = (
        tensors[:1] if spec is None else _spec_columns(spec, [c for c in df.columns if c != target])
    )
    _check_finite(train, used, ds.ref)
    lacking = [c for c in used if c not in test.columns]
    if lacking:
        raise InvalidInput(
            f"holdout {holdout}: lacks input column(s) {', '.join(map(repr, lacking))} "
            f"that the training data {ds.ref} has"
        )
    input_schema = [
        dict(columns[c]) if spec is None else {"name": c, "type": types.get(c, "string")}
        for c in used
    ]
    how = "holdout" if holdout else split
    return Prepared(
        train, test, target, task, spec, input_schema, inputs, how, test_size, time_col, group_col
    )


def _log_dp_epsilon(run: Any, fitted: Any) -> None:
    """A differentially private estimator's ε as the run's ``dp_epsilon`` metric, the name
    DP-SGD (torch) records its spent ε under, so runs of every DP kind compare alike."""
    from keel.models._dp import dp_info

    epsilon = dp_info(fitted)["epsilon"]
    if epsilon is not None:
        run.log_metrics({"dp_epsilon": float(epsilon)}, step=0)


def _check_tensor_model(
    model: str, tensors: list[str], columns: dict[str, dict[str, Any]], ref: str
) -> None:
    """A data set of tensors trains a torch model that reads tensors of that rank."""
    kind = get_kind(model)
    if not kind.tags.get("torch"):
        raise InvalidInput(
            f"model {model!r}: reads columns of scalars, but dataset {ref} holds tensor column "
            f"{tensors[0]!r}; train a torch model on it (torch-cnn for images, torch-seq for "
            "windows of a series, torch-mlp for any tensor, flattened)"
        )
    if len(tensors) > 1:
        raise InvalidInput(
            f"dataset {ref}: a torch model reads one tensor column, this one has "
            f"{', '.join(map(repr, tensors))}"
        )
    rank = kind.tags.get("rank")
    shape = list(columns[tensors[0]].get("shape", []))
    if rank is not None and len(shape) != rank:
        want = {3: "images [C, H, W]", 1: "windows [window]"}.get(rank, f"rank {rank}")
        raise InvalidInput(
            f"model {model!r}: expects {want} per row; column {tensors[0]!r} of {ref} has "
            f"shape {shape}"
        )


def _check_finite(df: pd.DataFrame, columns: list[str], ref: str) -> None:
    """Models cannot learn from infinities; say which column holds them."""
    for c in columns:
        if pd.api.types.is_float_dtype(df[c]):
            values = df[c].to_numpy(dtype=float, na_value=np.nan)
            bad = np.isinf(values)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InvalidInput(
                    f"column {c!r} of dataset {ref}: {int(bad.sum())} infinite value(s), first "
                    f"{values[row]!r}; models need finite numbers (clip them or make them missing)"
                )


def _check_target(df: pd.DataFrame, target: str, task: str, ref: str) -> None:
    if len(df) < 2:
        raise InvalidInput(
            f"target {target!r}: dataset {ref} has {len(df)} labelled row(s); need 2+"
        )
    if task == "classification" and df[target].nunique() < 2:
        raise InvalidInput(
            f"target {target!r}: classification needs at least 2 classes, dataset {ref} has "
            f"only {df[target].iloc[0]!r}"
        )
    if task == "regression" and not pd.api.types.is_numeric_dtype(df[target]):
        raise InvalidInput(
            f"target {target!r}: regression needs a numeric target, got {df[target].dtype} "
            f"values such as {df[target].iloc[0]!r}; use task 'classification'"
        )


def _spec_columns(spec: Any, available: list[str]) -> list[str]:
    """The raw columns the spec reads, in the dataset's order."""
    named: set[str] = set()
    for step in spec.steps:
        named.update(step.columns)
    if getattr(spec, "remainder", "drop") == "passthrough":
        return available
    missing = sorted(named - set(available))
    if missing:
        raise InvalidInput(
            f"feature spec names column(s) {', '.join(map(repr, missing))} that the dataset "
            f"lacks (or that is the target); columns: {', '.join(available)}"
        )
    return [c for c in available if c in named]


def build_model(
    prep: Prepared,
    model: str,
    params: dict[str, Any] | None,
    seed: int,
    sample_weight: Any = None,
    on_epoch: Any = None,
) -> Any:
    """Fit the feature transform and the estimator on the training part; wrap it.
    ``sample_weight``: one non-negative weight per training row, given to the estimator.
    ``on_epoch``: for models trained in epochs (torch), called with each epoch's record."""
    from sklearn.pipeline import Pipeline

    from keel.features import compile_spec
    from keel.models import LightGBMModel, SklearnModel

    kind = get_kind(model)
    _seed_everything(seed)
    if kind.flavor == "torch":
        return _build_torch(prep, kind, params, seed, sample_weight, on_epoch)
    pipe = Pipeline(
        [
            ("features", compile_spec(prep.spec, prep.columns)),
            ("model", kind.estimator(prep.task, params, seed)),
        ]
    )
    X, y = prep.train[prep.columns], prep.train[prep.target].to_numpy()
    if prep.task == "classification":
        y = y.astype(str) if y.dtype == object or pd.api.types.is_string_dtype(y) else y
    fit_params = {} if sample_weight is None else {"model__sample_weight": sample_weight}
    pipe.fit(X, y, **fit_params)
    if kind.flavor == "lightgbm":
        return LightGBMModel.from_pipeline(pipe, prep.task, prep.input_schema)
    return SklearnModel(pipe, prep.task, prep.input_schema)


def _build_torch(
    prep: Prepared,
    kind: Any,
    params: dict[str, Any] | None,
    seed: int,
    sample_weight: Any,
    on_epoch: Any,
) -> Any:
    """A torch network through the same steps: keel's feature transform for columns, or the
    tensor column as it is."""
    from keel.models import TorchModel
    from keel.models._torch import tensor_input

    if sample_weight is not None:
        raise InvalidInput(
            f"model {kind.name!r}: sample weights are not supported by torch models yet"
        )
    est = kind.estimator(prep.task, params, seed)
    est.on_epoch = on_epoch
    y = _labels(prep.train[prep.target].to_numpy(), prep.task)
    transformer = None
    if prep.spec is None:
        X = tensor_input(prep.train, prep.input_schema[0])
    else:
        from keel.features import compile_spec

        transformer = compile_spec(prep.spec, prep.columns)
        X = np.asarray(transformer.fit_transform(prep.train[prep.columns]), dtype=np.float32)
    _fill_net_kwargs(est, X, y, prep.task)
    est.fit(X, y)
    return TorchModel.from_estimator(est, prep.task, prep.input_schema, transformer)


#: Sizes keel fills into a user's network when its constructor takes them and they are not
#: given in ``net_kwargs``: what the data says, after keel's feature transform.
_NET_SIZES = ("n_in", "n_out", "in_shape", "window")


def _fill_net_kwargs(est: Any, X: np.ndarray, y: np.ndarray, task: str) -> None:
    """For the user's own ``package.module:Class``: pass the input and output sizes that its
    constructor asks for (``n_in``, ``n_out``, ``in_shape``, ``window``) unless given."""
    import inspect

    from keel.models._torch import BUILTIN_ARCHITECTURES, resolve_architecture

    if est.architecture in BUILTIN_ARCHITECTURES:
        return
    given = dict(est.net_kwargs or {})
    takes = inspect.signature(resolve_architecture(est.architecture)).parameters
    sizes = {
        "n_in": int(np.prod(X.shape[1:])),
        "n_out": len(np.unique(y)) if task == "classification" else 1,
        "in_shape": [int(d) for d in X.shape[1:]],
        "window": int(X.shape[1]),
    }
    filled = {k: sizes[k] for k in _NET_SIZES if k in takes and k not in given}
    est.set_params(net_kwargs={**given, **filled})


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))


def train(
    store: Store,
    dataset: str,
    target: str,
    *,
    model: str = "lightgbm",
    params: dict[str, Any] | None = None,
    features: Any = None,
    task: str | None = None,
    holdout: str | None = None,
    split: str = "stratified",
    test_size: float = 0.2,
    seed: int = 0,
    experiment: str = "default",
    time_col: str | None = None,
    group_col: str | None = None,
    tags: dict[str, Any] | None = None,
    prepared: Prepared | None = None,
    sample_weight: Any = None,
    on_epoch: Any = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` to predict ``target``; evaluate on the hold-out part
    (``holdout`` dataset, or a ``split`` of the data); record a run with everything needed to
    reproduce it. ``sample_weight``: one non-negative weight per training row (with
    ``prepared``, the rows of ``prepared.train``), given to the estimator's fit.

    Torch models train in epochs: each epoch's record (``epoch``, ``train_loss``,
    ``val_loss``, the validation metric, ``seconds``) is logged to the run at step ``epoch``
    and then passed to ``on_epoch`` (a progress bar, say). A dataset of windows that carries
    a seasonal-naive column (``naive_<season>``, see :func:`keel.data.windows`) adds that
    forecast's hold-out errors to the baseline as ``seasonal_naive_rmse`` and
    ``seasonal_naive_mae``."""
    kind = get_kind(model)
    prep = prepared or prepare(
        store,
        dataset,
        target,
        features=features,
        task=task,
        holdout=holdout,
        split=split,
        test_size=test_size,
        seed=seed,
        time_col=time_col,
        group_col=group_col,
        model=model,
    )
    _check_params(kind, prep.task, params, seed)
    weights = None if sample_weight is None else _check_weights(sample_weight, len(prep.train))
    run = start_run(store, experiment, seed=seed, tags={"model": model, **(tags or {})})
    with run:
        _log_setup(run, prep, kind.name, {**kind.defaults, **(params or {})}, seed)
        if weights is not None:
            run.log_params({"sample_weight": "given"})
        records: list[dict[str, float]] = []
        fitted = _fit(run, prep, model, params, seed, weights, records, on_epoch)
        y_test = prep.test[prep.target].to_numpy()
        metrics = evaluate(fitted, prep.test[prep.columns], y_test)
        y_train = _labels(prep.train[prep.target].to_numpy(), prep.task)
        base = baseline(prep.task, y_train, y_test, getattr(fitted, "classes_", None))
        base.update(_seasonal_naive(prep))
        run.log_metrics({f"holdout_{k}": v for k, v in metrics.items()}, step=0)
        run.log_metrics({f"holdout_baseline_{k}": v for k, v in base.items()}, step=0)
        _log_dp_epsilon(run, fitted)
        epochs = _epoch_summary(records, {**kind.defaults, **(params or {})})
        if epochs:
            run.log_metrics({k: v for k, v in epochs.items() if k != "epochs"}, step=0)
        from keel.models import save_model

        sha = save_model(fitted, store.blobs)
        run.link_artifact("model", sha, store.blobs.size(sha))
    return TrainResult(
        run.id,
        fitted,
        metrics,
        sha,
        model,
        {**kind.defaults, **(params or {})},
        prep.task,
        base,
        compare_to_baseline(prep.task, metrics, base, y_train) + _naive_warning(metrics, base),
        epochs,
    )


def _epoch_summary(records: list[dict[str, float]], params: dict[str, Any]) -> dict[str, Any]:
    """Epochs asked for and run, and the best epoch (the estimator's rule: the first epoch
    whose validation loss improves on every earlier one by more than 1e-6)."""
    if not records:
        return {}
    best, best_epoch = float("inf"), int(records[0]["epoch"])
    for r in records:
        if r["val_loss"] < best - 1e-6:
            best, best_epoch = r["val_loss"], int(r["epoch"])
    return {
        "epochs": params.get("epochs"),
        "epochs_run": len(records),
        "best_epoch": best_epoch,
        "best_val_loss": float(best),
    }


_NAIVE = re.compile(r"naive_(\d+)")


def _seasonal_naive(prep: Prepared) -> dict[str, float]:
    """The seasonal-naive forecast's errors on the hold-out rows, when the data carries it
    (the ``naive_<season>`` column of :func:`keel.data.windows`)."""
    cols = [c for c in prep.test.columns if _NAIVE.fullmatch(str(c))]
    if prep.task != "regression" or len(cols) != 1 or cols[0] in prep.columns:
        return {}
    naive = prep.test[cols[0]].to_numpy(dtype=float)
    y = prep.test[prep.target].to_numpy(dtype=float)
    ok = np.isfinite(naive) & np.isfinite(y)
    if not ok.any():
        return {}
    err = y[ok] - naive[ok]
    return {
        "seasonal_naive_rmse": float(np.sqrt(np.mean(err**2))),
        "seasonal_naive_mae": float(np.mean(np.abs(err))),
    }


def _naive_warning(metrics: dict[str, float], base: dict[str, float]) -> list[str]:
    naive = base.get("seasonal_naive_rmse")
    if naive is None or metrics.get("rmse", 0.0) < naive:
        return []
    return [
        f"the model's hold-out rmse {metrics['rmse']:.4g} does not beat the seasonal-naive "
        f"forecast (the value one season earlier, rmse {naive:.4g})"
    ]


def _labels(y: np.ndarray, task: str) -> np.ndarray:
    """Training labels as the model saw them (see :func:`build_model`)."""
    if task == "classification" and (y.dtype == object or pd.api.types.is_string_dtype(y)):
        return y.astype(str)
    return y


def _fit(
    run: Run,
    prep: Prepared,
    model: str,
    params: dict[str, Any] | None,
    seed: int,
    sample_weight: np.ndarray | None = None,
    records: list[dict[str, float]] | None = None,
    on_epoch: Any = None,
) -> Any:
    """Fit, turning a library's complaint about the data into one clear keel error (the run
    stays in the store, marked failed, as a record of what was tried). Each epoch's record
    is logged at step ``epoch``, appended to ``records`` and given to ``on_epoch``."""

    def log_epoch(record: dict[str, float]) -> None:
        step = int(record["epoch"])
        run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=step)
        if records is not None:
            records.append(dict(record))
        if on_epoch is not None:
            on_epoch(record)

    try:
        return build_model(prep, model, params, seed, sample_weight, on_epoch=log_epoch)
    except Exception as exc:
        if isinstance(exc, InvalidInput):
            raise
        if not isinstance(exc, ValueError | TypeError) and not _from_lightgbm(exc):
            raise
        raise InvalidInput(
            f"training {model!r} failed on the data: {str(exc).splitlines()[0]} "
            f"(run {run.id[:12]} is marked failed)"
        ) from None


def _from_lightgbm(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] == "lightgbm"


def _check_weights(sample_weight: Any, n: int) -> np.ndarray:
    """Refuse weights that do not fit the training rows, before a run is opened."""
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("sample_weight: expected numbers, one per training row") from None
    if w.shape != (n,):
        raise InvalidInput(
            f"sample_weight: expected {n} weights (one per training row), got {w.shape}"
        )
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInput(f"sample_weight: row {i}: expected a finite weight ≥ 0, got {w[i]!r}")
    if w.sum() <= 0:
        raise InvalidInput("sample_weight: every weight is 0; at least one must be positive")
    return w


def _check_params(kind: Any, task: str, params: dict[str, Any] | None, seed: int) -> None:
    """Refuse bad model parameters before a run is opened, so nothing is recorded: names
    the model kind does not take (with the closest one that it does), and values that the
    library refuses, named with the parameter."""
    defaults = type(kind.estimator(task, None, seed))().get_params()
    _check_param_names(kind, params or {}, set(defaults) | set(kind.defaults))
    est = kind.estimator(task, params, seed)
    for key, value in (params or {}).items():
        default = defaults.get(key)
        numeric = isinstance(default, int | float) and not isinstance(default, bool)
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidInput(
                f"model {kind.name!r} parameter {key!r}: expected a number like {default!r}, "
                f"got {value!r}"
            )
    validate = (
        getattr(est, "_validate_params", None) if hasattr(est, "_parameter_constraints") else None
    )
    if validate is not None:
        try:
            validate()
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"model {kind.name!r}: {exc}") from None
    if kind.check_values is not None:
        kind.check_values(task, {**kind.defaults, **(params or {})}, seed)


def _check_param_names(kind: Any, params: dict[str, Any], known: set[str]) -> None:
    native = kind.native_params() if kind.native_params is not None else {}
    if native is None:
        return  # the library's names cannot be listed: let them through
    for key in params:
        if key in known or key in native:
            continue
        close = difflib.get_close_matches(key, sorted(known | set(native)), n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"its parameters include {', '.join(sorted(known))}"
        )
        raise InvalidInput(f"model {kind.name!r}: bad parameter {key!r}: unknown name; {hint}")


def _log_setup(run: Run, prep: Prepared, model: str, params: dict[str, Any], seed: int) -> None:
    run.log_params(
        {
            **{f"model.{k}": v for k, v in params.items()},
            "model": model,
            "task": prep.task,
            "target": prep.target,
            "split": prep.split,
            "test_size": prep.test_size,
            "time_col": prep.time_col,
            "group_col": prep.group_col,
            "seed": seed,
            "n_train": len(prep.train),
            "n_test": len(prep.test),
            "feature_spec_sha": prep.spec.hash() if prep.spec is not None else None,
        }
    )
    if prep.spec is not None:
        spec_json = json.dumps(prep.spec.to_dict(), sort_keys=True).encode()
        run.log_artifact("feature_spec.json", spec_json)
    for sha, role in prep.inputs:
        run.add_input("dataset", sha, role)
