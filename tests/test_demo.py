"""The end-to-end demo, as `make demo` runs it (fewer trials and requests)."""

from pathlib import Path

import pytest

from keel import registry
from keel.demo import MODEL_NAME, run_demo
from keel.project import open_project


@pytest.mark.slow
def test_demo_audits_gates_serves_a_canary_and_writes_a_card(tmp_path):
    res = run_demo(tmp_path / "demo", n_trials=2, executor="inline", progress=False, requests=400)
    a = res.audit
    # the search's best model fails the fairness gate; reweighing lowers the disparity
    assert not a["best"]["passed"] and any("demographic_parity" in r for r in a["best"]["failed"])
    assert a["reweigh"]["dp_sex"] < a["best"]["dp_sex"]
    assert a["threshold"]["dp_sex"] < a["best"]["dp_sex"]
    f = res.fair_served  # the ThresholdOptimizer version, exported and served
    assert f["ref"] == a["threshold"]["ref"] and f["parity"]["ok"]
    assert f["rows"] == f["parity"]["rows"] > 10_000 and f["repeat_same"]
    served_dp, process_dp = f["served"]["dp_difference"], f["in_process"]["dp_difference"]
    assert served_dp < a["best"]["dp_sex"] / 2  # the served answers keep the mitigation
    assert abs(served_dp - a["threshold"]["dp_sex"]) < 0.03  # one draw of the same policy
    assert abs(served_dp - process_dp) < 0.03
    assert abs(f["served"]["accuracy"] - f["in_process"]["accuracy"]) < 0.02
    assert set(f["served"]["selection_rate"]) == {"Female", "Male"}
    prod = res.model_ref
    assert prod == a["reweigh"]["ref"]
    t = res.traffic
    assert t["requests"] == 400 and t["labels_matched"] == 400
    with open_project(res.project) as proj:
        assert registry.get_version(proj.store, f"{MODEL_NAME}@production").ref == prod
        canary = registry.get_version(proj.store, f"{MODEL_NAME}@candidate").version
        shadow = registry.get_version(proj.store, f"{MODEL_NAME}@challenger").version
        overrides = proj.store.events("gate_override")
    assert bool(overrides) == bool(a.get("override"))  # only when the gate failed
    served = t["served_by_version"]
    production = int(prod.split("/")[1])
    assert set(served) == {production, canary}  # the shadow never answers
    assert 15 <= served[canary] <= 70  # 10% of 400, sticky by caller key
    versions = res.comparison["versions"]
    assert versions[str(shadow)]["rows"] == 400
    for v in (production, canary, shadow):
        assert versions[str(v)]["labeled"] == versions[str(v)]["rows"]
        assert 0.75 < versions[str(v)]["metrics"]["accuracy"] <= 1
    assert res.comparison["pairs"][f"{production}:{shadow}"]["rows"] == served[production]
    act2 = res.monitoring  # drift → signed alert → retrain pipeline → canary
    assert act2["monitor"]["drift_share"] > 0.3 and "temp" in act2["monitor"]["drifted"]
    assert act2["monitor"]["alerts"] == ["seasonal-drift"]
    assert [t["status"] for t in act2["monitor"]["triggered"]] == ["succeeded"]
    assert act2["webhook"] == {**act2["webhook"], "received": 1, "rejected": 0}
    live, canary2 = (int(act2[k].split("/")[1]) for k in ("production", "candidate"))
    assert canary2 > live and set(act2["after"]) == {live, canary2}
    assert act2["after"][canary2] < act2["after"][live]  # the canary's share, not production
    assert len(res.monitoring_log) >= 6
    html = Path(res.card["html"]).read_text()
    assert "<svg" in html and prod in html and "http://" not in html
