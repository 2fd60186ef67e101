"""The whole spine on either back-end: ingest → train → register → alias → lineage → load."""

import numpy as np

from keel import registry
from keel.data import get_dataset, ingest, load_profile
from keel.datasets import adult
from keel.store import lineage
from keel.train import get_run, train


def test_flow_on_each_backend(any_store, tmp_path):
    df = adult("train").sample(3000, random_state=1)
    path = tmp_path / "adult.csv"
    df.to_csv(path, index=False)
    ds = ingest(any_store, path, name="adult").dataset
    assert get_dataset(any_store, ds.sha[:10]).ref == "adult/1"
    prof = load_profile(any_store, ds)
    assert prof["columns"]["age"]["count"] == 3000
    res = train(any_store, "adult", "income", params={"n_estimators": 40}, seed=1)
    mv = res.register(any_store, "adult-income")
    registry.set_alias(any_store, mv.ref, "candidate", why="test")
    model = registry.load(any_store, "adult-income@candidate")
    X = df.drop(columns=["income"]).head(50)
    assert np.allclose(model.predict_proba(X), res.model.predict_proba(X))
    tree = lineage(any_store, "model", mv.ref)
    kinds = [n.kind for n in tree.walk()]
    assert {"model", "run", "dataset", "source"} <= set(kinds)
    assert get_run(any_store, res.run_id)["params"]["model"] == "lightgbm"
