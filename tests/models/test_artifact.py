"""Model files are loaded without executing code from them."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from keel import registry
from keel.errors import UnsafeArtifact
from keel.models import SklearnModel, load_model, read_manifest, save_model


class _WritesMarker:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _small_model():
    X = pd.DataFrame({"x": np.linspace(0, 1, 40)})
    y = (X["x"] > 0.5).astype(int).to_numpy()
    pipe = Pipeline([("model", LogisticRegression())]).fit(X, y)
    return SklearnModel(pipe, "classification", [{"name": "x", "type": "float"}]), X


def test_registered_pickle_is_refused_and_never_runs(store, tmp_path):
    marker = tmp_path / "pwned"
    sha = store.blobs.put_bytes(pickle.dumps(_WritesMarker(str(marker))))
    registry.register(
        store,
        "evil",
        artifact_sha=sha,
        flavor="sklearn",
        task="classification",
        input_schema=[],
        output_schema={},
    )
    with pytest.raises(UnsafeArtifact, match="pickle.*never unpickles"):
        registry.load(store, "evil")
    assert not marker.exists()


def test_pickle_inside_a_valid_manifest_is_refused(store, tmp_path):
    marker = tmp_path / "pwned"
    model, _ = _small_model()
    manifest = json.loads(store.blobs.get_bytes(save_model(model, store.blobs)))
    manifest["components"]["pipeline"]["sha"] = store.blobs.put_bytes(
        pickle.dumps(_WritesMarker(str(marker)))
    )
    sha = store.blobs.put_bytes(json.dumps(manifest).encode())
    with pytest.raises(UnsafeArtifact, match="not a skops file.*pickle"):
        load_model(store.blobs, sha)
    assert not marker.exists()


def test_untrusted_types_in_skops_file_are_refused(store):
    pipe = Pipeline([("f", FunctionTransformer(func=eval))])
    evil = SklearnModel(pipe, "regression", [{"name": "x", "type": "float"}])
    sha = save_model(evil, store.blobs)
    part = json.loads(store.blobs.get_bytes(sha))["components"]["pipeline"]["sha"]
    assert "builtins.eval" in sio.get_untrusted_types(data=store.blobs.get_bytes(part))
    with pytest.raises(UnsafeArtifact, match="does not trust: builtins.eval"):
        load_model(store.blobs, sha)


def test_tampered_artifact_is_refused(store):
    model, X = _small_model()
    sha = save_model(model, store.blobs)
    part = json.loads(store.blobs.get_bytes(sha))["components"]["pipeline"]["sha"]
    path = store.blobs.path(part)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UnsafeArtifact, match="does not match its sha256"):
        load_model(store.blobs, sha)


@pytest.mark.parametrize(
    ("manifest", "needle"),
    [
        ({"format": "other"}, "expected format 'keel-model'"),
        ({"format": "keel-model", "format_version": 99}, "format_version 99"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_foreign_manifests_are_refused(store, manifest, needle):
    sha = store.blobs.put_bytes(json.dumps(manifest).encode())
    with pytest.raises(UnsafeArtifact, match=needle):
        read_manifest(store.blobs, sha)


def test_round_trip_keeps_predictions(store):
    model, X = _small_model()
    loaded = load_model(store.blobs, save_model(model, store.blobs))
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
