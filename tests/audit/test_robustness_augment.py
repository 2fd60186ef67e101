"""Adversarial augmentation on valid rows: a new version only when it is harder to fool
(keel.audit.robustness.adversarial_training)."""

from __future__ import annotations

import pytest

from keel import project as keel_project
from keel import registry
from keel.audit.robustness import adversarial_training
from keel.data import ingest
from keel.datasets import adult
from keel.errors import InvalidInput
from keel.store import lineage
from keel.train import train

SMALL = {"n_rows": 40, "eval_rows": 15, "max_iter": 2, "max_eval": 20}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    adult("train").sample(1500, random_state=3).to_csv(root / "a.csv", index=False)
    proj = keel_project.init(root, name="rob")
    ingest(proj.store, root / "a.csv", name="adult")
    res = train(proj.store, "adult", "income", params={"n_estimators": 20}, seed=0)
    parent = res.register(proj.store, "adult")
    yield proj, parent
    proj.close()


def _versions(proj):
    return [v.ref for v in registry.list_versions(proj.store, "adult")]


def test_augmentation_that_does_not_help_enough_registers_nothing_and_says_why(project):
    proj, parent = project
    before = _versions(proj)
    child, table = adversarial_training(
        proj.store, parent.ref, frozen=["age", "sex"], min_gain=1.0, **SMALL
    )
    assert child is None and table["child"] is None and table["kept"] is False
    assert _versions(proj) == before
    assert table["verdict"].startswith("not kept, nothing registered: valid-row robustness")
    b, a = table["before"], table["after"]
    assert f"{b['valid_row_robustness']:.3f} → {a['valid_row_robustness']:.3f}" in table["verdict"]
    assert table["gain"] == pytest.approx(a["valid_row_robustness"] - b["valid_row_robustness"])
    assert b["evaluated_rows"] == a["evaluated_rows"] == 15
    assert b["correct_rows"] == 15  # the parent's correctly classified rows, for both
    assert table["settings"]["added_rows"] > 0 and table["settings"]["frozen"] == ["age", "sex"]
    for side in (b, a):
        assert 0.5 < side["clean_accuracy"] <= 1.0
        assert 0.0 <= side["valid_row_robustness"] <= 1.0
        rates = [side[f"counterfactual_robust_rate_{k}"] for k in (1, 2, 3)]
        assert rates == sorted(rates, reverse=True)  # more features, more rows flipped


def test_the_verdict_follows_the_figures(project):
    proj, parent = project
    before = _versions(proj)
    child, table = adversarial_training(
        proj.store, parent.ref, min_gain=0.0, max_accuracy_drop=1.0, **SMALL
    )
    gain = table["after"]["valid_row_robustness"] - table["before"]["valid_row_robustness"]
    assert table["kept"] is (gain >= 0.0)
    if table["kept"]:
        assert child is not None and table["child"] == child.ref
        assert _versions(proj) == [*before, child.ref]
        assert parent.ref in [n.id for n in lineage(proj.store, "model", child.ref).parents]
        assert registry.get_version(proj.store, child.ref).tags.get("variant")
        assert table["verdict"].startswith("kept: ")
    else:
        assert child is None and _versions(proj) == before


def test_bad_settings_are_refused_before_any_work(project):
    proj, parent = project
    with pytest.raises(InvalidInput, match="min_gain: expected a number ≥ 0"):
        adversarial_training(proj.store, parent.ref, min_gain=-1)
    with pytest.raises(InvalidInput, match=r"frozen feature 'salary'.*features are age"):
        adversarial_training(proj.store, parent.ref, frozen=["salary"])
