"""The alias trail: every move of a model's aliases with what its gates said at the time —
passed (with the checks), overridden (with the reason and the failed rules), not gated,
removed — and a refused move leaves no trace."""

from __future__ import annotations

import pytest
import yaml

from keel import registry
from keel.audit import alias_trail, gate
from keel.cli import main
from keel.errors import ValidationFailed
from keel.project import open_project


@pytest.fixture
def project(tmp_path):
    """Two versions of one small model, each audited (performance only)."""
    root = tmp_path / "proj"
    assert main(["init", str(root)]) == 0
    rows = "".join(
        f"{20 + i},{['Oslo', 'Rome'][i % 3 == 0]},{int(i % 3 == 0)}\n" for i in range(60)
    )
    (root / "people.csv").write_text("age,city,label\n" + rows)
    assert main(["ingest", str(root / "people.csv"), "--name", "people", "-C", str(root)]) == 0
    args = ["train", "people", "-t", "label", "-m", "logistic_regression", "--register", "people"]
    for _ in range(2):
        assert main([*args, "-C", str(root)]) == 0
    for ref in ("people/1", "people/2"):
        args = ["audit", ref, "--section", "performance", "--n-boot", "10", "-C", str(root)]
        assert main(args) == 0
    return root


def _policy(root, *rules):
    cfg = root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    settings["audit"] = {"policy": list(rules)}
    cfg.write_text(yaml.safe_dump(settings))


def test_each_move_carries_what_the_gates_said(project):
    _policy(project, "performance.accuracy >= 0", "performance.roc_auc >= 1.01")
    with open_project(project) as proj:
        store = proj.store
        registry.set_alias(store, "people/1", "candidate", why="try it")
        with pytest.raises(ValidationFailed, match="roc_auc"):
            registry.set_alias(store, "people/1", "production", why="refused")
        registry.set_alias(store, "people/1", "production", why="ship", override="ticket 7")
        registry.remove_alias(store, "people", "candidate", why="done")
        trail = alias_trail(store, "people")
    assert [(m["alias"], m["to_version"]) for m in trail] == [
        ("candidate", 1),
        ("production", 1),
        ("candidate", None),
    ]
    assert trail[0]["gate"] == {"status": "not_gated"}
    over = trail[1]["gate"]
    assert over["status"] == "overridden"
    assert over["override"]["reason"] == "ticket 7"
    assert [f.split(" (")[0] for f in over["override"]["failed"]] == ["performance.roc_auc >= 1.01"]
    assert [c["passed"] for c in over["checks"]] == [True, False]
    assert trail[1]["why"].startswith("ship")
    assert trail[2]["gate"] == {"status": "removed"}


def test_a_passing_move_records_its_checks_and_pairs_with_it(project):
    _policy(project, "performance.accuracy >= 0")
    with open_project(project) as proj:
        store = proj.store
        registry.set_alias(store, "people/1", "production", why="first")
        registry.set_alias(store, "people/2", "production", why="second")
        registry.set_alias(store, "people/1", "production", why="back")
        trail = alias_trail(store, "people")
        ev2 = gate(store, "people/2").evidence_id
    assert [m["gate"]["status"] for m in trail] == ["passed"] * 3
    assert [m["from_version"] for m in trail] == [None, 1, 2]
    assert trail[1]["gate"]["evidence_id"] == ev2
    assert trail[1]["gate"]["checks"][0]["rule"] == "performance.accuracy >= 0"
    assert trail[2]["gate"]["evidence_id"] != ev2  # version 1's own evidence, paired anew


def test_a_gated_move_from_before_passes_were_recorded_says_so(project):
    with open_project(project) as proj:  # no policy declared: production moves unchecked
        registry.set_alias(proj.store, "people/1", "production")
    _policy(project, "performance.accuracy >= 0")
    with open_project(project) as proj:
        (move,) = alias_trail(proj.store, "people")
    assert move["gate"] == {"status": "unrecorded"}
