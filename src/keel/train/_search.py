"""Hyper-parameter search with Optuna; trials fan out through an executor.

The feature transform is fitted once on the search's training part; each trial fits only the
estimator on the transformed arrays, so a trial is as cheap as the model itself. Trials are
asked in batches (one per worker), evaluated by the executor, and told back in order, so a
fixed seed gives the same search.

Torch kinds train in epochs, and a trial that is doing worse than the others at the same
epoch is stopped early: each epoch's validation metric is reported to Optuna and the pruner
(a median pruner unless ``pruner`` is given) decides. Pruning needs the study beside the
trial, so torch trials run one after another in this process (the executor is not used);
pruned trials are recorded with their state and the epoch they reached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.store import Store
from keel.train._tracking import start_run
from keel.train._train import TrainResult, _check_params, prepare, train
from keel.train._zoo import dp_search_refusal, get_kind

__all__ = ["SearchResult", "search"]


@dataclass
class SearchResult:
    best_params: dict[str, Any]
    best_value: float
    metric: str
    trials: list[dict[str, Any]]
    search_run_id: str
    final: TrainResult


def _objective(shared: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """One trial in a worker: fit on the transformed arrays, score on the validation part."""
    t0 = time.perf_counter()
    kind = get_kind(shared["model"])
    est = kind.estimator(shared["task"], params, shared["seed"])
    est.fit(shared["X_train"], shared["y_train"])
    return {"value": _score(est, shared), "seconds": time.perf_counter() - t0}


def _score(est: Any, shared: dict[str, Any]) -> float:
    """A fitted estimator's score on the validation part (higher is better)."""
    from sklearn import metrics as m

    if shared["task"] == "classification":
        proba = est.predict_proba(shared["X_val"])
        if proba.shape[1] == 2:
            value = m.roc_auc_score(shared["y_val"] == est.classes_[1], proba[:, 1])
        else:
            value = -m.log_loss(shared["y_val"], proba, labels=est.classes_)
    else:
        value = -float(np.sqrt(m.mean_squared_error(shared["y_val"], est.predict(shared["X_val"]))))
    return float(value)


def _epoch_value(record: dict[str, float], metric: str) -> float:
    """An epoch's validation value on the search's scale (higher is better): ROC AUC, the
    negated log loss (the validation loss of a classifier), or the negated RMSE."""
    if metric == "val_roc_auc" and "val_roc_auc" in record:
        return float(record["val_roc_auc"])
    if metric == "val_neg_rmse":
        return -float(record["val_rmse"])
    return -float(record["val_loss"])


def _torch_trial(study: Any, trial: Any, params: dict[str, Any], shared: dict[str, Any]) -> dict:
    """One torch trial in this process: report each epoch's validation metric, stop when
    the pruner says so (the trial is told PRUNED), else score it like any trial."""
    import optuna

    from keel.train._train import _fill_net_kwargs

    t0 = time.perf_counter()
    est = get_kind(shared["model"]).estimator(shared["task"], params, shared["seed"])
    _fill_net_kwargs(est, shared["X_train"], shared["y_train"], shared["task"])
    reached: list[float] = []

    def report(record: dict[str, float]) -> None:
        value, epoch = _epoch_value(record, shared["metric"]), int(record["epoch"])
        reached.append(value)
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {shared['metric']} {value:.4f}")

    est.on_epoch = report
    try:
        est.fit(shared["X_train"], shared["y_train"])
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return {
            "value": reached[-1],
            "seconds": time.perf_counter() - t0,
            "state": "pruned",
            "epochs_run": len(reached),
        }
    value = _score(est, shared)
    study.tell(trial, value)
    return {
        "value": value,
        "seconds": time.perf_counter() - t0,
        "state": "complete",
        "epochs_run": len(est.history_),
        "best_epoch": est.best_epoch_,
    }


def _torch_arrays(prep: Any, model: str, seed: int, val_size: float) -> dict[str, Any]:
    """The search's training and validation parts for a torch kind: keel's feature
    transform for columns, or the tensor column; the latest rows validate a forecaster."""
    from keel.models._torch import tensor_input
    from keel.train._split import split_indices
    from keel.train._train import _labels

    df = prep.train
    y = _labels(df[prep.target].to_numpy(), prep.task)
    if getattr(get_kind(model).estimator(prep.task), "val_split", None) == "tail":
        n_val = max(1, int(round(len(df) * val_size)))
        tr, va = np.arange(len(df) - n_val), np.arange(len(df) - n_val, len(df))
    else:
        strategy = "stratified" if prep.task == "classification" else "random"
        tr, va = split_indices(df, strategy, target=prep.target, test_size=val_size, seed=seed)
    if prep.spec is None:
        X = tensor_input(df, prep.input_schema[0])
        X_train, X_val = X[tr], X[va]
    else:
        from keel.features import compile_spec

        transform = compile_spec(prep.spec, prep.columns)
        X_train = np.asarray(transform.fit_transform(df.iloc[tr][prep.columns]), np.float32)
        X_val = np.asarray(transform.transform(df.iloc[va][prep.columns]), np.float32)
    return {
        "model": model,
        "task": prep.task,
        "seed": seed,
        "X_train": X_train,
        "y_train": y[tr],
        "X_val": X_val,
        "y_val": y[va],
    }


def _shared_arrays(prep: Any, model: str, seed: int, val_size: float) -> dict[str, Any]:
    from keel.features import compile_spec
    from keel.train._split import split_indices

    df = prep.train
    strategy = "stratified" if prep.task == "classification" else "random"
    tr, va = split_indices(df, strategy, target=prep.target, test_size=val_size, seed=seed)
    transform = compile_spec(prep.spec, prep.columns)
    X_train = transform.fit_transform(df.iloc[tr][prep.columns])
    X_val = transform.transform(df.iloc[va][prep.columns])
    y = df[prep.target].to_numpy()
    if prep.task == "classification":
        y = y.astype(str)
    return {
        "model": model,
        "task": prep.task,
        "seed": seed,
        "X_train": X_train,
        "y_train": y[tr],
        "X_val": X_val,
        "y_val": y[va],
    }


def search(
    store: Store,
    dataset: str,
    target: str,
    *,
    model: str = "lightgbm",
    n_trials: int = 20,
    executor: Any = None,
    features: Any = None,
    holdout: str | None = None,
    task: str | None = None,
    split: str = "stratified",
    test_size: float = 0.2,
    time_col: str | None = None,
    group_col: str | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    val_size: float = 0.2,
    experiment: str = "search",
    progress: bool = True,
    pruner: Any = None,
) -> SearchResult:
    """Search ``model``'s parameters on ``dataset``; train the best on all training rows.

    ``params`` are held fixed in every trial; the split options are those of
    :func:`keel.train.train`. Torch kinds run their trials in this process and prune them
    on the per-epoch validation metric with ``pruner`` (default: Optuna's
    ``MedianPruner(n_startup_trials=2, n_warmup_steps=2)``); each trial in ``trials`` has a
    ``state`` (``complete`` or ``pruned``)."""
    import optuna

    from keel.executors import get_executor

    if n_trials < 1:
        raise InvalidInput(f"n_trials: expected a positive number, got {n_trials!r}")
    kind = get_kind(model)
    if kind.tags.get("differentially_private"):
        raise InvalidInput(dp_search_refusal(model))
    prep = prepare(
        store,
        dataset,
        target,
        features=features,
        task=task,
        holdout=holdout,
        split=split,
        test_size=test_size,
        time_col=time_col,
        group_col=group_col,
        seed=seed,
        model=model,
    )
    fixed = dict(params or {})
    _check_params(kind, prep.task, fixed, seed)
    in_process = kind.flavor == "torch"
    if in_process:
        shared = _torch_arrays(prep, model, seed, val_size)
        if pruner is None:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    else:
        shared = _shared_arrays(prep, model, seed, val_size)
    own_executor = not in_process and (executor is None or isinstance(executor, str))
    ex = get_executor(executor) if own_executor else executor
    where = "in-process (pruning)" if in_process else ex.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner
    )
    parent = start_run(store, experiment, seed=seed, tags={"kind": "search", "model": model})
    trials: list[dict[str, Any]] = []
    metric = _metric_name(prep.task, shared["y_train"])
    shared["metric"] = metric
    try:
        with parent, _progress(progress, n_trials, model, where, metric) as advance:
            while len(trials) < n_trials:
                workers = 1 if in_process else getattr(ex, "workers", 1)
                batch = [study.ask() for _ in range(min(workers, n_trials - len(trials)))]
                asked = [{**kind.defaults, **kind.space(t), **fixed} for t in batch]
                if in_process:
                    outs = [_torch_trial(study, batch[0], asked[0], shared)]
                else:
                    outs = list(ex.map(_objective, asked, shared=shared))
                for trial, p, out in zip(batch, asked, outs, strict=True):
                    if not in_process:
                        study.tell(trial, out["value"])
                        out["state"] = "complete"
                    trials.append({"number": trial.number, "params": p, **out})
                    if out["state"] == "complete":
                        parent.log_metric(metric, out["value"], step=trial.number)
                    pruned = sum(t["state"] == "pruned" for t in trials)
                    advance(study.best_value, pruned)
            best = study.best_trial
            best_params = {
                **kind.defaults,
                **kind.space(optuna.trial.FixedTrial(best.params)),
                **fixed,
            }
            parent.log_params({f"best.{k}": v for k, v in best_params.items()})
            parent.log_params({"n_trials": n_trials, "executor": where, "model": model})
            if in_process:
                parent.log_metric(
                    "trials_pruned", sum(t["state"] == "pruned" for t in trials), step=0
                )
            final = train(
                store,
                dataset,
                target,
                model=model,
                params=best_params,
                seed=seed,
                experiment=experiment,
                tags={"search_run": parent.id},
                prepared=prep,
            )
            parent.log_metrics({f"holdout_{k}": v for k, v in final.metrics.items()}, step=0)
            # the per-trial series keeps its history; the run's headline is the best trial
            parent.log_metric(f"best_{metric}", float(study.best_value), step=0)
    finally:
        if own_executor:
            ex.close()
    return SearchResult(best_params, float(study.best_value), metric, trials, parent.id, final)


def _metric_name(task: str, y_train: Any) -> str:
    """The name of what :func:`_objective` scores (higher is better): ROC AUC for two
    classes, the negated log loss for more, the negated RMSE for a regression."""
    if task != "classification":
        return "val_neg_rmse"
    return "val_roc_auc" if len(np.unique(y_train)) == 2 else "val_neg_log_loss"


class _progress:
    """A rich progress bar for the trials, naming the metric the best value is of (quiet
    when ``enabled`` is false)."""

    def __init__(self, enabled: bool, total: int, model: str, executor: str, metric: str) -> None:
        self.enabled, self.total, self.metric = enabled, total, metric
        self.label = f"search {model} on {executor}"

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda best, pruned=0: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(f"best {self.metric} {{task.fields[best]}}{{task.fields[pruned]}}"),
            TimeElapsedColumn(),
        )
        self._p.start()
        task = self._p.add_task(self.label, total=self.total, best="-", pruned="")
        return lambda best, pruned=0: self._p.update(
            task, advance=1, best=f"{best:.4f}", pruned=f", {pruned} pruned" if pruned else ""
        )

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._p.stop()
