"""Training on stored datasets: quality on Adult, reproducibility, splits, search, lineage."""

import numpy as np
import pandas as pd
import pytest

from keel import datasets
from keel.data import ingest
from keel.errors import InvalidInput
from keel.store import lineage
from keel.train import get_run, search, split_indices, train


@pytest.fixture(scope="module")
def adult_store(tmp_path_factory):
    from keel.store import Store

    root = tmp_path_factory.mktemp("adult")
    store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
    paths = datasets.write_adult_csv(root / "data")
    ingest(store, paths["train"], name="adult-train")
    ingest(store, paths["test"], name="adult-test")
    yield store
    store.close()


@pytest.mark.slow
def test_default_lightgbm_meets_the_adult_bar(adult_store):
    res = train(adult_store, "adult-train", "income", holdout="adult-test")
    assert res.task == "classification"
    assert res.metrics["accuracy"] >= 0.87, res.metrics
    assert res.metrics["roc_auc"] >= 0.92, res.metrics
    run = get_run(adult_store, res.run_id)
    assert run["params"]["split"] == "holdout" and run["params"]["n_test"] == 16281
    assert set(run["artifacts"]) == {"model", "feature_spec.json"}
    # lineage: run -> both datasets -> their source files
    tree = lineage(adult_store, "run", res.run_id)
    roles = sorted(n.role for n in tree.parents)
    assert roles == ["holdout", "train"]
    assert all(p.parents and p.parents[0].kind == "source" for p in tree.parents)


def test_same_data_spec_seed_give_same_metrics(adult_store):
    kw = dict(model="lightgbm", params={"n_estimators": 60}, split="stratified", seed=3)
    a = train(adult_store, "adult-train", "income", **kw)
    b = train(adult_store, "adult-train", "income", **kw)
    c = train(adult_store, "adult-train", "income", **{**kw, "seed": 4})
    assert a.metrics == b.metrics
    assert a.run_id != b.run_id
    assert c.metrics != a.metrics


def test_regression_task_is_inferred_and_scored(adult_store):
    res = train(
        adult_store,
        "adult-train",
        "hours-per-week",
        model="random_forest",
        params={"n_estimators": 20, "max_depth": 6},
        features={
            "steps": [
                {"op": "impute", "columns": ["age", "education-num"], "strategy": "median"},
            ]
        },
    )
    assert res.task == "regression"
    assert set(res.metrics) == {"rmse", "mae", "r2"} and res.metrics["rmse"] > 0


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"target": "nope"}, "target: column 'nope' is not in dataset adult-train/1"),
        ({"target": "income", "model": "xgboostt"}, "unknown model 'xgboostt'"),
        ({"target": "income", "split": "sideways"}, "split: expected one of"),
        ({"target": "income", "split": "group"}, "needs group_col"),
        (
            {"target": "income", "features": {"steps": [{"op": "scale", "columns": ["agee"]}]}},
            "agee",
        ),
        (
            {"target": "income", "params": {"no_such_param": 1}, "model": "random_forest"},
            "bad parameter",
        ),
    ],
)
def test_bad_training_input_names_the_problem_and_records_nothing(adult_store, kw, needle):
    from keel.train import list_runs

    before = len(list_runs(adult_store, limit=10_000))
    target = kw.pop("target")
    with pytest.raises(InvalidInput, match=needle):
        train(adult_store, "adult-train", target, **kw)
    assert len(list_runs(adult_store, limit=10_000)) == before


def test_one_class_target_is_refused_before_any_run(store, tmp_path):
    from keel.train import list_runs

    path = tmp_path / "one.csv"
    path.write_text("x,y\n" + "".join(f"{i},yes\n" for i in range(10)))
    ingest(store, path, name="one")
    with pytest.raises(InvalidInput, match="at least 2 classes.*'yes'"):
        train(store, "one", "y")
    assert list_runs(store) == []


def test_split_strategies_partition_rows():
    df = pd.DataFrame(
        {
            "y": np.tile([0, 1], 50),
            "t": np.arange(100)[::-1],
            "g": np.repeat(np.arange(10), 10),
        }
    )
    for strategy in ["random", "stratified", "time", "group"]:
        tr, te = split_indices(df, strategy, target="y", test_size=0.3, time_col="t", group_col="g")
        assert sorted(np.concatenate([tr, te])) == list(range(100))
    tr, te = split_indices(df, "time", target="y", test_size=0.3, time_col="t")
    assert df.t.iloc[tr].max() < df.t.iloc[te].min()
    tr, te = split_indices(df, "group", target="y", test_size=0.3, group_col="g")
    assert not set(df.g.iloc[tr]) & set(df.g.iloc[te])
    tr, te = split_indices(df, "stratified", target="y", test_size=0.3)
    assert df.y.iloc[te].mean() == pytest.approx(0.5, abs=0.04)


def test_search_runs_trials_through_the_process_pool(adult_store):
    res = search(
        adult_store,
        "adult-train",
        "income",
        n_trials=4,
        executor="process",
        progress=False,
        holdout="adult-test",
        experiment="search-test",
    )
    assert len(res.trials) == 4 and len({str(t["params"]) for t in res.trials}) == 4
    assert res.best_value == max(t["value"] for t in res.trials)
    run = get_run(adult_store, res.search_run_id)
    assert run["metrics"][f"best_{res.metric}"] == res.best_value  # the headline is the best
    assert res.final.metrics["roc_auc"] > 0.85
    parent = get_run(adult_store, res.search_run_id)
    assert len(parent["metric_history"]["val_roc_auc"]) == 4
    assert get_run(adult_store, res.final.run_id)["tags"]["search_run"] == res.search_run_id


@pytest.mark.slow
def test_search_on_real_ray_local_cluster(adult_store):
    pytest.importorskip("ray")
    from keel.executors import RayExecutor

    ex = RayExecutor(workers=2)
    try:
        res = search(
            adult_store,
            "adult-train",
            "income",
            n_trials=2,
            executor=ex,
            progress=False,
            holdout="adult-test",
            experiment="ray-test",
        )
    finally:
        ex.close()
    assert len(res.trials) == 2
    assert get_run(adult_store, res.search_run_id)["params"]["executor"] == "ray"
