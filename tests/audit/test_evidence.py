"""Audits as stored evidence, gates on aliases, and `keel audit` / `keel gate`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from fairlearn.metrics import demographic_parity_difference

from keel import project as keel_project
from keel import registry
from keel.audit._evidence import audit, get_evidence, list_evidence
from keel.audit._predictions import audit_predictions
from keel.audit.gates import Policy, Rule, evidence_values, gate
from keel.cli import main
from keel.data import ingest
from keel.datasets import adult
from keel.errors import InvalidInput, NotFound, ValidationFailed
from keel.train import train

POLICY = {
    "sensitive": ["sex", "race"],
    "policy": ["performance.roc_auc >= 0.8", "fairness.sex.demographic_parity_difference <= 0.5"],
}


def _project(root, audit_settings):
    proj = keel_project.init(root, name="audit")
    cfg = root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    settings["audit"] = audit_settings
    cfg.write_text(yaml.safe_dump(settings))
    proj.close()
    return keel_project.open_project(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit") / "proj"
    root.mkdir()
    df = adult("train").sample(3000, random_state=1)
    df.to_csv(root / "adult.csv", index=False)
    proj = _project(root, POLICY)
    ingest(proj.store, root / "adult.csv", name="adult")
    res = train(proj.store, "adult", "income", params={"n_estimators": 30}, seed=0)
    mv = res.register(proj.store, "adult")
    yield proj, root, mv
    proj.close()


def test_audit_stores_versioned_evidence_linked_to_the_version(trained):
    proj, _, mv = trained
    ev = audit(proj.store, mv.ref, sections=["performance", "fairness"], n_boot=50, seed=3)
    assert ev.id is not None and ev.doc["format"] == 1
    again = get_evidence(proj.store, mv.ref)
    assert again.doc == json.loads(json.dumps(ev.doc)) and again.sha == ev.sha
    assert again.doc["settings"]["seed"] == 3 and again.doc["settings"]["n_boot"] == 50
    assert again.doc["libraries"]["fairlearn"] and again.doc["timings_s"]["fairness"] >= 0
    assert [e["ref"] for e in list_evidence(proj.store, "adult")][-1] == mv.ref
    assert any(e["subject"] == mv.ref for e in proj.store.events("audited"))
    # the fairness figure equals fairlearn's on the same predictions
    from keel.export import prepared_of

    prep = prepared_of(proj.store, mv.ref)
    model = registry.load(proj.store, mv.ref)
    X, y = prep.test[prep.columns], prep.test[prep.target].to_numpy()
    p = model.predict_proba(X)[:, -1]
    pred = np.where(p >= 0.5, ">50K", "<=50K")
    expected = demographic_parity_difference(
        y == ">50K", pred == ">50K", sensitive_features=X["sex"]
    )
    got = ev.doc["fairness"]["sex"]["demographic_parity_difference"]["value"]
    assert got == pytest.approx(expected, abs=1e-9)
    # the same seed gives the same intervals
    ev2 = audit(proj.store, mv.ref, sections=["fairness"], n_boot=50, seed=3, save=False)
    assert ev2.doc["fairness"]["sex"] == json.loads(json.dumps(ev.doc["fairness"]["sex"]))


def test_evidence_values_and_unknown_paths():
    doc = {
        "performance": {"roc_auc": {"value": 0.9, "ci_low": 0.8}, "curve": [1, 2]},
        "ok": True,
        "nan": float("nan"),
    }
    values = evidence_values(doc)
    assert values == {
        "performance.roc_auc": 0.9,
        "performance.roc_auc.value": 0.9,
        "performance.roc_auc.ci_low": 0.8,
        "ok": 1.0,
    }
    policy = Policy((Rule.parse("performance.roc_auk >= 0.9"),))
    with pytest.raises(InvalidInput, match=r"roc_auk.*did you mean performance\.roc_auc"):
        policy.check_paths(values)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"policy": "performance.roc_auc >= 0.9"}, r"audit\.policy: expected a list"),
        ({"policy": ["performance.roc_auc >= high"]}, r"policy\[0\].*expected a number"),
        ({"policy": ["roc_auc is big"]}, r"policy\[0\].*PATH OP NUMBER"),
        ({"policy": [{"path": "a", "op": ">=", "value": 1, "x": 2}]}, r"unknown key 'x'"),
        ({"gated_aliases": "production"}, r"gated_aliases: expected a list"),
        ([1], r"audit: expected a mapping"),
    ],
)
def test_bad_policies_name_the_setting(settings, expected):
    with pytest.raises(InvalidInput, match=expected):
        Policy.from_settings({"audit": settings})


def _strict_version(tmp_path, sample_seed, n_estimators):
    """A project whose gate no model passes (DP difference <= 0.001), and a version in it."""
    root = tmp_path / "proj"
    root.mkdir()
    adult("train").sample(1500, random_state=sample_seed).to_csv(root / "a.csv", index=False)
    strict = {**POLICY, "policy": ["fairness.sex.demographic_parity_difference <= 0.001"]}
    proj = _project(root, strict)
    ingest(proj.store, root / "a.csv", name="adult")
    params = {"n_estimators": n_estimators}
    mv = train(proj.store, "adult", "income", params=params, seed=0).register(proj.store, "adult")
    return proj, mv


def test_gates_guard_the_production_alias(tmp_path):
    proj, mv = _strict_version(tmp_path, 2, 40)
    with pytest.raises(ValidationFailed, match="no audit evidence"):
        registry.set_alias(proj.store, mv.ref, "production")
    registry.set_alias(proj.store, mv.ref, "candidate")  # not gated
    audit(proj.store, mv.ref, sections=["fairness"], n_boot=20)
    result = gate(proj.store, mv.ref)
    assert not result.passed and result.failed[0]["path"].endswith("demographic_parity_difference")
    with pytest.raises(ValidationFailed, match=r"demographic_parity_difference <= 0.001 \(got"):
        registry.set_alias(proj.store, mv.ref, "production")
    assert "production" not in registry.get_version(proj.store, mv.ref).aliases  # unchanged
    moved = registry.set_alias(proj.store, mv.ref, "production", override="committee ok")
    assert "production" in moved.aliases
    event = proj.store.events("gate_override")[-1]
    assert event["payload"]["reason"] == "committee ok" and event["payload"]["failed"]
    history = registry.alias_history(proj.store, "adult")
    assert "gate override: committee ok" in history[-1]["why"]
    with pytest.raises(InvalidInput, match="override"):
        registry.set_alias(proj.store, mv.ref, "production", override="  ")
    proj.close()


def test_cli_audit_gate_and_override(trained, capsys):
    proj, root, mv = trained
    code = main(
        [
            "audit",
            mv.ref,
            "-C",
            str(root),
            "--section",
            "performance",
            "--section",
            "fairness",
            "--n-boot",
            "20",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["fairness"]["sex"]["demographic_parity_difference"]["value"] >= 0
    code = main(["gate", mv.ref, "-C", str(root), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == (0 if result["passed"] else 1)
    assert [c["rule"] for c in result["checks"]] == [str(Rule.parse(r)) for r in POLICY["policy"]]
    stored = len(list_evidence(proj.store))
    code = main(
        [
            "audit",
            mv.ref,
            "-C",
            str(root),
            "--section",
            "fairness",
            "--sensitive",
            "nope",
            "--n-boot",
            "20",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "'nope'" in err and "columns" in err
    assert len(list_evidence(proj.store)) == stored  # nothing stored
    code = main(["audit", mv.ref, "-C", str(root), "--section", "robust"])
    assert code == 2 and "unknown section 'robust'" in capsys.readouterr().err


def test_audit_of_predictions_alone(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 2000
    sex = rng.choice(["F", "M"], n)
    y = rng.integers(0, 2, n)
    score = np.clip(0.3 * y + 0.2 * (sex == "M") + rng.normal(0.3, 0.2, n), 0, 1)
    frame = pd.DataFrame({"y": y, "p": score, "sex": sex})
    doc = audit_predictions(
        frame, label="y", score="p", threshold=0.5, sensitive=["sex"], n_boot=30
    )
    expected = demographic_parity_difference(y, score >= 0.5, sensitive_features=sex)
    assert doc["fairness"]["sex"]["demographic_parity_difference"]["value"] == pytest.approx(
        expected, abs=1e-9
    )
    from sklearn.metrics import roc_auc_score

    assert doc["performance"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, score))
    path = tmp_path / "scores.csv"
    frame.to_csv(path, index=False)
    code = main(
        [
            "audit",
            "--predictions",
            str(path),
            "--label",
            "y",
            "--score",
            "p",
            "--sensitive",
            "sex",
            "--n-boot",
            "20",
            "--out",
            str(tmp_path / "ev.json"),
        ]
    )
    assert code == 0 and "demographic_parity_difference" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev.json").read_text())["data"]["rows"] == n


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.drop(columns=["sex"]), r"--sensitive: no column 'sex'"),
        (lambda f: f.assign(p=f["p"].where(f.index != 7)), r"--score 'p' row 8: expected a number"),
        (lambda f: f.assign(y=1), r"expected both classes"),
        (lambda f: f.assign(y=np.where(f["y"] == 1, "yes", "no")), r"--positive"),
    ],
)
def test_bad_prediction_files_name_the_column_and_row(change, expected):
    frame = pd.DataFrame({"y": [0, 1] * 10, "p": np.linspace(0, 1, 20), "sex": ["F", "M"] * 10})
    with pytest.raises(InvalidInput, match=expected):
        audit_predictions(change(frame), label="y", score="p", sensitive=["sex"], n_boot=20)


def test_no_evidence_is_not_found(trained):
    proj, _, _ = trained
    mv2 = train(proj.store, "adult", "income", params={"n_estimators": 5}, seed=1).register(
        proj.store, "adult"
    )
    with pytest.raises(NotFound, match="keel audit"):
        get_evidence(proj.store, mv2.ref)


def test_cli_defend_and_epsilon(trained, capsys):
    proj, root, mv = trained
    defend = ["defend", mv.ref, "-C", str(root), "--rows", "30", "--eval-rows", "10"]
    versions = len(registry.list_versions(proj.store, "adult"))
    code = main([*defend, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["parent"] == mv.ref
    before, after = out["before"], out["after"]
    assert set(before) == set(after) and "clean_accuracy" in before
    gain = after["valid_row_robustness"] - before["valid_row_robustness"]
    drop = before["clean_accuracy"] - after["clean_accuracy"]
    assert out["gain"] == pytest.approx(gain)
    # the augmented model is kept (and registered) only when valid-row robustness rises
    assert out["kept"] == (gain >= 0.01 and drop <= 0.01)
    now = registry.list_versions(proj.store, "adult")
    if out["kept"]:
        assert out["verdict"].startswith("kept") and out["model"] == out["child"]
        assert registry.get_version(proj.store, out["model"]).version > mv.version
        assert len(now) == versions + 1
    else:
        assert out["verdict"].startswith("not kept, nothing registered")
        assert out["model"] is None and out["child"] is None and len(now) == versions
    # the text form prints the same verdict (same seed, same result), never a stand-in
    assert main(defend) == 0
    text = capsys.readouterr().out
    assert out["verdict"] in text and "(not registered)" not in text
    assert ("registered adult/" in text) == out["kept"]
    code = main(["epsilon", mv.ref, "-C", str(root), "--epsilon", "1", "--repeats", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and {r["epsilon"] for r in out["rows"]} == {1.0}
    assert all(0 <= r["accuracy"] <= 1 for r in out["rows"])
    code = main(["epsilon", mv.ref, "-C", str(root), "--epsilon", "-1"])
    assert code == 2 and "epsilon" in capsys.readouterr().err.lower()


def test_a_rule_on_a_section_the_evidence_lacks_fails_the_gate(trained):
    proj, _, mv = trained
    ev = audit(proj.store, mv.ref, sections=["performance"], n_boot=20)
    policy = Policy((Rule.parse("privacy.mia.auc <= 0.6"), Rule.parse("performance.roc_auc >= 0")))
    result = gate(proj.store, mv.ref, policy)
    missing, present = result.checks
    assert not result.passed and ev.id == result.evidence_id
    assert missing["value"] is None and "no privacy section" in missing["missing"]
    assert present["passed"]
    with pytest.raises(InvalidInput, match=r"did you mean performance\.roc_auc"):
        gate(proj.store, mv.ref, Policy((Rule.parse("performance.roc_aux >= 0.5"),)))


def test_typos_in_the_audit_settings_or_sensitive_columns_are_errors(trained):
    proj, _, mv = trained
    with pytest.raises(InvalidInput, match=r"audit\.polcy: unknown key \(did you mean 'policy'"):
        Policy.from_settings({"audit": {"polcy": ["performance.roc_auc >= 0.9"]}})
    before = len(list_evidence(proj.store))
    with pytest.raises(InvalidInput, match=r"sensitive feature 'gender'"):
        audit(proj.store, mv.ref, sensitive=["gender"], n_boot=20)
    assert len(list_evidence(proj.store)) == before


def test_keel_release_takes_an_override(trained, capsys):
    proj, root, mv = trained
    strict = {"policy": ["performance.roc_auc >= 0.9999"]}
    settings = yaml.safe_load((root / "keel.yaml").read_text())
    (root / "keel.yaml").write_text(yaml.safe_dump({**settings, "audit": {**POLICY, **strict}}))
    audit(proj.store, mv.ref, sections=["performance"], n_boot=20)
    try:
        code = main(["release", mv.ref, "production", "-C", str(root)])
        err = capsys.readouterr().err
        assert code == 2 and "--override REASON" in err and "roc_auc >= 0.9999" in err
        code = main(["release", mv.ref, "production", "--override", "trial", "-C", str(root)])
        assert code == 0, capsys.readouterr().err
    finally:
        (root / "keel.yaml").write_text(yaml.safe_dump(settings))


def test_a_move_the_store_refuses_leaves_no_gate_event(tmp_path):
    """The gate's pass or override is written with the alias move, in one transaction: when
    the store refuses the move (here a trigger, as a role without the grant would), neither
    the move nor the gate event is there."""
    from sqlalchemy import text

    from keel.errors import Conflict, StoreError

    proj, mv = _strict_version(tmp_path, 3, 20)
    audit(proj.store, mv.ref, sections=["fairness"], n_boot=20)
    with proj.store.write() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER no_moves BEFORE INSERT ON aliases "
                "BEGIN SELECT RAISE(ABORT, 'moves are frozen'); END"
            )
        )
    before = len(proj.store.events("gate_override"))
    with pytest.raises((Conflict, StoreError), match="moves are frozen"):
        registry.set_alias(proj.store, mv.ref, "production", override="committee ok")
    assert len(proj.store.events("gate_override")) == before
    assert "production" not in registry.get_version(proj.store, mv.ref).aliases
    with proj.store.write() as conn:
        conn.execute(text("DROP TRIGGER no_moves"))
    registry.set_alias(proj.store, mv.ref, "production", override="committee ok")
    events = proj.store.events("gate_override")
    assert len(events) == before + 1 and events[-1]["payload"]["reason"] == "committee ok"
    proj.close()
