"""The accuracy goals of the built-in torch kinds (issue 12): torch-mlp on Adult, torch-cnn on
the 8x8 digits, torch-seq on hourly bike sharing against the seasonal-naive forecast."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from keel import datasets  # noqa: E402
from keel.data import ingest, load_frame, windows  # noqa: E402
from keel.train import EpochProgress, get_run, train  # noqa: E402


@pytest.mark.slow
def test_torch_mlp_on_adult_reaches_roc_auc_0_90_on_the_test_file(store, tmp_path):
    paths = datasets.write_adult_csv(tmp_path)
    ingest(store, paths["train"], name="adult-train")
    ingest(store, paths["test"], name="adult-test")
    res = train(store, "adult-train", "income", model="torch-mlp", holdout="adult-test")
    print("torch-mlp adult", res.metrics, res.epochs)
    assert res.metrics["roc_auc"] >= 0.90, res.metrics
    assert res.metrics["accuracy"] > res.baseline["accuracy"]
    assert 1 <= res.epochs["best_epoch"] <= res.epochs["epochs_run"] <= 30


@pytest.mark.slow
def test_torch_cnn_on_digits_reaches_accuracy_0_97_on_a_held_out_split(store, tmp_path):
    ingest(store, datasets.write_digits_npz(tmp_path), name="digits")
    bar = EpochProgress(40, enabled=False)
    res = train(store, "digits", "y", model="torch-cnn", on_epoch=bar)
    print("torch-cnn digits", res.metrics, res.epochs)
    assert res.task == "classification"
    assert res.metrics["accuracy"] >= 0.97, res.metrics
    history = get_run(store, res.run_id)["metric_history"]["val_accuracy"]
    assert [s for s, _ in history] == list(range(1, len(bar.records) + 1))


@pytest.mark.slow
def test_torch_seq_on_bike_sharing_beats_the_seasonal_naive_forecast(store, tmp_path):
    frame = datasets.bikeshare()
    frame["hour"] = (frame["day"] - 1) * 24 + frame["hr"]
    frame.to_csv(tmp_path / "bikeshare.csv", index=False)
    ingest(store, tmp_path / "bikeshare.csv", name="bikeshare")
    windows(store, "bikeshare", "bikers", window=48, time_col="hour", fill=0, name="bikes-w48")
    res = train(
        store,
        "bikes-w48",
        "y",
        model="torch-seq",
        split="time",
        time_col="time",
        params={"epochs": 25},
    )
    naive = res.baseline["seasonal_naive_rmse"]
    print("torch-seq bikeshare", res.metrics, res.baseline, res.epochs)
    assert res.metrics["rmse"] < naive, (res.metrics, res.baseline)
    assert "rmse" in res.baseline and "seasonal_naive_mae" in res.baseline
    # the naive forecast on the same hold-out rows (the last 20% by time), by hand
    n_test = get_run(store, res.run_id)["params"]["n_test"]
    test = load_frame(store, "bikes-w48").sort_values("time").tail(n_test)
    by_hand = float(np.sqrt(((test["y"] - test["naive_168"]) ** 2).mean()))
    assert by_hand == pytest.approx(naive)
    run = get_run(store, res.run_id)["metrics"]
    assert run["holdout_baseline_seasonal_naive_rmse"] == pytest.approx(naive)
