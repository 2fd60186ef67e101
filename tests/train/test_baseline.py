"""Every run is scored against the trivial baseline (majority class, or the mean) on the same
hold-out rows, and a model that does not beat it is flagged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.cli import main
from keel.data import ingest
from keel.train import get_run, train


def test_the_majority_baseline_is_logged_and_a_model_below_it_is_flagged(imbalanced):
    res = train(imbalanced, "default", "y", params={"n_estimators": 50})
    run = get_run(imbalanced, res.run_id)
    n_test = run["params"]["n_test"]
    # the stratified split keeps the share of "No" in the hold-out part
    assert res.baseline["accuracy"] == pytest.approx(1 - 4 / n_test)
    assert run["metrics"]["holdout_baseline_accuracy"] == res.baseline["accuracy"]
    assert "log_loss" in res.baseline and "holdout_baseline_log_loss" in run["metrics"]
    assert res.metrics["accuracy"] <= res.baseline["accuracy"]
    assert any("does not beat" in w and "always predicting 'No'" in w for w in res.warnings), (
        res.warnings
    )


def test_a_useful_model_beats_the_baseline_quietly(store, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    df = pd.DataFrame({"x": x, "noise": rng.normal(size=400), "y": 3 * x + 1})
    df["y"] = df["y"] + rng.normal(scale=0.1, size=400)
    df.to_csv(tmp_path / "reg.csv", index=False)
    ingest(store, tmp_path / "reg.csv", name="reg")
    res = train(store, "reg", "y", model="random_forest", params={"n_estimators": 20})
    assert res.task == "regression"
    assert set(res.baseline) == {"rmse", "mae", "r2"}
    assert res.baseline["r2"] <= 0 < res.metrics["r2"]
    assert res.metrics["rmse"] < res.baseline["rmse"]
    assert res.warnings == []
    assert "holdout_baseline_rmse" in get_run(store, res.run_id)["metrics"]


def test_cli_train_shows_the_baseline_and_the_warning(imbalanced, tmp_path, capsys):
    from keel.project import init

    root = tmp_path / "proj"
    with init(root) as proj:
        ingest(proj.store, tmp_path / "default.csv", name="default")
    capsys.readouterr()
    assert main(["train", "default", "-t", "y", "-p", "n_estimators=50", "-C", str(root)]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "does not beat" in out
    args = ["train", "default", "-t", "y", "-p", "n_estimators=50", "-C", str(root), "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert "accuracy" in data["baseline"] and data["warnings"]
