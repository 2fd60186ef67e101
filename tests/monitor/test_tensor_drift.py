"""Drift of tensor inputs: a served digits CNN logs each image's summaries (mean intensity,
std, min, max), and a monitoring pass over a window of that traffic compares them with the
same summaries of the training images. Brightened images drift; images drawn from the
training distribution do not. A sequence model's windows drift through their summaries
(mean, std, last value) alike."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.monitor import monitor
from keel.monitor.drift import Reference
from keel.serve import PredictionLog, start
from tests.serve._support import call_json
from tests.serve._tensor_support import (
    digits_images,
    digits_store,
    series_store,
    series_windows,
    train_cnn,
    train_seq,
)

pytestmark = pytest.mark.slow
SUMMARIES = ["X.mean", "X.std", "X.min", "X.max"]


def wait_logged(store, model, rows, seconds=15.0):
    """Wait until the log holds ``rows`` predictions of ``model`` (the last batch reaches
    the log just after its answer)."""
    import time

    from keel.serve import read_predictions

    deadline = time.monotonic() + seconds
    while read_predictions(store, model).num_rows < rows and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read_predictions(store, model).num_rows == rows


def send(url, model, x, per_request=20):
    for i in range(0, len(x), per_request):
        batch = x[i : i + per_request]
        body = {
            "inputs": [
                {
                    "name": "X",
                    "datatype": "FP32",
                    "shape": list(batch.shape),
                    "data": batch.ravel().tolist(),
                }
            ]
        }
        status, answer = call_json(url, "POST", f"/v2/models/{model}/infer", body)
        assert status == 200, answer


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("torch")
    store = digits_store(tmp_path_factory.mktemp("tensor_drift"))
    mv = train_cnn(store)
    yield store, mv
    store.close()


def test_brightened_images_drift_and_images_like_training_do_not(digits):
    store, mv = digits
    x, _ = digits_images()
    rng = np.random.default_rng(5)
    same = x[rng.choice(len(x), 300, replace=False)]
    brighter = np.clip(x[rng.choice(len(x), 300, replace=False)] * 0.6 + 0.35, 0.0, 1.0)
    with PredictionLog(store, flush_seconds=0.2) as plog:
        with start(store, ["digits"], sink=plog, watch_seconds=0) as server:
            send(server.url, "digits", same)
            wait_logged(store, "digits", 300)
            calm = monitor(store, "digits", last=300, alerts=False)
            send(server.url, "digits", brighter.astype(np.float32))
            wait_logged(store, "digits", 600)
            bright = monitor(store, "digits", last=300, alerts=False)

    for result in (calm, bright):
        assert result.values["window"]["rows"] == 300
        assert set(SUMMARIES) <= set(result.values["drift"]["features"])
        assert result.values["quality"]["missing_columns"] == []
    calm_drift = calm.values["drift"]["features"]
    bright_drift = bright.values["drift"]["features"]
    assert not calm_drift["X.mean"]["drift"], calm_drift["X.mean"]
    assert calm.values["drift"]["n_drifted"] == 0, calm_drift
    assert bright_drift["X.mean"]["drift"], bright_drift["X.mean"]
    assert bright_drift["X.min"]["drift"]  # the background is no longer black
    assert bright.values["drift"]["dataset_drift"]
    # the stored event carries the summaries' statistics, by dotted path
    event = json.dumps(bright.to_dict())
    assert "X.mean" in event
    # the pass also compares the served scores with the version's on its training images
    assert "score" in bright.values["prediction_drift"]


def test_the_reference_summarises_a_tensor_column_like_the_log():
    x, _ = digits_images()
    frame = pd.DataFrame({"X": list(x[:50])})
    ref = Reference.from_frame(frame)
    assert sorted(ref.columns) == sorted(SUMMARIES)
    assert ref.columns["X.mean"].mean == pytest.approx(x[:50].reshape(50, -1).mean(1).mean())


def test_a_sequence_drifts_through_its_mean_and_last_value(tmp_path):
    pytest.importorskip("torch")
    store = series_store(tmp_path)
    train_seq(store)
    with PredictionLog(store, flush_seconds=0.2) as plog:
        with start(store, ["series"], sink=plog, watch_seconds=0) as server:
            same, _ = series_windows(300, seed=3)
            send(server.url, "series", same)
            wait_logged(store, "series", 300)
            calm = monitor(store, "series", last=300, alerts=False)
            shifted, _ = series_windows(300, seed=4, level=1.5)
            send(server.url, "series", shifted.astype(np.float32))
            wait_logged(store, "series", 600)
            moved = monitor(store, "series", last=300, alerts=False)
    store.close()
    features = moved.values["drift"]["features"]
    assert {"X.mean", "X.std", "X.last"} <= set(features)
    assert features["X.mean"]["drift"] and features["X.last"]["drift"]
    assert not calm.values["drift"]["features"]["X.mean"]["drift"]
    assert not calm.values["drift"]["features"]["X.last"]["drift"]
