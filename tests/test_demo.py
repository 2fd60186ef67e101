"""The end-to-end demo, as `make demo` runs it (fewer trials and requests)."""

import pytest

from keel import registry
from keel.demo import MODEL_NAME, run_demo
from keel.project import open_project


@pytest.mark.slow
def test_demo_serves_a_canary_and_compares(tmp_path):
    res = run_demo(tmp_path / "demo", n_trials=2, executor="inline", progress=False, requests=400)
    t = res.traffic
    assert t["requests"] == 400 and t["labels_matched"] == 400
    served = t["served_by_version"]
    assert set(served) == {1, 2}  # production and the 10% canary answered, the shadow never
    assert 15 <= served[2] <= 70  # 10% of 400, sticky by caller key
    versions = res.comparison["versions"]
    assert versions["1"]["aliases"] == ["production"] and versions["2"]["aliases"] == ["candidate"]
    assert versions["3"]["aliases"] == ["challenger"] and versions["3"]["rows"] == 400
    for v in ("1", "2", "3"):
        assert versions[v]["labeled"] == versions[v]["rows"]
        assert 0.75 < versions[v]["metrics"]["accuracy"] <= 1
        assert 0.8 < versions[v]["metrics"]["roc_auc"] <= 1
    assert res.comparison["pairs"]["1:3"]["rows"] == served[1]
    with open_project(res.project) as proj:
        assert registry.get_version(proj.store, f"{MODEL_NAME}@production").version == 1
