"""An unknown model name says so and lists the registered ones."""

import pytest

from keel import registry
from keel.errors import NotFound


def test_unknown_model_lists_the_registered_ones(any_store):
    sha = any_store.blobs.put_bytes(b"x")
    registry.register(
        any_store,
        "income",
        artifact_sha=sha,
        flavor="onnx",
        task="classification",
        input_schema=[],
        output_schema={},
    )
    with pytest.raises(NotFound, match=r"no model named 'nope' is registered; models: income"):
        registry.get_version(any_store, "nope@production")
    with pytest.raises(NotFound, match=r"model 'income' has no alias 'production'"):
        registry.get_version(any_store, "income@production")
