"""Hyper-parameter search with Optuna; trials fan out through an executor.

The feature transform is fitted once on the search's training part; each trial fits only the
estimator on the transformed arrays, so a trial is as cheap as the model itself. Trials are
asked in batches (one per worker), evaluated by the executor, and told back in order, so a
fixed seed gives the same search.
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
from keel.train._zoo import get_kind

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
    from sklearn import metrics as m

    t0 = time.perf_counter()
    kind = get_kind(shared["model"])
    est = kind.estimator(shared["task"], params, shared["seed"])
    est.fit(shared["X_train"], shared["y_train"])
    if shared["task"] == "classification":
        proba = est.predict_proba(shared["X_val"])
        if proba.shape[1] == 2:
            value = m.roc_auc_score(shared["y_val"] == est.classes_[1], proba[:, 1])
        else:
            value = -m.log_loss(shared["y_val"], proba, labels=est.classes_)
    else:
        value = -float(np.sqrt(m.mean_squared_error(shared["y_val"], est.predict(shared["X_val"]))))
    return {"value": float(value), "seconds": time.perf_counter() - t0}


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
) -> SearchResult:
    """Search ``model``'s parameters on ``dataset``; train the best on all training rows.

    ``params`` are held fixed in every trial; the split options are those of
    :func:`keel.train.train`."""
    import optuna

    from keel.executors import get_executor

    if n_trials < 1:
        raise InvalidInput(f"n_trials: expected a positive number, got {n_trials!r}")
    kind = get_kind(model)
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
    shared = _shared_arrays(prep, model, seed, val_size)
    own_executor = executor is None or isinstance(executor, str)
    ex = get_executor(executor) if own_executor else executor
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    parent = start_run(store, experiment, seed=seed, tags={"kind": "search", "model": model})
    trials: list[dict[str, Any]] = []
    metric = _metric_name(prep.task, shared["y_train"])
    try:
        with parent, _progress(progress, n_trials, model, ex.name, metric) as advance:
            while len(trials) < n_trials:
                batch = [
                    study.ask()
                    for _ in range(min(getattr(ex, "workers", 1), n_trials - len(trials)))
                ]
                params = [{**kind.defaults, **kind.space(t), **fixed} for t in batch]
                for trial, p, out in zip(
                    batch, params, ex.map(_objective, params, shared=shared), strict=True
                ):
                    study.tell(trial, out["value"])
                    trials.append({"number": trial.number, "params": p, **out})
                    parent.log_metric(metric, out["value"], step=trial.number)
                    advance(study.best_value)
            best = study.best_trial
            best_params = {
                **kind.defaults,
                **kind.space(optuna.trial.FixedTrial(best.params)),
                **fixed,
            }
            parent.log_params({f"best.{k}": v for k, v in best_params.items()})
            parent.log_params({"n_trials": n_trials, "executor": ex.name, "model": model})
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
            return lambda best: None
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
            TextColumn(f"best {self.metric} {{task.fields[best]}}"),
            TimeElapsedColumn(),
        )
        self._p.start()
        task = self._p.add_task(self.label, total=self.total, best="-")
        return lambda best: self._p.update(task, advance=1, best=f"{best:.4f}")

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._p.stop()
