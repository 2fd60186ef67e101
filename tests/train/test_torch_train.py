"""Torch models through keel's trainer: epochs logged to the run, early stopping keeping the
best epoch, seeds, parameter checks, progress, a user's own network, and search with pruning
on the per-epoch validation metric."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from keel.data import ingest  # noqa: E402
from keel.errors import InvalidInput  # noqa: E402
from keel.models import load_model  # noqa: E402
from keel.train import EpochProgress, get_run, list_runs, search, train  # noqa: E402

FAST = {"epochs": 6, "batch_size": 64, "hidden": [16], "patience": 50}


def _table(n: int = 400, seed: int = 0, signal: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    df["colour"] = rng.choice(["red", "green", "blue"], n)
    score = df["a"] - 0.5 * df["b"] + (df["colour"] == "red") if signal else rng.normal(size=n)
    df["label"] = np.where(score + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    return df


@pytest.fixture
def tab(store, tmp_path):
    path = tmp_path / "tab.csv"
    _table().to_csv(path, index=False)
    ingest(store, path, name="tab")
    return store


def _weights(store, res) -> dict[str, np.ndarray]:
    return load_model(store.blobs, res.artifact_sha).state


def test_same_seed_gives_the_same_weights_on_the_cpu(tab):
    a = train(tab, "tab", "label", model="torch-mlp", params=FAST, seed=1)
    b = train(tab, "tab", "label", model="torch-mlp", params=FAST, seed=1)
    c = train(tab, "tab", "label", model="torch-mlp", params=FAST, seed=2)
    wa, wb, wc = _weights(tab, a), _weights(tab, b), _weights(tab, c)
    assert wa.keys() == wb.keys()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert a.metrics == b.metrics
    assert not all(np.array_equal(wa[k], wc[k]) for k in wa)


def test_every_epoch_is_in_the_tracking_store_with_steps_1_to_n(tab):
    res = train(tab, "tab", "label", model="torch-mlp", params=FAST)
    history = get_run(tab, res.run_id)["metric_history"]
    for key in ("train_loss", "val_loss", "val_roc_auc", "val_accuracy", "seconds"):
        assert [step for step, _ in history[key]] == [1, 2, 3, 4, 5, 6], key
    assert res.epochs == {
        "epochs": 6,
        "epochs_run": 6,
        "best_epoch": res.epochs["best_epoch"],
        "best_val_loss": pytest.approx(min(v for _, v in history["val_loss"])),
    }
    run = get_run(tab, res.run_id)
    assert run["metrics"]["epochs_run"] == 6 and run["metrics"]["best_epoch"] >= 1


def test_early_stopping_stops_on_a_plateau_and_keeps_the_best_epoch(store, tmp_path):
    # labels that carry no signal: the validation loss bottoms out early, then rises
    path = tmp_path / "noise.csv"
    _table(600, seed=3, signal=False).to_csv(path, index=False)
    ingest(store, path, name="noise")
    params = {"epochs": 60, "patience": 3, "lr": 0.01, "hidden": [64, 64], "dropout": 0.0}
    bar = EpochProgress(60, enabled=False)
    res = train(store, "noise", "label", model="torch-mlp", params=params, on_epoch=bar)
    e = res.epochs
    assert e["epochs_run"] < 60 and e["epochs_run"] == len(bar.records)
    assert e["epochs_run"] == e["best_epoch"] + 3
    best = min(r["val_loss"] for r in bar.records)
    assert e["best_val_loss"] == pytest.approx(best)
    # the stored model's loss on the trainer's validation rows is the best epoch's
    from keel.train import prepare
    from keel.train._zoo import get_kind

    prep = prepare(store, "noise", "label", model="torch-mlp")
    est = get_kind("torch-mlp").estimator("classification", params, 0)
    y = prep.train["label"].to_numpy().astype(str)
    _, val = est._split(np.unique(y, return_inverse=True)[1])
    model = load_model(store.blobs, res.artifact_sha)
    proba = model.predict_proba(prep.train.iloc[val][prep.columns])
    cls = np.searchsorted(np.asarray(model.classes_), y[val])
    loss = float(-np.mean(np.log(proba[np.arange(len(val)), cls])))
    assert loss == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"epochs": 0}, r"parameter 'epochs' = 0: expected >= 1"),
        ({"lr": -1}, r"parameter 'lr' = -1: expected > 0"),
        ({"patience": 0}, r"parameter 'patience' = 0"),
        ({"epoch": 5}, r"bad parameter 'epoch': unknown name; did you mean 'epochs'\?"),
        ({"learning_rate": 0.1}, r"bad parameter 'learning_rate'"),
        ({"lr": "fast"}, r"parameter 'lr': expected a number like 0.001, got 'fast'"),
    ],
)
def test_bad_parameters_are_named_before_a_run_is_opened(tab, params, words):
    with pytest.raises(InvalidInput, match=words):
        train(tab, "tab", "label", model="torch-mlp", params=params)
    assert list_runs(tab) == []


NET = """
import torch


class Net(torch.nn.Module):
    def __init__(self, n_in, n_out, width=8):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(n_in, width), torch.nn.ReLU(), torch.nn.Linear(width, n_out)
        )

    def forward(self, x):
        return self.body(x.flatten(1))
"""


def test_a_users_own_module_trains_and_registers(tab, tmp_path, monkeypatch):
    pkg = tmp_path / "code" / "mynets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "tabular.py").write_text(textwrap.dedent(NET))
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    params = {"epochs": 8, "lr": 0.01, "batch_size": 64, "net_kwargs": {"width": 12}}
    res = train(tab, "tab", "label", model="torch:mynets.tabular:Net", params=params)
    assert res.metrics["roc_auc"] > 0.8, res.metrics
    assert res.epochs["epochs_run"] == 8
    version = res.register(tab, "own")
    model = load_model(tab.blobs, version.artifact_sha)
    assert model.architecture == "mynets.tabular:Net"
    assert model.arch_kwargs == {"width": 12, "n_in": model.arch_kwargs["n_in"], "n_out": 2}
    assert model.state["body.0.weight"].shape[0] == 12
    frame = _table(5, seed=9)
    assert set(model.predict(frame)) <= {"yes", "no"}
    # the same through a built-in kind's parameters
    same = train(
        tab,
        "tab",
        "label",
        model="torch-mlp",
        params={**params, "architecture": "mynets.tabular:Net"},
    )
    assert same.metrics == res.metrics


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("torch:nowhere", r"expected 'torch:package.module:Class'"),
        ("torch:no_such_pkg_x.mod:Net", r"module 'no_such_pkg_x.mod' does not import"),
    ],
)
def test_a_bad_user_network_is_named(tab, model, words):
    with pytest.raises(InvalidInput, match=words):
        train(tab, "tab", "label", model=model, params={"epochs": 1})


def test_the_cli_draws_epochs_and_reports_the_best_epoch(tab, tmp_path, capsys):
    from keel.cli import main

    project = tmp_path / "proj"
    assert main(["init", str(project)]) == 0
    data = tmp_path / "t.csv"
    _table().to_csv(data, index=False)
    assert main(["ingest", str(data), "--name", "tab", "-C", str(project)]) == 0
    capsys.readouterr()
    args = ["train", "tab", "-t", "label", "-m", "torch-mlp", "-p", "epochs=4", "-C", str(project)]
    assert main(args) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "epochs: 4 of 4 run; best epoch" in text
    assert main([*args, "--json"]) == 0
    import json

    got = json.loads(capsys.readouterr().out)
    assert got["epochs"]["epochs_run"] == 4 and 1 <= got["epochs"]["best_epoch"] <= 4


def test_the_epoch_bar_names_the_metric():
    from keel.train._progress import describe, epoch_metric

    rec = {"epoch": 2, "train_loss": 0.51234, "val_loss": 1340.12, "val_accuracy": 0.9}
    assert describe(rec) == "train loss 0.5123  val loss 1340  val_accuracy 0.9"
    assert epoch_metric({**rec, "val_roc_auc": 0.8}) == "val_roc_auc"
    assert epoch_metric({"val_rmse": 3.0}) == "val_rmse"
    with EpochProgress(3, "train torch-mlp") as bar:  # draws, then stops cleanly
        bar(rec)
    assert bar.records == [rec]


def test_search_prunes_torch_trials_on_the_epoch_metric(tab):
    import optuna

    class EveryOtherTrial(optuna.pruners.BasePruner):
        """Prune odd trials at their third epoch: pruning is then certain in a test."""

        def prune(self, study, trial):
            return trial.number % 2 == 1 and trial.last_step >= 3

    res = search(
        tab,
        "tab",
        "label",
        model="torch-mlp",
        n_trials=4,
        params={"epochs": 5},
        progress=False,
        pruner=EveryOtherTrial(),
    )
    states = [t["state"] for t in res.trials]
    assert states == ["complete", "pruned", "complete", "pruned"]
    assert [t["epochs_run"] for t in res.trials if t["state"] == "pruned"] == [3, 3]
    assert res.metric == "val_roc_auc" and 0.5 < res.best_value <= 1
    parent = get_run(tab, res.search_run_id)
    assert parent["params"]["executor"] == "in-process (pruning)"
    assert parent["metrics"]["trials_pruned"] == 2
    assert [s for s, _ in parent["metric_history"]["val_roc_auc"]] == [0, 2]
    assert res.final.epochs["epochs_run"] >= 1


def test_search_with_the_median_pruner_records_pruned_trials(tab):
    res = search(
        tab,
        "tab",
        "label",
        model="torch-mlp",
        n_trials=8,
        params={"epochs": 8, "batch_size": 128},
        progress=False,
        seed=1,
    )
    assert len(res.trials) == 8
    assert {t["state"] for t in res.trials} <= {"complete", "pruned"}
    done = [t for t in res.trials if t["state"] == "complete"]
    assert res.best_value == max(t["value"] for t in done)
