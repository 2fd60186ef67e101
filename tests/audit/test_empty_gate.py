"""A gate with no rules is not a pass: it says so, exits non-zero and guards the alias,
unless keel.yaml says the policy is empty on purpose (audit.allow_empty: true)."""

from __future__ import annotations

import json

import pytest
import yaml

from keel import registry
from keel.audit.gates import Policy, gate
from keel.cli import main
from keel.errors import InvalidInput, ValidationFailed
from keel.project import open_project


def _keel(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _set_audit(root, audit):
    cfg = root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    if audit is None:
        settings.pop("audit", None)
    else:
        settings["audit"] = audit
    cfg.write_text(yaml.safe_dump(settings))


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A real project with one registered, audited version."""
    root = tmp_path_factory.mktemp("gates") / "proj"
    assert main(["init", str(root)]) == 0
    rows = "".join(
        f"{20 + i},{['Oslo', 'Rome'][i % 3 == 0]},{int(i % 3 == 0)}\n" for i in range(60)
    )
    (root / "people.csv").write_text("age,city,label\n" + rows)
    assert main(["ingest", str(root / "people.csv"), "--name", "people", "-C", str(root)]) == 0
    args = ["train", "people", "-t", "label", "-m", "logistic_regression", "--register", "people"]
    assert main([*args, "-C", str(root)]) == 0
    args = ["audit", "people/1", "--section", "performance", "--n-boot", "10", "-C", str(root)]
    assert main(args) == 0
    return root


@pytest.mark.parametrize("audit", [None, {"policy": []}, {"sensitive": ["city"], "policy": None}])
def test_keel_gate_with_no_rules_fails_loudly(audited, capsys, audit):
    _set_audit(audited, audit)
    capsys.readouterr()
    code, out, err = _keel(capsys, "gate", "people/1", "-C", audited)
    assert code == 1, out + err
    assert "no rules" in err and "allow_empty: true" in err and "Traceback" not in err
    code, out, _ = _keel(capsys, "gate", "people/1", "-C", audited, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["empty"] is True and doc["passed"] is False
    assert "no rules" in doc["note"]


def test_an_empty_policy_on_purpose_passes_and_says_so(audited, capsys):
    _set_audit(audited, {"policy": [], "allow_empty": True})
    code, out, err = _keel(capsys, "gate", "people/1", "-C", audited)
    assert code == 0, err
    assert "no rules" in out and "allow_empty" in out
    with open_project(audited) as proj:
        result = gate(proj.store, "people/1")
        assert result.empty and result.passed and result.to_dict()["empty"] is True
        registry.set_alias(proj.store, "people/1", "production", why="empty on purpose")


def test_the_python_gate_result_says_it_is_empty(audited):
    _set_audit(audited, None)
    with open_project(audited) as proj:
        result = gate(proj.store, "people/1")
        assert result.empty and not result.passed and result.checks == ()
        assert "no rules" in result.note and "allow_empty" in result.note
        explicit = gate(proj.store, "people/1", Policy())
        assert explicit.empty and not explicit.passed


def test_a_declared_empty_policy_guards_the_alias(audited):
    _set_audit(audited, {"policy": [], "gated_aliases": ["production", "staging"]})
    with open_project(audited) as proj:
        with pytest.raises(ValidationFailed, match=r"no rules.*allow_empty: true"):
            registry.set_alias(proj.store, "people/1", "staging")
        assert "staging" not in registry.get_version(proj.store, "people/1").aliases
        registry.set_alias(proj.store, "people/1", "candidate")  # not gated
        moved = registry.set_alias(proj.store, "people/1", "staging", override="drill")
        assert "staging" in moved.aliases
        event = proj.store.events("gate_override")[-1]
        assert "no rules" in event["payload"]["failed"][0]


def test_allow_empty_must_be_a_boolean():
    with pytest.raises(InvalidInput, match=r"audit\.allow_empty: expected true or false"):
        Policy.from_settings({"audit": {"allow_empty": "yes"}})
    assert Policy.from_settings({"audit": {"allow_empty": True}}).allow_empty
