"""TorchModel: a PyTorch network behind the one model contract, stored as safetensors only."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from keel.errors import InvalidInput, UnsafeArtifact  # noqa: E402
from keel.models import TorchModel, load_model, read_weights_file, save_model  # noqa: E402
from keel.models._torch import resolve_architecture, weights_from_bytes  # noqa: E402
from keel.store import Store  # noqa: E402

IMG = {"name": "X", "type": "tensor", "dtype": "float32", "shape": [1, 8, 8]}


def _cnn_model(seed: int = 0) -> TorchModel:
    torch.manual_seed(seed)
    kwargs = {"in_shape": [1, 8, 8], "n_out": 3, "channels": [4, 8], "hidden": 16}
    net = resolve_architecture("cnn")(**kwargs)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    return TorchModel("cnn", kwargs, state, "classification", [IMG], ["a", "b", "c"])


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


def test_a_torch_model_round_trips_through_the_store_as_safetensors(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "blobs")
    model = _cnn_model()
    X = _images(20)
    sha = save_model(model, store.blobs)
    manifest = store.blobs.get_bytes(sha).decode()
    assert '"safetensors"' in manifest and '"flavor": "torch"' in manifest
    again = load_model(store.blobs, sha)
    assert isinstance(again, TorchModel) and again.classes_ == ["a", "b", "c"]
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    assert set(again.predict(X)) <= {"a", "b", "c"}
    # the three ways to give a tensor agree: an array, a mapping, a frame column of arrays
    frame = pd.DataFrame({"X": list(X)})
    np.testing.assert_allclose(model.predict_proba({"X": X}), model.predict_proba(frame))
    assert model.tags["tensor_inputs"] and model.tags["predict_proba"]
    store.close()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (np.zeros((2, 1, 7, 8), np.float32), r"expected shape \[N, 1, 8, 8\], got \[2, 1, 7, 8\]"),
        (np.zeros((2, 64), np.float32), r"expected shape \[N, 1, 8, 8\], got \[2, 64\]"),
        (np.array([[[["x"] * 8] * 8]]), "expected numbers"),
    ],
)
def test_a_wrong_shape_or_dtype_names_expected_and_given(given, expected):
    with pytest.raises(InvalidInput, match=expected):
        _cnn_model().predict(given)


def test_nan_in_a_tensor_is_refused_naming_the_row():
    X = _images(3)
    X[2, 0, 3, 3] = np.nan
    with pytest.raises(InvalidInput, match=r"input 'X' row 2: NaN"):
        _cnn_model().predict(X)


def test_one_image_without_its_batch_dimension_is_one_row():
    assert _cnn_model().predict_proba(_images(1)[0]).shape == (1, 3)


def test_pickled_weights_are_never_loaded(tmp_path):
    net = torch.nn.Linear(2, 1)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)  # a zip of pickles
    with pytest.raises(UnsafeArtifact, match="safetensors"):
        weights_from_bytes(buf.getvalue())
    for suffix in (".pt", ".pth"):
        path = tmp_path / f"w{suffix}"
        path.write_bytes(buf.getvalue())
        with pytest.raises(UnsafeArtifact, match=r"pickle.*safetensors.torch.save_file"):
            read_weights_file(path)
    with pytest.raises(UnsafeArtifact, match="PyTorch pickle"):
        weights_from_bytes(b"\x80\x04K\x01.")


def test_a_users_own_module_is_built_from_importable_code(tmp_path, monkeypatch):
    (tmp_path / "kt_nets.py").write_text(
        textwrap.dedent(
            """
            import torch
            class Tiny(torch.nn.Module):
                def __init__(self, n_in, n_out):
                    super().__init__()
                    self.lin = torch.nn.Linear(n_in, n_out)
                def forward(self, x):
                    return self.lin(x.flatten(1))
            def not_a_module():
                return 1
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = resolve_architecture("kt_nets:Tiny")
    net = cls(n_in=64, n_out=2)
    from safetensors.torch import save_file

    save_file(net.state_dict(), tmp_path / "w.safetensors")
    state = read_weights_file(tmp_path / "w.safetensors")
    model = TorchModel(
        "kt_nets:Tiny", {"n_in": 64, "n_out": 2}, state, "classification", [IMG], [0, 1]
    )
    with torch.no_grad():
        want = torch.softmax(net(torch.from_numpy(_images(4))), 1).numpy()
    np.testing.assert_allclose(model.predict_proba(_images(4)), want, rtol=1e-5)
    with pytest.raises(UnsafeArtifact, match="expected a torch.nn.Module subclass"):
        resolve_architecture("kt_nets:not_a_module")
    with pytest.raises(UnsafeArtifact, match="expected a torch.nn.Module subclass"):
        resolve_architecture("os:system")
    with pytest.raises(InvalidInput, match="does not import here"):
        resolve_architecture("no_such_module_here:Net")
    with pytest.raises(InvalidInput, match="'package.module:Class'"):
        resolve_architecture("resnet")


def test_weights_that_do_not_fit_the_architecture_are_refused():
    model = _cnn_model()
    state = dict(model.state)
    state.pop(next(iter(state)))
    broken = TorchModel("cnn", model.arch_kwargs, state, "classification", [IMG], [0, 1, 2])
    with pytest.raises(UnsafeArtifact, match="weights do not fit architecture 'cnn'"):
        broken.predict(_images(1))


def test_without_torch_a_torch_kind_names_the_extra():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # as if keel[torch] were not installed
        from keel.errors import MissingExtra
        from keel.train._zoo import get_kind
        try:
            get_kind("torch-cnn").estimator("classification", {}, 0)
        except MissingExtra as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "pip install 'keel[torch]'" in out.stdout, out.stderr
